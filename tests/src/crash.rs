//! The crash harness: a workload of runs with limits and plugins, submitted
//! in waves while the host is SIGKILLed at random moments and restarted, and
//! the checks that every run ended exactly once, no job started twice, no
//! limit was exceeded and no slot is left held.
//!
//! Written over [`BackendKind`]: the process variant checks the jobs' own
//! start/end records; the Kubernetes variant (the real control plane of
//! `tests/cluster/`, pods faked by kwok) checks the Jobs the API server
//! holds: one Job per attempt, one pod per Job. Every
//! random choice comes from one seed, printed as `crash seed: N` and taken
//! from `WEIR_CRASH_SEED` when set, so a failure replays.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Client;
use serde_json::{Value, json};

use crate::harness::{WeirProcess, component, most_at_once};

/// At least what the issue asks for.
pub const RUNS: usize = 500;
pub const KILLS: usize = 20;
pub const POOL_LIMIT: i32 = 4;
pub const TAG_LIMIT: i32 = 2;
const TAG: &str = "scarce";
const POOL: &str = "crash";

/// Each job records its start (with the mutator's `ADDED`) and its end, also
/// when stopped by a cancel, with O_APPEND (`>>`) writes of one line.
const JOB: &str = r#"f=$1
trap 'echo "$WEIR_RUN_ID end $(date +%s%N)" >> "$f"; exit 143' TERM
echo "$WEIR_RUN_ID start $(date +%s%N) added=$ADDED" >> "$f"
sleep "$2"
echo "$WEIR_RUN_ID end $(date +%s%N)" >> "$f"
exit "$3"
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    Process,
    /// Jobs go to `namespace` on the cluster of `kubeconfig`.
    Kubernetes {
        kubeconfig: PathBuf,
        namespace: String,
    },
}

/// The seed: `WEIR_CRASH_SEED`, else a fresh one. Printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("WEIR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("crash seed: {seed}");
    eprintln!("crash seed: {seed} (replay with WEIR_CRASH_SEED={seed})");
    seed
}

/// What one submitted run should do.
#[derive(Debug, Clone)]
struct Planned {
    key: String,
    body: Value,
    /// Exits with this code (0: completes).
    exit_code: i32,
    retries: u32,
    tagged: bool,
}

pub struct Crash {
    pub weir: WeirProcess,
    kind: BackendKind,
    http: Client,
    rng: StdRng,
    /// One line per job start and end, appended by the jobs themselves.
    records: PathBuf,
    /// The job: `sh job.sh RECORDS SECONDS EXIT_CODE`.
    script: PathBuf,
    planned: Vec<Planned>,
    /// Idempotency key → run id, as first answered.
    ids: BTreeMap<String, String>,
    /// Runs a cancel was sent for, whatever the answer (the host may have
    /// died after the cancel took effect and before it answered).
    asked_to_cancel: BTreeSet<String>,
    /// Runs whose cancel was answered 2xx.
    cancelled: BTreeSet<String>,
    pub kills: usize,
}

