//! `my-plugin` (admission): at most N running runs per team.
//!
//! Config: `{"max_running_per_team": 2, "retry_seconds": 30}`. A run of a
//! team (its `team` label) that already has `max_running_per_team` runs
//! holding slots is deferred, to be judged again after `retry_seconds`
//! (default 30); a run without a `team` label is rejected.

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::Value;
use weir_plugin_sdk::{Admission, AdmissionPlugin, Plugin, PluginError, Result, RunContext, Stats, log};

/// The parsed config.
pub struct Config {
    pub max_running_per_team: u32,
    pub retry_seconds: u32,
}

pub struct MyPlugin;

impl Plugin for MyPlugin {
    type Config = Config;

    /// Called by `validate-config` when the plugin is bound, and before every
    /// decision. Reject unknown keys and wrong types, naming the key.
    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["max_running_per_team", "retry_seconds"])?;
        let max = cfg.required("max_running_per_team", cfg.u32("max_running_per_team")?)?;
        if max == 0 {
            return Err(cfg.error("max_running_per_team", "must be at least 1"));
        }
        let retry_seconds = cfg.u32("retry_seconds")?.unwrap_or(30);
        if !(1..=86_400).contains(&retry_seconds) {
            return Err(PluginError::new(
                "config key `retry_seconds`: must be 1 to 86400",
            ));
        }
        Ok(Config {
            max_running_per_team: max,
            retry_seconds,
        })
    }
}

impl AdmissionPlugin for MyPlugin {
    /// `stats` carries the counts of the run's team (its `team` label).
    fn admit(config: &Config, ctx: &RunContext, stats: &Stats) -> Result<Admission> {
        let Some(team) = ctx.label("team") else {
            return Ok(Admission::reject("the run has no `team` label"));
        };
        let limit = config.max_running_per_team;
        let now = stats.team_counts.running;
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
    use weir_plugin_sdk::{Counts, run_admission, validate_config};

    // The same files `weir plugin test` reads.
    const RUN: &str = include_str!("../run.json");
    const CFG: &str = include_str!("../config.json");

    fn team_running(running: u32) -> Stats {
        Stats {
            team: Some("a".into()),
            team_counts: Counts { running, queued: 0 },
            ..Stats::default()
        }
    }

    #[test]
    fn a_team_at_its_limit_waits() -> Result<()> {
        let ctx = RunContext::from_json(RUN)?;
        assert_eq!(
            run_admission::<MyPlugin>(CFG, &ctx, &team_running(2))?,
            Admission::defer(30, "team a has 2 runs running (at most 2)")
        );
        assert_eq!(
            run_admission::<MyPlugin>(CFG, &ctx, &team_running(1))?,
            Admission::Admit
        );
        Ok(())
    }

    #[test]
    fn a_run_without_a_team_is_rejected() -> Result<()> {
        let decision = run_admission::<MyPlugin>(CFG, &RunContext::default(), &Stats::default())?;
        assert_eq!(decision, Admission::reject("the run has no `team` label"));
        Ok(())
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(validate_config::<MyPlugin>(CFG).is_ok());
        assert!(validate_config::<MyPlugin>(r#"{"max_running_per_team": 0}"#).is_err());
        assert!(validate_config::<MyPlugin>(r#"{}"#).is_err());
    }
}
