//! The shared database: PostgreSQL, for several `weir serve` replicas. The
//! store's code is `sql.rs`; what PostgreSQL needs beyond it is here: its
//! URL, connecting, and the locks that stand in for SQLite's single writer,
//! because here several connections — and several hosts — write at once:
//!
//! - **Release passes are serialised by a transaction-scoped advisory lock**
//!   ([`RELEASE_LOCK`]), taken before the slots in use are counted, so two
//!   schedulers that overlap — on one host or two — run one after the other
//!   and the second counts what the first committed (READ COMMITTED: each
//!   statement sees every commit before it). One lock rather than row locks
//!   on every pool, queue and limit a pass charges: a tag limit spans pools,
//!   a pass walks every active queue, row locks taken in walk order risk
//!   deadlocks between passes, and no row exists for a tag without a limit.
//!   Being transaction-scoped, the lock goes with commit, rollback or the
//!   connection's death, so a crashed scheduler never holds it.
//! - **A run row is locked before it changes** (`SELECT ... FOR UPDATE` in
//!   `transition` and `set_admission`), and a release takes a run only if it
//!   is still waiting, so a cancel racing a release is never overwritten.
//! - **Deleting a pool or queue locks its row**, and storing a run takes a
//!   key-share lock on its pool and queue rows, so a run cannot be stored in
//!   a pool or queue being deleted.
//! - **Marking runs Late skips locked rows**, and numbering a plugin's
//!   versions takes a lock per plugin name.
//! - **Idempotency keys** are claimed by the insert itself (`ON CONFLICT DO
//!   NOTHING`, in both databases), so two concurrent submissions with one
//!   key store one run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::Result;
use super::sql::{Dialect, SqlStore};

/// A `postgres://` URL. Its `Debug` and `Display` hide the password, so it
/// can be logged and put in error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Accepts `postgres://` and `postgresql://` URLs; anything else is
    /// refused with the reason (the URL in the error is redacted).
    pub fn parse(url: &str) -> std::result::Result<Self, String> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "unsupported database URL {}: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE \
                 (without --database-url Weir uses its embedded SQLite file in the data directory)",
                redact_url(url)
            ));
        }
        PgConnectOptions::from_str(url)
            .map_err(|e| format!("invalid database URL {}: {e}", redact_url(url)))?;
        Ok(Self(url.to_owned()))
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Options for a connection of one's own (the leader's lock, the
    /// replicas' notifications).
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.0)?)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", redact_url(&self.0))
    }
}

/// The URL with any password (in the user info or a `password=` query
/// parameter) replaced by `***`.
pub(super) fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Every release pass holds this advisory lock for its transaction; its key
/// is "WEIR" and 1, `0x5745_4952_0000_0001` (a test checks the digits).
/// Advisory locks are per database, so replicas sharing a database share
/// this lock and stores in different databases do not. `FROM` the function:
/// the row then has an int column, not a void one (which the Any driver
/// cannot carry).
const RELEASE_LOCK: &str = "SELECT 1 FROM pg_advisory_xact_lock(6288513071228911617)";

const DIALECT: Dialect = Dialect {
    lock_row: " FOR UPDATE",
    share_row: " FOR KEY SHARE",
    skip_locked: " FOR UPDATE SKIP LOCKED",
    release_lock: Some(RELEASE_LOCK),
    plugin_lock: Some(
        "SELECT 1 FROM pg_advisory_xact_lock(hashtextextended('weir:plugin:' || $1, 0))",
    ),
    deferred_runs: "runs WHERE needs_admission",
    snapshot: Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
};

impl SqlStore {
    /// Connects (failing now, not at the first request, when the server is
    /// unreachable or refuses the credentials) and applies migrations.
    pub async fn connect_postgres(url: &DatabaseUrl) -> Result<Self> {
        Self::connect_postgres_with(url.connect_options()?).await
    }

    pub async fn connect_postgres_with(options: PgConnectOptions) -> Result<Self> {
        // One plain connection first: an unreachable server or refused
        // credentials fail here at once, where the pool would retry until
        // its acquire timeout.
        PgConnection::connect_with(&options).await?.close().await?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(AnyConnectOptions::from_url(&options.to_url_lossy())?)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(SqlStore::new(&DIALECT, pool.clone(), pool))
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn the_release_lock_statement_takes_release_lock() {
        let key: i64 = 0x5745_4952_0000_0001;
        assert!(RELEASE_LOCK.contains(&format!("({key})")), "{RELEASE_LOCK}");
        assert_eq!(DIALECT.release_lock, Some(RELEASE_LOCK));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://weir:s3cret@db.example:5432/weir"),
            "postgres://weir:***@db.example:5432/weir"
        );
        assert_eq!(
            redact_url("postgres://weir@127.0.0.1/weir?password=s3cret&sslmode=disable"),
            "postgres://weir@127.0.0.1/weir?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://u:p:q@h/d"),
            "postgresql://u:***@h/d"
        );
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }

    #[test]
    fn only_postgres_urls_are_accepted_and_errors_hide_the_password() {
        assert!(DatabaseUrl::parse("postgres://weir:pw@localhost:5432/weir").is_ok());
        assert!(DatabaseUrl::parse("postgresql://localhost/weir").is_ok());
        let err = DatabaseUrl::parse("mysql://root:hunter2@localhost/weir").expect_err("mysql");
        assert!(err.contains("mysql://root:***@localhost/weir"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = DatabaseUrl::parse("postgres://weir:hunter2@localhost:notaport/weir")
            .expect_err("bad port");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            err.contains("postgres://weir:***@localhost:notaport/weir"),
            "{err}"
        );
        let url = DatabaseUrl::parse("postgres://weir:hunter2@localhost/weir").expect("ok");
        assert!(!format!("{url} {url:?}").contains("hunter2"));
    }
}
