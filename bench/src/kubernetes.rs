//! `kubernetes`: Jobs created per second through Weir against a real API
//! server (the test control plane of `tests/cluster/`, or any cluster the
//! kubeconfig in `WEIR_K8S_KUBECONFIG` names), next to a plain kube-rs loop
//! creating the same Jobs from the same number of concurrent tasks, in the
//! same run; and each run's submit → Job-created latency (POST /runs sent →
//! the Job's ADDED event seen by a watch in this process).
//!
//! Both sides create suspended Jobs (`spec.suspend: true`), so the job
//! controller, scheduler and kwok start no pods and the measurement is the
//! create path alone. Weir runs with its default request budget raised
//! (`qps = 10000`) so the budget is not what is measured; one more pass with
//! the default budget (50/s, burst 100) shows what it costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use weir::{ServeOptions, Server};

use crate::Row;

const CLIENTS: usize = 16;

async fn client(kubeconfig: &std::path::Path) -> Result<Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

async fn namespace(client: &Client, prefix: &str) -> Result<String, String> {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("{prefix}-{}", &id[id.len() - 8..]);
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).map_err(|e| e.to_string())?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| format!("create namespace {name}: {e}"))?;
    Ok(name)
}

/// Records when each Job of `ns` was first seen.
fn watch_created(client: &Client, ns: &str) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let job = match event {
                Ok(Event::Apply(j) | Event::InitApply(j)) => j,
                _ => continue,
            };
            if let Ok(mut m) = out.lock() {
                m.entry(job.name_any()).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

fn manifest(ns: &str, name: Option<&str>) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"namespace": ns, "labels": {"app": "bench"}},
        "spec": {"suspend": true, "backoffLimit": 0, "template": {
            "metadata": {"labels": {"app": "bench"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "busybox:1.36",
                                     "command": ["true"],
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    });
    if let Some(n) = name {
        job["metadata"]["name"] = json!(n);
    }
    job
}

async fn wait_for(seen: &Mutex<HashMap<String, Instant>>, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if seen.lock().map(|m| m.len()).unwrap_or(0) >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not all {n} Jobs appeared within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The plain loop: `CLIENTS` tasks creating `n` Jobs with kube-rs.
async fn plain(client: &Client, n: usize) -> Result<(Duration, String), String> {
    let ns = namespace(client, "bench-plain").await?;
    let seen = watch_created(client, &ns);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let api = api.clone();
        let next = next.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), String>(());
                }
                let job: Job = serde_json::from_value(manifest(&ns, Some(&format!("plain-{i}"))))
                    .map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &job)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    wait_for(&seen, n).await?;
    Ok((start.elapsed(), ns))
}

/// Through Weir: `CLIENTS` tasks creating `n` raw-Job runs over HTTP.
async fn through_weir(
    kubeconfig: &std::path::Path,
    client: &Client,
    n: usize,
    qps: Option<f64>,
) -> Result<(Duration, Vec<Duration>, String), String> {
    let ns = namespace(client, "bench-weir").await?;
    let seen = watch_created(client, &ns);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let mut options = ServeOptions::resolve(None, Some(dir.path().to_owned()), Some(listen), None)
        .map_err(|e| e.to_string())?;
    options.kubernetes.default.kubeconfig = Some(kubeconfig.to_owned());
    if let Some(q) = qps {
        options.kubernetes.default.qps = q;
        options.kubernetes.default.burst = q as u32;
    }
    let server = Server::start(options).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/api/v1/pools"))
        .json(&json!({"name": "k8s", "type": "kubernetes"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !created.status().is_success() {
        return Err(format!("create pool: {}", created.status()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let http = http.clone();
        let base = base.clone();
        let next = next.clone();
        let sent = sent.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), String>(());
                }
                let t = Instant::now();
                let resp = http
                    .post(format!("{base}/api/v1/runs"))
                    .json(&json!({"pool": "k8s", "job": manifest(&ns, None)}))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let run: Value = resp.json().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("create run: {status}: {run}"));
                }
                let id = run["id"].as_str().unwrap_or_default();
                if let Ok(mut m) = sent.lock() {
                    m.insert(format!("weir-{id}"), t);
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    wait_for(&seen, n).await?;
    let elapsed = start.elapsed();
    let latencies = {
        let sent = sent.lock().map_err(|e| e.to_string())?;
        let seen = seen.lock().map_err(|e| e.to_string())?;
        sent.iter()
            .filter_map(|(name, t)| seen.get(name).map(|s| s.saturating_duration_since(*t)))
            .collect()
    };
    server.shutdown();
    let _ = server.wait().await;
    Ok((elapsed, latencies, ns))
}

pub async fn scenario(n: usize) -> Result<Vec<Row>, String> {
    let kubeconfig = std::env::var_os("WEIR_K8S_KUBECONFIG")
        .map(std::path::PathBuf::from)
        .ok_or(
            "the kubernetes scenario needs WEIR_K8S_KUBECONFIG (eval \"$(tests/cluster/up.sh)\")",
        )?;
    let client = client(&kubeconfig).await?;
    let mut rows = Vec::new();
    let mut namespaces = Vec::new();
    // Alternate so neither side always runs on a warmer API server.
    let (plain_1, ns) = plain(&client, n).await?;
    namespaces.push(ns);
    let (weir_1, lat, ns) = through_weir(&kubeconfig, &client, n, Some(10_000.0)).await?;
    namespaces.push(ns);
    let (plain_2, ns) = plain(&client, n).await?;
    namespaces.push(ns);
    let (weir_default, lat_default, ns) = through_weir(&kubeconfig, &client, n, None).await?;
    namespaces.push(ns);
    rows.push(Row::rate(
        format!("kubernetes: plain kube-rs create loop ({CLIENTS} tasks), pass 1"),
        n as u64,
        plain_1,
        "jobs",
    ));
    rows.push(Row::rate(
        format!("kubernetes: plain kube-rs create loop ({CLIENTS} tasks), pass 2"),
        n as u64,
        plain_2,
        "jobs",
    ));
    rows.push(Row::rate(
        format!("kubernetes: through Weir, {CLIENTS} API clients (budget off)"),
        n as u64,
        weir_1,
        "jobs",
    ));
    rows.push(Row::latency(
        "kubernetes: submit → Job created via Weir (budget off)",
        lat,
    ));
    rows.push(Row::rate(
        format!("kubernetes: through Weir, {CLIENTS} API clients (default budget 50/s)"),
        n as u64,
        weir_default,
        "jobs",
    ));
    rows.push(Row::latency(
        "kubernetes: submit → Job created via Weir (default budget)",
        lat_default,
    ));
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        let _ = ns_api.delete(&ns, &DeleteParams::default()).await;
    }
    Ok(rows)
}
