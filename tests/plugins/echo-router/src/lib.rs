//! Good router: routes to the pool named in its config, `{"pool": "..."}`, and
//! tags the run `routed`. Without a `pool` key it keeps the current choice.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "router-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::router::Guest as Router;
use weir::plugin::log::{Level, log};
use weir::plugin::types::{PluginError, Route, RunContext};

struct Plugin;

fn pool_from(config: &str) -> Result<Option<String>, PluginError> {
    let value: serde_json::Value = serde_json::from_str(config).map_err(|e| PluginError {
        message: format!("config is not JSON: {e}"),
    })?;
    match value.get("pool") {
        None => Ok(None),
        Some(serde_json::Value::String(pool)) => Ok(Some(pool.clone())),
        Some(_) => Err(PluginError {
            message: "config key \"pool\" must be a string".to_string(),
        }),
    }
}

impl Config for Plugin {
    fn validate_config(config: String) -> Result<(), PluginError> {
        pool_from(&config).map(|_| ())
    }
}

impl Router for Plugin {
    fn route(config: String, ctx: RunContext) -> Result<Route, PluginError> {
        let pool = pool_from(&config)?;
        log(
            Level::Info,
            "routing",
            &[
                ("from".to_string(), ctx.pool),
                ("to".to_string(), pool.clone().unwrap_or_default()),
            ],
        );
        Ok(Route {
            pool,
            queue: None,
            add_tags: vec!["routed".to_string()],
        })
    }
}

export!(Plugin);
