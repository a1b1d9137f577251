//! Good admission plugin: admits every run. Its `validate-config` refuses a
//! config that is not a JSON object or that has the key `"bad"`.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "admission-plugin" });

use exports::weir::plugin::admission::Guest as AdmissionGuest;
use exports::weir::plugin::config::Guest as Config;
use weir::plugin::log::{Level, log};
use weir::plugin::types::{Admission, PluginError, RunContext, Stats};

struct Plugin;

impl Config for Plugin {
    fn validate_config(config: String) -> Result<(), PluginError> {
        let value: serde_json::Value = serde_json::from_str(&config).map_err(|e| PluginError {
            message: format!("config is not JSON: {e}"),
        })?;
        let Some(object) = value.as_object() else {
            return Err(PluginError {
                message: "config must be a JSON object".to_string(),
            });
        };
        if object.contains_key("bad") {
            return Err(PluginError {
                message: "config key \"bad\" is not allowed".to_string(),
            });
        }
        Ok(())
    }
}

impl AdmissionGuest for Plugin {
    fn admit(_config: String, ctx: RunContext, stats: Stats) -> Result<Admission, PluginError> {
        log(
            Level::Debug,
            "admitting",
            &[
                ("run".to_string(), ctx.run_id),
                ("pool_running".to_string(), stats.pool.running.to_string()),
            ],
        );
        Ok(Admission::Admit)
    }
}

export!(Plugin);
