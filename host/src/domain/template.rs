//! The base job template as a noun: its two parts and which backend it is
//! for. Checking, resolving, rendering and finalising it are `template/`'s.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which backend a template (and its finalised job) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// A local process: `{"command": [...], "env": {...}, "working_dir", "timeout_seconds"}`.
    Process,
    /// A Kubernetes `batch/v1` Job: `{"job_manifest": {...}, "namespace": ...}`.
    Kubernetes,
}

/// A Prefect-compatible base job template.
///
/// Deserializing goes through [`BaseJobTemplate::from_value`], so a deserialized template has
/// always been checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct BaseJobTemplate {
    /// The job configuration with `{{ placeholder }}` strings.
    pub job_configuration: Value,
    /// A JSON Schema (type object) declaring the variables in `properties`.
    pub variables: Value,
}
