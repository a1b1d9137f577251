//! The on-disk protocol between the host and a run's supervisor: one
//! directory per attempt, `<data>/runs/<run id>/<attempt>/`, holding
//!
//! - `supervisor.pid` — the supervisor's [`Identity`], present from the moment
//!   the directory exists (the supervisor prepares it in a private directory
//!   and publishes it with one `rename`, which fails if the attempt's
//!   directory exists: a second supervisor never starts the job);
//! - `started` — the job's [`Identity`], written once the job runs;
//! - `status.json` — the job's [`Status`], written once it ended.
//!
//! Every file is written to a temporary name, synced, renamed into place and
//! the directory synced, so a reader after a crash sees the whole file or
//! none of it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::Outcome;

pub(super) const SUPERVISOR_PID: &str = "supervisor.pid";
pub(super) const STARTED: &str = "started";
pub(super) const STATUS: &str = "status.json";

/// The supervisor's exit code when the attempt's directory already exists:
/// another supervisor owns the attempt.
pub(super) const EXIT_ALREADY_CLAIMED: u8 = 3;

/// What the host hands the supervisor on its stdin: everything needed to run
/// the job without the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Spec {
    pub attempt: u32,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Time between SIGTERM and SIGKILL on cancel or timeout.
    pub grace_millis: u64,
    /// The run's log file; the job's stdout and stderr are appended to it.
    pub log_path: PathBuf,
}

/// A process as it was when it started: the pid and its start time (field 22
/// of `/proc/<pid>/stat`, clock ticks since boot), so a pid recycled by the
/// system is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Identity {
    pub pid: i32,
    pub start_time: u64,
}

impl Identity {
    /// This process.
    pub(super) fn current() -> io::Result<Self> {
        let pid = i32::try_from(std::process::id()).map_err(io::Error::other)?;
        Self::of(pid)
    }

    /// The running process `pid`.
    pub(super) fn of(pid: i32) -> io::Result<Self> {
        let (start_time, _) = proc_stat(pid)?;
        Ok(Self { pid, start_time })
    }

    /// Whether this very process still runs (a zombie does not: it has ended
    /// and waits only to be reaped).
    pub(super) fn is_alive(&self) -> bool {
        match proc_stat(self.pid) {
            Ok((start_time, state)) => start_time == self.start_time && !matches!(state, 'Z' | 'X'),
            Err(_) => false,
        }
    }

    /// Sends `signal` to the process if it is still this one.
    pub(super) fn signal(&self, signal: libc::c_int) -> bool {
        if !self.is_alive() {
            return false;
        }
        // SAFETY: kill has no memory-safety preconditions; the identity check
        // above keeps a recycled pid from being signalled (short of a reuse
        // within this instant).
        unsafe { libc::kill(self.pid, signal) == 0 }
    }

    /// Sends `signal` to the process group this process leads, if it is
    /// still this one.
    pub(super) fn signal_group(&self, signal: libc::c_int) -> bool {
        if !self.is_alive() {
            return false;
        }
        // SAFETY: as in `signal`; the job leads its own group (pgid = pid).
        unsafe { libc::killpg(self.pid, signal) == 0 }
    }
}

/// Start time and state of `pid` from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> io::Result<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&stat).ok_or_else(|| io::Error::other(format!("unreadable /proc/{pid}/stat")))
}

fn parse_stat(stat: &str) -> Option<(u64, char)> {
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: the fields that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is `state`; field 22 is `starttime`, 19 fields further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((start_time, state))
}

/// How the job ended, as its supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Status {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The job ran past `timeout_seconds` (this many) and was stopped.
    #[serde(default)]
    pub timed_out_after: Option<u64>,
    /// The job was stopped because the run was cancelled.
    #[serde(default)]
    pub cancelled: bool,
    /// When stopped: whether SIGTERM sufficed or SIGKILL was needed.
    #[serde(default)]
    pub killed_after_grace: bool,
    /// The job could not be started; the reason.
    #[serde(default)]
    pub spawn_error: Option<String>,
    pub ended_at: DateTime<Utc>,
}

impl Status {
    /// The attempt's outcome; the same mapping the backend had when it ran
    /// jobs as its own children.
    pub(super) fn outcome(&self) -> Outcome {
        if let Some(e) = &self.spawn_error {
            return Outcome::Failed {
                exit_code: None,
                message: e.clone(),
            };
        }
        let how = if self.killed_after_grace {
            "SIGKILL after the grace period"
        } else {
            "SIGTERM"
        };
        if self.cancelled {
            return Outcome::Cancelled {
                message: format!("cancelled; stopped with {how}"),
            };
        }
        if let Some(seconds) = self.timed_out_after {
            return Outcome::Crashed {
                reason: format!("timed out after {seconds}s; stopped with {how}"),
            };
        }
        match (self.exit_code, self.signal) {
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
        }
    }
}

