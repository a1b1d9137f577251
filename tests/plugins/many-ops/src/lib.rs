//! Hostile mutator: 349,000 `add` ops of three bytes each (path `/k`,
//! value `1`): 1,047,000 bytes of text, under the 1 MiB output cap, but
//! hundreds of MB once every op is a host object. The host must refuse it
//! while copying it out of the guest.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mutator-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::mutator::Guest as Mutator;
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
        Ok((0..349_000)
            .map(|_| PatchOp {
                op: PatchKind::Add,
                path: "/k".to_string(),
                from: None,
                value: Some("1".to_string()),
            })
            .collect())
    }
}

export!(Plugin);