impl Crash {
    pub async fn start(kind: BackendKind, data_dir: &Path, seed: u64) -> Self {
        let weir = match &kind {
            BackendKind::Process => WeirProcess::start(data_dir, None),
            BackendKind::Kubernetes { kubeconfig, .. } => WeirProcess::start_with_args(
                data_dir,
                None,
                crate::harness::free_port(),
                &["--kubeconfig", &kubeconfig.display().to_string()],
            ),
        };
        let records = data_dir.join("job-records.txt");
        let script = data_dir.join("job.sh");
        std::fs::write(&script, JOB).expect("write the job script");
        let mut crash = Self {
            weir,
            kind: kind.clone(),
            http: Client::new(),
            rng: StdRng::seed_from_u64(seed),
            records,
            script,
            planned: Vec::new(),
            ids: BTreeMap::new(),
            asked_to_cancel: BTreeSet::new(),
            cancelled: BTreeSet::new(),
            kills: 0,
        };
        crash.setup().await;
        crash
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut req = self
            .http
            .request(
                method.parse().map_err(|e| format!("{e}"))?,
                format!("{}{path}", self.weir.url),
            )
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, path, Some(&body))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A pool with a concurrency limit, two queues with priorities, a tag
    /// limit, a mutator (adds `ADDED=yes` to the env) and an admission plugin
    /// (team-quota, deferring team "a" beyond 3 at once).
    async fn setup(&mut self) {
        let pool_type = match self.kind {
            BackendKind::Process => "process",
            BackendKind::Kubernetes { .. } => "kubernetes",
        };
        self.ok(
            "POST",
            "/api/v1/pools",
            json!({"name": POOL, "type": pool_type, "concurrency_limit": POOL_LIMIT}),
        )
        .await;
        for (queue, priority) in [("high", 1), ("low", 5)] {
            self.ok(
                "POST",
                &format!("/api/v1/pools/{POOL}/queues"),
                json!({"name": queue, "priority": priority}),
            )
            .await;
        }
        self.ok(
            "POST",
            "/api/v1/limits",
            json!({"tag": TAG, "limit": TAG_LIMIT}),
        )
        .await;
        let mutator = match self.kind {
            BackendKind::Process => ("add-label", "add-label", json!({})),
            // Sets team b's cpu request, checked on every Job.
            BackendKind::Kubernetes { .. } => (
                "team-resources",
                "team-resources",
                json!({"teams": {"b": {"default": {"cpu": "250m", "memory": "64Mi"}}}}),
            ),
        };
        for (name, file, config) in [
            mutator,
            (
                "team-quota",
                "team-quota",
                json!({"max_running": 3, "defer_seconds": 1}),
            ),
        ] {
            let bytes = std::fs::read(component(file)).expect("component");
            let resp = self
                .http
                .post(format!("{}/api/v1/plugins/{name}", self.weir.url))
                .header("content-type", "application/json")
                .body(bytes)
                .send()
                .await
                .expect("upload");
            assert!(resp.status().is_success(), "upload {name}");
            // The longest deadline a binding may have: the harness checks
            // crash safety, and its planned outcomes assume the plugins
            // decide. With the default 50 ms, a call descheduled for that
            // long on a loaded CI machine (control plane, two servers,
            // kwok) timed out and failed its run (seed
            // 18205513619005136942).
            self.ok(
                "POST",
                &format!("/api/v1/pools/{POOL}/bindings"),
                json!({"plugin": name, "config": config, "deadline_ms": 2000}),
            )
            .await;
        }
        for team in ["a", "b"] {
            let vars = match &self.kind {
                BackendKind::Process => json!({"command": "true", "labels": {"team": team}}),
                BackendKind::Kubernetes { namespace, .. } => json!({
                    "image": "busybox:1.36", "namespace": namespace, "backoff_limit": 0,
                    "labels": {"team": team}}),
            };
            self.ok(
                "POST",
                "/api/v1/deployments",
                json!({"name": format!("team-{team}"), "pool": POOL, "job_variables": vars}),
            )
            .await;
        }
    }

    /// Plans the next `n` runs.
    fn plan(&mut self, n: usize) -> Vec<Planned> {
        let mut wave = Vec::new();
        for _ in 0..n {
            let i = self.planned.len() + wave.len();
            let sleep_ms = self.rng.gen_range(50..=500);
            let fails = self.rng.gen_bool(0.15);
            // kwok's failing pods exit with 1 (tests/cluster/stages.yaml).
            let exit_code = match (fails, &self.kind) {
                (false, _) => 0,
                (true, BackendKind::Process) => 3,
                (true, BackendKind::Kubernetes { .. }) => 1,
            };
            let retries = u32::from(self.rng.gen_bool(0.3));
            let tagged = self.rng.gen_bool(0.25);
            let queue = if self.rng.gen_bool(0.5) {
                "high"
            } else {
                "low"
            };
            let team = if self.rng.gen_bool(0.3) {
                "team-a"
            } else {
                "team-b"
            };
            let script = format!(
                "sh {} {} {} {exit_code}",
                self.script.display(),
                self.records.display(),
                f64::from(sleep_ms) / 1000.0
            );
            let key = format!("crash-{i}");
            let mut body = json!({
                "deployment": team,
                "queue": queue,
                "idempotency_key": key,
                "job_variables": {"command": script},
                "retries": {"max": retries, "delay_seconds": 0},
            });
            if tagged {
                body["tags"] = json!([TAG]);
            }
            if let BackendKind::Kubernetes { .. } = self.kind {
                let mut annotations = json!({"weir.dev/test-delay-ms": sleep_ms.to_string()});
                if fails {
                    annotations["weir.dev/test-outcome"] = json!("fail");
                }
                body["job_variables"] = json!({"annotations": annotations});
            }
            wave.push(Planned {
                key,
                body,
                exit_code,
                retries,
                tagged,
            });
        }
        wave
    }

