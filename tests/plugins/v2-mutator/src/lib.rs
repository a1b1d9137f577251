//! weir:plugin@0.2.0 mutator. By its config's `mode`:
//! - `"job"` (default): returns the whole job with `env.MUTATED = "job"` and
//!   `env.POOL_TYPE` from the run resource (the host computes the patch);
//! - `"patch"`: the same change as one RFC 6902 op;
//! - `"reject"`: rejects the run with a structured refusal;
//! - `"forbidden-job"`: returns the whole job with `env.WEIR_RUN_ID` changed
//!   (the host's forbidden-path rule refuses it, as for a patch);
//! - `"not-json"`: returns job text that is not JSON.

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "mutator-plugin" });

use exports::weir::plugin::mutator::Guest as MutatorGuest;
use exports::weir::plugin::plugin::Guest as PluginGuest;
use weir::plugin::types::{Description, Mutation, PatchKind, PatchOp, PoolType, Refusal, Run};

struct Plugin;

impl PluginGuest for Plugin {
    fn describe() -> Description {
        Description {
            name: "v2-mutator".into(),
            version: "0.3.0".into(),
            summary: "marks the job; or rejects the run".into(),
            config_schema: Some(
                r#"{"type": "object", "properties": {"mode": {"enum": ["job", "patch", "reject", "forbidden-job", "not-json"]}}}"#
                    .into(),
            ),
        }
    }

    fn validate_config(_config: String) -> Result<(), Refusal> {
        Ok(())
    }
}

impl MutatorGuest for Plugin {
    fn mutate(config: String, run: &Run, job: String) -> Result<Mutation, Refusal> {
        let config: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
        let mut job: serde_json::Value = serde_json::from_str(&job).map_err(|e| Refusal {
            code: "bad-job".into(),
            message: e.to_string(),
            details: None,
        })?;
        let pool_type = match run.pool_type() {
            Some(PoolType::Process) => "process",
            Some(PoolType::Kubernetes) => "kubernetes",
            None => "none",
        };
        Ok(match config["mode"].as_str().unwrap_or("job") {
            "patch" => Mutation::Patch(vec![PatchOp {
                op: PatchKind::Add,
                path: "/env/MUTATED".into(),
                from: None,
                value: Some("\"patch\"".into()),
            }]),
            "reject" => Mutation::Reject(Refusal {
                code: "image-not-allowed".into(),
                message: format!("run {} may not run here", run.id()),
                details: Some(r#"{"allowed": ["registry.example.com"]}"#.into()),
            }),
            "forbidden-job" => {
                job["env"]["WEIR_RUN_ID"] = "someone-else".into();
                Mutation::Job(job.to_string())
            }
            "not-json" => Mutation::Job("{not json".into()),
            _ => {
                job["env"]["MUTATED"] = "job".into();
                job["env"]["POOL_TYPE"] = pool_type.into();
                Mutation::Job(job.to_string())
            }
        })
    }
}

export!(Plugin);
