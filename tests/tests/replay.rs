//! Replay (issue #16 items 1, 2, 5): a live Weir records what each plugin
//! decision saw; another version (stored, or a file not stored) judges those
//! decisions again, offline, and the report names exactly the runs it would
//! decide otherwise — through the API and the CLI — without changing any.

use std::collections::BTreeSet;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_tests::api::{Api, start, start_with};
use weir_tests::harness::{another_version_of, component, weir_bin};

const STRICT: &str = r#"{"prefixes":["ghcr.io/acme/"]}"#;

async fn pool_and_deployment(api: &Api) {
    api.image_pool("local").await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "job", "pool": "local",
                    "job_variables": {"command": "sh -c 'echo mutated=$MUTATED'"}})),
    )
    .await;
}

async fn upload(api: &Api, name: &str, path: &std::path::Path) -> Value {
    let (status, v) = api.upload(name, path).await;
    assert!(status.is_success(), "upload {name}: {status} {v}");
    v
}

/// `text` percent-encoded for a query string.
fn query(text: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("url");
    url.query_pairs_mut().append_pair("v", text);
    url.query()
        .unwrap_or_default()
        .trim_start_matches("v=")
        .to_owned()
}

/// The CLI against the in-process server.
fn cli(api: &Api, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(weir_bin())
        .args(args)
        .env("WEIR_API_URL", &api.base)
        .output()
        .expect("run the weir CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn changed(report: &Value) -> BTreeSet<String> {
    report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|l| l["same"] == false)
        .map(|l| l["run_id"].as_str().expect("run_id").to_owned())
        .collect()
}

