//! `my-plugin` (mutator): sets environment variables on a run's job.
//!
//! Config: `{"env": {"NAME": "value", ...}}` (required object of strings).
//! Every container of a kubernetes job, or the process of a process job, gets
//! those variables (replacing ones of the same name).

use std::collections::BTreeMap;

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{
    BAD_JOB, Description, Job, Mutation, MutatorPlugin, Plugin, Refusal, Result, RunContext,
    Stats, k8s, log,
};

/// The parsed config.
pub struct Config {
    pub env: BTreeMap<String, String>,
}

pub struct MyPlugin;

impl Plugin for MyPlugin {
    type Config = Config;

    /// `weir plugin inspect` shows it; the host checks a binding's config
    /// against the schema before `parse_config` sees it.
    fn describe() -> Description {
        Description::new("my-plugin", "0.1.0", "sets environment variables on a run's job")
            .with_config_schema(json!({
                "type": "object",
                "required": ["env"],
                "properties": {
                    "env": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "additionalProperties": false
            }))
    }

    /// Called by `validate-config` when the plugin is bound, and before every
    /// decision. Reject unknown keys and wrong types, naming the key.
    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["env"])?;
        let env = cfg.required("env", cfg.string_map("env")?)?;
        Ok(Config { env })
    }
}

impl MutatorPlugin for MyPlugin {
    /// Change the job and return it: Weir computes the patch, checks it and
    /// records it. (`Mutation::Reject` refuses the run instead.)
    fn mutate(
        config: &Config,
        ctx: &RunContext,
        _stats: &dyn Stats,
        mut job: Job,
    ) -> Result<Mutation> {
        if job.is_kubernetes() {
            for container in job.containers_mut() {
                for (name, value) in &config.env {
                    if !k8s::set_env(container, name, value) {
                        return Err(Refusal::new(
                            BAD_JOB,
                            "a container's env is neither a list nor an object",
                        ));
                    }
                }
            }
        } else if let Some(env) = job.env_mut() {
            for (name, value) in &config.env {
                env.insert(name.clone(), Value::from(value.as_str()));
            }
        }
        log::info(
            "set environment",
            &[("run", &ctx.run_id), ("variables", &config.env.len())],
        );
        Ok(Mutation::Job(job))
    }
}

// Generates the `mutator-plugin` world's bindings and exports `MyPlugin`.
weir_plugin_sdk::export_mutator!(MyPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{PatchOp, StatsTable, run_mutator, validate_config};

    // The same files `weir plugin test` reads.
    const RUN: &str = include_str!("../run.json");
    const JOB: &str = include_str!("../job.json");
    const CFG: &str = include_str!("../config.json");

    #[test]
    fn sets_env_on_every_container() -> Result<()> {
        let ctx = RunContext::from_json(RUN)?;
        let mutation = run_mutator::<MyPlugin>(CFG, &ctx, &StatsTable::default(), JOB)?;
        let Mutation::Job(job) = mutation else {
            panic!("expected the changed job, got {mutation:?}");
        };
        let job = job.value();
        let env = &job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(
            env.as_array()
                .is_some_and(|e| e.contains(&json!({"name": "GREETING", "value": "hello"})))
        );
        Ok(())
    }

    #[test]
    fn process_jobs_get_env_too() -> Result<()> {
        let job = json!({"command": ["echo", "hi"]}).to_string();
        let mutation =
            run_mutator::<MyPlugin>(CFG, &RunContext::default(), &StatsTable::default(), &job)?;
        let Mutation::Job(job) = mutation else {
            panic!("expected the changed job, got {mutation:?}");
        };
        // The patch Weir will compute and record.
        assert_eq!(
            job.patch(),
            vec![PatchOp::add("/env", json!({"GREETING": "hello"}))]
        );
        Ok(())
    }

    #[test]
    fn bad_config_is_rejected() {
        assert!(validate_config::<MyPlugin>(CFG).is_ok());
        let err = validate_config::<MyPlugin>(r#"{"env": {"A": 1}}"#).map_err(|e| e.message);
        assert_eq!(
            err,
            Err("config key `env.A`: expected a string, got number 1".into())
        );
    }
}
