//! `growth` (issue #5, scenario 7): how the scheduler's decision cost and
//! Weir's memory grow with the queue.
//!
//! The set-up is the `scheduler` scenario's (one pool limited to 100, 10
//! queues of priorities 1–5, 3 tag limits, the same run mix). One store is
//! filled to each depth in turn (1k, 10k, 100k, 1M by default); at each
//! depth:
//!
//! - a sample of decisions (`--sample`, default 5,000) is released by the
//!   real `SqlStore::release_ready`, each released run completed at once
//!   (Running, Completed) and replaced by a new run at the tail, so the depth
//!   holds during the sample. A decision's cost is a call's time divided by
//!   the runs it released;
//! - the other queries a scheduler pass makes (`mark_late` with nothing to
//!   mark, `due_admissions`, `next_wake`) and `/metrics`' `stats` are timed,
//!   then the one-off `mark_late` that turns every waiting run `Late`;
//! - the RSS of this process (which holds the store) and of a real
//!   `weir serve` started on the same database with the pool paused.
//!
//! Filling through `insert_run` (one synced transaction per run, ~1,400/s)
//! would take 12 minutes for 1M, so the bench fills through its own bulk
//! path: the rows `insert_run` writes (runs, run_tags, run_history), many
//! per statement and transaction, on its own connection without fsync. The
//! scenario first stores one run each way and checks the store reads them
//! back the same. The in-memory model of the `scheduler` scenario, at the
//! same depths, is the baseline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row as _, SqliteConnection};
use weir::RunState;
use weir::{PoolPatch, SqlStore, Store, Transition};

use crate::scheduler::{self, BATCH, Model, POOL, TAGS, Workload};
use crate::serve::{WeirServe, status_kib};
use crate::{Row, loadavg};

const ROWS_PER_STATEMENT: usize = 200;
const ROWS_PER_TRANSACTION: usize = 20_000;
/// Repeats of each pass query at a depth.
const QUERY_REPEATS: usize = 10;

/// The bench's bulk path into the store's database.
struct Filler {
    conn: SqliteConnection,
    work: Workload,
    scheduled_at: i64,
    /// `insert_run`'s JSON for the job every run carries.
    job: String,
}

