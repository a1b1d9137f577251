//! Run creation across SIGKILLs (the proof test of issue #13, group commit of
//! the store): 64 clients create runs with idempotency keys while the server
//! is SIGKILLed at random moments and restarted. Afterwards every create that
//! was answered exists exactly once, with the id it was answered with; no run
//! exists that was never asked for; every run completes. A create left
//! unanswered by a kill is sent again with the same key until answered, so a
//! run committed but not answered before a kill must come back with `200`
//! and its id; a run answered but lost by a kill shows as an answered key
//! with no run (or, if the key was sent again, a second id for it).
//!
//! One test on SQLite (the data directory's store), one on PostgreSQL
//! (`WEIR_PG_URL`; SKIPPED without it). Every random choice (the kill moments,
//! each client's pauses and repeats) comes from one seed, printed as
//! `create-kill seed: N` and taken from `WEIR_CREATE_KILL_SEED` when set. No
//! times are asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use weir_tests::harness::{WeirProcess, eventually_blocking, free_port};
use weir_tests::pg;

const CLIENTS: usize = 64;
const KILLS: usize = 4;
const POOL: &str = "create-kill";
const POOL_LIMIT: i32 = 8;
/// Each kill comes after this many more creates were answered since the
/// server was last ready: the clients run flat out, so some 64 creates are in
/// flight at every kill, and the number of runs (each a real process that
/// must drain) is bounded whatever the machine's speed.
const KILL_AFTER_ANSWERS: std::ops::Range<usize> = 60..300;
/// A client's pause (ms) between two keys, to vary the interleavings.
const PAUSE_MS: std::ops::Range<u64> = 0..10;
/// A client's pause (ms) before it sends an unanswered create again.
const RETRY_MS: std::ops::Range<u64> = 20..120;
/// How many keys each client sends after the last restart.
const KEYS_AFTER_LAST_KILL: usize = 2;
/// At most this many keys per client (some 15 are expected): a bound if
/// the killer stalls.
const MAX_KEYS_PER_CLIENT: usize = 100;
/// Of the answered keys, this share is sent once more (answered `200`, same
/// run).
const REPEAT: f64 = 0.1;
/// A create still unanswered after this long is left unanswered.
const GIVE_UP: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One variant at a time: two servers and 128 clients at once would crowd a
/// small CI machine for nothing.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_run_creation_loses_nothing_and_doubles_nothing_across_kills() {
    let _one = ONE_AT_A_TIME.lock().await;
    let seed = seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    create_through_kills(weir, seed, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_run_creation_loses_nothing_and_doubles_nothing_across_kills() {
    let Some(db) = pg::fresh_database(
        "create_kill::postgres_run_creation_loses_nothing_and_doubles_nothing_across_kills",
    ) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let seed = seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let weir =
        WeirProcess::start_with_args(dir.path(), None, free_port(), &["--database-url", &db.url]);
    create_through_kills(weir, seed, "postgres").await;
}

/// The seed: `WEIR_CREATE_KILL_SEED`, else a fresh one. Printed either way.
fn seed() -> u64 {
    let seed = std::env::var("WEIR_CREATE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("create-kill seed: {seed}");
    eprintln!("create-kill seed: {seed} (replay with WEIR_CREATE_KILL_SEED={seed})");
    seed
}

/// What the clients and the killer share.
struct Shared {
    http: Client,
    /// The server's URL: the same across restarts (same port).
    url: String,
    /// Creates answered so far (a repeat counts again): the killer waits for
    /// it to move, so that every kill lands in load.
    answered: AtomicUsize,
    /// Kills done, each followed by a restart to ready.
    kills: AtomicUsize,
}

/// One key as its client saw it.
#[derive(Debug, Default)]
struct KeyLog {
    /// Requests sent with this key.
    attempts: u32,
    /// Of these, those without an answer: no connection, a connection
    /// broken before the answer, a timeout, or a 5xx.
    unanswered: u32,
    /// Of the unanswered, those answered with a 5xx.
    server_errors: u32,
    /// Each answer: its status (201 or 200) and run id, in order.
    answers: Vec<(u16, String)>,
}

async fn create_through_kills(weir: WeirProcess, seed: u64, store: &str) {
    let started = Instant::now();
    let http = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("http client");
    let url = weir.url.clone();
    let pool = http
        .post(format!("{url}/api/v1/pools"))
        .json(&json!({"name": POOL, "type": "process", "concurrency_limit": POOL_LIMIT}))
        .send()
        .await
        .expect("create the pool");
    assert!(pool.status().is_success(), "create the pool: {pool:?}");

    let mut rng = StdRng::seed_from_u64(seed);
    let plan: Vec<usize> = (0..KILLS)
        .map(|_| rng.gen_range(KILL_AFTER_ANSWERS))
        .collect();
    let client_seeds: Vec<u64> = (0..CLIENTS).map(|_| rng.r#gen()).collect();
    println!("{store}: kills after {plan:?} more creates answered");

    let shared = Arc::new(Shared {
        http: http.clone(),
        url: url.clone(),
        answered: AtomicUsize::new(0),
        kills: AtomicUsize::new(0),
    });
    let clients: Vec<_> = client_seeds
        .into_iter()
        .enumerate()
        .map(|(c, s)| tokio::spawn(client(shared.clone(), c, s)))
        .collect();
    let killer = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || kill_during_load(weir, &plan, &shared))
    };
    // The killer owns the server until the last restart; it is dropped
    // (killed, with its jobs) at the end of this test.
    let (_weir, answered_between) = killer.await.expect("the killer");
    let mut sent: BTreeMap<String, KeyLog> = BTreeMap::new();
    for c in clients {
        sent.extend(c.await.expect("a client"));
    }
    let load_time = started.elapsed();

    // What the clients saw.
    let attempts: u32 = sent.values().map(|k| k.attempts).sum();
    let unanswered: u32 = sent.values().map(|k| k.unanswered).sum();
    let server_errors: u32 = sent.values().map(|k| k.server_errors).sum();
    let answered_keys = sent.values().filter(|k| !k.answers.is_empty()).count();
    let never_answered = sent.len() - answered_keys;
    let repeats: usize = sent
        .values()
        .map(|k| k.answers.len().saturating_sub(1))
        .sum();
    // Committed before a kill, its answer lost with the server: the key's
    // first answer is a 200.
    let committed_unanswered = sent
        .values()
        .filter(|k| k.answers.first().is_some_and(|(s, _)| *s == 200))
        .count();
    println!(
        "{store}: {} keys sent in {attempts} requests; {unanswered} requests unanswered \
         ({server_errors} with a 5xx); {answered_keys} keys answered, {never_answered} never; \
         {repeats} repeated answers; {committed_unanswered} keys committed before a kill \
         without an answer; answers between kills {answered_between:?}; load {load_time:?}",
        sent.len()
    );
    // Every kill landed in load: the killer waited for its count of answered
    // creates before each one (and failed the test if they did not come).
    assert_eq!(answered_between.len(), KILLS, "kills done vs planned");

    let mut wrong: Vec<String> = Vec::new();
    // Every answer for a key names one run; the first is a 201 unless an
    // earlier request with the key went unanswered; the later ones are 200s.
    let mut answered_ids: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, log) in &sent {
        let Some((first_status, first_id)) = log.answers.first() else {
            continue;
        };
        if log.answers.iter().any(|(_, id)| id != first_id) {
            wrong.push(format!(
                "{key} was answered with two runs: {:?}",
                log.answers
            ));
        }
        if *first_status == 200 && log.unanswered == 0 {
            wrong.push(format!(
                "{key}'s first request was answered 200 (a run existed already): {:?}",
                log.answers
            ));
        }
        if log.answers.iter().skip(1).any(|(s, _)| *s != 200) {
            wrong.push(format!(
                "{key} was answered 201 after it had been answered: {:?}",
                log.answers
            ));
        }
        if let Some(other) = answered_ids.insert(first_id, key) {
            wrong.push(format!(
                "{other} and {key} were answered with one run {first_id}"
            ));
        }
    }

    // What the store holds: every answered key exactly once, with its id;
    // nothing else.
    let runs = list_runs(&http, &url).await;
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for run in &runs {
        let id = run["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a run without an id: {run}"));
        if !ids.insert(id) {
            wrong.push(format!("run {id} is listed twice"));
        }
        match run["idempotency_key"].as_str() {
            Some(key) => by_key.entry(key).or_default().push(id),
            None => wrong.push(format!("run {id} has no idempotency key: {run}")),
        }
    }
    for (key, ids) in &by_key {
        if !sent.contains_key(*key) {
            wrong.push(format!("run(s) {ids:?} have the key {key}, never sent"));
        }
        if ids.len() > 1 {
            wrong.push(format!("key {key} has {} runs: {ids:?}", ids.len()));
        }
    }
    for (key, log) in &sent {
        let Some((_, answered)) = log.answers.first() else {
            continue;
        };
        match by_key.get(key.as_str()) {
            None => wrong.push(format!(
                "{key} was answered with run {answered} but no run has the key: {:?}",
                log.answers
            )),
            Some(found) if found.iter().any(|id| id != answered) => wrong.push(format!(
                "{key} was answered with run {answered} but the runs with the key are {found:?}"
            )),
            Some(_) => {}
        }
    }
    println!(
        "{store}: {} runs found for {} keys sent",
        runs.len(),
        sent.len()
    );
    assert!(
        wrong.is_empty(),
        "create-kill seed {seed} ({store}): {} problems:\n{}",
        wrong.len(),
        wrong
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(answered_keys > 0, "no create was answered");

    // Nothing is stuck: every run ends, and completes (`true` exits 0).
    let unfinished = "&state=Scheduled,Late,Pending,Running,Cancelling,AwaitingRetry";
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let page = get_json(&http, &format!("{url}/api/v1/runs?limit=20{unfinished}")).await;
        let stuck = page["items"].as_array().cloned().unwrap_or_default();
        if stuck.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let mut shown = Vec::new();
            for r in stuck.iter().take(5) {
                let id = r["id"].as_str().unwrap_or_default();
                let run = get_json(&http, &format!("{url}/api/v1/runs/{id}")).await;
                shown.push(format!("{run}"));
            }
            panic!(
                "create-kill seed {seed} ({store}): runs still unfinished after 300 s, \
                 e.g.:\n{}",
                shown.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = list_runs(&http, &url).await;
    let not_completed: Vec<String> = runs
        .iter()
        .filter(|r| r["state"] != "Completed")
        .map(|r| format!("{} {} {}", r["id"], r["state"], r["state_message"]))
        .collect();
    assert!(
        not_completed.is_empty(),
        "create-kill seed {seed} ({store}): {} runs did not complete:\n{}",
        not_completed.len(),
        not_completed
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "{store}: create-kill seed {seed}: {} runs, all completed; {:?} in all",
        runs.len(),
        started.elapsed()
    );
}

/// One client: keys `c{client}-{n}`, each sent until answered (the same key
/// again after a kill), some sent once more, with pauses between keys;
/// stops `KEYS_AFTER_LAST_KILL` keys after it sees the last restart.
async fn client(shared: Arc<Shared>, client: usize, seed: u64) -> BTreeMap<String, KeyLog> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = BTreeMap::new();
    let mut stop_at = MAX_KEYS_PER_CLIENT;
    for n in 0.. {
        if shared.kills.load(Ordering::SeqCst) == KILLS {
            stop_at = stop_at.min(n + KEYS_AFTER_LAST_KILL);
        }
        if n >= stop_at {
            break;
        }
        let key = format!("c{client}-{n}");
        let mut log = KeyLog::default();
        let sends = if rng.gen_bool(REPEAT) { 2 } else { 1 };
        for _ in 0..sends {
            send_until_answered(&shared, &key, &mut log, &mut rng).await;
        }
        sent.insert(key, log);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(PAUSE_MS))).await;
    }
    sent
}

