//! How the host learns that an attempt moved on, without a poll.
//!
//! - An attempt this host started: its supervisor writes a line on the
//!   launcher's pipe to the host after each record it publishes (claimed,
//!   started, status), and the launcher tells when it exits
//!   (`launcher.rs`).
//! - An attempt adopted after a restart (or claimed by another supervisor
//!   first): inotify on the attempt's directory — every record is published
//!   into it by a rename — and a pidfd of its supervisor, readable when it
//!   exits.
//!
//! An event only says "look again": the directory (`status.rs`) stays the
//! record the host reads, so the crash guarantees do not depend on an event
//! being seen. Sources are set up before the directory is read, so nothing
//! that happens after a read goes unnoticed.

use std::collections::HashMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tracing::warn;

type Waiters = Arc<Mutex<HashMap<WatchDescriptor, Arc<Notify>>>>;

/// One inotify instance for every adopted attempt of a backend (instances
/// are few per user; watches are many).
pub(super) struct DirWatcher {
    watches: Mutex<Watches>,
    waiters: Waiters,
}

impl DirWatcher {
    /// Starts the instance and the task that wakes each watch's waiter.
    pub(super) fn start() -> io::Result<Self> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let mut stream = inotify.into_event_stream([0u8; 4096])?;
        let waiters: Waiters = Arc::default();
        let task_waiters = waiters.clone();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                let map = task_waiters.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Ok(event) => {
                        if let Some(waiter) = map.get(&event.wd) {
                            waiter.notify_one();
                        }
                    }
                    Err(e) => {
                        // Overflow or a read error: everyone looks again.
                        warn!("inotify: {e}");
                        map.values().for_each(|w| w.notify_one());
                    }
                }
            }
        });
        Ok(Self {
            watches: Mutex::new(watches),
            waiters,
        })
    }

    /// Watches `dir` for records published into it.
    fn watch(self: &Arc<Self>, dir: &Path) -> io::Result<DirWatch> {
        let wd = self
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(
                dir,
                WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE | WatchMask::DELETE_SELF,
            )?;
        let notify = Arc::new(Notify::new());
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(wd.clone(), notify.clone());
        Ok(DirWatch {
            wd,
            notify,
            owner: self.clone(),
        })
    }
}

struct DirWatch {
    wd: WatchDescriptor,
    notify: Arc<Notify>,
    owner: Arc<DirWatcher>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.owner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.wd);
        // Already gone if the directory was removed.
        let _ = self
            .owner
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.wd.clone());
    }
}

/// A process's exit as an event: a pidfd, readable once the process ends.
pub(super) fn pidfd(pid: i32) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and
    // the same for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// The event sources of one attempt being followed.
#[derive(Default)]
pub(super) struct Events {
    /// Our own supervisor's records, told by the launcher, until it ends.
    hints: Option<Arc<Notify>>,
    dir: Option<DirWatch>,
    /// The supervisor's pidfd, until it has fired.
    exit: Option<AsyncFd<OwnedFd>>,
    /// The pid `exit` was opened for (also after it fired).
    exit_of: Option<i32>,
}

impl Events {
    /// An attempt this host started: its supervisor's records.
    pub(super) fn hints(hints: Option<Arc<Notify>>) -> Self {
        Self {
            hints,
            ..Self::default()
        }
    }

    /// Our supervisor ended: nothing more comes from it.
    pub(super) fn hints_ended(&mut self) {
        self.hints = None;
    }

    /// Watches the attempt's directory once our supervisor tells about it no
    /// more (adopted, or our supervisor ended — it may have lost the claim
    /// to another). Call before reading the directory.
    pub(super) fn watch_dir_if_needed(&mut self, watcher: Option<&Arc<DirWatcher>>, dir: &Path) {
        if self.hints.is_some() || self.dir.is_some() {
            return;
        }
        let Some(watcher) = watcher else { return };
        match watcher.watch(dir) {
            Ok(w) => self.dir = Some(w),
            // No directory: the caller decides from that. Anything else
            // leaves the supervisor's exit as the only event.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot watch {}: {e}", dir.display()),
        }
    }

    /// Follows the supervisor's exit. Call before checking it is alive.
    pub(super) fn watch_exit(&mut self, pid: i32) {
        if self.exit_of == Some(pid) {
            return;
        }
        self.exit_of = Some(pid);
        match pidfd(pid) {
            Ok(fd) => self.exit = Some(fd),
            // Already gone (ESRCH): the liveness check that follows sees it.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => self.exit = None,
            Err(e) => {
                warn!("cannot follow the exit of supervisor {pid}: {e}");
                self.exit = None;
            }
        }
    }

    /// Resolves when something may have changed; never, once no source is
    /// left (the caller's other branches decide then).
    pub(super) async fn next(&mut self) {
        enum Fired {
            Hint,
            Dir,
            Exit,
        }
        let Events {
            hints, dir, exit, ..
        } = self;
        let from_hints = async {
            match hints {
                Some(hints) => {
                    hints.notified().await;
                    Fired::Hint
                }
                None => std::future::pending().await,
            }
        };
        let from_dir = async {
            match dir {
                Some(w) => {
                    w.notify.notified().await;
                    Fired::Dir
                }
                None => std::future::pending().await,
            }
        };
        let from_exit = async {
            match exit {
                Some(fd) => {
                    // Readable for good once the process has ended.
                    let _ = fd.readable().await;
                    Fired::Exit
                }
                None => std::future::pending().await,
            }
        };
        let fired = tokio::select! {
            f = from_hints => f,
            f = from_dir => f,
            f = from_exit => f,
        };
        match fired {
            Fired::Exit => self.exit = None,
            Fired::Hint | Fired::Dir => {}
        }
    }
}
