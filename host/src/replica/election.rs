//! Who leads: see the module docs of [`crate::replica`].

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{LEADER_LOCK, PING, POLL, ReplicaError};

/// How this replica becomes the leader.
pub(crate) enum Election {
    /// The only replica (embedded store): it leads from the start, holding
    /// the data directory's lock file for as long as it lives.
    /// Holds `weir.lock` (locked) for as long as this replica runs.
    Sole(
        #[allow(
            dead_code,
            reason = "held, never read: the lock lasts while the file is open"
        )]
        File,
    ),
    /// One of several replicas on a PostgreSQL database.
    Postgres(Box<PgConnectOptions>),
}

impl Election {
    /// The sole replica of a data directory: refused if another process
    /// holds the directory's lock.
    pub(crate) fn sole(data_dir: &Path) -> Result<Self, ReplicaError> {
        let path = data_dir.join("weir.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ReplicaError::LockFile {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Election::Sole(file)),
            Err(TryLockError::WouldBlock) => Err(ReplicaError::DataDirInUse(data_dir.to_owned())),
            Err(TryLockError::Error(source)) => Err(ReplicaError::LockFile { path, source }),
        }
    }

    pub(crate) fn is_replicated(&self) -> bool {
        matches!(self, Election::Postgres(_))
    }

    /// Waits until this replica leads; `None` if `shutdown` came first.
    pub(crate) async fn acquire(&self, shutdown: &CancellationToken) -> Option<Leader> {
        let options = match self {
            Election::Sole(_) => return Some(Leader::sole()),
            Election::Postgres(options) => options,
        };
        let mut logged_standby = false;
        loop {
            match try_lock(options).await {
                Ok(Some(conn)) => return Some(Leader::watch(conn)),
                Ok(None) => {
                    if !logged_standby {
                        info!("another replica leads; this one serves the API and stands by");
                        logged_standby = true;
                    }
                }
                Err(e) => warn!("cannot try for leadership, retrying: {e}"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// One attempt: a fresh connection that either takes the lock and is kept,
/// or is closed.
async fn try_lock(options: &PgConnectOptions) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = PgConnection::connect_with(options).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(&mut conn)
        .await?;
    if got {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

/// Leadership, held until this is dropped or [`Leader::lost`] fires.
pub(crate) struct Leader {
    lost: CancellationToken,
    reason: std::sync::Arc<std::sync::Mutex<String>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Leader {
    fn sole() -> Self {
        Self {
            lost: CancellationToken::new(),
            reason: Default::default(),
            watcher: None,
        }
    }

    /// Keeps the lock's connection and pings it; a failed or slow ping
    /// means the session (and the lock with it) may be gone.
    fn watch(mut conn: PgConnection) -> Self {
        let lost = CancellationToken::new();
        let reason = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (l, r) = (lost.clone(), reason.clone());
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PING).await;
                let why = match tokio::time::timeout(PING, conn.ping()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer to a ping within {PING:?}"),
                };
                if let Ok(mut g) = r.lock() {
                    *g = why;
                }
                l.cancel();
                return;
            }
        });
        Self {
            lost,
            reason,
            watcher: Some(watcher),
        }
    }

    /// Resolves when leadership is lost (never for the sole replica).
    pub(crate) async fn lost(&self) -> ReplicaError {
        self.lost.cancelled().await;
        let why = self.reason.lock().map(|g| g.clone()).unwrap_or_default();
        ReplicaError::Lost(why)
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Dropping the connection ends the session and frees the lock.
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_sole_replica_on_one_data_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Election::sole(dir.path()).expect("first");
        match Election::sole(dir.path()) {
            Err(ReplicaError::DataDirInUse(p)) => assert_eq!(p, dir.path()),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("two replicas hold one data directory"),
        }
        drop(first);
        assert!(
            Election::sole(dir.path()).is_ok(),
            "the lock outlived its holder"
        );
    }
}
