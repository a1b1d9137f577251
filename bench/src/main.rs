//! `cargo run --release -p weir-bench -- [SCENARIO...] [--json FILE] [--iterations N]`
//!
//! Scenarios (issue #5):
//! - `plugin-chain`: route + admit + mutate with the example plugins on a
//!   ~2 KB Kubernetes Job, a fresh instance per call, next to native Rust
//!   code making the same decisions and the same change in the same run.
//! - `scheduler`: `release_ready` on a real SQLite store (one pool, 10
//!   queues, 3 tag limits) with runs completed instantly, next to the same
//!   decisions on an in-memory model (`--runs N`, default 10,000).
//! - `api`: 32 clients creating runs over HTTP on an in-process server (pool
//!   paused), next to the same clients hitting `GET /healthz`.
//! - `process-e2e`: 1,000 runs of `true` on a process pool limited to 8,
//!   next to a plain loop spawning `true` with at most 8 at a time.
//! - `pickup`: created → started when idle (200 runs, one at a time), next to
//!   the time to spawn `true` directly.
//! - `memory`: the bench process's RSS before and after queuing 10,000 runs.
//! - `kubernetes` (needs `WEIR_K8S_KUBECONFIG`): Jobs created per second
//!   through Weir next to a plain kube-rs create loop against the same API
//!   server, and submit → Job-created latency (`--jobs N`, default 500).
//! - `memory-serve`: RSS of a real `weir serve` idle, with 20 plugin versions
//!   loaded and called, and with `--queued N` (default 100,000) runs queued.
//! - `memory-guests` (needs `WEIR_GUESTS`): what a Python or JavaScript
//!   plugin version costs a real `weir serve`: the time to add one, and the
//!   RSS it holds once loaded from the compiled-artifact cache after a
//!   restart.
//! - `growth`: the `scheduler` set-up at `--depths` (default 1k, 10k, 100k,
//!   1M) queued runs: per-decision cost over `--sample N` decisions (default
//!   5,000), the other queries of a scheduler pass, and RSS, next to the
//!   in-memory model at the same depths.
//!
//! `weir-bench plot RESULTS.json... [--out-dir DIR]` draws `latency.png`
//! (p50/p90/p99 of the latency rows) and `growth.png` from such files.
//!
//! Prints a table (median, p99, min–max for latencies; a rate for
//! throughput) and, with `--json`, writes the results for comparisons between
//! commits. Nothing here is a test.

mod dashboard;
mod decisions;
mod growth;
mod kubernetes;
mod load;
mod memory_guests;
mod memory_serve;
mod plot;
mod scheduler;
mod schedules;
mod serve;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::{
    Admission, Counts, FixedStats, LoadedPlugin, Lookup, Mutated, PluginLimits as Limits,
    PluginRuntime, RunContext, Stats,
};

pub(crate) struct Summary {
    pub(crate) name: String,
    pub(crate) samples: Vec<Duration>,
}

/// A throughput: `count` things in `seconds`.
pub(crate) struct Rate {
    pub(crate) name: String,
    pub(crate) count: u64,
    pub(crate) seconds: f64,
    pub(crate) unit: &'static str,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-12)
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "count": self.count,
            "seconds": self.seconds,
            "unit": self.unit,
            "per_second": self.per_second(),
        })
    }
}

/// One line of the report.
pub(crate) enum Row {
    Latency(Summary),
    Rate(Rate),
    /// A measured quantity that is neither (e.g. memory), with its unit.
    Value {
        name: String,
        value: f64,
        unit: &'static str,
    },
    /// A row with fields for the plot and comparisons (scenario, depth,
    /// metric), merged into its JSON.
    Tagged(Value, Box<Row>),
    /// Structured information that is not a measurement (query plans).
    Info {
        name: String,
        detail: Value,
    },
}

impl Row {
    pub(crate) fn latency(name: impl Into<String>, samples: Vec<Duration>) -> Self {
        Row::Latency(Summary {
            name: name.into(),
            samples,
        })
    }

    pub(crate) fn rate(
        name: impl Into<String>,
        count: u64,
        elapsed: Duration,
        unit: &'static str,
    ) -> Self {
        Row::Rate(Rate {
            name: name.into(),
            count,
            seconds: elapsed.as_secs_f64(),
            unit,
        })
    }

