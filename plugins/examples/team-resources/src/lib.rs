//! `team-resources` (mutator): per-team default and maximum container
//! resources.
//!
//! For a run whose team label (`team_label`, default `team`) names a
//! configured team, every container of its kubernetes job gets:
//!
//! * requests and limits above the team's `max` lowered to the max;
//! * a missing request set to the team's `default` (but not above the
//!   container's limit, which Kubernetes would refuse);
//! * a missing limit set to the team's `default` (but not below the
//!   container's request).
//!
//! Quantities are compared numerically (`500m`, `2`, `1.5Gi`, `1e3`, ...);
//! values are written as the config spells them. Runs without the label, of
//! unconfigured teams, and process jobs get their job back unchanged. The
//! plugin returns the whole changed job (`weir:plugin@0.2.0`); the host
//! computes, checks and records the patch.
//!
//! Config:
//!
//! ```json
//! {
//!   "teams": {
//!     "data": {"default": {"cpu": "500m", "memory": "512Mi"}, "max": {"cpu": "2", "memory": "4Gi"}}
//!   },
//!   "team_label": "team"
//! }
//! ```
//!
//! * `teams` (required object): team name → `{"default": {...}, "max": {...}}`,
//!   both optional objects of resource name → quantity (string or number);
//!   a default above the team's max is refused.
//! * `team_label` (optional string, default `"team"`).

use std::collections::BTreeMap;

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::{Map, Value, json};
use weir_plugin_sdk::{
    BAD_CONFIG, BAD_JOB, Description, Job, Mutation, MutatorPlugin, Plugin, Quantity, Refusal,
    Result, RunContext, Stats, k8s, log,
};

/// One team's resources, by resource name (`cpu`, `memory`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamResources {
    pub default: BTreeMap<String, Quantity>,
    pub max: BTreeMap<String, Quantity>,
}

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub teams: BTreeMap<String, TeamResources>,
    pub team_label: String,
}

fn quantities(obj: &ConfigObject<'_>, key: &str) -> Result<BTreeMap<String, Quantity>> {
    let Some(map) = obj.object(key)? else {
        return Ok(BTreeMap::new());
    };
    map.entries()
        .filter(|(_, v)| !v.is_null())
        .map(|(name, v)| {
            Quantity::from_json(v)
                .map(|q| (name.clone(), q))
                .map_err(|e| map.error(name, e.message))
        })
        .collect()
}

pub struct TeamResourcesPlugin;

impl Plugin for TeamResourcesPlugin {
    type Config = Config;

    fn describe() -> Description {
        let quantities = json!({
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "null"]}
        });
        Description::new(
            "team-resources",
            "1.0.0",
            "per-team default and maximum container resources",
        )
        .with_config_schema(json!({
            "type": "object",
            "required": ["teams"],
            "properties": {
                "teams": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"default": quantities, "max": quantities},
                        "additionalProperties": false
                    }
                },
                "team_label": {"type": "string", "minLength": 1}
            },
            "additionalProperties": false
        }))
    }

    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["teams", "team_label"])?;
        let team_label = cfg
            .non_empty_str("team_label")?
            .unwrap_or("team")
            .to_owned();
        let teams = cfg.required("teams", cfg.object_map("teams")?)?;
        let teams = teams
            .into_iter()
            .map(|(name, team)| {
                team.allow_only(&["default", "max"])?;
                let resources = TeamResources {
                    default: quantities(&team, "default")?,
                    max: quantities(&team, "max")?,
                };
                for (resource, default) in &resources.default {
                    if let Some(max) = resources.max.get(resource)
                        && default > max
                    {
                        return Err(Refusal::new(
                            BAD_CONFIG,
                            format!(
                                "config key `{}.default.{resource}`: {default} is above the team's max {max}",
                                team.path()
                            ),
                        ));
                    }
                }
                Ok((name, resources))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(Config { teams, team_label })
    }
}

/// Reads `section[resource]` of a container: `None` when absent, `null` or `""`.
fn current(
    section: Option<&Map<String, Value>>,
    resource: &str,
    container: &str,
    what: &str,
) -> Result<Option<Quantity>> {
    match section.and_then(|s| s.get(resource)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(v) => Quantity::from_json(v).map(Some).map_err(|e| {
            e.context(format!(
                "container `{container}`: resources.{what}.{resource}"
            ))
        }),
    }
}

/// What to write for one resource of one container: `(new request, new limit)`,
/// `None` meaning "leave it".
pub fn adjust(
    team: &TeamResources,
    resource: &str,
    request: Option<&Quantity>,
    limit: Option<&Quantity>,
) -> (Option<Quantity>, Option<Quantity>) {
    let max = team.max.get(resource);
    let default = team.default.get(resource);
    let clamp = |q: &Quantity| -> Quantity {
        match max {
            Some(m) if q > m => m.clone(),
            _ => q.clone(),
        }
    };
    let new_limit_clamped = limit.map(clamp);
    let new_request_clamped = request.map(clamp);
    let request_out = match (&new_request_clamped, default) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(d)) => Some(match &new_limit_clamped {
            Some(l) if l < d => l.clone(),
            _ => d.clone(),
        }),
        (None, None) => None,
    };
    let limit_out = match (&new_limit_clamped, default) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(d)) => Some(match &request_out {
            Some(r) if r > d => r.clone(),
            _ => d.clone(),
        }),
        (None, None) => None,
    };
    let changed = |new: Option<Quantity>, old: Option<&Quantity>| match (new, old) {
        (Some(n), Some(o)) if n.as_str() == o.as_str() => None,
        (n, _) => n,
    };
    (changed(request_out, request), changed(limit_out, limit))
}