impl Filler {
    async fn open(path: &Path, scheduled_at: DateTime<Utc>) -> Result<Self, String> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // The fill's own durability is not what is measured.
            .synchronous(SqliteSynchronous::Off)
            .busy_timeout(Duration::from_secs(60));
        let conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| format!("bulk connection: {e}"))?;
        Ok(Self {
            conn,
            work: Workload::new(),
            scheduled_at: scheduled_at.timestamp_micros(),
            job: json!({"command": ["true"]}).to_string(),
        })
    }

    /// Queues the next `n` runs of the workload.
    async fn add(&mut self, n: usize) -> Result<(), String> {
        let mut left = n;
        while left > 0 {
            let in_tx = left.min(ROWS_PER_TRANSACTION);
            let mut items = Vec::with_capacity(in_tx);
            for _ in 0..in_tx {
                let (q, tags) = self.work.next().ok_or("the workload ended")?;
                items.push((uuid::Uuid::now_v7().to_string(), q, tags));
            }
            self.insert(&items).await.map_err(|e| e.to_string())?;
            left -= in_tx;
        }
        Ok(())
    }

    /// One transaction: the runs, their tags and their "created" history
    /// lines, as `SqlStore::insert_run` writes them for a `NewRun` made by
    /// `scheduler::new_run`.
    async fn insert(&mut self, items: &[(String, usize, Vec<usize>)]) -> Result<(), sqlx::Error> {
        let mut tx = self.conn.begin().await?;
        for chunk in items.chunks(ROWS_PER_STATEMENT) {
            let now = Utc::now().timestamp_micros();
            let mut sql = String::from(
                "INSERT INTO runs (id, state, state_message, pool, queue, deployment, job, tags, \
                 parameters, job_variables, parent_run_id, idempotency_key, scheduled_at, \
                 created_at, attempt, retries_max, retry_delay_seconds, needs_admission, labels) \
                 VALUES ",
            );
            sql.push_str(
                &vec![
                    "(?, 'Scheduled', 'created', ?, ?, NULL, ?, ?, '{}', '{}', NULL, NULL, ?, ?, \
                      1, 0, 0, 0, '{}')";
                    chunk.len()
                ]
                .join(", "),
            );
            let mut q = sqlx::query(&sql);
            for (id, queue, tags) in chunk {
                let tags: Vec<&str> = tags.iter().map(|t| TAGS[*t].0).collect();
                q = q
                    .bind(id)
                    .bind(POOL)
                    .bind(scheduler::queue(*queue).0)
                    .bind(&self.job)
                    .bind(json!(tags).to_string())
                    .bind(self.scheduled_at)
                    .bind(now);
            }
            q.execute(&mut *tx).await?;

            let pairs: Vec<(&str, &str)> = chunk
                .iter()
                .flat_map(|(id, _, tags)| tags.iter().map(move |t| (TAGS[*t].0, id.as_str())))
                .collect();
            if !pairs.is_empty() {
                let sql = format!(
                    "INSERT OR IGNORE INTO run_tags (tag, run_id) VALUES {}",
                    vec!["(?, ?)"; pairs.len()].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (tag, id) in pairs {
                    q = q.bind(tag).bind(id);
                }
                q.execute(&mut *tx).await?;
            }

            let sql = format!(
                "INSERT INTO run_history (run_id, state, at, message, cause, detail) VALUES {}",
                vec!["(?, 'Scheduled', ?, 'created', 'bench', NULL)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (id, _, _) in chunk {
                q = q.bind(id).bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        // The counters `insert_run` keeps in the same transaction (migration
        // 0006): so many more Scheduled runs, queued under their pool, queue
        // and tags.
        let mut queued: BTreeMap<(&str, String, String), i64> = BTreeMap::new();
        for (_, queue, tags) in items {
            *queued
                .entry(("pool", POOL.to_owned(), String::new()))
                .or_default() += 1;
            *queued
                .entry(("queue", POOL.to_owned(), scheduler::queue(*queue).0))
                .or_default() += 1;
            let mut names: Vec<&str> = tags.iter().map(|t| TAGS[*t].0).collect();
            names.sort_unstable();
            names.dedup();
            for tag in names {
                *queued
                    .entry(("tag", tag.to_owned(), String::new()))
                    .or_default() += 1;
            }
        }
        sqlx::query("UPDATE run_counts SET n = n + ? WHERE state = 'Scheduled'")
            .bind(items.len() as i64)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "INSERT INTO occupancy (kind, key, value, active, queued) VALUES {} \
             ON CONFLICT (kind, key, value) DO UPDATE SET queued = occupancy.queued + excluded.queued",
            vec!["(?, ?, ?, 0, ?)"; queued.len()].join(", ")
        );
        let mut q = sqlx::query(&sql);
        for ((kind, key, value), n) in &queued {
            q = q
                .bind(*kind)
                .bind(key.as_str())
                .bind(value.as_str())
                .bind(*n);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await
    }
}

/// Stores run 0 of the workload through `insert_run` and a copy of it through
/// the bulk path, and checks the store reads both back the same (but for id
/// and times). Leaves both queued.
async fn check_bulk_rows(
    store: &SqlStore,
    filler: &mut Filler,
    scheduled_at: DateTime<Utc>,
) -> Result<(), String> {
    let (q, tags) = Workload::new().next().ok_or("no workload")?;
    let (real, _) = store
        .insert_run(scheduler::new_run(q, &tags, scheduled_at))
        .await
        .map_err(|e| e.to_string())?;
    let bulk_id = uuid::Uuid::now_v7();
    filler
        .insert(&[(bulk_id.to_string(), q, tags)])
        .await
        .map_err(|e| e.to_string())?;
    let bulk = store
        .get_run(bulk_id, true)
        .await
        .map_err(|e| e.to_string())?;
    let real = store
        .get_run(real.id, true)
        .await
        .map_err(|e| e.to_string())?;
    let normalise = |run: &weir::Run| {
        let mut v = serde_json::to_value(run).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            for k in ["id", "created_at", "updated_at"] {
                o.remove(k);
            }
            if let Some(h) = o.get_mut("history").and_then(Value::as_array_mut) {
                for line in h {
                    if let Some(l) = line.as_object_mut() {
                        l.remove("at");
                    }
                }
            }
        }
        v
    };
    if normalise(&real) != normalise(&bulk) {
        return Err(format!(
            "growth: the bulk path writes a different run than insert_run:\n  insert_run: {}\n  bulk:       {}",
            normalise(&real),
            normalise(&bulk)
        ));
    }
    Ok(())
}

/// A metric at a depth, tagged for the JSON and the plot.
fn at(depth: usize, metric: &str, row: Row) -> Row {
    Row::Tagged(
        json!({"scenario": "growth", "depth": depth, "metric": metric}),
        Box::new(row),
    )
}

fn mib(depth: usize, metric: &str, name: String, kib: Option<f64>) -> Option<Row> {
    kib.map(|k| {
        at(
            depth,
            metric,
            Row::Value {
                name,
                value: k / 1024.0,
                unit: "MiB",
            },
        )
    })
}

async fn time_repeats<F, Fut, T>(n: usize, mut f: F) -> Result<Vec<Duration>, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, weir::StoreError>>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(f().await.map_err(|e| e.to_string())?);
        samples.push(t.elapsed());
    }
    Ok(samples)
}