    /// Submits runs until all are answered or the host is gone; returns how
    /// many were answered. Keys already answered are submitted again (the
    /// same run must come back).
    async fn submit(&mut self, wave: &[Planned]) -> usize {
        for (n, p) in wave.iter().enumerate() {
            match self.call("POST", "/api/v1/runs", Some(&p.body)).await {
                Ok(run) => {
                    let id = run["id"].as_str().unwrap_or_default().to_owned();
                    if let Some(first) = self.ids.get(&p.key) {
                        assert_eq!(first, &id, "key {} created a second run", p.key);
                    }
                    self.ids.insert(p.key.clone(), id);
                }
                // An answer with an error status is a refusal, not a kill.
                Err(e) if e.starts_with("POST ") => panic!("run refused: {e}"),
                Err(_) => return n,
            }
        }
        wave.len()
    }

    /// Cancels one earlier run (the host may be gone: then nothing).
    async fn cancel_one(&mut self) {
        let ids: Vec<String> = self.ids.values().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[self.rng.gen_range(0..ids.len())].clone();
        self.asked_to_cancel.insert(id.clone());
        if self
            .call("POST", &format!("/api/v1/runs/{id}/cancel"), None)
            .await
            .is_ok()
        {
            self.cancelled.insert(id);
        }
    }

    /// The workload: `RUNS` runs in `KILLS` waves; during each wave the host
    /// is SIGKILLed after a random delay and restarted, and the wave is
    /// submitted again (idempotency keys) until every run of it is answered.
    pub async fn run(&mut self) {
        let per_wave = RUNS.div_ceil(KILLS);
        while self.planned.len() < RUNS {
            let n = per_wave.min(RUNS - self.planned.len());
            let wave = self.plan(n);
            let kill_after = Duration::from_millis(self.rng.gen_range(0..2500));
            let cancel = self.rng.gen_bool(0.5);
            let deadline = tokio::time::sleep(kill_after);
            tokio::pin!(deadline);
            // Submit while the kill timer runs: the kill lands anywhere in
            // the submissions or in the work after them.
            let all_in = {
                let submitted = self.submit(&wave);
                tokio::pin!(submitted);
                tokio::select! {
                    _ = &mut submitted => true,
                    () = &mut deadline => false,
                }
            };
            if all_in {
                if cancel {
                    self.cancel_one().await;
                }
                (&mut deadline).await;
            }
            self.weir.restart();
            self.kills += 1;
            // Whatever the kill interrupted is submitted again.
            let answered = self.submit(&wave).await;
            assert_eq!(answered, wave.len(), "the restarted host refused runs");
            self.planned.extend(wave);
        }
    }

