//! `weir serve --database-url postgres://...` end to end: the real binary on
//! a real PostgreSQL server, a process-pool run to Completed through it.
//!
//! Gated on `WEIR_PG_URL` (a server the tests may create databases on;
//! `.ci/run` starts one): without it the test prints a `SKIPPED:` line; with
//! it, a server that cannot be reached fails the test. The refusal of a bad
//! URL needs no server and always runs.

use std::process::{Command, Stdio};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use weir_tests::harness::{WeirProcess, free_port, weir_bin};
use weir_tests::pg;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_process_run_completes_through_weir_on_postgres() {
    let Some(db) = pg::fresh_database("postgres::a_process_run_completes_through_weir_on_postgres")
    else {
        return;
    };
    let options = db.options();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url.clone();
    let weir =
        WeirProcess::start_with_args(dir.path(), None, free_port(), &["--database-url", &url]);

    weir.cli_json(&[
        "pool",
        "create",
        "local",
        "--type",
        "process",
        "--concurrency-limit",
        "1",
    ]);
    weir.cli_json(&[
        "deployment",
        "create",
        "hello",
        "--pool",
        "local",
        "--job-variables",
        r#"{"command": "sh -c 'echo hello from postgres'"}"#,
    ]);
    let run = weir.cli_json(&["run", "create", "hello", "--wait"]);
    let id = run["id"].as_str().expect("run id").to_owned();
    let run = weir.cli_json(&["run", "inspect", &id]);
    assert_eq!(run["state"], "Completed", "{run:#}");
    let states: Vec<&str> = run["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    for s in ["Scheduled", "Pending", "Running", "Completed"] {
        assert!(states.contains(&s), "no {s} in the history: {states:?}");
    }

    // The state is in PostgreSQL, not in an SQLite file in the data dir.
    assert!(
        !dir.path().join("weir.db").exists(),
        "weir serve --database-url created the embedded store"
    );
    let (state, slots): (String, i64) = runtime().block_on(async {
        let mut conn = PgConnection::connect_with(&options)
            .await
            .expect("connect to the test database");
        let state = sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .expect("the run in PostgreSQL");
        let slots = sqlx::query_scalar("SELECT COUNT(*) FROM slots")
            .fetch_one(&mut conn)
            .await
            .expect("count slots");
        (state, slots)
    });
    assert_eq!(state, "Completed");
    assert_eq!(slots, 0, "a finished run still holds slots");

    drop(weir);
    drop(db);
}

#[test]
fn a_bad_or_unreachable_database_url_is_refused_without_its_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1 on loopback: nothing listens there.
    for (url, shown) in [
        (
            "postgres://weir:hunter2@127.0.0.1:1/weir",
            "postgres://weir:***@127.0.0.1:1/weir",
        ),
        (
            "mysql://weir:hunter2@127.0.0.1/weir",
            "mysql://weir:***@127.0.0.1/weir",
        ),
    ] {
        let out = Command::new(weir_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .env("WEIR_DATABASE_URL", url)
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run weir serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "weir serve accepted {shown}");
        assert!(stderr.contains(shown), "the error names no URL: {stderr}");
        assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    }
}
