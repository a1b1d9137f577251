//! Group commit for the embedded store: many callers' write transactions,
//! one `COMMIT` (and so one fsync) for all of them.
//!
//! SQLite has one writer, and with `synchronous = FULL` every `COMMIT` waits
//! for the disk. Writing one caller at a time made the fsync the price of
//! every state change. Here the one writer connection keeps a transaction
//! open, a *batch*; each caller's write runs inside it as a savepoint
//! (`SAVEPOINT` … `RELEASE`, or `ROLLBACK TO` when the caller fails or gives
//! up), so a failed write undoes only itself. The committer commits the batch
//! as soon as it can take the connection: a lone write is committed at once,
//! and the writes that queued behind a commit go into the next batch
//! together. Every caller is answered only after the `COMMIT` of the batch
//! that holds its write, so an answered write is on disk; a batch whose
//! `COMMIT` fails fails exactly the callers in it, and nothing in it was
//! answered before.
//!
//! Inside a batch a write sees the earlier writes of the same batch — they
//! commit or fail together, so nothing is decided on a state that could
//! vanish while another survives. Reads on other connections see only what
//! is committed.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyConnection;
use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::warn;

use super::{Outage, Result, StoreError};

/// Why a batch was not committed, and whether the database's state (away,
/// disk full) is the cause.
#[derive(Debug, Clone)]
struct Failure {
    outage: Option<Outage>,
    reason: Arc<str>,
}

impl Failure {
    fn new(reason: String, cause: &sqlx::Error) -> Self {
        // A batch whose transaction SQLite rolled back whole (a full disk
        // does this to a statement that spills to the WAL) cannot name that
        // statement's error here: nothing was stored, and the same write
        // may succeed later, so it is the store being unavailable.
        let gone = reason.contains("no such savepoint") || reason.contains("no transaction");
        Self {
            outage: Outage::of(cause).or(gone.then_some(Outage::Unavailable)),
            reason: reason.into(),
        }
    }

    fn into_error(self) -> StoreError {
        let reason = self.reason.to_string();
        match self.outage {
            Some(Outage::Full) => StoreError::Full(reason),
            Some(Outage::Unavailable) => StoreError::Unavailable(reason),
            None => StoreError::Uncommitted(reason),
        }
    }
}

/// How a batch ended: `Ok`, or why its `COMMIT` failed.
type Outcome = Option<std::result::Result<(), Failure>>;

/// The one writer connection and its open batch.
struct Batch {
    /// Detached from its pool: dropping it needs no runtime.
    conn: AnyConnection,
    /// `BEGIN` has been issued and neither `COMMIT` nor `ROLLBACK` since.
    open: bool,
    /// A write's savepoint was left open (its caller failed or was
    /// dropped): undone before anything else uses the connection.
    abandoned: bool,
    /// Savepoints released into this batch.
    writes: usize,
    /// Where this batch's outcome is published.
    done: watch::Sender<Outcome>,
    counts: Arc<Counts>,
}

/// Writes and commits so far: how well writes are grouped.
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub writes: AtomicU64,
    pub commits: AtomicU64,
}

impl Batch {
    async fn exec(&mut self, sql: &str) -> std::result::Result<(), sqlx::Error> {
        sqlx::query(sql).execute(&mut self.conn).await.map(|_| ())
    }

    /// Undoes an abandoned write and opens the batch if it is not open.
    async fn ready(&mut self) -> Result<()> {
        if self.abandoned {
            // End the batch here: `finish` undoes the abandoned write and
            // commits the others, or, when the transaction is gone (SQLite
            // rolls a whole transaction back on some errors, a full disk
            // among them), fails the batch's callers and starts clean.
            self.finish().await;
        }
        if !self.open {
            self.exec("BEGIN").await?;
            self.open = true;
        }
        Ok(())
    }

    /// Ends the batch: `COMMIT` if anything was written, and publishes the
    /// outcome to the callers waiting on it.
    async fn finish(&mut self) {
        let mut outcome = Ok(());
        if self.abandoned {
            self.abandoned = false;
            let undone = match self.exec("ROLLBACK TO w").await {
                Ok(()) => self.exec("RELEASE w").await,
                Err(e) => Err(e),
            };
            if let Err(e) = undone {
                outcome = Err(Failure::new(format!("the batch was rolled back: {e}"), &e));
            }
        }
        if self.open {
            let end = if outcome.is_ok() && self.writes > 0 {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            let ended = self.exec(end).await;
            if end == "COMMIT" {
                self.counts.commits.fetch_add(1, Ordering::Relaxed);
            }
            if let Err(e) = ended {
                // The first cause is the one worth telling.
                if outcome.is_ok() {
                    outcome = Err(Failure::new(format!("{end} failed: {e}"), &e));
                }
                // Leave the connection outside any transaction; if even
                // that fails, the next BEGIN says so to its caller.
                if let Err(e) = self.exec("ROLLBACK").await {
                    warn!("cannot roll back a failed batch: {e}");
                }
            }
            self.open = false;
            self.abandoned = false;
        }
        if let Err(e) = &outcome {
            warn!(
                writes = self.writes,
                "a batch of writes was not committed: {}", e.reason
            );
        }
        self.writes = 0;
        let (next, _) = watch::channel(None);
        let done = std::mem::replace(&mut self.done, next);
        done.send_replace(Some(outcome));
    }
}

/// The group committer of one store (see the module's documentation).
pub(super) struct GroupCommit {
    batch: Arc<Mutex<Batch>>,
    kick: Arc<Notify>,
    counts: Arc<Counts>,
    /// Stops the committer task when the store is dropped.
    _stop: DropGuard,
}

impl GroupCommit {
    /// Takes the pool's connection for good (SQLite's writer pool has one)
    /// and starts the committer.
    pub(super) async fn start(writer: &AnyPool) -> Result<Self> {
        let conn = writer.acquire().await?.detach();
        let (done, _) = watch::channel(None);
        let counts = Arc::new(Counts::default());
        let batch = Arc::new(Mutex::new(Batch {
            conn,
            open: false,
            abandoned: false,
            writes: 0,
            done,
            counts: counts.clone(),
        }));
        let kick = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        tokio::spawn(committer(batch.clone(), kick.clone(), stop.clone()));
        Ok(Self {
            batch,
            kick,
            counts,
            _stop: stop.drop_guard(),
        })
    }

