//! Process runs across a host crash: the real `weir` binary is SIGKILLed
//! while jobs run; each job keeps running under its supervisor, and the
//! restarted host records its real outcome.

use std::time::Duration;

use serde_json::Value;
use weir_tests::harness::{
    WeirProcess, alive, eventually_blocking, recorded_pid, signal, supervisors,
};

const TERMINAL: &[&str] = &["Completed", "Failed", "Crashed", "Cancelled"];

fn entries(run: &Value, state: &str) -> usize {
    run["history"]
        .as_array()
        .map(|h| h.iter().filter(|e| e["state"] == state).count())
        .unwrap_or(0)
}

fn job_pid(weir: &WeirProcess, id: &str) -> i32 {
    recorded_pid(&weir.data_dir, id, 1, "started").expect("the job's recorded pid")
}

fn pool(weir: &WeirProcess) {
    weir.cli_json(&["pool", "create", "local", "--type", "process"]);
}

#[test]
fn jobs_outlive_a_killed_host_and_their_real_outcomes_are_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weir = WeirProcess::start(dir.path(), None);
    pool(&weir);
    let slow = weir.create_run(&["--pool", "local", "--command", "sh -c 'sleep 4; exit 7'"]);
    let quick = weir.create_run(&["--pool", "local", "--command", "sh -c 'sleep 1; echo done'"]);
    weir.wait_state(&slow, &["Running"]);
    weir.wait_state(&quick, &["Running"]);
    let (slow_pid, quick_pid) = (job_pid(&weir, &slow), job_pid(&weir, &quick));

    weir.kill();
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(slow_pid), "the slow job died with the host");
    assert!(alive(quick_pid), "the quick job died with the host");
    // The quick job ends while the host is down; the slow one still runs.
    eventually_blocking("the quick job to end", Duration::from_secs(10), || {
        (!alive(quick_pid)).then_some(())
    });
    assert!(alive(slow_pid), "the slow job ended early");
    weir.restart();

    let done = weir.wait_state(&quick, TERMINAL);
    assert_eq!(done["state"], "Completed", "{done}");
    assert_eq!(entries(&done, "Running"), 1, "{done}");
    let logs = weir.cli(&["run", "logs", &quick]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "done\n");

    // Still running after the restart: followed to its real end.
    assert!(alive(slow_pid), "the slow job ended with the restart");
    let done = weir.wait_state(&slow, TERMINAL);
    assert_eq!(done["state"], "Failed", "{done}");
    assert_eq!(done["exit_code"], 7, "{done}");
    assert_eq!(entries(&done, "Running"), 1, "{done}");
    assert_eq!(entries(&done, "Failed"), 1, "{done}");
}

#[test]
fn a_run_is_cancelled_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weir = WeirProcess::start(dir.path(), None);
    pool(&weir);
    let id = weir.create_run(&["--pool", "local", "--command", "sleep 60"]);
    weir.wait_state(&id, &["Running"]);
    let pid = job_pid(&weir, &id);
    weir.restart();
    assert!(alive(pid), "the job died with the host");
    weir.wait_state(&id, &["Running"]);
    weir.cli_json(&["run", "cancel", &id]);
    let done = weir.wait_state(&id, TERMINAL);
    assert_eq!(done["state"], "Cancelled", "{done}");
    assert_eq!(
        done["state_message"], "cancelled; stopped with SIGTERM",
        "{done}"
    );
    assert!(!alive(pid), "the job outlived its cancel");
}

#[test]
fn a_cancel_in_flight_when_the_host_died_is_finished_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weir = WeirProcess::start(dir.path(), None);
    pool(&weir);
    // A job that takes its time to stop: the host is killed while the run
    // is Cancelling.
    let id = weir.create_run(&[
        "--pool",
        "local",
        "--command",
        "sh -c 'trap \"sleep 2; exit 0\" TERM; sleep 60 & wait'",
    ]);
    weir.wait_state(&id, &["Running"]);
    weir.cli_json(&["run", "cancel", &id]);
    weir.wait_state(&id, &["Cancelling"]);
    weir.restart();
    let done = weir.wait_state(&id, TERMINAL);
    assert_eq!(done["state"], "Cancelled", "{done}");
    assert_eq!(entries(&done, "Cancelled"), 1, "{done}");
}

#[test]
fn a_supervisor_killed_while_the_host_is_down_crashes_its_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weir = WeirProcess::start(dir.path(), None);
    pool(&weir);
    let id = weir.create_run(&["--pool", "local", "--command", "sleep 60", "--retries", "1"]);
    weir.wait_state(&id, &["Running"]);
    let job = job_pid(&weir, &id);
    let sup = recorded_pid(&weir.data_dir, &id, 1, "supervisor.pid").expect("supervisor pid");
    assert!(
        supervisors(&weir.data_dir).iter().any(|(p, _)| *p == sup),
        "the recorded supervisor is a `weir supervise` process"
    );
    weir.kill();
    assert!(signal(sup, libc::SIGKILL));
    // Its job goes with it.
    eventually_blocking(
        "the job to die with its supervisor",
        Duration::from_secs(10),
        || (!alive(job)).then_some(()),
    );
    weir.restart();
    // Attempt 1's outcome cannot be known: Crashed, so retried as attempt 2.
    let retried = eventually_blocking("the retry", Duration::from_secs(60), || {
        let run = weir.inspect(&id);
        (run["attempt"] == 2 && run["state"] == "Running").then_some(run)
    });
    let waited = retried["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["state"] == "AwaitingRetry"))
        .cloned()
        .unwrap_or_default();
    assert!(
        waited["message"]
            .as_str()
            .unwrap_or("")
            .contains("crashed: the supervisor of attempt 1 died without recording an exit status"),
        "{retried}"
    );
    weir.cli_json(&["run", "cancel", &id]);
    let done = weir.wait_state(&id, TERMINAL);
    assert_eq!(done["state"], "Cancelled", "{done}");
}
