//! The launcher (`weir supervise <runs-dir>`, hidden): one long-lived,
//! single-threaded process per backend that forks a supervisor for each
//! attempt, so an attempt's start costs neither a fork of the (large,
//! many-threaded) host nor an exec of the `weir` binary.
//!
//! The host starts it once, on its first attempt, and again if it ends. Each
//! child is exactly the per-attempt supervisor of `supervisor.rs`, started
//! in its own session: the launcher holds no state an attempt needs, so its
//! death (or the host's) leaves every supervisor and job running, and the
//! attempt's directory stays the durable record (`status.rs`).
//!
//! The protocol, host → launcher on its stdin: frames of a little-endian
//! `u32` length and a JSON [`Request`]. Launcher and supervisors → host on
//! one shared pipe, its stdout: lines, each one `write` shorter than
//! `PIPE_BUF`, so lines of different writers never interleave:
//! - `forked <request> <pid> <start-time>`: the supervisor of a request;
//! - `failed <request> <reason>`: no supervisor was started;
//! - `exited <pid> <status>`: the launcher reaped a supervisor;
//! - `record <pid> <name>`: a supervisor published a record (a hint: the
//!   directory is what the host reads, `events.rs`).
//!
//! The host learns each supervisor's identity from `forked` (read by the
//! launcher before it can reap the child, so it is that very process), and
//! its end from `exited` or, if the launcher is gone, from a pidfd.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{Notify, oneshot};
use tracing::warn;

use super::events::pidfd;
use super::status::{Identity, Spec};
use super::supervisor;

/// The largest request frame the launcher reads: a command, its environment
/// and a few paths.
const MAX_FRAME: u32 = 16 * 1024 * 1024;

/// How many launchers a start may try when each ends before answering.
const START_TRIES: u32 = 3;

/// A launcher answers a request with a fork; one that has not within this
/// is stuck, and is killed so the request goes to a new one.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The launcher also reaps this often without a SIGCHLD. `weir supervise`
/// is single threaded, so its signalfd sees every SIGCHLD; a launcher that
/// is not (the lib's tests run it on libtest's thread, beside a main
/// thread that does not block SIGCHLD, which can take the signal and
/// discard it) would otherwise leave an ended supervisor unreaped — and
/// its attempt unanswered — until the next signal. It cost a unit test a
/// hang under load (seen twice) before this.
const REAP_BACKSTOP_MS: libc::c_int = 1_000;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    dir: PathBuf,
    spec: Spec,
}

// ---------------------------------------------------------------------------
// The launcher process.
// ---------------------------------------------------------------------------

/// The launcher's entry point. Returns when the host closes its stdin.
pub(super) fn main() -> u8 {
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weir launcher: {e}");
            1
        }
    }
}

fn serve() -> io::Result<()> {
    // SIGCHLD is taken from a signalfd, so the loop reaps without a poll.
    // SAFETY: plain libc calls on a sigset we own; the process is single
    // threaded (started before any runtime, `main.rs`).
    let sigfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    // SAFETY: fd 0 is our stdin, open for the process's life; ManuallyDrop
    // keeps it from being closed here.
    let mut requests = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    loop {
        use std::os::fd::AsRawFd;
        let mut fds = [
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the call's length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, REAP_BACKSTOP_MS) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ready == 0 {
            // A SIGCHLD taken by another thread never reaches the signalfd:
            // reap anyway, now and then.
            reap();
            continue;
        }
        if fds[1].revents != 0 {
            drain(&sigfd);
            reap();
        }
        if fds[0].revents != 0 {
            let Some(request) = read_request(&mut *requests)? else {
                return Ok(());
            };
            launch(request, sigfd.as_raw_fd());
        }
    }
}

/// The next request, or `None` when the host has closed the pipe.
fn read_request(input: &mut impl Read) -> io::Result<Option<Request>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a request of {len} bytes is over the limit of {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    input.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::other(format!("unreadable request: {e}")))
}

