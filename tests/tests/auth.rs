//! Authentication, roles, team scopes, run tokens and TLS, end to end: the
//! real `weir` binary started with `--auth on` (so the tests need no
//! non-loopback interface), tokens made with `weir token create` on its
//! data directory. Every refusal also checks that nothing changed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_tests::harness::{WeirProcess, create_token, eventually, free_port, weir_bin};

struct Caller {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Caller {
    fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
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
        let (status, value) = self.send(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Asserts a refusal with `status` whose detail mentions `words`.
    async fn refused(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        words: &str,
    ) {
        let (got, value) = self.send(method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {value}");
        let detail = value["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(words),
            "{method} {path}: {detail:?} lacks {words:?}"
        );
    }
}

fn token_id(data_dir: &Path, token: &str) -> String {
    let out = Command::new(weir_bin())
        .args(["-o", "json", "token", "ls", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("weir token ls");
    let v: Value = serde_json::from_slice(&out.stdout).expect("token list JSON");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(token), "token ls must not print secrets");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| token.starts_with(t["prefix"].as_str().unwrap_or("-")))
        .and_then(|t| t["id"].as_str())
        .expect("the token is listed")
        .to_owned()
}

async fn run_count(admin: &Caller) -> usize {
    admin.ok("GET", "/api/v1/runs?limit=1000", None).await["items"]
        .as_array()
        .map_or(0, Vec::len)
}

fn start_with_auth(dir: &Path) -> WeirProcess {
    WeirProcess::start_with_args(dir, None, free_port(), &["--auth", "on"])
}

#[tokio::test]
async fn no_wrong_or_revoked_token_is_refused_with_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = start_with_auth(dir.path());
    let admin_token = create_token(dir.path(), &["--role", "admin", "--name", "root"]);
    let admin = Caller::new(&weir.url, Some(&admin_token));
    admin
        .ok(
            "POST",
            "/api/v1/pools",
            Some(json!({"name": "p", "type": "process"})),
        )
        .await;

    // Open routes stay open.
    let anonymous = Caller::new(&weir.url, None);
    assert_eq!(
        anonymous.send("GET", "/healthz", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        anonymous.send("GET", "/readyz", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        anonymous.send("GET", "/api/v1/openapi.json", None).await.0,
        StatusCode::OK
    );

    // No token: 401 with the Bearer challenge, on reads, writes and metrics.
    let resp = reqwest::get(format!("{}/api/v1/pools", weir.url))
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "{:?}",
        resp.headers()
    );
    anonymous
        .refused(
            "GET",
            "/metrics",
            None,
            StatusCode::UNAUTHORIZED,
            "needs a token",
        )
        .await;
    anonymous
        .refused(
            "DELETE",
            "/api/v1/pools/p",
            None,
            StatusCode::UNAUTHORIZED,
            "needs a token",
        )
        .await;
    let wrong = Caller::new(
        &weir.url,
        Some("weir_0000000000000000000000000000000000000000000000000000000000000000"),
    );
    wrong
        .refused(
            "DELETE",
            "/api/v1/pools/p",
            None,
            StatusCode::UNAUTHORIZED,
            "unknown token",
        )
        .await;
    let forged = Caller::new(
        &weir.url,
        Some("weirrun_0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b_00"),
    );
    forged
        .refused(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "p", "job": {"command": "true"}})),
            StatusCode::UNAUTHORIZED,
            "not valid",
        )
        .await;
    // Nothing changed.
    admin.ok("GET", "/api/v1/pools/p", None).await;
    assert_eq!(run_count(&admin).await, 0);

