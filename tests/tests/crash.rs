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
