//! `gpu-node-selector` (mutator): puts GPU runs on GPU nodes.
//!
//! A run wants GPUs when it is tagged `tag` (default `gpu`), or its parameter
//! or job variable `gpu` is `true`, or its parameter or job variable `gpus` is
//! a positive integer N (the job variable wins over the parameter). Its
//! kubernetes job then gets, in the pod spec, the configured `nodeSelector`
//! entries (merged over existing ones) and `tolerations` (appended unless
//! already there), and on every container `resources.limits[resource] = N`
//! (default 1; a container that also requests the resource gets the same
//! request, as Kubernetes requires for extended resources).
//!
//! Runs that do not want GPUs, and process jobs, get their job back
//! unchanged. The plugin returns the whole changed job
//! (`weir:plugin@0.2.0`); the host computes, checks and records the patch.
//! A bad `gpu`/`gpus` value is a refusal to decide with the code
//! `bad-gpu-request` (the binding's on-error policy applies). The Python and
//! JavaScript versions next to it (`python/app.py`, `js/plugin.js`) make the
//! same changes and the same refusals.
//!
//! Config (all keys optional):
//!
//! ```json
//! {
//!   "tag": "gpu",
//!   "node_selector": {"nvidia.com/gpu.present": "true"},
//!   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
//!   "resource": "nvidia.com/gpu"
//! }
//! ```
//!
//! * `tag` (string, default `"gpu"`): the tag that asks for one GPU.
//! * `node_selector` (object of strings, default `{}`).
//! * `tolerations` (list of Kubernetes tolerations, default `[]`): keys
//!   `key`, `operator` (`Exists`/`Equal`), `value`, `effect`
//!   (`NoSchedule`/`PreferNoSchedule`/`NoExecute`), `tolerationSeconds`.
//! * `resource` (string, default `"nvidia.com/gpu"`): the extended resource
//!   to limit.

use std::collections::BTreeMap;

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::json::{array_entry, object_entry, short};
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{
    BAD_JOB, Description, Job, Mutation, MutatorPlugin, Plugin, Refusal, Result, RunContext, Stats,
    k8s, log,
};

/// The parsed config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tag: String,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Value>,
    pub resource: String,
}

const TOLERATION_KEYS: [&str; 5] = ["key", "operator", "value", "effect", "tolerationSeconds"];

pub struct GpuNodeSelector;

impl Plugin for GpuNodeSelector {
    type Config = Config;

    fn describe() -> Description {
        Description::new("gpu-node-selector", "1.0.0", "puts GPU runs on GPU nodes")
            .with_config_schema(json!({
                "type": "object",
                "properties": {
                    "tag": {"type": "string", "minLength": 1},
                    "node_selector": {"type": "object", "additionalProperties": {"type": "string"}},
                    "tolerations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "key": {"type": "string"},
                                "operator": {"enum": ["Exists", "Equal"]},
                                "value": {"type": "string"},
                                "effect": {"enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]},
                                "tolerationSeconds": {"type": "integer"}
                            },
                            "additionalProperties": false
                        }
                    },
                    "resource": {"type": "string", "minLength": 1}
                },
                "additionalProperties": false
            }))
    }

    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["tag", "node_selector", "tolerations", "resource"])?;
        let tolerations = cfg.objects("tolerations")?.unwrap_or_default();
        for t in &tolerations {
            t.allow_only(&TOLERATION_KEYS)?;
            t.str("key")?;
            t.str("value")?;
            if let Some(op) = t.str("operator")?
                && !["Exists", "Equal"].contains(&op)
            {
                return Err(t.error("operator", format!("must be Exists or Equal, got {op:?}")));
            }
            if let Some(effect) = t.str("effect")?
                && !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
            {
                return Err(t.error(
                    "effect",
                    format!("must be NoSchedule, PreferNoSchedule or NoExecute, got {effect:?}"),
                ));
            }
            if let Some(v) = t.get("tolerationSeconds")
                && !(v.is_i64() || v.is_u64())
            {
                return Err(t.error(
                    "tolerationSeconds",
                    format!("expected an integer, got {}", short(v)),
                ));
            }
        }
        Ok(Config {
            tag: cfg.non_empty_str("tag")?.unwrap_or("gpu").to_owned(),
            node_selector: cfg.string_map("node_selector")?.unwrap_or_default(),
            tolerations: config
                .get("tolerations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            resource: cfg
                .non_empty_str("resource")?
                .unwrap_or("nvidia.com/gpu")
                .to_owned(),
        })
    }
}

/// The code of a run whose `gpu` or `gpus` cannot be read.
pub const BAD_GPU_REQUEST: &str = "bad-gpu-request";

