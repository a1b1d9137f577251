//! `my-plugin` (admission): at most N running runs per team.
//!
//! Config: `{"max_running_per_team": 2, "retry_seconds": 30}`. A run of a
//! team (its `team` label) that already has `max_running_per_team` runs
//! holding slots is deferred, to be judged again after `retry_seconds`
//! (default 30); a run without a `team` label is rejected with the code
//! `missing-team`.

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{
    Admission, AdmissionPlugin, Description, Plugin, Refusal, Result, RunContext, Scope, Stats,
    log,
};

/// The parsed config.
pub struct Config {
    pub max_running_per_team: u32,
    pub retry_seconds: u32,
}

pub struct MyPlugin;

impl Plugin for MyPlugin {
    type Config = Config;

    /// `weir plugin inspect` shows it; the host checks a binding's config
    /// against the schema before `parse_config` sees it.
    fn describe() -> Description {
        Description::new("my-plugin", "0.1.0", "at most N running runs per team")
            .with_config_schema(json!({
                "type": "object",
                "required": ["max_running_per_team"],
                "properties": {
                    "max_running_per_team": {"type": "integer", "minimum": 1},
                    "retry_seconds": {"type": "integer", "minimum": 1, "maximum": 86_400}
                },
                "additionalProperties": false
            }))
    }

    /// Called by `validate-config` when the plugin is bound, and before every
    /// decision. Reject what the schema cannot say, naming the key.
    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["max_running_per_team", "retry_seconds"])?;
        let max = cfg.required("max_running_per_team", cfg.u32("max_running_per_team")?)?;
        if max == 0 {
            return Err(cfg.error("max_running_per_team", "must be at least 1"));
        }
        let retry_seconds = cfg.u32("retry_seconds")?.unwrap_or(30);
        if !(1..=86_400).contains(&retry_seconds) {
            return Err(cfg.error("retry_seconds", "must be 1 to 86400"));
        }
        Ok(Config {
            max_running_per_team: max,
            retry_seconds,
        })
    }
}

impl AdmissionPlugin for MyPlugin {
    /// `stats` answers occupancy questions (asked of the host, only when
    /// asked): here, the runs with the run's `team` label.
    fn admit(config: &Config, ctx: &RunContext, stats: &dyn Stats) -> Result<Admission> {
        let Some(team) = ctx.label("team") else {
            return Ok(Admission::Reject(
                Refusal::new("missing-team", "the run has no `team` label")
                    .with_details(json!({"labels": ctx.labels})),
            ));
        };
        let limit = config.max_running_per_team;
        let now = stats.occupancy(&Scope::label("team", team)).running;
        if now >= limit {
            let reason = format!("team {team} has {now} runs running (at most {limit})");
            log::info("deferred", &[("reason", &reason)]);
            return Ok(Admission::defer(config.retry_seconds, reason));
        }
        Ok(Admission::Admit)
    }
}

// Generates the `admission-plugin` world's bindings and exports `MyPlugin`.
weir_plugin_sdk::export_admission!(MyPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{Counts, StatsTable, run_admission, validate_config};

    // The same files `weir plugin test --ctx run.json --stats stats.json
    // --config config.json` reads.
    const RUN: &str = include_str!("../run.json");
    const STATS: &str = include_str!("../stats.json");
    const CFG: &str = include_str!("../config.json");

    #[test]
    fn a_team_at_its_limit_waits() -> Result<()> {
        let ctx = RunContext::from_json(RUN)?;
        assert_eq!(
            run_admission::<MyPlugin>(CFG, &ctx, &StatsTable::from_json(STATS)?)?,
            Admission::defer(30, "team a has 2 runs running (at most 2)")
        );
        let one = StatsTable::default().with_label("team", "a", Counts { running: 1, queued: 0 });
        assert_eq!(run_admission::<MyPlugin>(CFG, &ctx, &one)?, Admission::Admit);
        assert_eq!(one.asked(), vec![Scope::label("team", "a")]);
        Ok(())
    }

    #[test]
    fn a_run_without_a_team_is_rejected() -> Result<()> {
        let decision =
            run_admission::<MyPlugin>(CFG, &RunContext::default(), &StatsTable::default())?;
        let Admission::Reject(refusal) = decision else {
            panic!("expected a rejection, got {decision:?}");
        };
        assert_eq!(refusal.code, "missing-team");
        Ok(())
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(validate_config::<MyPlugin>(CFG).is_ok());
        assert!(validate_config::<MyPlugin>(r#"{"max_running_per_team": 0}"#).is_err());
        assert!(validate_config::<MyPlugin>(r#"{}"#).is_err());
    }
}
