//! Several `weir serve` replicas on one database.
//!
//! Every replica serves the API; exactly one, the **leader**, runs the
//! scheduler, the launcher and the backends' watches. [`Election`] decides
//! who leads; [`Bus`] carries what the leader must hear from the others (a
//! new run, a cancel) between replicas.
//!
//! - **Embedded SQLite**: there is one replica, and it leads. Its election is
//!   an exclusive lock on `<data dir>/weir.lock`, so a second `weir serve`
//!   on the same data directory is refused instead of scheduling the same
//!   runs twice.
//! - **PostgreSQL**: the leader is whoever holds a session-level advisory
//!   lock ([`LEADER_LOCK`]) on a connection of its own. Why an advisory lock
//!   and not a Kubernetes Lease: the lock lives in the database that is
//!   already the source of truth, so it needs no other API (process pools
//!   have no cluster at all) and no clock. PostgreSQL releases it the moment
//!   the leader's session ends, so a killed leader is replaced within one
//!   poll ([`POLL`]), not after a lease's expiry. The lease's one advantage, a
//!   leader that stops on its own when it can no longer renew, is had here
//!   by pinging the lock's connection every [`PING`]: a leader whose session
//!   is gone (network partition, server restart) stops at once, and a new
//!   leader waits [`SETTLE`] before taking over the runs in flight, long
//!   enough for the old one to have noticed. Even if two schedulers did
//!   overlap, releases are serialised in the database (see
//!   `store/postgres.rs`, `RELEASE_LOCK`), so no limit can be exceeded.

pub(crate) mod bus;
mod election;

pub(crate) use bus::{Bus, Signal};
pub(crate) use election::Election;

use std::time::Duration;

/// The advisory lock key of leadership ("WEIR" and 2).
pub(crate) const LEADER_LOCK: i64 = 0x5745_4952_0000_0002;
/// How often a standby tries to take the lock.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// How often the leader checks that its lock's session is alive, and how
/// long one check may take.
pub(crate) const PING: Duration = Duration::from_secs(1);
/// How long a new leader waits before taking over runs in flight: more than
/// an old leader needs to notice it lost its session (one ping and its
/// timeout).
pub(crate) const SETTLE: Duration = Duration::from_secs(3);
/// The PostgreSQL notification channel replicas talk on.
pub(crate) const CHANNEL: &str = "weir_replicas";

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("cannot lock {path}: {source}")]
    LockFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another weir serve is already using the data directory {0} (it holds weir.lock); \
         several replicas need a shared PostgreSQL database (--database-url)"
    )]
    DataDirInUse(std::path::PathBuf),
    #[error("the leader lost its database session: {0}")]
    Lost(String),
}
