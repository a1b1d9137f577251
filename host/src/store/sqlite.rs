//! The embedded database: SQLite in WAL mode with `synchronous=FULL`, so a
//! committed transaction survives a crash of the host or the machine.
//!
//! Every write transaction runs on one connection (SQLite has one writer
//! anyway; queuing in-process avoids `SQLITE_BUSY` upgrades under
//! concurrent callers), as a savepoint in a group-committed batch
//! (`commit.rs`): one fsync for the writes that arrive together. That single writer is what makes the store's
//! transactions serial here, so SQLite needs none of PostgreSQL's locks: a
//! transaction's reads and writes see no other writer between them. Reads
//! use a small pool of read-only connections.

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Executor};

use super::Result;
use super::sql::{Dialect, SqlStore};

const DIALECT: Dialect = Dialect {
    lock_row: "",
    share_row: "",
    skip_locked: "",
    release_lock: None,
    plugin_lock: None,
    // INDEXED BY: left to itself SQLite's planner walks runs_state_time
    // over every due waiting run; the partial index holds only deferred
    // ones, and is usable only where the query says `needs_admission = 1`,
    // the index's own words.
    deferred_runs: "runs INDEXED BY runs_admission WHERE needs_admission = 1",
    snapshot: None,
};

/// Set on every connection: durability, waiting on a locked file, and
/// foreign keys (SQLite's are off unless asked for).
const PRAGMAS: [&str; 3] = [
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 30000",
    "PRAGMA foreign_keys = ON",
];

fn pool_options(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(60))
        .after_connect(|conn, _| {
            Box::pin(async move {
                for pragma in PRAGMAS {
                    conn.execute(pragma).await?;
                }
                Ok(())
            })
        })
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database file and applies
    /// migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let writer_url = AnyConnectOptions::from_url(&options.to_url_lossy())?;
        let writer = pool_options(1)
            .min_connections(1)
            .connect_with(writer_url)
            .await?;
        // WAL is a property of the file: set once, before any reader opens.
        writer.execute("PRAGMA journal_mode = WAL").await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader_url = AnyConnectOptions::from_url(&options.read_only(true).to_url_lossy())?;
        let reader = pool_options(4).connect_with(reader_url).await?;
        // From here on the writer's one connection belongs to the group
        // committer: concurrent writes share its fsyncs (`commit.rs`).
        SqlStore::new(&DIALECT, writer, reader).group_commit().await
    }
}