impl MutatorPlugin for TeamResourcesPlugin {
    fn mutate(
        config: &Config,
        ctx: &RunContext,
        _stats: &dyn Stats,
        mut job: Job,
    ) -> Result<Mutation> {
        if !job.is_kubernetes() {
            return Ok(Mutation::Job(job));
        }
        let Some(team_name) = ctx.label(&config.team_label) else {
            return Ok(Mutation::Job(job));
        };
        let Some(team) = config.teams.get(team_name) else {
            return Ok(Mutation::Job(job));
        };
        let resources: Vec<&String> = {
            let mut r: Vec<&String> = team.default.keys().chain(team.max.keys()).collect();
            r.sort();
            r.dedup();
            r
        };
        for container in job.containers_mut() {
            let name = k8s::container_name(container).to_owned();
            for resource in &resources {
                let request = current(
                    k8s::resources(container, "requests"),
                    resource,
                    &name,
                    "requests",
                )?;
                let limit = current(
                    k8s::resources(container, "limits"),
                    resource,
                    &name,
                    "limits",
                )?;
                let (new_request, new_limit) =
                    adjust(team, resource, request.as_ref(), limit.as_ref());
                for (section, new, old) in [
                    ("requests", new_request, request),
                    ("limits", new_limit, limit),
                ] {
                    let Some(new) = new else { continue };
                    let target = k8s::resources_mut(container, section).ok_or_else(|| {
                        Refusal::new(
                            BAD_JOB,
                            format!("container `{name}`: resources.{section} is not an object"),
                        )
                    })?;
                    target.insert((*resource).clone(), Value::from(new.as_str()));
                    let old = old.as_ref().map_or("none", Quantity::as_str);
                    log::info(
                        "adjusted container resources",
                        &[
                            ("team", &team_name),
                            ("container", &name),
                            ("resource", resource),
                            ("section", &section),
                            ("from", &old),
                            ("to", &new),
                        ],
                    );
                }
            }
        }
        Ok(Mutation::Job(job))
    }
}

