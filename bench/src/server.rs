//! Scenarios on a real in-process server on a loopback port: `api`,
//! `process-e2e` and `memory`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use weir::{ServeOptions, Server};

use crate::Row;

pub(crate) struct Bench {
    server: Server,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl Bench {
    pub(crate) async fn start() -> Result<Self, String> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed its options.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut ServeOptions)) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        let mut options =
            ServeOptions::resolve(None, Some(dir.path().to_owned()), Some(listen), None)
                .map_err(|e| e.to_string())?;
        adjust(&mut options);
        // Process runs are supervised by `weir supervise`: the `weir` binary
        // built next to this one (`cargo build --release -p weir`).
        options.process.supervisor = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("weir")))
            .filter(|weir| weir.exists());
        let server = Server::start(options).await.map_err(|e| e.to_string())?;
        let base = format!("http://{}", server.addr);
        Ok(Self {
            server,
            base,
            _dir: dir,
        })
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status}: {v}"));
        }
        Ok(v)
    }

    /// A process pool and a deployment running `true`.
    pub(crate) async fn setup(&self, limit: Option<u32>, paused: bool) -> Result<(), String> {
        self.post(
            "/api/v1/pools",
            json!({"name": "bench", "type": "process", "concurrency_limit": limit, "paused": paused}),
        )
        .await?;
        self.post(
            "/api/v1/deployments",
            json!({"name": "noop", "pool": "bench", "job_variables": {"command": "true"}}),
        )
        .await?;
        // A job that outlives its supervisor's start: its start is seen
        // only through what the host hears of the attempt, not the
        // supervisor's exit (issue #13: a 100 ms poll showed here).
        self.post(
            "/api/v1/deployments",
            json!({"name": "nap", "pool": "bench", "job_variables": {"command": "sleep 0.3"}}),
        )
        .await?;
        Ok(())
    }

    /// The server's store.
    pub(crate) fn store(&self) -> std::sync::Arc<dyn weir::Store> {
        self.server.store()
    }

    pub(crate) async fn stop(self) {
        self.server.shutdown();
        let _ = self.server.wait().await;
    }
}

/// `total` requests from `clients` tasks with one `reqwest::Client` each;
/// returns each request's latency and the wall time.
pub(crate) async fn hammer(
    base: &str,
    clients: usize,
    total: usize,
    create_run: bool,
) -> Result<(Vec<Duration>, Duration), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut samples = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let resp = if create_run {
                    client
                        .post(format!("{base}/api/v1/runs"))
                        .json(&json!({"deployment": "noop"}))
                        .send()
                        .await
                } else {
                    client.get(format!("{base}/healthz")).send().await
                }
                .map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                samples.push(t.elapsed());
                if !status.is_success() {
                    return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
            }
            Ok::<_, String>(samples)
        }));
    }
    let mut samples = Vec::with_capacity(total);
    for t in tasks {
        samples.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok((samples, start.elapsed()))
}

pub(crate) async fn scenario_api(total: usize, clients: usize) -> Result<Vec<Row>, String> {
    let bench = Bench::start().await?;
    bench.setup(None, true).await?;
    // Warm-up: connections, the deployment's first render.
    hammer(&bench.base, clients, clients * 4, false).await?;
    hammer(&bench.base, clients, clients, true).await?;
    let (health, health_wall) = hammer(&bench.base, clients, total, false).await?;
    let (runs, runs_wall) = hammer(&bench.base, clients, total, true).await?;
    eprintln!(
        "api: {clients} clients, {total} requests each way, pool paused; \
         {} runs created before the measured ones",
        clients
    );
    bench.stop().await;
    Ok(vec![
        Row::rate(
            format!("api: POST /api/v1/runs ({clients} clients)"),
            runs.len() as u64,
            runs_wall,
            "runs",
        ),
        Row::latency("api: POST /api/v1/runs latency", runs),
        Row::rate(
            format!("api: GET /healthz ({clients} clients)"),
            health.len() as u64,
            health_wall,
            "req",
        ),
        Row::latency("api: GET /healthz latency", health),
    ])
}

fn time(run: &Value, field: &str) -> Option<DateTime<Utc>> {
    run[field].as_str()?.parse().ok()
}

