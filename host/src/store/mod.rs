//! Durable state. Every state change is one transaction, committed before the
//! caller is answered. [`Store`] is the interface; [`SqlStore`] its one
//! implementation (`sql.rs`), over the embedded SQLite file (the default,
//! `sqlite.rs`) or a shared PostgreSQL database (`weir serve --database-url
//! postgres://...`, `postgres.rs`). Every test in `tests.rs` runs on both.

mod commit;
mod counters;
mod decisions;
mod postgres;
mod quarantine;
mod rows;
mod schedules;
mod sql;
mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::BaseJobTemplate;
use crate::domain::TokenRecord;
use crate::domain::document;
use crate::domain::{
    BindingMode, ConcurrencyLimit, Deployment, HistoryEntry, IllegalTransition, LateAction,
    PluginBinding, PluginVersion, Pool, Queue, RetryPolicy, Run, RunId, RunState, Schedule, World,
};

pub use decisions::{Blob, DecisionQuery, DecisionRecord, DecisionsSize, StoredDecision};
pub use postgres::DatabaseUrl;
pub use sql::SqlStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{detail}")]
    Conflict {
        field: Option<String>,
        detail: String,
    },
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// The database failed; `op` is the store method and `subject` the run
    /// or resource it concerned, when known.
    #[error("database error{}: {source}", context(*.op, .subject.as_deref()))]
    Database {
        op: Option<&'static str>,
        subject: Option<String>,
        #[source]
        source: sqlx::Error,
    },
    /// A write whose batch failed to commit (`commit.rs`): none of it was
    /// stored.
    #[error("the write was not committed: {0}")]
    Uncommitted(String),
    /// The database cannot be reached or refuses work for now (stopped,
    /// restarting, failing over, out of connections): nothing was done, and
    /// the same call may succeed later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full: nothing was written, and no write can
    /// be until space is freed.
    #[error("the store's disk is full: {0}")]
    Full(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A write refused because its document could not be read back.
    #[error(
        "refusing to store a document nested {depth} levels deep: the store reads back at most {}",
        document::READ_BACK_DEPTH
    )]
    Unreadable { depth: usize },
}

impl From<sqlx::Error> for StoreError {
    fn from(source: sqlx::Error) -> Self {
        match Outage::of(&source) {
            Some(Outage::Unavailable) => StoreError::Unavailable(source.to_string()),
            Some(Outage::Full) => StoreError::Full(source.to_string()),
            None => StoreError::Database {
                op: None,
                subject: None,
                source,
            },
        }
    }
}

/// Why a database error is not the caller's nor Weir's fault but the
/// database's state: it is away, or its disk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outage {
    Unavailable,
    Full,
}

impl Outage {
    /// Classifies a database error: lost or refused connections, a pool that
    /// could not get one in time, PostgreSQL's connection-exception class
    /// (08), its shutdown and start-up codes (57P01-57P03), too many
    /// connections (53300); a full disk (SQLite's SQLITE_FULL, 13, and
    /// PostgreSQL's disk_full, 53100).
    pub(crate) fn of(e: &sqlx::Error) -> Option<Self> {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Some(Outage::Unavailable),
            sqlx::Error::Database(d) => {
                Self::of_code(d.code().as_deref().unwrap_or(""), d.message())
            }
            _ => None,
        }
    }

    /// The same from a database's error code (SQLSTATE, or SQLite's result
    /// code) and message.
    pub(crate) fn of_code(code: &str, message: &str) -> Option<Self> {
        if code == "13" || code == "53100" || message.contains("database or disk is full") {
            return Some(Outage::Full);
        }
        if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") {
            return Some(Outage::Unavailable);
        }
        None
    }
}

/// " in OP (SUBJECT)", or less when not known.
fn context(op: Option<&str>, subject: Option<&str>) -> String {
    match (op, subject) {
        (Some(op), Some(s)) => format!(" in {op} ({s})"),
        (Some(op), None) => format!(" in {op}"),
        _ => String::new(),
    }
}