    /// Waits until every run is terminal, then checks everything.
    pub async fn check(&self) {
        assert_eq!(self.ids.len(), RUNS, "one run per key");
        let distinct: BTreeSet<&String> = self.ids.values().collect();
        assert_eq!(distinct.len(), RUNS, "two keys answered with one run");
        let started = Instant::now();
        let mut runs: BTreeMap<String, Value> = BTreeMap::new();
        loop {
            for id in self.ids.values() {
                if runs.contains_key(id) {
                    continue;
                }
                let run = self.ok_get(&format!("/api/v1/runs/{id}")).await;
                if is_terminal(&run["state"]) {
                    runs.insert(id.clone(), run);
                }
            }
            if runs.len() == RUNS {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "{} runs still not terminal after 15 minutes",
                RUNS - runs.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Terminal exactly once, with the outcome the job chose.
        for p in &self.planned {
            let id = &self.ids[&p.key];
            let run = &runs[id];
            let terminal = history(run)
                .iter()
                .filter(|e| is_terminal(&e["state"]))
                .count();
            assert_eq!(
                terminal, 1,
                "{id} entered a terminal state {terminal} times: {run}"
            );
            // A cancel shows in the history only if one was sent, and every
            // cancel answered 2xx shows there.
            let was_cancelled = cancelled_by_api(run);
            if was_cancelled {
                assert!(
                    self.asked_to_cancel.contains(id),
                    "{id} was cancelled but no cancel was sent for it: {run}"
                );
            } else {
                assert!(
                    !self.cancelled.contains(id),
                    "{id}: its cancel was accepted but is not in its history: {run}"
                );
            }
            if was_cancelled && run["state"] == "Cancelled" {
                continue;
            }
            let expected = if p.exit_code == 0 {
                "Completed"
            } else {
                "Failed"
            };
            assert_eq!(run["state"], expected, "{id} ({p:?}): {run}");
            if p.exit_code != 0 {
                assert_eq!(run["exit_code"], p.exit_code, "{id}: {run}");
                assert_eq!(run["attempt"], p.retries + 1, "{id}: {run}");
            }
        }

        match &self.kind {
            BackendKind::Process => self.check_job_records(&runs),
            BackendKind::Kubernetes {
                kubeconfig,
                namespace,
            } => self.check_jobs(&runs, kubeconfig, namespace).await,
        }
        self.check_histories_and_slots(&runs).await;
    }

    /// The Kubernetes side: every attempt is exactly one Job (named for its
    /// run and attempt, labelled with both), each Job made at most one pod
    /// (backoff limit 0), and the mutator's resources are on team b's Jobs.
    async fn check_jobs(&self, runs: &BTreeMap<String, Value>, kubeconfig: &Path, ns: &str) {
        use k8s_openapi::api::batch::v1::Job;
        let client = crate::cluster::client_from(kubeconfig).await;
        let jobs: kube::Api<Job> = kube::Api::namespaced(client, ns);
        let all = jobs
            .list(&kube::api::ListParams::default().labels("weir.dev/run-id"))
            .await
            .expect("list Jobs");
        let mut by_run: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for job in all.items {
            let labels = job.metadata.labels.clone().unwrap_or_default();
            if let Some(id) = labels.get("weir.dev/run-id") {
                by_run.entry(id.clone()).or_default().push(job);
            }
        }
        for p in &self.planned {
            let id = &self.ids[&p.key];
            let run = &runs[id];
            let attempts = run["attempt"].as_u64().unwrap_or(0) as usize;
            let jobs = by_run.get(id).cloned().unwrap_or_default();
            let mut seen = BTreeSet::new();
            for job in &jobs {
                let labels = job.metadata.labels.clone().unwrap_or_default();
                let attempt = labels.get("weir.dev/attempt").cloned().unwrap_or_default();
                assert!(
                    seen.insert(attempt.clone()),
                    "{id}: two Jobs for attempt {attempt}"
                );
                let status = job.status.clone().unwrap_or_default();
                let pods = status.succeeded.unwrap_or(0)
                    + status.failed.unwrap_or(0)
                    + status.active.unwrap_or(0);
                assert!(pods <= 1, "{id} attempt {attempt}: {pods} pods");
                if p.body["deployment"] == "team-b" {
                    let pod = job
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.spec.as_ref())
                        .expect("pod spec");
                    let cpu = pod.containers[0]
                        .resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref())
                        .and_then(|r| r.get("cpu"))
                        .map(|q| q.0.clone());
                    assert_eq!(
                        cpu.as_deref(),
                        Some("250m"),
                        "{id}: the mutator did not apply"
                    );
                }
            }
            assert!(
                jobs.len() <= attempts,
                "{id}: {} Jobs for {attempts} attempts: {run}",
                jobs.len()
            );
            if !cancelled_by_api(run) {
                assert_eq!(jobs.len(), attempts, "{id}: Jobs vs attempts: {run}");
            }
        }
    }

