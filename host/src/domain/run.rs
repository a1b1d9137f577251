use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{RetryPolicy, RunState};

pub(crate) type RunId = Uuid;

/// The names of who or what causes a state change, recorded in the history
/// (`HistoryEntry::cause`; plugins add `router:NAME` and the like).
pub(crate) struct Cause;

impl Cause {
    pub(crate) const API: &'static str = "api";
    pub(crate) const SCHEDULER: &'static str = "scheduler";
    pub(crate) const BACKEND: &'static str = "backend";
    pub(crate) const LAUNCHER: &'static str = "launcher";
    pub(crate) const RECOVERY: &'static str = "recovery";
    pub(crate) const PIPELINE: &'static str = "pipeline";
}

/// One line of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub state: RunState,
    pub at: DateTime<Utc>,
    pub message: String,
    pub cause: String,
    /// Structured detail: a plugin's name, version, decision and timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// Where a run's job comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RunSource {
    /// Rendered from the pool's base job template with the deployment's and
    /// the run's job variables.
    Deployment(String),
    /// A job configuration supplied whole by the caller (a process command or
    /// a Kubernetes Job manifest); only finalised, not templated.
    Raw(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: RunId,
    pub state: RunState,
    pub state_message: String,
    pub pool: String,
    pub queue: String,
    pub deployment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Value>,
    pub tags: Vec<String>,
    /// The merged `labels` job variable (deployment, then run).
    pub labels: Map<String, Value>,
    pub parameters: Map<String, Value>,
    pub job_variables: Map<String, Value>,
    pub parent_run_id: Option<RunId>,
    pub idempotency_key: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// 1 for the first try, incremented on each retry.
    pub attempt: u32,
    pub retries: RetryPolicy,
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
}

impl Run {
    pub fn source(&self) -> RunSource {
        match (&self.deployment, &self.job) {
            (_, Some(job)) => RunSource::Raw(job.clone()),
            (Some(d), None) => RunSource::Deployment(d.clone()),
            // Creation guarantees one or the other.
            (None, None) => RunSource::Raw(Value::Object(Map::new())),
        }
    }
}