    fn json(&self) -> Value {
        match self {
            Row::Latency(s) => s.json(),
            Row::Rate(r) => r.json(),
            Row::Value { name, value, unit } => json!({"name": name, "value": value, "unit": unit}),
            Row::Tagged(tags, row) => {
                let mut v = row.json();
                if let (Some(o), Some(t)) = (v.as_object_mut(), tags.as_object()) {
                    for (k, x) in t {
                        o.insert(k.clone(), x.clone());
                    }
                }
                v
            }
            Row::Info { name, detail } => json!({"name": name, "detail": detail}),
        }
    }

    fn print(&self) {
        match self {
            Row::Latency(r) => println!(
                "{:<64} {:>12} {:>12} {:>24}",
                r.name,
                fmt_us(r.percentile(0.5)),
                fmt_us(r.percentile(0.99)),
                format!(
                    "{} – {}",
                    fmt_us(r.percentile(0.0)),
                    fmt_us(r.percentile(1.0))
                )
            ),
            Row::Rate(r) => println!(
                "{:<64} {:>12} {:>12} {:>24}",
                r.name,
                format!("{:.0} {}/s", r.per_second(), r.unit),
                "",
                format!("{} in {:.2} s", r.count, r.seconds)
            ),
            Row::Value { name, value, unit } => println!(
                "{:<64} {:>12} {:>12} {:>24}",
                name,
                format!("{value:.1} {unit}"),
                "",
                ""
            ),
            Row::Tagged(_, row) => row.print(),
            Row::Info { name, .. } => println!("{name}: in the JSON"),
        }
    }
}

impl Summary {
    fn percentile(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        let idx = ((s.len() as f64 - 1.0) * p).round() as usize;
        s.get(idx).copied().unwrap_or_default()
    }

    fn json(&self) -> Value {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        json!({
            "name": self.name,
            "samples": self.samples.len(),
            "median_us": us(self.percentile(0.5)),
            "p90_us": us(self.percentile(0.9)),
            "p99_us": us(self.percentile(0.99)),
            "min_us": us(self.percentile(0.0)),
            "max_us": us(self.percentile(1.0)),
        })
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build_plugins() -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(root().join("plugins/build.sh"))
        // build.sh expects the plugins' own target directory.
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|e| format!("cannot run plugins/build.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "plugins/build.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(root().join("plugins/dist"))
}

/// A realistic ~2 KB Job configuration, as the template renders it.
fn job() -> Value {
    json!({
        "namespace": "batch",
        "pod_start_timeout_seconds": 300,
        "job_manifest": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "weir-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                "namespace": "batch",
                "labels": {"weir.dev/run-id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                           "weir.dev/pool": "gpu", "weir.dev/queue": "default",
                           "weir.dev/deployment": "train", "team": "ml", "app": "trainer"},
                "annotations": {"example.com/owner": "ml-platform", "example.com/cost-center": "4711"}
            },
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": {"weir.dev/run-id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                                             "weir.dev/pool": "gpu", "team": "ml"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": "trainer",
                        "containers": [{
                            "name": "job",
                            "image": "registry.example.com/ml/trainer:2024.11.3",
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["python", "-m", "trainer.main", "--epochs", "10", "--batch-size", "256",
                                     "--dataset", "s3://example-datasets/imagenet/train", "--checkpoint-every", "1000"],
                            "env": [
                                {"name": "WEIR_API_URL", "value": "http://weir.weir.svc:4680"},
                                {"name": "WEIR_RUN_ID", "value": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"},
                                {"name": "WEIR_PARAMETERS", "value": "{\"epochs\":10,\"lr\":0.001}"},
                                {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.ml.svc:5000"},
                                {"name": "NCCL_DEBUG", "value": "WARN"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                                {"name": "OMP_NUM_THREADS", "value": "8"}
                            ],
                            "resources": {"requests": {"cpu": "4", "memory": "16Gi"},
                                          "limits": {"cpu": "8", "memory": "32Gi"}},
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                                             {"name": "shm", "mountPath": "/dev/shm"}]
                        }],
                        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "100Gi"}},
                                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
                    }
                }
            }
        }
    })
}