impl StoreError {
    /// Names the store method and its run or resource in a database or
    /// decoding error that does not name them yet.
    pub(crate) fn during(self, op: &'static str, subject: Option<String>) -> Self {
        match self {
            StoreError::Database {
                op: None, source, ..
            } => StoreError::Database {
                op: Some(op),
                subject,
                source,
            },
            StoreError::Corrupt(detail) => {
                let at = context(Some(op), subject.as_deref());
                StoreError::Corrupt(format!("{}: {detail}", at.trim_start()))
            }
            other => other,
        }
    }

    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            name: name.into(),
        }
    }
    pub fn conflict(field: Option<&str>, detail: impl Into<String>) -> Self {
        StoreError::Conflict {
            field: field.map(str::to_owned),
            detail: detail.into(),
        }
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Encodes a value for a JSON text column. Refuses (before anything is
/// written) a document nested deeper than serde_json reads back: Weir never
/// stores what it cannot read back. Entry points hold documents to
/// [`document::MAX_DEPTH`], so this is the last line of defence.
pub(crate) fn encode_json<T: serde::Serialize>(v: &T) -> Result<String> {
    let text = serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let depth = text_depth(&text);
    if depth > document::READ_BACK_DEPTH {
        return Err(StoreError::Unreadable { depth });
    }
    Ok(text)
}

/// Decodes a JSON text column; `column` names it in the error.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// The nesting depth of JSON text, by one scan (no recursion).
fn text_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Fields of a pool that can change. `Some(None)` clears an optional value.
#[derive(Debug, Default, Clone)]
pub struct PoolPatch {
    pub base_job_template: Option<BaseJobTemplate>,
    pub cluster: Option<Option<String>>,
    pub concurrency_limit: Option<Option<u32>>,
    pub paused: Option<bool>,
    pub description: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct QueuePatch {
    pub priority: Option<u32>,
    pub concurrency_limit: Option<Option<u32>>,
    pub paused: Option<bool>,
    pub description: Option<String>,
    pub late_after_seconds: Option<Option<u32>>,
    pub late_action: Option<LateAction>,
}

#[derive(Debug, Default, Clone)]
pub struct DeploymentPatch {
    pub queue: Option<Option<String>>,
    pub job_variables: Option<Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    pub parameters: Option<Map<String, Value>>,
    pub description: Option<String>,
    pub retries: Option<RetryPolicy>,
    /// `Some(None)` clears the team.
    pub team: Option<Option<String>>,
}

/// A run about to be stored (already validated).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub pool: String,
    pub queue: String,
    pub deployment: Option<String>,
    pub job: Option<Value>,
    pub tags: Vec<String>,
    pub parameters: Map<String, Value>,
    pub job_variables: Map<String, Value>,
    pub parent_run_id: Option<RunId>,
    pub idempotency_key: Option<String>,
    pub scheduled_at: DateTime<Utc>,
    pub retries: RetryPolicy,
    pub message: String,
    pub cause: String,
    /// History lines recorded before the run was stored (router and
    /// admission decisions), written after its "created" line.
    pub history: Vec<HistoryEntry>,
    /// Deferred by an admission plugin: judged again when due.
    pub needs_admission: bool,
    /// The merged `labels` job variable.
    pub labels: Map<String, Value>,
}

/// A state change requested by the dispatcher, the launcher or a backend.
#[derive(Debug, Clone)]
pub struct Transition {
    pub to: RunState,
    pub message: String,
    pub cause: String,
    pub exit_code: Option<i32>,
    /// For `AwaitingRetry`: when the next attempt may start.
    pub retry_at: Option<DateTime<Utc>>,
    pub detail: Option<Value>,
}

impl Transition {
    pub fn new(to: RunState, message: impl Into<String>, cause: &str) -> Self {
        Self {
            to,
            message: message.into(),
            cause: cause.to_owned(),
            exit_code: None,
            retry_at: None,
            detail: None,
        }
    }
}

/// A run [`Store::mark_late`] turned Late.
#[derive(Debug, Clone)]
pub struct LateRun {
    pub id: RunId,
    pub pool: String,
    pub queue: String,
    /// How long past its scheduled time it was when marked.
    pub late_by: chrono::Duration,
    /// The threshold that applied.
    pub late_after_seconds: i64,
    /// Its queue cancels Late runs.
    pub cancel: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub states: Vec<RunState>,
    pub pool: Option<String>,
    pub queue: Option<String>,
    pub deployment: Option<String>,
    pub tag: Option<String>,
    pub parent: Option<RunId>,
    /// Runs with `seq` below this (newest first paging).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// Pass as `before_seq` to get the next page.
    pub next_seq: Option<i64>,
}

/// A run released by the scheduler, with how long it waited for its turn.
#[derive(Debug, Clone)]
pub struct Released {
    pub run: Run,
    pub waited: std::time::Duration,
}

/// Counts for one pool or queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Runs holding slots (Pending, Running, Cancelling).
    pub active: u64,
    /// Runs waiting (Scheduled, Late, AwaitingRetry).
    pub queued: u64,
}

/// What the scheduler's own state says of one waiting run, read in one
/// snapshot: `run::waiting` turns it into the reasons the run waits.
#[derive(Debug, Clone)]
pub struct WaitFacts {
    pub run: Run,
    /// Deferred by an admission plugin until its `scheduled_at`.
    pub deferred: bool,
    /// Its pool; `None` if the pool is gone.
    pub pool: Option<LimitFacts>,
    /// Its queue; `None` if the queue is gone.
    pub queue: Option<LimitFacts>,
    /// Each of its tags that has a limit, in tag order.
    pub tags: Vec<(String, LimitFacts)>,
    /// The queues of its pool in the release walk's order (priority, then
    /// name), each with its runs that are due and not deferred — what a
    /// pass would read — and, for its own queue, how many of those are
    /// ahead of it.
    pub pool_queues: Vec<QueueLine>,
}

/// A pool, queue or tag limit as the release walk sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitFacts {
    pub paused: bool,
    pub limit: Option<u32>,
    /// Slots held now.
    pub used: u64,
    /// Some of the runs holding them (oldest slot first), at most
    /// [`WAIT_HOLDERS`].
    pub holders: Vec<RunId>,
}