    /// Writes committed and `COMMIT`s issued so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.counts.writes.load(Ordering::Relaxed),
            self.counts.commits.load(Ordering::Relaxed),
        )
    }

    /// Starts a write: waits for the connection, then opens a savepoint in
    /// the current batch.
    pub(super) async fn begin(&self) -> Result<WriteTx> {
        let mut batch = self.batch.clone().lock_owned().await;
        batch.ready().await?;
        batch.exec("SAVEPOINT w").await?;
        Ok(WriteTx(Kind::Grouped {
            batch: Some(batch),
            kick: self.kick.clone(),
        }))
    }
}

/// Commits each batch as soon as it can take the connection. Writers that
/// queued for the connection before it are served first (the lock is fair),
/// so everything that piled up during one `COMMIT` goes into the next.
async fn committer(batch: Arc<Mutex<Batch>>, kick: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = kick.notified() => {}
        }
        let mut batch = batch.lock().await;
        if batch.open {
            batch.finish().await;
        }
    }
}

/// One caller's write transaction: a savepoint in a group-committed batch
/// (SQLite), or a transaction of its own (PostgreSQL, whose commits already
/// share their WAL flushes). Statements run on it through `&mut **tx`;
/// dropped without [`WriteTx::commit`], its changes are undone.
pub(super) struct WriteTx(Kind);

enum Kind {
    /// `None` once committed.
    Own(Option<Transaction<'static, Any>>),
    Grouped {
        /// `None` once committed.
        batch: Option<OwnedMutexGuard<Batch>>,
        kick: Arc<Notify>,
    },
}

impl WriteTx {
    pub(super) fn own(tx: Transaction<'static, Any>) -> Self {
        WriteTx(Kind::Own(Some(tx)))
    }

