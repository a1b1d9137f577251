//! The store's own outages (issue #18, item 3, the embedded store): the data
//! directory's disk fills up under a stream of run creations. While it is
//! full the API answers 507 `store_full` (never a 500, never a hang), reads
//! go on, nothing answered 201 is lost; when space returns, writes go on;
//! the database passes `PRAGMA integrity_check` afterwards.
//!
//! The disk is a small tmpfs the test mounts, so it needs root: gated on
//! `WEIR_CHAOS` (`.ci/run` sets it). Unset: a `SKIPPED:` line; set and the
//! mount fails: the test fails.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_tests::harness::{WeirProcess, free_port, http};

/// Mounts a tmpfs of `size` at `dir`; unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "WEIR_CHAOS is set but mounting a tmpfs at {} failed (root is needed): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn gate(test: &str) -> bool {
    if std::env::var_os("WEIR_CHAOS").is_some() {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: WEIR_CHAOS is not set; .ci/run sets it (the test mounts a tmpfs: root)"
    );
    false
}

/// One request: (status, body as JSON, or null).
fn send(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = http(method, url, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn a_full_disk_answers_507_loses_nothing_and_writes_go_on_when_space_returns() {
    if !gate("outage::a_full_disk_answers_507_loses_nothing_and_writes_go_on_when_space_returns") {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let disk = root.path().join("disk");
    std::fs::create_dir(&disk).expect("mkdir");
    let _tmpfs = Tmpfs::mount(&disk, "24m");
    let data = disk.join("data");
    let weir = WeirProcess::start_on(&data, None, free_port());
    let api = format!("{}/api/v1", weir.url);
    // A paused pool: runs are only created and stored.
    weir.cli_json(&["pool", "create", "p", "--type", "process"]);
    weir.cli_json(&["pool", "pause", "p"]);
    weir.cli_json(&[
        "deployment",
        "create",
        "d",
        "--pool",
        "p",
        "--job-variables",
        r#"{"command": "true"}"#,
    ]);
    // Fill the disk but for 2 MiB.
    let filler = disk.join("filler");
    let room = free_bytes(&disk).saturating_sub(2 << 20);
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        let mut left = room;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.sync_all();
    }

    // Create runs until the disk refuses; every answer is 201 or 507.
    let mut stored = Vec::new();
    let mut full = None;
    let started = Instant::now();
    for i in 0..20_000 {
        let (status, body) = send(
            "POST",
            &format!("{api}/runs"),
            Some(json!({"deployment": "d", "parameters": {"n": i, "pad": "x".repeat(512)}})),
        );
        match status {
            201 => stored.push(body["id"].as_str().expect("id").to_owned()),
            507 => {
                full = Some(body);
                break;
            }
            other => panic!("run {i}: {other} {body} (a full disk must answer 507)"),
        }
    }
    let full = full.unwrap_or_else(|| {
        panic!(
            "{} runs stored in {:?} and the disk never filled",
            stored.len(),
            started.elapsed()
        )
    });
    assert_eq!(full["error"], "store_full", "{full}");
    assert!(
        full["detail"]
            .as_str()
            .unwrap_or("")
            .contains("the store's disk is full"),
        "{full}"
    );
    assert!(!stored.is_empty(), "the disk was full before the first run");
    eprintln!(
        "{} runs stored before the disk filled ({:?}); then 507",
        stored.len(),
        started.elapsed()
    );
    // While full: writes keep answering 507, reads answer.
    let (status, body) = send(
        "POST",
        &format!("{api}/runs"),
        Some(json!({"deployment": "d"})),
    );
    assert_eq!(status, 507, "{body}");
    let (status, _) = send("GET", &format!("{api}/runs/{}", stored[0]), None);
    assert_eq!(status, 200);
    let (status, _) = send("GET", &format!("{}/healthz", weir.url), None);
    assert_eq!(status, 200);

    // Space returns: writes go on.
    std::fs::remove_file(&filler).expect("remove filler");
    let freed = Instant::now();
    let deadline = freed + Duration::from_secs(30);
    let after = loop {
        let (status, body) = send(
            "POST",
            &format!("{api}/runs"),
            Some(json!({"deployment": "d"})),
        );
        if status == 201 {
            break body["id"].as_str().expect("id").to_owned();
        }
        assert!(
            status == 507 && Instant::now() < deadline,
            "after space returned: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("writes went on {:?} after space returned", freed.elapsed());
    stored.push(after);
    // Nothing answered 201 is lost.
    for id in &stored {
        let (status, run) = send("GET", &format!("{api}/runs/{id}"), None);
        assert_eq!(status, 200, "run {id} was answered 201 and is gone: {run}");
        assert_eq!(run["state"], "Scheduled", "{run}");
    }
    drop(weir);
    // The database is whole.
    let db = data.join("weir.db");
    let check = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                use sqlx::Connection;
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                        .await
                        .expect("open weir.db");
                let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
                    .fetch_all(&mut conn)
                    .await
                    .expect("integrity_check");
                let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
                    .fetch_one(&mut conn)
                    .await
                    .expect("count");
                (rows, runs)
            })
    })
    .join()
    .expect("check thread");
    assert_eq!(check.0, vec!["ok".to_owned()], "PRAGMA integrity_check");
    assert_eq!(
        check.1 as usize,
        stored.len(),
        "runs stored = runs answered 201"
    );
}
