//! Mutator that renames the Kubernetes job, a path the host forbids: `invalid_output`.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mutator-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::mutator::Guest as Mutator;
#[allow(unused_imports)]
use weir::plugin::types::{PatchKind, PatchOp, PluginError, RunContext};

struct Plugin;

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl Mutator for Plugin {
    fn mutate(
        _config: String,
        _ctx: RunContext,
        _job: String,
    ) -> Result<Vec<PatchOp>, PluginError> {
        Ok(vec![PatchOp {
            op: PatchKind::Replace,
            path: "/job_manifest/metadata/name".to_string(),
            from: None,
            value: Some("\"hijacked\"".to_string()),
        }])
    }
}

export!(Plugin);