fn ctx() -> RunContext {
    serde_json::from_value(json!({
        "run_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "deployment": "train",
        "pool": "default-pool",
        "queue": "default",
        "tags": ["gpu", "ml"],
        "labels": {"team": "ml"},
        "parameters": {"epochs": 10, "lr": 0.001},
        "job_variables": {"image": "registry.example.com/ml/trainer:2024.11.3", "labels": {"team": "ml"}},
        "parent_run": null
    }))
    .unwrap_or_else(|e| panic!("bench context: {e}"))
}

const ROUTER_CONFIG: &str =
    r#"{"rules": [{"tag": "gpu", "pool": "gpu", "queue": "default", "add_tags": ["routed"]}]}"#;
const ADMISSION_CONFIG: &str = r#"{"prefixes": ["registry.example.com/", "ghcr.io/acme/"]}"#;
const MUTATOR_CONFIG: &str = r#"{"node_selector": {"accelerator": "nvidia-a100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}"#;

/// The same decisions and change, in plain Rust.
fn native_chain(ctx: &RunContext, job: &Value) -> Value {
    // Route: first rule whose tag matches.
    let mut pool = ctx.pool.clone();
    if ctx.tags.iter().any(|t| t == "gpu") {
        pool = "gpu".into();
    }
    std::hint::black_box(&pool);
    // Admit: the image has an approved prefix.
    let image = ctx.job_variables["image"].as_str().unwrap_or("");
    let admitted = ["registry.example.com/", "ghcr.io/acme/"]
        .iter()
        .any(|p| image.starts_with(p));
    std::hint::black_box(admitted);
    // Mutate: nodeSelector, tolerations and GPU limits, as an RFC 6902 diff
    // applied to the job (what the host does with a plugin's answer).
    let mut after = job.clone();
    let spec = &mut after["job_manifest"]["spec"]["template"]["spec"];
    spec["nodeSelector"] = json!({"accelerator": "nvidia-a100"});
    spec["tolerations"] =
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            c["resources"]["limits"]["nvidia.com/gpu"] = json!("1");
            c["resources"]["requests"]["nvidia.com/gpu"] = json!("1");
        }
    }
    let patch = json_patch::diff(job, &after);
    let mut patched = job.clone();
    if json_patch::patch(&mut patched, &patch).is_err() {
        panic!("native patch does not apply");
    }
    patched
}

async fn plugin_chain(
    router: &LoadedPlugin,
    admission: &LoadedPlugin,
    mutator: &LoadedPlugin,
    ctx: &RunContext,
    job: &Value,
    limits: &Limits,
) -> Value {
    // The counts a store would answer, here fixed (the chain's cost, not the
    // store's, is measured).
    let lookup: Arc<dyn Lookup> = Arc::new(FixedStats::from(&Stats {
        pool: Counts::default(),
        queue: Counts::default(),
        tags: Vec::new(),
        team: Some("ml".into()),
        team_counts: Counts::default(),
    }));
    let (r, _) = router.route(ROUTER_CONFIG, ctx, &lookup, limits).await;
    let route = r.unwrap_or_else(|e| panic!("route: {e}"));
    std::hint::black_box(route);
    let (a, _) = admission
        .admit(ADMISSION_CONFIG, ctx, &lookup, limits)
        .await;
    match a.unwrap_or_else(|e| panic!("admit: {e}")) {
        Admission::Admit => {}
        other => panic!("unexpected admission {other:?}"),
    }
    let (m, _) = mutator
        .mutate(MUTATOR_CONFIG, ctx, job, &[], &lookup, limits)
        .await;
    match m.unwrap_or_else(|e| panic!("mutate: {e}")) {
        Mutated::Job { job, .. } => job,
        Mutated::Reject(r) => panic!("mutator rejected: {r}"),
    }
}