fn drain(sigfd: &OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>() * 8];
    // SAFETY: reads into a buffer we own, of the length given.
    while unsafe { libc::read(sigfd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Reaps every supervisor that has ended and tells the host how.
fn reap() {
    use std::os::unix::process::ExitStatusExt;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let status = std::process::ExitStatus::from_raw(status);
        write_line(&format!("exited {pid} {status}"));
    }
}

/// Forks the request's supervisor. The child never returns from here.
fn launch(request: Request, sigfd: libc::c_int) {
    // SAFETY: this process is single threaded, so the child may run any code.
    match unsafe { libc::fork() } {
        0 => {
            let code = child(&request, sigfd);
            // SAFETY: ends the child without running the launcher's exit
            // handlers twice; the supervisor has flushed what it wrote.
            unsafe { libc::_exit(i32::from(code)) }
        }
        pid if pid > 0 => match Identity::of(pid) {
            // Not reaped before this read (reaping happens only in the loop),
            // so the start time is this child's.
            Ok(id) => write_line(&format!(
                "forked {} {} {}",
                request.id, id.pid, id.start_time
            )),
            Err(e) => {
                // Cannot happen short of /proc being gone. Without an
                // identity the host cannot follow it: stop it before it can
                // start the job (a claim it made is then seen as a supervisor
                // that died before starting it).
                // SAFETY: kill has no memory-safety preconditions; `pid` is
                // our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                write_line(&format!(
                    "failed {} cannot read the identity of supervisor {pid}: {}",
                    request.id,
                    one_line(&e.to_string())
                ));
            }
        },
        _ => {
            let e = io::Error::last_os_error();
            write_line(&format!(
                "failed {} cannot fork a supervisor: {}",
                request.id,
                one_line(&e.to_string())
            ));
        }
    }
}

/// The forked child: detach, point stdin at nothing and stderr at the run's
/// log, and supervise.
fn child(request: &Request, sigfd: libc::c_int) -> u8 {
    // SAFETY: plain libc calls in the freshly forked, single-threaded child.
    unsafe {
        libc::close(sigfd);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Its own session: no signal meant for the host's group or terminal
        // reaches it, and nothing ties its life to the host's.
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
    }
    // Its own failures go to the run's log, as the job's output does.
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&request.spec.log_path)
    {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are open; dup2 replaces fd 2.
        unsafe { libc::dup2(log.as_raw_fd(), 2) };
    }
    supervisor::main(&request.dir, request.spec.clone())
}

