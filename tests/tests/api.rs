//! The HTTP API against a real server on a loopback port with a real SQLite
//! store and the real process backend.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_tests::api::start;

#[tokio::test]
async fn pool_queue_limit_deployment_crud() {
    let api = start().await;
    let (status, pool) = api
        .send(
            "POST",
            "/api/v1/pools",
            Some(json!({"name": "local", "type": "process", "concurrency_limit": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    assert_eq!(pool["concurrency_limit"], 2);
    assert_eq!(pool["type"], "process");
    assert!(pool["base_job_template"]["job_configuration"].is_object());

    let queues = api.ok("GET", "/api/v1/pools/local/queues", None).await;
    assert_eq!(
        queues["items"][0]["name"], "default",
        "every pool has a default queue"
    );

    let (status, q) = api
        .send(
            "POST",
            "/api/v1/pools/local/queues",
            Some(json!({"name": "urgent", "priority": 1, "concurrency_limit": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{q}");
    let q = api
        .ok(
            "PATCH",
            "/api/v1/pools/local/queues/urgent",
            Some(json!({"concurrency_limit": null, "priority": 3})),
        )
        .await;
    assert_eq!(q["concurrency_limit"], Value::Null);
    assert_eq!(q["priority"], 3);
    let q = api
        .ok("POST", "/api/v1/pools/local/queues/urgent/pause", None)
        .await;
    assert_eq!(q["paused"], true);
    let q = api
        .ok("POST", "/api/v1/pools/local/queues/urgent/resume", None)
        .await;
    assert_eq!(q["paused"], false);

    let p = api
        .ok(
            "PATCH",
            "/api/v1/pools/local",
            Some(json!({"concurrency_limit": null})),
        )
        .await;
    assert_eq!(p["concurrency_limit"], Value::Null);
    let p = api.ok("POST", "/api/v1/pools/local/pause", None).await;
    assert_eq!(p["paused"], true);
    api.ok("POST", "/api/v1/pools/local/resume", None).await;

    let (status, l) = api
        .send(
            "POST",
            "/api/v1/limits",
            Some(json!({"tag": "db", "limit": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{l}");
    assert_eq!(l["active_slots"], 0);
    let (status, _) = api
        .send(
            "POST",
            "/api/v1/limits",
            Some(json!({"tag": "db", "limit": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let l = api
        .ok("PATCH", "/api/v1/limits/db", Some(json!({"limit": 1})))
        .await;
    assert_eq!(l["limit"], 1);

    let (status, d) = api
        .send(
            "POST",
            "/api/v1/deployments",
            Some(json!({
                "name": "hello", "pool": "local", "queue": "urgent",
                "job_variables": {"command": "echo hi", "env": {"A": "1"}},
                "tags": ["db"], "parameters": {"x": 1},
                "retries": {"max": 1, "delay_seconds": 0}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    let rendered = api
        .ok(
            "POST",
            "/api/v1/deployments/hello/render",
            Some(json!({"job_variables": {"env": {"B": "2"}}})),
        )
        .await;
    let job = &rendered["job_configuration"];
    assert_eq!(job["command"], json!(["echo", "hi"]));
    assert_eq!(job["env"]["A"], "1");
    assert_eq!(job["env"]["B"], "2", "run env merges key by key");
    assert!(job["env"]["WEIR_RUN_ID"].is_string());
    assert_eq!(job["env"]["WEIR_API_URL"], api.base);

    // Deleting in use is refused; in order it works.
    let (status, e) = api.send("DELETE", "/api/v1/pools/local", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    let (status, _) = api
        .send("DELETE", "/api/v1/pools/local/queues/default", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api.send("DELETE", "/api/v1/deployments/hello", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .send("DELETE", "/api/v1/pools/local/queues/urgent", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.send("DELETE", "/api/v1/limits/db", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.send("DELETE", "/api/v1/pools/local", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.send("GET", "/api/v1/pools/local", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.server.shutdown();
}

#[tokio::test]
async fn a_run_goes_from_submit_to_completed_with_history_and_logs() {
    let api = start().await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "local", "type": "process"})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "echo", "pool": "local",
            "job_variables": {"command": "sh -c 'echo \"hello $WHO\"; echo run=$WEIR_RUN_ID'", "env": {"WHO": "weir"}}})),
    )
    .await;
    let (status, run) = api
        .send(
            "POST",
            "/api/v1/runs",
            Some(json!({"deployment": "echo", "tags": ["t1"], "parameters": {"p": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_str().expect("id").to_owned();
    assert_eq!(run["pool"], "local");
    assert_eq!(run["queue"], "default");
    assert_eq!(run["deployment"], "echo");
    assert_eq!(run["tags"], json!(["t1"]));
    assert!(uuid::Uuid::parse_str(&id).expect("uuid").get_version_num() == 7);

    let done = api
        .wait_state(&id, &["Completed", "Failed", "Crashed"])
        .await;
    assert_eq!(done["state"], "Completed", "{done}");
    let states: Vec<&str> = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, vec!["Scheduled", "Pending", "Running", "Completed"]);
    for key in ["created_at", "started_at", "ended_at"] {
        let t = done[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"));
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{key}={t}: {e}"));
    }
    let logs = api
        .http
        .get(api.url(&format!("/api/v1/runs/{id}/logs")))
        .send()
        .await
        .expect("logs")
        .text()
        .await
        .expect("text");
    assert_eq!(logs, format!("hello weir\nrun={id}\n"));

    // The list filters find it.
    let by_tag = api
        .ok("GET", "/api/v1/runs?tag=t1&state=Completed", None)
        .await;
    assert_eq!(by_tag["items"].as_array().map(Vec::len), Some(1));
    let none = api.ok("GET", "/api/v1/runs?state=Failed", None).await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));

    // Metrics report it.
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("weir_runs{state=\"Completed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_scheduling_latency_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_queue_depth{pool=\"local\",queue=\"default\"} 0"),
        "{metrics}"
    );
    api.server.shutdown();
}

#[tokio::test]
async fn failure_retries_idempotency_cancel_and_follow() {
    let api = start().await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "local", "type": "process"})),
    )
    .await;
    // A raw job that fails, retried once.
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(
                json!({"pool": "local", "job": {"command": "sh -c 'echo try; exit 3'"},
                        "retries": {"max": 1, "delay_seconds": 0}}),
            ),
        )
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    let done = api
        .wait_state(&id, &["Failed", "Completed", "Crashed"])
        .await;
    assert_eq!(done["state"], "Failed");
    assert_eq!(done["exit_code"], 3);
    assert_eq!(done["attempt"], 2);
    let states: Vec<&str> = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        states,
        vec![
            "Scheduled",
            "Pending",
            "Running",
            "AwaitingRetry",
            "Pending",
            "Running",
            "Failed"
        ]
    );

    // Idempotency: the same key gives the same run, 200 the second time.
    let body = json!({"pool": "local", "job": {"command": "true"}, "idempotency_key": "abc"});
    let (s1, r1) = api.send("POST", "/api/v1/runs", Some(body.clone())).await;
    let (s2, r2) = api.send("POST", "/api/v1/runs", Some(body)).await;
    assert_eq!(s1, StatusCode::CREATED);
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(r1["id"], r2["id"]);

    // Cancel a running job; follow its logs until it ends.
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(
                json!({"pool": "local", "job": {"command": "sh -c 'echo started; exec sleep 60'"}}),
            ),
        )
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    api.wait_state(&id, &["Running"]).await;
    let follower = {
        let http = api.http.clone();
        let url = api.url(&format!("/api/v1/runs/{id}/logs?follow=true"));
        tokio::spawn(async move { http.get(url).send().await.expect("follow").text().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = api
        .ok("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    assert!(matches!(
        cancelled["state"].as_str(),
        Some("Cancelling" | "Cancelled")
    ));
    let done = api
        .wait_state(&id, &["Cancelled", "Crashed", "Completed", "Failed"])
        .await;
    assert_eq!(done["state"], "Cancelled", "{done}");
    let followed = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("follow ends when the run ends")
        .expect("join")
        .expect("text");
    assert_eq!(followed, "started\n");
    let (status, e) = api
        .send("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");

    // A scheduled-later run is cancelled at once.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "job": {"command": "true"}, "scheduled_at": later})),
        )
        .await;
    let id = run["id"].as_str().expect("id");
    let c = api
        .ok("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    assert_eq!(c["state"], "Cancelled");
    api.server.shutdown();
}

/// A cancel is accepted whatever moment of a run's life it lands in:
/// waiting, released but not yet launched, being launched, or Running.
/// Every such run ends Cancelled.
#[tokio::test]
async fn a_cancel_is_accepted_at_any_moment_after_submit() {
    let api = start().await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "local", "type": "process"})),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..40u64 {
        let run = api
            .ok(
                "POST",
                "/api/v1/runs",
                Some(json!({"pool": "local", "job": {"command": "sleep 60"}})),
            )
            .await;
        let id = run["id"].as_str().expect("id").to_owned();
        // From at once to a little after the launch.
        tokio::time::sleep(Duration::from_millis(i % 10 * 15)).await;
        let (status, body) = api
            .send("POST", &format!("/api/v1/runs/{id}/cancel"), None)
            .await;
        assert!(status.is_success(), "cancel {i} answered {status}: {body}");
        ids.push(id);
    }
    let mut ended_in = std::collections::BTreeMap::new();
    for id in &ids {
        let done = api
            .wait_state(id, &["Cancelled", "Crashed", "Completed", "Failed"])
            .await;
        assert_eq!(done["state"], "Cancelled", "{done:#}");
        let states: Vec<&str> = done["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["state"].as_str().unwrap_or(""))
            .collect();
        *ended_in.entry(states.join(" > ")).or_insert(0) += 1;
    }
    // Which paths were taken (shown with --nocapture): the point is that a
    // cancel in any of them is accepted, not that each one was hit.
    eprintln!("cancelled runs by history: {ended_in:#?}");
    api.server.shutdown();
}

/// `levels` nested arrays (within what serde_json itself parses).
fn nested(levels: usize) -> Value {
    (0..levels).fold(Value::Null, |v, _| Value::Array(vec![v]))
}

#[tokio::test]
async fn oversized_bodies_say_the_limit() {
    let api = start().await;
    let big = vec![b' '; (1 << 20) + 1];
    let (status, e) = api.raw("POST", "/api/v1/pools", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["error"], "too_large");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 1048576 bytes (1 MiB)")),
        "{e}"
    );
    let upload = vec![0u8; (32 << 20) + 4096];
    let (status, e) = api.raw("POST", "/api/v1/plugins/big", upload).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("a plugin upload may be at most 33554432 bytes (32 MiB)")),
        "{e}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let api = start().await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "local", "type": "process", "concurrency_limit": 1})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "d", "pool": "local", "job_variables": {"command": "true"}})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/limits",
        Some(json!({"tag": "x", "limit": 1})),
    )
    .await;
    let before = api.snapshot().await;

    let unknown = uuid::Uuid::now_v7();
    // (method, path, body, expected status, expected field)
    let cases: Vec<(&str, String, Value, u16, Option<&str>)> = vec![
        // Documents nested past 64 levels, wherever they are: the field.
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "p2", "type": "process", "base_job_template": nested(80)}),
            422,
            Some("base_job_template"),
        ),
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d2", "pool": "local", "job_variables": {"env": nested(70)}}),
            422,
            Some("job_variables"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "parameters": {"p": nested(100)}}),
            422,
            Some("parameters"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"pool": "local", "job": {"command": "true", "x": nested(120)}}),
            422,
            Some("job"),
        ),
        // Pools.
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "Bad_Name", "type": "process"}),
            422,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "p2", "type": "docker"}),
            422,
            Some("type"),
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "p2", "type": "process", "concurrency_limit": -1}),
            422,
            Some("concurrency_limit"),
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "p2", "type": "process", "concurrency_limit": "2"}),
            422,
            Some("concurrency_limit"),
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "p2", "type": "process", "colour": 1}),
            422,
            Some("colour"),
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"type": "process"}),
            422,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "p2", "type": "process", "base_job_template": {"job_configuration": {}}}),
            422,
            None,
        ),
        (
            "POST",
            "/api/v1/pools".into(),
            json!({"name": "local", "type": "process"}),
            409,
            Some("name"),
        ),
        (
            "PATCH",
            "/api/v1/pools/local".into(),
            json!({"concurrency_limit": true}),
            422,
            Some("concurrency_limit"),
        ),
        (
            "PATCH",
            "/api/v1/pools/nope".into(),
            json!({"paused": true}),
            404,
            None,
        ),
        (
            "POST",
            "/api/v1/pools/nope/pause".into(),
            Value::Null,
            404,
            None,
        ),
        (
            "DELETE",
            "/api/v1/pools/nope".into(),
            Value::Null,
            404,
            None,
        ),
        (
            "GET",
            "/api/v1/base-job-templates/docker".into(),
            Value::Null,
            400,
            Some("type"),
        ),
        // Queues.
        (
            "POST",
            "/api/v1/pools/local/queues".into(),
            json!({"name": "q", "priority": 0}),
            422,
            Some("priority"),
        ),
        (
            "POST",
            "/api/v1/pools/local/queues".into(),
            json!({"name": "q", "priority": "high"}),
            422,
            Some("priority"),
        ),
        (
            "POST",
            "/api/v1/pools/local/queues".into(),
            json!({"name": "default"}),
            409,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/pools/nope/queues".into(),
            json!({"name": "q"}),
            404,
            None,
        ),
        (
            "PATCH",
            "/api/v1/pools/local/queues/nope".into(),
            json!({"priority": 2}),
            404,
            None,
        ),
        (
            "GET",
            "/api/v1/pools/local/queues/nope".into(),
            Value::Null,
            404,
            None,
        ),
        // Limits.
        (
            "POST",
            "/api/v1/limits".into(),
            json!({"tag": "a b", "limit": 1}),
            422,
            Some("tag"),
        ),
        (
            "POST",
            "/api/v1/limits".into(),
            json!({"tag": "y"}),
            422,
            Some("limit"),
        ),
        (
            "PATCH",
            "/api/v1/limits/nope".into(),
            json!({"limit": 1}),
            404,
            None,
        ),
        (
            "DELETE",
            "/api/v1/limits/nope".into(),
            Value::Null,
            404,
            None,
        ),
        // Deployments.
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d2", "pool": "nope"}),
            422,
            Some("pool"),
        ),
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d2", "pool": "local", "queue": "nope"}),
            422,
            Some("queue"),
        ),
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d2", "pool": "local", "job_variables": {"imagee": "x"}}),
            422,
            Some("job_variables.imagee"),
        ),
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d2", "pool": "local", "job_variables": {"command": "x", "timeout_seconds": "soon"}}),
            422,
            Some("job_variables.timeout_seconds"),
        ),
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d2", "pool": "local", "tags": "x"}),
            422,
            Some("tags"),
        ),
        (
            "POST",
            "/api/v1/deployments".into(),
            json!({"name": "d", "pool": "local", "job_variables": {"command": "true"}}),
            409,
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/deployments/nope/render".into(),
            json!({}),
            404,
            None,
        ),
        (
            "POST",
            "/api/v1/deployments/d/render".into(),
            json!({"job_variables": {"nope": 1}}),
            422,
            Some("job_variables.nope"),
        ),
        (
            "DELETE",
            "/api/v1/deployments/nope".into(),
            Value::Null,
            404,
            None,
        ),
        // Runs.
        (
            "POST",
            "/api/v1/runs".into(),
            json!({}),
            422,
            Some("deployment"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "nope"}),
            422,
            Some("deployment"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "queue": "nope"}),
            422,
            Some("queue"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "job_variables": {"nope": 1}}),
            422,
            Some("job_variables.nope"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "tags": [""]}),
            422,
            Some("tags[0]"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "scheduled_at": "tomorrow"}),
            422,
            Some("scheduled_at"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "parent_run_id": unknown}),
            422,
            Some("parent_run_id"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "parent_run_id": "x"}),
            422,
            Some("parent_run_id"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "pool": "other"}),
            422,
            Some("pool"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"pool": "local"}),
            422,
            Some("job"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"pool": "local", "job": {"command": ""}}),
            422,
            Some("job_configuration.command"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"pool": "local", "job": {"command": "true"}, "job_variables": {"a": 1}}),
            422,
            Some("job_variables"),
        ),
        (
            "POST",
            "/api/v1/runs".into(),
            json!({"deployment": "d", "retries": {"max": "x"}}),
            422,
            Some("retries.max"),
        ),
        (
            "GET",
            format!("/api/v1/runs/{unknown}"),
            Value::Null,
            404,
            None,
        ),
        (
            "GET",
            "/api/v1/runs/not-a-uuid".into(),
            Value::Null,
            400,
            Some("id"),
        ),
        (
            "POST",
            format!("/api/v1/runs/{unknown}/cancel"),
            Value::Null,
            404,
            None,
        ),
        (
            "GET",
            format!("/api/v1/runs/{unknown}/logs"),
            Value::Null,
            404,
            None,
        ),
        (
            "GET",
            "/api/v1/runs?state=Bogus".into(),
            Value::Null,
            400,
            Some("state"),
        ),
        (
            "GET",
            "/api/v1/runs?limit=0".into(),
            Value::Null,
            400,
            Some("limit"),
        ),
        (
            "GET",
            "/api/v1/runs?cursor=zz".into(),
            Value::Null,
            400,
            Some("cursor"),
        ),
        ("GET", "/api/v1/nope".into(), Value::Null, 404, None),
    ];
    for (method, path, body, status, field) in &cases {
        let body = if body.is_null() {
            None
        } else {
            Some(body.clone())
        };
        let (got, err) = api.send(method, path, body.clone()).await;
        assert_eq!(got.as_u16(), *status, "{method} {path} {body:?}: {err}");
        assert!(
            err["error"].is_string(),
            "{method} {path}: error code missing: {err}"
        );
        assert!(
            err["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{method} {path}: detail missing: {err}"
        );
        if let Some(f) = field {
            assert_eq!(err["field"], *f, "{method} {path} {body:?}: {err}");
        }
    }

    // Malformed JSON, wrong top-level types and oversized bodies on every
    // endpoint that takes a body.
    let bodied = [
        ("POST", "/api/v1/pools"),
        ("PATCH", "/api/v1/pools/local"),
        ("POST", "/api/v1/pools/local/queues"),
        ("PATCH", "/api/v1/pools/local/queues/default"),
        ("POST", "/api/v1/limits"),
        ("PATCH", "/api/v1/limits/x"),
        ("POST", "/api/v1/deployments"),
        ("PATCH", "/api/v1/deployments/d"),
        ("POST", "/api/v1/deployments/d/render"),
        ("POST", "/api/v1/runs"),
    ];
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    for (method, path) in bodied {
        let (s, e) = api.raw(method, path, b"{\"name\": ".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path} malformed: {e}");
        assert_eq!(e["error"], "bad_request");
        let (s, e) = api.raw(method, path, b"[1, 2]".to_vec()).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} array: {e}"
        );
        let (s, e) = api.raw(method, path, b"\"text\"".to_vec()).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} string: {e}"
        );
        let (s, e) = api.raw(method, path, huge.clone().into_bytes()).await;
        assert_eq!(
            s,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path} huge: {e}"
        );
    }

    let after = api.snapshot().await;
    assert_eq!(before, after, "a refused request changed the store");
    api.server.shutdown();
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let api = start().await;
    let doc = api.ok("GET", "/api/v1/openapi.json", None).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for (method, path) in weir::ROUTES {
        let concrete = path
            .replace("{type}", "process")
            .replace("{name}", "nope")
            .replace("{pool}", "nope")
            .replace("{tag}", "nope")
            .replace("{id}", &uuid::Uuid::now_v7().to_string());
        if *path == "/api/v1/runs/events" {
            // A stream that does not end: its head is the answer.
            let resp = api
                .http
                .get(api.url(&concrete))
                .send()
                .await
                .expect("events");
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            continue;
        }
        let (status, body) = api
            .send(&method.to_uppercase(), &concrete, Some(json!({})))
            .await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            assert!(
                !body["detail"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no such endpoint"),
                "{method} {path} is not routed"
            );
        }
    }
    let health = api.ok("GET", "/healthz", None).await;
    assert_eq!(health["status"], "ok");
    let ready = api.ok("GET", "/readyz", None).await;
    assert_eq!(ready["status"], "ready");
    api.server.shutdown();
}