async fn scenario_plugin_chain(iterations: usize) -> Result<Vec<Summary>, String> {
    let dist = build_plugins()?;
    let runtime = PluginRuntime::new(None, 8).map_err(|e| e.to_string())?;
    let load = |name: &str| {
        let runtime: Arc<PluginRuntime> = runtime.clone();
        let path = dist.join(format!("{name}.wasm"));
        async move {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            runtime.load(&bytes).await.map_err(|e| e.to_string())
        }
    };
    let router = load("tag-router").await?;
    let admission = load("approved-registries").await?;
    let mutator = load("gpu-node-selector").await?;
    let ctx = ctx();
    let job = job();
    let job_bytes = job.to_string().len();
    eprintln!(
        "plugin-chain: job is {job_bytes} bytes; allocator {}; {iterations} iterations after warm-up",
        runtime.allocator()
    );
    let limits = Limits::default();
    // The two must agree on the result.
    let from_plugins = plugin_chain(&router, &admission, &mutator, &ctx, &job, &limits).await;
    let from_native = native_chain(&ctx, &job);
    let spec = |v: &Value| v["job_manifest"]["spec"]["template"]["spec"]["nodeSelector"].clone();
    if spec(&from_plugins) != spec(&from_native) {
        return Err("the plugin chain and the native chain disagree".into());
    }
    for _ in 0..iterations / 10 {
        plugin_chain(&router, &admission, &mutator, &ctx, &job, &limits).await;
        std::hint::black_box(native_chain(&ctx, &job));
    }
    // Where the chain's time goes, call by call (each measured by the
    // runtime from its concurrency permit to its result).
    let mut stages: [Vec<Duration>; 3] = Default::default();
    let lookup: Arc<dyn Lookup> = Arc::new(FixedStats::default());
    for _ in 0..iterations.min(500) {
        stages[0].push(router.route(ROUTER_CONFIG, &ctx, &lookup, &limits).await.1);
        stages[1].push(
            admission
                .admit(ADMISSION_CONFIG, &ctx, &lookup, &limits)
                .await
                .1,
        );
        stages[2].push(
            mutator
                .mutate(MUTATOR_CONFIG, &ctx, &job, &[], &lookup, &limits)
                .await
                .1,
        );
    }
    let mut stage_summaries: Vec<Summary> = ["route", "admit", "mutate"]
        .iter()
        .zip(stages)
        .map(|(n, samples)| Summary {
            name: format!("plugin-chain: {n} alone (call time)"),
            samples,
        })
        .collect();
    let mut wasm = Vec::with_capacity(iterations);
    let mut native = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        std::hint::black_box(
            plugin_chain(&router, &admission, &mutator, &ctx, &job, &limits).await,
        );
        wasm.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(native_chain(&ctx, &job));
        native.push(t.elapsed());
    }
    let mut out = vec![
        Summary {
            name: "plugin-chain: wasm (route+admit+mutate, fresh instances)".into(),
            samples: wasm,
        },
        Summary {
            name: "plugin-chain: native Rust, same change".into(),
            samples: native,
        },
    ];
    out.append(&mut stage_summaries);
    out.append(&mut guest_stages(&runtime, &mutator, &ctx, &job, iterations).await?);
    Ok(out)
}

