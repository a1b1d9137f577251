use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How often a failed or crashed run is tried again, and after how long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default)]
    pub max: u32,
    #[serde(default)]
    pub delay_seconds: u32,
}

/// A named, reusable way to create runs in a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub name: String,
    pub pool: String,
    pub queue: Option<String>,
    pub job_variables: Map<String, Value>,
    pub tags: Vec<String>,
    pub parameters: Map<String, Value>,
    pub description: String,
    /// The team whose submitter tokens may create runs of it (`host/src/auth/`).
    pub team: Option<String>,
    pub retries: RetryPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