pub(crate) async fn scenario(
    depths: &[usize],
    sample: usize,
    with_serve: bool,
) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = dir.path().join("weir.db");
    let store = SqlStore::open_sqlite(&db)
        .await
        .map_err(|e| e.to_string())?;
    scheduler::setup(&store).await?;
    let scheduled_at = Utc::now() - chrono::Duration::seconds(1);
    let mut filler = Filler::open(&db, scheduled_at).await?;
    check_bulk_rows(&store, &mut filler, scheduled_at).await?;
    let mut queued = 2usize;
    let mut rows = Vec::new();
    let mut depths = depths.to_vec();
    depths.sort_unstable();
    for &depth in &depths {
        if depth < queued {
            continue;
        }
        let t = Instant::now();
        filler.add(depth - queued).await?;
        let fill = t.elapsed();
        let filled = depth - queued;
        queued = depth;
        // Start every sample from an empty WAL (untimed).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut filler.conn)
            .await
            .map_err(|e| e.to_string())?;
        let load = loadavg();
        eprintln!(
            "growth: {depth} queued (filled {filled} in {:.1} s); load average {load}",
            fill.as_secs_f64()
        );
        rows.push(at(
            depth,
            "fill",
            Row::rate(
                format!("growth {depth}: bulk fill (bench path, no fsync)"),
                filled as u64,
                fill,
                "runs",
            ),
        ));

        // The sample: released at a steady depth.
        let mut per_decision = Vec::new();
        let mut calls = Vec::new();
        let mut released = 0usize;
        let sample_start = Instant::now();
        while released < sample {
            let t = Instant::now();
            let batch = store
                .release_ready(Utc::now(), BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let took = t.elapsed();
            if batch.is_empty() {
                return Err(format!(
                    "growth {depth}: release_ready released nothing after {released}"
                ));
            }
            calls.push(took);
            per_decision.push(took / batch.len() as u32);
            released += batch.len();
            for r in &batch {
                for to in [RunState::Running, RunState::Completed] {
                    store
                        .transition(r.run.id, Transition::new(to, "done", "bench"))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            filler.add(batch.len()).await?;
        }
        let sample_wall = sample_start.elapsed();
        let in_release: Duration = calls.iter().sum();
        eprintln!(
            "growth {depth}: {released} released in {} calls; {:.1} s with the completes and top-ups",
            calls.len(),
            sample_wall.as_secs_f64()
        );
        rows.push(at(
            depth,
            "decisions_per_second",
            Row::rate(
                format!("growth {depth}: decisions (released / time in release_ready)"),
                released as u64,
                in_release,
                "runs",
            ),
        ));
        rows.push(at(
            depth,
            "decision",
            Row::latency(
                format!("growth {depth}: release_ready per decision (call / released)"),
                per_decision,
            ),
        ));
        rows.push(at(
            depth,
            "release_call",
            Row::latency(format!("growth {depth}: release_ready call"), calls),
        ));

        // The rest of a scheduler pass, and /metrics.
        let now = Utc::now();
        let late_after = chrono::Duration::seconds(15);
        let long_ago = now - chrono::Duration::days(1);
        let queries: [(&str, Vec<Duration>); 4] = [
            (
                "mark_late",
                time_repeats(QUERY_REPEATS, || store.mark_late(long_ago, late_after)).await?,
            ),
            (
                "due_admissions",
                time_repeats(QUERY_REPEATS, || store.due_admissions(now, BATCH)).await?,
            ),
            (
                "next_wake",
                time_repeats(QUERY_REPEATS, || store.next_wake(now, late_after)).await?,
            ),
            (
                "stats",
                time_repeats(QUERY_REPEATS, || store.stats()).await?,
            ),
        ];
        for (q, samples) in queries {
            let what = match q {
                "mark_late" => "mark_late, nothing to mark (scan)",
                "due_admissions" => "due_admissions, none deferred",
                "next_wake" => "next_wake",
                _ => "stats (/metrics)",
            };
            rows.push(at(
                depth,
                q,
                Row::latency(format!("growth {depth}: {what}"), samples),
            ));
        }
        // What the scheduler does once, late_after after they were due.
        let t = Instant::now();
        let marked = store
            .mark_late(Utc::now(), chrono::Duration::zero())
            .await
            .map_err(|e| e.to_string())?
            .len() as u64;
        rows.push(at(
            depth,
            "mark_late_all",
            Row::rate(
                format!(
                    "growth {depth}: mark_late marking every Scheduled run Late (batches of 500)"
                ),
                marked,
                t.elapsed(),
                "runs",
            ),
        ));

        rows.extend(mib(
            depth,
            "rss_bench",
            format!("growth {depth}: RSS of the bench process (holds the store)"),
            status_kib(None, "VmRSS"),
        ));
        if with_serve {
            store
                .update_pool(
                    POOL,
                    PoolPatch {
                        paused: Some(true),
                        ..PoolPatch::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            let serve = WeirServe::start(dir.path()).await?;
            let metrics = reqwest::get(format!("{}/metrics", serve.base))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            std::hint::black_box(metrics);
            tokio::time::sleep(Duration::from_secs(1)).await;
            rows.extend(mib(
                depth,
                "rss_serve",
                format!("growth {depth}: RSS of weir serve on it (pool paused)"),
                serve.kib("VmRSS"),
            ));
            rows.extend(mib(
                depth,
                "hwm_serve",
                format!("growth {depth}: peak RSS of weir serve (VmHWM)"),
                serve.kib("VmHWM"),
            ));
            serve.stop().await;
            store
                .update_pool(
                    POOL,
                    PoolPatch {
                        paused: Some(false),
                        ..PoolPatch::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    rows.push(Row::Info {
        name: "growth: query plans (EXPLAIN QUERY PLAN)".into(),
        detail: query_plans(&mut filler.conn).await?,
    });
    let disk = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "growth: database {:.0} MiB at {queued} queued",
        disk as f64 / 1048576.0
    );
    drop(filler);
    drop(store);
    drop(dir);
    // The baseline last, so its memory is in none of the RSS figures above.
    for &depth in &depths {
        rows.push(at(
            depth,
            "model_decision",
            Row::latency(
                format!("growth {depth}: in-memory model per decision"),
                model_sample(depth, sample),
            ),
        ));
    }
    Ok(rows)
}

/// The model at `depth`, releasing `sample` decisions with the same
/// completes and top-ups; a call's time divided by the runs it released.
fn model_sample(depth: usize, sample: usize) -> Vec<Duration> {
    let mut work = Workload::new();
    let mut model = Model::new();
    let mut next = 0usize;
    for item in work.by_ref().take(depth) {
        model.push(next, item);
        next += 1;
    }
    let mut per_decision = Vec::new();
    let mut released = 0;
    while released < sample {
        let t = Instant::now();
        let batch = model.release(BATCH);
        let took = t.elapsed();
        if batch.is_empty() {
            break;
        }
        per_decision.push(took / batch.len() as u32);
        released += batch.len();
        for r in &batch {
            model.complete(r);
        }
        for item in work.by_ref().take(batch.len()) {
            model.push(next, item);
            next += 1;
        }
    }
    per_decision
}

/// The plans SQLite chooses for the store's queries that a scheduler pass,
/// `/metrics` and admission make (copies of the SQL in
/// `host/src/store/sql.rs`, last brought in line at issue #13's bulk
/// releases; if they drift, these plans are stale).
async fn query_plans(conn: &mut SqliteConnection) -> Result<Value, String> {
    const WAITING: &str = "('Scheduled','Late','AwaitingRetry')";
    let queries = [
        (
            "release_ready: a queue's next page",
            format!(
                "SELECT * FROM runs WHERE pool = 'bench' AND queue = 'p1-a' AND state IN {WAITING} \
                 AND scheduled_at <= 0 AND needs_admission = 0 \
                 AND (scheduled_at > 0 OR (scheduled_at = 0 AND seq > 0)) \
                 ORDER BY scheduled_at, seq LIMIT 256"
            ),
        ),
        (
            "release_ready: slots in use",
            "SELECT kind, key, COUNT(*) AS n FROM slots GROUP BY kind, key".into(),
        ),
        (
            "release_ready: chosen runs read back under lock (256 ids)",
            format!(
                "SELECT id, state, needs_admission FROM runs WHERE id IN ({})",
                vec!["'x'"; 256].join(", ")
            ),
        ),
        (
            "release_ready: chosen runs moved (256 ids)",
            format!(
                "UPDATE runs SET state = 'Pending', state_message = 'x', released_at = 0 \
                 WHERE id IN ({})",
                vec!["'x'"; 256].join(", ")
            ),
        ),
        (
            "mark_late",
            "UPDATE runs SET state = 'Late', state_message = 'x' WHERE id IN ( \
             SELECT id FROM runs WHERE state = 'Scheduled' AND scheduled_at < 0 \
             ORDER BY scheduled_at LIMIT 500) RETURNING id"
                .into(),
        ),
        (
            "due_admissions",
            format!(
                "SELECT * FROM runs WHERE needs_admission = 1 AND state IN {WAITING} \
                 AND scheduled_at <= 0 ORDER BY scheduled_at, seq LIMIT 512"
            ),
        ),
        (
            "next_wake: due",
            format!(
                "SELECT MIN(scheduled_at) FROM runs WHERE state IN {WAITING} AND scheduled_at > 0"
            ),
        ),
        (
            "next_wake: late",
            "SELECT MIN(scheduled_at) FROM runs WHERE state = 'Scheduled' AND scheduled_at >= 0"
                .into(),
        ),
        (
            "stats: runs by state (counters)",
            "SELECT state, n FROM run_counts".into(),
        ),
        (
            "stats and admission: occupancy (counters)",
            "SELECT active, queued FROM occupancy WHERE kind = 'pool' AND key = 'bench' \
             AND value = ''"
                .into(),
        ),
    ];
    let mut out = serde_json::Map::new();
    for (name, sql) in queries {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("detail").ok())
            .collect();
        eprintln!("plan of {name}: {}", lines.join(" / "));
        out.insert(name.into(), json!({"sql": sql, "plan": lines}));
    }
    Ok(Value::Object(out))
}
