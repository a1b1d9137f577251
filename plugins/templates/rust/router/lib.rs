//! `my-plugin` (router): sends tagged runs to a pool.
//!
//! Config: `{"tag": "gpu", "pool": "gpu", "queue": "default"}` (`queue`
//! optional). Runs that carry the tag `tag` go to the pool `pool` (and the
//! queue `queue`, if set); others keep the pool and queue they have.

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{Description, Plugin, Result, Route, RouterPlugin, RunContext, Stats, log};

/// The parsed config.
pub struct Config {
    pub tag: String,
    pub pool: String,
    pub queue: Option<String>,
}

pub struct MyPlugin;

impl Plugin for MyPlugin {
    type Config = Config;

    /// `weir plugin inspect` shows it; the host checks a binding's config
    /// against the schema before `parse_config` sees it.
    fn describe() -> Description {
        let name = json!({"type": "string", "minLength": 1});
        Description::new("my-plugin", "0.1.0", "sends tagged runs to a pool").with_config_schema(
            json!({
                "type": "object",
                "required": ["tag", "pool"],
                "properties": {"tag": name, "pool": name, "queue": name},
                "additionalProperties": false
            }),
        )
    }

    /// Called by `validate-config` when the plugin is bound, and before every
    /// decision. Reject unknown keys and wrong types, naming the key.
    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["tag", "pool", "queue"])?;
        Ok(Config {
            tag: cfg.required("tag", cfg.non_empty_str("tag")?)?.to_owned(),
            pool: cfg.required("pool", cfg.non_empty_str("pool")?)?.to_owned(),
            queue: cfg.non_empty_str("queue")?.map(str::to_owned),
        })
    }
}

impl RouterPlugin for MyPlugin {
    /// The pool and queue for the run (unset: keep the current one).
    /// `stats` answers occupancy questions, if a rule needs the load.
    fn route(config: &Config, ctx: &RunContext, _stats: &dyn Stats) -> Result<Route> {
        if !ctx.has_tag(&config.tag) {
            return Ok(Route::unchanged());
        }
        log::info("routed", &[("pool", &config.pool)]);
        Ok(Route {
            pool: Some(config.pool.clone()),
            queue: config.queue.clone(),
            add_tags: Vec::new(),
        })
    }
}

// Generates the `router-plugin` world's bindings and exports `MyPlugin`.
weir_plugin_sdk::export_router!(MyPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{StatsTable, run_router, validate_config};

    // The same files `weir plugin test` reads.
    const RUN: &str = include_str!("../run.json");
    const CFG: &str = include_str!("../config.json");

    #[test]
    fn a_tagged_run_goes_to_the_pool() -> Result<()> {
        let route = run_router::<MyPlugin>(CFG, &RunContext::from_json(RUN)?, &StatsTable::default())?;
        assert_eq!(route.pool.as_deref(), Some("gpu"));
        assert_eq!(route.queue, None);
        Ok(())
    }

    #[test]
    fn an_untagged_run_stays_where_it_is() -> Result<()> {
        let route = run_router::<MyPlugin>(CFG, &RunContext::default(), &StatsTable::default())?;
        assert_eq!(route, Route::unchanged());
        Ok(())
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(validate_config::<MyPlugin>(CFG).is_ok());
        let err = validate_config::<MyPlugin>(r#"{"tag": "gpu"}"#).map_err(|e| e.message);
        assert!(err.is_err_and(|m| m.contains("pool")));
    }
}
