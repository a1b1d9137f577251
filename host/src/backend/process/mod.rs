//! Runs a job as a local process: the quick start's and the tests' backend.
//!
//! Each attempt gets a supervisor (`supervisor.rs`, like containerd's shim),
//! forked in its own session by a long-lived launcher (`launcher.rs`, the
//! hidden `weir supervise` command of this same binary) and not tied to the
//! host, so the job keeps running while the host is down. The supervisor starts the job in its own
//! process group (a cancel or a timeout stops everything it started), and
//! records the job's pid and then its exit status in the attempt's
//! directory, `<data>/runs/<run>/<attempt>/` (`status.rs`). The host follows
//! that directory: after a restart it reads the real outcome, or follows a
//! supervisor that is still running, or — only when the supervisor died
//! without recording anything — calls the attempt `Crashed` with that reason.
//!
//! The launcher records the finalised job before [`Backend::execute`]
//! (`records_intent`), so a restart can resume the attempt: see
//! [`Resume`](super::Resume) and `launcher::recover`.
//!
//! Attempt directories are left in place when the run ends (a few hundred
//! bytes each): they are the evidence the outcome was read from, and
//! removing them safely would have to wait for the store's commit anyway.

mod events;
mod launcher;
mod status;
mod supervisor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::{OnceCell, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use self::events::{DirWatcher, Events};
use self::launcher::{Launcher, LauncherCommand, Supervised};
use self::status::{Identity, STARTED, STATUS, SUPERVISOR_PID, Spec, Status};
use super::{Backend, Execution, Outcome};
use crate::domain::RunId;

/// Runs the launcher of the supervisors of the attempts under `runs_dir`
/// (`weir supervise <runs-dir>`, started by the host, requests on stdin) and
/// returns its exit code. The directory only names the launcher's data
/// directory to someone reading the process list.
pub fn supervise(_runs_dir: &Path) -> u8 {
    launcher::main()
}

#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Time between SIGTERM and SIGKILL on cancel or timeout.
    pub grace: Duration,
    /// The `weir` binary whose `supervise` command launches each attempt's
    /// supervisor [default: this process's own binary]. Set by embedders whose binary
    /// is not `weir` (in-process test servers, the benchmarks).
    pub supervisor: Option<PathBuf>,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            supervisor: None,
        }
    }
}

pub(crate) struct ProcessBackend {
    settings: ProcessSettings,
    /// `<data>/runs`: one directory per run, one per attempt inside.
    runs_dir: PathBuf,
    launcher: Launcher,
    /// Follows adopted attempts' directories; started on first need, `None`
    /// inside when inotify cannot be had (their supervisors' exits are
    /// still followed).
    watcher: OnceCell<Option<Arc<DirWatcher>>>,
}

impl ProcessBackend {
    pub(crate) fn new(settings: ProcessSettings, runs_dir: PathBuf) -> Self {
        let program = match &settings.supervisor {
            Some(bin) => Ok(bin.clone()),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find the weir binary to start a supervisor: {e}")),
        };
        let launcher = Launcher::new(
            LauncherCommand {
                program,
                args: vec!["supervise".into()],
                env: Vec::new(),
            },
            runs_dir.clone(),
        );
        Self {
            settings,
            runs_dir,
            launcher,
            watcher: OnceCell::new(),
        }
    }

    async fn watcher(&self) -> Option<&Arc<DirWatcher>> {
        self.watcher
            .get_or_init(|| async {
                DirWatcher::start()
                    .map(Arc::new)
                    .map_err(|e| warn!("inotify is not available; adopted attempts are followed by their supervisors' exits only: {e}"))
                    .ok()
            })
            .await
            .as_ref()
    }

    fn attempt_dir(&self, run: RunId, attempt: u32) -> PathBuf {
        self.runs_dir
            .join(run.to_string())
            .join(attempt.to_string())
    }
}

