use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The world a plugin component targets, detected from its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// `router-plugin`: may choose the pool and queue and add tags.
    Router,
    /// `admission-plugin`: admits, rejects or defers a run.
    Admission,
    /// `mutator-plugin`: patches the rendered job.
    Mutator,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Router => "router",
            World::Admission => "admission",
            World::Mutator => "mutator",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One uploaded version of a named plugin. The bytes are stored once per
/// digest, so replicas and versions share them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginVersion {
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub world: World,
    pub wit_version: String,
    pub size: u64,
    pub created_at: DateTime<Utc>,
}

/// What happens to a run when its plugin fails (trap, timeout, bad output,
/// plugin error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The run is rejected (admission, router) or failed (mutator).
    #[default]
    FailClosed,
    /// The plugin is skipped, and that is recorded.
    FailOpen,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail-closed",
            OnError::FailOpen => "fail-open",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fail-closed" => Some(OnError::FailClosed),
            "fail-open" => Some(OnError::FailOpen),
            _ => None,
        }
    }
}

/// Whether a binding's decisions count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingMode {
    /// Its decision counts (routes, admits, patches the job).
    #[default]
    Enforce,
    /// It judges live runs and its decision is recorded beside the
    /// enforced one's, but it never changes a run, and its failures never
    /// fail one.
    Shadow,
}

impl BindingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingMode::Enforce => "enforce",
            BindingMode::Shadow => "shadow",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(BindingMode::Enforce),
            "shadow" => Some(BindingMode::Shadow),
            _ => None,
        }
    }
}

/// A plugin bound to a pool (admission, mutator) or to the global router
/// chain (`pool` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginBinding {
    pub id: i64,
    pub pool: Option<String>,
    pub plugin: String,
    /// `None`: follows the newest version.
    pub pinned_version: Option<u32>,
    pub config: Value,
    pub order: i32,
    pub on_error: OnError,
    pub deadline_ms: u32,
    pub memory_mb: u32,
    pub created_at: DateTime<Utc>,
    pub mode: BindingMode,
}
