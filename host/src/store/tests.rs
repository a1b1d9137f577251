//! The store's scheduling rules: ordering, limits, pausing, and property
//! tests that random interleavings of submit, release, complete, crash and
//! cancel never exceed a limit or leak a slot.
//!
//! Every test runs against both stores: `sqlite::*` on a real SQLite file,
//! always; `postgres::*` on a fresh database of its own (so they run in
//! parallel) on the server `WEIR_PG_URL` points at. Without `WEIR_PG_URL`
//! the PostgreSQL tests print a `SKIPPED:` line and pass; with it, a server
//! that cannot be reached fails them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use proptest::prelude::*;
use serde_json::Map;
use uuid::Uuid;

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::*;
use crate::domain::{
    ConcurrencyLimit, HistoryEntry, LateAction, Pool, PoolType, Queue, RunState, history,
};
use crate::template::{BaseJobTemplate, TemplateKind};

struct Fixture {
    store: Arc<dyn Store>,
    /// The same database, for writing rows the store itself would refuse.
    raw: Raw,
    /// Kept for the test's lifetime: the SQLite file's directory, or the
    /// PostgreSQL database (dropped when the test ends).
    _guard: Box<dyn std::any::Any + Send>,
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite(&dir.path().join("weir.db"))
        .await
        .expect("open store");
    Fixture {
        store: Arc::new(store),
        raw: Raw::Sqlite(dir.path().join("weir.db")),
        _guard: Box::new(dir),
    }
}

/// Direct access to a test's database, behind the store's back.
enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(Box<PgConnectOptions>),
}

impl Raw {
    /// Runs `sql` with one text parameter per `binds` (`?` / `$1`...).
    async fn exec(&self, sql: &str, binds: &[&str]) -> u64 {
        match self {
            Raw::Sqlite(path) => {
                use sqlx::sqlite::SqliteConnectOptions;
                let options = SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .expect("open the SQLite file");
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(&mut conn).await.expect("raw SQL").rows_affected()
            }
            Raw::Postgres(options) => {
                let mut conn = PgConnection::connect_with(options).await.expect("connect");
                let sql = (1..=binds.len()).fold(sql.to_owned(), |sql, i| {
                    sql.replacen('?', &format!("${i}"), 1)
                });
                let mut q = sqlx::query(&sql);
                for b in binds {
                    q = q.bind(*b);
                }
                q.execute(&mut conn).await.expect("raw SQL").rows_affected()
            }
        }
    }
}

/// The server the PostgreSQL variants use, or `None` (after saying so on
/// stderr) when `WEIR_PG_URL` is not set.
fn pg_url(test: &str) -> Option<String> {
    match std::env::var("WEIR_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED: store::tests::postgres::{test}: WEIR_PG_URL is not set");
            None
        }
    }
}

/// A database created for one test and dropped after it.
struct PgDatabase {
    admin: PgConnectOptions,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we could await in: a thread
        // with its own runtime. Best effort; a leftover database is named
        // weir_test_* and harmless.
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = sqlx::raw_sql(&sql).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

async fn postgres_fixture(test: &str) -> Option<Fixture> {
    let url = pg_url(test)?;
    let shown = super::postgres::redact_url(&url);
    let admin = PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("WEIR_PG_URL={shown} is not a PostgreSQL URL: {e}"));
    let name = format!("weir_test_{}", Uuid::now_v7().simple());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("WEIR_PG_URL is set but PostgreSQL at {shown} cannot be reached: {e}")
        });
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name} at {shown}: {e}"));
    let _ = conn.close().await;
    let guard = PgDatabase {
        admin: admin.clone(),
        name: name.clone(),
    };
    let store = SqlStore::connect_postgres_with(admin.clone().database(&name))
        .await
        .unwrap_or_else(|e| panic!("cannot open the store in database {name} at {shown}: {e}"));
    Some(Fixture {
        store: Arc::new(store),
        raw: Raw::Postgres(Box::new(admin.database(&name))),
        _guard: Box::new(guard),
    })
}

async fn pool(store: &dyn Store, name: &str, limit: Option<u32>) {
    let now = Utc::now();
    store
        .create_pool(&Pool {
            cluster: None,
            name: name.into(),
            pool_type: PoolType::Process,
            base_job_template: BaseJobTemplate::default_for(TemplateKind::Process),
            concurrency_limit: limit,
            paused: false,
            description: String::new(),
            created_at: now,
            updated_at: now,
        })
        .await
        .expect("create pool");
}

async fn queue(store: &dyn Store, pool: &str, name: &str, priority: u32, limit: Option<u32>) {
    store
        .create_queue(&Queue {
            pool: pool.into(),
            name: name.into(),
            priority,
            concurrency_limit: limit,
            paused: false,
            late_after_seconds: None,
            late_action: LateAction::Keep,
            description: String::new(),
            created_at: Utc::now(),
        })
        .await
        .expect("create queue");
}

async fn limit(store: &dyn Store, tag: &str, n: u32) {
    store
        .create_limit(&ConcurrencyLimit {
            tag: tag.into(),
            limit: n,
            created_at: Utc::now(),
        })
        .await
        .expect("create limit");
}

fn new_run(pool: &str, queue: &str, tags: &[&str]) -> NewRun {
    NewRun {
        id: Uuid::now_v7(),
        pool: pool.into(),
        queue: queue.into(),
        deployment: None,
        job: Some(serde_json::json!({"command": "true"})),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        parameters: Map::new(),
        job_variables: Map::new(),
        parent_run_id: None,
        idempotency_key: None,
        scheduled_at: Utc::now() - Duration::milliseconds(1),
        retries: Default::default(),
        message: "created".into(),
        cause: "test".into(),
        history: Vec::new(),
        needs_admission: false,
        labels: Map::new(),
    }
}

async fn submit(store: &dyn Store, pool: &str, queue: &str, tags: &[&str]) -> RunId {
    store
        .insert_run(new_run(pool, queue, tags))
        .await
        .expect("insert")
        .0
        .id
}

async fn release(store: &dyn Store) -> Vec<RunId> {
    store
        .release_ready(Utc::now(), 10_000)
        .await
        .expect("release")
        .into_iter()
        .map(|r| r.run.id)
        .collect()
}

async fn finish(store: &dyn Store, id: RunId, to: RunState) {
    store
        .transition(id, Transition::new(to, "done", "test"))
        .await
        .expect("transition");
}

async fn priority_then_time_then_arrival(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", Some(1)).await;
    queue(s, "p", "low", 5, None).await;
    queue(s, "p", "high", 1, None).await;
    let a = submit(s, "p", "low", &[]).await;
    let b = submit(s, "p", "high", &[]).await;
    let c = submit(s, "p", "high", &[]).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let r = release(s).await;
        assert_eq!(r.len(), 1, "pool limit 1 releases one at a time");
        order.push(r[0]);
        finish(s, r[0], RunState::Completed).await;
    }
    assert_eq!(order, vec![b, c, a]);
}

async fn equal_priorities_are_served_round_robin(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", Some(4)).await;
    queue(s, "p", "a", 2, None).await;
    queue(s, "p", "b", 2, None).await;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..4 {
        a.push(submit(s, "p", "a", &[]).await);
    }
    for _ in 0..4 {
        b.push(submit(s, "p", "b", &[]).await);
    }
    let released = release(s).await;
    assert_eq!(released, vec![a[0], b[0], a[1], b[1]]);
}

async fn a_full_queue_does_not_block_others_and_tags_do_not_block_queues(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    queue(s, "p", "first", 1, Some(1)).await;
    queue(s, "p", "second", 2, None).await;
    limit(s, "db", 1).await;
    let f1 = submit(s, "p", "first", &[]).await;
    let _f2 = submit(s, "p", "first", &[]).await;
    let s1 = submit(s, "p", "second", &["db"]).await;
    let s2 = submit(s, "p", "second", &["db"]).await;
    let s3 = submit(s, "p", "second", &[]).await;
    let released = release(s).await;
    // first is full after f1; s2 waits for the db tag but s3 behind it goes.
    assert_eq!(released, vec![f1, s1, s3]);
    finish(s, s1, RunState::Completed).await;
    assert_eq!(release(s).await, vec![s2]);
}