pub(crate) async fn scenario_process_e2e(
    total: usize,
    limit: u32,
    clients: usize,
) -> Result<Vec<Row>, String> {
    let bench = Bench::start().await?;
    bench.setup(Some(limit), false).await?;
    let store = bench.server.store();
    let start = Instant::now();
    let (create, create_wall) = hammer(&bench.base, clients, total, true).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = store.stats().await.map_err(|e| e.to_string())?;
        let count = |s: &str| stats.runs_by_state.get(s).copied().unwrap_or(0);
        let ended = count("Completed") + count("Failed") + count("Crashed") + count("Cancelled");
        if ended as usize >= total {
            if count("Completed") as usize != total {
                return Err(format!(
                    "process-e2e: not all runs completed: {:?}",
                    stats.runs_by_state
                ));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("process-e2e: timed out: {:?}", stats.runs_by_state));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let polled_wall = start.elapsed();
    let list: Value = reqwest::get(format!(
        "{}/api/v1/runs?state=Completed&limit={}",
        bench.base,
        total.min(1000)
    ))
    .await
    .map_err(|e| e.to_string())?
    .json()
    .await
    .map_err(|e| e.to_string())?;
    bench.stop().await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let mut waits = Vec::new();
    let (mut first, mut last) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    for run in &items {
        let (Some(c), Some(s), Some(e)) = (
            time(run, "created_at"),
            time(run, "started_at"),
            time(run, "ended_at"),
        ) else {
            continue;
        };
        waits.push((s - c).to_std().unwrap_or_default());
        first = Some(first.map_or(c, |f| f.min(c)));
        last = Some(last.map_or(e, |l| l.max(e)));
    }
    let span = match (first, last) {
        (Some(f), Some(l)) => (l - f).to_std().unwrap_or_default(),
        _ => polled_wall,
    };
    eprintln!(
        "process-e2e: {total} runs of `true`, pool limit {limit}; {} with timestamps; \
         first created → last ended {:.2} s, polled {:.2} s",
        waits.len(),
        span.as_secs_f64(),
        polled_wall.as_secs_f64()
    );

    // Baseline: fork/exec `true` with at most `limit` at a time.
    let sem = Arc::new(tokio::sync::Semaphore::new(limit as usize));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for _ in 0..total {
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(async move {
            let status = tokio::process::Command::new("true").status().await;
            drop(permit);
            status
        }));
    }
    for task in tasks {
        let status = task
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("baseline: `true` failed".into());
        }
    }
    let baseline = t.elapsed();
    Ok(vec![
        Row::rate(
            format!("process-e2e: runs of `true`, limit {limit} (created → ended)"),
            waits.len() as u64,
            span,
            "runs",
        ),
        Row::rate(
            "process-e2e: run creation during it (32 clients)",
            create.len() as u64,
            create_wall,
            "runs",
        ),
        Row::latency("process-e2e: created → started", waits),
        Row::rate(
            format!("process-e2e: baseline tokio::process `true`, {limit} at a time"),
            total as u64,
            baseline,
            "procs",
        ),
    ])
}

/// Created → started when Weir is idle: one run at a time, each waited for
/// before the next is created, so nothing queues. Baseline: the time to
/// spawn `true` directly.
pub(crate) async fn scenario_pickup(total: usize) -> Result<Vec<Row>, String> {
    let bench = Bench::start().await?;
    bench.setup(Some(8), false).await?;
    let waits = pickups(&bench, "noop", total).await?;
    // Fewer: each takes 0.3 s.
    let naps = pickups(&bench, "nap", total.min(40)).await?;
    bench.stop().await;
    let mut spawns = Vec::with_capacity(total);
    for _ in 0..total {
        let t = Instant::now();
        let mut child = tokio::process::Command::new("true")
            .spawn()
            .map_err(|e| e.to_string())?;
        spawns.push(t.elapsed());
        child.wait().await.map_err(|e| e.to_string())?;
    }
    Ok(vec![
        Row::latency("pickup: idle created → started (one run at a time)", waits),
        Row::latency("pickup: idle created → started, a job of `sleep 0.3`", naps),
        Row::latency("pickup: baseline spawn of `true`", spawns),
    ])
}

/// Created → started of `total` runs of `deployment`, one at a time.
async fn pickups(bench: &Bench, deployment: &str, total: usize) -> Result<Vec<Duration>, String> {
    let http = reqwest::Client::new();
    let mut waits = Vec::with_capacity(total);
    for _ in 0..total {
        let run = bench
            .post("/api/v1/runs", json!({"deployment": deployment}))
            .await?;
        let id = run["id"].as_str().unwrap_or_default().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = loop {
            let r: Value = http
                .get(format!("{}/api/v1/runs/{id}", bench.base))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if r["state"] == "Completed" {
                break r;
            }
            if r["state"] == "Failed" || r["state"] == "Crashed" || Instant::now() > deadline {
                return Err(format!("pickup: run did not complete: {r}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if let (Some(c), Some(s)) = (time(&done, "created_at"), time(&done, "started_at")) {
            waits.push((s - c).to_std().unwrap_or_default());
        }
    }
    Ok(waits)
}

fn rss_kib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) async fn scenario_memory(total: usize, clients: usize) -> Result<Vec<Row>, String> {
    let bench = Bench::start().await?;
    bench.setup(None, true).await?;
    // Warm up the HTTP path so the "before" figure includes its buffers.
    hammer(&bench.base, clients, clients * 4, false).await?;
    let before = rss_kib().ok_or("cannot read VmRSS")?;
    let (created, _) = hammer(&bench.base, clients, total, true).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib().ok_or("cannot read VmRSS")?;
    bench.stop().await;
    eprintln!(
        "memory: VmRSS of the whole bench process (in-process server + the bench's own \
         clients and allocator); pool paused, {} runs queued",
        created.len()
    );
    Ok(vec![
        Row::Value {
            name: "memory: RSS before (server + bench process)".into(),
            value: before / 1024.0,
            unit: "MiB",
        },
        Row::Value {
            name: format!("memory: RSS after queuing {} runs", created.len()),
            value: after / 1024.0,
            unit: "MiB",
        },
        Row::Value {
            name: "memory: growth per queued run".into(),
            value: (after - before) * 1024.0 / created.len().max(1) as f64,
            unit: "B",
        },
    ])
}
