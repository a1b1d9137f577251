//! Why a run waits (issue #15), end to end: the real `weir` binary as
//! server and as client, each cause built for real and read back through
//! `weir run inspect` (the API's `waiting` object, and its words), and the
//! explanation followed as each cause goes away.

use serde_json::Value;
use weir_tests::harness::WeirProcess;

/// The run's `waiting`, checked against the `Waiting` schema of the
/// OpenAPI document the server publishes (null is checked to be null only
/// where the run does not wait).
fn checked(run: &Value) -> &Value {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let doc: Value = serde_json::from_str(include_str!("../../host/src/api/openapi.json"))
            .expect("openapi.json is JSON");
        let schema = doc["components"]["schemas"]["Waiting"].clone();
        assert!(schema.is_object(), "openapi.json has a Waiting schema");
        jsonschema::validator_for(&schema).expect("the Waiting schema compiles")
    });
    let waiting = &run["waiting"];
    if run["state"] == "Scheduled" || run["state"] == "Late" || run["state"] == "AwaitingRetry" {
        let errors: Vec<String> = validator
            .iter_errors(waiting)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{waiting} does not match the schema: {errors:?}"
        );
    } else {
        assert!(waiting.is_null(), "a run that does not wait: {run}");
    }
    waiting
}

fn holds(run: &Value) -> Vec<Value> {
    checked(run)["holds"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn hold<'a>(holds: &'a [Value], kind: &str, scope: Option<&str>) -> Option<&'a Value> {
    holds
        .iter()
        .find(|h| h["kind"] == kind && scope.is_none_or(|s| h["scope"] == s))
}

/// Pool w's and its queue default's waiting runs by reason, as `weir pool
/// ls` and `weir queue ls` read them; each is checked to sum to the queued
/// count, and the two to agree (w has one queue).
fn waiting_counts(weir: &WeirProcess) -> Value {
    let first = |list: Value| -> Value {
        let items = list.get("items").cloned().unwrap_or(list);
        items
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| i["name"] == "w" || i["name"] == "default")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no w/default in {items}"))
    };
    let pool = first(weir.cli_json(&["pool", "ls"]));
    let queue = first(weir.cli_json(&["queue", "ls", "--pool", "w"]));
    assert_eq!(pool["waiting"], queue["waiting"], "{pool} {queue}");
    let sum: u64 = queue["waiting"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(Some(sum), queue["queued_runs"].as_u64(), "{queue}");
    queue["waiting"].clone()
}