async fn send_until_answered(shared: &Shared, key: &str, log: &mut KeyLog, rng: &mut StdRng) {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        log.attempts += 1;
        match create(shared, key).await {
            Ok(answer) => {
                log.answers.push(answer);
                shared.answered.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(server_error) => {
                log.unanswered += 1;
                log.server_errors += u32::from(server_error);
                if Instant::now() > deadline {
                    eprintln!("{key}: no answer in {GIVE_UP:?}; left unanswered");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(RETRY_MS))).await;
            }
        }
    }
}

/// Creates the run of `key`: its status (201 or 200) and id, or `Err`
/// (whether it was a 5xx) when there was no answer. Any other answer is a
/// refusal of a valid request, and fails the test.
async fn create(shared: &Shared, key: &str) -> Result<(u16, String), bool> {
    let body = json!({"pool": POOL, "job": {"command": "true"}, "idempotency_key": key});
    let resp = shared
        .http
        .post(format!("{}/api/v1/runs", shared.url))
        .json(&body)
        .send()
        .await
        .map_err(|_| false)?;
    let status = resp.status();
    let text = resp.text().await.map_err(|_| false)?;
    if status.is_server_error() {
        eprintln!("create {key}: {status} {text}");
        return Err(true);
    }
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "create {key} refused: {status} {text}"
    );
    let run: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("create {key}: {status} with no run ({e}): {text}"));
    assert_eq!(run["idempotency_key"], key, "create {key} answered {run}");
    let id = run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("create {key}: a run without an id: {run}"));
    Ok((status.as_u16(), id.to_owned()))
}

