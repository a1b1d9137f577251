//! `team-quota` (admission): caps how many runs of a team hold slots at once.
//!
//! A run whose team label (`team_label`, default `team`) names a team is
//! deferred for `defer_seconds` while that team has `max_running` or more
//! runs holding slots; the reason names the team and the counts. Runs without
//! the label are admitted. A team listed in `teams` uses its own
//! `max_running` / `defer_seconds`.
//!
//! The counts are asked of the host when needed
//! (`stats.occupancy(label(team_label, team))`, contract 0.2.0), for
//! whichever label `team_label` names; a run without the label asks nothing.
//!
//! Config:
//!
//! ```json
//! {"max_running": 5, "defer_seconds": 30, "team_label": "team",
//!  "teams": {"data": {"max_running": 10}}}
//! ```
//!
//! * `max_running` (required integer ≥ 0; 0 defers all of a team's runs).
//! * `defer_seconds` (optional integer ≥ 1, default 30).
//! * `team_label` (optional string, default `"team"`).
//! * `teams` (optional object): team → `{"max_running", "defer_seconds"}`,
//!   both optional, overriding the top-level values.

use std::collections::BTreeMap;

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{
    Admission, AdmissionPlugin, Description, Plugin, Result, RunContext, Scope, Stats, log,
};

/// One quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_running: u32,
    pub defer_seconds: u32,
}

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub default: Limit,
    pub team_label: String,
    pub teams: BTreeMap<String, Limit>,
}

impl Config {
    pub fn limit(&self, team: &str) -> Limit {
        self.teams.get(team).copied().unwrap_or(self.default)
    }
}

const DEFAULT_DEFER_SECONDS: u32 = 30;

fn defer_seconds(obj: &ConfigObject<'_>) -> Result<Option<u32>> {
    match obj.u32("defer_seconds")? {
        Some(0) => Err(obj.error("defer_seconds", "must be at least 1")),
        other => Ok(other),
    }
}

pub struct TeamQuota;

impl Plugin for TeamQuota {
    type Config = Config;

    fn describe() -> Description {
        let limit = json!({
            "type": "object",
            "properties": {
                "max_running": {"type": "integer", "minimum": 0, "maximum": 4_294_967_295u64},
                "defer_seconds": {"type": "integer", "minimum": 1, "maximum": 86_400}
            },
            "additionalProperties": false
        });
        let mut root = limit.clone();
        root["required"] = json!(["max_running"]);
        root["properties"]["team_label"] = json!({"type": "string", "minLength": 1});
        root["properties"]["teams"] = json!({"type": "object", "additionalProperties": limit});
        Description::new(
            "team-quota",
            "1.0.0",
            "caps how many runs of a team hold slots at once",
        )
        .with_config_schema(root)
    }

    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["max_running", "defer_seconds", "team_label", "teams"])?;
        let default = Limit {
            max_running: cfg.required("max_running", cfg.u32("max_running")?)?,
            defer_seconds: defer_seconds(&cfg)?.unwrap_or(DEFAULT_DEFER_SECONDS),
        };
        let teams = cfg
            .object_map("teams")?
            .unwrap_or_default()
            .into_iter()
            .map(|(name, team)| {
                team.allow_only(&["max_running", "defer_seconds"])?;
                let limit = Limit {
                    max_running: team.u32("max_running")?.unwrap_or(default.max_running),
                    defer_seconds: defer_seconds(&team)?.unwrap_or(default.defer_seconds),
                };
                Ok((name, limit))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Config {
            default,
            team_label: cfg
                .non_empty_str("team_label")?
                .unwrap_or("team")
                .to_owned(),
            teams,
        })
    }
}

impl AdmissionPlugin for TeamQuota {
    fn admit(config: &Config, ctx: &RunContext, stats: &dyn Stats) -> Result<Admission> {
        let Some(team) = ctx.label(&config.team_label) else {
            return Ok(Admission::Admit);
        };
        let limit = config.limit(team);
        let counts = stats.occupancy(&Scope::label(&config.team_label, team));
        if counts.running < limit.max_running {
            return Ok(Admission::Admit);
        }
        log::info(
            "team at its quota",
            &[
                ("team", &team),
                ("running", &counts.running),
                ("max_running", &limit.max_running),
            ],
        );
        Ok(Admission::defer(
            limit.defer_seconds,
            format!(
                "team {team:?} has {} running runs (limit {}) and {} queued; retrying in {}s",
                counts.running, limit.max_running, counts.queued, limit.defer_seconds
            ),
        ))
    }
}