    /// The process side: the jobs' own records: one start per attempt, never
    /// two at once for a run, limits held.
    fn check_job_records(&self, runs: &BTreeMap<String, Value>) {
        let text = std::fs::read_to_string(&self.records).expect("job records");
        let mut starts: BTreeMap<String, Vec<JobSpan>> = BTreeMap::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (Some(id), Some(what), Some(ts)) = (parts.first(), parts.get(1), parts.get(2))
            else {
                panic!("malformed job record {line:?}");
            };
            let at = nanos(ts).unwrap_or_else(|| panic!("bad time in {line:?}"));
            let spans = starts.entry((*id).to_owned()).or_default();
            match *what {
                "start" => {
                    assert_eq!(
                        parts.get(3),
                        Some(&"added=yes"),
                        "the mutator did not apply: {line:?}"
                    );
                    spans.push((at, None));
                }
                "end" => {
                    // `exit 143` from the TERM trap may follow a normal end
                    // line only if TERM came after it: keep the first end.
                    if let Some(last) = spans.last_mut()
                        && last.1.is_none()
                    {
                        last.1 = Some(at);
                    }
                }
                other => panic!("unknown record {other:?} in {line:?}"),
            }
        }
        let far = Utc::now() + chrono::Duration::days(1);
        let mut pool_spans = Vec::new();
        let mut tag_spans = Vec::new();
        for p in &self.planned {
            let id = &self.ids[&p.key];
            let run = &runs[id];
            let attempts = run["attempt"].as_u64().unwrap_or(0) as usize;
            let spans = starts.get(id).cloned().unwrap_or_default();
            assert!(
                spans.len() <= attempts,
                "{id} was started {} times in {attempts} attempts: {run}",
                spans.len()
            );
            let ran_every_attempt = !cancelled_by_api(run);
            if ran_every_attempt {
                assert_eq!(spans.len(), attempts, "{id}: starts vs attempts: {run}");
            }
            let closed: Vec<_> = spans.iter().map(|(s, e)| (*s, e.unwrap_or(far))).collect();
            assert!(
                most_at_once(&closed) <= 1,
                "{id} ran twice at once: {spans:?}"
            );
            pool_spans.extend(closed.iter().copied());
            if p.tagged {
                tag_spans.extend(closed.iter().copied());
            }
        }
        let pool_max = most_at_once(&pool_spans);
        let tag_max = most_at_once(&tag_spans);
        println!("jobs' records: at most {pool_max} at once in the pool, {tag_max} with the tag");
        assert!(pool_max <= POOL_LIMIT, "pool limit exceeded: {pool_max}");
        assert!(tag_max <= TAG_LIMIT, "tag limit exceeded: {tag_max}");
    }

    /// Both: the runs' recorded histories keep the limits, and no slot is
    /// left held.
    async fn check_histories_and_slots(&self, runs: &BTreeMap<String, Value>) {
        // The runs' recorded histories: slot-holding spans (Pending until
        // the attempt's end) stay within the limits too.
        let mut pool_spans = Vec::new();
        let mut tag_spans = Vec::new();
        for p in &self.planned {
            let run = &runs[&self.ids[&p.key]];
            let spans = holding_spans(run);
            pool_spans.extend(spans.iter().copied());
            if p.tagged {
                tag_spans.extend(spans.iter().copied());
            }
        }
        let pool_max = most_at_once(&pool_spans);
        let tag_max = most_at_once(&tag_spans);
        println!("runs' histories: at most {pool_max} at once in the pool, {tag_max} with the tag");
        assert!(
            pool_max <= POOL_LIMIT,
            "pool limit exceeded in the histories"
        );
        assert!(tag_max <= TAG_LIMIT, "tag limit exceeded in the histories");

        // No slot is left held.
        let metrics = self
            .http
            .get(format!("{}/metrics", self.weir.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("weir_slots_in_use"))
        {
            assert!(line.ends_with(" 0"), "a slot is still held: {line}");
        }
    }

    async fn ok_get(&self, path: &str) -> Value {
        self.call("GET", path, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A job's recorded start, and its end when it recorded one.
type JobSpan = (DateTime<Utc>, Option<DateTime<Utc>>);

fn is_terminal(state: &Value) -> bool {
    matches!(
        state.as_str(),
        Some("Completed" | "Failed" | "Crashed" | "Cancelled")
    )
}

fn history(run: &Value) -> Vec<Value> {
    run["history"].as_array().cloned().unwrap_or_default()
}

/// Spans from each release (`Pending`) to the end of that attempt.
fn holding_spans(run: &Value) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut spans = Vec::new();
    let mut open = None;
    for e in history(run) {
        let Some(at) = e["at"].as_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        match e["state"].as_str() {
            Some("Pending") => open = Some(at),
            Some("AwaitingRetry" | "Completed" | "Failed" | "Crashed" | "Cancelled") => {
                if let Some(start) = open.take() {
                    spans.push((start, at));
                }
            }
            _ => {}
        }
    }
    spans
}

fn nanos(ts: &str) -> Option<DateTime<Utc>> {
    let n: i64 = ts.parse().ok()?;
    Utc.timestamp_opt(n / 1_000_000_000, u32::try_from(n % 1_000_000_000).ok()?)
        .single()
}

/// Whether the run's history shows a cancel asked through the API (the
/// cancel may have been answered or not: the history is what happened).
fn cancelled_by_api(run: &Value) -> bool {
    history(run).iter().any(|e| {
        matches!(e["state"].as_str(), Some("Cancelling" | "Cancelled")) && e["cause"] == "api"
    })
}