/// How many holders of a full limit a [`WaitFacts`] names.
pub(crate) const WAIT_HOLDERS: usize = 10;

/// How far a [`WaitFacts`] counts due runs: a count above it reads
/// `WAIT_COUNT_CAP + 1` ("more than"), so reading why a run waits costs at
/// most this many index entries per queue however deep the queue (what
/// it costs `GET /api/v1/runs/{id}`: BENCHMARKS.md, "Why a run waits").
pub(crate) const WAIT_COUNT_CAP: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLine {
    pub name: String,
    pub priority: i64,
    pub paused: bool,
    /// Runs due and not deferred (released in this queue's order), counted
    /// up to [`WAIT_COUNT_CAP`] + 1.
    pub due: u64,
    /// In the run's own queue: those of `due` ahead of it, counted the same
    /// way.
    pub ahead: Option<u64>,
}

/// See [`Store::activity`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    pub runs_by_state: BTreeMap<String, u64>,
    /// The newest `run_history` record's number (0: none).
    pub history_seq: i64,
}

/// One queue's waiting runs as the release walk would see them now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueWaiting {
    pub pool: String,
    pub queue: String,
    pub pool_paused: bool,
    pub queue_paused: bool,
    /// The pool's / queue's limit has no free slot.
    pub pool_full: bool,
    pub queue_full: bool,
    /// All its waiting runs (the counters' figure: exact).
    pub queued: u64,
    /// Its first [`WAIT_COUNT_CAP`] waiting runs in release order (when
    /// due, then age), by what they wait on; `queued` less their sum were
    /// not looked at.
    pub scanned: WaitScan,
}

