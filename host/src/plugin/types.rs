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

/// A plugin's structured refusal (WIT 0.2.0 `refusal`): of a run (a reject)
/// or to decide (its `err`). A 0.1.0 plugin gives only a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// Machine-readable: 1 to 64 of `a-z`, `0-9` and `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// A JSON object, as the plugin gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Refusal {
    /// A refusal with only a message (what a 0.1.0 plugin can say).
    pub(crate) fn message(message: String) -> Self {
        Refusal {
            code: None,
            message,
            details: None,
        }
    }

    /// Text bytes, for the output cap.
    pub(super) fn output_bytes(&self) -> usize {
        refusal_bytes(self.code.as_deref(), &self.message, self.details.as_ref())
    }

    /// Clips the message to [`MAX_REASON_BYTES`].
    pub(super) fn clip(&mut self) {
        if self.message.len() > MAX_REASON_BYTES {
            self.message = super::call::clip(&self.message, MAX_REASON_BYTES).into_owned();
        }
    }

    /// Checks a guest's refusal as WIT 0.2.0 bounds it: the code's alphabet
    /// and length, and details that are a JSON object of at most
    /// [`MAX_DETAILS_BYTES`]. The message is clipped, not refused.
    pub(super) fn checked(
        code: String,
        message: String,
        details: Option<String>,
    ) -> Result<Self, String> {
        let code_ok = !code.is_empty()
            && code.len() <= MAX_CODE_BYTES
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !code_ok {
            return Err(format!(
                "refusal code {:?} is not 1 to {MAX_CODE_BYTES} of a-z, 0-9 and '-'",
                super::call::clip(&code, 80)
            ));
        }
        let details = match details {
            None => None,
            Some(text) if text.len() > MAX_DETAILS_BYTES => {
                return Err(format!(
                    "refusal details are {} bytes; at most {MAX_DETAILS_BYTES} are accepted",
                    text.len()
                ));
            }
            Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v @ serde_json::Value::Object(_)) => Some(v),
                Ok(_) => return Err("refusal details are not a JSON object".into()),
                Err(e) => return Err(format!("refusal details are not JSON: {e}")),
            },
        };
        let mut refusal = Refusal {
            code: Some(code),
            message,
            details,
        };
        refusal.clip();
        Ok(refusal)
    }
}

/// Text bytes of a refusal's parts (a reject's, or a refusal to decide).
fn refusal_bytes(code: Option<&str>, message: &str, details: Option<&serde_json::Value>) -> usize {
    code.map_or(0, str::len) + message.len() + details.map_or(0, |d| d.to_string().len())
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "[{code}] {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What a plugin may ask the host during a decision (WIT 0.2.0 `stats`,
/// `run.pool-type`), answered when asked. The pipeline's implementation
/// reads the store; `weir plugin test`'s reads a file.
#[async_trait::async_trait]
pub trait Lookup: Send + Sync {
    async fn occupancy(&self, scope: &Scope) -> Result<Counts, String>;
    /// The type of pool `pool`, or `None` if there is no such pool.
    async fn pool_type(&self, pool: &str) -> Result<Option<crate::domain::PoolType>, String>;
}

/// What an occupancy question is about, resolved: the run's pool and queue
/// by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Pool(String),
    Queue { pool: String, queue: String },
    Tag(String),
    Label { key: String, value: String },
}

/// An answer for every question from fixed counts: `weir plugin test
/// --stats`. What the file does not name counts zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixedStats {
    pub pool: Counts,
    pub queue: Counts,
    pub tags: BTreeMap<String, Counts>,
    /// Label key → value → counts.
    pub labels: BTreeMap<String, BTreeMap<String, Counts>>,
    /// The pool's type; default `process`.
    pub pool_type: Option<crate::domain::PoolType>,
}

impl From<&Stats> for FixedStats {
    /// The same counts, as answers (the team's as the `team` label's).
    fn from(stats: &Stats) -> Self {
        let mut labels = BTreeMap::new();
        if let Some(team) = &stats.team {
            labels.insert(
                "team".to_owned(),
                BTreeMap::from([(team.clone(), stats.team_counts)]),
            );
        }
        FixedStats {
            pool: stats.pool,
            queue: stats.queue,
            tags: stats.tags.iter().cloned().collect(),
            labels,
            pool_type: None,
        }
    }
}

#[async_trait::async_trait]
impl Lookup for FixedStats {
    async fn occupancy(&self, scope: &Scope) -> Result<Counts, String> {
        Ok(match scope {
            Scope::Pool(_) => self.pool,
            Scope::Queue { .. } => self.queue,
            Scope::Tag(t) => self.tags.get(t).copied().unwrap_or_default(),
            Scope::Label { key, value } => self
                .labels
                .get(key)
                .and_then(|values| values.get(value))
                .copied()
                .unwrap_or_default(),
        })
    }