    /// Makes the write durable: returns once the transaction (or the batch
    /// that holds it) is committed, or with the error that stopped it.
    pub(super) async fn commit(mut self) -> Result<()> {
        match &mut self.0 {
            Kind::Own(tx) => match tx.take() {
                Some(tx) => Ok(tx.commit().await?),
                None => Ok(()),
            },
            Kind::Grouped { batch, kick } => {
                let Some(mut guard) = batch.take() else {
                    return Ok(());
                };
                if let Err(e) = guard.exec("RELEASE w").await {
                    guard.abandoned = true;
                    return Err(e.into());
                }
                guard.writes += 1;
                guard.counts.writes.fetch_add(1, Ordering::Relaxed);
                let mut done = guard.done.subscribe();
                drop(guard);
                kick.notify_one();
                let outcome = done
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| StoreError::Uncommitted("the store was closed".into()))?
                    .clone();
                match outcome {
                    Some(Err(e)) => Err(e.into_error()),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Kind::Grouped {
            batch: Some(batch),
            kick,
        } = &mut self.0
        {
            // Undone by the next user of the connection, before anything
            // else (sqlx's own transactions do the same), or by the
            // committer, woken here.
            batch.abandoned = true;
            kick.notify_one();
        }
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            Kind::Own(Some(tx)) => tx,
            Kind::Grouped { batch: Some(b), .. } => &b.conn,
            Kind::Own(None) | Kind::Grouped { batch: None, .. } => {
                unreachable!("a committed write is consumed")
            }
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            Kind::Own(Some(tx)) => tx,
            Kind::Grouped { batch: Some(b), .. } => &mut b.conn,
            Kind::Own(None) | Kind::Grouped { batch: None, .. } => {
                unreachable!("a committed write is consumed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Executor};

    use super::*;

    /// A file database with one writer connection, as the store opens it,
    /// and a table whose deferred foreign key fails only at `COMMIT`.
    async fn open(dir: &tempfile::TempDir) -> (GroupCommit, AnyPool) {
        sqlx::any::install_default_drivers();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let url = AnyConnectOptions::from_url(&options.to_url_lossy()).expect("url");
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .connect_with(url.clone())
            .await
            .expect("writer");
        writer
            .execute(
                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                 CREATE TABLE parent (id INTEGER PRIMARY KEY); \
                 CREATE TABLE t (id INTEGER PRIMARY KEY, parent INTEGER \
                   REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
            )
            .await
            .expect("schema");
        let reader = AnyPoolOptions::new()
            .max_connections(2)
            .connect_with(url)
            .await
            .expect("reader");
        (GroupCommit::start(&writer).await.expect("start"), reader)
    }

    async fn insert(group: &GroupCommit, id: i64, parent: Option<i64>) -> Result<()> {
        let mut tx = group.begin().await?;
        sqlx::query("INSERT INTO t (id, parent) VALUES ($1, $2)")
            .bind(id)
            .bind(parent)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn ids(reader: &AnyPool) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(reader)
            .await
            .expect("read")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_is_durable_when_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (group, reader) = open(&dir).await;
        let group = Arc::new(group);
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let group = group.clone();
                let reader = reader.clone();
                tokio::spawn(async move {
                    insert(&group, i, None).await.expect("insert");
                    // Answered means committed: another connection sees it.
                    let seen: Option<i64> = sqlx::query_scalar("SELECT id FROM t WHERE id = $1")
                        .bind(i)
                        .fetch_optional(&reader)
                        .await
                        .expect("read");
                    assert_eq!(seen, Some(i), "write {i} answered but not visible");
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer task");
        }
        assert_eq!(ids(&reader).await, (0..64).collect::<Vec<_>>());
        let (writes, commits) = group.counts();
        assert_eq!(writes, 64);
        assert!(
            commits < writes,
            "64 concurrent writes took {commits} commits: none were grouped"
        );
    }

    #[tokio::test]
    async fn a_failed_or_dropped_write_undoes_only_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (group, reader) = open(&dir).await;
        insert(&group, 1, None).await.expect("first");
        // A statement that fails: the caller sees the error, and its
        // savepoint is undone.
        let duplicate = insert(&group, 1, None).await;
        assert!(duplicate.is_err(), "a duplicate key must fail");
        // A write dropped half-way (its caller gave up).
        {
            let mut tx = group.begin().await.expect("begin");
            sqlx::query("INSERT INTO t (id) VALUES (2)")
                .execute(&mut *tx)
                .await
                .expect("insert");
        }
        insert(&group, 3, None).await.expect("third");
        assert_eq!(ids(&reader).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_write_that_ends_the_whole_transaction_fails_its_batch_and_writes_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (group, reader) = open(&dir).await;
        let group = Arc::new(group);
        let mut first = group.begin().await.expect("begin");
        sqlx::query("INSERT INTO t (id) VALUES (20)")
            .execute(&mut *first)
            .await
            .expect("insert");
        // Queued behind it, a write whose statement ends the whole
        // transaction, as SQLite does itself on a full disk, then gives up.
        let ender = tokio::spawn({
            let group = group.clone();
            async move {
                let mut tx = group.begin().await?;
                sqlx::query("ROLLBACK").execute(&mut *tx).await?;
                Ok::<(), StoreError>(())
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first = first.commit().await;
        ender
            .await
            .expect("task")
            .expect("the ender's own statements ran");
        // Not stored, and said as the store being unavailable (the same
        // write may succeed later), never as stored.
        assert!(
            matches!(&first, Err(StoreError::Unavailable(e)) if e.contains("rolled back")),
            "a write the transaction lost must not be answered as stored: {first:?}"
        );
        // The connection is clean again: the next writes commit.
        insert(&group, 21, None).await.expect("after");
        insert(&group, 22, None).await.expect("after");
        assert_eq!(ids(&reader).await, vec![21, 22]);
    }

    #[tokio::test]
    async fn a_batch_that_fails_to_commit_fails_exactly_its_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (group, reader) = open(&dir).await;
        let group = Arc::new(group);
        // Hold the connection with a good write, and queue behind it a
        // write whose deferred foreign key fails at COMMIT: both are in
        // one batch, whose COMMIT fails.
        let mut good = group.begin().await.expect("begin");
        sqlx::query("INSERT INTO t (id) VALUES (10)")
            .execute(&mut *good)
            .await
            .expect("insert");
        let bad = tokio::spawn({
            let group = group.clone();
            async move { insert(&group, 11, Some(999)).await }
        });
        // Let the bad write queue for the connection (ordering only; no
        // time is asserted).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let good = good.commit().await;
        let bad = bad.await.expect("task");
        assert!(
            matches!(&good, Err(StoreError::Uncommitted(_))),
            "the good write shared the failed batch: {good:?}"
        );
        assert!(
            matches!(&bad, Err(StoreError::Uncommitted(e)) if e.contains("COMMIT failed")),
            "{bad:?}"
        );
        assert!(
            ids(&reader).await.is_empty(),
            "nothing of the batch is stored"
        );
        // The next batch commits normally.
        insert(&group, 12, None).await.expect("after");
        assert_eq!(ids(&reader).await, vec![12]);
    }
}
