//! Load (issue #6): 64 concurrent clients submit runs with idempotency keys,
//! some twice, while runs complete and some are cancelled. Nothing is lost,
//! nothing is doubled, no limit is ever exceeded (checked from each run's
//! recorded history), and no slot is left held. No times are asserted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Mutex;
use weir_tests::api::start;
use weir_tests::harness::{entered, eventually, most_at_once};

const CLIENTS: usize = 64;
const KEYS: usize = 10_000;
const POOL_LIMIT: i32 = 8;
const TAG_LIMIT: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_idempotent_submissions_lose_nothing_double_nothing_and_keep_limits() {
    let api = Arc::new(start().await);
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "load", "type": "process", "concurrency_limit": POOL_LIMIT})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/limits",
        Some(json!({"tag": "scarce", "limit": TAG_LIMIT})),
    )
    .await;

    // key → every id the API answered with for it.
    let answers: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let api = api.clone();
        let answers = answers.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= KEYS {
                    return;
                }
                let key = format!("key-{i}");
                let tags = if i.is_multiple_of(3) {
                    json!(["scarce"])
                } else {
                    json!([])
                };
                let body = json!({"pool": "load", "job": {"command": "true"},
                                  "idempotency_key": key, "tags": tags});
                // Every fifth key is sent twice, the second racing the first
                // on another connection.
                let times = if i.is_multiple_of(5) { 2 } else { 1 };
                let sends =
                    (0..times).map(|_| api.send("POST", "/api/v1/runs", Some(body.clone())));
                for (status, run) in futures::future::join_all(sends).await {
                    assert!(status.is_success(), "{key}: {status} {run}");
                    let id = run["id"].as_str().expect("id").to_owned();
                    answers
                        .lock()
                        .await
                        .entry(key.clone())
                        .or_default()
                        .push(id.clone());
                    // Every seventh run is cancelled. A 409 only if it had
                    // ended, or its twin's cancel came first: "already ...".
                    if i.is_multiple_of(7) {
                        let (status, body) = api
                            .send("POST", &format!("/api/v1/runs/{id}/cancel"), None)
                            .await;
                        let ended = status == reqwest::StatusCode::CONFLICT
                            && body["detail"]
                                .as_str()
                                .is_some_and(|d| d.contains("is already"));
                        assert!(status.is_success() || ended, "cancel {id}: {status} {body}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }

    // None doubled: one id per key, whatever the races.
    let answers = answers.lock().await.clone();
    assert_eq!(answers.len(), KEYS);
    let mut ids = BTreeMap::new();
    for (key, got) in &answers {
        assert!(
            got.iter().all(|id| id == &got[0]),
            "{key} got two runs: {got:?}"
        );
        ids.insert(got[0].clone(), key.clone());
    }
    assert_eq!(ids.len(), KEYS, "two keys share a run");

    // None lost: every run exists and ends Completed or Cancelled.
    let mut pool_spans = Vec::new();
    let mut tag_spans = Vec::new();
    for (id, key) in &ids {
        let run = eventually(
            &format!("run {id} ({key}) to end"),
            Duration::from_secs(900),
            || async {
                let run = api.ok("GET", &format!("/api/v1/runs/{id}"), None).await;
                matches!(
                    run["state"].as_str(),
                    Some("Completed" | "Failed" | "Crashed" | "Cancelled")
                )
                .then_some(run)
            },
        )
        .await;
        assert!(
            matches!(run["state"].as_str(), Some("Completed" | "Cancelled")),
            "{key}: {run}"
        );
        if let Some(start) = entered(&run, &["Pending"]) {
            let end = entered(&run, &["Completed", "Cancelled", "Failed", "Crashed"])
                .expect("an ended run has its end in its history");
            pool_spans.push((start, end));
            if run["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("scarce")))
            {
                tag_spans.push((start, end));
            }
        }
    }
    assert!(
        pool_spans.len() > KEYS / 2,
        "most runs ran: {}",
        pool_spans.len()
    );
    assert!(
        most_at_once(&pool_spans) <= POOL_LIMIT,
        "pool limit {POOL_LIMIT} exceeded: {}",
        most_at_once(&pool_spans)
    );
    assert!(
        most_at_once(&tag_spans) <= TAG_LIMIT,
        "tag limit {TAG_LIMIT} exceeded: {}",
        most_at_once(&tag_spans)
    );
    let listed = api.ok("GET", "/api/v1/runs?limit=1000", None).await;
    assert!(listed["items"].as_array().is_some_and(|a| a.len() == 1000));

    // No slot left held.
    let pool = api.ok("GET", "/api/v1/pools/load", None).await;
    assert_eq!(pool["active_runs"], 0, "{pool}");
    assert_eq!(pool["queued_runs"], 0, "{pool}");
    let limit = api.ok("GET", "/api/v1/limits/scarce", None).await;
    assert_eq!(limit["active_slots"], 0, "{limit}");
    api.server.shutdown();
}
