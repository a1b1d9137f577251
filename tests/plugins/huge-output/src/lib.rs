//! Mutator that returns an 8 MiB value, over the host's output cap: `invalid_output`.

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
        // `repeat` copies in doubling chunks: the point is size, not time.
        let value = format!("\"{}\"", "x".repeat(8 << 20));
        Ok(vec![PatchOp {
            op: PatchKind::Add,
            path: "/env/HUGE".to_string(),
            from: None,
            value: Some(value),
        }])
    }
}

export!(Plugin);