/// How many GPUs the run wants (0: none).
pub fn wanted_gpus(config: &Config, ctx: &RunContext) -> Result<u32> {
    if let Some((source, v)) = ctx.setting("gpus") {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n.map(u32::try_from) {
            Some(Ok(0)) => {}
            Some(Ok(n)) => return Ok(n),
            _ => {
                return Err(Refusal::new(
                    BAD_GPU_REQUEST,
                    format!(
                        "{source} `gpus` must be a non-negative integer, got {}",
                        short(v)
                    ),
                ));
            }
        }
    }
    let flagged = match ctx.setting("gpu") {
        None => false,
        Some((_, Value::Bool(b))) => *b,
        Some((_, Value::String(s))) if s == "true" || s == "false" => s == "true",
        Some((source, v)) => {
            return Err(Refusal::new(
                BAD_GPU_REQUEST,
                format!("{source} `gpu` must be true or false, got {}", short(v)),
            ));
        }
    };
    Ok(u32::from(flagged || ctx.has_tag(&config.tag)))
}

impl MutatorPlugin for GpuNodeSelector {
    fn mutate(
        config: &Config,
        ctx: &RunContext,
        _stats: &dyn Stats,
        mut job: Job,
    ) -> Result<Mutation> {
        if !job.is_kubernetes() {
            return Ok(Mutation::Job(job));
        }
        let gpus = wanted_gpus(config, ctx)?;
        if gpus == 0 {
            return Ok(Mutation::Job(job));
        }
        let Some(spec) = job.pod_spec_mut() else {
            log::warn("kubernetes job has no pod spec; nothing to do", &[]);
            return Ok(Mutation::Job(job));
        };
        if !config.node_selector.is_empty() {
            let selector = object_entry(spec, "nodeSelector").ok_or_else(|| {
                Refusal::new(BAD_JOB, "the pod spec's nodeSelector is not an object")
            })?;
            for (k, v) in &config.node_selector {
                selector.insert(k.clone(), Value::from(v.as_str()));
            }
        }
        if !config.tolerations.is_empty() {
            let tolerations = array_entry(spec, "tolerations")
                .ok_or_else(|| Refusal::new(BAD_JOB, "the pod spec's tolerations is not a list"))?;
            for t in &config.tolerations {
                if !tolerations.contains(t) {
                    tolerations.push(t.clone());
                }
            }
        }
        let amount = Value::from(gpus.to_string());
        for container in job.containers_mut() {
            let name = k8s::container_name(container).to_owned();
            let bad = || {
                Refusal::new(
                    BAD_JOB,
                    format!("container `{name}`: resources are not objects"),
                )
            };
            let limits = k8s::resources_mut(container, "limits").ok_or_else(bad)?;
            limits.insert(config.resource.clone(), amount.clone());
            let requested = k8s::resources(container, "requests")
                .is_some_and(|r| r.contains_key(&config.resource));
            if requested {
                let requests = k8s::resources_mut(container, "requests").ok_or_else(bad)?;
                requests.insert(config.resource.clone(), amount.clone());
            }
        }
        log::info(
            "placed GPU run",
            &[("gpus", &gpus), ("resource", &config.resource)],
        );
        Ok(Mutation::Job(job))
    }
}

