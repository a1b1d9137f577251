//! A real `weir serve` as a child process, for memory figures of Weir alone
//! (the bench's own allocations, clients and SQLite connections are not in
//! them), and the `/proc` readings the scenarios record.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::root;

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `RssAnon`,
/// `RssFile`); `None` for the bench process itself.
pub(crate) fn status_kib(pid: Option<u32>, field: &str) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `weir` binary of this build profile, built (or found up to date) by
/// cargo first, so the figures are never those of a stale binary. It is
/// built together with the bench (`-p weir-bench -p weir`) so cargo unifies
/// dependency features as it did for the bench and rebuilds nothing; `-p weir`
/// alone would rebuild the shared dependencies with fewer features.
/// `WEIR_BIN`, when set, names the binary to use instead (e.g. a copy kept
/// out of a target directory that others build into).
fn weir_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WEIR_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .current_dir(root())
        .args(["build", "-q", "-p", "weir-bench", "-p", "weir"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo to build weir: {e}"))?;
    if !status.success() {
        return Err("cargo build -p weir-bench -p weir failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .ok_or("the bench executable has no directory")?
        .join("weir");
    if !bin.exists() {
        return Err(format!(
            "{} does not exist after cargo build -p weir-bench -p weir",
            bin.display()
        ));
    }
    Ok(bin)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

pub(crate) struct WeirServe {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) base: String,
}

impl WeirServe {
    /// Starts `weir serve --data-dir DIR` on a free loopback port (its log
    /// in `DIR/serve.log`) and returns once `/readyz` answers 200.
    pub(crate) async fn start(data_dir: &Path) -> Result<Self, String> {
        let bin = weir_binary()?;
        let port = free_port()?;
        let log = std::fs::File::create(data_dir.join("serve.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("weir serve exited at once")?;
        let serve = Self {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", serve.base)).send().await
                && r.status().is_success()
            {
                return Ok(serve);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "weir serve not ready after 300 s; see {}",
                    data_dir.join("serve.log").display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn kib(&self, field: &str) -> Option<f64> {
        status_kib(Some(self.pid), field)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 30 s.
    pub(crate) async fn stop(mut self) {
        // SAFETY: kill(2) on the pid of a child this struct owns and has not
        // reaped yet, so the pid cannot have been reused.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
