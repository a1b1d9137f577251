//! Runs a job as a local child process: the quick start's and the tests'
//! backend. The process gets its own process group, so a cancel or a timeout
//! stops everything it started, and dies with Weir (`PR_SET_PDEATHSIG`), so a
//! run is never left running unobserved after a crash of the host.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::process::Command;

use super::{Backend, Execution, Outcome};

#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Time between SIGTERM and SIGKILL on cancel or timeout.
    pub grace: Duration,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
        }
    }
}

pub struct ProcessBackend {
    settings: ProcessSettings,
}

impl ProcessBackend {
    pub fn new(settings: ProcessSettings) -> Self {
        Self { settings }
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

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Cancelled,
    WaitFailed(std::io::Error),
}

fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: killpg has no memory-safety preconditions; the group id is the
    // child's pid because the child was started with process_group(0).
    unsafe {
        libc::killpg(pid, signal);
    }
}

#[async_trait]
impl Backend for ProcessBackend {
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
        let Some((program, args)) = job.command.split_first() else {
            return Outcome::Failed {
                exit_code: None,
                message: "invalid process job: command is empty".into(),
            };
        };
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&exec.log_path)
        {
            Ok(mut f) => {
                if exec.attempt > 1 {
                    let _ = writeln!(f, "--- weir: attempt {} ---", exec.attempt);
                }
                f
            }
            Err(e) => {
                return Outcome::Crashed {
                    reason: format!("cannot open log file {}: {e}", exec.log_path.display()),
                };
            }
        };
        let stderr = match log.try_clone() {
            Ok(f) => f,
            Err(e) => {
                return Outcome::Crashed {
                    reason: format!("cannot open log file: {e}"),
                };
            }
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(&job.env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &job.working_dir {
            cmd.current_dir(dir);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork
        // and exec here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Failed {
                    exit_code: None,
                    message: format!("cannot start {program:?}: {e}"),
                };
            }
        };
        let pid = child.id();
        let _ = exec.started.send(());

        let timeout = job.timeout_seconds.map(Duration::from_secs);
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        let ended = tokio::select! {
            status = child.wait() => match status {
                Ok(s) => Ended::Exited(s),
                Err(e) => Ended::WaitFailed(e),
            },
            () = deadline => Ended::TimedOut,
            () = exec.cancel.cancelled() => Ended::Cancelled,
        };
        if matches!(ended, Ended::TimedOut | Ended::Cancelled) {
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGTERM);
            }
            let stopped = tokio::time::timeout(self.settings.grace, child.wait())
                .await
                .is_ok();
            if !stopped {
                if let Some(pid) = pid {
                    signal_group(pid, libc::SIGKILL);
                }
                let _ = child.wait().await;
            }
            // Reap anything left in the group.
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGKILL);
            }
            let how = if stopped {
                "SIGTERM"
            } else {
                "SIGKILL after the grace period"
            };
            return match ended {
                Ended::TimedOut => Outcome::Crashed {
                    reason: format!(
                        "timed out after {}s; stopped with {how}",
                        timeout.map(|t| t.as_secs()).unwrap_or_default()
                    ),
                },
                _ => Outcome::Cancelled {
                    message: format!("cancelled; stopped with {how}"),
                },
            };
        }
        match ended {
            Ended::Exited(status) => match (status.code(), status.signal()) {
                (Some(0), _) => Outcome::Completed,
                (Some(code), _) => Outcome::Failed {
                    exit_code: Some(code),
                    message: format!("exited with code {code}"),
                },
                (None, Some(sig)) => Outcome::Crashed {
                    reason: format!("killed by signal {sig}"),
                },
                (None, None) => Outcome::Crashed {
                    reason: "ended without an exit code or signal".into(),
                },
            },
            Ended::WaitFailed(e) => Outcome::Crashed {
                reason: format!("lost track of the process: {e}"),
            },
            Ended::TimedOut | Ended::Cancelled => Outcome::Crashed {
                reason: "unreachable".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;
    use tokio_util::sync::CancellationToken;

    async fn run(job: serde_json::Value, cancel: CancellationToken) -> (Outcome, String, bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("run.log");
        let (tx, mut rx) = oneshot::channel();
        let backend = ProcessBackend::new(ProcessSettings {
            grace: Duration::from_millis(500),
        });
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
}