    // A revoked token is refused from the next request on.
    let doomed = create_token(dir.path(), &["--role", "admin"]);
    let doomed_caller = Caller::new(&weir.url, Some(&doomed));
    doomed_caller.ok("GET", "/api/v1/pools", None).await;
    let id = token_id(dir.path(), &doomed);
    let out = Command::new(weir_bin())
        .args(["token", "revoke", &id, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("weir token revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    doomed_caller
        .refused(
            "DELETE",
            "/api/v1/pools/p",
            None,
            StatusCode::UNAUTHORIZED,
            "revoked",
        )
        .await;
    admin.ok("GET", "/api/v1/pools/p", None).await;

    // The CLI sends --token / WEIR_TOKEN; without one it gets the 401 reason.
    let out = weir.cli(&["pool", "ls"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = weir.cli(&["--token", &admin_token, "pool", "ls"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn roles_and_team_scopes_are_enforced_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = start_with_auth(dir.path());
    let admin = Caller::new(
        &weir.url,
        Some(&create_token(dir.path(), &["--role", "admin"])),
    );
    let operator = Caller::new(
        &weir.url,
        Some(&create_token(dir.path(), &["--role", "operator"])),
    );
    let team_a = Caller::new(
        &weir.url,
        Some(&create_token(
            dir.path(),
            &["--role", "submitter", "--team", "a"],
        )),
    );
    let pool_p = Caller::new(
        &weir.url,
        Some(&create_token(
            dir.path(),
            &["--role", "submitter", "--pool", "p"],
        )),
    );

    // Admin: everything.
    for pool in ["p", "q"] {
        admin
            .ok(
                "POST",
                "/api/v1/pools",
                Some(json!({"name": pool, "type": "process"})),
            )
            .await;
    }
    admin
        .ok(
            "POST",
            "/api/v1/limits",
            Some(json!({"tag": "t", "limit": 1})),
        )
        .await;
    for (name, team) in [("da", "a"), ("db", "b")] {
        let d = admin
            .ok(
                "POST",
                "/api/v1/deployments",
                Some(json!({"name": name, "pool": "q", "team": team,
                            "job_variables": {"command": "sleep 30"}})),
            )
            .await;
        assert_eq!(d["team"], team);
    }

    // Operator: queues and deployments yes; pools, limits, plugins no.
    operator
        .ok(
            "POST",
            "/api/v1/pools/p/queues",
            Some(json!({"name": "low", "priority": 10})),
        )
        .await;
    operator
        .ok("POST", "/api/v1/pools/p/queues/low/pause", None)
        .await;
    operator
        .refused(
            "PATCH",
            "/api/v1/pools/p",
            Some(json!({"concurrency_limit": 1})),
            StatusCode::FORBIDDEN,
            "operator tokens cannot manage pools",
        )
        .await;
    operator
        .refused(
            "DELETE",
            "/api/v1/limits/t",
            None,
            StatusCode::FORBIDDEN,
            "cannot manage tag limits",
        )
        .await;
    operator
        .refused(
            "DELETE",
            "/api/v1/plugins/x",
            None,
            StatusCode::FORBIDDEN,
            "cannot manage plugins",
        )
        .await;
    operator
        .refused(
            "POST",
            "/api/v1/routers",
            Some(json!({"plugin": "x"})),
            StatusCode::FORBIDDEN,
            "cannot manage plugins",
        )
        .await;
    let pool = admin.ok("GET", "/api/v1/pools/p", None).await;
    assert!(pool["concurrency_limit"].is_null(), "{pool}");
    admin.ok("GET", "/api/v1/limits/t", None).await;

    // Submitter of team a: may not manage pools or queues.
    team_a
        .refused(
            "POST",
            "/api/v1/pools/p/pause",
            None,
            StatusCode::FORBIDDEN,
            "submitter tokens cannot manage pools",
        )
        .await;
    team_a
        .refused(
            "DELETE",
            "/api/v1/pools/p/queues/low",
            None,
            StatusCode::FORBIDDEN,
            "cannot manage queues",
        )
        .await;
    assert_eq!(
        admin.ok("GET", "/api/v1/pools/p", None).await["paused"],
        false
    );
    admin.ok("GET", "/api/v1/pools/p/queues/low", None).await;

    // ... may run its team's deployment, not team b's nor a raw job.
    let mine = team_a
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "da"})))
        .await;
    let before = run_count(&admin).await;
    team_a
        .refused(
            "POST",
            "/api/v1/runs",
            Some(json!({"deployment": "db"})),
            StatusCode::FORBIDDEN,
            "submitter tokens of team a cannot create or read runs of deployment db (team b)",
        )
        .await;
    team_a
        .refused(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "p", "job": {"command": "true"}})),
            StatusCode::FORBIDDEN,
            "raw-job runs",
        )
        .await;
    assert_eq!(run_count(&admin).await, before, "a refused run was stored");

