//! The host's side of the plugin contract: version-neutral types that the
//! rest of Weir uses. Each WIT binding module (`v0_1_0`, ...) converts between
//! these and its generated types, so callers never see a WIT version.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use crate::domain::World;

/// What one plugin call may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for instantiation plus the call, enforced by epoch
    /// interruption inside wasm; the only imports that can block, WASI's
    /// clock waits, end at it too (`call::DeadlineClock`).
    pub deadline: Duration,
    /// Linear memory the instance may grow to. The pooling allocator's slot
    /// size (64 MiB) caps it when pooling is in use.
    pub memory_bytes: usize,
    /// Total bytes of strings the plugin may return (patch values, reasons,
    /// tags, error messages). The hostcall fuel is this plus an allowance
    /// for the records themselves, so what is over it is refused while it is
    /// copied out of the guest.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(50),
            memory_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
        }
    }
}

/// What a plugin knows about the run it judges (WIT `run-context`).
///
/// Deserialisable so that `weir plugin test --ctx run.json` can read one; the
/// fields a test rarely cares about default to empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunContext {
    pub run_id: String,
    #[serde(default)]
    pub deployment: Option<String>,
    pub pool: String,
    pub queue: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "empty_object")]
    pub parameters: serde_json::Value,
    #[serde(default = "empty_object")]
    pub job_variables: serde_json::Value,
    #[serde(default)]
    pub parent_run: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A router's decision: `None` keeps the current choice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub pool: Option<String>,
    pub queue: Option<String>,
    pub add_tags: Vec<String>,
}

/// Run counts for one pool, queue, tag or team.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Runs holding slots (Pending, Running, Cancelling).
    pub running: u32,
    /// Runs waiting (Scheduled, Late, AwaitingRetry).
    pub queued: u32,
}

/// What an admission plugin knows about current load (WIT `stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stats {
    pub pool: Counts,
    pub queue: Counts,
    pub tags: Vec<(String, Counts)>,
    /// The run's `team` label, and the counts of runs with that label.
    pub team: Option<String>,
    pub team_counts: Counts,
}

/// An admission plugin's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Admission {
    Admit,
    Reject {
        reason: String,
    },
    /// Judge the run again after `seconds`.
    Defer {
        seconds: u32,
        reason: String,
    },
}

/// One RFC 6902 operation as a plugin returned it, before the host checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PatchOp {
    pub(crate) op: PatchKind,
    pub(crate) path: String,
    pub(crate) from: Option<String>,
    /// JSON text, for add, replace and test.
    pub(crate) value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl PatchKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PatchKind::Add => "add",
            PatchKind::Remove => "remove",
            PatchKind::Replace => "replace",
            PatchKind::Move => "move",
            PatchKind::Copy => "copy",
            PatchKind::Test => "test",
        }
    }
}

/// The most patch operations a mutator may return in one decision.
pub(super) const MAX_PATCH_OPS: usize = 1024;
/// The longest an admission plugin may defer a run in one decision; a longer
/// deferral is cut to this (and the history says so).
pub(crate) const MAX_DEFER_SECONDS: u32 = 24 * 60 * 60;
/// Reasons (reject, defer) and plugin error messages are clipped to this.
pub(super) const MAX_REASON_BYTES: usize = 1024;

/// What a plugin returned, checked before the host does anything with it.
pub(crate) trait Output {
    /// Bytes of text, checked against [`Limits::max_output_bytes`] before
    /// the host parses any of it.
    fn output_bytes(&self) -> usize;

    /// Refuses counts over the contract's bounds and clips reasons, so no
    /// later step does work that grows with an unbounded count.
    fn bound(&mut self) -> Result<(), String> {
        Ok(())
    }
}

impl Output for () {
    fn output_bytes(&self) -> usize {
        0
    }
}

impl Output for Route {
    fn output_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        opt(&self.pool) + opt(&self.queue) + self.add_tags.iter().map(String::len).sum::<usize>()
    }

    fn bound(&mut self) -> Result<(), String> {
        let tags = self.add_tags.len();
        if tags > crate::domain::MAX_TAGS {
            return Err(format!(
                "the router added {tags} tags; a run carries at most {}",
                crate::domain::MAX_TAGS
            ));
        }
        Ok(())
    }
}

impl Output for Admission {
    fn output_bytes(&self) -> usize {
        match self {
            Admission::Admit => 0,
            Admission::Reject { reason } | Admission::Defer { reason, .. } => reason.len(),
        }
    }

    fn bound(&mut self) -> Result<(), String> {
        if let Admission::Reject { reason } | Admission::Defer { reason, .. } = self
            && reason.len() > MAX_REASON_BYTES
        {
            *reason = super::call::clip(reason, MAX_REASON_BYTES).into_owned();
        }
        Ok(())
    }
}

impl Output for Vec<PatchOp> {
    fn output_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.iter()
            .map(|op| op.path.len() + opt(&op.from) + opt(&op.value))
            .sum()
    }

    fn bound(&mut self) -> Result<(), String> {
        if self.len() > MAX_PATCH_OPS {
            return Err(format!(
                "the mutator returned {} patch operations; at most {MAX_PATCH_OPS} are accepted",
                self.len()
            ));
        }
        Ok(())
    }
}