weir_plugin_sdk::export_admission!(TeamQuota);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{Counts, StatsTable, run_admission, validate_config};

    const CONFIG: &str =
        r#"{"max_running": 2, "defer_seconds": 15, "teams": {"big": {"max_running": 10}}}"#;

    fn ctx(team: Option<&str>) -> RunContext {
        RunContext {
            labels: team
                .map(|t| ("team".to_owned(), t.to_owned()))
                .into_iter()
                .collect(),
            ..RunContext::default()
        }
    }

    /// The host's answers: `team` runs with that label hold slots or wait.
    fn stats(team: Option<&str>, running: u32, queued: u32) -> StatsTable {
        match team {
            Some(team) => {
                StatsTable::default().with_label("team", team, Counts { running, queued })
            }
            None => StatsTable::default(),
        }
    }

    fn decide(config: &str, ctx: &RunContext, stats: &StatsTable) -> Admission {
        match run_admission::<TeamQuota>(config, ctx, stats) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn below_the_limit_admits() {
        assert_eq!(
            decide(CONFIG, &ctx(Some("a")), &stats(Some("a"), 1, 7)),
            Admission::Admit
        );
    }

    #[test]
    fn at_the_limit_defers_with_team_and_counts() {
        assert_eq!(
            decide(CONFIG, &ctx(Some("a")), &stats(Some("a"), 2, 3)),
            Admission::defer(
                15,
                "team \"a\" has 2 running runs (limit 2) and 3 queued; retrying in 15s"
            )
        );
    }

    #[test]
    fn per_team_overrides() {
        assert_eq!(
            decide(CONFIG, &ctx(Some("big")), &stats(Some("big"), 9, 0)),
            Admission::Admit
        );
        assert_eq!(
            decide(CONFIG, &ctx(Some("big")), &stats(Some("big"), 10, 0)),
            Admission::defer(
                15,
                "team \"big\" has 10 running runs (limit 10) and 0 queued; retrying in 15s"
            )
        );
    }

    #[test]
    fn runs_without_a_team_are_admitted() {
        assert_eq!(
            decide(CONFIG, &ctx(None), &stats(None, 100, 100)),
            Admission::Admit
        );
    }

    #[test]
    fn zero_defers_everything_and_default_delay() {
        assert_eq!(
            decide(
                r#"{"max_running": 0}"#,
                &ctx(Some("a")),
                &stats(Some("a"), 0, 0)
            ),
            Admission::defer(
                30,
                "team \"a\" has 0 running runs (limit 0) and 0 queued; retrying in 30s"
            )
        );
    }

    #[test]
    fn any_label_is_counted_and_only_when_needed() {
        let cfg = r#"{"max_running": 1, "team_label": "squad"}"#;
        let c = RunContext {
            labels: [("squad".to_owned(), "x".to_owned())].into_iter().collect(),
            ..RunContext::default()
        };
        let asked = StatsTable::default().with_label(
            "squad",
            "x",
            Counts {
                running: 1,
                queued: 0,
            },
        );
        assert!(matches!(decide(cfg, &c, &asked), Admission::Defer { .. }));
        assert_eq!(asked.asked(), vec![Scope::label("squad", "x")]);
        // A run without the label is admitted without a question.
        let none = StatsTable::default();
        assert_eq!(decide(cfg, &ctx(Some("a")), &none), Admission::Admit);
        assert!(none.asked().is_empty());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |c: &str| validate_config::<TeamQuota>(c).map_err(|e| e.message).err();
        assert_eq!(err(CONFIG), None);
        assert_eq!(
            err("{}").as_deref(),
            Some("config: missing key `max_running`")
        );
        assert_eq!(
            err(r#"{"max_running": "5"}"#).as_deref(),
            Some(
                "config key `max_running`: expected an integer from 0 to 4294967295, got string \"5\""
            )
        );
        assert_eq!(
            err(r#"{"max_running": 5, "defer": 1}"#).as_deref(),
            Some(
                "config: unknown key `defer` (allowed: max_running, defer_seconds, team_label, teams)"
            )
        );
        assert_eq!(
            err(r#"{"max_running": 5, "defer_seconds": 0}"#).as_deref(),
            Some("config key `defer_seconds`: must be at least 1")
        );
        assert_eq!(
            err(r#"{"max_running": 5, "teams": {"a": {"max": 1}}}"#).as_deref(),
            Some("config: unknown key `teams.a.max` (allowed: max_running, defer_seconds)")
        );
        assert_eq!(
            err(r#"{"max_running": 5, "teams": {"a": {"max_running": -1}}}"#).as_deref(),
            Some(
                "config key `teams.a.max_running`: expected an integer from 0 to 4294967295, got number -1"
            )
        );
        assert_eq!(
            err(r#"{"max_running": 5, "team_label": ""}"#).as_deref(),
            Some("config key `team_label`: must not be empty")
        );
    }
}
