//! Hostile router: adds `{"count": N}` distinct tags (default 100,000, about
//! 0.6 MB of text and 3 MB of host strings). The host must refuse them
//! before doing any work that grows with the count: 100,000 while copying
//! them out, a few over the tag bound by count.

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
    fn route(config: String, _ctx: RunContext) -> Result<Route, PluginError> {
        let count = config
            .split_once("\"count\":")
            .and_then(|(_, rest)| rest.trim_start().split(['}', ',', ' ']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        Ok(Route {
            pool: None,
            queue: None,
            add_tags: (0..count).map(|i| format!("t{i}")).collect(),
        })
    }
}

export!(Plugin);
