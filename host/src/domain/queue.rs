use chrono::{DateTime, Utc};
use serde::Serialize;

/// Every pool has a queue with this name; it cannot be deleted.
pub(crate) const DEFAULT_QUEUE: &str = "default";

/// A work queue inside a pool. Priority 1 is served first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queue {
    pub pool: String,
    pub name: String,
    pub priority: u32,
    pub concurrency_limit: Option<u32>,
    pub paused: bool,
    pub description: String,
    pub created_at: DateTime<Utc>,
}
