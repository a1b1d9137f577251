//! Mutator that allocates without bound: the host's memory cap must stop it (`memory_limit`).

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
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // 1 MiB at a time, each written so the pages are really used.
            hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
        }
    }
}

export!(Plugin);
