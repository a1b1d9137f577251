//! `load`: issue #6's load test with its latencies recorded. 64 clients
//! submit 10,000 runs with idempotency keys (every fifth key twice, racing),
//! every seventh run is cancelled, while the runs execute on a process pool
//! with a concurrency limit and a tag limit. A prober reads a run and
//! `/healthz` every 10 ms throughout: the API's responsiveness under load.
//! The end state is checked (one run per key, every run terminal, no slot
//! held); the correctness test is `tests/tests/load.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use weir::{ServeOptions, Server};

use crate::Row;

const POOL_LIMIT: u32 = 8;
const TAG_LIMIT: u32 = 2;

#[derive(Default)]
struct Samples {
    create: Vec<Duration>,
    repeat: Vec<Duration>,
    cancel: Vec<Duration>,
}

pub(crate) async fn scenario(keys: usize, clients: usize) -> Result<Vec<Row>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let options = ServeOptions::resolve(None, Some(dir.path().to_owned()), Some(listen), None)
        .map_err(|e| e.to_string())?;
    let server = Server::start(options).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{base}{path}")).json(&body);
        async move {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let v: Value = resp.json().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(v)
            } else {
                Err(format!("{status}: {v}"))
            }
        }
    };
    post(
        "/api/v1/pools",
        json!({"name": "load", "type": "process", "concurrency_limit": POOL_LIMIT}),
    )
    .await?;
    post(
        "/api/v1/limits",
        json!({"tag": "scarce", "limit": TAG_LIMIT}),
    )
    .await?;
    let first = post(
        "/api/v1/runs",
        json!({"pool": "load", "job": {"command": "true"}}),
    )
    .await?;
    let probe_id = first["id"].as_str().unwrap_or_default().to_owned();

    // The prober: a read and a health check every 10 ms until the clients end.
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let (done, base, http) = (done.clone(), base.clone(), http.clone());
        tokio::spawn(async move {
            let mut reads = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = http
                    .get(format!("{base}/api/v1/runs/{probe_id}"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    return Err("the prober's read failed under load".to_owned());
                }
                reads.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, String>(reads)
        })
    };

    let answers: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, answers, base) = (next.clone(), answers.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut s = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<_, String>(s);
                }
                let tags = if i.is_multiple_of(3) {
                    json!(["scarce"])
                } else {
                    json!([])
                };
                let body = json!({"pool": "load", "job": {"command": "true"},
                                  "idempotency_key": format!("key-{i}"), "tags": tags});
                let times = if i.is_multiple_of(5) { 2 } else { 1 };
                let sends = (0..times).map(|_| {
                    let req = http.post(format!("{base}/api/v1/runs")).json(&body);
                    async move {
                        let t = Instant::now();
                        let resp = req.send().await.map_err(|e| e.to_string())?;
                        let status = resp.status();
                        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
                        if !status.is_success() {
                            return Err(format!("key-{i}: {status}: {v}"));
                        }
                        Ok((t.elapsed(), status.as_u16(), v))
                    }
                });
                for r in futures::future::join_all(sends).await {
                    let (took, status, run) = r?;
                    // 201: a new run; 200: the key's first run again.
                    if status == 201 {
                        s.create.push(took);
                    } else {
                        s.repeat.push(took);
                    }
                    let id = run["id"].as_str().unwrap_or_default().to_owned();
                    answers.lock().await.entry(i).or_default().push(id.clone());
                    if i.is_multiple_of(7) {
                        let t = Instant::now();
                        let resp = http
                            .post(format!("{base}/api/v1/runs/{id}/cancel"))
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        // 409: it had ended or was cancelled already.
                        if !(resp.status().is_success() || resp.status().as_u16() == 409) {
                            return Err(format!("cancel {id}: {}", resp.status()));
                        }
                        s.cancel.push(t.elapsed());
                    }
                }
            }
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        let s = t.await.map_err(|e| e.to_string())??;
        all.create.extend(s.create);
        all.repeat.extend(s.repeat);
        all.cancel.extend(s.cancel);
    }
    let submit_wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let reads = prober.await.map_err(|e| e.to_string())??;

    // The end state: one run per key, every run terminal, no slot held.
    let answers = answers.lock().await;
    let mut distinct = std::collections::HashSet::new();
    for (key, ids) in answers.iter() {
        if ids.iter().any(|id| id != &ids[0]) {
            return Err(format!("key-{key} got two runs: {ids:?}"));
        }
        distinct.insert(ids[0].clone());
    }
    if answers.len() != keys || distinct.len() != keys {
        return Err(format!(
            "{} keys answered, {} distinct runs, {keys} expected",
            answers.len(),
            distinct.len()
        ));
    }
    let store = server.store();
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let stats = store.stats().await.map_err(|e| e.to_string())?;
        let n = |s: &str| stats.runs_by_state.get(s).copied().unwrap_or(0) as usize;
        let ended = n("Completed") + n("Cancelled") + n("Failed") + n("Crashed");
        if ended == keys + 1 {
            if n("Failed") + n("Crashed") > 0 {
                return Err(format!("load: runs failed: {:?}", stats.runs_by_state));
            }
            if stats.slots.values().any(|(used, _)| *used > 0) {
                return Err(format!("load: slots left held: {:?}", stats.slots));
            }
            eprintln!(
                "load: {keys} keys ({} sent twice), {} cancels; submitted in {:.1} s, \
                 all ended {:.1} s after the first submission: {:?}",
                all.repeat.len(),
                all.cancel.len(),
                submit_wall.as_secs_f64(),
                start.elapsed().as_secs_f64(),
                stats.runs_by_state
            );
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("load: timed out: {:?}", stats.runs_by_state));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown();
    let _ = server.wait().await;
    Ok(vec![
        Row::rate(
            format!("load: runs submitted ({clients} clients, {keys} keys)"),
            keys as u64,
            submit_wall,
            "runs",
        ),
        Row::latency("load: POST /api/v1/runs, new key", all.create),
        Row::latency("load: POST /api/v1/runs, repeated key", all.repeat),
        Row::latency("load: POST /api/v1/runs/{id}/cancel", all.cancel),
        Row::latency("load: GET /api/v1/runs/{id} every 10 ms", reads),
    ])
}