/// Writes `value` as `dir/name`, crash-safe: temporary file, fsync, rename,
/// fsync of the directory.
pub(super) fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads `dir/name`; `None` when it does not exist (yet).
pub(super) fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    match fs::read(dir.join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why an attempt could not be claimed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClaimError {
    #[error("attempt directory {0} exists: another supervisor owns this attempt")]
    AlreadyClaimed(PathBuf),
    #[error("cannot create attempt directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Creates the attempt's directory with `supervisor.pid` in it, atomically:
/// it is prepared under a private name and renamed into place with
/// `RENAME_NOREPLACE`, so of two supervisors of one attempt exactly one
/// succeeds, and a reader never sees the directory without its pid file.
pub(super) fn claim(attempt_dir: &Path, me: &Identity) -> Result<(), ClaimError> {
    let io_err = |source| ClaimError::Io {
        path: attempt_dir.to_owned(),
        source,
    };
    let parent = attempt_dir
        .parent()
        .ok_or_else(|| io_err(io::Error::other("it has no parent directory")))?;
    let name = attempt_dir
        .file_name()
        .ok_or_else(|| io_err(io::Error::other("it has no name")))?
        .to_string_lossy()
        .into_owned();
    fs::create_dir_all(parent).map_err(io_err)?;
    if attempt_dir.exists() {
        return Err(ClaimError::AlreadyClaimed(attempt_dir.to_owned()));
    }
    let staging = parent.join(format!(".{name}.claim-{}", me.pid));
    // A leftover from a supervisor with our pid that died while claiming.
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging).map_err(io_err)?;
    let published = write_atomic(&staging, SUPERVISOR_PID, me)
        .and_then(|()| rename_no_replace(&staging, attempt_dir));
    match published {
        Ok(()) => sync_dir(parent).map_err(io_err),
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) {
                Err(ClaimError::AlreadyClaimed(attempt_dir.to_owned()))
            } else {
                Err(io_err(e))
            }
        }
    }
}

fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(from.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            exit_code: None,
            signal: None,
            timed_out_after: None,
            cancelled: false,
            killed_after_grace: false,
            spawn_error: None,
            ended_at: Utc::now(),
        }
    }

    #[test]
    fn outcome_mapping() {
        let s = |f: fn(&mut Status)| {
            let mut s = status();
            f(&mut s);
            s.outcome()
        };
        assert_eq!(s(|s| s.exit_code = Some(0)), Outcome::Completed);
        assert_eq!(
            s(|s| s.exit_code = Some(7)),
            Outcome::Failed {
                exit_code: Some(7),
                message: "exited with code 7".into()
            }
        );
        assert_eq!(
            s(|s| s.signal = Some(9)),
            Outcome::Crashed {
                reason: "killed by signal 9".into()
            }
        );
        assert_eq!(
            s(|s| {
                s.signal = Some(15);
                s.timed_out_after = Some(5);
            }),
            Outcome::Crashed {
                reason: "timed out after 5s; stopped with SIGTERM".into()
            }
        );
        assert_eq!(
            s(|s| {
                s.signal = Some(9);
                s.cancelled = true;
                s.killed_after_grace = true;
            }),
            Outcome::Cancelled {
                message: "cancelled; stopped with SIGKILL after the grace period".into()
            }
        );
        assert_eq!(
            s(|s| s.spawn_error = Some("cannot start \"x\": gone".into())),
            Outcome::Failed {
                exit_code: None,
                message: "cannot start \"x\": gone".into()
            }
        );
    }

    #[test]
    fn status_round_trips_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read::<Status>(dir.path(), STATUS).expect("read"), None);
        let mut s = status();
        s.exit_code = Some(3);
        write_atomic(dir.path(), STATUS, &s).expect("write");
        assert_eq!(read::<Status>(dir.path(), STATUS).expect("read"), Some(s));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATUS)]);
    }

    #[test]
    fn a_torn_status_is_an_error_not_an_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(STATUS), b"{\"exit_co").expect("write");
        assert!(read::<Status>(dir.path(), STATUS).is_err());
    }

    #[test]
    fn an_attempt_is_claimed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attempt = dir.path().join("runs/r1/1");
        let me = Identity::current().expect("identity");
        claim(&attempt, &me).expect("first claim");
        assert_eq!(
            read::<Identity>(&attempt, SUPERVISOR_PID).expect("read"),
            Some(me)
        );
        let other = Identity { pid: 1, ..me };
        assert!(matches!(
            claim(&attempt, &other),
            Err(ClaimError::AlreadyClaimed(_))
        ));
        // The loser leaves nothing behind and changed nothing.
        let names: Vec<_> = fs::read_dir(dir.path().join("runs/r1"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("1")]);
        assert_eq!(
            read::<Identity>(&attempt, SUPERVISOR_PID).expect("read"),
            Some(me)
        );
    }

    #[test]
    fn identity_sees_recycled_and_dead_pids() {
        let me = Identity::current().expect("identity");
        assert!(me.is_alive());
        let recycled = Identity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!recycled.is_alive());
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        let id = Identity::of(pid).expect("child identity");
        child.wait().expect("wait");
        assert!(!id.is_alive());
    }

    #[test]
    fn stat_with_parentheses_in_the_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(stat), Some((123456, 'S')));
    }
}
