//! The supervisor: the small process between the host and one attempt's
//! job, like containerd's shim. The launcher (`launcher.rs`) forks it in its
//! own session, not tied to the host, so the job keeps running while the
//! host is down, and the supervisor records how it ended in the attempt's
//! directory for whichever host reads it next (`status.rs` describes the
//! files).
//!
//! Given the [`Spec`], it claims the attempt's directory (a second
//! supervisor of the same attempt exits with [`EXIT_ALREADY_CLAIMED`] and
//! never starts the job), starts the job in its own process group with the
//! run's log file as stdout and stderr, enforces `timeout_seconds`, turns its
//! own SIGTERM (the host's cancel) into SIGTERM → grace → SIGKILL of the
//! job's group, and writes `status.json`.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

use super::status::{
    self, ClaimError, EXIT_ALREADY_CLAIMED, Identity, STARTED, STATUS, Spec, Status,
};

#[derive(Debug, thiserror::Error)]
pub(super) enum SupervisorError {
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("cannot {what} in {dir}: {source}")]
    Io {
        what: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The supervisor's entry point, in the launcher's forked child: everything
/// else is in the attempt's directory. Errors go to stderr (the launcher
/// points it at the run's log file).
pub(super) fn main(attempt_dir: &Path, spec: Spec) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir supervisor: cannot start the async runtime: {e}");
            return 1;
        }
    };
    // One thread: the job's PR_SET_PDEATHSIG follows the thread that started
    // it, which must live as long as the supervisor.
    match runtime.block_on(run(attempt_dir, spec)) {
        Ok(()) => 0,
        Err(SupervisorError::Claim(ClaimError::AlreadyClaimed(dir))) => {
            eprintln!(
                "weir supervisor: {} is already supervised; not starting the job again",
                dir.display()
            );
            EXIT_ALREADY_CLAIMED
        }
        Err(e) => {
            eprintln!("weir supervisor: {e}");
            1
        }
    }
}

/// Runs one attempt to its end and records it. Returns once `status.json` is
/// written.
pub(super) async fn run(attempt_dir: &Path, spec: Spec) -> Result<(), SupervisorError> {
    // First of all, so a cancel never kills the supervisor itself: the host
    // sends SIGTERM only once the attempt's directory exists.
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| SupervisorError::Io {
        what: "handle SIGTERM",
        dir: attempt_dir.to_owned(),
        source,
    })?;
    let io = |what: &'static str| {
        move |source| SupervisorError::Io {
            what,
            dir: attempt_dir.to_owned(),
            source,
        }
    };

    let me = Identity::current().map_err(io("read our own identity"))?;
    status::claim(attempt_dir, &me)?;
    tell_host("claimed");

    let ended = |status: Status| {
        status::write_atomic(attempt_dir, STATUS, &status)?;
        tell_host("status");
        Ok::<(), std::io::Error>(())
    };
    let Some((program, args)) = spec.command.split_first() else {
        return ended(spawn_failed("invalid process job: command is empty".into()))
            .map_err(io("write status.json"));
    };
    let log = match open_log(&spec) {
        Ok(log) => log,
        Err(e) => {
            return ended(spawn_failed(format!(
                "cannot open log file {}: {e}",
                spec.log_path.display()
            )))
            .map_err(io("write status.json"));
        }
    };
    let stderr = log.try_clone().map_err(io("open the log file"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    // The job dies with its supervisor: a supervisor killed from outside
    // leaves an attempt whose outcome is unknown, and the run may be retried;
    // the old job must not run on beside the retry.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and
    // exec here.
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
            return ended(spawn_failed(format!("cannot start {program:?}: {e}")))
                .map_err(io("write status.json"));
        }
    };
    let job = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(|pid| Identity::of(pid).ok());
    if let Some(job) = job {
        status::write_atomic(attempt_dir, STARTED, &job).map_err(io("write started"))?;
        tell_host("started");
    }

    let timeout = spec.timeout_seconds.map(Duration::from_secs);
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending::<()>().await,
        }
    };
    enum Ended {
        Exited(std::process::ExitStatus),
        TimedOut,
        Cancelled,
    }
    let ended_how = tokio::select! {
        status = child.wait() => Ended::Exited(status.map_err(io("wait for the job"))?),
        () = deadline => Ended::TimedOut,
        _ = sigterm.recv() => Ended::Cancelled,
    };
    let signal_group = |sig| {
        if let Some(job) = &job {
            // The group, not only the leader: everything the job started.
            // SAFETY: killpg has no memory-safety preconditions. The job was
            // started with process_group(0), so its pid is its group's id;
            // the id stays reserved while the job is our unreaped child or
            // any member of its group lives.
            unsafe {
                libc::killpg(job.pid, sig);
            }
        }
    };
    let mut status = Status {
        exit_code: None,
        signal: None,
        timed_out_after: None,
        cancelled: false,
        killed_after_grace: false,
        spawn_error: None,
        ended_at: Utc::now(),
    };
    let exit = match ended_how {
        Ended::Exited(exit) => exit,
        stopped => {
            signal_group(libc::SIGTERM);
            let grace = Duration::from_millis(spec.grace_millis);
            let exit = match tokio::time::timeout(grace, child.wait()).await {
                Ok(exit) => exit.map_err(io("wait for the job"))?,
                Err(_) => {
                    status.killed_after_grace = true;
                    signal_group(libc::SIGKILL);
                    child.wait().await.map_err(io("wait for the job"))?
                }
            };
            match stopped {
                Ended::TimedOut => {
                    status.timed_out_after = spec.timeout_seconds;
                }
                _ => status.cancelled = true,
            }
            exit
        }
    };
    // Whatever the job left in its group goes with it.
    signal_group(libc::SIGKILL);
    status.exit_code = exit.code();
    status.signal = exit.signal();
    status.ended_at = Utc::now();
    ended(status).map_err(io("write status.json"))
}

/// Tells the host that a record was just published (`events.rs`): a line
/// on the launcher's pipe to the host, which this process inherited. Only a
/// hint — the record is the file — so a host that is gone or an adopter that
/// never reads it changes nothing.
fn tell_host(record: &str) {
    super::launcher::write_line(&format!("record {} {record}", std::process::id()));
}

fn spawn_failed(reason: String) -> Status {
    Status {
        exit_code: None,
        signal: None,
        timed_out_after: None,
        cancelled: false,
        killed_after_grace: false,
        spawn_error: Some(reason),
        ended_at: Utc::now(),
    }
}

fn open_log(spec: &Spec) -> std::io::Result<std::fs::File> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)?;
    if spec.attempt > 1 {
        writeln!(log, "--- weir: attempt {} ---", spec.attempt)?;
    }
    Ok(log)
}