/// Writes one protocol line to stdout with a single `write` (the pipe is
/// shared with every supervisor). Errors are dropped: a host that is gone
/// reads nothing anyway (`EPIPE`; Rust ignores `SIGPIPE`).
pub(super) fn write_line(line: &str) {
    let mut bytes = one_line(line).into_bytes();
    bytes.truncate(libc::PIPE_BUF - 1);
    bytes.push(b'\n');
    // SAFETY: writes from a buffer we own, of the length given.
    let _ = unsafe { libc::write(1, bytes.as_ptr().cast(), bytes.len()) };
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

// ---------------------------------------------------------------------------
// The host's side.
// ---------------------------------------------------------------------------

/// How to start the launcher: this very binary's `supervise` command (the
/// unit tests point it at a test of their own binary instead).
#[derive(Debug, Clone)]
pub(super) struct LauncherCommand {
    pub program: Result<PathBuf, String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The host's handle on its launcher, started on first need and again
/// whenever it has ended.
pub(super) struct Launcher {
    command: LauncherCommand,
    runs_dir: PathBuf,
    current: tokio::sync::Mutex<Option<Generation>>,
    routes: Arc<Mutex<Routes>>,
    next_request: AtomicU64,
    next_generation: AtomicU64,
}

/// One launcher process.
struct Generation {
    id: u64,
    pid: Option<u32>,
    stdin: ChildStdin,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct Routes {
    /// Requests waiting for their `forked` or `failed`, by request id.
    pending: HashMap<u64, (u64, oneshot::Sender<Reply>)>,
    /// Supervisors being followed, by pid.
    supervisors: HashMap<i32, Route>,
}

struct Route {
    identity: Identity,
    generation: u64,
    hints: Arc<Notify>,
    exit: Option<oneshot::Sender<Exit>>,
}

enum Reply {
    Forked(Identity, Arc<Notify>, oneshot::Receiver<Exit>),
    Failed(String),
    LauncherGone,
}

enum Exit {
    Status(String),
    LauncherGone,
}

/// A supervisor the launcher started for this host: its identity, a hint
/// each time it publishes a record, and its end.
pub(super) struct Supervised {
    identity: Identity,
    hints: Arc<Notify>,
    exit: Option<oneshot::Receiver<Exit>>,
    routes: Arc<Mutex<Routes>>,
}

impl Supervised {
    /// Notified after each record the supervisor publishes.
    pub(super) fn hints(&self) -> Arc<Notify> {
        self.hints.clone()
    }

    /// How the supervisor ended: its exit status from the launcher, or, if
    /// the launcher ended first, once its pidfd says so.
    pub(super) async fn exited(&mut self) -> String {
        if let Some(rx) = self.exit.take()
            && let Ok(Exit::Status(status)) = rx.await
        {
            return status;
        }
        // The launcher is gone; the supervisor was reparented and is reaped
        // by someone else, so only its end can be known.
        let unknown = "status unknown: its launcher ended first".to_string();
        let fd = match pidfd(self.identity.pid) {
            Ok(fd) => fd,
            Err(_) => return unknown,
        };
        // Opened after the pid could have been recycled: check it is still
        // the same process before waiting on it.
        if self.identity.is_alive() {
            let _ = fd.readable().await;
        }
        unknown
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        // Not a later supervisor that was given the same pid.
        if routes
            .supervisors
            .get(&self.identity.pid)
            .is_some_and(|r| r.identity == self.identity)
        {
            routes.supervisors.remove(&self.identity.pid);
        }
    }
}

impl Launcher {
    pub(super) fn new(command: LauncherCommand, runs_dir: PathBuf) -> Self {
        Self {
            command,
            runs_dir,
            current: tokio::sync::Mutex::new(None),
            routes: Arc::default(),
            next_request: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
        }
    }

    /// The current launcher's pid, if one runs.
    #[cfg(test)]
    pub(super) async fn pid(&self) -> Option<u32> {
        self.current.lock().await.as_ref().and_then(|g| g.pid)
    }

    #[cfg(test)]
    pub(super) fn command_mut(&mut self) -> &mut LauncherCommand {
        &mut self.command
    }

    /// Starts a supervisor for the attempt in `dir`. A launcher that ends
    /// before answering may or may not have forked one: the request is sent
    /// again to a new launcher, and the attempt's claim (`status.rs`) lets
    /// only one of them start the job.
    pub(super) async fn start(&self, dir: &Path, spec: &Spec) -> Result<Supervised, String> {
        let mut last = String::new();
        for _ in 0..START_TRIES {
            match self.request(dir, spec).await? {
                Reply::Forked(identity, hints, exit) => {
                    return Ok(Supervised {
                        identity,
                        hints,
                        exit: Some(exit),
                        routes: self.routes.clone(),
                    });
                }
                Reply::Failed(reason) => return Err(reason),
                Reply::LauncherGone => {
                    last = "the supervisors' launcher ended before starting one".into();
                }
            }
        }
        Err(last)
    }

    async fn request(&self, dir: &Path, spec: &Spec) -> Result<Reply, String> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&Request {
            id,
            dir: dir.to_owned(),
            spec: spec.clone(),
        })
        .map_err(|e| format!("cannot encode the job: {e}"))?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|len| *len <= MAX_FRAME)
            .ok_or_else(|| {
                format!(
                    "the job's command and environment take {} bytes, over the limit of {MAX_FRAME}",
                    body.len()
                )
            })?;
        let (tx, mut rx) = oneshot::channel();
        let launcher = {
            let mut current = self.current.lock().await;
            if current
                .as_ref()
                .is_none_or(|g| g.ended.load(Ordering::Acquire))
            {
                *current = Some(self.spawn()?);
            }
            let Some(generation) = current.as_mut() else {
                return Err("no launcher".into());
            };
            self.routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pending
                .insert(id, (generation.id, tx));
            let mut frame = Vec::with_capacity(4 + body.len());
            frame.extend_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(&body);
            if generation.stdin.write_all(&frame).await.is_err() {
                // Ended under us (its waiter may have run already).
                generation.ended.store(true, Ordering::Release);
                self.routes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pending
                    .remove(&id);
                return Ok(Reply::LauncherGone);
            }
            generation.pid
        };
        match tokio::time::timeout(ANSWER_WITHIN, &mut rx).await {
            Ok(reply) => Ok(reply.unwrap_or(Reply::LauncherGone)),
            Err(_) => {
                warn!(
                    "the supervisors' launcher has not answered in {ANSWER_WITHIN:?}; killing it"
                );
                if let Some(pid) = launcher.and_then(|p| i32::try_from(p).ok()) {
                    // SAFETY: kill has no memory-safety preconditions. Its
                    // waiter has not answered our request, so the launcher
                    // has not been reaped (short of this very instant) and
                    // the pid is still its own.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                // Its waiter answers every request it had.
                Ok(rx.await.unwrap_or(Reply::LauncherGone))
            }
        }
    }

    fn spawn(&self) -> Result<Generation, String> {
        let program = self.command.program.clone()?;
        let mut child = Command::new(program)
            .args(&self.command.args)
            .arg(&self.runs_dir)
            .envs(self.command.env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the supervisors' launcher: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the supervisors' launcher has no pipes".into());
        };
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let routes = self.routes.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                route(&routes, id, &line);
            }
        });
        let routes = self.routes.clone();
        let task_ended = ended.clone();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if status.success() => {}
                Ok(status) => warn!("the supervisors' launcher ended: {status}"),
                Err(e) => warn!("cannot wait for the supervisors' launcher: {e}"),
            }
            task_ended.store(true, Ordering::Release);
            let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<u64> = routes
                .pending
                .iter()
                .filter(|(_, (g, _))| *g == id)
                .map(|(r, _)| *r)
                .collect();
            for request in gone {
                if let Some((_, tx)) = routes.pending.remove(&request) {
                    let _ = tx.send(Reply::LauncherGone);
                }
            }
            for route in routes.supervisors.values_mut() {
                if route.generation == id
                    && let Some(tx) = route.exit.take()
                {
                    let _ = tx.send(Exit::LauncherGone);
                }
            }
        });
        Ok(Generation {
            id,
            pid,
            stdin,
            ended,
        })
    }
}