/// The killer, on a blocking thread: for each planned count, waits until
/// that many more creates were answered since the server was last ready,
/// then SIGKILLs it and starts it again (to ready). Returns the server and
/// how many creates were answered between the kills.
fn kill_during_load(
    mut weir: WeirProcess,
    plan: &[usize],
    shared: &Shared,
) -> (WeirProcess, Vec<usize>) {
    let mut answered_between = Vec::new();
    let mut since = 0;
    for (i, more) in plan.iter().enumerate() {
        eventually_blocking(
            &format!("{more} more creates answered before kill {}", i + 1),
            Duration::from_secs(60),
            || (shared.answered.load(Ordering::SeqCst) >= since + more).then_some(()),
        );
        answered_between.push(shared.answered.load(Ordering::SeqCst) - since);
        weir.restart();
        since = shared.answered.load(Ordering::SeqCst);
        shared.kills.store(i + 1, Ordering::SeqCst);
        eprintln!("kill {} done; server ready again", i + 1);
    }
    (weir, answered_between)
}

async fn get_json(http: &Client, url: &str) -> Value {
    let resp = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(status.is_success(), "GET {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

/// Every run, page by page (newest first).
async fn list_runs(http: &Client, url: &str) -> Vec<Value> {
    let mut runs = Vec::new();
    let mut cursor: Option<String> = None;
    // Far more pages than the runs this test can create.
    for _ in 0..100 {
        let mut page_url = format!("{url}/api/v1/runs?limit=1000");
        if let Some(c) = &cursor {
            page_url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(http, &page_url).await;
        let items = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("a page without items: {page}"));
        runs.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_ne!(cursor.as_deref(), Some(next), "the cursor did not move");
                cursor = Some(next.to_owned());
            }
            None => return runs,
        }
    }
    panic!("more than 100 pages of runs");
}
