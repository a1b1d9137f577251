//! A Weir server started in-process on a loopback port with a temporary data
//! directory, and a small JSON client for it.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use weir::{ServeOptions, Server};

use crate::harness::eventually;

pub struct Api {
    _dir: tempfile::TempDir,
    pub server: Server,
    pub base: String,
    pub http: Client,
}

pub async fn start() -> Api {
    start_in(tempfile::tempdir().expect("tempdir")).await
}

/// Starts a server on an existing data directory (e.g. one prepared by a
/// test directly through the store).
pub async fn start_in(dir: tempfile::TempDir) -> Api {
    start_with(dir, |_| {}).await
}

/// Starts a server whose default Kubernetes connection is `kubeconfig`.
pub async fn start_kube(kubeconfig: &std::path::Path) -> Api {
    let kubeconfig = kubeconfig.to_owned();
    start_with(tempfile::tempdir().expect("tempdir"), move |o| {
        o.kubernetes.default.kubeconfig = Some(kubeconfig);
    })
    .await
}

/// Starts a server after `adjust` has changed its options.
pub async fn start_with(dir: tempfile::TempDir, adjust: impl FnOnce(&mut ServeOptions)) -> Api {
    let mut options = ServeOptions::resolve(
        None,
        Some(dir.path().to_owned()),
        Some("127.0.0.1:0".parse().expect("addr")),
        None,
    )
    .expect("options");
    // This test binary is not `weir`: process runs' supervisors are the real
    // binary's `weir supervise`.
    options.process.supervisor = Some(crate::harness::weir_bin());
    adjust(&mut options);
    let server = Server::start(options).await.expect("start weir");
    let base = format!("http://{}", server.addr);
    Api {
        _dir: dir,
        server,
        base,
        http: Client::new(),
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().expect("method"), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method.parse().expect("method"), self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let value = resp.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    /// Creates a run and waits until it has ended; returns it with history.
    pub async fn run_to_end(&self, body: Value) -> Value {
        let run = self.ok("POST", "/api/v1/runs", Some(body)).await;
        let id = run["id"].as_str().unwrap_or_default().to_owned();
        self.wait_state(&id, &["Completed", "Failed", "Crashed", "Cancelled"])
            .await
    }

    /// Uploads a component file as a version of plugin `name`.
    pub async fn upload(&self, name: &str, file: &std::path::Path) -> (StatusCode, Value) {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        self.raw("POST", &format!("/api/v1/plugins/{name}"), bytes)
            .await
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.send(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    pub async fn wait_state(&self, id: &str, states: &[&str]) -> Value {
        eventually(
            &format!("run {id} to reach {states:?}"),
            Duration::from_secs(30),
            || async {
                let run = self.ok("GET", &format!("/api/v1/runs/{id}"), None).await;
                states
                    .contains(&run["state"].as_str().unwrap_or(""))
                    .then_some(run)
            },
        )
        .await
    }

    /// A process pool `name` whose template takes `command` and an
    /// `image` variable (put in the job's env as `IMAGE`), as plugins that
    /// judge images want.
    pub async fn image_pool(&self, name: &str) {
        self.ok(
            "POST",
            "/api/v1/pools",
            Some(
                serde_json::json!({"name": name, "type": "process", "base_job_template": {
            "job_configuration": {"command": "{{ command }}", "env": {"IMAGE": "{{ image }}"}},
            "variables": {"type": "object", "required": ["command"], "properties": {
                "command": {"type": "string"},
                "image": {"type": "string", "default": "none"}}}}}),
            ),
        )
        .await;
    }

    /// The text `/metrics` answers.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Everything a client can see, to prove a refused request changed nothing.
    pub async fn snapshot(&self) -> Value {
        let mut s = json!({});
        s["pools"] = self.ok("GET", "/api/v1/pools", None).await;
        s["limits"] = self.ok("GET", "/api/v1/limits", None).await;
        s["deployments"] = self.ok("GET", "/api/v1/deployments", None).await;
        s["runs"] = self.ok("GET", "/api/v1/runs?limit=1000", None).await;
        let mut queues = Vec::new();
        for p in s["pools"]["items"].as_array().cloned().unwrap_or_default() {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            queues.push(
                self.ok("GET", &format!("/api/v1/pools/{name}/queues"), None)
                    .await,
            );
        }
        s["queues"] = Value::Array(queues);
        s
    }
}