    // The pool-bound submitter: raw jobs in p only.
    pool_p
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "p", "job": {"command": "sleep 30"}})),
        )
        .await;
    let before = run_count(&admin).await;
    pool_p
        .refused(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "q", "job": {"command": "true"}})),
            StatusCode::FORBIDDEN,
            "limited to pools p",
        )
        .await;
    pool_p
        .refused(
            "POST",
            "/api/v1/runs",
            Some(json!({"deployment": "db"})),
            StatusCode::FORBIDDEN,
            "limited to pools p",
        )
        .await;
    assert_eq!(run_count(&admin).await, before, "a refused run was stored");

    // Reading: team b's run is hidden from team a (404, as if absent).
    let theirs = admin
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "db"})))
        .await;
    let theirs_id = theirs["id"].as_str().expect("id");
    let mine_id = mine["id"].as_str().expect("id");
    team_a
        .refused(
            "GET",
            &format!("/api/v1/runs/{theirs_id}"),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        )
        .await;
    team_a
        .refused(
            "GET",
            &format!("/api/v1/runs/{theirs_id}/logs"),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        )
        .await;
    team_a
        .ok("GET", &format!("/api/v1/runs/{mine_id}"), None)
        .await;
    let listed = team_a.ok("GET", "/api/v1/runs", None).await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec![mine_id], "team a sees only its runs");

    // Cancel: operators may, submitters may not (and the run is untouched:
    // it goes on through its own states, but nothing records a cancel).
    team_a
        .refused(
            "POST",
            &format!("/api/v1/runs/{mine_id}/cancel"),
            None,
            StatusCode::FORBIDDEN,
            "submitter tokens cannot cancel runs",
        )
        .await;
    let after = admin
        .ok("GET", &format!("/api/v1/runs/{mine_id}"), None)
        .await;
    let states: Vec<&str> = after["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["state"].as_str().unwrap_or(""))
        .collect();
    assert!(
        !states.iter().any(|s| s.starts_with("Cancel")),
        "a refused cancel reached the run: {after}"
    );
    assert!(
        !["Cancelling", "Cancelled"].contains(&after["state"].as_str().unwrap_or("")),
        "{after}"
    );
    operator
        .ok("POST", &format!("/api/v1/runs/{theirs_id}/cancel"), None)
        .await;
}