/// 200 runs decided by `approved-registries` v1; v2 replayed with a
/// stricter config names exactly the runs it would reject, and nothing
/// else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_names_exactly_the_runs_a_stricter_version_would_reject() {
    let api = start().await;
    pool_and_deployment(&api).await;
    let v1 = upload(
        &api,
        "approved-registries",
        &component("approved-registries"),
    )
    .await;
    let v2 = upload(
        &api,
        "approved-registries",
        &another_version_of("approved-registries"),
    )
    .await;
    assert_eq!(
        (v1["version"].as_u64(), v2["version"].as_u64()),
        (Some(1), Some(2))
    );
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "approved-registries", "version": 1,
                    "config": {"prefixes": ["ghcr.io/acme/", "docker.io/library/"]}})),
    )
    .await;

    // Every third run's image only v1's config allows; every tenth (not
    // a third) one neither allows, so v1 rejects it too.
    let mut ids = Vec::new();
    let mut stricter = BTreeSet::new();
    let mut rejected_by_both = BTreeSet::new();
    for i in 0..200 {
        let image = match i {
            i if i % 3 == 0 => "docker.io/library/python:3",
            i if i % 10 == 1 => "quay.io/evil/miner:1",
            _ => "ghcr.io/acme/etl:1",
        };
        let run = api
            .ok(
                "POST",
                "/api/v1/runs",
                Some(json!({"deployment": "job", "job_variables": {"image": image}})),
            )
            .await;
        let id = run["id"].as_str().expect("id").to_owned();
        match i {
            i if i % 3 == 0 => {
                stricter.insert(id.clone());
            }
            i if i % 10 == 1 => {
                rejected_by_both.insert(id.clone());
            }
            _ => {}
        }
        ids.push(id);
    }
    for id in &ids {
        let run = api
            .wait_state(id, &["Completed", "Failed", "Crashed"])
            .await;
        let expected = if rejected_by_both.contains(id) {
            "Failed"
        } else {
            "Completed"
        };
        assert_eq!(run["state"], expected, "{run}");
    }
    let before = api
        .ok("GET", &format!("/api/v1/runs/{}", ids[0]), None)
        .await;

    // Version 2 with each decision's own config decides every run the same.
    let same = api
        .ok(
            "POST",
            "/api/v1/plugins/approved-registries/replay?version=2&limit=1000",
            None,
        )
        .await;
    assert_eq!(same["summary"]["judged"], 200, "{}", same["summary"]);
    assert_eq!(same["summary"]["same"], 200, "{}", same["summary"]);
    assert_eq!(same["candidate"]["version"], 2);
    assert_eq!(same["candidate"]["digest"], v2["digest"]);

    // With the stricter config: exactly the runs it would reject.
    let report = api
        .ok(
            "POST",
            &format!(
                "/api/v1/plugins/approved-registries/replay?version=2&limit=1000&config={}",
                query(STRICT)
            ),
            None,
        )
        .await;
    let s = &report["summary"];
    let n = |k: &str| s[k].as_u64();
    let (k, both) = (stricter.len() as u64, rejected_by_both.len() as u64);
    assert_eq!(n("judged"), Some(200), "{s}");
    assert_eq!(n("would_reject"), Some(k), "{s}");
    // v1 rejected some runs too; v2 still does, naming fewer prefixes.
    assert_eq!(n("reasons_changed"), Some(both), "{s}");
    assert_eq!(n("different"), Some(k + both), "{s}");
    assert_eq!(n("same"), Some(200 - k - both), "{s}");
    assert_eq!((n("would_admit"), n("errors")), (Some(0), Some(0)), "{s}");
    let now_rejected: BTreeSet<String> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|l| l["recorded"]["decision"] == "admit" && l["replayed"]["decision"] == "reject")
        .map(|l| l["run_id"].as_str().expect("run_id").to_owned())
        .collect();
    assert_eq!(now_rejected, stricter, "exactly the runs v2 would reject");
    let expected_changed: BTreeSet<String> = stricter.union(&rejected_by_both).cloned().collect();
    assert_eq!(changed(&report), expected_changed);
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 200);
    // Newest first, each with what was and what would be.
    assert_eq!(runs[0]["run_id"].as_str(), ids.last().map(String::as_str));
    for line in runs {
        let id = line["run_id"].as_str().expect("id");
        assert_eq!(line["recorded_version"], 1);
        assert_eq!(line["pool"], "local");
        if stricter.contains(id) {
            assert_eq!(line["recorded"]["decision"], "admit", "{line}");
            assert_eq!(line["replayed"]["decision"], "reject", "{line}");
            assert_eq!(line["replayed"]["code"], "unapproved-registry", "{line}");
            assert!(
                line["change"].as_str().is_some_and(
                    |c| c.starts_with("admit → reject: image \"docker.io/library/python:3\"")
                ),
                "{line}"
            );
        } else if rejected_by_both.contains(id) {
            assert_eq!(line["recorded"]["decision"], "reject", "{line}");
            assert_eq!(line["replayed"]["decision"], "reject", "{line}");
            assert_eq!(
                line["replayed"]["details"]["prefixes"],
                json!(["ghcr.io/acme/"]),
                "{line}"
            );
        } else {
            assert_eq!(line["same"], true, "{line}");
        }
    }

    // The same through the CLI, with v2 as a file that is not stored.
    let config = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(config.path(), STRICT).expect("write");
    let config_arg = format!("@{}", config.path().display());
    let v2_file = another_version_of("approved-registries");
    let args = [
        "plugin",
        "replay",
        "approved-registries",
        "--file",
        v2_file.to_str().expect("path"),
        "--config",
        &config_arg,
        "--pool",
        "local",
        "--limit",
        "500",
    ];
    let (ok, out, err) = cli(&api, &args);
    assert!(ok, "{out}{err}");
    let last = out.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "judged 200, same {}, different {}, would reject {}, reasons changed {}",
            200 - stricter.len() - rejected_by_both.len(),
            stricter.len() + rejected_by_both.len(),
            stricter.len(),
            rejected_by_both.len()
        ),
        "{out}"
    );
    assert!(out.starts_with("Replayed file (sha256:"), "{out}");
    let first_changed = stricter.iter().next().expect("one");
    assert!(
        out.lines()
            .any(|l| l.starts_with(first_changed.as_str()) && l.contains("admit → reject")),
        "{out}"
    );
    let mut json_args = vec!["-o", "json"];
    json_args.extend_from_slice(&args);
    let (ok, out, err) = cli(&api, &json_args);
    assert!(ok, "{err}");
    let from_cli: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(from_cli["summary"], report["summary"]);
    assert_eq!(from_cli["candidate"]["source"], "file");
    assert_eq!(changed(&from_cli), changed(&report));
    // A file is not stored: still two versions.
    let plugin = api
        .ok("GET", "/api/v1/plugins/approved-registries", None)
        .await;
    assert_eq!(plugin["versions"].as_array().map(Vec::len), Some(2));

    // Filters: another pool, the future, a limit.
    let none = api
        .ok(
            "POST",
            "/api/v1/plugins/approved-registries/replay?version=2&pool=other",
            None,
        )
        .await;
    assert_eq!(none["summary"]["judged"], 0);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let none = api
        .ok(
            "POST",
            &format!(
                "/api/v1/plugins/approved-registries/replay?version=2&since={}",
                query(&tomorrow)
            ),
            None,
        )
        .await;
    assert_eq!(none["summary"]["judged"], 0);
    let recent = api
        .ok(
            "POST",
            "/api/v1/plugins/approved-registries/replay?version=2&since=1h&limit=7",
            None,
        )
        .await;
    assert_eq!(recent["summary"]["judged"], 7);

    // Bad requests name the field.
    for (path, body, status, field) in [
        ("replay", None, StatusCode::BAD_REQUEST, "version"),
        ("replay?version=9", None, StatusCode::NOT_FOUND, ""),
        (
            "replay?version=2&limit=0",
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "replay?version=2&since=yesterday",
            None,
            StatusCode::BAD_REQUEST,
            "since",
        ),
        (
            "replay?version=2&config=%7Bnot",
            None,
            StatusCode::BAD_REQUEST,
            "config",
        ),
        (
            "replay?version=2&colour=red",
            None,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            "replay",
            Some(std::fs::read(component("add-label")).expect("wasm")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wasm",
        ),
        (
            "replay",
            Some(b"not wasm".to_vec()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wasm",
        ),
    ] {
        let url = format!("/api/v1/plugins/approved-registries/{path}");
        let (got, e) = match body {
            Some(bytes) => api.raw("POST", &url, bytes).await,
            None => api.send("POST", &url, None).await,
        };
        assert_eq!(got, status, "{path}: {e}");
        if !field.is_empty() {
            assert_eq!(e["field"], field, "{path}: {e}");
        }
    }
    // A config the candidate refuses.
    let (got, e) = api
        .send(
            "POST",
            &format!(
                "/api/v1/plugins/approved-registries/replay?version=2&config={}",
                query(r#"{"prefixes":5}"#)
            ),
            None,
        )
        .await;
    assert_eq!(
        (got, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("config")),
        "{e}"
    );
    let (got, _) = api
        .send("POST", "/api/v1/plugins/nothing/replay?version=1", None)
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);

    // Replays changed no run.
    let after = api
        .ok("GET", &format!("/api/v1/runs/{}", ids[0]), None)
        .await;
    assert_eq!(before, after);
    // Each decision's inputs were recorded once.
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("weir_decision_inputs_recorded_total 200"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("decision_inputs"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A mutator v2 replayed with another mode shows, per run, both patches and
/// the exact difference between the jobs they make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_mutator_shows_the_exact_patch_difference() {
    let api = start().await;
    pool_and_deployment(&api).await;
    upload(&api, "marker", &component("v2-mutator")).await;
    upload(&api, "marker", &another_version_of("v2-mutator")).await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "marker", "version": 1, "config": {"mode": "patch"}})),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let run = api.run_to_end(json!({"deployment": "job"})).await;
        assert_eq!(run["state"], "Completed", "{run}");
        ids.push(run["id"].as_str().expect("id").to_owned());
    }
    let (_, log) = api
        .send("GET", &format!("/api/v1/runs/{}/logs", ids[0]), None)
        .await;
    assert_eq!(log.as_str().map(str::trim), Some("mutated=patch"));

    let report = api
        .ok(
            "POST",
            &format!(
                "/api/v1/plugins/marker/replay?version=2&config={}",
                query(r#"{"mode":"job"}"#)
            ),
            None,
        )
        .await;
    let s = &report["summary"];
    assert_eq!(
        (
            s["judged"].as_u64(),
            s["jobs_changed"].as_u64(),
            s["errors"].as_u64()
        ),
        (Some(20), Some(20), Some(0)),
        "{s}"
    );
    let seen: BTreeSet<&str> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|l| l["run_id"].as_str().expect("id"))
        .collect();
    assert_eq!(seen, ids.iter().map(String::as_str).collect());
    for line in report["runs"].as_array().expect("runs") {
        assert_eq!(
            line["recorded"]["patch"],
            json!([{"op": "add", "path": "/env/MUTATED", "value": "patch"}]),
            "{line}"
        );
        let new_patch = line["replayed"]["patch"].as_array().expect("patch");
        assert!(
            new_patch.contains(&json!({"op": "add", "path": "/env/MUTATED", "value": "job"})),
            "{line}"
        );
        let diff: BTreeSet<String> = line["job_diff"]
            .as_array()
            .expect("job_diff")
            .iter()
            .map(Value::to_string)
            .collect();
        let expected: BTreeSet<String> = [
            json!({"op": "replace", "path": "/env/MUTATED", "value": "job"}),
            json!({"op": "add", "path": "/env/POOL_TYPE", "value": "process"}),
        ]
        .iter()
        .map(Value::to_string)
        .collect();
        assert_eq!(diff, expected, "{line}");
        assert!(
            line["change"]
                .as_str()
                .is_some_and(|c| c == "1 patch operation(s) → 2 patch operation(s)"),
            "{line}"
        );
    }
    // The recorded config replays the same patches.
    let same = api
        .ok("POST", "/api/v1/plugins/marker/replay?version=2", None)
        .await;
    assert_eq!(same["summary"]["same"], 20, "{}", same["summary"]);
}

