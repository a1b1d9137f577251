//! `my-plugin` (mutator): sets environment variables on a run's job.
//!
//! Config: `{"env": {"NAME": "value", ...}}` (required object of strings).
//! Every container of a kubernetes job, or the process of a process job, gets
//! those variables (replacing ones of the same name).

use std::collections::BTreeMap;

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::Value;
use weir_plugin_sdk::{
    Job, MutatorPlugin, PatchOp, Plugin, PluginError, Result, RunContext, k8s, log,
};

/// The parsed config.
pub struct Config {
    pub env: BTreeMap<String, String>,
}

pub struct MyPlugin;

impl Plugin for MyPlugin {
    type Config = Config;

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
    /// Change the job, then return the difference as RFC 6902 operations.
    fn mutate(config: &Config, ctx: &RunContext, mut job: Job) -> Result<Vec<PatchOp>> {
        if job.is_kubernetes() {
            for container in job.containers_mut() {
                for (name, value) in &config.env {
                    if !k8s::set_env(container, name, value) {
                        return Err(PluginError::new(
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
        Ok(job.into_patch())
    }
}

// Generates the `mutator-plugin` world's bindings and exports `MyPlugin`.
weir_plugin_sdk::export_mutator!(MyPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::serde_json::json;
    use weir_plugin_sdk::{apply, run_mutator, validate_config};

    // The same files `weir plugin test` reads.
    const RUN: &str = include_str!("../run.json");
    const JOB: &str = include_str!("../job.json");
    const CFG: &str = include_str!("../config.json");

    #[test]
    fn sets_env_on_every_container() -> Result<()> {
        let ctx = RunContext::from_json(RUN)?;
        let ops = run_mutator::<MyPlugin>(CFG, &ctx, JOB)?;
        let mut job: Value = weir_plugin_sdk::serde_json::from_str(JOB)
            .map_err(|e| PluginError::new(e.to_string()))?;
        apply(&mut job, &ops)?;
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
        let ops = run_mutator::<MyPlugin>(CFG, &RunContext::default(), &job)?;
        assert_eq!(
            ops,
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
