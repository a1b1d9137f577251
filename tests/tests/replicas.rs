//! Three `weir serve` replicas on one PostgreSQL database, running Jobs on
//! the real Kubernetes control plane: exactly one leads; the leader is
//! SIGKILLed mid-load; another takes over, and every run (those in flight
//! at the kill and those submitted during the failover) ends exactly once,
//! with one Job each and the pool's limit never exceeded.
//!
//! Gated on `WEIR_PG_URL` and `WEIR_K8S_KUBECONFIG` (`.ci/run` sets both):
//! without either the test prints SKIPPED; with them and no server, it fails.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api as KubeApi;
use kube::api::ListParams;
use serde_json::Value;
use weir_tests::harness::{WeirProcess, entered, free_port, most_at_once};
use weir_tests::{cluster, pg};

const POOL_LIMIT: i32 = 3;
const TERMINAL: [&str; 4] = ["Completed", "Failed", "Crashed", "Cancelled"];

/// Which replicas say they lead (`/readyz`), by index; `None` for a dead one.
fn leaders(replicas: &[Option<WeirProcess>]) -> Vec<usize> {
    replicas
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.as_ref()?;
            let body = reqwest_blocking_get(&format!("{}/readyz", r.url))?;
            (body["leader"] == true).then_some(i)
        })
        .collect()
}

fn reqwest_blocking_get(url: &str) -> Option<Value> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let resp = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?;
            resp.json::<Value>().await.ok()
        })
    })
    .join()
    .ok()
    .flatten()
}

/// Polls until exactly one live replica leads; returns it and how long it
/// took. Never more than one may say so at any poll.
fn one_leader(replicas: &[Option<WeirProcess>], within: Duration) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        let l = leaders(replicas);
        assert!(l.len() <= 1, "two replicas lead at once: {l:?}");
        if let [one] = l[..] {
            return (one, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "no replica took the lead within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn live(replicas: &[Option<WeirProcess>], not: usize) -> Vec<&WeirProcess> {
    replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != not)
        .filter_map(|(_, r)| r.as_ref())
        .collect()
}

fn id_of(run: &Value) -> String {
    run["id"].as_str().expect("run id").to_owned()
}

