//! The one store: every [`Store`] method, written once over sqlx's `Any`
//! driver, for both databases. What differs between them is in
//! [`Dialect`] — SQL fragments and the locks a shared database needs — and
//! in how each connects (`sqlite.rs`, `postgres.rs`). The schema is the same
//! in both (`migrations/`): times are integer microseconds, JSON is text,
//! flags are booleans (integers in SQLite, read by [`flag`]).
//!
//! Every statement uses `$N` placeholders, which both databases accept.

use std::collections::{BTreeMap, HashMap, VecDeque};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::AnyPool;
use sqlx::{Any, Row};

use super::commit::{GroupCommit, WriteTx};
use super::counters::{self, Keys, Tally, marks};
use super::decisions::{self, DecisionQuery, DecisionRecord, DecisionsSize, StoredDecision};
use super::quarantine;
use super::rows::{
    binding_from_row, count, deployment_from_row, flag, from_json, from_micros, history_from_row,
    limit_from_row, micros, opt_u32, parse_uuid, plugin_version_from_row, pool_from_row,
    queue_from_row, run_from_row, to_json, to_u32, token_from_row,
};
use super::schedules;
use super::{
    Activity, DeploymentPatch, LateRun, LimitFacts, NewRun, Occupancy, PoolPatch, QueueLine,
    QueuePatch, QueueWaiting, Released, Result, RunFilter, RunPage, Store, StoreError, StoreStats,
    Transition, WAIT_COUNT_CAP, WAIT_HOLDERS, WaitFacts, WaitScan,
};
use crate::domain::TokenRecord;
use crate::domain::history::{self, HistoryWrite};
use crate::domain::release::{self, Limits, QueueState, ReleaseSource};
use crate::domain::{
    BindingMode, ConcurrencyLimit, DEFAULT_QUEUE, Deployment, HistoryEntry, PluginBinding,
    PluginVersion, Pool, Queue, Run, RunId, RunState, Schedule, World,
};

const WAITING: &str = "('Scheduled','Late','AwaitingRetry')";
const HOLDING: &str = "('Pending','Running','Cancelling')";
const RUN_COLUMNS: &str = "seq, id, state, state_message, pool, queue, deployment, job, tags, labels, \
    parameters, job_variables, parent_run_id, idempotency_key, scheduled_at, created_at, \
    started_at, ended_at, attempt, retries_max, retry_delay_seconds, exit_code";

/// What differs between the two databases, besides connecting.
#[derive(Debug)]
pub(super) struct Dialect {
    /// Appended to a `SELECT` of a row the transaction then changes.
    pub lock_row: &'static str,
    /// Appended to a `SELECT` of the pool and queue rows a new run refers
    /// to, so they cannot be deleted under it.
    pub share_row: &'static str,
    /// Appended to the subquery that picks runs to mark Late.
    pub skip_locked: &'static str,
    /// Run first in every release pass: passes never interleave.
    pub release_lock: Option<&'static str>,
    /// Run first when numbering a plugin's versions, `$1` its name.
    pub plugin_lock: Option<&'static str>,
    /// `FROM` and the condition that read deferred runs, in the words the
    /// database's index on them needs.
    pub deferred_runs: &'static str,
    /// Run first in a read transaction whose statements must all see one
    /// snapshot (SQLite's read transactions do already).
    pub snapshot: Option<&'static str>,
}

/// A [`Store`] over SQLite or PostgreSQL.
pub struct SqlStore {
    dialect: &'static Dialect,
    /// Where every write transaction runs (SQLite: one connection).
    writer: AnyPool,
    /// SQLite: the writer connection's group committer (`commit.rs`).
    group: Option<GroupCommit>,
    /// Where reads run (PostgreSQL: the same pool).
    reader: AnyPool,
}

impl SqlStore {
    pub(super) fn new(dialect: &'static Dialect, writer: AnyPool, reader: AnyPool) -> Self {
        Self {
            dialect,
            writer,
            group: None,
            reader,
        }
    }

    /// Writes through a group committer that owns the writer pool's one
    /// connection from now on (`commit.rs`).
    pub(super) async fn group_commit(mut self) -> Result<Self> {
        self.group = Some(GroupCommit::start(&self.writer).await?);
        Ok(self)
    }

    /// Starts a write transaction. Every write goes through one, so that
    /// it is committed (and, on SQLite, grouped) the same way.
    async fn begin(&self) -> Result<WriteTx> {
        match &self.group {
            Some(group) => group.begin().await,
            None => Ok(WriteTx::own(self.writer.begin().await?)),
        }
    }
}

/// Runs one [`Store`] method's work, naming the method and what it concerns
/// (a run's id, a resource's name) in a database or decoding error.
async fn during<T>(
    op: &'static str,
    subject: Option<String>,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    work.await.map_err(|e| e.during(op, subject))
}

/// Runs marked Late per transaction.
const MARK_LATE_BATCH: i64 = 500;

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn insert_history(
    tx: &mut WriteTx,
    id: &str,
    state: RunState,
    at: DateTime<Utc>,
    message: &str,
    cause: &str,
) -> Result<()> {
    insert_history_entry(
        tx,
        id,
        &HistoryEntry {
            state,
            at,
            message: message.to_owned(),
            cause: cause.to_owned(),
            detail: None,
        },
    )
    .await
}

async fn insert_history_entry(tx: &mut WriteTx, id: &str, entry: &HistoryEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO run_history (run_id, state, at, message, cause, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(entry.state.as_str())
    .bind(micros(entry.at))
    .bind(history::clipped(&entry.message).as_ref())
    .bind(&entry.cause)
    .bind(entry.detail.as_ref().map(to_json).transpose()?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn fetch_run<'e, E>(executor: E, id: &str) -> Result<Run>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?
        .ok_or_else(|| StoreError::not_found("run", id))?;
    run_from_row(&row)
}

/// The run, its row locked until the transaction ends: a state change reads
/// the state it checks against the transition table under this lock.
async fn lock_run(dialect: &Dialect, tx: &mut WriteTx, id: &str) -> Result<Run> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1{}",
        dialect.lock_row
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::not_found("run", id))?;
    run_from_row(&row)
}

/// One queue's waiting runs during a release pass, read a page at a time.
struct QueueCursor {
    pool: String,
    queue: String,
    buffer: VecDeque<Run>,
    /// (scheduled_at, seq) of the last row fetched, for keyset paging.
    after: Option<(i64, i64)>,
    exhausted: bool,
}

const PAGE: i64 = 256;

/// The release walk's [`ReleaseSource`] over one transaction.
///
/// `take` only chooses: the walk charges the run's slots in memory, and
/// [`ReleasePass::commit`] then moves every chosen run with a few multi-row
/// statements (a few per [`CHUNK`] runs, not five per run).
struct ReleasePass<'t> {
    tx: &'t mut WriteTx,
    cursors: Vec<QueueCursor>,
    /// When due runs are read up to, and when releases are stamped.
    now: DateTime<Utc>,
}

#[async_trait]
impl ReleaseSource for ReleasePass<'_> {
    type Run = Run;
    type Error = StoreError;

    /// A page leaves out runs carrying a tag that is full now (the walk
    /// would skip them, and they cannot become takeable in this pass), so a
    /// backlog held by a tag is not read again on every pass.
    async fn next(&mut self, queue: usize, full_tags: &[&str]) -> Result<Option<Run>> {
        let Some(cursor) = self.cursors.get_mut(queue) else {
            return Ok(None);
        };
        if cursor.buffer.is_empty() && !cursor.exhausted {
            let (after_t, after_seq) = cursor.after.unwrap_or((i64::MIN, i64::MIN));
            let held = if full_tags.is_empty() {
                String::new()
            } else {
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM run_tags t \
                       WHERE t.tag IN ({}) AND t.run_id = runs.id)",
                    list(7, full_tags.len())
                )
            };
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs \
                 WHERE pool = $1 AND queue = $2 AND state IN {WAITING} AND scheduled_at <= $3 \
                   AND NOT needs_admission \
                   AND (scheduled_at > $4 OR (scheduled_at = $4 AND seq > $5)){held} \
                 ORDER BY scheduled_at, seq LIMIT $6"
            );
            let mut query = sqlx::query(&sql)
                .bind(&cursor.pool)
                .bind(&cursor.queue)
                .bind(micros(self.now))
                .bind(after_t)
                .bind(after_seq)
                .bind(PAGE);
            for tag in full_tags {
                query = query.bind(*tag);
            }
            let rows = query.fetch_all(&mut **self.tx).await?;
            if (rows.len() as i64) < PAGE {
                cursor.exhausted = true;
            }
            if let Some(last) = rows.last() {
                cursor.after = Some((last.try_get("scheduled_at")?, last.try_get("seq")?));
            }
            for row in &rows {
                cursor.buffer.push_back(run_from_row(row)?);
            }
        }
        Ok(cursor.buffer.pop_front())
    }

    /// Chooses the run; [`ReleasePass::commit`] moves it, if it is still
    /// waiting then.
    async fn take(&mut self, _queue: usize, _run: &Run) -> Result<bool> {
        Ok(true)
    }

    fn tags(run: &Run) -> &[String] {
        &run.tags
    }
}

/// Runs per multi-row statement of a release: well under the variables one
/// statement binds (SQLite 32,766, PostgreSQL 65,535; six per run in the
/// history insert).
const CHUNK: usize = 256;