async fn paused_pools_and_queues_hold_their_runs(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    queue(s, "p", "q", 1, None).await;
    s.update_pool(
        "p",
        PoolPatch {
            paused: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("pause");
    let r = submit(s, "p", "q", &[]).await;
    assert!(release(s).await.is_empty());
    s.update_pool(
        "p",
        PoolPatch {
            paused: Some(false),
            ..Default::default()
        },
    )
    .await
    .expect("resume");
    s.update_queue(
        "p",
        "q",
        QueuePatch {
            paused: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("pause queue");
    assert!(release(s).await.is_empty());
    s.update_queue(
        "p",
        "q",
        QueuePatch {
            paused: Some(false),
            ..Default::default()
        },
    )
    .await
    .expect("resume queue");
    assert_eq!(release(s).await, vec![r]);
}

async fn future_runs_wait_for_their_time_and_late_runs_are_marked(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    let mut later = new_run("p", "default", &[]);
    later.scheduled_at = Utc::now() + Duration::hours(1);
    let later_id = s.insert_run(later).await.expect("insert").0.id;
    assert!(release(s).await.is_empty());
    let wake = s
        .next_wake(Utc::now(), Duration::seconds(15))
        .await
        .expect("next wake")
        .expect("a wake time");
    assert!(wake > Utc::now() + Duration::minutes(59));
    let mut old = new_run("p", "default", &[]);
    old.scheduled_at = Utc::now() - Duration::minutes(5);
    let old_id = s.insert_run(old).await.expect("insert").0.id;
    // A queue with a longer threshold keeps an equally old run Scheduled; one
    // with a shorter threshold and `cancel` marks a younger run and says so.
    queue(s, "p", "patient", 1, None).await;
    queue(s, "p", "strict", 1, None).await;
    for (name, after, action) in [
        ("patient", 3600, LateAction::Keep),
        ("strict", 2, LateAction::Cancel),
    ] {
        s.update_queue(
            "p",
            name,
            QueuePatch {
                late_after_seconds: Some(Some(after)),
                late_action: Some(action),
                ..Default::default()
            },
        )
        .await
        .expect("late policy");
    }
    let mut patient = new_run("p", "patient", &[]);
    patient.scheduled_at = Utc::now() - Duration::minutes(5);
    let patient_id = s.insert_run(patient).await.expect("insert").0.id;
    let mut strict = new_run("p", "strict", &[]);
    strict.scheduled_at = Utc::now() - Duration::seconds(5);
    let strict_id = s.insert_run(strict).await.expect("insert").0.id;
    let late = s
        .mark_late(Utc::now(), Duration::seconds(15))
        .await
        .expect("mark late");
    let mut marked: Vec<_> = late
        .iter()
        .map(|l| (l.id, l.cancel, l.late_after_seconds))
        .collect();
    marked.sort();
    let mut want = vec![(old_id, false, 15), (strict_id, true, 2)];
    want.sort();
    assert_eq!(marked, want);
    let strict_late = late.iter().find(|l| l.id == strict_id).expect("strict");
    assert!(
        strict_late.late_by >= Duration::seconds(5),
        "{strict_late:?}"
    );
    assert_eq!(strict_late.queue, "strict");
    let run = s.get_run(old_id, true).await.expect("get");
    assert_eq!(run.state, RunState::Late);
    assert_eq!(
        s.get_run(patient_id, false).await.expect("get").state,
        RunState::Scheduled
    );
    // The next wake counts the shortest threshold.
    let mut soon = new_run("p", "strict", &[]);
    soon.scheduled_at = Utc::now() + Duration::seconds(60);
    s.insert_run(soon).await.expect("insert");
    let wake = s
        .next_wake(Utc::now(), Duration::seconds(15))
        .await
        .expect("next wake")
        .expect("a wake time");
    assert!(wake < Utc::now() + Duration::seconds(61), "{wake}");
    let mut released = release(s).await;
    released.sort();
    let mut want = vec![old_id, strict_id, patient_id];
    want.sort();
    assert_eq!(released, want);
    assert_eq!(
        s.get_run(later_id, false).await.expect("get").state,
        RunState::Scheduled
    );
}

/// A backlog larger than one batch is marked Late completely, each run once.
async fn a_deep_backlog_is_marked_late_in_batches_each_run_once(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    s.update_pool(
        "p",
        PoolPatch {
            paused: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("pause");
    let mut ids = Vec::new();
    for i in 0..1_203 {
        let mut r = new_run("p", "default", &[]);
        r.scheduled_at = Utc::now() - Duration::minutes(5) + Duration::milliseconds(i);
        ids.push(s.insert_run(r).await.expect("insert").0.id);
    }
    let now = Utc::now();
    let after = Duration::seconds(15);
    assert_eq!(
        s.mark_late(now, after).await.expect("mark late").len(),
        1_203
    );
    assert_eq!(s.mark_late(now, after).await.expect("again").len(), 0);
    for id in [ids[0], ids[499], ids[500], ids[1_202]] {
        let run = s.get_run(id, true).await.expect("get");
        assert_eq!(run.state, RunState::Late);
        let late_lines = run
            .history
            .iter()
            .flatten()
            .filter(|h| h.state == RunState::Late)
            .count();
        assert_eq!(late_lines, 1, "{id}");
    }
}

async fn idempotency_key_returns_the_first_run(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    let mut a = new_run("p", "default", &[]);
    a.idempotency_key = Some("k1".into());
    let mut b = new_run("p", "default", &[]);
    b.idempotency_key = Some("k1".into());
    let (first, created) = s.insert_run(a).await.expect("first");
    assert!(created);
    let (second, created) = s.insert_run(b).await.expect("second");
    assert!(!created);
    assert_eq!(first.id, second.id);
    let page = s
        .list_runs(&RunFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.runs.len(), 1);
}

async fn history_and_illegal_transitions(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    let id = submit(s, "p", "default", &[]).await;
    let err = s
        .transition(id, Transition::new(RunState::Running, "x", "test"))
        .await
        .expect_err("Scheduled -> Running is illegal");
    assert!(matches!(err, StoreError::IllegalTransition(_)));
    release(s).await;
    finish(s, id, RunState::Running).await;
    finish(s, id, RunState::Completed).await;
    let run = s.get_run(id, true).await.expect("get");
    let states: Vec<RunState> = run
        .history
        .unwrap_or_default()
        .iter()
        .map(|h| h.state)
        .collect();
    assert_eq!(
        states,
        vec![
            RunState::Scheduled,
            RunState::Pending,
            RunState::Running,
            RunState::Completed
        ]
    );
    assert!(run.started_at.is_some() && run.ended_at.is_some());
}

async fn list_pages_newest_first_with_filters(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(submit(s, "p", "default", if i % 2 == 0 { &["even"] } else { &[] }).await);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list_runs(&RunFilter {
                limit: 3,
                before_seq: cursor,
                ..Default::default()
            })
            .await
            .expect("page");
        seen.extend(page.runs.iter().map(|r| r.id));
        match page.next_seq {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let even = s
        .list_runs(&RunFilter {
            limit: 100,
            tag: Some("even".into()),
            ..Default::default()
        })
        .await
        .expect("tag filter");
    assert_eq!(even.runs.len(), 4);
}

/// Checks every limit and the slot ledger against the runs' states.
async fn check_invariants(
    s: &dyn Store,
    pool_limit: u32,
    queue_limits: &HashMap<String, u32>,
    tag_limits: &HashMap<String, u32>,
) {
    let holding = s.active_runs().await.expect("active");
    assert!(
        holding.len() as u32 <= pool_limit,
        "pool limit exceeded: {} > {pool_limit}",
        holding.len()
    );
    for (q, l) in queue_limits {
        let n = holding.iter().filter(|r| &r.queue == q).count() as u32;
        assert!(n <= *l, "queue {q} limit exceeded: {n} > {l}");
    }
    for (t, l) in tag_limits {
        let n = holding.iter().filter(|r| r.tags.contains(t)).count() as u32;
        assert!(n <= *l, "tag {t} limit exceeded: {n} > {l}");
    }
    // The ledger: exactly one pool slot, one queue slot and one slot per tag
    // for each run holding slots, and nothing else.
    let stats = s.stats().await.expect("stats");
    let mut expected: HashMap<(String, String), u64> = HashMap::new();
    for r in &holding {
        *expected.entry(("pool".into(), r.pool.clone())).or_default() += 1;
        *expected
            .entry(("queue".into(), format!("{}/{}", r.pool, r.queue)))
            .or_default() += 1;
        for t in &r.tags {
            *expected.entry(("tag".into(), t.clone())).or_default() += 1;
        }
    }
    for (key, (used, _)) in &stats.slots {
        assert_eq!(
            *used,
            expected.get(key).copied().unwrap_or(0),
            "slot ledger for {key:?} disagrees with the runs"
        );
    }
    for (key, n) in &expected {
        assert_eq!(
            stats.slots.get(key).map(|(u, _)| *u),
            Some(*n),
            "slots for {key:?} missing"
        );
    }
    check_counters(s).await;
}

/// The kept counters (runs by state; runs holding slots or waiting by pool,
/// queue, tag and label) agree with a count of every run.
async fn check_counters(s: &dyn Store) {
    let mut runs = Vec::new();
    let mut before_seq = None;
    loop {
        let page = s
            .list_runs(&RunFilter {
                limit: 1000,
                before_seq,
                ..Default::default()
            })
            .await
            .expect("list");
        runs.extend(page.runs);
        match page.next_seq {
            Some(seq) => before_seq = Some(seq),
            None => break,
        }
    }
    let stats = s.stats().await.expect("stats");
    for state in RunState::ALL {
        let n = runs.iter().filter(|r| r.state == state).count() as u64;
        assert_eq!(
            stats
                .runs_by_state
                .get(state.as_str())
                .copied()
                .unwrap_or(0),
            n,
            "runs counted {state}"
        );
    }
    let mut expected: HashMap<(&str, String, String), Occupancy> = HashMap::new();
    for r in &runs {
        let (active, queued) = (
            u64::from(r.state.holds_slots()),
            u64::from(r.state.is_waiting()),
        );
        let mut keys = vec![
            ("pool", r.pool.clone(), String::new()),
            ("queue", r.pool.clone(), r.queue.clone()),
        ];
        keys.extend(r.tags.iter().map(|t| ("tag", t.clone(), String::new())));
        keys.extend(
            r.labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| ("label", k.clone(), v.to_owned()))),
        );
        keys.sort();
        keys.dedup();
        for key in keys {
            let o = expected.entry(key).or_default();
            o.active += active;
            o.queued += queued;
        }
    }
    for ((kind, key, value), want) in &expected {
        let got = match *kind {
            "pool" => s.pool_occupancy(key).await,
            "queue" => s.queue_occupancy(key, value).await,
            "tag" => s.tag_occupancy(key).await,
            _ => s.label_occupancy(key, value).await,
        }
        .expect("occupancy");
        assert_eq!(
            (got.active, got.queued),
            (want.active, want.queued),
            "{kind} {key} {value}: counted (active, queued)"
        );
        if *kind == "queue" {
            let listed = stats.queues.get(&(key.clone(), value.clone())).copied();
            assert_eq!(
                listed.map(|o| (o.active, o.queued)),
                Some((want.active, want.queued)),
                "stats for queue {key}/{value}"
            );
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Submit { queue: usize, tags: Vec<usize> },
    Release,
    Finish { pick: usize, how: usize },
    CancelWaiting { pick: usize },
    Retry { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, proptest::collection::vec(0..3usize, 0..3))
            .prop_map(|(queue, tags)| Op::Submit { queue, tags }),
        3 => Just(Op::Release),
        3 => (any::<usize>(), 0..4usize).prop_map(|(pick, how)| Op::Finish { pick, how }),
        1 => any::<usize>().prop_map(|pick| Op::CancelWaiting { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
    ]
}

const QUEUES: [&str; 3] = ["q0", "q1", "q2"];
const TAGS: [&str; 3] = ["t0", "t1", "t2"];

async fn run_ops(store: Arc<dyn Store>, ops: Vec<Op>) {
    let s = &*store;
    let pool_limit = 4;
    pool(s, "p", Some(pool_limit)).await;
    let mut queue_limits = HashMap::new();
    queue(s, "p", "q0", 1, Some(2)).await;
    queue_limits.insert("q0".to_string(), 2);
    queue(s, "p", "q1", 1, None).await;
    queue(s, "p", "q2", 2, Some(1)).await;
    queue_limits.insert("q2".to_string(), 1);
    let mut tag_limits = HashMap::new();
    limit(s, "t0", 1).await;
    tag_limits.insert("t0".to_string(), 1);
    limit(s, "t1", 2).await;
    tag_limits.insert("t1".to_string(), 2);
    for op in ops {
        match op {
            Op::Submit { queue, tags } => {
                let tags: Vec<&str> = tags.iter().map(|t| TAGS[*t]).collect();
                let mut tags_dedup = tags.clone();
                tags_dedup.dedup();
                // Labels too, so their counters are checked: a team per
                // queue, and a label some runs do not carry.
                let mut run = new_run("p", QUEUES[queue], &tags_dedup);
                run.labels
                    .insert("team".into(), format!("team-{}", queue % 2).into());
                if !tags_dedup.is_empty() {
                    run.labels.insert("tagged".into(), "yes".into());
                }
                s.insert_run(run).await.expect("insert");
            }
            Op::Release => {
                release(s).await;
            }
            Op::Finish { pick, how } => {
                let holding = s.active_runs().await.expect("active");
                if holding.is_empty() {
                    continue;
                }
                let run = &holding[pick % holding.len()];
                let to = [
                    RunState::Completed,
                    RunState::Crashed,
                    RunState::Cancelling,
                    RunState::Running,
                ][how];
                let _ = s
                    .transition(run.id, Transition::new(to, "op", "test"))
                    .await;
            }
            Op::CancelWaiting { pick } => {
                let waiting = s
                    .list_runs(&RunFilter {
                        states: vec![RunState::Scheduled, RunState::AwaitingRetry],
                        limit: 1000,
                        ..Default::default()
                    })
                    .await
                    .expect("waiting");
                if let Some(run) = waiting.runs.get(pick % waiting.runs.len().max(1)) {
                    finish(s, run.id, RunState::Cancelled).await;
                }
            }
            Op::Retry { pick } => {
                let holding = s.active_runs().await.expect("active");
                if let Some(run) = holding.get(pick % holding.len().max(1)) {
                    let mut t = Transition::new(RunState::AwaitingRetry, "retry", "test");
                    t.retry_at = Some(Utc::now());
                    let _ = s.transition(run.id, t).await;
                }
            }
        }
        check_invariants(s, pool_limit, &queue_limits, &tag_limits).await;
    }
}

fn run_ops_on(postgres: bool, ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let fixture = if postgres {
            postgres_fixture("random_interleavings_keep_limits_and_slots").await
        } else {
            Some(sqlite_fixture().await)
        };
        if let Some(f) = fixture {
            run_ops(f.store.clone(), ops).await;
        }
    });
}

async fn concurrent_callers_never_exceed_limits(store: Arc<dyn Store>) {
    let s = store;
    pool(&*s, "p", Some(3)).await;
    limit(&*s, "t", 2).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let tags: &[&str] = if (w + i) % 2 == 0 { &["t"] } else { &[] };
                ids.push(submit(&*s, "p", "default", tags).await);
                for id in release(&*s).await {
                    let holding = s.active_runs().await.expect("active");
                    assert!(holding.len() <= 3, "pool limit exceeded");
                    assert!(
                        holding
                            .iter()
                            .filter(|r| r.tags.iter().any(|t| t == "t"))
                            .count()
                            <= 2,
                        "tag limit exceeded"
                    );
                    finish(&*s, id, RunState::Completed).await;
                }
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("task"));
    }
    // Drain and check nothing leaked.
    loop {
        let r = release(&*s).await;
        if r.is_empty() {
            break;
        }
        for id in r {
            finish(&*s, id, RunState::Completed).await;
        }
    }
    let stats = s.stats().await.expect("stats");
    assert!(
        stats.slots.values().all(|(used, _)| *used == 0),
        "slots leaked: {:?}",
        stats.slots
    );
    assert_eq!(stats.runs_by_state.get("Completed").copied(), Some(200));

    // The recorded histories agree: a release is never stamped before the
    // end that gave it its slot, so no instant shows more runs holding
    // slots than the limits allow.
    let (mut all, mut tagged) = (Vec::new(), Vec::new());
    for id in ids {
        let run = s.get_run(id, true).await.expect("run");
        let at = |state: RunState| {
            run.history
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|h| h.state == state)
                .map(|h| h.at)
                .expect("history entry")
        };
        let span = (at(RunState::Pending), at(RunState::Completed));
        if run.tags.iter().any(|t| t == "t") {
            tagged.push(span);
        }
        all.push(span);
    }
    assert!(
        most_at_once(&all) <= 3,
        "histories show the pool over its limit"
    );
    assert!(
        most_at_once(&tagged) <= 2,
        "histories show the tag over its limit"
    );
}

/// The most spans open at once; one ending at the instant another starts
/// does not overlap it.
fn most_at_once(spans: &[(chrono::DateTime<Utc>, chrono::DateTime<Utc>)]) -> i32 {
    let mut edges: Vec<_> = spans
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most
}

async fn tokens_are_found_by_hash_listed_and_revoked(store: Arc<dyn Store>) {
    use crate::domain::{Role, TokenRecord};
    let record = TokenRecord {
        id: "t1".into(),
        name: "ci".into(),
        role: Role::Submitter,
        team: Some("a".into()),
        pools: vec!["p".into(), "q".into()],
        prefix: "weir_abcd1234".into(),
        created_at: chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
            .expect("now"),
        revoked_at: None,
    };
    store.create_token(&record, "hash1").await.expect("create");
    // The hash is unique: a second token with the same hash is refused.
    let twin = TokenRecord {
        id: "t2".into(),
        ..record.clone()
    };
    assert!(matches!(
        store.create_token(&twin, "hash1").await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.token_by_hash("hash1").await.expect("get"),
        Some(record.clone())
    );
    assert_eq!(store.token_by_hash("nope").await.expect("get"), None);
    assert_eq!(
        store.list_tokens().await.expect("list"),
        vec![record.clone()]
    );
    let revoked = store.revoke_token("t1").await.expect("revoke");
    let at = revoked.revoked_at.expect("revoked_at");
    // Revoking again keeps the first time.
    let again = store.revoke_token("t1").await.expect("revoke again");
    assert_eq!(again.revoked_at, Some(at));
    assert_eq!(
        store
            .token_by_hash("hash1")
            .await
            .expect("get")
            .and_then(|t| t.revoked_at),
        Some(at)
    );
    assert!(matches!(
        store.revoke_token("missing").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn server_secrets_are_set_once(store: Arc<dyn Store>) {
    let first = store.server_secret("k", "one").await.expect("secret");
    assert_eq!(first, "one");
    // A second replica's candidate loses: everyone agrees on the first.
    assert_eq!(
        store.server_secret("k", "two").await.expect("secret"),
        "one"
    );
    assert_eq!(
        store.server_secret("other", "x").await.expect("secret"),
        "x"
    );
}

/// `levels` nested arrays, built without recursion (and taken apart the
/// same way by the caller's drop being shallow enough: at most a few
/// hundred levels here).
fn nested(levels: usize) -> serde_json::Value {
    let mut v = serde_json::Value::Null;
    for _ in 0..levels {
        v = serde_json::Value::Array(vec![v]);
    }
    v
}

async fn a_document_that_would_not_read_back_is_not_stored(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    let mut run = new_run("p", "default", &[]);
    run.job = Some(nested(document::READ_BACK_DEPTH + 1));
    let id = run.id;
    let err = s.insert_run(run).await.expect_err("refused");
    assert!(matches!(err, StoreError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("reads back at most 127"), "{err}");
    assert!(matches!(
        s.get_run(id, false).await,
        Err(StoreError::NotFound { .. })
    ));
    // At the limit it is stored and read back.
    let mut run = new_run("p", "default", &[]);
    run.job = Some(nested(document::READ_BACK_DEPTH - 1));
    let (stored, _) = s.insert_run(run).await.expect("stored");
    let back = s.get_run(stored.id, false).await.expect("read back");
    assert_eq!(back.job, stored.job);
}

fn deferral(reason: &str) -> HistoryEntry {
    HistoryEntry {
        state: RunState::Scheduled,
        at: Utc::now(),
        message: format!("admission quota@1: defer 1s: {reason} (0.2 ms)"),
        cause: "admission:quota".into(),
        detail: Some(serde_json::json!({
            "plugin": "quota", "version": 1, "elapsed_ms": 0.2,
            "decision": {"decision": "defer", "seconds": 1, "reason": reason},
        })),
    }
}

async fn repeated_decisions_fold_and_a_history_stays_bounded(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    let id = submit(s, "p", "default", &[]).await;
    let later = Some(Utc::now() + Duration::seconds(1));
    for _ in 0..50 {
        s.set_admission(id, later, &[deferral("over quota")])
            .await
            .expect("defer");
    }
    let history = s
        .get_run(id, true)
        .await
        .expect("get")
        .history
        .expect("history");
    assert_eq!(
        history.len(),
        2,
        "created, then one folded line: {history:#?}"
    );
    assert_eq!(history[1].detail.as_ref().expect("detail")["repeated"], 50);
    for i in 0..(history::MAX_DECISION_LINES + 100) {
        s.append_history(id, &[deferral(&format!("reason {i}"))])
            .await
            .expect("append");
    }
    let history = s
        .get_run(id, true)
        .await
        .expect("get")
        .history
        .expect("history");
    assert_eq!(history.len(), history::MAX_DECISION_LINES + 1);
    let summary = history.last().expect("summary");
    assert_eq!(summary.cause, history::SUMMARY_CAUSE);
    // 200 lines held 2 before; 198 more fitted, 102 were only counted.
    assert_eq!(
        summary.detail.as_ref().expect("detail")["not_recorded"],
        102
    );
    // State changes are always recorded, past the bound too.
    finish(s, id, RunState::Cancelled).await;
    let run = s.get_run(id, true).await.expect("get");
    let history = run.history.expect("history");
    assert_eq!(history.len(), history::MAX_DECISION_LINES + 2);
    assert_eq!(history.last().map(|h| h.state), Some(RunState::Cancelled));
}

/// Rows an older Weir (or damage) left that do not read back: found, the
/// runs ended Crashed with the reason and their slots returned; nothing
/// else touched.
async fn unreadable_rows_are_found_and_their_runs_set_aside(store: Arc<dyn Store>, raw: &Raw) {
    let s = &*store;
    pool(s, "p", Some(2)).await;
    let submitted = submit(s, "p", "default", &[]).await;
    let held = submit(s, "p", "default", &[]).await;
    // Labelled, so that setting it aside must count its labels again (they
    // will not read back).
    let mut labelled = new_run("p", "default", &["t"]);
    labelled.labels.insert("team".into(), "ml".into());
    let waiting = s.insert_run(labelled).await.expect("insert").0.id;
    let mut other = new_run("p", "default", &[]);
    other.labels.insert("team".into(), "ml".into());
    s.insert_run(other).await.expect("insert");
    assert_eq!(release(s).await, vec![submitted, held]);
    assert!(
        s.record_submission(submitted, 1, &serde_json::json!({"job": {}}))
            .await
            .expect("intent")
    );
    // A waiting run's job and a released run's submission that do not read
    // back (300 levels, past serde_json's 128).
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let sql = "UPDATE runs SET job = ?, labels = ? WHERE id = ?";
    assert_eq!(
        raw.exec(sql, &[&deep, &deep, &waiting.to_string()]).await,
        1
    );
    let sql = "UPDATE submissions SET target = ? WHERE run_id = ?";
    assert_eq!(raw.exec(sql, &[&deep, &submitted.to_string()]).await, 1);

    let mut found = s.unreadable_runs().await.expect("scan");
    found.sort();
    let mut expected = vec![submitted, waiting];
    expected.sort();
    let ids: Vec<RunId> = found.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, expected, "{found:?}");
    assert!(
        found.iter().all(|(_, why)| why.contains("recursion limit")),
        "{found:?}"
    );
    for (id, why) in &found {
        s.quarantine_run(*id, why).await.expect("quarantine");
        // Again is a no-op: the run has ended.
        s.quarantine_run(*id, why).await.expect("quarantine again");
    }
    assert!(s.unreadable_runs().await.expect("scan").is_empty());
    for id in [submitted, waiting] {
        let run = s.get_run(id, true).await.expect("reads back now");
        assert_eq!(run.state, RunState::Crashed);
        assert!(
            run.state_message.contains("could not be read back"),
            "{}",
            run.state_message
        );
        let history = run.history.expect("history");
        let last = history.last().expect("a line");
        assert_eq!(last.state, RunState::Crashed);
        let kept = &last.detail.as_ref().expect("detail")["set_aside"];
        assert!(kept.as_object().is_some_and(|m| !m.is_empty()), "{kept}");
    }
    let intent = s.submission(submitted, 1).await.expect("readable");
    assert_eq!(intent.expect("kept")["bytes"], 600);
    // The crashed run's slot is back; the other held run keeps its own.
    assert_eq!(s.pool_occupancy("p").await.expect("occupancy").active, 1);
    assert_eq!(
        s.get_run(held, false).await.expect("held").state,
        RunState::Pending
    );
    check_counters(s).await;
    // The other labelled run still counts; the set-aside one no longer.
    let ml = s.label_occupancy("team", "ml").await.expect("label");
    assert_eq!((ml.active, ml.queued), (0, 1));
}

#[tokio::test]
async fn sqlite_unreadable_rows_are_found_and_their_runs_set_aside() {
    let f = sqlite_fixture().await;
    unreadable_rows_are_found_and_their_runs_set_aside(f.store.clone(), &f.raw).await;
}

#[tokio::test]
async fn postgres_unreadable_rows_are_found_and_their_runs_set_aside() {
    let Some(f) = postgres_fixture("unreadable_rows_are_found_and_their_runs_set_aside").await
    else {
        return;
    };
    unreadable_rows_are_found_and_their_runs_set_aside(f.store.clone(), &f.raw).await;
}

/// The paths the scheduler and the API take beside the release walk:
/// deferred admission, label and tag counts, limits, deployments, plugins
/// and their bindings, submission intents and the `/metrics` snapshot —
/// each written and read back through the one store on both databases.
async fn every_resource_reads_back_and_deferred_runs_come_due(store: Arc<dyn Store>) {
    use crate::domain::{Deployment, OnError, PluginBinding, World};
    let s = &*store;
    pool(s, "p", Some(4)).await;
    limit(s, "gpu", 2).await;
    let updated = s.update_limit("gpu", 3).await.expect("update limit");
    assert_eq!(updated.limit, 3);
    assert!(matches!(
        s.update_limit("none", 1).await,
        Err(StoreError::NotFound { .. })
    ));

    // Deferred by admission: not released, due later, then admitted.
    let mut deferred = new_run("p", "default", &["gpu"]);
    deferred.needs_admission = true;
    deferred.labels.insert("team".into(), "ml".into());
    let deferred = s.insert_run(deferred).await.expect("insert").0.id;
    let mut plain = new_run("p", "default", &[]);
    plain.labels.insert("team".into(), "ml".into());
    let plain = s.insert_run(plain).await.expect("insert").0.id;
    assert_eq!(release(s).await, vec![plain]);
    let due = s.due_admissions(Utc::now(), 10).await.expect("due");
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), vec![deferred]);
    let label = s.label_occupancy("team", "ml").await.expect("labels");
    assert_eq!((label.active, label.queued), (1, 1));
    assert_eq!(
        s.label_occupancy("team", "other").await.expect("labels"),
        Occupancy::default()
    );
    let tag = s.tag_occupancy("gpu").await.expect("tags");
    assert_eq!((tag.active, tag.queued), (0, 1));
    s.set_admission(deferred, None, &[]).await.expect("admit");
    assert!(
        s.due_admissions(Utc::now(), 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(release(s).await, vec![deferred]);
    assert_eq!(s.tag_slots_in_use("gpu").await.expect("slots"), 1);

    // Submission intents, only while the run is Pending in that attempt.
    let target = serde_json::json!({"job": {"command": "true"}});
    assert!(
        s.record_submission(deferred, 1, &target)
            .await
            .expect("record")
    );
    assert_eq!(s.submission(deferred, 1).await.expect("read"), Some(target));
    finish(s, deferred, RunState::Running).await;
    assert!(
        !s.record_submission(deferred, 1, &serde_json::json!({}))
            .await
            .expect("record")
    );

    let stats = s.stats().await.expect("stats");
    assert_eq!(stats.runs_by_state.get("Pending"), Some(&1));
    assert_eq!(stats.runs_by_state.get("Running"), Some(&1));
    assert_eq!(
        stats.queues.get(&("p".to_owned(), "default".to_owned())),
        Some(&Occupancy {
            active: 2,
            queued: 0
        })
    );
    assert_eq!(
        stats.slots.get(&("tag".to_owned(), "gpu".to_owned())),
        Some(&(1, Some(3)))
    );

    // Deployments.
    let now = Utc::now();
    let mut variables = Map::new();
    variables.insert("command".into(), "echo hi".into());
    s.create_deployment(&Deployment {
        name: "d".into(),
        pool: "p".into(),
        queue: None,
        job_variables: variables.clone(),
        tags: vec!["gpu".into()],
        parameters: Map::new(),
        description: String::new(),
        team: Some("ml".into()),
        retries: Default::default(),
        created_at: now,
        updated_at: now,
    })
    .await
    .expect("create deployment");
    let d = s
        .update_deployment(
            "d",
            DeploymentPatch {
                team: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("update deployment");
    assert_eq!((d.team, d.job_variables), (None, variables));
    assert_eq!(s.list_deployments().await.expect("list").len(), 1);

    // Plugins: a version per new digest, bytes stored once, bindings.
    let (v1, new) = s
        .add_plugin_version("quota", "sha256:a", b"one", World::Admission, "0.1.0")
        .await
        .expect("add");
    assert!(new);
    assert_eq!(v1.version, 1);
    let (again, new) = s
        .add_plugin_version("quota", "sha256:a", b"one", World::Admission, "0.1.0")
        .await
        .expect("add again");
    assert!(!new);
    assert_eq!(again.version, 1);
    let (v2, _) = s
        .add_plugin_version("quota", "sha256:b", b"two", World::Admission, "0.1.0")
        .await
        .expect("add v2");
    assert_eq!(v2.version, 2);
    assert_eq!(s.plugin_bytes("sha256:b").await.expect("bytes"), b"two");
    assert_eq!(s.plugin_versions("quota").await.expect("versions").len(), 2);
    let enforced = PluginBinding {
        id: 0,
        pool: Some("p".into()),
        plugin: "quota".into(),
        pinned_version: Some(1),
        config: serde_json::json!({"max": 3}),
        order: 0,
        on_error: OnError::FailClosed,
        deadline_ms: 50,
        memory_mb: 16,
        created_at: now,
        mode: BindingMode::Enforce,
    };
    let bound = s.create_binding(&enforced).await.expect("bind");
    assert!(bound.id > 0);
    let listed = s.list_bindings(Some("p")).await.expect("bindings");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].config, serde_json::json!({"max": 3}));
    assert_eq!(listed[0].mode, BindingMode::Enforce);
    // Once per mode: v2 in shadow beside v1 enforcing; a second shadow is
    // a conflict.
    let shadow = PluginBinding {
        pinned_version: Some(2),
        config: serde_json::json!({"max": 1}),
        order: 5,
        mode: BindingMode::Shadow,
        ..enforced.clone()
    };
    s.create_binding(&shadow).await.expect("bind in shadow");
    assert!(matches!(
        s.create_binding(&shadow).await,
        Err(StoreError::Conflict { .. })
    ));
    let modes: Vec<BindingMode> = s
        .list_bindings(Some("p"))
        .await
        .expect("bindings")
        .iter()
        .map(|b| b.mode)
        .collect();
    assert_eq!(modes, [BindingMode::Enforce, BindingMode::Shadow]);
    // Promotion: both replaced by one enforcing binding, in one go.
    let promoted = s
        .replace_bindings(&PluginBinding {
            mode: BindingMode::Enforce,
            ..shadow.clone()
        })
        .await
        .expect("promote");
    let listed = s.list_bindings(Some("p")).await.expect("bindings");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, promoted.id);
    assert_eq!(
        (listed[0].pinned_version, listed[0].mode),
        (Some(2), BindingMode::Enforce)
    );
    s.create_binding(&shadow).await.expect("a shadow again");
    assert!(matches!(
        s.delete_plugin("quota").await,
        Err(StoreError::Conflict { .. })
    ));
    // Unbinding one mode leaves the other.
    s.delete_binding(Some("p"), "quota", Some(BindingMode::Shadow))
        .await
        .expect("unbind the shadow");
    assert!(matches!(
        s.delete_binding(Some("p"), "quota", Some(BindingMode::Shadow))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_bindings(Some("p")).await.expect("bindings").len(), 1);
    s.delete_binding(Some("p"), "quota", None)
        .await
        .expect("unbind");
    s.delete_plugin("quota").await.expect("delete plugin");
    assert!(s.list_plugins().await.expect("plugins").is_empty());
}

/// A release of more runs than one multi-row statement holds (chunks of
/// runs, of slots and of counter rows) moves every run once, with its slots,
/// its history and its counters; the tag limit still holds across chunks.
async fn a_large_release_moves_every_run_with_its_slots_history_and_counters(
    store: Arc<dyn Store>,
) {
    let s = &*store;
    pool(s, "p", None).await;
    limit(s, "capped", 500).await;
    let mut ids = Vec::new();
    for i in 0..600 {
        let mut run = new_run("p", "default", &["capped", "other"]);
        // Distinct labels: the 500 released make 15,000 counter rows of
        // five bound values each, more than one statement binds (SQLite
        // 32,766, PostgreSQL 65,535).
        for k in 0..30 {
            run.labels
                .insert(format!("k{k}"), format!("run-{i}").into());
        }
        ids.push(s.insert_run(run).await.expect("insert").0.id);
    }
    let released = release(s).await;
    assert_eq!(released, ids[..500].to_vec(), "FIFO, up to the tag's limit");
    let stats = s.stats().await.expect("stats");
    assert_eq!(stats.runs_by_state.get("Pending"), Some(&500));
    assert_eq!(stats.runs_by_state.get("Scheduled"), Some(&100));
    assert_eq!(
        stats.slots.get(&("tag".to_string(), "capped".to_string())),
        Some(&(500, Some(500)))
    );
    assert_eq!(
        stats
            .slots
            .get(&("tag".to_string(), "other".to_string()))
            .map(|s| s.0),
        Some(500)
    );
    let first = s.label_occupancy("k29", "run-0").await.expect("label");
    assert_eq!((first.active, first.queued), (1, 0));
    let last = s.label_occupancy("k29", "run-599").await.expect("label");
    assert_eq!((last.active, last.queued), (0, 1));
    let run = s.get_run(ids[499], true).await.expect("get");
    assert_eq!(run.state, RunState::Pending);
    let entry = run
        .history
        .as_ref()
        .and_then(|h| h.last())
        .expect("history");
    assert_eq!(
        (entry.state, entry.message.as_str()),
        (RunState::Pending, "released by the scheduler")
    );
    assert!(release(s).await.is_empty(), "the tag is full");
    for id in &ids[..100] {
        finish(s, *id, RunState::Completed).await;
    }
    assert_eq!(release(s).await, ids[500..].to_vec());
}

/// A backlog held by a full tag, pages deep, is passed over (the pages leave
/// it out once the tag is full) without holding the runs behind it, and is
/// released in order, one by one, as the tag frees.
async fn a_backlog_held_by_a_full_tag_is_passed_over_and_released_in_order(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", None).await;
    limit(s, "gpu", 1).await;
    let mut held = Vec::new();
    for i in 0..700 {
        // Some carry a second, unlimited tag: the filter is on any full tag.
        let tags: &[&str] = if i % 3 == 0 { &["gpu", "x"] } else { &["gpu"] };
        held.push(
            s.insert_run(new_run("p", "default", tags))
                .await
                .expect("insert")
                .0
                .id,
        );
    }
    let mut free = Vec::new();
    for _ in 0..3 {
        free.push(
            s.insert_run(new_run("p", "default", &["x"]))
                .await
                .expect("insert")
                .0
                .id,
        );
    }
    let mut expected = vec![held[0]];
    expected.extend(&free);
    assert_eq!(
        release(s).await,
        expected,
        "the first gpu run, then all behind the backlog"
    );
    assert!(release(s).await.is_empty(), "the tag is full");
    for i in 0..3 {
        finish(s, held[i], RunState::Completed).await;
        assert_eq!(release(s).await, vec![held[i + 1]], "FIFO as the tag frees");
    }
    let stats = s.stats().await.expect("stats");
    assert_eq!(stats.runs_by_state.get("Scheduled"), Some(&696));
}

/// PostgreSQL: a run the walk chose can be cancelled by another writer
/// before the pass moves it (the pass waits for that writer's row lock). The
/// pass then does not move it, walks again, and gives its place to the next
/// run — with pool limit 1, without the second walk it would release none.
#[tokio::test]
async fn postgres_a_run_cancelled_under_a_release_gives_its_place_to_the_next() {
    let Some(f) =
        postgres_fixture("a_run_cancelled_under_a_release_gives_its_place_to_the_next").await
    else {
        return;
    };
    let Raw::Postgres(options) = &f.raw else {
        panic!("a PostgreSQL fixture");
    };
    let s = &*f.store;
    pool(s, "p", Some(1)).await;
    let a = submit(s, "p", "default", &[]).await;
    let b = submit(s, "p", "default", &[]).await;
    let mut other = PgConnection::connect_with(options).await.expect("connect");
    sqlx::raw_sql("BEGIN")
        .execute(&mut other)
        .await
        .expect("begin");
    sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE")
        .bind(a.to_string())
        .execute(&mut other)
        .await
        .expect("lock a");
    let store = f.store.clone();
    let pass = tokio::spawn(async move { release(&*store).await });
    // Until the pass waits for a's lock: it read a as waiting and chose it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut other)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the release pass never waited for the locked run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sqlx::query("UPDATE runs SET state = 'Cancelled' WHERE id = $1")
        .bind(a.to_string())
        .execute(&mut other)
        .await
        .expect("cancel a");
    sqlx::raw_sql("COMMIT")
        .execute(&mut other)
        .await
        .expect("commit");
    assert_eq!(pass.await.expect("pass"), vec![b]);
    assert_eq!(
        s.get_run(a, false).await.expect("a").state,
        RunState::Cancelled
    );
}

/// `waiting_facts` reads what the release walk reads: the slots and their
/// holders, paused flags, the due runs of each queue and those ahead.
async fn waiting_facts_read_what_the_walk_reads(store: Arc<dyn Store>) {
    let s = &*store;
    pool(s, "p", Some(2)).await;
    queue(s, "p", "other", 0, Some(5)).await;
    limit(s, "gpu", 1).await;
    let holder = submit(s, "p", "default", &["gpu"]).await;
    assert_eq!(release(s).await, vec![holder]);
    // Held by the full tag; then two behind it in `default`, one in `other`.
    let a = submit(s, "p", "default", &["gpu"]).await;
    let b = submit(s, "p", "default", &[]).await;
    let c = submit(s, "p", "default", &[]).await;
    let o = submit(s, "p", "other", &[]).await;
    let mut later = new_run("p", "default", &[]);
    later.scheduled_at = Utc::now() + Duration::hours(1);
    let later = s.insert_run(later).await.expect("insert").0.id;
    let deferred = submit(s, "p", "default", &[]).await;
    s.set_admission(deferred, Some(Utc::now() + Duration::minutes(5)), &[])
        .await
        .expect("defer");

    let now = Utc::now();
    let facts = s
        .waiting_facts(c, now)
        .await
        .expect("facts")
        .expect("c waits");
    assert_eq!(facts.run.id, c);
    assert!(!facts.deferred);
    let pool_facts = facts.pool.as_ref().expect("the pool");
    assert_eq!(
        (pool_facts.paused, pool_facts.limit, pool_facts.used),
        (false, Some(2), 1)
    );
    assert_eq!(pool_facts.holders, vec![holder]);
    let queue_facts = facts.queue.as_ref().expect("the queue");
    assert_eq!((queue_facts.limit, queue_facts.used), (None, 1));
    assert!(facts.tags.is_empty(), "c has no tags");
    // The walk's order: `other` (priority 0) first, then `default`; due
    // runs only (not `later`, not `deferred`), and a, b ahead of c.
    let lines: Vec<(&str, u64, Option<u64>)> = facts
        .pool_queues
        .iter()
        .map(|q| (q.name.as_str(), q.due, q.ahead))
        .collect();
    assert_eq!(lines, vec![("other", 1, None), ("default", 3, Some(2))]);

    let facts = s.waiting_facts(a, now).await.expect("facts").expect("a");
    assert_eq!(facts.tags.len(), 1);
    let (tag, gpu) = &facts.tags[0];
    assert_eq!(tag, "gpu");
    assert_eq!((gpu.limit, gpu.used), (Some(1), 1));
    assert_eq!(gpu.holders, vec![holder]);

    let facts = s
        .waiting_facts(deferred, now)
        .await
        .expect("facts")
        .expect("deferred waits");
    assert!(facts.deferred);
    let facts = s
        .waiting_facts(later, now)
        .await
        .expect("facts")
        .expect("later");
    assert!(!facts.deferred);
    assert!(facts.run.scheduled_at > now);

    // The same runs counted by what holds them, per queue in walk order.
    let queues = s
        .queue_waiting(Some("p"), now)
        .await
        .expect("queue_waiting");
    let names: Vec<&str> = queues.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(names, ["other", "default"]);
    let default = &queues[1];
    assert_eq!(
        (
            default.pool_paused,
            default.queue_paused,
            default.pool_full,
            default.queue_full
        ),
        (false, false, false, false)
    );
    assert_eq!(default.queued, 5);
    assert_eq!(
        default.scanned,
        WaitScan {
            scheduled: 1,
            retry: 0,
            deferred: 1,
            tag_full: 1,
            due: 2,
        }
    );
    assert_eq!((queues[0].queued, queues[0].scanned.due), (1, 1));
    assert_eq!(
        s.queue_waiting(None, now).await.expect("every pool"),
        queues,
        "p is the only pool"
    );

    // The cause goes away: pausing shows, the holder's end frees its slots.
    s.update_queue(
        "p",
        "default",
        QueuePatch {
            paused: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("pause");
    finish(s, holder, RunState::Running).await;
    finish(s, holder, RunState::Completed).await;
    let facts = s
        .waiting_facts(a, Utc::now())
        .await
        .expect("facts")
        .expect("a");
    assert!(facts.queue.as_ref().expect("queue").paused);
    assert_eq!(facts.tags[0].1.used, 0);
    assert!(facts.tags[0].1.holders.is_empty());
    assert_eq!(facts.pool.as_ref().expect("pool").used, 0);
    let queues = s
        .queue_waiting(Some("p"), Utc::now())
        .await
        .expect("queue_waiting");
    let default = &queues[1];
    assert!(default.queue_paused && !default.pool_full);
    assert_eq!(
        default.scanned,
        WaitScan {
            scheduled: 1,
            retry: 0,
            deferred: 1,
            tag_full: 0,
            due: 3,
        }
    );

    // A run that does not wait has no facts.
    assert!(
        s.waiting_facts(holder, Utc::now())
            .await
            .expect("facts")
            .is_none()
    );
    let _ = (b, o);
}

/// Each test above, once per store: `sqlite::NAME` and `postgres::NAME`.
/// Recorded decision inputs (issue #16): parts stored once by digest, read
/// back newest first with the filters, and swept by count and by age with
/// the parts no decision names any more.
/// A schedule of each kind reads back as written; progress moves only
/// forward and only for the generation planned and while not paused; a
/// generation's waiting runs are found by their key; deleting a deployment
/// deletes its schedules.
async fn schedules_read_back_advance_only_forward_and_find_their_runs(store: Arc<dyn Store>) {
    use crate::domain::{Catchup, Schedule, When};
    let s = &*store;
    pool(s, "p", None).await;
    let now = chrono::DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    s.create_deployment(&Deployment {
        name: "d".into(),
        pool: "p".into(),
        queue: None,
        job_variables: Map::new(),
        tags: Vec::new(),
        parameters: Map::new(),
        description: String::new(),
        team: None,
        retries: Default::default(),
        created_at: now,
        updated_at: now,
    })
    .await
    .expect("create deployment");
    let mut params = Map::new();
    params.insert("full".into(), serde_json::json!({"deep": [1, 2]}));
    let whens = [
        When::Cron {
            cron: "0 2 * * *".into(),
            timezone: "Europe/Paris".into(),
        },
        When::Interval {
            interval_seconds: 90,
            anchor: now,
        },
        When::Once {
            at: now + Duration::hours(1),
        },
    ];
    let mut made = Vec::new();
    for (i, when) in whens.into_iter().enumerate() {
        let schedule = Schedule {
            deployment: "d".into(),
            name: format!("s{i}"),
            when,
            parameters: params.clone(),
            job_variables: Map::new(),
            catchup: [Catchup::None, Catchup::Latest, Catchup::All][i],
            paused: i == 2,
            created_through: now,
            id: Uuid::now_v7().to_string(),
            generation: 0,
            created_at: now,
            updated_at: now,
        };
        s.create_schedule(&schedule).await.expect("create schedule");
        assert_eq!(
            s.get_schedule("d", &schedule.name).await.expect("get"),
            schedule
        );
        made.push(schedule);
    }
    assert!(matches!(
        s.create_schedule(&made[0]).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut elsewhere = made[0].clone();
    elsewhere.deployment = "nope".into();
    elsewhere.id = Uuid::now_v7().to_string();
    assert!(matches!(
        s.create_schedule(&elsewhere).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_schedules(Some("d")).await.expect("list"), made);
    assert_eq!(s.list_schedules(None).await.expect("list all"), made);

    // Progress: forward only, this generation only, not while paused.
    let one = &made[1];
    let later = now + Duration::seconds(90);
    assert!(s.advance_schedule(one, later).await.expect("advance"));
    assert!(!s.advance_schedule(one, now).await.expect("not back"));
    let mut stale = one.clone();
    stale.generation = 7;
    assert!(
        !s.advance_schedule(&stale, later + Duration::seconds(90))
            .await
            .expect("other generation")
    );
    assert!(!s.advance_schedule(&made[2], later).await.expect("paused"));
    assert_eq!(
        s.get_schedule("d", "s1")
            .await
            .expect("get")
            .created_through,
        later
    );
    let mut resumed = s.get_schedule("d", "s1").await.expect("get");
    resumed.generation = 1;
    resumed.catchup = Catchup::None;
    s.replace_schedule(&resumed).await.expect("replace");
    assert_eq!(s.get_schedule("d", "s1").await.expect("get"), resumed);

    // A generation's waiting runs, by key.
    let mut keyed = Vec::new();
    for (k, key) in [
        resumed.run_key(later),
        resumed.run_key(later + Duration::seconds(90)),
        made[0].run_key(later),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = new_run("p", "default", &[]);
        r.deployment = Some("d".into());
        r.idempotency_key = Some(key);
        r.scheduled_at = now + Duration::seconds(90 * (k as i64 + 1));
        keyed.push(s.insert_run(r).await.expect("insert").0.id);
    }
    assert_eq!(
        s.waiting_runs_keyed("d", &resumed.key_prefix())
            .await
            .expect("keyed"),
        keyed[..2]
    );
    let mut older = resumed.clone();
    older.generation = 0;
    assert!(
        s.waiting_runs_keyed("d", &older.key_prefix())
            .await
            .expect("keyed")
            .is_empty()
    );

    s.delete_schedule("d", "s0").await.expect("delete");
    assert!(matches!(
        s.get_schedule("d", "s0").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_schedule("d", "s0").await,
        Err(StoreError::NotFound { .. })
    ));
    s.delete_deployment("d").await.expect("delete deployment");
    assert!(s.list_schedules(None).await.expect("list").is_empty());
}

async fn decision_inputs_are_shared_filtered_and_swept(store: Arc<dyn Store>) {
    let blob = |text: &str| Blob {
        digest: format!("sha256:{text}"),
        data: text.as_bytes().to_vec(),
    };
    let now = Utc::now();
    let record = |i: i64, pool: &str, mode: BindingMode, job: Option<Blob>| DecisionRecord {
        run_id: format!("run-{i}"),
        at: now - Duration::hours(10 - i),
        plugin: "gate".into(),
        world: "admission".into(),
        mode,
        version: 1,
        digest: "sha256:v1".into(),
        pool: pool.into(),
        outcome: serde_json::json!({"decision": "admit", "i": i}),
        context: blob(&format!("ctx-{i}")),
        stats: blob("stats"),
        binding: blob("binding"),
        job,
    };
    let records: Vec<DecisionRecord> = (0..6)
        .map(|i| {
            record(
                i,
                if i % 2 == 0 { "a" } else { "b" },
                if i == 5 {
                    BindingMode::Shadow
                } else {
                    BindingMode::Enforce
                },
                (i == 4).then(|| blob("job-4")),
            )
        })
        .collect();
    store.record_decisions(&records[..3]).await.expect("record");
    store.record_decisions(&records[3..]).await.expect("record");
    let size = store.decisions_size().await.expect("size");
    // 6 contexts, one stats, one binding, one job: shared parts once.
    assert_eq!((size.decisions, size.blobs), (6, 9));
    assert!(size.blob_bytes > 0);
    let row_bytes: usize = records
        .iter()
        .map(|r| {
            [&r.run_id, &r.plugin, &r.world, &r.digest, &r.pool]
                .iter()
                .map(|t| t.len())
                .sum::<usize>()
                + r.mode.as_str().len()
                + r.outcome.to_string().len()
                + r.context.digest.len()
                + r.stats.digest.len()
                + r.binding.digest.len()
                + r.job.as_ref().map_or(0, |j| j.digest.len())
                + 24
        })
        .sum();
    assert_eq!(size.row_bytes, row_bytes as u64);

    let query = |pool: Option<&str>, since: Option<chrono::DateTime<Utc>>, limit| DecisionQuery {
        plugin: "gate".into(),
        mode: BindingMode::Enforce,
        pool: pool.map(str::to_owned),
        since,
        limit,
    };
    let all = store
        .recorded_decisions(&query(None, None, 100))
        .await
        .expect("read");
    let runs: Vec<&str> = all.iter().map(|d| d.run_id.as_str()).collect();
    assert_eq!(
        runs,
        ["run-4", "run-3", "run-2", "run-1", "run-0"],
        "newest first, enforce only"
    );
    assert_eq!(all[0].job, Some(Some(b"job-4".to_vec())));
    assert_eq!(all[1].job, None);
    assert_eq!(all[0].context.as_deref(), Some(&b"ctx-4"[..]));
    assert_eq!(all[0].outcome["i"], 4);
    assert_eq!(
        all[0].at.timestamp_micros(),
        records[4].at.timestamp_micros()
    );
    let in_a = store
        .recorded_decisions(&query(Some("a"), None, 100))
        .await
        .expect("read");
    assert_eq!(in_a.len(), 3);
    assert!(in_a.iter().all(|d| d.pool == "a"));
    let recent = store
        .recorded_decisions(&query(None, Some(now - Duration::hours(7)), 100))
        .await
        .expect("read");
    assert_eq!(recent.len(), 2, "run-3 and run-4 are 7 and 6 hours old");
    let two = store
        .recorded_decisions(&query(None, None, 2))
        .await
        .expect("read");
    assert_eq!(two.len(), 2);
    let other = DecisionQuery {
        plugin: "other".into(),
        ..query(None, None, 100)
    };
    assert!(
        store
            .recorded_decisions(&other)
            .await
            .expect("read")
            .is_empty()
    );

    // Keep the newest 4: run-0 and run-1 go, and their contexts.
    let (rows, blobs) = store
        .sweep_decisions(4, now - Duration::days(30))
        .await
        .expect("sweep");
    assert_eq!((rows, blobs), (2, 2));
    // Then by age: older than 7.5 hours (run-2) goes.
    let (rows, blobs) = store
        .sweep_decisions(100, now - Duration::minutes(450))
        .await
        .expect("sweep");
    assert_eq!((rows, blobs), (1, 1));
    let size = store.decisions_size().await.expect("size");
    assert_eq!(
        (size.decisions, size.blobs),
        (3, 6),
        "run-3..5 with stats, binding, job"
    );
    // A part swept under a decision reads back as missing, never as another.
    let kept = store
        .recorded_decisions(&query(None, None, 100))
        .await
        .expect("read");
    assert_eq!(kept.len(), 2);
    assert!(
        kept.iter()
            .all(|d| d.stats.as_deref() == Some(&b"stats"[..]))
    );
    assert_eq!(
        store
            .sweep_decisions(100, now - Duration::days(1))
            .await
            .expect("sweep"),
        (0, 0)
    );
}

macro_rules! on_both_stores {
    ($(#[$attr:meta] $name:ident;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[$attr]
                async fn $name() {
                    let f = sqlite_fixture().await;
                    super::$name(f.store.clone()).await;
                }
            )*

            proptest! {
                #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
                #[test]
                fn random_interleavings_keep_limits_and_slots(
                    ops in proptest::collection::vec(op(), 1..60)
                ) {
                    run_ops_on(false, ops);
                }
            }
        }

        mod postgres {
            use super::*;
            $(
                #[$attr]
                async fn $name() {
                    let Some(f) = postgres_fixture(stringify!($name)).await else {
                        return;
                    };
                    super::$name(f.store.clone()).await;
                }
            )*

            #[test]
            fn random_interleavings_keep_limits_and_slots() {
                // Checked once, not per case: without a server there is
                // nothing to generate cases for.
                if pg_url("random_interleavings_keep_limits_and_slots").is_none() {
                    return;
                }
                proptest!(
                    ProptestConfig { cases: 24, ..ProptestConfig::default() },
                    |(ops in proptest::collection::vec(op(), 1..60))| {
                        run_ops_on(true, ops);
                    }
                );
            }
        }
    };
}

on_both_stores! {
    #[tokio::test] priority_then_time_then_arrival;
    #[tokio::test] equal_priorities_are_served_round_robin;
    #[tokio::test] a_full_queue_does_not_block_others_and_tags_do_not_block_queues;
    #[tokio::test] paused_pools_and_queues_hold_their_runs;
    #[tokio::test] future_runs_wait_for_their_time_and_late_runs_are_marked;
    #[tokio::test] a_deep_backlog_is_marked_late_in_batches_each_run_once;
    #[tokio::test] idempotency_key_returns_the_first_run;
    #[tokio::test] history_and_illegal_transitions;
    #[tokio::test] list_pages_newest_first_with_filters;
    #[tokio::test] tokens_are_found_by_hash_listed_and_revoked;
    #[tokio::test] server_secrets_are_set_once;
    #[tokio::test] every_resource_reads_back_and_deferred_runs_come_due;
    #[tokio::test] a_document_that_would_not_read_back_is_not_stored;
    #[tokio::test] repeated_decisions_fold_and_a_history_stays_bounded;
    #[tokio::test] a_large_release_moves_every_run_with_its_slots_history_and_counters;
    #[tokio::test] a_backlog_held_by_a_full_tag_is_passed_over_and_released_in_order;
    #[tokio::test] waiting_facts_read_what_the_walk_reads;
    #[tokio::test] decision_inputs_are_shared_filtered_and_swept;
    #[tokio::test] schedules_read_back_advance_only_forward_and_find_their_runs;
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    concurrent_callers_never_exceed_limits;
}

#[test]
fn a_database_away_or_full_is_an_outage_not_an_internal_error() {
    use super::Outage;
    for (code, message, want) in [
        ("13", "database or disk is full", Some(Outage::Full)),
        ("", "database or disk is full", Some(Outage::Full)),
        ("53100", "could not extend file", Some(Outage::Full)),
        ("08006", "connection failure", Some(Outage::Unavailable)),
        ("08001", "", Some(Outage::Unavailable)),
        (
            "57P01",
            "terminating connection due to administrator command",
            Some(Outage::Unavailable),
        ),
        (
            "57P03",
            "the database system is starting up",
            Some(Outage::Unavailable),
        ),
        ("53300", "too many connections", Some(Outage::Unavailable)),
        ("23505", "duplicate key", None),
        ("2067", "UNIQUE constraint failed", None),
    ] {
        assert_eq!(Outage::of_code(code, message), want, "{code} {message}");
    }
    let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    assert!(matches!(
        StoreError::from(refused),
        StoreError::Unavailable(_)
    ));
    assert!(matches!(
        StoreError::from(sqlx::Error::PoolTimedOut),
        StoreError::Unavailable(_)
    ));
    assert!(matches!(
        StoreError::from(sqlx::Error::RowNotFound),
        StoreError::Database { .. }
    ));
}

#[test]
fn a_store_error_names_its_operation_and_subject() {
    let e = StoreError::from(sqlx::Error::RowNotFound).during("get_run", Some("01ab".into()));
    let text = e.to_string();
    assert!(
        text.starts_with("database error in get_run (01ab): "),
        "{text}"
    );
    // The innermost context wins: an error already named keeps its name.
    let again = e.during("list_runs", None).to_string();
    assert_eq!(again, text);
    let corrupt = StoreError::Corrupt("tags: expected a list".into()).during("get_run", None);
    assert_eq!(
        corrupt.to_string(),
        "stored data is invalid: in get_run: tags: expected a list"
    );
}
