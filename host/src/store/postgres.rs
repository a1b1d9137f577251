//! The PostgreSQL store: the same [`Store`] as [`super::SqliteStore`], for
//! a database shared by several `weir serve` replicas.
//!
//! Every method keeps the SQLite store's semantics (errors, ordering,
//! limits). What SQLite gets from having one writer, this store gets from
//! locks, because here several connections — and several hosts — write at
//! once:
//!
//! - **Releases are serialised by a transaction-scoped advisory lock**
//!   ([`RELEASE_LOCK`], see [`Store::release_ready`] below).
//! - **A run row is locked before it changes** (`SELECT ... FOR UPDATE` in
//!   `transition` and `set_admission`), and the release moves a run to
//!   `Pending` only if it is still waiting (`UPDATE ... WHERE state IN
//!   (waiting)`), so a cancel racing a release is never overwritten.
//! - **Deleting a pool or queue locks its row**, and storing a run takes a
//!   key-share lock on its pool and queue rows, so a run cannot be stored in
//!   a pool or queue being deleted.
//! - **Idempotency keys** are claimed by the insert itself (`ON CONFLICT DO
//!   NOTHING`), so two concurrent submissions with one key store one run.
//!
//! Transactions use PostgreSQL's default READ COMMITTED isolation: every
//! statement sees what was committed before it started, which is what the
//! locks above rely on.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use uuid::Uuid;

use super::quarantine;
use super::{
    DeploymentPatch, NewRun, Occupancy, PoolPatch, QueuePatch, Released, Result, RunFilter,
    RunPage, Store, StoreError, StoreStats, Transition,
};
use crate::auth::{Role, TokenRecord};
use crate::domain::history::{self, HistoryWrite};
use crate::domain::{
    ConcurrencyLimit, DEFAULT_QUEUE, Deployment, HistoryEntry, OnError, PluginBinding,
    PluginVersion, Pool, PoolType, Queue, RetryPolicy, Run, RunId, RunState, World,
};
use crate::template::BaseJobTemplate;

const WAITING: &str = "('Scheduled','Late','AwaitingRetry')";
const HOLDING: &str = "('Pending','Running','Cancelling')";
const RUN_COLUMNS: &str = "seq, id, state, state_message, pool, queue, deployment, job, tags, labels, \
    parameters, job_variables, parent_run_id, idempotency_key, scheduled_at, created_at, \
    started_at, ended_at, attempt, retries_max, retry_delay_seconds, exit_code";

/// The advisory lock key every release pass holds for its transaction
/// ("WEIR" and 1). Advisory locks are per database, so replicas sharing a
/// database share this lock and stores in different databases do not.
pub const RELEASE_LOCK: i64 = 0x5745_4952_0000_0001;

/// The lock for adding versions of one plugin: numbering them is
/// read-then-insert.
const PLUGIN_LOCK_PREFIX: &str = "weir:plugin:";

/// A `postgres://` URL. Its `Debug` and `Display` hide the password, so it
/// can be logged and put in error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Accepts `postgres://` and `postgresql://` URLs; anything else is
    /// refused with the reason (the URL in the error is redacted).
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "unsupported database URL {}: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE \
                 (without --database-url Weir uses its embedded SQLite file in the data directory)",
                redact_url(url)
            ));
        }
        PgConnectOptions::from_str(url)
            .map_err(|e| format!("invalid database URL {}: {e}", redact_url(url)))?;
        Ok(Self(url.to_owned()))
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Options for a connection of one's own (the leader's lock, the
    /// replicas' notifications).
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.0)?)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", redact_url(&self.0))
    }
}

/// The URL with any password (in the user info or a `password=` query
/// parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (failing now, not at the first request, when the server is
    /// unreachable or refuses the credentials) and applies migrations.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose())?;
        Self::connect_with(options).await
    }

    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        // One plain connection first: an unreachable server or refused
        // credentials fail here at once, where the pool would retry until
        // its acquire timeout.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// Runs marked Late per transaction.
const MARK_LATE_BATCH: i64 = 500;

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_micros(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

fn opt_micros(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_micros).transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    super::encode_json(v)
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T> {
    super::decode_json(column, s)
}

fn to_u32(column: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column}: {v} out of range")))
}

fn opt_u32(column: &str, v: Option<i64>) -> Result<Option<u32>> {
    v.map(|v| to_u32(column, v)).transpose()
}

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

fn parse_state(s: &str) -> Result<RunState> {
    RunState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run state {s:?}")))
}

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::from_str(s).map_err(|e| StoreError::Corrupt(format!("run id {s:?}: {e}")))
}