    async fn pool_type(&self, _pool: &str) -> Result<Option<crate::domain::PoolType>, String> {
        Ok(Some(
            self.pool_type.unwrap_or(crate::domain::PoolType::Process),
        ))
    }
}

/// The fixed counts a 0.1.0 admission plugin is given, asked of `lookup`:
/// the pool, the queue, each of the run's tags and its `team` label.
pub(crate) async fn stats_for(ctx: &RunContext, lookup: &dyn Lookup) -> Result<Stats, String> {
    let pool = lookup.occupancy(&Scope::Pool(ctx.pool.clone())).await?;
    let queue = lookup
        .occupancy(&Scope::Queue {
            pool: ctx.pool.clone(),
            queue: ctx.queue.clone(),
        })
        .await?;
    let mut tags = Vec::with_capacity(ctx.tags.len());
    for t in &ctx.tags {
        tags.push((t.clone(), lookup.occupancy(&Scope::Tag(t.clone())).await?));
    }
    let team = ctx.labels.get("team").cloned();
    let team_counts = match &team {
        Some(value) => {
            lookup
                .occupancy(&Scope::Label {
                    key: "team".into(),
                    value: value.clone(),
                })
                .await?
        }
        None => Counts::default(),
    };
    Ok(Stats {
        pool,
        queue,
        tags,
        team,
        team_counts,
    })
}

/// An admission plugin's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Admission {
    Admit,
    /// `code` and `details` come from a 0.2.0 plugin's structured refusal.
    Reject {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
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

/// A mutator's answer before the host checks it (WIT 0.2.0 `mutation`; a
/// 0.1.0 mutator always gives a patch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// The whole changed job, as JSON text.
    Job(String),
    Patch(Vec<PatchOp>),
    Reject(Refusal),
}

/// A mutator's checked outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutated {
    /// The changed job, and the patch that made it (an RFC 6902 array, for
    /// the run's history), whether the plugin gave the patch or the job.
    Job {
        job: serde_json::Value,
        patch: serde_json::Value,
    },
    /// The plugin rejected the run.
    Reject(Refusal),
}

/// What a plugin says about itself (WIT 0.2.0 `describe`), checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub summary: String,
    /// A JSON Schema that compiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
}

/// Bounds of a description's fields.
pub(super) const MAX_DESCRIPTION_NAME_BYTES: usize = 128;
pub(super) const MAX_DESCRIPTION_VERSION_BYTES: usize = 64;
pub(super) const MAX_CONFIG_SCHEMA_BYTES: usize = 64 << 10;
/// A refusal's code and details (WIT 0.2.0).
pub(super) const MAX_CODE_BYTES: usize = 64;
pub(super) const MAX_DETAILS_BYTES: usize = 16 << 10;
/// Distinct occupancy questions one decision may ask (WIT 0.2.0 `stats`).
pub(super) const MAX_OCCUPANCY_QUESTIONS: usize = 64;

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
            Admission::Reject {
                reason,
                code,
                details,
            } => refusal_bytes(code.as_deref(), reason, details.as_ref()),
            Admission::Defer { reason, .. } => reason.len(),
        }
    }

    fn bound(&mut self) -> Result<(), String> {
        if let Admission::Reject { reason, .. } | Admission::Defer { reason, .. } = self
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

impl Output for Mutation {
    fn output_bytes(&self) -> usize {
        match self {
            Mutation::Job(text) => text.len(),
            Mutation::Patch(ops) => ops.output_bytes(),
            Mutation::Reject(refusal) => refusal.output_bytes(),
        }
    }

    fn bound(&mut self) -> Result<(), String> {
        match self {
            Mutation::Job(_) => Ok(()),
            Mutation::Patch(ops) => ops.bound(),
            Mutation::Reject(refusal) => {
                refusal.clip();
                Ok(())
            }
        }
    }
}

impl Output for Option<Description> {
    fn output_bytes(&self) -> usize {
        self.as_ref().map_or(0, |d| {
            d.name.len()
                + d.version.len()
                + d.summary.len()
                + d.config_schema.as_ref().map_or(0, |s| s.to_string().len())
        })
    }

    fn bound(&mut self) -> Result<(), String> {
        if let Some(d) = self
            && d.summary.len() > MAX_REASON_BYTES
        {
            d.summary = super::call::clip(&d.summary, MAX_REASON_BYTES).into_owned();
        }
        Ok(())
    }
}
