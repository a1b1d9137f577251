//! A PostgreSQL database of a test's own, on the server `WEIR_PG_URL` names
//! (`.ci/run` starts one). Without the variable a test prints `SKIPPED:`;
//! with it and no server, the test fails.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// A fresh database, dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    admin: PgConnectOptions,
    pub name: String,
    /// The database's URL, for `weir serve --database-url`.
    pub url: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Creates a database named after nothing but a fresh UUID; `None` after
/// printing `SKIPPED: <test>` when `WEIR_PG_URL` is not set.
pub fn fresh_database(test: &str) -> Option<TestDatabase> {
    let url = match std::env::var("WEIR_PG_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("SKIPPED: {test}: WEIR_PG_URL is not set");
            return None;
        }
    };
    let shown = weir::DatabaseUrl::parse(&url)
        .unwrap_or_else(|e| panic!("WEIR_PG_URL: {e}"))
        .to_string();
    let admin = PgConnectOptions::from_str(&url)
        .unwrap_or_else(|e| panic!("WEIR_PG_URL={shown} is not a PostgreSQL URL: {e}"));
    let name = format!("weir_e2e_{}", uuid::Uuid::now_v7().simple());
    // On a thread of its own, so that async tests may call this too.
    let (a, n) = (admin.clone(), name.clone());
    std::thread::spawn(move || {
        runtime().block_on(async {
            let mut conn = PgConnection::connect_with(&a).await.unwrap_or_else(|e| {
                panic!("WEIR_PG_URL is set but PostgreSQL at {shown} cannot be reached: {e}")
            });
            sqlx::raw_sql(&format!("CREATE DATABASE {n}"))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("cannot create database {n} at {shown}: {e}"));
            let _ = conn.close().await;
        })
    })
    .join()
    .unwrap_or_else(|_| panic!("creating the test database failed"));
    let url = url_of(&url, &name);
    Some(TestDatabase { admin, name, url })
}

impl TestDatabase {
    /// Options to connect to this database directly.
    pub fn options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            runtime().block_on(async {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            })
        })
        .join();
    }
}

/// `base` with its database replaced by `name` (query string kept).
fn url_of(base: &str, name: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_owned(), format!("?{q}")),
        None => (base.to_owned(), String::new()),
    };
    let authority_end = head
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| head[start..].find('/').map(|j| start + j))
        .unwrap_or(head.len());
    format!("{}/{name}{query}", &head[..authority_end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        assert_eq!(
            super::url_of("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(super::url_of("postgres://h", "x"), "postgres://h/x");
    }
}