/// The non-zero counts of `waiting_counts`.
fn nonzero(waiting: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = waiting
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn counts(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
    out.sort();
    out
}

#[test]
fn every_waiting_run_says_why_and_the_reason_follows_its_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    weir.cli_json(&[
        "pool",
        "create",
        "w",
        "--type",
        "process",
        "--concurrency-limit",
        "1",
    ]);
    weir.cli_json(&["limit", "create", "gpu", "1"]);
    weir.cli_json(&[
        "deployment",
        "create",
        "sleeper",
        "--pool",
        "w",
        "--job-variables",
        r#"{"command": "sleep 60"}"#,
    ]);
    weir.cli_json(&[
        "deployment",
        "create",
        "quick",
        "--pool",
        "w",
        "--job-variables",
        r#"{"command": "true"}"#,
    ]);

    // The holder takes the pool's one slot and the gpu tag's one slot.
    let holder = weir.create_run(&["sleeper", "--tag", "gpu"]);
    let running = weir.wait_state(&holder, &["Running"]);
    assert!(checked(&running).is_null(), "a running run does not wait");

    // A: first in its queue, held by the full pool.
    let a = weir.create_run(&["quick"]);
    let run = weir.inspect(&a);
    assert_eq!(run["state"], "Scheduled");
    let w = checked(&run);
    assert_eq!(w["position"]["in_queue"], 1, "{w}");
    assert_eq!(w["position"]["in_pool"], 1, "{w}");
    assert_eq!(w["position"]["at_least"], false, "{w}");
    let hs = holds(&run);
    let pool_full = hold(&hs, "limit", Some("pool")).expect("the pool's limit holds A");
    assert_eq!(pool_full["name"], "w");
    assert_eq!(pool_full["used"], 1);
    assert_eq!(pool_full["limit"], 1);
    assert_eq!(pool_full["holders"], serde_json::json!([holder]));
    assert!(
        hold(&hs, "turn", None).is_none(),
        "nothing is ahead of A: {w}"
    );
    let summary = w["summary"].as_str().expect("summary");
    assert!(
        summary.contains("pool w is full (1/1 slots)") && summary.contains(&holder),
        "{summary}"
    );

    // B: behind A.
    let b = weir.create_run(&["quick"]);
    let run = weir.inspect(&b);
    assert_eq!(run["waiting"]["position"]["in_queue"], 2);
    let hs = holds(&run);
    let turn = hold(&hs, "turn", None).expect("B waits its turn");
    assert_eq!(turn["ahead_in_queue"], 1);
    assert_eq!(turn["ahead_in_pool"], 1);

    // T: carries the full gpu tag too.
    let t = weir.create_run(&["quick", "--tag", "gpu"]);
    let hs = holds(&weir.inspect(&t));
    let tag_full = hold(&hs, "limit", Some("tag")).expect("the gpu tag holds T");
    assert_eq!(tag_full["name"], "gpu");
    assert_eq!(tag_full["holders"], serde_json::json!([holder]));

    // F: scheduled in an hour; not due, so no position.
    let f = weir.create_run(&["quick", "--in", "3600"]);
    let run = weir.inspect(&f);
    assert!(run["waiting"]["position"].is_null(), "{run}");
    let first = &holds(&run)[0];
    assert_eq!(first["kind"], "scheduled");
    assert_eq!(first["until"], run["scheduled_at"]);

    // The queue's and the pool's counts by reason: A, B and T held by the
    // full pool, F by its time.
    assert_eq!(
        nonzero(&waiting_counts(&weir)),
        counts(&[("limit", 3), ("scheduled", 1)])
    );
    let out = weir.cli(&["queue", "ls", "--pool", "w"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 limit, 1 scheduled"), "{text}");

    // The words, as `weir run inspect` prints them.
    let out = weir.cli(&["run", "inspect", &b]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Waiting: pool w is full (1/1 slots)")
            && text.contains("position: 2 in its queue, 2 in its pool's release order")
            && text.contains("- 1 due run(s) ahead of it in its queue"),
        "{text}"
    );

    // A paused queue shows, and goes when resumed.
    weir.cli_json(&["queue", "pause", "default", "--pool", "w"]);
    let hs = holds(&weir.inspect(&a));
    let paused = hold(&hs, "paused", Some("queue")).expect("the paused queue holds A");
    assert_eq!(paused["name"], "w/default");
    assert_eq!(
        nonzero(&waiting_counts(&weir)),
        counts(&[("paused", 3), ("scheduled", 1)])
    );
    weir.cli_json(&["queue", "resume", "default", "--pool", "w"]);
    assert!(hold(&holds(&weir.inspect(&a)), "paused", None).is_none());

    // The pool's limit goes: A and B run; T is still held, by the tag only.
    weir.cli_json(&["pool", "set-concurrency-limit", "w", "10"]);
    weir.wait_state(&a, &["Completed"]);
    weir.wait_state(&b, &["Completed"]);
    let run = weir.inspect(&t);
    assert_eq!(run["state"], "Scheduled", "T waits for the gpu tag");
    let hs = holds(&run);
    assert!(hold(&hs, "limit", Some("pool")).is_none(), "{hs:?}");
    assert!(hold(&hs, "limit", Some("tag")).is_some(), "{hs:?}");
    assert_eq!(
        nonzero(&waiting_counts(&weir)),
        counts(&[("limit", 1), ("scheduled", 1)])
    );

    // The tag's holder ends: T runs.
    weir.cli(&["run", "cancel", &holder]);
    weir.wait_state(&t, &["Completed"]);

    // A retry delay.
    let r = weir.create_run(&[
        "quick",
        "--job-variables",
        r#"{"command": "false"}"#,
        "--retries",
        "1",
        "--retry-delay",
        "3600",
    ]);
    let run = weir.wait_state(&r, &["AwaitingRetry"]);
    let first = &holds(&run)[0];
    assert_eq!(first["kind"], "retry", "{run}");
    assert_eq!(first["next_attempt"], 2);
    assert_eq!(
        first["text"]
            .as_str()
            .map(|t| t.starts_with("attempt 1 failed; attempt 2 starts after")),
        Some(true),
        "{first}"
    );
    assert_eq!(first["until"], run["scheduled_at"]);
    assert_eq!(
        nonzero(&waiting_counts(&weir)),
        counts(&[("retry", 1), ("scheduled", 1)])
    );
}