/// The same admit and mutate decisions by the Python and JavaScript versions
/// of `approved-registries` and `gpu-node-selector` (weir:plugin@0.2.0;
/// `tests/plugins/guests/build.sh` builds them into the directory named by
/// `WEIR_GUESTS`), call by call, each checked to change the job as the Rust
/// mutator does. No rows, and a line saying so, without `WEIR_GUESTS`.
async fn guest_stages(
    runtime: &Arc<PluginRuntime>,
    rust_mutator: &LoadedPlugin,
    ctx: &RunContext,
    job: &Value,
    iterations: usize,
) -> Result<Vec<Summary>, String> {
    let Some(dir) = std::env::var_os("WEIR_GUESTS") else {
        eprintln!(
            "plugin-chain: WEIR_GUESTS is not set (tests/plugins/guests/build.sh prints it); no Python or JavaScript rows"
        );
        return Ok(Vec::new());
    };
    // A roomy deadline: what is measured is the time a call takes, not
    // whether it fits the default 50 ms.
    let limits = Limits {
        deadline: Duration::from_secs(2),
        ..Limits::default()
    };
    let lookup: Arc<dyn Lookup> = Arc::new(FixedStats::default());
    fn mutated<E: std::fmt::Display>(m: Result<Mutated, E>, who: &str) -> Result<Value, String> {
        match m {
            Ok(Mutated::Job { job, .. }) => Ok(job),
            Ok(Mutated::Reject(r)) => Err(format!("{who} rejected: {r}")),
            Err(e) => Err(format!("{who}: {e}")),
        }
    }
    let expected = mutated(
        rust_mutator
            .mutate(MUTATOR_CONFIG, ctx, job, &[], &lookup, &limits)
            .await
            .0,
        "rust mutator",
    )?;
    let mut out = Vec::new();
    let rss_mib = || serve::status_kib(None, "VmRSS").unwrap_or(0.0) / 1024.0;
    for language in ["python", "js"] {
        let rss_before = rss_mib();
        let load = |name: &str| {
            let path = Path::new(&dir).join(format!("{language}-{name}.wasm"));
            async move {
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let t = Instant::now();
                let plugin = runtime.load(&bytes).await.map_err(|e| e.to_string())?;
                eprintln!(
                    "plugin-chain: {} ({} bytes) loaded in {:.1} s",
                    path.display(),
                    bytes.len(),
                    t.elapsed().as_secs_f64()
                );
                Ok::<_, String>(plugin)
            }
        };
        let admission = load("approved-registries").await?;
        let mutator = load("gpu-node-selector").await?;
        let rss_loaded = rss_mib();
        let got = mutated(
            mutator
                .mutate(MUTATOR_CONFIG, ctx, job, &[], &lookup, &limits)
                .await
                .0,
            language,
        )?;
        if got != expected {
            return Err(format!(
                "the {language} gpu-node-selector changes the job differently from the Rust one"
            ));
        }
        let mut admits = Vec::new();
        let mut mutates = Vec::new();
        for i in 0..iterations.min(500) + 20 {
            let (a, t_admit) = admission
                .admit(ADMISSION_CONFIG, ctx, &lookup, &limits)
                .await;
            match a {
                Ok(Admission::Admit) => {}
                Ok(other) => return Err(format!("{language} approved-registries: {other:?}")),
                Err(e) => return Err(format!("{language} approved-registries: {e}")),
            }
            let (m, t_mutate) = mutator
                .mutate(MUTATOR_CONFIG, ctx, job, &[], &lookup, &limits)
                .await;
            mutated(m, language)?;
            // The first 20 warm up (the pool's slots, the page cache).
            if i >= 20 {
                admits.push(t_admit);
                mutates.push(t_mutate);
            }
        }
        // What the bench process keeps resident for the two loaded
        // versions (compiled code, mapped), then after the decisions (warm
        // pool slots and what they keep).
        eprintln!(
            "plugin-chain: {language}: VmRSS {rss_before:.1} MiB before loading, {rss_loaded:.1} MiB \
             with its two versions loaded (+{:.1}), {:.1} MiB after {} decisions each",
            rss_loaded - rss_before,
            rss_mib(),
            admits.len() + 20
        );
        out.push(Summary {
            name: format!("plugin-chain: {language} admit alone (call time)"),
            samples: admits,
        });
        out.push(Summary {
            name: format!("plugin-chain: {language} mutate alone (call time)"),
            samples: mutates,
        });
    }
    Ok(out)
}

fn fmt_us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures, as "a b c".
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// What the numbers were taken on and from.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "commit": git(&["rev-parse", "HEAD"]),
        "dirty": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        // The code measured: the commit this binary was built from (the two
        // above are the checkout's at run time, which may differ).
        "built_from": Some(env!("WEIR_BENCH_BUILT_FROM")).filter(|c| !c.is_empty()),
        "built_dirty": match env!("WEIR_BENCH_BUILT_DIRTY") {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "started_at": chrono::Utc::now().to_rfc3339(),
    })
}

fn number<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, flag: &str) -> T {
    args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| {
        eprintln!("{flag} needs a number");
        std::process::exit(2)
    })
}

const USAGE: &str = "usage: weir-bench [plugin-chain] [scheduler] [api] [process-e2e] [pickup] [memory] \
     [memory-serve] [memory-guests] [growth] [kubernetes] [load] [dashboard] [decision-inputs] \
     [schedules] [--iterations N] [--runs N] [--queued N] \
     [--depths N,N,...] [--sample N] [--no-serve] [--jobs N] [--json FILE]\n       \
     weir-bench plot RESULTS.json... [--out-dir DIR]";

