//! `memory-serve` (issue #5, scenario 6): RSS of a real `weir serve` child
//! process idle, with 20 plugin versions loaded and used, and with 100,000
//! queued runs.
//!
//! The five example plugins are uploaded four times each (versions 1–4; each
//! copy differs by a custom section naming the copy, so it has its own
//! digest and is compiled on its own). Pool `plugins-K` (kubernetes, paused)
//! binds version K of the two admission plugins and the two mutators; the
//! router chain binds `tag-router` version K while pool K's probe runs are
//! created, then version 4 stays bound. Every version is thus compiled and
//! called: admission and the router at run creation, the mutators through
//! `deployment render`. Then `--queued` runs (default 100,000) are created
//! over HTTP into the paused process pool `queued`, through the router chain
//! (its pool has no admission bindings: see BENCHMARKS.md for why).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::WeirServe;
use crate::{Row, build_plugins, loadavg};

const PLUGINS: [(&str, &str); 5] = [
    ("tag-router", "router"),
    ("approved-registries", "admission"),
    ("team-quota", "admission"),
    ("gpu-node-selector", "mutator"),
    ("team-resources", "mutator"),
];
const VERSIONS: u32 = 4;

fn config(plugin: &str) -> Value {
    match plugin {
        "tag-router" => {
            json!({"rules": [{"tag": "gpu", "queue": "default", "add_tags": ["routed"]}]})
        }
        "approved-registries" => json!({"prefixes": ["registry.example.com/", "ghcr.io/acme/"]}),
        "team-quota" => json!({"max_running": 5, "defer_seconds": 30}),
        "gpu-node-selector" => json!({"node_selector": {"accelerator": "nvidia-a100"}}),
        _ => json!({"teams": {"ml": {"default": {"cpu": "1", "memory": "2Gi"},
                                      "max": {"cpu": "8", "memory": "32Gi"}}}}),
    }
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The component with a custom section `weir-bench-copy` holding `copy`
/// appended: the same code under another digest.
pub(crate) fn copy_of(bytes: &[u8], copy: u32) -> Vec<u8> {
    let name = b"weir-bench-copy";
    let payload = copy.to_string();
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Value, String> {
        let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("{what}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{what}: {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let req = self.http.post(format!("{}{path}", self.base)).json(&body);
        self.send(req, &format!("POST {path}")).await
    }
}

fn mib(name: impl Into<String>, kib: Option<f64>) -> Option<Row> {
    kib.map(|k| Row::Value {
        name: name.into(),
        value: k / 1024.0,
        unit: "MiB",
    })
}

pub(crate) fn memory_rows(serve: &WeirServe, scenario: &str, when: &str) -> Vec<Row> {
    eprintln!(
        "{scenario}: {when}: VmRSS {:.1} MiB, VmHWM {:.1} MiB, RssAnon {:.1} MiB, RssFile {:.1} MiB",
        serve.kib("VmRSS").unwrap_or(0.0) / 1024.0,
        serve.kib("VmHWM").unwrap_or(0.0) / 1024.0,
        serve.kib("RssAnon").unwrap_or(0.0) / 1024.0,
        serve.kib("RssFile").unwrap_or(0.0) / 1024.0,
    );
    [
        mib(
            format!("{scenario}: weir serve RSS, {when}"),
            serve.kib("VmRSS"),
        ),
        mib(
            format!("{scenario}: weir serve anonymous RSS, {when}"),
            serve.kib("RssAnon"),
        ),
        mib(
            format!("{scenario}: weir serve peak RSS (VmHWM), {when}"),
            serve.kib("VmHWM"),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Creates `n` runs of a deployment over HTTP from `clients` tasks; returns
/// each request's latency.
async fn create_runs(
    base: &str,
    deployment: &str,
    n: usize,
    clients: usize,
) -> Result<Vec<Duration>, String> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.min(n.max(1)) {
        let next = next.clone();
        let url = format!("{base}/api/v1/runs");
        let body = json!({"deployment": deployment});
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut samples = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                samples.push(t.elapsed());
                if !status.is_success() {
                    return Err(format!("POST /api/v1/runs: {status}: {text}"));
                }
            }
            Ok::<_, String>(samples)
        }));
    }
    let mut samples = Vec::with_capacity(n);
    for t in tasks {
        samples.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(samples)
}

pub(crate) async fn scenario(queued: usize, clients: usize) -> Result<Vec<Row>, String> {
    let dist = build_plugins()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let serve = WeirServe::start(dir.path()).await?;
    let api = Api {
        http: reqwest::Client::new(),
        base: serve.base.clone(),
    };
    let mut rows = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.extend(memory_rows(&serve, "memory-serve", "idle"));

    api.post(
        "/api/v1/pools",
        json!({"name": "queued", "type": "process", "paused": true}),
    )
    .await?;
    api.post(
        "/api/v1/deployments",
        json!({"name": "noop", "pool": "queued", "job_variables": {"command": "true"}}),
    )
    .await?;
    for k in 1..=VERSIONS {
        api.post(
            "/api/v1/pools",
            json!({"name": format!("plugins-{k}"), "type": "kubernetes", "paused": true}),
        )
        .await?;
        api.post(
            "/api/v1/deployments",
            json!({"name": format!("train-{k}"), "pool": format!("plugins-{k}"), "tags": ["gpu"],
                   "job_variables": {"image": "registry.example.com/ml/trainer:1",
                                     "labels": {"team": "ml"}}}),
        )
        .await?;
    }

    // 20 versions, each compiled by the server at upload.
    let t = Instant::now();
    for (plugin, _) in PLUGINS {
        let path = dist.join(format!("{plugin}.wasm"));
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for k in 1..=VERSIONS {
            let v = api
                .send(
                    api.http
                        .post(format!("{}/api/v1/plugins/{plugin}", api.base))
                        .body(copy_of(&bytes, k)),
                    &format!("add {plugin} copy {k}"),
                )
                .await?;
            if v["version"] != json!(k) {
                return Err(format!("{plugin} copy {k} stored as {v}"));
            }
        }
    }
    let uploads = t.elapsed();
    rows.extend(memory_rows(
        &serve,
        "memory-serve",
        "20 plugin versions uploaded",
    ));

    // Bind and use every version.
    let mut admitted_before = Vec::new();
    for k in 1..=VERSIONS {
        api.post(
            "/api/v1/routers",
            json!({"plugin": "tag-router", "version": k, "config": config("tag-router")}),
        )
        .await?;
        for (plugin, world) in PLUGINS {
            if world == "router" {
                continue;
            }
            api.post(
                &format!("/api/v1/pools/plugins-{k}/bindings"),
                json!({"plugin": plugin, "version": k, "config": config(plugin)}),
            )
            .await?;
        }
        admitted_before.extend(create_runs(&api.base, &format!("train-{k}"), 10, 1).await?);
        let job = api
            .post(&format!("/api/v1/deployments/train-{k}/render"), json!({}))
            .await?;
        if !job["job_configuration"].to_string().contains("nvidia-a100") {
            return Err(format!(
                "memory-serve: the mutators of plugins-{k} did not run: {job}"
            ));
        }
        if k < VERSIONS {
            let req = api
                .http
                .delete(format!("{}/api/v1/routers/tag-router", api.base));
            let resp = req.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("unbind tag-router: {}", resp.status()));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.extend(memory_rows(
        &serve,
        "memory-serve",
        "20 plugin versions bound and called",
    ));
    eprintln!(
        "memory-serve: 20 uploads in {:.1} s; load average {}",
        uploads.as_secs_f64(),
        loadavg()
    );

    // The queue, in chunks, so the create rate can be followed with depth.
    let chunk = (queued / 10).max(1);
    let mut done = 0;
    let fill = Instant::now();
    while done < queued {
        let n = chunk.min(queued - done);
        let t = Instant::now();
        let samples = create_runs(&api.base, "noop", n, clients).await?;
        let took = t.elapsed();
        done += n;
        eprintln!(
            "memory-serve: {done} queued; last {n} at {:.0} runs/s, median {:.1} ms; VmRSS {:.1} MiB",
            n as f64 / took.as_secs_f64(),
            {
                let mut s = samples.clone();
                s.sort();
                s[s.len() / 2].as_secs_f64() * 1e3
            },
            serve.kib("VmRSS").unwrap_or(0.0) / 1024.0
        );
        rows.push(Row::Tagged(
            json!({"scenario": "memory-serve", "depth": done}),
            Box::new(Row::rate(
                format!(
                    "memory-serve: POST /api/v1/runs, runs {}–{done}",
                    done - n + 1
                ),
                n as u64,
                took,
                "runs",
            )),
        ));
    }
    let fill = fill.elapsed();
    eprintln!(
        "memory-serve: {queued} runs created in {:.0} s; load average {}",
        fill.as_secs_f64(),
        loadavg()
    );
    // Past late_after (15 s), so the scheduler has marked them all Late: the
    // steady state of a long queue.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let waiting: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("weir_runs{") && (l.contains("Late") || l.contains("Scheduled")))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    eprintln!("memory-serve: /metrics counts {waiting} waiting runs");
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.extend(memory_rows(
        &serve,
        "memory-serve",
        &format!("{queued} queued + 20 plugin versions"),
    ));

    // Admission with the queue behind it (its stats read the runs table).
    let admitted_after = create_runs(&api.base, "train-1", 40, 1).await?;
    rows.push(Row::latency(
        "memory-serve: POST /api/v1/runs with admission, before the queue",
        admitted_before,
    ));
    rows.push(Row::latency(
        format!("memory-serve: POST /api/v1/runs with admission, {queued} queued"),
        admitted_after,
    ));
    serve.stop().await;
    Ok(rows)
}
