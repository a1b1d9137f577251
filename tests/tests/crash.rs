//! The crash harness against the process backend: 500 runs with limits and
//! plugins while the host is SIGKILLed at random moments at least 20 times
//! (`tests/src/crash.rs` has the workload and the checks). Prints
//! `crash seed: N`; `WEIR_CRASH_SEED=N` replays a run.

use std::time::Instant;

use weir_tests::crash::{BackendKind, Crash, KILLS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runs_survive_random_host_kills() {
    let seed = weir_tests::crash::seed();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut crash = Crash::start(BackendKind::Process, dir.path(), seed).await;
    crash.run().await;
    assert!(crash.kills >= KILLS, "only {} kills", crash.kills);
    crash.check().await;
    println!(
        "crash seed {seed}: {} kills, {:?}",
        crash.kills,
        started.elapsed()
    );
}

/// The same workload against the real Kubernetes control plane
/// (`WEIR_K8S_KUBECONFIG`; SKIPPED without it): every attempt is one Job
/// with one pod, whatever the kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_runs_survive_random_host_kills() {
    let Some(kubeconfig) = weir_tests::cluster::kubeconfig_path() else {
        return;
    };
    let client = weir_tests::cluster::client().await.expect("client");
    let namespace = weir_tests::cluster::fresh_namespace(&client, "weir-crash").await;
    let seed = weir_tests::crash::seed();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let kind = BackendKind::Kubernetes {
        kubeconfig,
        namespace: namespace.clone(),
    };
    let mut crash = Crash::start(kind, dir.path(), seed).await;
    crash.run().await;
    assert!(crash.kills >= KILLS, "only {} kills", crash.kills);
    crash.check().await;
    println!(
        "crash seed {seed} (kubernetes): {} kills, {:?}",
        crash.kills,
        started.elapsed()
    );
    weir_tests::cluster::delete_namespace(&client, &namespace).await;
}