#[tokio::main]
async fn main() {
    let mut scenarios = Vec::new();
    let mut json_out: Option<PathBuf> = None;
    let mut iterations = 2000usize;
    let mut runs = 10_000usize;
    // `dashboard` defaults to 100,000 runs; `--runs` sets it too.
    let mut dashboard_runs: Option<usize> = None;
    let mut jobs = 500usize;
    let mut queued = 100_000usize;
    let mut depths = vec![1_000usize, 10_000, 100_000, 1_000_000];
    let mut sample = 5_000usize;
    let mut with_serve = true;
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("plot") {
        args.next();
        if let Err(e) = plot::main(args) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json_out = args.next().map(PathBuf::from),
            "--iterations" => iterations = number(&mut args, "--iterations"),
            "--runs" => {
                runs = number(&mut args, "--runs");
                dashboard_runs = Some(runs);
            }
            "--queued" => queued = number(&mut args, "--queued"),
            "--sample" => sample = number(&mut args, "--sample"),
            "--no-serve" => with_serve = false,
            "--depths" => {
                let list = args.next().unwrap_or_default();
                depths = list
                    .split(',')
                    .map(|d| d.trim().replace('_', "").parse())
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|_| {
                        eprintln!("--depths needs numbers separated by commas");
                        std::process::exit(2)
                    });
            }
            "--jobs" => jobs = number(&mut args, "--jobs"),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            s => scenarios.push(s.to_owned()),
        }
    }
    if scenarios.is_empty() {
        scenarios.push("plugin-chain".into());
    }
    let machine = machine();
    let mut results = Vec::new();
    let mut loads = Vec::new();
    for s in &scenarios {
        let before = loadavg();
        eprintln!("{s}: load average before: {before}");
        let t = std::time::Instant::now();
        let r = match s.as_str() {
            "plugin-chain" => scenario_plugin_chain(iterations)
                .await
                .map(|v| v.into_iter().map(Row::Latency).collect()),
            "scheduler" => scheduler::scenario(runs).await,
            "api" => server::scenario_api(5000, 32).await,
            "process-e2e" => server::scenario_process_e2e(1000, 8, 32).await,
            "pickup" => server::scenario_pickup(200).await,
            "memory" => server::scenario_memory(runs, 32).await,
            "kubernetes" => kubernetes::scenario(jobs).await,
            "memory-serve" => memory_serve::scenario(queued, 32).await,
            "memory-guests" => memory_guests::scenario().await,
            "growth" => growth::scenario(&depths, sample, with_serve).await,
            "load" => load::scenario(runs, 64).await,
            "dashboard" => dashboard::scenario(dashboard_runs.unwrap_or(100_000)).await,
            "decision-inputs" => decisions::scenario(5_000).await,
            "schedules" => schedules::scenario().await,
            other => Err(format!(
                "unknown scenario {other:?}; known: plugin-chain, scheduler, api, process-e2e, \
                 pickup, memory, memory-serve, memory-guests, growth, kubernetes, load, dashboard, \
                 decision-inputs, schedules"
            )),
        };
        let after = loadavg();
        eprintln!(
            "{s}: {:.0} s; load average after: {after}",
            t.elapsed().as_secs_f64()
        );
        loads.push(json!({
            "scenario": s,
            "load_before": before,
            "load_after": after,
            "seconds": t.elapsed().as_secs_f64(),
        }));
        match r {
            Ok(mut r) => results.append(&mut r),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "{:<64} {:>12} {:>12} {:>24}",
        "scenario", "median", "p99", "min – max"
    );
    for r in &results {
        r.print();
    }
    if let [Row::Latency(wasm), Row::Latency(native), ..] = results.as_slice()
        && wasm.name.starts_with("plugin-chain: wasm")
    {
        let ratio =
            wasm.percentile(0.5).as_secs_f64() / native.percentile(0.5).as_secs_f64().max(1e-12);
        println!("ratio wasm/native (median): {ratio:.1}x");
    }
    if let Some(path) = json_out {
        let doc = json!({
            "machine": machine,
            "scenarios": loads,
            "results": results.iter().map(Row::json).collect::<Vec<_>>(),
            "iterations": iterations,
            "runs": runs,
        });
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default(),
        ) {
            eprintln!("error: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
}
