//! `dashboard`: what the dashboard's pages cost with many runs stored (issue
//! #15: "fast with 100k runs"). A real in-process server; `--runs N` runs
//! (default 100,000) created through the API into a paused pool, 1 % of
//! them tagged `rare`; then, one request at a time, the requests each page
//! makes, with `GET /healthz` as the baseline in the same run, and the
//! bytes each page weighs (the shell, its script and stylesheet, and its
//! data).

use std::time::Instant;

use serde_json::json;

use crate::Row;
use crate::server::Bench;

/// Requests per measured path.
const SAMPLES: usize = 200;

pub(crate) async fn scenario(total: usize) -> Result<Vec<Row>, String> {
    let bench = Bench::start().await?;
    bench.setup(None, true).await?;
    let created = create(&bench.base, total, 32).await?;
    // The newest run: the last in its queue, behind every other.
    let deep = created.last().cloned().ok_or("no run created")?;
    let base = bench.base.clone();
    let client = reqwest::Client::new();
    let mut rows = Vec::new();

    // Page weight: the shell and its assets, as a first visit loads them.
    let mut shell = 0;
    for path in ["/runs", "/ui/app.js", "/ui/app.css"] {
        shell += get(&client, &base, path).await?.1;
    }
    rows.push(Row::Value {
        name: "dashboard: shell + script + stylesheet (first visit, uncompressed)".into(),
        value: shell as f64 / 1024.0,
        unit: "KiB",
    });

    let paths = [
        ("baseline: GET /healthz", "/healthz".to_owned()),
        ("runs page: newest 50", "/api/v1/runs?limit=50".to_owned()),
        (
            "runs page: state=Scheduled",
            "/api/v1/runs?state=Scheduled&limit=50".to_owned(),
        ),
        (
            "runs page: state=Completed (none stored)",
            "/api/v1/runs?state=Completed&limit=50".to_owned(),
        ),
        (
            "runs page: deployment=noop",
            "/api/v1/runs?deployment=noop&limit=50".to_owned(),
        ),
        (
            "runs page: tag=rare (1 %)",
            "/api/v1/runs?tag=rare&limit=50".to_owned(),
        ),
        ("overview: summary", "/api/v1/summary".to_owned()),
        ("overview: pools", "/api/v1/pools".to_owned()),
        ("overview: queues", "/api/v1/pools/bench/queues".to_owned()),
        (
            "run page: the newest run (last in its queue)",
            format!("/api/v1/runs/{deep}"),
        ),
    ];
    for (name, path) in &paths {
        // Warm-up: connections, caches.
        for _ in 0..10 {
            get(&client, &base, path).await?;
        }
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut bytes = 0;
        for _ in 0..SAMPLES {
            let t = Instant::now();
            bytes = get(&client, &base, path).await?.1;
            samples.push(t.elapsed());
        }
        rows.push(Row::latency(
            format!("dashboard @ {total} runs: {name}"),
            samples,
        ));
        rows.push(Row::Value {
            name: format!("dashboard @ {total} runs: {name}: response"),
            value: bytes as f64 / 1024.0,
            unit: "KiB",
        });
    }
    eprintln!(
        "dashboard: {} runs queued in a paused pool (1 % tagged rare); {SAMPLES} sequential \
         requests per path after 10 warm-up ones",
        created.len()
    );
    bench.stop().await;
    Ok(rows)
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Result<(u16, usize), String> {
    let resp = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "GET {path}: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok((status.as_u16(), body.len()))
}

/// `total` runs of `noop` from `clients` tasks; their ids in creation order
/// (per task, so roughly).
async fn create(base: &str, total: usize, clients: usize) -> Result<Vec<String>, String> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let base = base.to_owned();
        let share = total / clients + usize::from(c < total % clients);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::with_capacity(share);
            for i in 0..share {
                let tags = if (i * clients + c).is_multiple_of(100) {
                    json!(["rare"])
                } else {
                    json!(["common"])
                };
                let resp = client
                    .post(format!("{base}/api/v1/runs"))
                    .json(&json!({"deployment": "noop", "tags": tags}))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let v: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("POST /api/v1/runs: {status}: {v}"));
                }
                ids.push(v["id"].as_str().unwrap_or_default().to_owned());
            }
            Ok::<_, String>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(total);
    for t in tasks {
        ids.extend(t.await.map_err(|e| e.to_string())??);
    }
    eprintln!(
        "dashboard: created {} runs in {:.0} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ids)
}
