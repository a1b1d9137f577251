//! Hostile plugins against a live `weir serve` (issue #11): the components of
//! `tests/plugins/` that once crashed, stalled or ballooned the host, bound
//! as a plugin author would bind them, judging real runs while the server is
//! SIGKILLed and restarted — and a data directory holding rows an older Weir
//! wrote but cannot read back. Weir must stay up, keep answering, and give
//! every run a clear recorded outcome.

use std::path::Path;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use weir_tests::harness::{WeirProcess, component, eventually, weir_bin};

struct Http {
    client: Client,
    base: String,
}

impl Http {
    fn new(weir: &WeirProcess) -> Self {
        Http {
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: weir.url.clone(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.send(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    async fn upload(&self, name: &str, file: &str) {
        let bytes = std::fs::read(component(file)).expect("component");
        let resp = self
            .client
            .post(format!("{}/api/v1/plugins/{name}", self.base))
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert!(
            resp.status().is_success(),
            "upload {name}: {}",
            resp.status()
        );
    }

    async fn run(&self, id: &str) -> Value {
        self.ok("GET", &format!("/api/v1/runs/{id}"), None).await
    }
}

/// `levels` nested arrays as JSON text: deeper than serde_json reads back
/// once past 127.
fn nested_text(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

/// What an older Weir could leave behind: an unfinished run whose job, or
/// whose submission, does not read back. Written straight into the SQLite
/// file while the server is down.
async fn damage(data_dir: &Path, job_of: &str, submission_of: &str) {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let options = SqliteConnectOptions::new().filename(data_dir.join("weir.db"));
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("open weir.db");
    let deep = nested_text(300);
    let changed = sqlx::query("UPDATE runs SET job = ? WHERE id = ?")
        .bind(&deep)
        .bind(job_of)
        .execute(&db)
        .await
        .expect("damage a job")
        .rows_affected();
    assert_eq!(changed, 1);
    let changed = sqlx::query("UPDATE submissions SET target = ? WHERE run_id = ?")
        .bind(&deep)
        .bind(submission_of)
        .execute(&db)
        .await
        .expect("damage a submission")
        .rows_affected();
    assert_eq!(changed, 1, "the running run has a recorded submission");
    db.close().await;
}

const ENDED: [&str; 4] = ["Completed", "Failed", "Crashed", "Cancelled"];

#[tokio::test]
async fn hostile_plugins_and_unreadable_rows_never_keep_weir_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weir = WeirProcess::start(dir.path(), None);
    let api = Http::new(&weir);

    for pool in ["good", "deep", "alias", "deferred"] {
        api.ok(
            "POST",
            "/api/v1/pools",
            Some(json!({"name": pool, "type": "process"})),
        )
        .await;
    }
    for (name, file) in [
        ("sleeper", "sleeps"),
        ("tagger", "many-tags"),
        ("nester", "deep-nesting"),
        ("aliaser", "aliased-output"),
        ("defers", "defers-forever"),
    ] {
        api.upload(name, file).await;
    }
    // Two global routers that misbehave, fail-open: every submission meets
    // them, and neither may stall it or the API.
    for router in ["sleeper", "tagger"] {
        api.ok(
            "POST",
            "/api/v1/routers",
            Some(json!({"plugin": router, "on_error": "fail-open", "deadline_ms": 100})),
        )
        .await;
    }
    // Mutators that once crashed the host or ballooned its memory, each on
    // a pool of its own (so each judges), fail-closed: their runs fail,
    // with why.
    for (pool, mutator) in [("deep", "nester"), ("alias", "aliaser")] {
        api.ok(
            "POST",
            &format!("/api/v1/pools/{pool}/bindings"),
            Some(json!({"plugin": mutator, "deadline_ms": 2000})),
        )
        .await;
    }
    // An admission plugin that defers every second with a 1 MB reason.
    api.ok(
        "POST",
        "/api/v1/pools/deferred/bindings",
        Some(json!({"plugin": "defers", "config": {"seconds": 1, "reason_bytes": 1_000_000}})),
    )
    .await;
    let (status, e) = api
        .send(
            "POST",
            "/api/v1/pools/deferred/bindings",
            Some(json!({"plugin": "defers", "deadline_ms": 10_000})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "deadline_ms", "{e}");

    let submit = |pool: &'static str, command: &'static str| {
        let api = &api;
        async move {
            let run = api
                .ok(
                    "POST",
                    "/api/v1/runs",
                    Some(json!({"pool": pool, "job": {"command": command}})),
                )
                .await;
            run["id"].as_str().expect("id").to_owned()
        }
    };
    // Long enough to be still running when the server is killed below, after
    // the other pools' runs were checked, however slow the machine (with
    // 2 s they had all ended once, under load, before the kill).
    let mut good = Vec::new();
    for _ in 0..6 {
        good.push(submit("good", "sleep 30").await);
    }
    let mut deep = Vec::new();
    for _ in 0..3 {
        deep.push(submit("deep", "true").await);
    }
    for _ in 0..2 {
        deep.push(submit("alias", "true").await);
    }
    let mut deferred = Vec::new();
    for _ in 0..3 {
        deferred.push(submit("deferred", "true").await);
    }

    // Each submission passed both routers: the sleeper timed out, the
    // tagger's 100,000 tags were refused; both skipped, recorded.
    let first = api.run(&good[0]).await;
    let lines: Vec<&str> = first["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["message"].as_str())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("router sleeper") && l.contains("timeout")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("router tagger") && l.contains("invalid_output")),
        "{lines:#?}"
    );
    assert!(
        first["tags"].as_array().is_some_and(Vec::is_empty),
        "{first}"
    );

    // The deep and alias pools' runs fail at release with their mutator's
    // reason: nesting refused op by op, aliased output refused while copied.
    for (i, id) in deep.iter().enumerate() {
        let run = eventually("a deep run to fail", Duration::from_secs(60), || async {
            let run = api.run(id).await;
            ENDED.contains(&run["state"].as_str()?).then_some(run)
        })
        .await;
        assert_eq!(run["state"], "Failed", "{run}");
        let why = run["state_message"].as_str().unwrap_or("");
        let (plugin, reason) = if i < 3 {
            ("nester", "nested more than 64 levels")
        } else {
            ("aliaser", "passed more than")
        };
        assert!(
            why.contains(plugin) && why.contains(reason),
            "{plugin}'s reason: {why}"
        );
    }

    // Kill the server while good runs are running and deferred ones wait.
    let running = eventually(
        "a good run to be running",
        Duration::from_secs(60),
        || async {
            for id in &good {
                if api.run(id).await["state"] == "Running" {
                    return Some(id.clone());
                }
            }
            None
        },
    )
    .await;
    weir.kill();
    damage(dir.path(), &deferred[0], &running).await;
    weir.restart();
    let api = Http::new(&weir);

    // It came up. The damaged runs ended Crashed, saying why.
    for id in [&deferred[0], &running] {
        let run = api.run(id).await;
        assert_eq!(run["state"], "Crashed", "{run}");
        let why = run["state_message"].as_str().unwrap_or("");
        assert!(why.contains("could not be read back"), "{why}");
        let last = run["history"]
            .as_array()
            .and_then(|h| h.last())
            .expect("history");
        assert!(
            last["detail"]["set_aside"]
                .as_object()
                .is_some_and(|m| !m.is_empty()),
            "what could not be read is kept: {last}"
        );
    }

    // Every other good run completes; the deferred ones keep waiting, their
    // repeated deferral one history line with a count and a clipped reason.
    for id in good.iter().filter(|id| **id != running) {
        let run = eventually("a good run to end", Duration::from_secs(120), || async {
            let run = api.run(id).await;
            ENDED.contains(&run["state"].as_str()?).then_some(run)
        })
        .await;
        assert_eq!(run["state"], "Completed", "{run}");
    }
    let waiting = &deferred[1];
    let run = eventually(
        "the deferral to be judged again several times",
        Duration::from_secs(60),
        || async {
            let run = api.run(waiting).await;
            let lines: Vec<&Value> = run["history"]
                .as_array()?
                .iter()
                .filter(|h| h["cause"] == "admission:defers")
                .collect();
            (lines.len() == 1 && lines[0]["detail"]["repeated"].as_u64()? >= 3).then_some(run)
        },
    )
    .await;
    assert!(
        ["Scheduled", "Late"].contains(&run["state"].as_str().unwrap_or("")),
        "{run}"
    );
    let text = run.to_string();
    assert!(
        text.len() < 64 << 10,
        "a run judged again and again stays small: {} bytes",
        text.len()
    );

    // The API answers throughout, and every run is accounted for.
    let (status, _) = api.send("GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    for id in &deferred[1..] {
        api.ok("POST", &format!("/api/v1/runs/{id}/cancel"), None)
            .await;
    }
    for id in good.iter().chain(&deep).chain(&deferred) {
        let run = eventually("every run to end", Duration::from_secs(60), || async {
            let run = api.run(id).await;
            ENDED.contains(&run["state"].as_str()?).then_some(run)
        })
        .await;
        assert!(ENDED.contains(&run["state"].as_str().unwrap_or("")));
    }
    // A clean restart too: nothing stored that cannot be read back.
    weir.restart();
    let api = Http::new(&weir);
    let page = api.ok("GET", "/api/v1/runs?limit=100", None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(14), "{page}");
}

#[test]
fn weir_plugin_test_refuses_a_deep_patch_instead_of_aborting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx.json");
    std::fs::write(
        &ctx,
        json!({"run_id": "0190a6f2-0000-7000-8000-000000000001", "pool": "p", "queue": "default"})
            .to_string(),
    )
    .expect("ctx");
    let job = dir.path().join("job.json");
    std::fs::write(&job, json!({"command": ["true"], "env": {}}).to_string()).expect("job");
    let out = std::process::Command::new(weir_bin())
        .args(["plugin", "test"])
        .arg(component("deep-nesting"))
        .arg("--ctx")
        .arg(&ctx)
        .arg("--job")
        .arg(&job)
        .output()
        .expect("weir plugin test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // An exit with a code (not a signal: it used to abort on a stack
    // overflow), and not success.
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{:?}: {stdout}{stderr}",
        out.status
    );
    assert!(
        format!("{stdout}{stderr}").contains("nested more than 64 levels"),
        "{stdout}{stderr}"
    );
}