#[tokio::test]
async fn a_run_token_creates_children_and_reads_its_run_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = start_with_auth(dir.path());
    let admin = Caller::new(
        &weir.url,
        Some(&create_token(dir.path(), &["--role", "admin"])),
    );
    admin
        .ok(
            "POST",
            "/api/v1/pools",
            Some(json!({"name": "p", "type": "process"})),
        )
        .await;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    // The job writes its token, then makes a child run itself through the
    // CLI (WEIR_RUN_TOKEN and WEIR_API_URL come from Weir), then waits.
    let script = format!(
        "printf %s \"$WEIR_RUN_TOKEN\" > {o}/token; \
         {weir} -o json run create --pool p --command true --parent \"$WEIR_RUN_ID\" \
           > {o}/child.json 2> {o}/child.err; sleep 60",
        o = out.display(),
        weir = weir_bin().display()
    );
    let parent = admin
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "p", "job": {"command": ["sh", "-c", script]}})),
        )
        .await;
    let parent_id = parent["id"].as_str().expect("id").to_owned();
    let other = admin
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "p", "job": {"command": "sleep 60"}})),
        )
        .await;
    let other_id = other["id"].as_str().expect("id").to_owned();
    let token_file = out.join("token");
    let token = eventually("the job wrote its token", Duration::from_secs(30), || {
        let f = token_file.clone();
        async move { std::fs::read_to_string(&f).ok().filter(|t| !t.is_empty()) }
    })
    .await;
    assert!(
        token.starts_with(&format!("weirrun_{parent_id}_")),
        "{token}"
    );

    // The job's own CLI call made a child of its run.
    let child_file = out.join("child.json");
    let child: Value = eventually(
        "the job created a child run",
        Duration::from_secs(30),
        || {
            let f = child_file.clone();
            async move {
                std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
            }
        },
    )
    .await;
    assert_eq!(child["parent_run_id"], parent_id.as_str(), "{child}");

    // The preview never shows a real token.
    let preview = admin
        .ok("GET", &format!("/api/v1/runs/{parent_id}"), None)
        .await;
    assert!(!preview.to_string().contains(&token));

    let run = Caller::new(&weir.url, Some(&token));
    run.ok("GET", &format!("/api/v1/runs/{parent_id}"), None)
        .await;
    run.ok("GET", &format!("/api/v1/runs/{parent_id}/logs"), None)
        .await;
    let child2 = run
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "p", "job": {"command": "true"}, "parent_run_id": parent_id})),
        )
        .await;
    assert_eq!(child2["parent_run_id"], parent_id.as_str());

    let before = run_count(&admin).await;
    run.refused(
        "POST",
        "/api/v1/runs",
        Some(json!({"pool": "p", "job": {"command": "true"}})),
        StatusCode::FORBIDDEN,
        "can only create child runs",
    )
    .await;
    run.refused(
        "POST",
        "/api/v1/runs",
        Some(json!({"pool": "p", "job": {"command": "true"}, "parent_run_id": other_id})),
        StatusCode::FORBIDDEN,
        "can only create child runs",
    )
    .await;
    assert_eq!(run_count(&admin).await, before, "a refused run was stored");
    run.refused(
        "GET",
        &format!("/api/v1/runs/{other_id}"),
        None,
        StatusCode::FORBIDDEN,
        "can only read that run",
    )
    .await;
    run.refused(
        "POST",
        &format!("/api/v1/runs/{other_id}/cancel"),
        None,
        StatusCode::FORBIDDEN,
        "not cancel runs",
    )
    .await;
    run.refused(
        "POST",
        &format!("/api/v1/runs/{parent_id}/cancel"),
        None,
        StatusCode::FORBIDDEN,
        "not cancel runs",
    )
    .await;
    run.refused(
        "GET",
        "/api/v1/pools",
        None,
        StatusCode::FORBIDDEN,
        "not read configuration",
    )
    .await;
    let other_now = admin
        .ok("GET", &format!("/api/v1/runs/{other_id}"), None)
        .await;
    assert_eq!(other_now["state"], "Running");

    // When its run ends, the token stops working.
    admin
        .ok("POST", &format!("/api/v1/runs/{parent_id}/cancel"), None)
        .await;
    eventually("the parent ended", Duration::from_secs(30), || {
        let admin = &admin;
        let id = parent_id.clone();
        async move {
            let r = admin.ok("GET", &format!("/api/v1/runs/{id}"), None).await;
            (r["state"] == "Cancelled").then_some(())
        }
    })
    .await;
    run.refused(
        "GET",
        &format!("/api/v1/runs/{parent_id}"),
        None,
        StatusCode::UNAUTHORIZED,
        "expired",
    )
    .await;
    admin
        .ok("POST", &format!("/api/v1/runs/{other_id}/cancel"), None)
        .await;
}

#[tokio::test]
async fn auto_on_loopback_is_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    let anonymous = Caller::new(&weir.url, None);
    anonymous
        .ok(
            "POST",
            "/api/v1/pools",
            Some(json!({"name": "p", "type": "process"})),
        )
        .await;
    anonymous.ok("GET", "/metrics", None).await;
}

#[tokio::test]
async fn https_round_trip_and_plain_http_to_it_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        // An end-entity certificate (webpki refuses a CA one as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a certificate");
    let port = free_port();
    let mut child = Command::new(weir_bin())
        .args([
            "serve",
            "--auth",
            "on",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("WEIR_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("weir serve");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let pem = std::fs::read(&cert).expect("cert");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{port}");
    eventually("weir serves HTTPS", Duration::from_secs(60), || {
        let https = https.clone();
        let url = url.clone();
        async move {
            let r = https.get(format!("{url}/readyz")).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(())
        }
    })
    .await;
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "{plain:?}"
    );
    // The CLI over HTTPS, trusting the certificate with --ca-cert.
    let token = create_token(&dir.path().join("data"), &["--role", "admin"]);
    let out = Command::new(weir_bin())
        .args(["--api", &url, "--token", &token, "--ca-cert"])
        .arg(&cert)
        .args(["pool", "create", "p", "--type", "process"])
        .output()
        .expect("weir pool create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pools: Value = https
        .get(format!("{url}/api/v1/pools"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list pools")
        .json()
        .await
        .expect("JSON");
    assert_eq!(pools["items"][0]["name"], "p");
    // Without --ca-cert the self-signed certificate is not trusted.
    let out = Command::new(weir_bin())
        .args(["--api", &url, "--token", &token, "pool", "ls"])
        .output()
        .expect("weir pool ls");
    assert!(!out.status.success());
}
