//! Hostile router: sleeps an hour in a WASI clock wait (`monotonic-clock`
//! subscribe + `poll`), a host call the epoch deadline cannot interrupt.
//! The host must cut the sleep at the call's deadline and free its slot.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "router-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::router::Guest as Router;
use weir::plugin::types::{PluginError, Route, RunContext};

struct Plugin;

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl Router for Plugin {
    fn route(_config: String, _ctx: RunContext) -> Result<Route, PluginError> {
        // Woken early at the deadline, it sleeps again: only the trap stops it.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

export!(Plugin);
