use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// A Scheduled run this long past its time turns Late; `None`: the
    /// server's `late_after_seconds`.
    pub late_after_seconds: Option<u32>,
    /// What happens to a run of this queue when it turns Late.
    pub late_action: LateAction,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// What a queue does with a run that turns Late.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LateAction {
    /// It stays Late and runs when it can (the default).
    #[default]
    Keep,
    /// It is cancelled, with how late it was as the reason (e.g. a nightly
    /// run hours late that should not run at noon).
    Cancel,
}

impl LateAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LateAction::Keep => "keep",
            LateAction::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(LateAction::Keep),
            "cancel" => Some(LateAction::Cancel),
            _ => None,
        }
    }
}