weir_plugin_sdk::export_mutator!(TeamResourcesPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{Mutation, PatchOp, StatsTable, apply, run_mutator, validate_config};

    const CONFIG: &str = r#"{
        "teams": {
            "a": {"default": {"cpu": "500m", "memory": "512Mi"}, "max": {"cpu": "2", "memory": "4Gi"}},
            "b": {"max": {"cpu": 1}}
        }
    }"#;

    fn job(containers: Value) -> Value {
        json!({"job_manifest": {"kind": "Job", "spec": {"template": {"spec": {"containers": containers}}}}})
    }

    fn ctx(team: Option<&str>) -> RunContext {
        RunContext {
            labels: team
                .map(|t| ("team".to_owned(), t.to_owned()))
                .into_iter()
                .collect(),
            ..RunContext::default()
        }
    }

    /// The patch from the job given to the job returned.
    fn patch_of(config: &str, ctx: &RunContext, job: &str) -> Result<Vec<PatchOp>> {
        match run_mutator::<TeamResourcesPlugin>(config, ctx, &StatsTable::default(), job)? {
            Mutation::Job(job) => Ok(job.patch()),
            other => panic!("expected a job, got {other:?}"),
        }
    }

    fn ok<T>(r: Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn resources_after(config: &str, ctx: &RunContext, containers: Value) -> Value {
        let before = job(containers);
        let ops = ok(patch_of(config, ctx, &before.to_string()));
        let mut after = before;
        ok(apply(&mut after, &ops));
        let cs = &after["job_manifest"]["spec"]["template"]["spec"]["containers"];
        Value::Array(
            cs.as_array()
                .map(|cs| cs.iter().map(|c| c["resources"].clone()).collect())
                .unwrap_or_default(),
        )
    }

    #[test]
    fn missing_resources_get_the_default() {
        let r = resources_after(CONFIG, &ctx(Some("a")), json!([{"name": "job"}]));
        assert_eq!(
            r,
            json!([{"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}])
        );
    }

    #[test]
    fn values_above_max_are_clamped_numerically() {
        let r = resources_after(
            CONFIG,
            &ctx(Some("a")),
            json!([{"name": "job", "resources": {
                "requests": {"cpu": "3000m", "memory": "1Gi"},
                "limits": {"cpu": 4, "memory": "5000Mi"}
            }}]),
        );
        assert_eq!(
            r,
            json!([{"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}])
        );
    }

    #[test]
    fn values_within_bounds_are_kept() {
        let containers = json!([{"name": "job", "resources": {
            "requests": {"cpu": "1", "memory": "4096Mi"},
            "limits": {"cpu": "2000m", "memory": "4Gi"}
        }}]);
        let before = job(containers);
        let ops = ok(patch_of(CONFIG, &ctx(Some("a")), &before.to_string()));
        assert!(ops.is_empty(), "{ops:?}");
    }

    #[test]
    fn defaults_respect_the_other_side() {
        // A limit below the default caps the filled-in request; a request
        // above the default raises the filled-in limit.
        let r = resources_after(
            CONFIG,
            &ctx(Some("a")),
            json!([
                {"name": "small", "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}}},
                {"name": "big", "resources": {"requests": {"cpu": "1500m", "memory": "8Gi"}}}
            ]),
        );
        assert_eq!(
            r,
            json!([
                {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
                {"requests": {"cpu": "1500m", "memory": "4Gi"}, "limits": {"cpu": "1500m", "memory": "4Gi"}}
            ])
        );
    }

    #[test]
    fn max_only_team_clamps_without_filling() {
        let r = resources_after(
            CONFIG,
            &ctx(Some("b")),
            json!([{"name": "job", "resources": {"requests": {"cpu": "2"}}}, {"name": "none"}]),
        );
        assert_eq!(r, json!([{"requests": {"cpu": "1"}}, null]));
    }

    #[test]
    fn other_runs_and_process_jobs_get_no_ops() {
        let k8s = job(json!([{"name": "job"}])).to_string();
        for c in [ctx(None), ctx(Some("zzz"))] {
            assert!(ok(patch_of(CONFIG, &c, &k8s)).is_empty());
        }
        let process = json!({"command": ["true"]}).to_string();
        assert!(ok(patch_of(CONFIG, &ctx(Some("a")), &process)).is_empty());
    }

    #[test]
    fn team_label_is_configurable() {
        let cfg = r#"{"teams": {"x": {"default": {"cpu": "1"}}}, "team_label": "squad"}"#;
        let c = RunContext {
            labels: [("squad".to_owned(), "x".to_owned())].into_iter().collect(),
            ..RunContext::default()
        };
        let r = resources_after(cfg, &c, json!([{"name": "job"}]));
        assert_eq!(
            r,
            json!([{"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}])
        );
        assert!(
            ok(patch_of(
                cfg,
                &ctx(Some("x")),
                &job(json!([{}])).to_string()
            ))
            .is_empty()
        );
    }

    #[test]
    fn bad_quantities_in_the_job_are_errors() {
        let k8s =
            job(json!([{"name": "job", "resources": {"limits": {"cpu": "lots"}}}])).to_string();
        let err = patch_of(CONFIG, &ctx(Some("a")), &k8s).expect_err("bad");
        assert_eq!(
            err.message,
            "container `job`: resources.limits.cpu: \"lots\" is not a Kubernetes quantity: it does not start with a number"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |c: &str| {
            validate_config::<TeamResourcesPlugin>(c)
                .map_err(|e| e.message)
                .err()
        };
        assert_eq!(err(CONFIG), None);
        assert_eq!(err("{}").as_deref(), Some("config: missing key `teams`"));
        assert_eq!(
            err(r#"{"teams": {}, "label": "x"}"#).as_deref(),
            Some("config: unknown key `label` (allowed: teams, team_label)")
        );
        assert_eq!(
            err(r#"{"teams": {"a": {"defaults": {}}}}"#).as_deref(),
            Some("config: unknown key `teams.a.defaults` (allowed: default, max)")
        );
        assert_eq!(
            err(r#"{"teams": {"a": {"max": {"cpu": "two"}}}}"#).as_deref(),
            Some(
                "config key `teams.a.max.cpu`: \"two\" is not a Kubernetes quantity: it does not start with a number"
            )
        );
        assert_eq!(
            err(r#"{"teams": {"a": {"max": {"cpu": true}}}}"#).as_deref(),
            Some(
                "config key `teams.a.max.cpu`: true is not a Kubernetes quantity: expected a string or a number"
            )
        );
        assert_eq!(
            err(r#"{"teams": {"a": {"default": {"cpu": "3"}, "max": {"cpu": "2"}}}}"#).as_deref(),
            Some("config key `teams.a.default.cpu`: 3 is above the team's max 2")
        );
        assert_eq!(
            err(r#"{"teams": {"a": []}}"#).as_deref(),
            Some("config key `teams.a`: expected an object, got array []")
        );
        assert_eq!(
            err(r#"{"teams": {}, "team_label": 5}"#).as_deref(),
            Some("config key `team_label`: expected a string, got number 5")
        );
    }

    #[test]
    fn adjust_keeps_identical_spelling() {
        let team = TeamResources {
            default: BTreeMap::new(),
            max: [("cpu".to_owned(), ok(Quantity::parse("2")))]
                .into_iter()
                .collect(),
        };
        let two_k = ok(Quantity::parse("2000m"));
        // Equal to the max in another spelling: not above, left alone.
        assert_eq!(adjust(&team, "cpu", Some(&two_k), None), (None, None));
    }
}