fn pool_from_row(row: &PgRow) -> Result<Pool> {
    let pool_type: String = row.try_get("type")?;
    let template: String = row.try_get("base_job_template")?;
    Ok(Pool {
        name: row.try_get("name")?,
        pool_type: PoolType::parse(&pool_type)
            .ok_or_else(|| StoreError::Corrupt(format!("pool type {pool_type:?}")))?,
        base_job_template: from_json::<BaseJobTemplate>("base_job_template", &template)?,
        cluster: row.try_get("cluster")?,
        concurrency_limit: opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
        paused: row.try_get("paused")?,
        description: row.try_get("description")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn queue_from_row(row: &PgRow) -> Result<Queue> {
    Ok(Queue {
        pool: row.try_get("pool")?,
        name: row.try_get("name")?,
        priority: to_u32("priority", row.try_get("priority")?)?,
        concurrency_limit: opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
        paused: row.try_get("paused")?,
        description: row.try_get("description")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn limit_from_row(row: &PgRow) -> Result<ConcurrencyLimit> {
    Ok(ConcurrencyLimit {
        tag: row.try_get("tag")?,
        limit: to_u32("slots", row.try_get("slots")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn deployment_from_row(row: &PgRow) -> Result<Deployment> {
    Ok(Deployment {
        name: row.try_get("name")?,
        pool: row.try_get("pool")?,
        queue: row.try_get("queue")?,
        job_variables: from_json("job_variables", row.try_get("job_variables")?)?,
        tags: from_json("tags", row.try_get("tags")?)?,
        parameters: from_json("parameters", row.try_get("parameters")?)?,
        description: row.try_get("description")?,
        team: row.try_get("team")?,
        retries: RetryPolicy {
            max: to_u32("retries_max", row.try_get("retries_max")?)?,
            delay_seconds: to_u32("retry_delay_seconds", row.try_get("retry_delay_seconds")?)?,
        },
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord> {
    let role: String = row.try_get("role")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("role: {role:?} is not a role")))?,
        team: row.try_get("team")?,
        pools: from_json("pools", row.try_get("pools")?)?,
        prefix: row.try_get("prefix")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        revoked_at: opt_micros(row.try_get("revoked_at")?)?,
    })
}

fn run_from_row(row: &PgRow) -> Result<Run> {
    let job: Option<String> = row.try_get("job")?;
    let parent: Option<String> = row.try_get("parent_run_id")?;
    Ok(Run {
        id: parse_uuid(row.try_get("id")?)?,
        state: parse_state(row.try_get("state")?)?,
        state_message: row.try_get("state_message")?,
        pool: row.try_get("pool")?,
        queue: row.try_get("queue")?,
        deployment: row.try_get("deployment")?,
        job: job.map(|j| from_json::<Value>("job", &j)).transpose()?,
        tags: from_json("tags", row.try_get("tags")?)?,
        labels: from_json("labels", row.try_get("labels")?)?,
        parameters: from_json("parameters", row.try_get("parameters")?)?,
        job_variables: from_json("job_variables", row.try_get("job_variables")?)?,
        parent_run_id: parent.as_deref().map(parse_uuid).transpose()?,
        idempotency_key: row.try_get("idempotency_key")?,
        scheduled_at: from_micros(row.try_get("scheduled_at")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        started_at: opt_micros(row.try_get("started_at")?)?,
        ended_at: opt_micros(row.try_get("ended_at")?)?,
        attempt: to_u32("attempt", row.try_get("attempt")?)?,
        retries: RetryPolicy {
            max: to_u32("retries_max", row.try_get("retries_max")?)?,
            delay_seconds: to_u32("retry_delay_seconds", row.try_get("retry_delay_seconds")?)?,
        },
        exit_code: row.try_get("exit_code")?,
        history: None,
    })
}

fn parse_world(s: &str) -> Result<World> {
    match s {
        "router" => Ok(World::Router),
        "admission" => Ok(World::Admission),
        "mutator" => Ok(World::Mutator),
        other => Err(StoreError::Corrupt(format!("plugin world {other:?}"))),
    }
}

fn plugin_version_from_row(row: &PgRow) -> Result<PluginVersion> {
    Ok(PluginVersion {
        name: row.try_get("name")?,
        version: to_u32("version", row.try_get("version")?)?,
        digest: row.try_get("digest")?,
        world: parse_world(row.try_get("world")?)?,
        wit_version: row.try_get("wit_version")?,
        size: count(row.try_get("size")?),
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn binding_from_row(row: &PgRow) -> Result<PluginBinding> {
    let pool: String = row.try_get("pool")?;
    let on_error: String = row.try_get("on_error")?;
    Ok(PluginBinding {
        id: row.try_get("id")?,
        pool: if pool.is_empty() { None } else { Some(pool) },
        plugin: row.try_get("plugin")?,
        pinned_version: opt_u32("pinned_version", row.try_get("pinned_version")?)?,
        config: from_json("config", row.try_get("config")?)?,
        order: i32::try_from(row.try_get::<i64, _>("position")?)
            .map_err(|_| StoreError::Corrupt("binding position out of range".into()))?,
        on_error: OnError::parse(&on_error)
            .ok_or_else(|| StoreError::Corrupt(format!("on_error {on_error:?}")))?,
        deadline_ms: to_u32("deadline_ms", row.try_get("deadline_ms")?)?,
        memory_mb: to_u32("memory_mb", row.try_get("memory_mb")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

async fn insert_history(
    tx: &mut Transaction<'static, Postgres>,
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

async fn insert_history_entry(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    entry: &HistoryEntry,
) -> Result<()> {
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
    E: sqlx::Executor<'e, Database = Postgres>,
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
async fn lock_run(tx: &mut Transaction<'static, Postgres>, id: &str) -> Result<Run> {
    let row = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::not_found("run", id))?;
    run_from_row(&row)
}

async fn occupancy(pool: &PgPool, where_clause: &str, binds: &[&str]) -> Result<Occupancy> {
    let sql = format!(
        "SELECT \
           COALESCE(SUM(CASE WHEN state IN {HOLDING} THEN 1 ELSE 0 END), 0)::bigint AS active, \
           COALESCE(SUM(CASE WHEN state IN {WAITING} THEN 1 ELSE 0 END), 0)::bigint AS queued \
         FROM runs WHERE {where_clause}"
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(*b);
    }
    let row = q.fetch_one(pool).await?;
    Ok(Occupancy {
        active: count(row.try_get("active")?),
        queued: count(row.try_get("queued")?),
    })
}

/// One queue's candidates during a release pass.
struct QueueCursor {
    pool: String,
    queue: String,
    limit: Option<u32>,
    used: u64,
    buffer: VecDeque<Run>,
    /// (scheduled_at, seq) of the last row fetched, for keyset paging.
    after: Option<(i64, i64)>,
    exhausted: bool,
}

const PAGE: i64 = 256;

impl QueueCursor {
    async fn next(
        &mut self,
        tx: &mut Transaction<'static, Postgres>,
        now: i64,
    ) -> Result<Option<Run>> {
        if self.buffer.is_empty() && !self.exhausted {
            let (after_t, after_seq) = self.after.unwrap_or((i64::MIN, i64::MIN));
            let rows = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM runs \
                 WHERE pool = $1 AND queue = $2 AND state IN {WAITING} AND scheduled_at <= $3 \
                   AND NOT needs_admission \
                   AND (scheduled_at > $4 OR (scheduled_at = $4 AND seq > $5)) \
                 ORDER BY scheduled_at, seq LIMIT $6"
            ))
            .bind(&self.pool)
            .bind(&self.queue)
            .bind(now)
            .bind(after_t)
            .bind(after_seq)
            .bind(PAGE)
            .fetch_all(&mut **tx)
            .await?;
            if (rows.len() as i64) < PAGE {
                self.exhausted = true;
            }
            if let Some(last) = rows.last() {
                self.after = Some((last.try_get("scheduled_at")?, last.try_get("seq")?));
            }
            for row in &rows {
                self.buffer.push_back(run_from_row(row)?);
            }
        }
        Ok(self.buffer.pop_front())
    }

    fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.used >= u64::from(l))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_pool(&self, pool: &Pool) -> Result<()> {
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
    }

    async fn get_pool(&self, name: &str) -> Result<Pool> {
        let row = sqlx::query("SELECT * FROM pools WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("pool", name))?;
        pool_from_row(&row)
    }

    async fn list_pools(&self) -> Result<Vec<Pool>> {
        let rows = sqlx::query("SELECT * FROM pools ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(pool_from_row).collect()
    }

    async fn update_pool(&self, name: &str, patch: PoolPatch) -> Result<Pool> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM pools WHERE name = $1 FOR UPDATE")
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
    }

    async fn delete_pool(&self, name: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        // Locked so no run is stored in the pool (insert_run takes a key
        // share lock on it) between the count below and the delete.
        let exists = sqlx::query("SELECT 1 FROM pools WHERE name = $1 FOR UPDATE")
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
                format!("pool {name:?} still has {deployments} deployment(s); delete them first"),
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
    }

    async fn pool_occupancy(&self, pool: &str) -> Result<Occupancy> {
        occupancy(&self.pool, "pool = $1", &[pool]).await
    }

    async fn create_queue(&self, queue: &Queue) -> Result<()> {
        let mut tx = self.begin().await?;
        let pool_exists = sqlx::query("SELECT 1 FROM pools WHERE name = $1 FOR KEY SHARE")
            .bind(&queue.pool)
            .fetch_optional(&mut *tx)
            .await?;
        if pool_exists.is_none() {
            return Err(StoreError::not_found("pool", &queue.pool));
        }
        let inserted = sqlx::query(
            "INSERT INTO queues (pool, name, priority, concurrency_limit, paused, description, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&queue.pool)
        .bind(&queue.name)
        .bind(i64::from(queue.priority))
        .bind(queue.concurrency_limit.map(i64::from))
        .bind(queue.paused)
        .bind(&queue.description)
        .bind(micros(queue.created_at))
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
    }

    async fn get_queue(&self, pool: &str, name: &str) -> Result<Queue> {
        let row = sqlx::query("SELECT * FROM queues WHERE pool = $1 AND name = $2")
            .bind(pool)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => queue_from_row(&row),
            None => {
                self.get_pool(pool).await?;
                Err(StoreError::not_found("queue", format!("{pool}/{name}")))
            }
        }
    }

    async fn list_queues(&self, pool: &str) -> Result<Vec<Queue>> {
        self.get_pool(pool).await?;
        let rows = sqlx::query("SELECT * FROM queues WHERE pool = $1 ORDER BY priority, name")
            .bind(pool)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(queue_from_row).collect()
    }

    async fn update_queue(&self, pool: &str, name: &str, patch: QueuePatch) -> Result<Queue> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM queues WHERE pool = $1 AND name = $2 FOR UPDATE")
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
        sqlx::query(
            "UPDATE queues SET priority = $1, concurrency_limit = $2, paused = $3, \
             description = $4 WHERE pool = $5 AND name = $6",
        )
        .bind(i64::from(queue.priority))
        .bind(queue.concurrency_limit.map(i64::from))
        .bind(queue.paused)
        .bind(&queue.description)
        .bind(pool)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(queue)
    }

    async fn delete_queue(&self, pool: &str, name: &str) -> Result<()> {
        if name == DEFAULT_QUEUE {
            return Err(StoreError::conflict(
                Some("name"),
                "the default queue cannot be deleted; delete the pool instead",
            ));
        }
        let mut tx = self.begin().await?;
        // Locked for the same reason as the pool in delete_pool.
        let exists = sqlx::query("SELECT 1 FROM queues WHERE pool = $1 AND name = $2 FOR UPDATE")
            .bind(pool)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found("queue", format!("{pool}/{name}")));
        }
        let deployments: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE pool = $1 AND queue = $2")
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
    }

    async fn queue_occupancy(&self, pool: &str, queue: &str) -> Result<Occupancy> {
        occupancy(&self.pool, "pool = $1 AND queue = $2", &[pool, queue]).await
    }

    async fn create_limit(&self, limit: &ConcurrencyLimit) -> Result<()> {
        let inserted =
            sqlx::query("INSERT INTO limits (tag, slots, created_at) VALUES ($1, $2, $3)")
                .bind(&limit.tag)
                .bind(i64::from(limit.limit))
                .bind(micros(limit.created_at))
                .execute(&self.pool)
                .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                Some("tag"),
                format!("a limit for tag {:?} already exists", limit.tag),
            )),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    async fn get_limit(&self, tag: &str) -> Result<ConcurrencyLimit> {
        let row = sqlx::query("SELECT * FROM limits WHERE tag = $1")
            .bind(tag)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("limit", tag))?;
        limit_from_row(&row)
    }

    async fn list_limits(&self) -> Result<Vec<ConcurrencyLimit>> {
        let rows = sqlx::query("SELECT * FROM limits ORDER BY tag")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(limit_from_row).collect()
    }

    async fn update_limit(&self, tag: &str, slots: u32) -> Result<ConcurrencyLimit> {
        let row = sqlx::query("UPDATE limits SET slots = $1 WHERE tag = $2 RETURNING *")
            .bind(i64::from(slots))
            .bind(tag)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("limit", tag))?;
        limit_from_row(&row)
    }

    async fn delete_limit(&self, tag: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM limits WHERE tag = $1")
            .bind(tag)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("limit", tag));
        }
        Ok(())
    }

    async fn tag_slots_in_use(&self, tag: &str) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM slots WHERE kind = 'tag' AND key = $1")
                .bind(tag)
                .fetch_one(&self.pool)
                .await?;
        Ok(count(n))
    }

    async fn create_deployment(&self, d: &Deployment) -> Result<()> {
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
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                Some("name"),
                format!("deployment {:?} already exists", d.name),
            )),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    async fn get_deployment(&self, name: &str) -> Result<Deployment> {
        let row = sqlx::query("SELECT * FROM deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("deployment", name))?;
        deployment_from_row(&row)
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        let rows = sqlx::query("SELECT * FROM deployments ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    async fn update_deployment(&self, name: &str, patch: DeploymentPatch) -> Result<Deployment> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM deployments WHERE name = $1 FOR UPDATE")
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
    }

    async fn delete_deployment(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM deployments WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("deployment", name));
        }
        Ok(())
    }

    async fn insert_run(&self, run: NewRun) -> Result<(Run, bool)> {
        let mut tx = self.begin().await?;
        // Key-share locks: a concurrent delete_pool / delete_queue (which
        // lock the row for update) waits for this run, then counts it.
        sqlx::query("SELECT 1 FROM pools WHERE name = $1 FOR KEY SHARE")
            .bind(&run.pool)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("SELECT 1 FROM queues WHERE pool = $1 AND name = $2 FOR KEY SHARE")
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
        let mut stored = fetch_run(&mut *tx, &id).await?;
        stored.history = Some(history(&mut *tx, &id).await?);
        tx.commit().await?;
        Ok((stored, true))
    }

    async fn get_run(&self, id: RunId, with_history: bool) -> Result<Run> {
        let id = id.to_string();
        let mut conn = self.pool.acquire().await?;
        let mut run = fetch_run(&mut *conn, &id).await?;
        if with_history {
            run.history = Some(history(&mut *conn, &id).await?);
        }
        Ok(run)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage> {
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
        let rows = q.fetch_all(&self.pool).await?;
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
    }

    async fn transition(&self, id: RunId, t: Transition) -> Result<Run> {
        let id = id.to_string();
        let mut tx = self.begin().await?;
        let run = lock_run(&mut tx, &id).await?;
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
        let updated = fetch_run(&mut *tx, &id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// The same walk as the SQLite store's, made safe for several writers by
    /// one lock: the pass first takes `pg_advisory_xact_lock(RELEASE_LOCK)`,
    /// and only then reads the limits and counts the slots in use. So any two
    /// passes — two schedulers that overlap, on one host or two — run one
    /// after the other, and the second counts the slots the first committed
    /// (the lock is held until commit, and under READ COMMITTED each later
    /// statement sees every commit that came before it). Nothing else takes
    /// slots, and what runs concurrently with a pass (transitions returning
    /// slots, new runs) can only make its counts conservative. A run that
    /// was cancelled or re-judged meanwhile is skipped: it is moved to
    /// `Pending` only if it is still waiting, under its row lock.
    ///
    /// Why one advisory lock rather than `SELECT ... FOR UPDATE` on the
    /// pool, queue and limit rows charged: a tag limit spans pools, and a
    /// pass walks every active queue, so it would lock nearly every such
    /// row anyway — with row locks taken in walk order (a deadlock risk
    /// between passes) and held against pause/resume and limit changes
    /// from the API. Row locks also cannot cover a tag that has no limit row
    /// yet. The advisory lock serialises exactly the work that must not
    /// interleave — counting and charging — and nothing else; it gives the
    /// same order as the SQLite store's single writer, and being
    /// transaction-scoped it is released by commit, rollback, or the death
    /// of the connection, so a scheduler that crashes never holds it.
    async fn release_ready(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<Released>> {
        let now_us = micros(now);
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(RELEASE_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut pools: HashMap<String, (Option<u32>, u64)> = HashMap::new();
        for row in sqlx::query("SELECT name, concurrency_limit FROM pools WHERE NOT paused")
            .fetch_all(&mut *tx)
            .await?
        {
            let limit = opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?;
            pools.insert(row.try_get("name")?, (limit, 0));
        }
        let mut tag_limits: HashMap<String, u32> = HashMap::new();
        for row in sqlx::query("SELECT tag, slots FROM limits")
            .fetch_all(&mut *tx)
            .await?
        {
            tag_limits.insert(row.try_get("tag")?, to_u32("slots", row.try_get("slots")?)?);
        }
        let mut tag_used: HashMap<String, u64> = HashMap::new();
        let mut queue_used: HashMap<String, u64> = HashMap::new();
        for row in sqlx::query("SELECT kind, key, COUNT(*) AS n FROM slots GROUP BY kind, key")
            .fetch_all(&mut *tx)
            .await?
        {
            let kind: String = row.try_get("kind")?;
            let key: String = row.try_get("key")?;
            let n = count(row.try_get("n")?);
            match kind.as_str() {
                "pool" => {
                    if let Some(p) = pools.get_mut(&key) {
                        p.1 = n;
                    }
                }
                "queue" => {
                    queue_used.insert(key, n);
                }
                _ => {
                    tag_used.insert(key, n);
                }
            }
        }
        // Times recorded for releases are taken after the count: a
        // transition that gave a slot back stamped its time before it
        // committed, and the count saw only what had committed, so every end
        // that freed a slot taken here is recorded before this release.
        // (Taken before the count, a release could be stamped a few
        // microseconds before the end it followed, and the histories would
        // show one run too many at once.)
        let now = Utc::now().max(now);

        // Active queues grouped by priority (1 first); within a level,
        // round-robin across queues.
        let mut levels: BTreeMap<i64, Vec<QueueCursor>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT pool, name, priority, concurrency_limit FROM queues \
             WHERE NOT paused ORDER BY priority, pool, name",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            let pool: String = row.try_get("pool")?;
            if !pools.contains_key(&pool) {
                continue; // paused pool holds its runs
            }
            let queue: String = row.try_get("name")?;
            let used = queue_used
                .get(&format!("{pool}/{queue}"))
                .copied()
                .unwrap_or(0);
            let limit = opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?;
            levels
                .entry(row.try_get("priority")?)
                .or_default()
                .push(QueueCursor {
                    pool,
                    queue,
                    limit,
                    used,
                    buffer: VecDeque::new(),
                    after: None,
                    exhausted: false,
                });
        }

        let pool_full = |pools: &HashMap<String, (Option<u32>, u64)>, p: &str| {
            pools
                .get(p)
                .is_none_or(|(limit, used)| limit.is_some_and(|l| *used >= u64::from(l)))
        };

        let mut released = Vec::new();
        'levels: for cursors in levels.values_mut() {
            let mut done: HashSet<usize> = HashSet::new();
            while done.len() < cursors.len() {
                for (i, cursor) in cursors.iter_mut().enumerate() {
                    if done.contains(&i) {
                        continue;
                    }
                    if released.len() >= max {
                        break 'levels;
                    }
                    if cursor.full() || pool_full(&pools, &cursor.pool) {
                        done.insert(i);
                        continue;
                    }
                    // The next run of this queue whose tags all have room
                    // and that is still waiting; runs held back by a tag
                    // limit do not block the queue.
                    let candidate = loop {
                        let Some(run) = cursor.next(&mut tx, now_us).await? else {
                            break None;
                        };
                        let blocked = run.tags.iter().any(|t| {
                            tag_limits.get(t).is_some_and(|l| {
                                tag_used.get(t).copied().unwrap_or(0) >= u64::from(*l)
                            })
                        });
                        if blocked {
                            continue;
                        }
                        // Still waiting and not deferred? The cursor's read
                        // may predate a cancel or an admission decision that
                        // committed since; this update waits for the row's
                        // lock and re-checks.
                        let moved = sqlx::query(&format!(
                            "UPDATE runs SET state = 'Pending', state_message = $1, \
                             released_at = $2 \
                             WHERE id = $3 AND state IN {WAITING} AND NOT needs_admission \
                             RETURNING state"
                        ))
                        .bind("released by the scheduler")
                        .bind(now_us)
                        .bind(run.id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                        if moved.is_some() {
                            break Some(run);
                        }
                    };
                    let Some(mut run) = candidate else {
                        done.insert(i);
                        continue;
                    };
                    let id = run.id.to_string();
                    let mut keys = vec![
                        ("pool", cursor.pool.clone()),
                        ("queue", format!("{}/{}", cursor.pool, cursor.queue)),
                    ];
                    for tag in &run.tags {
                        keys.push(("tag", tag.clone()));
                        *tag_used.entry(tag.clone()).or_insert(0) += 1;
                    }
                    for (kind, key) in keys {
                        sqlx::query("INSERT INTO slots (kind, key, run_id) VALUES ($1, $2, $3)")
                            .bind(kind)
                            .bind(key)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    insert_history(
                        &mut tx,
                        &id,
                        RunState::Pending,
                        now,
                        "released by the scheduler",
                        crate::domain::Cause::SCHEDULER,
                    )
                    .await?;
                    cursor.used += 1;
                    if let Some(p) = pools.get_mut(&cursor.pool) {
                        p.1 += 1;
                    }
                    let waited_since = run.scheduled_at.max(run.created_at);
                    run.state = RunState::Pending;
                    run.state_message = "released by the scheduler".into();
                    released.push(Released {
                        waited: (now - waited_since).to_std().unwrap_or_default(),
                        run,
                    });
                }
            }
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn mark_late(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        // In batches, each its own transaction, so a deep backlog turning
        // Late never holds long locks.
        let mut marked = 0u64;
        loop {
            let mut tx = self.begin().await?;
            let now = Utc::now();
            // One statement picks and moves them, so a run released or
            // cancelled meanwhile is not marked.
            let ids: Vec<String> = sqlx::query_scalar(
                "UPDATE runs SET state = 'Late', state_message = $1 WHERE id IN ( \
                 SELECT id FROM runs WHERE state = 'Scheduled' AND scheduled_at < $2 \
                 ORDER BY scheduled_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 AND state = 'Scheduled' RETURNING id",
            )
            .bind("waiting past its scheduled time")
            .bind(micros(cutoff))
            .bind(MARK_LATE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                insert_history(
                    &mut tx,
                    id,
                    RunState::Late,
                    now,
                    "waiting past its scheduled time",
                    crate::domain::Cause::SCHEDULER,
                )
                .await?;
            }
            tx.commit().await?;
            marked += ids.len() as u64;
            if (ids.len() as i64) < MARK_LATE_BATCH {
                return Ok(marked);
            }
        }
    }

    async fn next_wake(
        &self,
        now: DateTime<Utc>,
        late_after: chrono::Duration,
    ) -> Result<Option<DateTime<Utc>>> {
        let now_us = micros(now);
        let due: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MIN(scheduled_at) FROM runs WHERE state IN {WAITING} AND scheduled_at > $1"
        ))
        .bind(now_us)
        .fetch_one(&self.pool)
        .await?;
        let late_us = late_after.num_microseconds().unwrap_or(i64::MAX);
        let late: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(scheduled_at) FROM runs WHERE state = 'Scheduled' AND scheduled_at >= $1",
        )
        .bind(now_us.saturating_sub(late_us))
        .fetch_one(&self.pool)
        .await?;
        let late = late.map(|t| t.saturating_add(late_us));
        let next = match (due, late) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(from_micros).transpose()
    }

    async fn active_runs(&self) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state IN {HOLDING} ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn unreadable_runs(&self) -> Result<Vec<(RunId, String)>> {
        let mut found = Vec::new();
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state IN {HOLDING} OR state IN {WAITING} ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
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
                        && let Err(e) = history(&self.pool, &id).await
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
    }

    async fn quarantine_run(&self, id: RunId, why: &str) -> Result<()> {
        let id = id.to_string();
        let mut tx = self.begin().await?;
        let Some(row) = sqlx::query("SELECT state, attempt, job, tags, labels, parameters, job_variables FROM runs WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(());
        };
        let state: String = row.try_get("state")?;
        if RunState::parse(&state).is_some_and(RunState::is_terminal) {
            return Ok(());
        }
        let attempt: i64 = row.try_get("attempt")?;
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
        tx.commit().await?;
        Ok(())
    }

    async fn stats(&self) -> Result<StoreStats> {
        let mut stats = StoreStats::default();
        for row in sqlx::query("SELECT state, COUNT(*) AS n FROM runs GROUP BY state")
            .fetch_all(&self.pool)
            .await?
        {
            stats
                .runs_by_state
                .insert(row.try_get("state")?, count(row.try_get("n")?));
        }
        for row in sqlx::query("SELECT pool, name FROM queues")
            .fetch_all(&self.pool)
            .await?
        {
            stats.queues.insert(
                (row.try_get("pool")?, row.try_get("name")?),
                Occupancy::default(),
            );
        }
        for row in sqlx::query(&format!(
            "SELECT pool, queue, \
               SUM(CASE WHEN state IN {HOLDING} THEN 1 ELSE 0 END)::bigint AS active, \
               SUM(CASE WHEN state IN {WAITING} THEN 1 ELSE 0 END)::bigint AS queued \
             FROM runs WHERE state IN {HOLDING} OR state IN {WAITING} GROUP BY pool, queue"
        ))
        .fetch_all(&self.pool)
        .await?
        {
            stats.queues.insert(
                (row.try_get("pool")?, row.try_get("queue")?),
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
            .fetch_all(&self.pool)
            .await?
        {
            let key: (String, String) = (row.try_get("kind")?, row.try_get("key")?);
            let n = count(row.try_get("n")?);
            let limit = limits.get(&key).copied().flatten();
            stats.slots.insert(key, (n, limit));
        }
        Ok(stats)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn append_history(&self, id: RunId, entries: &[HistoryEntry]) -> Result<()> {
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
    }

    async fn due_admissions(&self, now: DateTime<Utc>, max: usize) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE needs_admission AND state IN {WAITING} \
             AND scheduled_at <= $1 ORDER BY scheduled_at, seq LIMIT $2"
        ))
        .bind(micros(now))
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn set_admission(
        &self,
        id: RunId,
        defer_until: Option<DateTime<Utc>>,
        entries: &[HistoryEntry],
    ) -> Result<()> {
        let id = id.to_string();
        let mut tx = self.begin().await?;
        let run = lock_run(&mut tx, &id).await?;
        if !run.state.is_waiting() {
            // Cancelled meanwhile: nothing to admit.
            return Ok(());
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
    }

    async fn label_occupancy(&self, key: &str, value: &str) -> Result<Occupancy> {
        // labels is text holding a JSON object (see the migration); ->> of
        // a string value is the string itself, as json_extract in SQLite.
        let sql = format!(
            "SELECT \
               COALESCE(SUM(CASE WHEN state IN {HOLDING} THEN 1 ELSE 0 END), 0)::bigint AS active, \
               COALESCE(SUM(CASE WHEN state IN {WAITING} THEN 1 ELSE 0 END), 0)::bigint AS queued \
             FROM runs WHERE (labels::jsonb ->> $1) = $2 \
               AND (state IN {HOLDING} OR state IN {WAITING})"
        );
        let row = sqlx::query(&sql)
            .bind(key)
            .bind(value)
            .fetch_one(&self.pool)
            .await?;
        Ok(Occupancy {
            active: count(row.try_get("active")?),
            queued: count(row.try_get("queued")?),
        })
    }

    async fn tag_occupancy(&self, tag: &str) -> Result<Occupancy> {
        occupancy(
            &self.pool,
            "id IN (SELECT run_id FROM run_tags WHERE tag = $1)",
            &[tag],
        )
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
        let mut tx = self.begin().await?;
        // Numbering is read-then-insert: two uploads of one plugin take
        // turns (a lock per name, held until commit).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{PLUGIN_LOCK_PREFIX}{name}"))
            .execute(&mut *tx)
            .await?;
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
    }

    async fn plugin_versions(&self, name: &str) -> Result<Vec<PluginVersion>> {
        let rows = sqlx::query("SELECT * FROM plugin_versions WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Err(StoreError::not_found("plugin", name));
        }
        rows.iter().map(plugin_version_from_row).collect()
    }

    async fn list_plugins(&self) -> Result<Vec<PluginVersion>> {
        let rows = sqlx::query(
            "SELECT v.* FROM plugin_versions v \
             JOIN (SELECT name, MAX(version) AS version FROM plugin_versions GROUP BY name) m \
               ON v.name = m.name AND v.version = m.version ORDER BY v.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plugin_version_from_row).collect()
    }

    async fn delete_plugin(&self, name: &str) -> Result<()> {
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
    }

    async fn plugin_bytes(&self, digest: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT bytes FROM plugin_blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("plugin digest", digest))
    }

    async fn create_binding(&self, b: &PluginBinding) -> Result<PluginBinding> {
        let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO plugin_bindings (pool, plugin, pinned_version, config, position, \
             on_error, deadline_ms, memory_mb, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
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
        .fetch_one(&self.pool)
        .await;
        let id = match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::conflict(
                    Some("plugin"),
                    format!(
                        "plugin {:?} is already bound {}",
                        b.plugin,
                        match &b.pool {
                            Some(p) => format!("to pool {p:?}"),
                            None => "as a router".into(),
                        }
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
            Ok(id) => id,
        };
        Ok(PluginBinding { id, ..b.clone() })
    }

    async fn list_bindings(&self, pool: Option<&str>) -> Result<Vec<PluginBinding>> {
        let rows =
            sqlx::query("SELECT * FROM plugin_bindings WHERE pool = $1 ORDER BY position, id")
                .bind(pool.unwrap_or(""))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(binding_from_row).collect()
    }

    async fn bindings_of_plugin(&self, plugin: &str) -> Result<Vec<PluginBinding>> {
        let rows = sqlx::query("SELECT * FROM plugin_bindings WHERE plugin = $1 ORDER BY pool, id")
            .bind(plugin)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(binding_from_row).collect()
    }

    async fn delete_binding(&self, pool: Option<&str>, plugin: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM plugin_bindings WHERE pool = $1 AND plugin = $2")
            .bind(pool.unwrap_or(""))
            .bind(plugin)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(
                "binding",
                match pool {
                    Some(p) => format!("{plugin} on pool {p}"),
                    None => format!("router {plugin}"),
                },
            ));
        }
        Ok(())
    }

    async fn record_submission(&self, id: RunId, attempt: u32, target: &Value) -> Result<bool> {
        let mut tx = self.begin().await?;
        let run = lock_run(&mut tx, &id.to_string()).await?;
        if run.state != RunState::Pending || run.attempt != attempt {
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
    }

    async fn submission(&self, id: RunId, attempt: u32) -> Result<Option<Value>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT target FROM submissions WHERE run_id = $1 AND attempt = $2")
                .bind(id.to_string())
                .bind(i64::from(attempt))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(t,)| from_json("target", &t)).transpose()
    }

    async fn create_token(&self, token: &TokenRecord, hash: &str) -> Result<()> {
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
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                Some("id"),
                format!("token {:?} already exists", token.id),
            )),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<TokenRecord> {
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(micros(Utc::now()))
            .bind(id)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("token", id))?;
        token_from_row(&row)
    }

    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate)
            .execute(&self.pool)
            .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }
}

async fn history<'e, E>(executor: E, id: &str) -> Result<Vec<HistoryEntry>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query(
        "SELECT state, at, message, cause, detail FROM run_history WHERE run_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(executor)
    .await?;
    rows.iter().map(history_from_row).collect()
}

fn history_from_row(row: &PgRow) -> Result<HistoryEntry> {
    Ok(HistoryEntry {
        state: parse_state(row.try_get("state")?)?,
        at: from_micros(row.try_get("at")?)?,
        message: row.try_get("message")?,
        cause: row.try_get("cause")?,
        detail: row
            .try_get::<Option<String>, _>("detail")?
            .map(|d| from_json::<Value>("detail", &d))
            .transpose()?,
    })
}

/// Adds a plugin-decision line as [`history::plan`] says: a repeat of the
/// newest line is folded into it, and past the bound only counted.
async fn append_decision(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    entry: &HistoryEntry,
) -> Result<()> {
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

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://weir:s3cret@db.example:5432/weir"),
            "postgres://weir:***@db.example:5432/weir"
        );
        assert_eq!(
            redact_url("postgres://weir@127.0.0.1/weir?password=s3cret&sslmode=disable"),
            "postgres://weir@127.0.0.1/weir?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://u:p:q@h/d"),
            "postgresql://u:***@h/d"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn only_postgres_urls_are_accepted_and_errors_hide_the_password() {
        assert!(DatabaseUrl::parse("postgres://weir:pw@localhost:5432/weir").is_ok());
        assert!(DatabaseUrl::parse("postgresql://localhost/weir").is_ok());
        let err = DatabaseUrl::parse("mysql://root:hunter2@localhost/weir").expect_err("mysql");
        assert!(err.contains("mysql://root:***@localhost/weir"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = DatabaseUrl::parse("postgres://weir:hunter2@localhost:notaport/weir")
            .expect_err("bad port");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.contains("postgres://weir:***@localhost:notaport/weir"),
            "{err}"
        );
        let url = DatabaseUrl::parse("postgres://weir:hunter2@localhost/weir").expect("ok");
        assert!(!format!("{url} {url:?}").contains("hunter2"));
    }
}