impl ReleasePass<'_> {
    /// Moves the runs the walk chose to Pending, with their slots, history
    /// and counters, and returns those it moved, in the walk's order.
    ///
    /// A run moves only if it is still waiting and not deferred: the page
    /// that gave it may predate a cancel or an admission decision that
    /// committed since. On PostgreSQL the `SELECT … FOR UPDATE` waits for
    /// such a writer and reads the state it left; on SQLite nothing else
    /// writes during the pass (one writer connection), so every chosen run
    /// moves. The state a run leaves is read under that lock, for the
    /// counters.
    async fn commit(
        &mut self,
        dialect: &Dialect,
        chosen: Vec<(usize, Run)>,
        tally: &mut Tally,
    ) -> Result<Vec<Run>> {
        let mut moved = Vec::with_capacity(chosen.len());
        let mut chosen = chosen.into_iter().peekable();
        while chosen.peek().is_some() {
            let chunk: Vec<(usize, Run)> = chosen.by_ref().take(CHUNK).collect();
            let ids: Vec<String> = chunk.iter().map(|(_, r)| r.id.to_string()).collect();
            let mut from: HashMap<String, RunState> = HashMap::with_capacity(ids.len());
            // By id alone, the state checked here: with `AND state IN …` in
            // the statement SQLite's planner walks every waiting run through
            // `runs_state_time` instead of seeking 256 ids (78 ms at 300k
            // waiting, measured with the sqlite3 module on the migrations'
            // schema).
            let sql = format!(
                "SELECT id, state, needs_admission FROM runs WHERE id IN ({}){}",
                list(1, ids.len()),
                dialect.lock_row
            );
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q.bind(id);
            }
            for row in q.fetch_all(&mut **self.tx).await? {
                let state: String = row.try_get("state")?;
                if flag(&row, "needs_admission")? {
                    continue;
                }
                if let Some(state) = RunState::parse(&state).filter(|s| s.is_waiting()) {
                    from.insert(row.try_get("id")?, state);
                }
            }
            let chunk: Vec<(usize, Run, RunState)> = chunk
                .into_iter()
                .filter_map(|(q, run)| {
                    let state = from.get(&run.id.to_string()).copied()?;
                    Some((q, run, state))
                })
                .collect();
            if chunk.is_empty() {
                continue;
            }
            let ids: Vec<String> = chunk.iter().map(|(_, r, _)| r.id.to_string()).collect();
            let sql = format!(
                "UPDATE runs SET state = 'Pending', state_message = $1, released_at = $2 \
                 WHERE id IN ({})",
                list(3, ids.len())
            );
            let mut q = sqlx::query(&sql).bind(RELEASED).bind(micros(self.now));
            for id in &ids {
                q = q.bind(id);
            }
            q.execute(&mut **self.tx).await?;

            // Slots: the run's pool, its queue and each of its tags.
            let mut slots: Vec<(&'static str, String, &str)> = Vec::new();
            for ((_, run, _), id) in chunk.iter().zip(&ids) {
                slots.push(("pool", run.pool.clone(), id));
                slots.push(("queue", format!("{}/{}", run.pool, run.queue), id));
                slots.extend(run.tags.iter().map(|t| ("tag", t.clone(), id.as_str())));
            }
            for part in slots.chunks(CHUNK) {
                let sql = format!(
                    "INSERT INTO slots (kind, key, run_id) VALUES {}",
                    marks(part.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for (kind, key, id) in part {
                    q = q.bind(*kind).bind(key).bind(*id);
                }
                q.execute(&mut **self.tx).await?;
            }

            let sql = format!(
                "INSERT INTO run_history (run_id, state, at, message, cause, detail) VALUES {}",
                marks(ids.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q
                    .bind(id)
                    .bind(RunState::Pending.as_str())
                    .bind(micros(self.now))
                    .bind(RELEASED)
                    .bind(crate::domain::Cause::SCHEDULER)
                    .bind(None::<String>);
            }
            q.execute(&mut **self.tx).await?;

            for (_, run, state) in chunk {
                tally.moved(
                    &Keys::of(&run.pool, &run.queue, &run.tags, &run.labels),
                    Some(state),
                    RunState::Pending,
                    1,
                );
                moved.push(run);
            }
        }
        Ok(moved)
    }
}

/// `$first, $first+1, …`: `n` placeholders for an `IN (…)` list.
fn list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a release walk starts from, read in its transaction: the queues
/// that may release (not paused, in a pool not paused) in priority order,
/// the pool and tag limits, the slots each holds, and a cursor per queue.
async fn release_state(tx: &mut WriteTx) -> Result<(Vec<QueueState>, Limits, Vec<QueueCursor>)> {
    let mut limits = Limits::default();
    for row in sqlx::query("SELECT name, concurrency_limit FROM pools WHERE NOT paused")
        .fetch_all(&mut **tx)
        .await?
    {
        let limit = opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?;
        limits.pools.insert(row.try_get("name")?, (limit, 0));
    }
    for row in sqlx::query("SELECT tag, slots FROM limits")
        .fetch_all(&mut **tx)
        .await?
    {
        limits
            .tags
            .insert(row.try_get("tag")?, to_u32("slots", row.try_get("slots")?)?);
    }
    let mut queue_used: HashMap<String, u64> = HashMap::new();
    for row in sqlx::query("SELECT kind, key, COUNT(*) AS n FROM slots GROUP BY kind, key")
        .fetch_all(&mut **tx)
        .await?
    {
        let kind: String = row.try_get("kind")?;
        let key: String = row.try_get("key")?;
        let n = count(row.try_get("n")?);
        match kind.as_str() {
            "pool" => {
                if let Some(p) = limits.pools.get_mut(&key) {
                    p.1 = n;
                }
            }
            "queue" => {
                queue_used.insert(key, n);
            }
            _ => {
                limits.tags_used.insert(key, n);
            }
        }
    }
    let mut queues = Vec::new();
    let mut cursors = Vec::new();
    for row in sqlx::query(
        "SELECT pool, name, priority, concurrency_limit FROM queues \
         WHERE NOT paused ORDER BY priority, pool, name",
    )
    .fetch_all(&mut **tx)
    .await?
    {
        let pool: String = row.try_get("pool")?;
        if !limits.pools.contains_key(&pool) {
            continue; // a paused pool holds its runs
        }
        let queue: String = row.try_get("name")?;
        queues.push(QueueState {
            used: queue_used
                .get(&format!("{pool}/{queue}"))
                .copied()
                .unwrap_or(0),
            pool: pool.clone(),
            priority: row.try_get("priority")?,
            limit: opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
        });
        cursors.push(QueueCursor {
            pool,
            queue,
            buffer: VecDeque::new(),
            after: None,
            exhausted: false,
        });
    }
    Ok((queues, limits, cursors))
}

const RELEASED: &str = "released by the scheduler";

#[async_trait]
impl Store for SqlStore {
    async fn create_pool(&self, pool: &Pool) -> Result<()> {
        during("create_pool", Some(pool.name.clone()), async {
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO pools (name, type, base_job_template, cluster, concurrency_limit, \
                 paused, description, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&pool.name)
            .bind(pool.pool_type.as_str())
            .bind(to_json(&pool.base_job_template)?)
            .bind(&pool.cluster)
            .bind(pool.concurrency_limit.map(i64::from))
            .bind(pool.paused)
            .bind(&pool.description)
            .bind(micros(pool.created_at))
            .bind(micros(pool.updated_at))
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::conflict(
                        Some("name"),
                        format!("pool {:?} already exists", pool.name),
                    ));
                }
                other => {
                    other?;
                }
            }
            sqlx::query(
                "INSERT INTO queues (pool, name, priority, concurrency_limit, paused, description, \
                 created_at) VALUES ($1, $2, 1, NULL, false, 'The pool''s default queue', $3)",
            )
            .bind(&pool.name)
            .bind(DEFAULT_QUEUE)
            .bind(micros(pool.created_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn get_pool(&self, name: &str) -> Result<Pool> {
        during("get_pool", Some(name.to_string()), async {
            let row = sqlx::query("SELECT * FROM pools WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| StoreError::not_found("pool", name))?;
            pool_from_row(&row)
        })
        .await
    }

    async fn list_pools(&self) -> Result<Vec<Pool>> {
        during("list_pools", None, async {
            let rows = sqlx::query("SELECT * FROM pools ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
            rows.iter().map(pool_from_row).collect()
        })
        .await
    }

    async fn update_pool(&self, name: &str, patch: PoolPatch) -> Result<Pool> {
        during("update_pool", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            let row = sqlx::query(&format!(
                "SELECT * FROM pools WHERE name = $1{}",
                self.dialect.lock_row
            ))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("pool", name))?;
            let mut pool = pool_from_row(&row)?;
            if let Some(t) = patch.base_job_template {
                pool.base_job_template = t;
            }
            if let Some(l) = patch.concurrency_limit {
                pool.concurrency_limit = l;
            }
            if let Some(c) = patch.cluster {
                pool.cluster = c;
            }
            if let Some(p) = patch.paused {
                pool.paused = p;
            }
            if let Some(d) = patch.description {
                pool.description = d;
            }
            pool.updated_at = Utc::now();
            sqlx::query(
                "UPDATE pools SET base_job_template = $1, cluster = $2, concurrency_limit = $3, \
                 paused = $4, description = $5, updated_at = $6 WHERE name = $7",
            )
            .bind(to_json(&pool.base_job_template)?)
            .bind(&pool.cluster)
            .bind(pool.concurrency_limit.map(i64::from))
            .bind(pool.paused)
            .bind(&pool.description)
            .bind(micros(pool.updated_at))
            .bind(name)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(pool)
        })
        .await
    }

    async fn delete_pool(&self, name: &str) -> Result<()> {
        during("delete_pool", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            // Locked so no run is stored in the pool (insert_run takes a key
            // share lock on it) between the count below and the delete.
            let exists = sqlx::query(&format!(
                "SELECT 1 FROM pools WHERE name = $1{}",
                self.dialect.lock_row
            ))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(StoreError::not_found("pool", name));
            }
            let deployments: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE pool = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
            if deployments > 0 {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!(
                        "pool {name:?} still has {deployments} deployment(s); delete them first"
                    ),
                ));
            }
            let unfinished: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM runs WHERE pool = $1 \
                 AND (state IN {WAITING} OR state IN {HOLDING})"
            ))
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if unfinished > 0 {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!("pool {name:?} still has {unfinished} unfinished run(s)"),
                ));
            }
            sqlx::query("DELETE FROM pools WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn pool_occupancy(&self, pool: &str) -> Result<Occupancy> {
        during("pool_occupancy", Some(pool.to_string()), async {
            counters::occupancy(&self.reader, "pool", pool, "").await
        })
        .await
    }

    async fn create_queue(&self, queue: &Queue) -> Result<()> {
        during(
            "create_queue",
            Some(format!("{}/{}", queue.pool, queue.name)),
            async {
                let mut tx = self.begin().await?;
                let pool_exists = sqlx::query(&format!(
                    "SELECT 1 FROM pools WHERE name = $1{}",
                    self.dialect.share_row
                ))
                .bind(&queue.pool)
                .fetch_optional(&mut *tx)
                .await?;
                if pool_exists.is_none() {
                    return Err(StoreError::not_found("pool", &queue.pool));
                }
                let inserted = sqlx::query(
                "INSERT INTO queues (pool, name, priority, concurrency_limit, paused, description, \
                 created_at, late_after_seconds, late_action) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&queue.pool)
            .bind(&queue.name)
            .bind(i64::from(queue.priority))
            .bind(queue.concurrency_limit.map(i64::from))
            .bind(queue.paused)
            .bind(&queue.description)
            .bind(micros(queue.created_at))
            .bind(queue.late_after_seconds.map(i64::from))
            .bind(queue.late_action.as_str())
            .execute(&mut *tx)
            .await;
                match inserted {
                    Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                        Some("name"),
                        format!(
                            "queue {:?} already exists in pool {:?}",
                            queue.name, queue.pool
                        ),
                    )),
                    Err(e) => Err(e.into()),
                    Ok(_) => {
                        tx.commit().await?;
                        Ok(())
                    }
                }
            },
        )
        .await
    }

    async fn get_queue(&self, pool: &str, name: &str) -> Result<Queue> {
        during("get_queue", Some(format!("{pool}/{name}")), async {
            let row = sqlx::query("SELECT * FROM queues WHERE pool = $1 AND name = $2")
                .bind(pool)
                .bind(name)
                .fetch_optional(&self.reader)
                .await?;
            match row {
                Some(row) => queue_from_row(&row),
                None => {
                    self.get_pool(pool).await?;
                    Err(StoreError::not_found("queue", format!("{pool}/{name}")))
                }
            }
        })
        .await
    }

    async fn list_queues(&self, pool: &str) -> Result<Vec<Queue>> {
        during("list_queues", Some(pool.to_string()), async {
            self.get_pool(pool).await?;
            let rows = sqlx::query("SELECT * FROM queues WHERE pool = $1 ORDER BY priority, name")
                .bind(pool)
                .fetch_all(&self.reader)
                .await?;
            rows.iter().map(queue_from_row).collect()
        })
        .await
    }

    async fn update_queue(&self, pool: &str, name: &str, patch: QueuePatch) -> Result<Queue> {
        during("update_queue", Some(format!("{pool}/{name}")), async {
            let mut tx = self.begin().await?;
            let row = sqlx::query(&format!(
                "SELECT * FROM queues WHERE pool = $1 AND name = $2{}",
                self.dialect.lock_row
            ))
            .bind(pool)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("queue", format!("{pool}/{name}")))?;
            let mut queue = queue_from_row(&row)?;
            if let Some(p) = patch.priority {
                queue.priority = p;
            }
            if let Some(l) = patch.concurrency_limit {
                queue.concurrency_limit = l;
            }
            if let Some(p) = patch.paused {
                queue.paused = p;
            }
            if let Some(d) = patch.description {
                queue.description = d;
            }
            if let Some(l) = patch.late_after_seconds {
                queue.late_after_seconds = l;
            }
            if let Some(a) = patch.late_action {
                queue.late_action = a;
            }
            sqlx::query(
                "UPDATE queues SET priority = $1, concurrency_limit = $2, paused = $3, \
                 description = $4, late_after_seconds = $5, late_action = $6 \
                 WHERE pool = $7 AND name = $8",
            )
            .bind(i64::from(queue.priority))
            .bind(queue.concurrency_limit.map(i64::from))
            .bind(queue.paused)
            .bind(&queue.description)
            .bind(queue.late_after_seconds.map(i64::from))
            .bind(queue.late_action.as_str())
            .bind(pool)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(queue)
        })
        .await
    }

    async fn delete_queue(&self, pool: &str, name: &str) -> Result<()> {
        during("delete_queue", Some(format!("{pool}/{name}")), async {
            if name == DEFAULT_QUEUE {
                return Err(StoreError::conflict(
                    Some("name"),
                    "the default queue cannot be deleted; delete the pool instead",
                ));
            }
            let mut tx = self.begin().await?;
            // Locked for the same reason as the pool in delete_pool.
            let exists = sqlx::query(&format!(
                "SELECT 1 FROM queues WHERE pool = $1 AND name = $2{}",
                self.dialect.lock_row
            ))
            .bind(pool)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(StoreError::not_found("queue", format!("{pool}/{name}")));
            }
            let deployments: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM deployments WHERE pool = $1 AND queue = $2",
            )
            .bind(pool)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if deployments > 0 {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!("queue {name:?} is used by {deployments} deployment(s)"),
                ));
            }
            let unfinished: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM runs WHERE pool = $1 AND queue = $2 \
                 AND (state IN {WAITING} OR state IN {HOLDING})"
            ))
            .bind(pool)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if unfinished > 0 {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!("queue {name:?} still has {unfinished} unfinished run(s)"),
                ));
            }
            sqlx::query("DELETE FROM queues WHERE pool = $1 AND name = $2")
                .bind(pool)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn queue_occupancy(&self, pool: &str, queue: &str) -> Result<Occupancy> {
        during("queue_occupancy", Some(format!("{pool}/{queue}")), async {
            counters::occupancy(&self.reader, "queue", pool, queue).await
        })
        .await
    }

    async fn create_limit(&self, limit: &ConcurrencyLimit) -> Result<()> {
        during("create_limit", Some(limit.tag.clone()), async {
            let mut tx = self.begin().await?;
            let inserted =
                sqlx::query("INSERT INTO limits (tag, slots, created_at) VALUES ($1, $2, $3)")
                    .bind(&limit.tag)
                    .bind(i64::from(limit.limit))
                    .bind(micros(limit.created_at))
                    .execute(&mut *tx)
                    .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                    Some("tag"),
                    format!("a limit for tag {:?} already exists", limit.tag),
                )),
                Err(e) => Err(e.into()),
                Ok(_) => tx.commit().await,
            }
        })
        .await
    }

    async fn get_limit(&self, tag: &str) -> Result<ConcurrencyLimit> {
        during("get_limit", Some(tag.to_string()), async {
            let row = sqlx::query("SELECT * FROM limits WHERE tag = $1")
                .bind(tag)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| StoreError::not_found("limit", tag))?;
            limit_from_row(&row)
        })
        .await
    }

    async fn list_limits(&self) -> Result<Vec<ConcurrencyLimit>> {
        during("list_limits", None, async {
            let rows = sqlx::query("SELECT * FROM limits ORDER BY tag")
                .fetch_all(&self.reader)
                .await?;
            rows.iter().map(limit_from_row).collect()
        })
        .await
    }

    async fn update_limit(&self, tag: &str, slots: u32) -> Result<ConcurrencyLimit> {
        during("update_limit", Some(tag.to_string()), async {
            let mut tx = self.begin().await?;
            let row = sqlx::query("UPDATE limits SET slots = $1 WHERE tag = $2 RETURNING *")
                .bind(i64::from(slots))
                .bind(tag)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("limit", tag))?;
            let limit = limit_from_row(&row)?;
            tx.commit().await?;
            Ok(limit)
        })
        .await
    }

    async fn delete_limit(&self, tag: &str) -> Result<()> {
        during("delete_limit", Some(tag.to_string()), async {
            let mut tx = self.begin().await?;
            let done = sqlx::query("DELETE FROM limits WHERE tag = $1")
                .bind(tag)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("limit", tag));
            }
            tx.commit().await
        })
        .await
    }

    async fn tag_slots_in_use(&self, tag: &str) -> Result<u64> {
        during("tag_slots_in_use", Some(tag.to_string()), async {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM slots WHERE kind = 'tag' AND key = $1")
                    .bind(tag)
                    .fetch_one(&self.reader)
                    .await?;
            Ok(count(n))
        })
        .await
    }

    async fn create_deployment(&self, d: &Deployment) -> Result<()> {
        during("create_deployment", Some(d.name.clone()), async {
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO deployments (name, pool, queue, job_variables, tags, parameters, \
                 description, retries_max, retry_delay_seconds, created_at, updated_at, team) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&d.name)
            .bind(&d.pool)
            .bind(&d.queue)
            .bind(to_json(&d.job_variables)?)
            .bind(to_json(&d.tags)?)
            .bind(to_json(&d.parameters)?)
            .bind(&d.description)
            .bind(i64::from(d.retries.max))
            .bind(i64::from(d.retries.delay_seconds))
            .bind(micros(d.created_at))
            .bind(micros(d.updated_at))
            .bind(&d.team)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                    Some("name"),
                    format!("deployment {:?} already exists", d.name),
                )),
                Err(e) => Err(e.into()),
                Ok(_) => tx.commit().await,
            }
        })
        .await
    }

    async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        during("get_deployment", Some(name.to_string()), async {
            let row = sqlx::query("SELECT * FROM deployments WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| StoreError::not_found("deployment", name))?;
            deployment_from_row(&row)
        })
        .await
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        during("list_deployments", None, async {
            let rows = sqlx::query("SELECT * FROM deployments ORDER BY name")
                .fetch_all(&self.reader)
                .await?;
            rows.iter().map(deployment_from_row).collect()
        })
        .await
    }

    async fn update_deployment(&self, name: &str, patch: DeploymentPatch) -> Result<Deployment> {
        during("update_deployment", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            let row = sqlx::query(&format!(
                "SELECT * FROM deployments WHERE name = $1{}",
                self.dialect.lock_row
            ))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("deployment", name))?;
            let mut d = deployment_from_row(&row)?;
            if let Some(q) = patch.queue {
                d.queue = q;
            }
            if let Some(v) = patch.job_variables {
                d.job_variables = v;
            }
            if let Some(t) = patch.tags {
                d.tags = t;
            }
            if let Some(p) = patch.parameters {
                d.parameters = p;
            }
            if let Some(desc) = patch.description {
                d.description = desc;
            }
            if let Some(r) = patch.retries {
                d.retries = r;
            }
            if let Some(t) = patch.team {
                d.team = t;
            }
            d.updated_at = Utc::now();
            sqlx::query(
                "UPDATE deployments SET queue = $1, job_variables = $2, tags = $3, parameters = $4, \
                 description = $5, retries_max = $6, retry_delay_seconds = $7, updated_at = $8, \
                 team = $9 WHERE name = $10",
            )
            .bind(&d.queue)
            .bind(to_json(&d.job_variables)?)
            .bind(to_json(&d.tags)?)
            .bind(to_json(&d.parameters)?)
            .bind(&d.description)
            .bind(i64::from(d.retries.max))
            .bind(i64::from(d.retries.delay_seconds))
            .bind(micros(d.updated_at))
            .bind(&d.team)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(d)
        })
        .await
    }

    async fn delete_deployment(&self, name: &str) -> Result<()> {
        during("delete_deployment", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            let done = sqlx::query("DELETE FROM deployments WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("deployment", name));
            }
            tx.commit().await
        })
        .await
    }

    async fn create_schedule(&self, schedule: &Schedule) -> Result<()> {
        let subject = format!("{}/{}", schedule.deployment, schedule.name);
        during("create_schedule", Some(subject), async {
            let mut tx = self.begin().await?;
            schedules::insert(&mut tx, schedule).await?;
            tx.commit().await
        })
        .await
    }

    async fn get_schedule(&self, deployment: &str, name: &str) -> Result<Schedule> {
        during(
            "get_schedule",
            Some(format!("{deployment}/{name}")),
            async {
                schedules::get(&self.reader, deployment, name)
                    .await?
                    .ok_or_else(|| {
                        StoreError::not_found("schedule", format!("{deployment}/{name}"))
                    })
            },
        )
        .await
    }

    async fn list_schedules(&self, deployment: Option<&str>) -> Result<Vec<Schedule>> {
        during("list_schedules", deployment.map(str::to_owned), async {
            if let Some(d) = deployment {
                self.get_deployment(d).await?;
            }
            schedules::list(&self.reader, deployment).await
        })
        .await
    }

    async fn replace_schedule(&self, schedule: &Schedule) -> Result<()> {
        let subject = format!("{}/{}", schedule.deployment, schedule.name);
        during("replace_schedule", Some(subject), async {
            let mut tx = self.begin().await?;
            schedules::get_for_update(
                &mut tx,
                self.dialect.lock_row,
                &schedule.deployment,
                &schedule.name,
            )
            .await?;
            schedules::replace(&mut tx, schedule).await?;
            tx.commit().await
        })
        .await
    }

    async fn advance_schedule(&self, schedule: &Schedule, through: DateTime<Utc>) -> Result<bool> {
        let subject = format!("{}/{}", schedule.deployment, schedule.name);
        during("advance_schedule", Some(subject), async {
            let mut tx = self.begin().await?;
            let moved = schedules::advance(&mut tx, schedule, through).await?;
            tx.commit().await?;
            Ok(moved)
        })
        .await
    }

    async fn delete_schedule(&self, deployment: &str, name: &str) -> Result<()> {
        during(
            "delete_schedule",
            Some(format!("{deployment}/{name}")),
            async {
                let mut tx = self.begin().await?;
                schedules::delete(&mut tx, deployment, name).await?;
                tx.commit().await
            },
        )
        .await
    }

    async fn waiting_runs_keyed(&self, deployment: &str, prefix: &str) -> Result<Vec<RunId>> {
        during(
            "waiting_runs_keyed",
            Some(deployment.to_owned()),
            schedules::waiting_runs(&self.reader, deployment, prefix),
        )
        .await
    }

    async fn insert_run(&self, run: NewRun) -> Result<(Run, bool)> {
        during("insert_run", Some(run.id.to_string()), async {
            let mut tx = self.begin().await?;
            // Key-share locks: a concurrent delete_pool / delete_queue (which
            // lock the row for update) waits for this run, then counts it.
            sqlx::query(&format!(
                "SELECT 1 FROM pools WHERE name = $1{}",
                self.dialect.share_row
            ))
            .bind(&run.pool)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "SELECT 1 FROM queues WHERE pool = $1 AND name = $2{}",
                self.dialect.share_row
            ))
            .bind(&run.pool)
            .bind(&run.queue)
            .fetch_optional(&mut *tx)
            .await?;
            let now = Utc::now();
            let id = run.id.to_string();
            // The insert claims the idempotency key: with a concurrent insert of
            // the same key it waits for that one to commit, then inserts nothing.
            let inserted = sqlx::query(
                "INSERT INTO runs (id, state, state_message, pool, queue, deployment, job, tags, \
                 parameters, job_variables, parent_run_id, idempotency_key, scheduled_at, created_at, \
                 attempt, retries_max, retry_delay_seconds, needs_admission, labels) \
                 VALUES ($1, 'Scheduled', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, \
                         $14, $15, $16, $17) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&id)
            .bind(&run.message)
            .bind(&run.pool)
            .bind(&run.queue)
            .bind(&run.deployment)
            .bind(run.job.as_ref().map(to_json).transpose()?)
            .bind(to_json(&run.tags)?)
            .bind(to_json(&run.parameters)?)
            .bind(to_json(&run.job_variables)?)
            .bind(run.parent_run_id.map(|p| p.to_string()))
            .bind(&run.idempotency_key)
            .bind(micros(run.scheduled_at))
            .bind(micros(now))
            .bind(i64::from(run.retries.max))
            .bind(i64::from(run.retries.delay_seconds))
            .bind(run.needs_admission)
            .bind(to_json(&run.labels)?)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                // Only the idempotency key can conflict here (a null key never
                // does), so the first run with it exists and is committed.
                let key = run.idempotency_key.as_deref().unwrap_or_default();
                let existing: String =
                    sqlx::query_scalar("SELECT id FROM runs WHERE idempotency_key = $1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "idempotency key {key:?} conflicted but no run has it"
                            ))
                        })?;
                let mut first = fetch_run(&mut *tx, &existing).await?;
                first.history = Some(history(&mut *tx, &existing).await?);
                // The first run may be in this very batch: answer only
                // once it is committed.
                tx.commit().await?;
                return Ok((first, false));
            }
            for tag in &run.tags {
                sqlx::query(
                    "INSERT INTO run_tags (tag, run_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(tag)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            insert_history(
                &mut tx,
                &id,
                RunState::Scheduled,
                now,
                &run.message,
                &run.cause,
            )
            .await?;
            for entry in &run.history {
                insert_history_entry(&mut tx, &id, entry).await?;
            }
            let mut tally = Tally::default();
            tally.moved(
                &Keys::of(&run.pool, &run.queue, &run.tags, &run.labels),
                None,
                RunState::Scheduled,
                1,
            );
            tally.apply(&mut tx).await?;
            let mut stored = fetch_run(&mut *tx, &id).await?;
            stored.history = Some(history(&mut *tx, &id).await?);
            tx.commit().await?;
            Ok((stored, true))
        })
        .await
    }

    async fn get_run(&self, id: RunId, with_history: bool) -> Result<Run> {
        during("get_run", Some(id.to_string()), async {
            let id = id.to_string();
            let mut conn = self.reader.acquire().await?;
            let mut run = fetch_run(&mut *conn, &id).await?;
            if with_history {
                run.history = Some(history(&mut *conn, &id).await?);
            }
            Ok(run)
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage> {
        during("list_runs", None, async {
            let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE true");
            let mut binds: Vec<String> = Vec::new();
            let next = |binds: &mut Vec<String>, v: String| {
                binds.push(v);
                format!("${}", binds.len())
            };
            if !filter.states.is_empty() {
                let marks: Vec<String> = filter
                    .states
                    .iter()
                    .map(|s| next(&mut binds, s.as_str().to_owned()))
                    .collect();
                sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
            }
            for (column, value) in [
                ("pool", &filter.pool),
                ("queue", &filter.queue),
                ("deployment", &filter.deployment),
            ] {
                if let Some(v) = value {
                    let mark = next(&mut binds, v.clone());
                    sql.push_str(&format!(" AND {column} = {mark}"));
                }
            }
            if let Some(parent) = filter.parent {
                let mark = next(&mut binds, parent.to_string());
                sql.push_str(&format!(" AND parent_run_id = {mark}"));
            }
            if let Some(tag) = &filter.tag {
                let mark = next(&mut binds, tag.clone());
                sql.push_str(&format!(
                    " AND id IN (SELECT run_id FROM run_tags WHERE tag = {mark})"
                ));
            }
            let mut n = binds.len();
            if filter.before_seq.is_some() {
                n += 1;
                sql.push_str(&format!(" AND seq < ${n}"));
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", n + 1));
            let limit = i64::from(filter.limit.max(1));
            let mut q = sqlx::query(&sql);
            for b in &binds {
                q = q.bind(b);
            }
            if let Some(seq) = filter.before_seq {
                q = q.bind(seq);
            }
            q = q.bind(limit + 1);
            let rows = q.fetch_all(&self.reader).await?;
            let mut runs = Vec::with_capacity(rows.len());
            let mut last_seq = None;
            for row in rows.iter().take(limit as usize) {
                last_seq = Some(row.try_get::<i64, _>("seq")?);
                runs.push(run_from_row(row)?);
            }
            let next_seq = if rows.len() as i64 > limit {
                last_seq
            } else {
                None
            };
            Ok(RunPage { runs, next_seq })
        })
        .await
    }

    async fn transition(&self, id: RunId, t: Transition) -> Result<Run> {
        during("transition", Some(id.to_string()), async {
            let id = id.to_string();
            let mut tx = self.begin().await?;
            let run = lock_run(self.dialect, &mut tx, &id).await?;
            run.state.check_transition(t.to)?;
            let now = Utc::now();
            let started_at = if t.to == RunState::Running && run.started_at.is_none() {
                Some(now)
            } else {
                run.started_at
            };
            let ended_at = if t.to.is_terminal() { Some(now) } else { None };
            let (scheduled_at, attempt) = match (t.to, t.retry_at) {
                (RunState::AwaitingRetry, Some(at)) => (at, run.attempt + 1),
                (RunState::AwaitingRetry, None) => (now, run.attempt + 1),
                _ => (run.scheduled_at, run.attempt),
            };
            let exit_code = t.exit_code.or(run.exit_code);
            sqlx::query(
                "UPDATE runs SET state = $1, state_message = $2, started_at = $3, ended_at = $4, \
                 scheduled_at = $5, attempt = $6, exit_code = $7 WHERE id = $8",
            )
            .bind(t.to.as_str())
            .bind(&t.message)
            .bind(started_at.map(micros))
            .bind(ended_at.map(micros))
            .bind(micros(scheduled_at))
            .bind(i64::from(attempt))
            .bind(exit_code)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if run.state.holds_slots() && !t.to.holds_slots() {
                sqlx::query("DELETE FROM slots WHERE run_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
            insert_history_entry(
                &mut tx,
                &id,
                &HistoryEntry {
                    state: t.to,
                    at: now,
                    message: t.message.clone(),
                    cause: t.cause.clone(),
                    detail: t.detail.clone(),
                },
            )
            .await?;
            let mut tally = Tally::default();
            tally.moved(
                &Keys::of(&run.pool, &run.queue, &run.tags, &run.labels),
                Some(run.state),
                t.to,
                1,
            );
            tally.apply(&mut tx).await?;
            let updated = fetch_run(&mut *tx, &id).await?;
            tx.commit().await?;
            Ok(updated)
        })
        .await
    }

    /// One transaction: the slots in use are counted, then the walk
    /// (`domain/release.rs`) chooses runs while every limit has room, and
    /// the chosen runs are moved with multi-row statements
    /// ([`ReleasePass::commit`]). Passes never interleave: on SQLite the one
    /// writer connection runs them one after the other; on PostgreSQL each
    /// first takes the dialect's release lock (`postgres.rs`), held until
    /// commit, so a second pass counts the slots the first committed. What
    /// runs meanwhile (ends giving slots back, new runs) only makes the
    /// counts conservative. A chosen run that stopped waiting since it was
    /// read is not moved, and the walk is made again (in the same
    /// transaction, counting what it moved) so its place goes to the next.
    async fn release_ready(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<Released>> {
        during("release_ready", None, async {
            let mut tx = self.begin().await?;
            if let Some(lock) = self.dialect.release_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let mut tally = Tally::default();
            let mut taken: Vec<Run> = Vec::new();
            // Times recorded for releases are taken after the first count: a
            // transition that gave a slot back stamped its time before it
            // committed, and the count saw only what had committed, so every
            // end that freed a slot taken here is recorded before this
            // release.
            let mut now = now;
            loop {
                let (mut queues, mut limits, cursors) = release_state(&mut tx).await?;
                if taken.is_empty() {
                    now = Utc::now().max(now);
                }
                let mut pass = ReleasePass {
                    tx: &mut tx,
                    cursors,
                    now,
                };
                let want = max - taken.len();
                let chosen = release::walk(&mut pass, &mut queues, &mut limits, want).await?;
                let n = chosen.len();
                let moved = pass.commit(self.dialect, chosen, &mut tally).await?;
                let all_moved = moved.len() == n;
                taken.extend(moved);
                if all_moved || taken.len() >= max {
                    break;
                }
            }
            tally.apply(&mut tx).await?;
            tx.commit().await?;
            Ok(taken
                .into_iter()
                .map(|mut run| {
                    let waited_since = run.scheduled_at.max(run.created_at);
                    run.state = RunState::Pending;
                    run.state_message = RELEASED.into();
                    Released {
                        waited: (now - waited_since).to_std().unwrap_or_default(),
                        run,
                    }
                })
                .collect())
        })
        .await
    }

    async fn mark_late(
        &self,
        now: DateTime<Utc>,
        default_after: chrono::Duration,
    ) -> Result<Vec<LateRun>> {
        during("mark_late", None, async {
            let default_s = default_after.num_seconds().max(0);
            // Queues with their own threshold or action; the rest use the
            // server's threshold and keep their Late runs.
            let mut policies = BTreeMap::new();
            for row in sqlx::query(
                "SELECT pool, name, late_after_seconds, late_action FROM queues \
                 WHERE late_after_seconds IS NOT NULL OR late_action <> 'keep'",
            )
            .fetch_all(&self.reader)
            .await?
            {
                let q = (
                    row.try_get::<String, _>("pool")?,
                    row.try_get::<String, _>("name")?,
                );
                let after: Option<i64> = row.try_get("late_after_seconds")?;
                let action: String = row.try_get("late_action")?;
                policies.insert(q, (after.unwrap_or(default_s), action == "cancel"));
            }
            let shortest = policies
                .values()
                .map(|(s, _)| *s)
                .min()
                .unwrap_or(default_s)
                .min(default_s);
            // In batches, each its own transaction, so a deep backlog turning
            // Late never holds long locks.
            let mut marked = Vec::new();
            loop {
                let mut tx = self.begin().await?;
                let now_us = micros(now);
                // One statement picks and moves them, so a run released or
                // cancelled meanwhile is not marked (on PostgreSQL the
                // subquery locks what it picks and skips what another writer
                // holds; SQLite has one writer). The outer `WHERE` is by id
                // alone: with `AND state = 'Scheduled'` there too, SQLite's
                // planner drove the update from `runs_state_time`, reading
                // every Scheduled run on every scheduler pass (256 ms at 1M
                // queued, `weir-bench growth` on 3529542; 105 ms → 0.11 ms at
                // 300k with the sqlite3 module). The range on `scheduled_at`
                // (the shortest threshold) keeps that index's range scan; the
                // run's own queue's threshold is checked per run.
                let rows = sqlx::query(&format!(
                    "UPDATE runs SET state = 'Late', state_message = $1 WHERE id IN ( \
                     SELECT id FROM runs WHERE state = 'Scheduled' AND scheduled_at < $2 \
                     AND scheduled_at < $3 - 1000000 * COALESCE((SELECT q.late_after_seconds \
                     FROM queues q WHERE q.pool = runs.pool AND q.name = runs.queue), $4) \
                     ORDER BY scheduled_at LIMIT $5{}) RETURNING id, pool, queue, scheduled_at",
                    self.dialect.skip_locked
                ))
                .bind("waiting past its scheduled time")
                .bind(now_us.saturating_sub(shortest.saturating_mul(1_000_000)))
                .bind(now_us)
                .bind(default_s)
                .bind(MARK_LATE_BATCH)
                .fetch_all(&mut *tx)
                .await?;
                let mut batch = Vec::with_capacity(rows.len());
                for row in &rows {
                    let id: String = row.try_get("id")?;
                    let pool: String = row.try_get("pool")?;
                    let queue: String = row.try_get("queue")?;
                    let scheduled_at = from_micros(row.try_get("scheduled_at")?)?;
                    insert_history(
                        &mut tx,
                        &id,
                        RunState::Late,
                        now,
                        "waiting past its scheduled time",
                        crate::domain::Cause::SCHEDULER,
                    )
                    .await?;
                    let (after, cancel) = policies
                        .get(&(pool.clone(), queue.clone()))
                        .copied()
                        .unwrap_or((default_s, false));
                    batch.push(LateRun {
                        id: parse_uuid(&id)?,
                        pool,
                        queue,
                        late_by: now - scheduled_at,
                        late_after_seconds: after,
                        cancel,
                    });
                }
                let mut tally = Tally::default();
                tally.moved(
                    &Keys::default(),
                    Some(RunState::Scheduled),
                    RunState::Late,
                    rows.len() as i64,
                );
                tally.apply(&mut tx).await?;
                tx.commit().await?;
                let full = (rows.len() as i64) == MARK_LATE_BATCH;
                marked.extend(batch);
                if !full {
                    return Ok(marked);
                }
            }
        })
        .await
    }

    async fn next_wake(
        &self,
        now: DateTime<Utc>,
        late_after: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>> {
        during("next_wake", None, async {
            let now_us = micros(now);
            let due: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT MIN(scheduled_at) FROM runs WHERE state IN {WAITING} AND scheduled_at > $1"
            ))
            .bind(now_us)
            .fetch_one(&self.reader)
            .await?;
            // When the next Scheduled run turns Late, by its queue's
            // threshold: one query for the queues on the server's threshold
            // and one per other threshold, each over its queues (a run whose
            // threshold is longer than its group's would wake the scheduler
            // before it is late, again and again).
            let mut groups: BTreeMap<i64, Vec<(String, String)>> = BTreeMap::new();
            for row in sqlx::query(
                "SELECT pool, name, late_after_seconds FROM queues \
                 WHERE late_after_seconds IS NOT NULL",
            )
            .fetch_all(&self.reader)
            .await?
            {
                let s: i64 = row.try_get("late_after_seconds")?;
                groups
                    .entry(s.saturating_mul(1_000_000))
                    .or_default()
                    .push((row.try_get("pool")?, row.try_get("name")?));
            }
            let default_us = late_after.num_microseconds().unwrap_or(i64::MAX);
            let overridden: Vec<(String, String)> = groups.values().flatten().cloned().collect();
            // (threshold, its queues, whether the runs are in them or not)
            let mut checks = vec![(default_us, overridden.as_slice(), false)];
            checks.extend(groups.iter().map(|(us, q)| (*us, q.as_slice(), true)));
            let mut late: Option<i64> = None;
            for (after_us, queues, inside) in checks {
                let any = queues
                    .iter()
                    .enumerate()
                    .map(|(i, _)| format!("(pool = ${} AND queue = ${})", 2 * i + 2, 2 * i + 3))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let filter = match (queues.is_empty(), inside) {
                    (true, _) => String::new(),
                    (false, true) => format!(" AND ({any})"),
                    (false, false) => format!(" AND NOT ({any})"),
                };
                let sql = format!(
                    "SELECT MIN(scheduled_at) FROM runs WHERE state = 'Scheduled' \
                     AND scheduled_at >= $1{filter}"
                );
                let mut q = sqlx::query_scalar::<_, Option<i64>>(&sql)
                    .bind(now_us.saturating_sub(after_us));
                for (pool, queue) in queues {
                    q = q.bind(pool).bind(queue);
                }
                if let Some(t) = q.fetch_one(&self.reader).await? {
                    let at = t.saturating_add(after_us);
                    late = Some(late.map_or(at, |l| l.min(at)));
                }
            }
            let next = match (due, late) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            next.map(from_micros).transpose()
        })
        .await
    }

    async fn active_runs(&self) -> Result<Vec<Run>> {
        during("active_runs", None, async {
            let rows = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE state IN {HOLDING} ORDER BY seq"
            ))
            .fetch_all(&self.reader)
            .await?;
            rows.iter().map(run_from_row).collect()
        })
        .await
    }

    async fn unreadable_runs(&self) -> Result<Vec<(RunId, String)>> {
        during("unreadable_runs", None, async {
            let mut found = Vec::new();
            // Row by row: a backlog of a million waiting runs read whole
            // held ~1.9 GB at start (weir-bench growth, 1M queued).
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE state IN {HOLDING} OR state IN {WAITING} ORDER BY seq"
            );
            let mut rows = sqlx::query(&sql).fetch(&self.reader);
            while let Some(row) = rows.try_next().await? {
                let row = &row;
                let Ok(id) = parse_uuid(row.try_get("id")?) else {
                    continue;
                };
                let why = match run_from_row(row) {
                    Err(e) => Some(e.to_string()),
                    Ok(run) => {
                        let id = id.to_string();
                        let mut why = None;
                        if run.state.holds_slots()
                            && let Err(e) = self.submission(run.id, run.attempt).await
                        {
                            why = Some(e.to_string());
                        }
                        // The history too, but only of runs in flight (few):
                        // a waiting run's is read by nothing but the API.
                        if why.is_none()
                            && run.state.holds_slots()
                            && let Err(e) = history(&self.reader, &id).await
                        {
                            why = Some(e.to_string());
                        }
                        why
                    }
                };
                if let Some(why) = why {
                    found.push((id, why));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn quarantine_run(&self, id: RunId, why: &str) -> Result<()> {
        during("quarantine_run", Some(id.to_string()), async {
            let id = id.to_string();
            let mut tx = self.begin().await?;
            let Some(row) = sqlx::query("SELECT state, pool, queue, attempt, job, tags, labels, parameters, job_variables FROM runs WHERE id = $1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return tx.commit().await;
            };
            let state: String = row.try_get("state")?;
            if RunState::parse(&state).is_some_and(RunState::is_terminal) {
                return tx.commit().await;
            }
            let attempt: i64 = row.try_get("attempt")?;
            // What the run is counted under, from what still reads back:
            // its tags from run_tags (the JSON column may not), its labels
            // if they read back; else they are counted again below.
            let tags: Vec<String> =
                sqlx::query_scalar("SELECT tag FROM run_tags WHERE run_id = $1")
                    .bind(&id)
                    .fetch_all(&mut *tx)
                    .await?;
            let raw_labels: Option<String> = row.try_get("labels")?;
            let labels = raw_labels
                .as_deref()
                .and_then(|l| serde_json::from_str::<serde_json::Map<String, Value>>(l).ok());
            let keys = Keys::of(
                &row.try_get::<String, _>("pool")?,
                &row.try_get::<String, _>("queue")?,
                &tags,
                labels.as_ref().unwrap_or(&serde_json::Map::new()),
            );
            let mut set_aside: Vec<(String, String)> = Vec::new();
            let mut assignments = Vec::new();
            for (column, placeholder) in quarantine::RUN_JSON_COLUMNS {
                let raw: Option<String> = row.try_get(column)?;
                if quarantine::unreadable(column, raw.as_deref()).is_some() {
                    assignments.push(format!(
                        "{column} = {}",
                        placeholder.map_or("NULL".to_owned(), |p| format!("'{p}'"))
                    ));
                    set_aside.push((column.to_owned(), raw.unwrap_or_default()));
                }
            }
            let submission = sqlx::query(
                "SELECT attempt, target FROM submissions WHERE run_id = $1 AND attempt = $2",
            )
            .bind(&id)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = submission {
                let raw: String = row.try_get("target")?;
                if quarantine::unreadable("target", Some(&raw)).is_some() {
                    sqlx::query(
                        "UPDATE submissions SET target = $1 WHERE run_id = $2 AND attempt = $3",
                    )
                    .bind(quarantine::set_aside(&raw))
                    .bind(&id)
                    .bind(attempt)
                    .execute(&mut *tx)
                    .await?;
                    set_aside.push(("submission".to_owned(), raw));
                }
            }
            for row in sqlx::query(
                "SELECT seq, detail FROM run_history WHERE run_id = $1 AND detail IS NOT NULL",
            )
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
            {
                let raw: String = row.try_get("detail")?;
                if quarantine::unreadable("detail", Some(&raw)).is_some() {
                    sqlx::query("UPDATE run_history SET detail = $1 WHERE seq = $2")
                        .bind(quarantine::set_aside(&raw))
                        .bind(row.try_get::<i64, _>("seq")?)
                        .execute(&mut *tx)
                        .await?;
                    set_aside.push(("history".to_owned(), raw));
                }
            }
            let reason = quarantine::reason(why);
            let line = quarantine::entry(&reason, &set_aside);
            assignments.push("needs_admission = false".to_owned());
            let sql = format!(
                "UPDATE runs SET state = 'Crashed', state_message = $1, ended_at = $2, {} WHERE id = $3",
                assignments.join(", ")
            );
            sqlx::query(&sql)
                .bind(history::clipped(&reason).as_ref())
                .bind(micros(line.at))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM slots WHERE run_id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            insert_history_entry(&mut tx, &id, &line).await?;
            let mut tally = Tally::default();
            tally.moved(&keys, RunState::parse(&state), RunState::Crashed, 1);
            tally.apply(&mut tx).await?;
            if labels.is_none() {
                counters::recount_labels(&mut tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        during("stats", None, async {
            let mut stats = StoreStats {
                runs_by_state: runs_by_state(&self.reader).await?,
                ..StoreStats::default()
            };
            for row in sqlx::query("SELECT pool, name FROM queues")
                .fetch_all(&self.reader)
                .await?
            {
                stats.queues.insert(
                    (row.try_get("pool")?, row.try_get("name")?),
                    Occupancy::default(),
                );
            }
            for row in
                sqlx::query("SELECT key, value, active, queued FROM occupancy WHERE kind = 'queue'")
                    .fetch_all(&self.reader)
                    .await?
            {
                stats.queues.insert(
                    (row.try_get("key")?, row.try_get("value")?),
                    Occupancy {
                        active: count(row.try_get("active")?),
                        queued: count(row.try_get("queued")?),
                    },
                );
            }
            let limits: HashMap<(String, String), Option<u32>> = {
                let mut m = HashMap::new();
                for p in self.list_pools().await? {
                    m.insert(("pool".to_owned(), p.name.clone()), p.concurrency_limit);
                    for q in self.list_queues(&p.name).await? {
                        m.insert(
                            ("queue".to_owned(), format!("{}/{}", q.pool, q.name)),
                            q.concurrency_limit,
                        );
                    }
                }
                for l in self.list_limits().await? {
                    m.insert(("tag".to_owned(), l.tag), Some(l.limit));
                }
                m
            };
            for (key, limit) in &limits {
                stats.slots.insert(key.clone(), (0, *limit));
            }
            for row in sqlx::query("SELECT kind, key, COUNT(*) AS n FROM slots GROUP BY kind, key")
                .fetch_all(&self.reader)
                .await?
            {
                let key: (String, String) = (row.try_get("kind")?, row.try_get("key")?);
                let n = count(row.try_get("n")?);
                let limit = limits.get(&key).copied().flatten();
                stats.slots.insert(key, (n, limit));
            }
            stats.group_commit = self.group.as_ref().map(GroupCommit::counts);
            Ok(stats)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        during("ping", None, async {
            let mut tx = self.begin().await?;
            sqlx::query("SELECT 1").execute(&mut *tx).await?;
            tx.commit().await
        })
        .await
    }

    async fn append_history(&self, id: RunId, entries: &[HistoryEntry]) -> Result<()> {
        during("append_history", Some(id.to_string()), async {
            if entries.is_empty() {
                return Ok(());
            }
            let id = id.to_string();
            let mut tx = self.begin().await?;
            for e in entries {
                append_decision(&mut tx, &id, e).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn due_admissions(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<Run>> {
        during("due_admissions", None, async {
            let rows = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM {} AND state IN {WAITING} \
                 AND scheduled_at <= $1 ORDER BY scheduled_at, seq LIMIT $2",
                self.dialect.deferred_runs
            ))
            .bind(micros(now))
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await?;
            rows.iter().map(run_from_row).collect()
        })
        .await
    }

    async fn set_admission(
        &self,
        id: RunId,
        defer_until: Option<DateTime<Utc>>,
        entries: &[HistoryEntry],
    ) -> Result<()> {
        during("set_admission", Some(id.to_string()), async {
            let id = id.to_string();
            let mut tx = self.begin().await?;
            let run = lock_run(self.dialect, &mut tx, &id).await?;
            if !run.state.is_waiting() {
                // Cancelled meanwhile: nothing to admit.
                return tx.commit().await;
            }
            match defer_until {
                None => {
                    sqlx::query("UPDATE runs SET needs_admission = false WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(t) => {
                    sqlx::query(
                        "UPDATE runs SET needs_admission = true, scheduled_at = $1 WHERE id = $2",
                    )
                    .bind(micros(t))
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for e in entries {
                append_decision(&mut tx, &id, e).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn label_occupancy(&self, key: &str, value: &str) -> Result<Occupancy> {
        during("label_occupancy", None, async {
            counters::occupancy(&self.reader, "label", key, value).await
        })
        .await
    }

    async fn tag_occupancy(&self, tag: &str) -> Result<Occupancy> {
        during("tag_occupancy", Some(tag.to_string()), async {
            counters::occupancy(&self.reader, "tag", tag, "").await
        })
        .await
    }

    async fn waiting_facts(&self, id: RunId, now: DateTime<Utc>) -> Result<Option<WaitFacts>> {
        during("waiting_facts", Some(id.to_string()), async {
            let mut tx = self.reader.begin().await?;
            if let Some(snapshot) = self.dialect.snapshot {
                sqlx::query(snapshot).execute(&mut *tx).await?;
            }
            let id = id.to_string();
            let run = fetch_run(&mut *tx, &id).await?;
            if !run.state.is_waiting() {
                return Ok(None);
            }
            let row = sqlx::query("SELECT seq, needs_admission FROM runs WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
            let seq: i64 = row.try_get("seq")?;
            let deferred = flag(&row, "needs_admission")?;

            let pool =
                match sqlx::query("SELECT paused, concurrency_limit FROM pools WHERE name = $1")
                    .bind(&run.pool)
                    .fetch_optional(&mut *tx)
                    .await?
                {
                    Some(row) => Some(
                        limit_facts(
                            &mut tx,
                            flag(&row, "paused")?,
                            opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
                            "pool",
                            &run.pool,
                        )
                        .await?,
                    ),
                    None => None,
                };
            let mut queue = None;
            let mut pool_queues = Vec::new();
            for row in sqlx::query(
                "SELECT name, priority, paused, concurrency_limit FROM queues \
                 WHERE pool = $1 ORDER BY priority, name",
            )
            .bind(&run.pool)
            .fetch_all(&mut *tx)
            .await?
            {
                let name: String = row.try_get("name")?;
                let paused = flag(&row, "paused")?;
                if name == run.queue {
                    queue = Some(
                        limit_facts(
                            &mut tx,
                            paused,
                            opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
                            "queue",
                            &format!("{}/{}", run.pool, run.queue),
                        )
                        .await?,
                    );
                }
                pool_queues.push(QueueLine {
                    name,
                    priority: row.try_get("priority")?,
                    paused,
                    due: 0,
                    ahead: None,
                });
            }
            // What a release pass would read now: due, not deferred; each
            // count stops past the cap, so a deep queue costs no more.
            let cap = i64::try_from(WAIT_COUNT_CAP + 1).unwrap_or(i64::MAX);
            for line in &mut pool_queues {
                let due: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM runs \
                     WHERE pool = $1 AND queue = $2 AND state IN {WAITING} AND scheduled_at <= $3 \
                       AND NOT needs_admission LIMIT $4) AS due"
                ))
                .bind(&run.pool)
                .bind(&line.name)
                .bind(micros(now))
                .bind(cap)
                .fetch_one(&mut *tx)
                .await?;
                line.due = count(due);
            }
            let ahead: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM runs \
                 WHERE pool = $1 AND queue = $2 AND state IN {WAITING} AND scheduled_at <= $3 \
                   AND NOT needs_admission \
                   AND (scheduled_at < $4 OR (scheduled_at = $4 AND seq < $5)) LIMIT $6) AS ahead"
            ))
            .bind(&run.pool)
            .bind(&run.queue)
            .bind(micros(now))
            .bind(micros(run.scheduled_at))
            .bind(seq)
            .bind(cap)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(line) = pool_queues.iter_mut().find(|q| q.name == run.queue) {
                line.ahead = Some(count(ahead));
            }

            let mut tags = Vec::new();
            let mut names: Vec<&String> = run.tags.iter().collect();
            names.sort_unstable();
            names.dedup();
            for tag in names {
                let slots: Option<i64> =
                    sqlx::query_scalar("SELECT slots FROM limits WHERE tag = $1")
                        .bind(tag)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(slots) = slots {
                    let limit = Some(to_u32("slots", slots)?);
                    tags.push((
                        tag.clone(),
                        limit_facts(&mut tx, false, limit, "tag", tag).await?,
                    ));
                }
            }
            tx.commit().await?;
            Ok(Some(WaitFacts {
                run,
                deferred,
                pool,
                queue,
                tags,
                pool_queues,
            }))
        })
        .await
    }

    async fn activity(&self) -> Result<Activity> {
        during("activity", None, async {
            let mut tx = self.reader.begin().await?;
            if let Some(snapshot) = self.dialect.snapshot {
                sqlx::query(snapshot).execute(&mut *tx).await?;
            }
            let mut activity = Activity {
                runs_by_state: runs_by_state(&mut *tx).await?,
                ..Activity::default()
            };
            activity.history_seq =
                sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM run_history")
                    .fetch_one(&mut *tx)
                    .await?
                    .unwrap_or(0);
            tx.commit().await?;
            Ok(activity)
        })
        .await
    }

    async fn recent_decisions(
        &self,
        plugin: &str,
        scan: u64,
    ) -> Result<Vec<(RunId, HistoryEntry)>> {
        during("recent_decisions", Some(plugin.to_owned()), async {
            let newest = sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM run_history")
                .fetch_one(&self.reader)
                .await?
                .unwrap_or(0);
            let from = newest.saturating_sub(i64::try_from(scan).unwrap_or(i64::MAX));
            // Plugin names are DNS labels: no LIKE wildcards in them.
            let rows = sqlx::query(
                "SELECT run_id, state, at, message, cause, detail FROM run_history \
                 WHERE seq > $1 AND cause LIKE $2 ORDER BY seq DESC",
            )
            .bind(from)
            .bind(format!("%:{plugin}"))
            .fetch_all(&self.reader)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        parse_uuid(&row.try_get::<String, _>("run_id")?)?,
                        history_from_row(row)?,
                    ))
                })
                .collect()
        })
        .await
    }

    async fn queue_waiting(
        &self,
        pool: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<QueueWaiting>> {
        during("queue_waiting", pool.map(str::to_owned), async {
            let mut tx = self.reader.begin().await?;
            if let Some(snapshot) = self.dialect.snapshot {
                sqlx::query(snapshot).execute(&mut *tx).await?;
            }
            // Tags whose limit has no free slot: a due run carrying one
            // waits on it (few rows: one per tag limit).
            let full_tags: Vec<String> = sqlx::query_scalar(
                "SELECT l.tag FROM limits l WHERE l.slots <= \
                 (SELECT COUNT(*) FROM slots s WHERE s.kind = 'tag' AND s.key = l.tag) \
                 ORDER BY l.tag",
            )
            .fetch_all(&mut *tx)
            .await?;
            let tag_full = if full_tags.is_empty() {
                "FALSE".to_owned()
            } else {
                let params: Vec<String> = (0..full_tags.len())
                    .map(|i| format!("${}", i + 4))
                    .collect();
                format!(
                    "EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.id AND t.tag IN ({}))",
                    params.join(", ")
                )
            };
            let scan = format!(
                "SELECT state, needs_admission, scheduled_at, {tag_full} AS tag_full FROM runs r \
                 WHERE pool = $1 AND queue = $2 AND state IN {WAITING} \
                 ORDER BY scheduled_at, seq LIMIT $3"
            );
            let mut select = String::from(
                "SELECT q.pool, q.name, q.paused, q.concurrency_limit, p.paused AS pool_paused, \
                 p.concurrency_limit AS pool_limit FROM queues q JOIN pools p ON p.name = q.pool",
            );
            if pool.is_some() {
                select.push_str(" WHERE q.pool = $1");
            }
            select.push_str(" ORDER BY q.pool, q.priority, q.name");
            let mut query = sqlx::query(&select);
            if let Some(pool) = pool {
                query = query.bind(pool);
            }
            let rows = query.fetch_all(&mut *tx).await?;
            let cap = i64::try_from(WAIT_COUNT_CAP).unwrap_or(i64::MAX);
            let now = micros(now);
            let mut pool_used: HashMap<String, u64> = HashMap::new();
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let pool: String = row.try_get("pool")?;
                let queue: String = row.try_get("name")?;
                let used = match pool_used.get(&pool) {
                    Some(used) => *used,
                    None => {
                        let used = slots_used(&mut tx, "pool", &pool).await?;
                        pool_used.insert(pool.clone(), used);
                        used
                    }
                };
                let pool_limit = opt_u32("concurrency_limit", row.try_get("pool_limit")?)?;
                let queue_limit = opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?;
                let queue_used = match queue_limit {
                    Some(_) => slots_used(&mut tx, "queue", &format!("{pool}/{queue}")).await?,
                    None => 0,
                };
                let queued = counters::occupancy(&mut *tx, "queue", &pool, &queue)
                    .await?
                    .queued;
                let mut scanned = WaitScan::default();
                let mut query = sqlx::query(&scan).bind(&pool).bind(&queue).bind(cap);
                for tag in &full_tags {
                    query = query.bind(tag);
                }
                for run in query.fetch_all(&mut *tx).await? {
                    let state = RunState::parse(&run.try_get::<String, _>("state")?)
                        .ok_or_else(|| StoreError::Corrupt("unknown run state".into()))?;
                    let due = run.try_get::<i64, _>("scheduled_at")? <= now;
                    let slot = if flag(&run, "needs_admission")? {
                        &mut scanned.deferred
                    } else if !due && state == RunState::AwaitingRetry {
                        &mut scanned.retry
                    } else if !due {
                        &mut scanned.scheduled
                    } else if flag(&run, "tag_full")? {
                        &mut scanned.tag_full
                    } else {
                        &mut scanned.due
                    };
                    *slot += 1;
                }
                out.push(QueueWaiting {
                    pool_paused: flag(&row, "pool_paused")?,
                    queue_paused: flag(&row, "paused")?,
                    pool_full: pool_limit.is_some_and(|l| used >= u64::from(l)),
                    queue_full: queue_limit.is_some_and(|l| queue_used >= u64::from(l)),
                    pool,
                    queue,
                    queued,
                    scanned,
                });
            }
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn add_plugin_version(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
        world: World,
        wit_version: &str,
    ) -> Result<(PluginVersion, bool)> {
        during("add_plugin_version", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            // Numbering is read-then-insert: two uploads of one plugin take
            // turns (a lock per name, held until commit).
            if let Some(lock) = self.dialect.plugin_lock {
                sqlx::query(lock).bind(name).execute(&mut *tx).await?;
            }
            let latest = sqlx::query(
                "SELECT * FROM plugin_versions WHERE name = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let next = match &latest {
                Some(row) => {
                    let v = plugin_version_from_row(row)?;
                    if v.digest == digest {
                        tx.commit().await?;
                        return Ok((v, false));
                    }
                    if v.world != world {
                        return Err(StoreError::conflict(
                            Some("world"),
                            format!(
                                "plugin {name:?} is a {} plugin; this component is a {} plugin",
                                v.world, world
                            ),
                        ));
                    }
                    v.version + 1
                }
                None => 1,
            };
            let now = Utc::now();
            sqlx::query(
                "INSERT INTO plugin_blobs (digest, bytes, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(bytes)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO plugin_versions (name, version, digest, world, wit_version, size, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(name)
            .bind(i64::from(next))
            .bind(digest)
            .bind(world.to_string())
            .bind(wit_version)
            .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok((
                PluginVersion {
                    name: name.to_owned(),
                    version: next,
                    digest: digest.to_owned(),
                    world,
                    wit_version: wit_version.to_owned(),
                    size: bytes.len() as u64,
                    created_at: from_micros(micros(now))?,
                },
                true,
            ))
        })
        .await
    }

    async fn plugin_versions(&self, name: &str) -> Result<Vec<PluginVersion>> {
        during("plugin_versions", Some(name.to_string()), async {
            let rows =
                sqlx::query("SELECT * FROM plugin_versions WHERE name = $1 ORDER BY version")
                    .bind(name)
                    .fetch_all(&self.reader)
                    .await?;
            if rows.is_empty() {
                return Err(StoreError::not_found("plugin", name));
            }
            rows.iter().map(plugin_version_from_row).collect()
        })
        .await
    }

    async fn list_plugins(&self) -> Result<Vec<PluginVersion>> {
        during("list_plugins", None, async {
            let rows = sqlx::query(
                "SELECT v.* FROM plugin_versions v \
                 JOIN (SELECT name, MAX(version) AS version FROM plugin_versions GROUP BY name) m \
                   ON v.name = m.name AND v.version = m.version ORDER BY v.name",
            )
            .fetch_all(&self.reader)
            .await?;
            rows.iter().map(plugin_version_from_row).collect()
        })
        .await
    }

    async fn delete_plugin(&self, name: &str) -> Result<()> {
        during("delete_plugin", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            let bound: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM plugin_bindings WHERE plugin = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
            if bound > 0 {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!("plugin {name:?} is bound {bound} time(s); unbind it first"),
                ));
            }
            let done = sqlx::query("DELETE FROM plugin_versions WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("plugin", name));
            }
            sqlx::query(
                "DELETE FROM plugin_blobs WHERE digest NOT IN (SELECT digest FROM plugin_versions)",
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn plugin_bytes(&self, digest: &str) -> Result<Vec<u8>> {
        during("plugin_bytes", Some(digest.to_string()), async {
            sqlx::query_scalar("SELECT bytes FROM plugin_blobs WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.reader)
                .await?
                .ok_or_else(|| StoreError::not_found("plugin digest", digest))
        })
        .await
    }

    async fn create_binding(&self, b: &PluginBinding) -> Result<PluginBinding> {
        during("create_binding", Some(b.plugin.clone()), async {
            let mut tx = self.begin().await?;
            let id = insert_binding(&mut tx, b).await?;
            tx.commit().await?;
            Ok(PluginBinding { id, ..b.clone() })
        })
        .await
    }

    async fn replace_bindings(&self, b: &PluginBinding) -> Result<PluginBinding> {
        during("replace_bindings", Some(b.plugin.clone()), async {
            let mut tx = self.begin().await?;
            sqlx::query("DELETE FROM plugin_bindings WHERE pool = $1 AND plugin = $2")
                .bind(b.pool.as_deref().unwrap_or(""))
                .bind(&b.plugin)
                .execute(&mut *tx)
                .await?;
            let id = insert_binding(&mut tx, b).await?;
            tx.commit().await?;
            Ok(PluginBinding { id, ..b.clone() })
        })
        .await
    }

    async fn list_bindings(&self, pool: Option<&str>) -> Result<Vec<PluginBinding>> {
        during("list_bindings", pool.map(str::to_owned), async {
            let rows =
                sqlx::query("SELECT * FROM plugin_bindings WHERE pool = $1 ORDER BY position, id")
                    .bind(pool.unwrap_or(""))
                    .fetch_all(&self.reader)
                    .await?;
            rows.iter().map(binding_from_row).collect()
        })
        .await
    }

    async fn bindings_of_plugin(&self, plugin: &str) -> Result<Vec<PluginBinding>> {
        during("bindings_of_plugin", Some(plugin.to_string()), async {
            let rows =
                sqlx::query("SELECT * FROM plugin_bindings WHERE plugin = $1 ORDER BY pool, id")
                    .bind(plugin)
                    .fetch_all(&self.reader)
                    .await?;
            rows.iter().map(binding_from_row).collect()
        })
        .await
    }

    async fn delete_binding(
        &self,
        pool: Option<&str>,
        plugin: &str,
        mode: Option<BindingMode>,
    ) -> Result<()> {
        during("delete_binding", Some(plugin.to_string()), async {
            let mut tx = self.begin().await?;
            let done = sqlx::query(
                "DELETE FROM plugin_bindings WHERE pool = $1 AND plugin = $2 \
                 AND ($3 = '' OR mode = $3)",
            )
            .bind(pool.unwrap_or(""))
            .bind(plugin)
            .bind(mode.map(BindingMode::as_str).unwrap_or(""))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let mode = mode
                    .map(|m| format!(" ({})", m.as_str()))
                    .unwrap_or_default();
                return Err(StoreError::not_found(
                    "binding",
                    match pool {
                        Some(p) => format!("{plugin} on pool {p}{mode}"),
                        None => format!("router {plugin}{mode}"),
                    },
                ));
            }
            tx.commit().await
        })
        .await
    }

    async fn record_submission(&self, id: RunId, attempt: u32, target: &Value) -> Result<bool> {
        during("record_submission", Some(id.to_string()), async {
            let mut tx = self.begin().await?;
            let run = lock_run(self.dialect, &mut tx, &id.to_string()).await?;
            if run.state != RunState::Pending || run.attempt != attempt {
                tx.commit().await?;
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO submissions (run_id, attempt, target, recorded_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, attempt) DO UPDATE SET target = excluded.target, \
                 recorded_at = excluded.recorded_at",
            )
            .bind(id.to_string())
            .bind(i64::from(attempt))
            .bind(to_json(target)?)
            .bind(micros(Utc::now()))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn submission(&self, id: RunId, attempt: u32) -> Result<Option<Value>> {
        during("submission", Some(id.to_string()), async {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT target FROM submissions WHERE run_id = $1 AND attempt = $2")
                    .bind(id.to_string())
                    .bind(i64::from(attempt))
                    .fetch_optional(&self.reader)
                    .await?;
            row.map(|(t,)| from_json("target", &t)).transpose()
        })
        .await
    }

    async fn create_token(&self, token: &TokenRecord, hash: &str) -> Result<()> {
        during("create_token", Some(token.id.clone()), async {
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO tokens (id, name, role, team, pools, prefix, hash, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(token.role.as_str())
            .bind(&token.team)
            .bind(to_json(&token.pools)?)
            .bind(&token.prefix)
            .bind(hash)
            .bind(micros(token.created_at))
            .bind(token.revoked_at.map(micros))
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                    Some("id"),
                    format!("token {:?} already exists", token.id),
                )),
                Err(e) => Err(e.into()),
                Ok(_) => tx.commit().await,
            }
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        during("token_by_hash", None, async {
            let row = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.reader)
                .await?;
            row.as_ref().map(token_from_row).transpose()
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        during("list_tokens", None, async {
            let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at, id")
                .fetch_all(&self.reader)
                .await?;
            rows.iter().map(token_from_row).collect()
        })
        .await
    }

    async fn revoke_token(&self, id: &str) -> Result<TokenRecord> {
        during("revoke_token", Some(id.to_string()), async {
            let mut tx = self.begin().await?;
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(micros(Utc::now()))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found("token", id))?;
            let token = token_from_row(&row)?;
            tx.commit().await?;
            Ok(token)
        })
        .await
    }

    async fn record_decisions(&self, records: &[DecisionRecord]) -> Result<()> {
        during("record_decisions", None, async {
            if records.is_empty() {
                return Ok(());
            }
            let mut tx = self.begin().await?;
            decisions::record(&mut tx, records).await?;
            tx.commit().await
        })
        .await
    }

    async fn recorded_decisions(&self, query: &DecisionQuery) -> Result<Vec<StoredDecision>> {
        during(
            "recorded_decisions",
            Some(query.plugin.clone()),
            decisions::read(&self.reader, query),
        )
        .await
    }

    async fn sweep_decisions(&self, keep: u64, cutoff: DateTime<Utc>) -> Result<(u64, u64)> {
        during("sweep_decisions", None, async {
            let mut tx = self.begin().await?;
            let deleted = decisions::sweep(&mut tx, keep, cutoff).await?;
            tx.commit().await?;
            Ok(deleted)
        })
        .await
    }

    async fn decisions_size(&self) -> Result<DecisionsSize> {
        during("decisions_size", None, decisions::size(&self.reader)).await
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String> {
        during("server_secret", Some(name.to_string()), async {
            let mut tx = self.begin().await?;
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(candidate)
                .execute(&mut *tx)
                .await?;
            let value: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(value)
        })
        .await
    }
}

/// A limit's slots as the release walk counts them (the `slots` table),
/// with some of the runs holding them.
/// Inserts a binding; a second binding of a plugin to one pool (or the
/// router chain) in one mode is a conflict.
async fn insert_binding(tx: &mut WriteTx, b: &PluginBinding) -> Result<i64> {
    let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO plugin_bindings (pool, plugin, pinned_version, config, position, \
         on_error, deadline_ms, memory_mb, created_at, mode) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(b.pool.as_deref().unwrap_or(""))
    .bind(&b.plugin)
    .bind(b.pinned_version.map(i64::from))
    .bind(to_json(&b.config)?)
    .bind(i64::from(b.order))
    .bind(b.on_error.as_str())
    .bind(i64::from(b.deadline_ms))
    .bind(i64::from(b.memory_mb))
    .bind(micros(b.created_at))
    .bind(b.mode.as_str())
    .fetch_one(&mut **tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
            Some("plugin"),
            format!(
                "plugin {:?} is already bound {} in {} mode",
                b.plugin,
                match &b.pool {
                    Some(p) => format!("to pool {p:?}"),
                    None => "as a router".into(),
                },
                b.mode.as_str()
            ),
        )),
        Err(e) => Err(e.into()),
        Ok(id) => Ok(id),
    }
}

/// Runs by state, from the counters (one row per state).
async fn runs_by_state<'e, E>(executor: E) -> Result<std::collections::BTreeMap<String, u64>>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let mut out = std::collections::BTreeMap::new();
    for row in sqlx::query("SELECT state, n FROM run_counts")
        .fetch_all(executor)
        .await?
    {
        out.insert(row.try_get("state")?, count(row.try_get("n")?));
    }
    Ok(out)
}

/// Slots of one pool, queue or tag held now.
async fn slots_used(
    tx: &mut sqlx::Transaction<'static, Any>,
    kind: &str,
    key: &str,
) -> Result<u64> {
    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM slots WHERE kind = $1 AND key = $2")
        .bind(kind)
        .bind(key)
        .fetch_one(&mut **tx)
        .await?;
    Ok(count(used))
}

async fn limit_facts(
    tx: &mut sqlx::Transaction<'static, Any>,
    paused: bool,
    limit: Option<u32>,
    kind: &str,
    key: &str,
) -> Result<LimitFacts> {
    let used = slots_used(tx, kind, key).await?;
    let holders = sqlx::query_scalar::<_, String>(&format!(
        "SELECT run_id FROM slots WHERE kind = $1 AND key = $2 ORDER BY run_id LIMIT {WAIT_HOLDERS}"
    ))
    .bind(kind)
    .bind(key)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|id| parse_uuid(id))
    .collect::<Result<Vec<_>>>()?;
    Ok(LimitFacts {
        paused,
        limit,
        used,
        holders,
    })
}

async fn history<'e, E>(executor: E, id: &str) -> Result<Vec<HistoryEntry>>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows = sqlx::query(
        "SELECT state, at, message, cause, detail FROM run_history WHERE run_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(executor)
    .await?;
    rows.iter().map(history_from_row).collect()
}

/// Adds a plugin-decision line as [`history::plan`] says: a repeat of the
/// newest line is folded into it, and past the bound only counted.
async fn append_decision(tx: &mut WriteTx, id: &str, entry: &HistoryEntry) -> Result<()> {
    let newest = sqlx::query(
        "SELECT seq, state, at, message, cause, detail, \
         (SELECT COUNT(*) FROM run_history WHERE run_id = $1) AS n \
         FROM run_history WHERE run_id = $2 ORDER BY seq DESC LIMIT 1",
    )
    .bind(id)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let (lines, last) = match &newest {
        Some(row) => (
            usize::try_from(row.try_get::<i64, _>("n")?).unwrap_or(usize::MAX),
            Some((row.try_get::<i64, _>("seq")?, history_from_row(row)?)),
        ),
        None => (0, None),
    };
    match history::plan(lines, last.as_ref().map(|(_, e)| e), entry.clone()) {
        HistoryWrite::Insert(e) => insert_history_entry(tx, id, &e).await,
        HistoryWrite::ReplaceLast(e) => {
            let Some((seq, _)) = last else {
                return insert_history_entry(tx, id, &e).await;
            };
            sqlx::query(
                "UPDATE run_history SET state = $1, at = $2, message = $3, cause = $4, \
                 detail = $5 WHERE seq = $6",
            )
            .bind(e.state.as_str())
            .bind(micros(e.at))
            .bind(&e.message)
            .bind(&e.cause)
            .bind(e.detail.as_ref().map(to_json).transpose()?)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    }
}
