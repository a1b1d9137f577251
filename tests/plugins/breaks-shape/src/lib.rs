//! Bad mutator: a patch the runtime accepts (a valid op on an allowed path)
//! that leaves a job the pool's kind cannot run — by default
//! `timeout_seconds: "soon"` on a process job. Config `{"path": P, "value": V}`
//! sets another path and value. The host must refuse the mutated job the
//! same way in the preview (`deployment render`) and at launch.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mutator-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::mutator::Guest as Mutator;
use weir::plugin::types::{PatchKind, PatchOp, PluginError, RunContext};

struct Plugin;

fn setting(config: &str) -> (String, String) {
    let config: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
    let path = config
        .get("path")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("/timeout_seconds")
        .to_owned();
    let value = config
        .get("value")
        .map_or_else(|| "\"soon\"".to_owned(), |v| v.to_string());
    (path, value)
}

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl Mutator for Plugin {
    fn mutate(config: String, _ctx: RunContext, _job: String) -> Result<Vec<PatchOp>, PluginError> {
        let (path, value) = setting(&config);
        Ok(vec![PatchOp {
            op: PatchKind::Add,
            path,
            from: None,
            value: Some(value),
        }])
    }
}

export!(Plugin);