/// A host that died between releasing a run and its end leaves the run
/// holding slots; the restart records what happened and gives them back.
/// A run of either pool type with no recorded submission was never started:
/// it is launched now. The process run completes; the kubernetes run's raw
/// job is not a Job manifest, so it fails to build, with that reason.
#[tokio::test]
async fn restart_recovers_released_runs_in_every_pool_type() {
    use weir::BaseJobTemplate;
    use weir::{NewRun, SqlStore, Store};
    use weir::{Pool, PoolType, RunState};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut released = Vec::new();
    {
        let store = SqlStore::open_sqlite(&dir.path().join("weir.db"))
            .await
            .expect("open store");
        for (name, pool_type) in [("proc", PoolType::Process), ("kube", PoolType::Kubernetes)] {
            let now = chrono::Utc::now();
            store
                .create_pool(&Pool {
                    name: name.into(),
                    pool_type,
                    base_job_template: BaseJobTemplate::default_for(pool_type.template_kind()),
                    cluster: None,
                    concurrency_limit: Some(1),
                    paused: false,
                    description: String::new(),
                    created_at: now,
                    updated_at: now,
                })
                .await
                .expect("pool");
            store
                .insert_run(NewRun {
                    id: uuid::Uuid::now_v7(),
                    pool: name.into(),
                    queue: "default".into(),
                    deployment: None,
                    job: Some(json!({"command": "true"})),
                    tags: vec!["t".into()],
                    parameters: Default::default(),
                    job_variables: Default::default(),
                    parent_run_id: None,
                    idempotency_key: None,
                    scheduled_at: now,
                    retries: Default::default(),
                    message: "created".into(),
                    cause: "test".into(),
                    history: Vec::new(),
                    needs_admission: false,
                    labels: Default::default(),
                })
                .await
                .expect("run");
        }
        for r in store
            .release_ready(chrono::Utc::now(), 10)
            .await
            .expect("release")
        {
            assert_eq!(r.run.state, RunState::Pending);
            released.push(r.run.id);
        }
        assert_eq!(released.len(), 2);
        // The host "dies" here: the store is dropped with both runs Pending.
    }
    let api = weir_tests::api::start_in(dir).await;
    for id in &released {
        let run = api
            .wait_state(&id.to_string(), &["Completed", "Crashed", "Failed"])
            .await;
        let message = run["state_message"].as_str().unwrap_or("");
        if run["pool"] == "proc" {
            assert_eq!(run["state"], "Completed", "{run}");
            let running = run["history"]
                .as_array()
                .map(|h| h.iter().filter(|e| e["state"] == "Running").count());
            assert_eq!(running, Some(1), "{run}");
        } else {
            assert_eq!(run["state"], "Failed", "{run}");
            assert!(
                message.starts_with("cannot build the job: ") && message.contains("job_manifest"),
                "{run}"
            );
        }
    }
    for pool in ["proc", "kube"] {
        let p = api.ok("GET", &format!("/api/v1/pools/{pool}"), None).await;
        assert_eq!(p["active_runs"], 0, "slots of {pool} came back: {p}");
    }
    let metrics = api.metrics().await;
    for pool in ["proc", "kube"] {
        let line = format!("weir_slots_in_use{{kind=\"pool\",key=\"{pool}\"}} 0");
        assert!(metrics.contains(&line), "{line} missing: {metrics}");
    }
    assert!(
        !metrics.contains("weir_slots_in_use{kind=\"tag\",key=\"t\"} 1"),
        "{metrics}"
    );
    api.server.shutdown();
}
