//! Good weir:plugin@0.2.0 router: adds the tag `pool-type-<type>` (from the
//! run resource's `pool-type`, which the host looks up when asked) and
//! `queued-<n>` (the pool's queued runs, from `stats.occupancy`), and routes
//! to `config.pool` when set. Describes itself with a config schema that
//! allows only `{"pool": string}`.

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "router-plugin" });

use exports::weir::plugin::plugin::Guest as PluginGuest;
use exports::weir::plugin::router::Guest as RouterGuest;
use weir::plugin::stats::occupancy;
use weir::plugin::types::{Description, PoolType, Refusal, Route, Run, Scope};

struct Plugin;

impl PluginGuest for Plugin {
    fn describe() -> Description {
        Description {
            name: "v2-router".into(),
            version: "1.0.0".into(),
            summary: "tags a run with its pool's type and load".into(),
            config_schema: Some(
                r#"{"type": "object", "properties": {"pool": {"type": "string"}}, "additionalProperties": false}"#
                    .into(),
            ),
        }
    }

    fn validate_config(_config: String) -> Result<(), Refusal> {
        Ok(())
    }
}

impl RouterGuest for Plugin {
    fn route(config: String, run: &Run) -> Result<Route, Refusal> {
        let config: serde_json::Value = serde_json::from_str(&config).map_err(|e| Refusal {
            code: "bad-config".into(),
            message: e.to_string(),
            details: None,
        })?;
        let kind = match run.pool_type() {
            Some(PoolType::Process) => "process",
            Some(PoolType::Kubernetes) => "kubernetes",
            None => "none",
        };
        let queued = occupancy(&Scope::Pool).queued;
        Ok(Route {
            pool: config["pool"].as_str().map(str::to_owned),
            queue: None,
            add_tags: vec![format!("pool-type-{kind}"), format!("queued-{queued}")],
        })
    }
}

export!(Plugin);
