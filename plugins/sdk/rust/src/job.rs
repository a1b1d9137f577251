//! The rendered job a mutator receives, with helpers for both job kinds.
//!
//! * **kubernetes** pools: the job configuration, whose `job_manifest` is a
//!   `batch/v1` Job; its pod spec is `job_manifest.spec.template.spec`.
//! * **process** pools: the process spec: `command` (list of strings), `env`
//!   (object of strings), `working_dir`, `timeout_seconds`.
//!
//! Change the job through the helpers (or [`Job::value_mut`]) and return
//! `Mutation::Job(job)`: the host computes the patch from the job it passed
//! in. [`Job::patch`] gives the same RFC 6902 operations, for tests or to
//! return `Mutation::Patch`.

use serde_json::{Map, Value};

use crate::error::{BAD_JOB, Refusal, Result};
use crate::json::{object_entry, pointer_object, pointer_object_mut, type_name};
use crate::patch::{PatchOp, diff};

const POD_SPEC: [&str; 4] = ["job_manifest", "spec", "template", "spec"];

/// Which backend the job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Has an object `job_manifest`.
    Kubernetes,
    /// Has a `command` (and no `job_manifest`).
    Process,
    /// Neither.
    Unknown,
}

/// A job being mutated: the original and the working copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    original: Value,
    value: Value,
}

impl Job {
    /// Wraps a job given as a JSON value.
    pub fn new(value: Value) -> Self {
        Self {
            original: value.clone(),
            value,
        }
    }

    /// Parses the job's JSON text (it must be an object).
    pub fn parse(text: &str) -> Result<Self> {
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(Self::new(v)),
            Ok(other) => Err(Refusal::new(
                BAD_JOB,
                format!("job must be a JSON object, got {}", type_name(&other)),
            )),
            Err(e) => Err(Refusal::new(BAD_JOB, format!("job is not valid JSON: {e}"))),
        }
    }

    pub fn kind(&self) -> JobKind {
        if self.value.get("job_manifest").is_some_and(Value::is_object) {
            JobKind::Kubernetes
        } else if self.value.get("command").is_some() {
            JobKind::Process
        } else {
            JobKind::Unknown
        }
    }

    pub fn is_kubernetes(&self) -> bool {
        self.kind() == JobKind::Kubernetes
    }

    pub fn is_process(&self) -> bool {
        self.kind() == JobKind::Process
    }

    /// The job as given to the plugin.
    pub fn original(&self) -> &Value {
        &self.original
    }

    /// The working copy.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The working copy, to change freely.
    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    /// The Kubernetes Job manifest (`job_manifest`), if this is a kubernetes job.
    pub fn manifest_mut(&mut self) -> Option<&mut Map<String, Value>> {
        pointer_object_mut(&mut self.value, &POD_SPEC[..1])
    }

    /// The pod spec (`job_manifest.spec.template.spec`), if present.
    pub fn pod_spec(&self) -> Option<&Map<String, Value>> {
        pointer_object(&self.value, &POD_SPEC)
    }

    /// The pod spec (`job_manifest.spec.template.spec`), if present. It is not
    /// created when missing: a job without one has no containers to change.
    pub fn pod_spec_mut(&mut self) -> Option<&mut Map<String, Value>> {
        pointer_object_mut(&mut self.value, &POD_SPEC)
    }

    /// The pod's containers (`containers`, not `initContainers`) that are
    /// objects; empty for a job without a pod spec.
    pub fn containers(&self) -> Vec<&Map<String, Value>> {
        self.pod_spec()
            .and_then(|spec| spec.get("containers"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    }

    /// The pod's containers, mutably (see [`Job::containers`]). Use the
    /// [`crate::k8s`] helpers on each.
    pub fn containers_mut(&mut self) -> Vec<&mut Map<String, Value>> {
        self.pod_spec_mut()
            .and_then(|spec| spec.get_mut("containers"))
            .and_then(Value::as_array_mut)
            .map(|cs| cs.iter_mut().filter_map(Value::as_object_mut).collect())
            .unwrap_or_default()
    }

    /// A process job's `env` object, created when missing or `null`. `None`
    /// for a job that is not a process job, or whose `env` is not an object.
    /// Set values as JSON strings (`Value::from("1")`).
    pub fn env_mut(&mut self) -> Option<&mut Map<String, Value>> {
        if !self.is_process() {
            return None;
        }
        object_entry(self.value.as_object_mut()?, "env")
    }

    /// The working copy as JSON text (what `Mutation::Job` hands the host).
    pub fn to_json(&self) -> String {
        self.value.to_string()
    }

    /// The operations from the original job to the working copy.
    pub fn patch(&self) -> Vec<PatchOp> {
        diff(&self.original, &self.value)
    }

    /// The operations from the original job to the working copy.
    pub fn into_patch(self) -> Vec<PatchOp> {
        self.patch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::apply;
    use serde_json::json;

    fn k8s() -> Value {
        json!({
            "namespace": "default",
            "job_manifest": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": {
                    "containers": [{"name": "job", "image": "busybox"}, "junk", {"name": "side"}]
                }}}
            }
        })
    }

    #[test]
    fn kinds() {
        assert_eq!(Job::new(k8s()).kind(), JobKind::Kubernetes);
        assert_eq!(
            Job::new(json!({"command": ["true"]})).kind(),
            JobKind::Process
        );
        assert_eq!(Job::new(json!({"other": 1})).kind(), JobKind::Unknown);
        assert!(Job::parse("[1]").is_err());
        assert!(Job::parse("{").is_err());
    }

    #[test]
    fn containers_are_the_object_entries() {
        let mut job = Job::new(k8s());
        assert_eq!(job.containers().len(), 2);
        for c in job.containers_mut() {
            c.insert("x".into(), json!(1));
        }
        let ops = job.patch();
        assert_eq!(ops.len(), 2);
        let mut doc = k8s();
        apply(&mut doc, &ops).expect("applies");
        assert_eq!(&doc, job.value());
    }

    #[test]
    fn missing_pod_spec_is_not_created() {
        let mut job = Job::new(json!({"job_manifest": {"kind": "Job"}}));
        assert!(job.pod_spec_mut().is_none());
        assert!(job.containers_mut().is_empty());
        assert!(job.manifest_mut().is_some());
        assert!(job.into_patch().is_empty());
    }

    #[test]
    fn process_env_is_created() {
        let mut job = Job::new(json!({"command": ["true"]}));
        job.env_mut()
            .expect("process")
            .insert("A".into(), json!("1"));
        assert_eq!(
            job.into_patch(),
            vec![PatchOp::add("/env", json!({"A": "1"}))]
        );
        let mut job = Job::new(k8s());
        assert!(job.env_mut().is_none());
        let mut job = Job::new(json!({"command": ["true"], "env": []}));
        assert!(job.env_mut().is_none());
    }
}
