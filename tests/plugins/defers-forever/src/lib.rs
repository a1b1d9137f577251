//! Hostile admission plugin: always defers, with a long reason. Config:
//! `{"seconds": N, "reason_bytes": M}` (defaults 1 and 1,000,000): the host
//! must record the same deferral once with a count, clip the reason and cap
//! the deferral time.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "admission-plugin" });

use exports::weir::plugin::admission::Guest as AdmissionGuest;
use exports::weir::plugin::config::Guest as Config;
use weir::plugin::types::{Admission, Deferral, PluginError, RunContext, Stats};

struct Plugin;

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl AdmissionGuest for Plugin {
    fn admit(config: String, _ctx: RunContext, _stats: Stats) -> Result<Admission, PluginError> {
        let config: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
        let seconds = config["seconds"].as_u64().unwrap_or(1) as u32;
        let bytes = config["reason_bytes"].as_u64().unwrap_or(1_000_000) as usize;
        Ok(Admission::Defer(Deferral {
            seconds,
            reason: format!("over quota {}", "!".repeat(bytes)),
        }))
    }
}

export!(Plugin);
