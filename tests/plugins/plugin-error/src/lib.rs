//! Admission plugin that refuses to decide: the host must pass its message
//! through as `plugin_error`.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "admission-plugin" });

use exports::weir::plugin::admission::Guest as AdmissionGuest;
use exports::weir::plugin::config::Guest as Config;
use weir::plugin::types::{Admission, PluginError, RunContext, Stats};

struct Plugin;

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl AdmissionGuest for Plugin {
    fn admit(_config: String, _ctx: RunContext, _stats: Stats) -> Result<Admission, PluginError> {
        Err(PluginError {
            message: "quota service says no".to_string(),
        })
    }
}

export!(Plugin);