weir_plugin_sdk::export_mutator!(GpuNodeSelector);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{StatsTable, run_mutator, validate_config};

    const CONFIG: &str = r#"{
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    }"#;

    fn k8s_job() -> Value {
        json!({
            "namespace": "default",
            "job_manifest": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": {
                    "nodeSelector": {"zone": "a"},
                    "containers": [
                        {"name": "job", "image": "busybox", "resources": {"limits": {"cpu": "1"}}},
                        {"name": "side", "image": "busybox", "resources": {"requests": {"nvidia.com/gpu": "4"}}}
                    ]
                }}}
            }
        })
    }

    fn ctx(tags: &[&str], parameters: Value, job_variables: Value) -> RunContext {
        RunContext {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            job_variables: job_variables.as_object().cloned().unwrap_or_default(),
            ..RunContext::default()
        }
    }

    /// The job the host would run.
    fn mutate(config: &str, ctx: &RunContext, job: &Value) -> Result<Value> {
        let mutation =
            run_mutator::<GpuNodeSelector>(config, ctx, &StatsTable::default(), &job.to_string())?;
        Ok(mutation.job(job)?.unwrap_or_default())
    }

    fn ok<T>(r: Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn tagged_run_gets_selector_tolerations_and_one_gpu() {
        let job = ok(mutate(
            CONFIG,
            &ctx(&["gpu"], json!({}), json!({})),
            &k8s_job(),
        ));
        let spec = &job["job_manifest"]["spec"]["template"]["spec"];
        assert_eq!(
            spec["nodeSelector"],
            json!({"zone": "a", "nvidia.com/gpu.present": "true"})
        );
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
        );
        assert_eq!(
            spec["containers"][0]["resources"]["limits"],
            json!({"cpu": "1", "nvidia.com/gpu": "1"})
        );
        assert_eq!(
            spec["containers"][1]["resources"]["limits"],
            json!({"nvidia.com/gpu": "1"})
        );
        assert_eq!(
            spec["containers"][1]["resources"]["requests"],
            json!({"nvidia.com/gpu": "1"})
        );
    }

    #[test]
    fn gpus_parameter_sets_the_count() {
        let job = ok(mutate(
            CONFIG,
            &ctx(&[], json!({"gpus": 2}), json!({})),
            &k8s_job(),
        ));
        let c = &job["job_manifest"]["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["resources"]["limits"]["nvidia.com/gpu"], json!("2"));
        assert_eq!(c[1]["resources"]["limits"]["nvidia.com/gpu"], json!("2"));
    }

    #[test]
    fn job_variable_wins_over_parameter() {
        let cfg = ok(GpuNodeSelector::parse_config(&json!({})));
        let c = ctx(&[], json!({"gpus": 2}), json!({"gpus": "3"}));
        assert_eq!(ok(wanted_gpus(&cfg, &c)), 3);
        let c = ctx(&[], json!({"gpu": true}), json!({}));
        assert_eq!(ok(wanted_gpus(&cfg, &c)), 1);
        let c = ctx(&["gpu"], json!({"gpus": 0}), json!({}));
        assert_eq!(ok(wanted_gpus(&cfg, &c)), 1);
        let c = ctx(&[], json!({"gpus": 0, "gpu": false}), json!({}));
        assert_eq!(ok(wanted_gpus(&cfg, &c)), 0);
    }

    #[test]
    fn bad_gpu_values_are_errors() {
        let cfg = ok(GpuNodeSelector::parse_config(&json!({})));
        let err =
            wanted_gpus(&cfg, &ctx(&[], json!({"gpus": -1}), json!({}))).expect_err("negative");
        assert_eq!(
            err.to_string(),
            "[bad-gpu-request] parameter `gpus` must be a non-negative integer, got -1"
        );
        let err =
            wanted_gpus(&cfg, &ctx(&[], json!({}), json!({"gpu": "yes"}))).expect_err("string");
        assert_eq!(
            err.message,
            "job variable `gpu` must be true or false, got \"yes\""
        );
        assert!(wanted_gpus(&cfg, &ctx(&[], json!({"gpus": 1.5}), json!({}))).is_err());
    }

    #[test]
    fn non_gpu_runs_and_process_jobs_are_unchanged() {
        let none = ok(mutate(
            CONFIG,
            &ctx(&["cpu"], json!({"gpu": false}), json!({})),
            &k8s_job(),
        ));
        assert_eq!(none, k8s_job());
        let process = json!({"command": ["nvidia-smi"], "env": {}});
        let same = ok(mutate(
            CONFIG,
            &ctx(&["gpu"], json!({}), json!({})),
            &process,
        ));
        assert_eq!(same, process);
    }

    #[test]
    fn configurable_tag_and_existing_toleration_not_duplicated() {
        let cfg = r#"{"tag": "cuda", "tolerations": [{"key": "k", "operator": "Exists"}], "resource": "amd.com/gpu"}"#;
        let mut job = k8s_job();
        job["job_manifest"]["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "k", "operator": "Exists"}]);
        assert_eq!(
            ok(mutate(cfg, &ctx(&["gpu"], json!({}), json!({})), &job)),
            job
        );
        let out = ok(mutate(cfg, &ctx(&["cuda"], json!({}), json!({})), &job));
        let spec = &out["job_manifest"]["spec"]["template"]["spec"];
        assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(1));
        assert_eq!(spec["nodeSelector"], json!({"zone": "a"}));
        assert_eq!(
            spec["containers"][0]["resources"]["limits"]["amd.com/gpu"],
            json!("1")
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |c: &str| {
            validate_config::<GpuNodeSelector>(c)
                .map_err(|e| e.message)
                .err()
        };
        assert_eq!(err(CONFIG), None);
        assert_eq!(err(""), None);
        assert_eq!(
            err(r#"{"nodeSelector": {}}"#).as_deref(),
            Some(
                "config: unknown key `nodeSelector` (allowed: tag, node_selector, tolerations, resource)"
            )
        );
        assert_eq!(
            err(r#"{"node_selector": {"a": true}}"#).as_deref(),
            Some("config key `node_selector.a`: expected a string, got boolean true")
        );
        assert_eq!(
            err(r#"{"tolerations": [{"key": "k", "operator": "Maybe"}]}"#).as_deref(),
            Some("config key `tolerations[0].operator`: must be Exists or Equal, got \"Maybe\"")
        );
        assert_eq!(
            err(r#"{"tolerations": [{"keys": "k"}]}"#).as_deref(),
            Some(
                "config: unknown key `tolerations[0].keys` (allowed: key, operator, value, effect, tolerationSeconds)"
            )
        );
        assert!(err(r#"{"tolerations": [{"effect": "Sometimes"}]}"#).is_some());
        assert!(err(r#"{"tolerations": [{"tolerationSeconds": "5"}]}"#).is_some());
        assert!(err(r#"{"tag": 1}"#).is_some());
        assert!(err(r#"{"resource": ""}"#).is_some());
    }
}