#[test]
fn the_leader_is_killed_mid_load_and_another_replica_takes_over() {
    let Some(kubeconfig) = cluster::kubeconfig_path() else {
        return;
    };
    let Some(db) = pg::fresh_database(
        "replicas::the_leader_is_killed_mid_load_and_another_replica_takes_over",
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(cluster::client()).expect("client");
    let ns = rt.block_on(cluster::fresh_namespace(&client, "weir-replicas"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kubernetes]
kubeconfig = "{}"

[[pools]]
name = "k8s"
type = "kubernetes"
concurrency_limit = {POOL_LIMIT}

[[deployments]]
name = "slow"
pool = "k8s"
job_variables = {{ image = "busybox:1.36", namespace = "{ns}", backoff_limit = 0, annotations = {{ "weir.dev/test-delay-ms" = "1500" }} }}
"#,
            kubeconfig.display()
        ),
    )
    .expect("config");

    let mut replicas: Vec<Option<WeirProcess>> = (0..3)
        .map(|i| {
            Some(WeirProcess::start_with_args(
                &dir.path().join(format!("replica-{i}")),
                Some(&config),
                free_port(),
                &["--database-url", &db.url],
            ))
        })
        .collect();
    let (first, _) = one_leader(&replicas, Duration::from_secs(30));

    // Load through every replica, with idempotency keys.
    let mut ids = Vec::new();
    for i in 0..12 {
        let r = replicas[i % 3].as_ref().expect("alive");
        let run = r.cli_json(&[
            "run",
            "create",
            "slow",
            "--idempotency-key",
            &format!("k{i}"),
        ]);
        ids.push(id_of(&run));
    }
    let leader = replicas[first].as_ref().expect("leader");
    weir_tests::harness::eventually_blocking(
        "a run to be Running",
        Duration::from_secs(60),
        || {
            let runs = leader.cli_json(&["run", "ls", "--state", "Running"]);
            runs["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                .then_some(())
        },
    );

    // Kill the leader mid-load (SIGKILL: no clean-up, its session just ends).
    if let Some(mut killed) = replicas[first].take() {
        killed.kill();
    }
    let killed_at = Instant::now();

    // During the failover the other replicas keep taking runs, a key used
    // before the kill names the same run, and a cancel is accepted.
    let survivors = live(&replicas, first);
    for i in 12..24 {
        let r = survivors[i % survivors.len()];
        let run = r.cli_json(&[
            "run",
            "create",
            "slow",
            "--idempotency-key",
            &format!("k{i}"),
        ]);
        ids.push(id_of(&run));
    }
    for i in [0, 5, 11] {
        let again = survivors[i % survivors.len()].cli_json(&[
            "run",
            "create",
            "slow",
            "--idempotency-key",
            &format!("k{i}"),
        ]);
        assert_eq!(id_of(&again), ids[i], "key k{i} made a second run");
    }
    // A waiting run cancelled on a standby during the failover.
    let cancelled_waiting = ids[23].clone();
    survivors[0].cli_json(&["run", "cancel", &cancelled_waiting]);

    let (second, _) = one_leader(&replicas, Duration::from_secs(60));
    let took = killed_at.elapsed();
    assert_ne!(second, first);
    // Measured, not asserted (the aim is 15 s; see BENCHMARKS.md).
    eprintln!(
        "failover: replica {second} leads {:.1} s after the leader was killed \
         and the survivors took 12 runs, 3 repeated keys and a cancel",
        took.as_secs_f64()
    );

    // A Running run cancelled on a standby: the leader hears of it and
    // deletes its Job.
    let standby = live(&replicas, second)[0];
    let cancelled_running = weir_tests::harness::eventually_blocking(
        "a run Running under the new leader",
        Duration::from_secs(60),
        || {
            let runs = standby.cli_json(&["run", "ls", "--state", "Running"]);
            runs["items"].as_array()?.first().map(id_of)
        },
    );
    standby.cli_json(&["run", "cancel", &cancelled_running]);
    let cancelled = [cancelled_waiting, cancelled_running];

    // The old leader comes back as a standby.
    let restarted = WeirProcess::start_with_args(
        &dir.path().join(format!("replica-{first}")),
        Some(&config),
        free_port(),
        &["--database-url", &db.url],
    );
    replicas[first] = Some(restarted);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leaders(&replicas), vec![second], "leadership moved back");

    // Every run ends once, with one Job, within the pool's limit.
    let reader = replicas[second].as_ref().expect("leader");
    let jobs: KubeApi<Job> = KubeApi::namespaced(client.clone(), &ns);
    let mut spans = Vec::new();
    for id in &ids {
        let done = weir_tests::harness::eventually_blocking(
            &format!("run {id} to end"),
            Duration::from_secs(180),
            || {
                let r = reader.cli_json(&["run", "inspect", id]);
                TERMINAL
                    .contains(&r["state"].as_str().unwrap_or(""))
                    .then_some(r)
            },
        );
        let want = if cancelled.contains(id) {
            "Cancelled"
        } else {
            "Completed"
        };
        assert_eq!(done["state"], want, "{done:#}");
        let history = done["history"].as_array().expect("history");
        let count = |state: &str| history.iter().filter(|h| h["state"] == state).count();
        let terminal: usize = TERMINAL.iter().map(|s| count(s)).sum();
        assert_eq!(terminal, 1, "{id} ended {terminal} times: {done:#}");
        assert!(count("Running") <= 1, "{id} started twice: {done:#}");
        let listed = rt
            .block_on(jobs.list(&ListParams::default().labels(&format!("weir.dev/run-id={id}"))))
            .expect("list jobs");
        if *id == cancelled[1] {
            // Deleted by the cancel (background propagation may lag).
            let gone =
                listed.items.is_empty() || listed.items[0].metadata.deletion_timestamp.is_some();
            assert!(gone, "{id}: the cancelled run's Job is still there");
        } else if *id == cancelled[0] {
            assert!(listed.items.len() <= 1, "{id}: {} Jobs", listed.items.len());
        } else {
            assert_eq!(listed.items.len(), 1, "{id}: one Job");
            let status = listed.items[0].status.clone().unwrap_or_default();
            assert_eq!(status.succeeded, Some(1), "{id}");
        }
        if let (Some(s), Some(e)) = (entered(&done, &["Pending"]), entered(&done, &TERMINAL)) {
            spans.push((s, e, id.clone()));
        }
    }
    let most = most_at_once(&spans.iter().map(|(s, e, _)| (*s, *e)).collect::<Vec<_>>());
    spans.sort();
    assert!(
        most <= POOL_LIMIT,
        "{most} runs held the pool's slots at once (limit {POOL_LIMIT}); \
         spans from Pending to the end: {spans:#?}"
    );
    let pool = reader.cli_json(&["pool", "inspect", "k8s"]);
    assert_eq!(pool["active_runs"], 0, "slots left held: {pool:#}");

    drop(replicas);
    rt.block_on(cluster::delete_namespace(&client, &ns));
    drop(db);
}