/// `decision_inputs_keep = 0` records nothing: there is nothing to replay.
#[tokio::test]
async fn with_recording_off_nothing_is_replayed() {
    let api = start_with(tempfile::tempdir().expect("tempdir"), |o| {
        o.config.server.decision_inputs_keep = Some(0);
    })
    .await;
    pool_and_deployment(&api).await;
    upload(
        &api,
        "approved-registries",
        &component("approved-registries"),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "approved-registries", "config": {"prefixes": ["ghcr.io/"]}})),
    )
    .await;
    let run = api
        .run_to_end(json!({"deployment": "job", "job_variables": {"image": "ghcr.io/x:1"}}))
        .await;
    assert_eq!(run["state"], "Completed", "{run}");
    let report = api
        .ok(
            "POST",
            "/api/v1/plugins/approved-registries/replay?version=1",
            None,
        )
        .await;
    assert_eq!(report["summary"]["judged"], 0, "{report}");
    assert_eq!(report["runs"], json!([]));
}

/// A router replayed with other rules: the runs it would route elsewhere,
/// and only those.
#[tokio::test]
async fn a_replayed_router_names_the_runs_it_would_route_elsewhere() {
    let api = start().await;
    pool_and_deployment(&api).await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "gpu", "type": "process", "paused": true})),
    )
    .await;
    upload(&api, "tag-router", &component("tag-router")).await;
    upload(&api, "tag-router", &another_version_of("tag-router")).await;
    api.ok(
        "POST",
        "/api/v1/routers",
        Some(
            json!({"plugin": "tag-router", "version": 1, "config": {"rules": [
            {"tag": "gpu", "pool": "gpu"}]}}),
        ),
    )
    .await;
    let mut nightly = BTreeSet::new();
    for i in 0..12 {
        let tags = match i % 3 {
            0 => json!(["gpu"]),
            1 => json!(["nightly"]),
            _ => json!([]),
        };
        let run = api
            .ok(
                "POST",
                "/api/v1/runs",
                Some(json!({"deployment": "job", "tags": tags})),
            )
            .await;
        let expected_pool = if i % 3 == 0 { "gpu" } else { "local" };
        assert_eq!(run["pool"], expected_pool, "{run}");
        if i % 3 == 1 {
            nightly.insert(run["id"].as_str().expect("id").to_owned());
        }
    }
    // Version 2 would also send the nightly runs to gpu.
    let rules = r#"{"rules":[{"tag":"gpu","pool":"gpu"},{"tag":"nightly","pool":"gpu"}]}"#;
    let report = api
        .ok(
            "POST",
            &format!(
                "/api/v1/plugins/tag-router/replay?version=2&config={}",
                query(rules)
            ),
            None,
        )
        .await;
    let s = &report["summary"];
    assert_eq!(
        (
            s["judged"].as_u64(),
            s["routes_changed"].as_u64(),
            s["same"].as_u64()
        ),
        (Some(12), Some(4), Some(8)),
        "{s}"
    );
    assert_eq!(changed(&report), nightly);
    for line in report["runs"].as_array().expect("runs") {
        if line["same"] == false {
            assert_eq!(line["recorded"]["pool"], Value::Null, "{line}");
            assert_eq!(line["replayed"]["pool"], "gpu", "{line}");
            // Decided before routing: the run's pool then.
            assert_eq!(line["pool"], "local", "{line}");
        }
    }
}