/// The finalised process job (see `template::finalize`).
#[derive(Debug, Deserialize)]
struct ProcessJob {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

/// Follows an attempt's directory until its status is recorded: sends
/// `started` once the job runs, forwards a cancel to the supervisor, and
/// notices a supervisor that died without recording anything.
///
/// `ours` is the supervisor when this host had one started (its records and
/// its end are told by the launcher, `launcher.rs`); after a restart it is
/// not ours: the directory is watched and its exit followed (`events.rs`).
/// Its liveness is read from `/proc` either way.
async fn follow(
    dir: &Path,
    attempt: u32,
    mut ours: Option<Supervised>,
    watcher: Option<&Arc<DirWatcher>>,
    started: oneshot::Sender<()>,
    cancel: CancellationToken,
) -> Outcome {
    let mut events = Events::hints(ours.as_ref().map(Supervised::hints));
    let mut started = Some(started);
    let mut send_started = || {
        if let Some(tx) = started.take() {
            let _ = tx.send(());
        }
    };
    let mut exited: Option<String> = None;
    let mut supervisor: Option<Identity> = None;
    let mut cancel_sent = false;
    let mut cancel_seen = false;
    loop {
        events.watch_dir_if_needed(watcher, dir);
        match status::read::<Status>(dir, STATUS) {
            Ok(Some(status)) => {
                if status.spawn_error.is_none() {
                    send_started();
                }
                return status.outcome();
            }
            Ok(None) => {}
            Err(e) => {
                return Outcome::Crashed {
                    reason: format!("cannot read the exit status of attempt {attempt}: {e}"),
                };
            }
        }
        if supervisor.is_none() {
            // The directory is published with this file in it: no directory,
            // no file.
            supervisor = match status::read::<Identity>(dir, SUPERVISOR_PID) {
                Ok(id) => id,
                Err(e) => {
                    return Outcome::Crashed {
                        reason: format!("cannot read the supervisor of attempt {attempt}: {e}"),
                    };
                }
            };
        }
        let job = status::read::<Identity>(dir, STARTED).ok().flatten();
        if job.is_some() {
            send_started();
        }
        match supervisor {
            Some(sup) => {
                events.watch_exit(sup.pid);
                if cancel.is_cancelled() && !cancel_sent {
                    sup.signal(libc::SIGTERM);
                    cancel_sent = true;
                }
                if !sup.is_alive() {
                    // It may have recorded the status just before it ended.
                    if let Ok(Some(status)) = status::read::<Status>(dir, STATUS) {
                        if status.spawn_error.is_none() {
                            send_started();
                        }
                        return status.outcome();
                    }
                    return match job {
                        Some(job) => {
                            // Its job dies with it (PR_SET_PDEATHSIG); make
                            // sure of the rest of its group.
                            job.signal_group(libc::SIGKILL);
                            Outcome::Crashed {
                                reason: format!(
                                    "the supervisor of attempt {attempt} died without recording an exit status"
                                ),
                            }
                        }
                        None => Outcome::Crashed {
                            reason: format!(
                                "the supervisor of attempt {attempt} died before starting the job"
                            ),
                        },
                    };
                }
            }
            None => {
                if let Some(exit) = &exited {
                    return Outcome::Crashed {
                        reason: format!(
                            "the supervisor of attempt {attempt} exited ({exit}) before starting the job; see the run's log"
                        ),
                    };
                }
                if ours.is_none() {
                    return Outcome::Crashed {
                        reason: format!(
                            "attempt {attempt} has no supervisor and no recorded status ({} is gone): its outcome cannot be known",
                            dir.display()
                        ),
                    };
                }
            }
        }
        tokio::select! {
            exit = supervisor_exit(&mut ours), if ours.is_some() => {
                exited = Some(exit);
                // It tells of nothing more: a supervisor that won the claim
                // instead is followed through the directory.
                ours = None;
                events.hints_ended();
            }
            () = events.next() => {}
            () = cancel.cancelled(), if !cancel_seen => cancel_seen = true,
        }
    }
}

/// How our own supervisor ended; never resolves without one.
async fn supervisor_exit(ours: &mut Option<Supervised>) -> String {
    match ours {
        Some(ours) => ours.exited().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    /// The finalised job is recorded before the supervisor starts, so a
    /// restart can resume the attempt from it.
    fn records_intent(&self) -> bool {
        true
    }

    fn placement(&self) -> Option<String> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Some(format!("{}:{}", host.trim(), self.runs_dir.display()))
    }

    async fn execute(&self, exec: Execution) -> Outcome {
        let job: ProcessJob = match serde_json::from_value(exec.job.clone()) {
            Ok(j) => j,
            Err(e) => {
                return Outcome::Failed {
                    exit_code: None,
                    message: format!("invalid process job: {e}"),
                };
            }
        };
        if job.command.is_empty() {
            return Outcome::Failed {
                exit_code: None,
                message: "invalid process job: command is empty".into(),
            };
        }
        let dir = self.attempt_dir(exec.run_id, exec.attempt);
        // Submitted by another replica (another host or data directory):
        // its supervisor and status are out of sight here, and starting the
        // attempt again could run it twice.
        if let Some(recorded) = exec.resume.as_ref().and_then(|r| r.placement.clone())
            && Some(&recorded) != self.placement().as_ref()
        {
            return Outcome::Crashed {
                reason: format!(
                    "attempt {} was started by another replica ({recorded}); its outcome \
                     cannot be known from this one",
                    exec.attempt
                ),
            };
        }
        let resumed_existing = exec.resume.is_some() && dir.exists();
        let ours = match &exec.resume {
            _ if resumed_existing => None,
            Some(resume) if !resume.may_create => {
                // Running is recorded only after `started` was written inside
                // the attempt's directory, so this is a directory removed
                // from under us.
                return Outcome::Crashed {
                    reason: format!(
                        "attempt {} was running but {} is gone: its outcome cannot be known",
                        exec.attempt,
                        dir.display()
                    ),
                };
            }
            // New, or never claimed before the restart: start it. A
            // supervisor of the crashed host that claims it first wins, ours
            // then refuses, and this follows the winner.
            _ => {
                let spec = Spec {
                    attempt: exec.attempt,
                    command: job.command,
                    env: job.env,
                    working_dir: job.working_dir,
                    timeout_seconds: job.timeout_seconds,
                    grace_millis: u64::try_from(self.settings.grace.as_millis())
                        .unwrap_or(u64::MAX),
                    log_path: exec.log_path.clone(),
                };
                match self.launcher.start(&dir, &spec).await {
                    Ok(ours) => Some(ours),
                    Err(reason) => return Outcome::Crashed { reason },
                }
            }
        };
        let watcher = self.watcher().await;
        follow(&dir, exec.attempt, ours, watcher, exec.started, exec.cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;
    use tokio_util::sync::CancellationToken;

    /// Not a test: the launcher of the tests below, which start this test
    /// binary with `--exact` on this name (the runs directory is the last
    /// argument) because the lib's tests have no `weir` binary.
    #[test]
    fn supervisor_entry_for_tests() {
        if std::env::var_os("WEIR_TEST_SUPERVISOR").is_none() {
            return;
        }
        let Some(dir) = std::env::args().next_back() else {
            std::process::exit(2);
        };
        std::process::exit(i32::from(supervise(Path::new(&dir))));
    }

    fn backend(runs_dir: PathBuf) -> ProcessBackend {
        let mut backend = ProcessBackend::new(
            ProcessSettings {
                grace: Duration::from_millis(500),
                supervisor: None,
            },
            runs_dir,
        );
        let command = backend.launcher.command_mut();
        command.args = vec![
            "--exact".into(),
            "backend::process::tests::supervisor_entry_for_tests".into(),
            "--nocapture".into(),
            "--quiet".into(),
            // The launcher forks: keep it to one thread besides libtest's
            // main one, which only waits.
            "--test-threads=1".into(),
        ];
        command.env = vec![("WEIR_TEST_SUPERVISOR".into(), "1".into())];
        backend
    }

    async fn run(job: serde_json::Value, cancel: CancellationToken) -> (Outcome, String, bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("run.log");
        let (tx, mut rx) = oneshot::channel();
        let backend = backend(dir.path().join("runs"));
        let outcome = backend
            .execute(Execution {
                run_id: uuid::Uuid::now_v7(),
                attempt: 1,
                job,
                cluster: None,
                resume: None,
                log_path: log_path.clone(),
                cancel,
                started: tx,
            })
            .await;
        let started = rx.try_recv().is_ok();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        (outcome, log, started)
    }

    #[tokio::test]
    async fn exit_zero_completes_and_output_is_logged() {
        let (o, log, started) = run(
            serde_json::json!({"command": ["sh", "-c", "echo out; echo err >&2; echo $FOO"], "env": {"FOO": "bar"}}),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(o, Outcome::Completed);
        assert!(started);
        assert_eq!(log, "out\nerr\nbar\n");
    }

    #[tokio::test]
    async fn non_zero_exit_fails_with_code() {
        let (o, _, _) = run(
            serde_json::json!({"command": ["sh", "-c", "exit 7"]}),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            o,
            Outcome::Failed {
                exit_code: Some(7),
                message: "exited with code 7".into()
            }
        );
    }

    #[tokio::test]
    async fn signal_is_a_crash() {
        let (o, _, _) = run(
            serde_json::json!({"command": ["sh", "-c", "kill -9 $$"]}),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            o,
            Outcome::Crashed {
                reason: "killed by signal 9".into()
            }
        );
    }

    #[tokio::test]
    async fn timeout_is_a_crash() {
        let (o, _, _) = run(
            serde_json::json!({"command": ["sleep", "30"], "timeout_seconds": 1}),
            CancellationToken::new(),
        )
        .await;
        match o {
            Outcome::Crashed { reason } => {
                assert!(reason.starts_with("timed out after 1s"), "{reason}")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn cancel_stops_the_process_group() {
        let token = CancellationToken::new();
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            t2.cancel();
        });
        // A shell that ignores nothing and a grandchild sleep: both must go.
        let (o, _, started) = run(
            serde_json::json!({"command": ["sh", "-c", "sleep 30 & wait"]}),
            token,
        )
        .await;
        assert!(started);
        assert_eq!(
            o,
            Outcome::Cancelled {
                message: "cancelled; stopped with SIGTERM".into()
            }
        );
    }

    #[tokio::test]
    async fn missing_program_fails_with_reason() {
        let (o, _, started) = run(
            serde_json::json!({"command": ["/nonexistent/weir-test-binary"]}),
            CancellationToken::new(),
        )
        .await;
        assert!(!started);
        match o {
            Outcome::Failed {
                exit_code: None,
                message,
            } => {
                assert!(message.contains("cannot start"), "{message}")
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn execution(
        run_id: RunId,
        job: serde_json::Value,
        log_path: PathBuf,
        resume: Option<super::super::Resume>,
    ) -> (Execution, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let exec = Execution {
            run_id,
            attempt: 1,
            job,
            cluster: None,
            resume,
            log_path,
            cancel: CancellationToken::new(),
            started: tx,
        };
        (exec, rx)
    }

    #[tokio::test]
    async fn two_executions_of_one_attempt_start_the_job_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = dir.path().join("starts");
        let job = serde_json::json!({"command": ["sh", "-c", format!("echo x >> {}; sleep 0.5; exit 4", counter.display())]});
        let id = uuid::Uuid::now_v7();
        let b = backend(dir.path().join("runs"));
        let (first, _rx1) = execution(id, job.clone(), dir.path().join("run.log"), None);
        let (second, _rx2) = execution(
            id,
            job,
            dir.path().join("run.log"),
            Some(super::super::Resume {
                may_create: true,
                placement: None,
            }),
        );
        let (a, b) = tokio::join!(b.execute(first), b.execute(second));
        let failed = Outcome::Failed {
            exit_code: Some(4),
            message: "exited with code 4".into(),
        };
        assert_eq!(a, failed);
        assert_eq!(b, failed);
        let starts = std::fs::read_to_string(&counter).expect("counter");
        assert_eq!(starts, "x\n", "the job ran more than once");
    }

    #[tokio::test]
    async fn a_launcher_that_dies_loses_no_attempt_and_is_started_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Arc::new(backend(dir.path().join("runs")));
        let (exec, started) = execution(
            uuid::Uuid::now_v7(),
            serde_json::json!({"command": ["sh", "-c", "sleep 0.5; exit 5"]}),
            dir.path().join("run.log"),
            None,
        );
        let running = tokio::spawn({
            let b = b.clone();
            async move { b.execute(exec).await }
        });
        started.await.expect("the job started");
        let launcher = b.launcher.pid().await.expect("a launcher");
        let launcher = i32::try_from(launcher).expect("pid");
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(launcher, libc::SIGKILL) }, 0);
        // The attempt's supervisor outlives it; its outcome is still read.
        assert_eq!(
            running.await.expect("joined"),
            Outcome::Failed {
                exit_code: Some(5),
                message: "exited with code 5".into()
            }
        );
        // The next attempt gets a new launcher.
        let (exec, _rx) = execution(
            uuid::Uuid::now_v7(),
            serde_json::json!({"command": ["true"]}),
            dir.path().join("run2.log"),
            None,
        );
        assert_eq!(b.execute(exec).await, Outcome::Completed);
        let again = b.launcher.pid().await.expect("a launcher");
        assert_ne!(i32::try_from(again).expect("pid"), launcher);
    }

    #[tokio::test]
    async fn a_resumed_attempt_reads_the_recorded_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = uuid::Uuid::now_v7();
        let b = backend(dir.path().join("runs"));
        let job = serde_json::json!({"command": ["sh", "-c", "exit 9"]});
        let (first, _rx) = execution(id, job.clone(), dir.path().join("run.log"), None);
        let outcome = b.execute(first).await;
        // As after a restart: the run was seen Running; nothing is started
        // again, the recorded status is the outcome.
        let (again, mut rx) = execution(
            id,
            job,
            dir.path().join("run.log"),
            Some(super::super::Resume {
                may_create: false,
                placement: None,
            }),
        );
        assert_eq!(b.execute(again).await, outcome);
        assert!(rx.try_recv().is_ok(), "a recorded start is reported");
    }

    #[tokio::test]
    async fn a_running_attempt_without_its_directory_is_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = backend(dir.path().join("runs"));
        let (exec, _rx) = execution(
            uuid::Uuid::now_v7(),
            serde_json::json!({"command": ["true"]}),
            dir.path().join("run.log"),
            Some(super::super::Resume {
                may_create: false,
                placement: None,
            }),
        );
        match b.execute(exec).await {
            Outcome::Crashed { reason } => {
                assert!(reason.contains("outcome cannot be known"), "{reason}")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_attempt_another_replica_started_is_not_started_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = dir.path().join("starts");
        let b = backend(dir.path().join("runs"));
        let (exec, _rx) = execution(
            uuid::Uuid::now_v7(),
            serde_json::json!({"command": ["sh", "-c", format!("echo x >> {}", counter.display())]}),
            dir.path().join("run.log"),
            Some(super::super::Resume {
                may_create: true,
                placement: Some("elsewhere:/var/lib/weir/runs".into()),
            }),
        );
        match b.execute(exec).await {
            Outcome::Crashed { reason } => {
                assert!(reason.contains("another replica (elsewhere:"), "{reason}")
            }
            other => panic!("expected a crash, got {other:?}"),
        }
        assert!(!counter.exists(), "the job was started");
        // Its own placement resumes as before.
        let (exec, _rx) = execution(
            uuid::Uuid::now_v7(),
            serde_json::json!({"command": ["true"]}),
            dir.path().join("run.log"),
            Some(super::super::Resume {
                may_create: true,
                placement: b.placement(),
            }),
        );
        assert_eq!(b.execute(exec).await, Outcome::Completed);
    }
}