/// Waiting runs sorted by what the scheduler needs before it may release
/// them (see [`QueueWaiting::scanned`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitScan {
    /// Scheduled or Late for a time still ahead.
    pub scheduled: u64,
    /// AwaitingRetry until a time still ahead.
    pub retry: u64,
    /// Deferred by an admission plugin (judged again when due).
    pub deferred: u64,
    /// Due, and carrying a tag whose limit is full.
    pub tag_full: u64,
    /// Due, and held by nothing of its own.
    pub due: u64,
}

impl WaitScan {
    pub fn total(&self) -> u64 {
        self.scheduled + self.retry + self.deferred + self.tag_full + self.due
    }
}

/// Everything `/metrics` reports, read in one go.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub runs_by_state: BTreeMap<String, u64>,
    /// (pool, queue) → occupancy.
    pub queues: BTreeMap<(String, String), Occupancy>,
    /// (kind, key) → slots held, and the limit where one applies.
    pub slots: BTreeMap<(String, String), (u64, Option<u32>)>,
    /// The embedded store's group commit: (writes, commits) so far.
    pub group_commit: Option<(u64, u64)>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Pools (creating a pool creates its `default` queue in the same transaction).
    async fn create_pool(&self, pool: &Pool) -> Result<()>;
    async fn get_pool(&self, name: &str) -> Result<Pool>;
    async fn list_pools(&self) -> Result<Vec<Pool>>;
    async fn update_pool(&self, name: &str, patch: PoolPatch) -> Result<Pool>;
    async fn delete_pool(&self, name: &str) -> Result<()>;
    async fn pool_occupancy(&self, pool: &str) -> Result<Occupancy>;

    // Queues.
    async fn create_queue(&self, queue: &Queue) -> Result<()>;
    async fn get_queue(&self, pool: &str, name: &str) -> Result<Queue>;
    async fn list_queues(&self, pool: &str) -> Result<Vec<Queue>>;
    async fn update_queue(&self, pool: &str, name: &str, patch: QueuePatch) -> Result<Queue>;
    async fn delete_queue(&self, pool: &str, name: &str) -> Result<()>;
    async fn queue_occupancy(&self, pool: &str, queue: &str) -> Result<Occupancy>;

    // Tag concurrency limits.
    async fn create_limit(&self, limit: &ConcurrencyLimit) -> Result<()>;
    async fn get_limit(&self, tag: &str) -> Result<ConcurrencyLimit>;
    async fn list_limits(&self) -> Result<Vec<ConcurrencyLimit>>;
    async fn update_limit(&self, tag: &str, slots: u32) -> Result<ConcurrencyLimit>;
    async fn delete_limit(&self, tag: &str) -> Result<()>;
    async fn tag_slots_in_use(&self, tag: &str) -> Result<u64>;

    // Deployments.
    async fn create_deployment(&self, deployment: &Deployment) -> Result<()>;
    async fn get_deployment(&self, name: &str) -> Result<Deployment>;
    async fn list_deployments(&self) -> Result<Vec<Deployment>>;
    async fn update_deployment(&self, name: &str, patch: DeploymentPatch) -> Result<Deployment>;
    async fn delete_deployment(&self, name: &str) -> Result<()>;

    // Deployment schedules (`schedules.rs`).
    async fn create_schedule(&self, schedule: &Schedule) -> Result<()>;
    async fn get_schedule(&self, deployment: &str, name: &str) -> Result<Schedule>;
    /// One deployment's schedules, or every schedule.
    async fn list_schedules(&self, deployment: Option<&str>) -> Result<Vec<Schedule>>;
    /// Writes the whole row (definition, pause, generation, progress).
    async fn replace_schedule(&self, schedule: &Schedule) -> Result<()>;
    /// Moves `created_through` forward, for the schedule's generation only
    /// while it is not paused; false when it did not move.
    async fn advance_schedule(&self, schedule: &Schedule, through: DateTime<Utc>) -> Result<bool>;
    async fn delete_schedule(&self, deployment: &str, name: &str) -> Result<()>;
    /// The waiting (Scheduled, Late) runs of a deployment whose idempotency
    /// key starts with `prefix`.
    async fn waiting_runs_keyed(&self, deployment: &str, prefix: &str) -> Result<Vec<RunId>>;

    // Runs.
    /// Stores a run in `Scheduled`. If its idempotency key was used before,
    /// stores nothing and returns the first run with `false`.
    async fn insert_run(&self, run: NewRun) -> Result<(Run, bool)>;
    async fn get_run(&self, id: RunId, with_history: bool) -> Result<Run>;
    async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage>;
    /// Applies one state change through the transition table, in one
    /// transaction with its history line and the return of the run's slots.
    async fn transition(&self, id: RunId, transition: Transition) -> Result<Run>;
    /// Releases waiting runs whose time has come, in priority order, while
    /// every applicable limit has a free slot; takes their slots atomically.
    async fn release_ready(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<Released>>;
    /// Marks Scheduled runs waiting since before `cutoff` as Late.
    /// Moves Scheduled runs past their queue's late threshold (or
    /// `default_after`) to Late, and says which, with their queue's action.
    async fn mark_late(
        &self,
        now: DateTime<Utc>,
        default_after: chrono::Duration,
    ) -> Result<Vec<LateRun>>;
    /// The earliest future time at which a waiting run becomes due or late.
    async fn next_wake(
        &self,
        now: DateTime<Utc>,
        late_after: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>>;
    /// Runs that hold slots (Pending, Running, Cancelling), oldest first.
    async fn active_runs(&self) -> Result<Vec<Run>>;
    /// Unfinished runs whose rows do not read back, each with why
    /// (`quarantine.rs`): the run row of every waiting or released run, and
    /// for a released one also its history and its current attempt's
    /// submission, which recovery reads.
    async fn unreadable_runs(&self) -> Result<Vec<(RunId, String)>>;
    /// Ends such a run Crashed, with `why` in the reason, in one
    /// transaction: what cannot be read is replaced by a readable
    /// placeholder (its raw text's start kept in the history line), and its
    /// slots are returned. Does nothing to a run that has ended.
    async fn quarantine_run(&self, id: RunId, why: &str) -> Result<()>;
    async fn stats(&self) -> Result<StoreStats>;
    async fn ping(&self) -> Result<()>;

    /// Adds history lines that are not state changes (plugin decisions).
    async fn append_history(&self, id: RunId, entries: &[HistoryEntry]) -> Result<()>;
    /// Waiting runs deferred by admission whose time has come.
    async fn due_admissions(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<Run>>;
    /// Records a re-evaluated admission: admitted (`defer_until` None) or
    /// deferred again.
    async fn set_admission(
        &self,
        id: RunId,
        defer_until: Option<DateTime<Utc>>,
        entries: &[HistoryEntry],
    ) -> Result<()>;
    /// Counts for admission stats: runs holding slots / waiting that carry
    /// the label `key=value` in their job variables' `labels`.
    async fn label_occupancy(&self, key: &str, value: &str) -> Result<Occupancy>;
    /// Runs holding slots / waiting that carry `tag`.
    async fn tag_occupancy(&self, tag: &str) -> Result<Occupancy>;
    /// What holds a waiting run, from the state the scheduler decides on
    /// (`now` says which runs are due); `None` if the run is not waiting.
    async fn waiting_facts(&self, id: RunId, now: DateTime<Utc>) -> Result<Option<WaitFacts>>;
    /// Runs by state (the counters: one row per state) and the newest
    /// history record's number, read together: what changes whenever any
    /// run does (the dashboard's live updates and its overview).
    async fn activity(&self) -> Result<Activity>;
    /// Every history record among the last `scan` recorded whose cause is a
    /// decision of plugin `plugin` (`{world}:{plugin}`), newest first, with
    /// its run.
    async fn recent_decisions(&self, plugin: &str, scan: u64)
    -> Result<Vec<(RunId, HistoryEntry)>>;
    /// The waiting runs of each queue (of `pool`, or of every pool) by what
    /// they wait on, read in one snapshot; `run::waiting::counts` names the
    /// reasons.
    async fn queue_waiting(
        &self,
        pool: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<QueueWaiting>>;

    // Plugins. Bytes are stored once per digest; a name gets a new version
    // when its bytes change (adding the newest bytes again is a no-op).
    async fn add_plugin_version(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        world: World,
        wit_version: &str,
    ) -> Result<(PluginVersion, bool)>;
    /// Oldest first; NotFound when the name has no version.
    async fn plugin_versions(&self, name: &str) -> Result<Vec<PluginVersion>>;
    /// The newest version of every plugin.
    async fn list_plugins(&self) -> Result<Vec<PluginVersion>>;
    /// Refused while the plugin is bound.
    async fn delete_plugin(&self, name: &str) -> Result<()>;
    async fn plugin_bytes(&self, digest: &str) -> Result<Vec<u8>>;
    async fn create_binding(&self, binding: &PluginBinding) -> Result<PluginBinding>;
    /// `None`: the global router chain. Ordered by `order`, then creation.
    async fn list_bindings(&self, pool: Option<&str>) -> Result<Vec<PluginBinding>>;
    async fn bindings_of_plugin(&self, plugin: &str) -> Result<Vec<PluginBinding>>;
    /// Deletes the plugin's binding in `mode` (`None`: in either mode).
    async fn delete_binding(
        &self,
        pool: Option<&str>,
        plugin: &str,
        mode: Option<BindingMode>,
    ) -> Result<()>;
    /// Promotes: every binding of the plugin to the pool (or router chain)
    /// is replaced by `binding`, in one transaction.
    async fn replace_bindings(&self, binding: &PluginBinding) -> Result<PluginBinding>;

    // Submission intents (crash safety between the store and a backend).
    /// Records where an attempt is about to be submitted, before the
    /// backend is called; recording the same attempt again replaces it.
    /// Recorded only while the run is still `Pending` in that attempt, under
    /// its row lock: `false` (nothing recorded, nothing to submit) when it
    /// moved on first, as a cancel that landed while the job was being
    /// built moves it to `Cancelling`.
    async fn record_submission(&self, id: RunId, attempt: u32, target: &Value) -> Result<bool>;
    /// The intent recorded for an attempt, if any.
    async fn submission(&self, id: RunId, attempt: u32) -> Result<Option<Value>>;

    // Tokens (`host/src/auth/`): stored by the SHA-256 of their text only.
    async fn create_token(&self, token: &TokenRecord, hash: &str) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Marks the token revoked (revoking twice keeps the first time).
    async fn revoke_token(&self, id: &str) -> Result<TokenRecord>;
    /// The secret named `name`, stored as `candidate` if there was none
    /// (insert-if-absent: replicas sharing the database agree on one value).
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String>;

    // Decision inputs (`decisions.rs`): what plugin decisions saw, for replay.
    /// Records decisions, their parts stored once by digest.
    async fn record_decisions(&self, records: &[DecisionRecord]) -> Result<()>;
    /// A plugin's recorded decisions in one mode, newest first.
    async fn recorded_decisions(&self, query: &DecisionQuery) -> Result<Vec<StoredDecision>>;
    /// Keeps the newest `keep` decisions recorded at or after `cutoff`, and
    /// the parts they name; returns (decisions, parts) deleted.
    async fn sweep_decisions(&self, keep: u64, cutoff: DateTime<Utc>) -> Result<(u64, u64)>;
    async fn decisions_size(&self) -> Result<DecisionsSize>;
}

#[cfg(test)]
mod tests;