/// Acts on one line from a launcher's pipe.
fn route(routes: &Mutex<Routes>, generation: u64, line: &str) {
    let mut words = line.splitn(3, ' ');
    let (Some(kind), Some(first)) = (words.next(), words.next()) else {
        return;
    };
    let rest = words.next().unwrap_or("");
    let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
    match kind {
        "record" => {
            if let Some(route) = first
                .parse()
                .ok()
                .and_then(|pid: i32| routes.supervisors.get(&pid))
            {
                route.hints.notify_one();
            }
        }
        "exited" => {
            if let Some(route) = first
                .parse()
                .ok()
                .and_then(|pid: i32| routes.supervisors.get_mut(&pid))
                && let Some(tx) = route.exit.take()
            {
                let _ = tx.send(Exit::Status(rest.to_string()));
            }
        }
        "forked" => {
            let Some((_, tx)) = first
                .parse()
                .ok()
                .and_then(|id: u64| routes.pending.remove(&id))
            else {
                return;
            };
            let mut fields = rest.split(' ');
            let identity = match (
                fields.next().and_then(|p| p.parse().ok()),
                fields.next().and_then(|t| t.parse().ok()),
            ) {
                (Some(pid), Some(start_time)) => Identity { pid, start_time },
                _ => {
                    let _ = tx.send(Reply::Failed(format!("the launcher said {line:?}")));
                    return;
                }
            };
            let hints = Arc::new(Notify::new());
            let (exit_tx, exit_rx) = oneshot::channel();
            routes.supervisors.insert(
                identity.pid,
                Route {
                    identity,
                    generation,
                    hints: hints.clone(),
                    exit: Some(exit_tx),
                },
            );
            if tx.send(Reply::Forked(identity, hints, exit_rx)).is_err() {
                // Nobody follows it here; the attempt's directory will tell.
                routes.supervisors.remove(&identity.pid);
            }
        }
        "failed" => {
            if let Some((_, tx)) = first
                .parse()
                .ok()
                .and_then(|id: u64| routes.pending.remove(&id))
            {
                let _ = tx.send(Reply::Failed(rest.to_string()));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_a_huge_frame_is_refused() {
        let spec = Spec {
            attempt: 2,
            command: vec!["true".into()],
            env: Default::default(),
            working_dir: None,
            timeout_seconds: Some(5),
            grace_millis: 100,
            log_path: "/tmp/log".into(),
        };
        let body = serde_json::to_vec(&Request {
            id: 7,
            dir: "/tmp/a".into(),
            spec,
        })
        .expect("encode");
        let mut frame = u32::try_from(body.len())
            .expect("len")
            .to_le_bytes()
            .to_vec();
        frame.extend_from_slice(&body);
        let read = read_request(&mut frame.as_slice())
            .expect("read")
            .expect("a request");
        assert_eq!((read.id, read.spec.attempt), (7, 2));
        assert!(read_request(&mut &b""[..]).expect("eof").is_none());
        let huge = (MAX_FRAME + 1).to_le_bytes();
        let err = read_request(&mut &huge[..]).expect_err("over the limit");
        assert!(err.to_string().contains("over the limit"), "{err}");
    }

    #[test]
    fn lines_reach_their_supervisor_and_unknown_ones_are_dropped() {
        let routes = Mutex::new(Routes::default());
        let (tx, mut rx) = oneshot::channel();
        routes.lock().expect("lock").pending.insert(4, (1, tx));
        route(&routes, 1, "record 99 claimed");
        route(&routes, 1, "forked 4 1234 5678");
        route(&routes, 1, "garbage");
        let Ok(Reply::Forked(id, hints, mut exit)) = rx.try_recv() else {
            panic!("no forked reply");
        };
        assert_eq!(
            id,
            Identity {
                pid: 1234,
                start_time: 5678
            }
        );
        route(&routes, 1, "record 1234 started");
        assert!(
            futures::FutureExt::now_or_never(hints.notified()).is_some(),
            "the record line woke the follower"
        );
        route(&routes, 1, "exited 1234 exit status: 3");
        match exit.try_recv() {
            Ok(Exit::Status(s)) => assert_eq!(s, "exit status: 3"),
            _ => panic!("no exit status"),
        }
    }
}
