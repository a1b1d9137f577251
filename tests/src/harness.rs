//! Helpers for end-to-end tests: the real `weir` binary, a real server on a
//! loopback port, a real SQLite file in a temporary data directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Builds `weir` once per test binary and returns its path.
pub fn weir_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = escargot::CargoBuild::new()
            .package("weir")
            .bin("weir")
            .current_release()
            .current_target()
            .manifest_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .run()
            .unwrap_or_else(|e| panic!("cannot build the weir binary: {e}"));
        built.path().to_owned()
    })
    .clone()
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// `weir serve` as a child process.
pub struct WeirProcess {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub port: u16,
    config: Option<PathBuf>,
    /// More `weir serve` arguments (e.g. `--database-url`), kept on restart.
    extra: Vec<String>,
    /// Whether dropping this stops the process runs' supervisors (and so
    /// their jobs), which outlive the server: yes, except for the instance a
    /// restart replaces.
    owns_jobs: bool,
}

impl WeirProcess {
    pub fn start(data_dir: &Path, config: Option<&Path>) -> Self {
        Self::start_on(data_dir, config, free_port())
    }

    pub fn start_on(data_dir: &Path, config: Option<&Path>, port: u16) -> Self {
        Self::start_with_args(data_dir, config, port, &[])
    }

    /// Like [`WeirProcess::start_on`], with more `weir serve` arguments.
    pub fn start_with_args(
        data_dir: &Path,
        config: Option<&Path>,
        port: u16,
        extra: &[&str],
    ) -> Self {
        Self::try_start(data_dir, config, port, extra)
            .unwrap_or_else(|status| panic!("weir serve exited early with {status}"))
    }

    /// Starts it; `Err` with its exit status if it exited before it was
    /// ready (its stderr says why).
    fn try_start(
        data_dir: &Path,
        config: Option<&Path>,
        port: u16,
        extra: &[&str],
    ) -> Result<Self, std::process::ExitStatus> {
        let mut cmd = Command::new(weir_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("WEIR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(extra);
        let child = cmd.spawn().expect("start weir serve");
        let url = format!("http://127.0.0.1:{port}");
        let mut p = Self {
            child,
            url,
            data_dir: data_dir.to_owned(),
            port,
            config: config.map(Path::to_owned),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            owns_jobs: true,
        };
        match p.wait_ready() {
            Ok(()) => Ok(p),
            Err(status) => {
                // Not the owner of anything: dropping it must leave the
                // jobs of the data directory alone.
                p.owns_jobs = false;
                Err(status)
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if let Ok(200) = probe::get_status(&format!("{}/readyz", self.url)) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "weir serve did not become ready in 60s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, data directory and config.
    pub fn restart(&mut self) {
        self.kill();
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        // While the server was down, another process's outgoing connection
        // may have been given its port as an ephemeral one: such a port is
        // soon free again, so try a while.
        let mut tries = 0;
        let fresh = loop {
            match Self::try_start(
                &self.data_dir.clone(),
                self.config.clone().as_deref(),
                self.port,
                &extra,
            ) {
                Ok(fresh) => break fresh,
                Err(status) if tries < 40 => {
                    tries += 1;
                    eprintln!("weir serve exited early with {status}; starting it again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(status) => panic!("weir serve exited early with {status}, 40 times"),
            }
        };
        self.owns_jobs = false;
        *self = fresh;
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(weir_bin())
            .args(args)
            .env("WEIR_API_URL", &self.url)
            .stdin(Stdio::null())
            .output()
            .expect("run the weir CLI")
    }

    /// Runs the CLI with `-o json`, asserts success and parses stdout.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "weir {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "weir {} printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `weir run create ARGS...`; the new run's id.
    pub fn create_run(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "create"];
        all.extend_from_slice(args);
        let run = self.cli_json(&all);
        run["id"].as_str().expect("run id").to_owned()
    }

    /// `weir run inspect ID` as JSON.
    pub fn inspect(&self, id: &str) -> Value {
        self.cli_json(&["run", "inspect", id])
    }

    /// The run once it is in one of `states` (within a minute).
    pub fn wait_state(&self, id: &str, states: &[&str]) -> Value {
        eventually_blocking(
            &format!("run {id} to reach {states:?}"),
            Duration::from_secs(60),
            || {
                let run = self.inspect(id);
                states
                    .contains(&run["state"].as_str().unwrap_or(""))
                    .then_some(run)
            },
        )
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        self.kill();
        if self.owns_jobs {
            // A test's jobs end with it; a killed supervisor takes its job
            // along (PR_SET_PDEATHSIG).
            for (pid, _) in supervisors(&self.data_dir) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// The live `weir supervise` processes of process runs under `data_dir` —
/// the launcher and the supervisors it forked, which carry its command line
/// — with their pids and the runs directory they name.
pub fn supervisors(data_dir: &Path) -> Vec<(i32, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) == Some(&b"supervise".as_slice()) {
            let dir = PathBuf::from(
                String::from_utf8_lossy(args.get(2).unwrap_or(&&b""[..])).into_owned(),
            );
            if dir.starts_with(data_dir) {
                found.push((pid, dir));
            }
        }
    }
    found
}

/// Sends `sig` to `pid`; whether it was delivered.
pub fn signal(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 1..)?;
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// The pid a file of the process backend's attempt directory records
/// (`supervisor.pid`, `started`): `<data>/runs/<run>/<attempt>/<file>`.
pub fn recorded_pid(data_dir: &Path, run: &str, attempt: u32, file: &str) -> Option<i32> {
    let path = data_dir
        .join("runs")
        .join(run)
        .join(attempt.to_string())
        .join(file);
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

/// A tiny blocking HTTP GET that needs no async runtime, for readiness checks.
mod probe {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn get_status(url: &str) -> std::io::Result<u16> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let code = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok(code)
    }
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Blocking twin of [`eventually`].
pub fn eventually_blocking<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the example plugins (`plugins/build.sh`) and the safety plugins
/// (`tests/plugins/build.sh`) once per test binary, from source, for
/// `wasm32-wasip2`; returns the path of a component by name.
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (examples, safety) = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for script in ["plugins/build.sh", "tests/plugins/build.sh"] {
            let out = Command::new("bash")
                .arg(root.join(script))
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
            assert!(
                out.status.success(),
                "{script} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (
            root.join("plugins/dist"),
            root.join("tests/plugins/target/wasm32-wasip2/release"),
        )
    });
    let example = examples.join(format!("{name}.wasm"));
    if example.exists() {
        return example;
    }
    let safety = safety.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(safety.exists(), "no component named {name}");
    safety
}

/// When a run (as the API returns it, with `history`) first entered one of
/// `states`.
pub fn entered(run: &Value, states: &[&str]) -> Option<chrono::DateTime<chrono::Utc>> {
    run["history"]
        .as_array()?
        .iter()
        .find(|h| states.contains(&h["state"].as_str().unwrap_or("")))
        .and_then(|h| h["at"].as_str())
        .and_then(|t| t.parse().ok())
}

/// The most of `spans` open at once, from recorded start and end times. A
/// span ending at the instant another starts does not overlap it (ends sort
/// before starts): a slot given back and taken in the same microsecond is
/// not two runs at once.
pub fn most_at_once(
    spans: &[(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)],
) -> i32 {
    let mut edges: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for (start, end) in spans {
        edges.push((*start, 1));
        edges.push((*end, -1));
    }
    edges.sort();
    let (mut now, mut max) = (0, 0);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max
}

/// The lines of a run's history (the run as the API returns it) that the
/// plugin named `plugin` wrote.
pub fn plugin_entries<'a>(run: &'a Value, plugin: &str) -> Vec<&'a Value> {
    run["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["detail"]["plugin"] == plugin)
                .collect()
        })
        .unwrap_or_default()
}

/// `weir token create ARGS` on a server's data directory; the token.
pub fn create_token(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(weir_bin())
        .args(["-o", "json", "token", "create", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("weir token create");
    assert!(
        out.status.success(),
        "weir token create {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    v["token"].as_str().expect("token").to_owned()
}

/// A file `tests/plugins/guests/build.sh` made (the Python and JavaScript
/// components, `toolchains.env`; `.ci/run` runs it and sets `WEIR_GUESTS`):
/// `None`, said on stderr as SKIPPED, without the variable; a panic if it is
/// set and the file is not there.
pub fn guest(file: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("WEIR_GUESTS") else {
        eprintln!("SKIPPED: guest {file}: WEIR_GUESTS is not set (tests/plugins/guests/build.sh)");
        return None;
    };
    let path = Path::new(&dir).join(file);
    assert!(
        path.is_file(),
        "WEIR_GUESTS is set but {} is missing",
        path.display()
    );
    Some(path)
}

/// A component file's bytes with a custom section appended: the same code,
/// another digest, so the registry stores it as a new version.
pub fn another_version_of(file: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(component(file)).expect("component");
    let name = b"weir-test-version";
    let payload = b"2";
    // Custom section: id 0, size (LEB128, < 128 here), name length, name,
    // payload.
    let size = 1 + name.len() + payload.len();
    bytes.push(0);
    bytes.push(u8::try_from(size).expect("small"));
    bytes.push(u8::try_from(name.len()).expect("small"));
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let dir = std::env::temp_dir().join(format!("weir-v2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{file}-v2.wasm"));
    std::fs::write(&path, bytes).expect("write");
    path
}

/// A file a gated test needs, from the environment variable `var`.
///
/// Unset: prints `SKIPPED: <test>: <var> is not set; <how>` to stderr,
/// uncaptured (the test is the current thread's name, which is the test's
/// name under the default test harness), and returns `None`. Set but empty,
/// or naming no file: panics naming it (`missing` says how to make it) —
/// a gate that is set never skips silently.
pub fn gated_file(var: &str, how: &str, missing: &str) -> Option<PathBuf> {
    use std::io::Write;
    let Some(value) = std::env::var_os(var) else {
        let current = std::thread::current();
        let test = current.name().unwrap_or("a gated test");
        // Straight to the stderr handle, not eprintln!, which the test
        // harness captures and shows only for failing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: {var} is not set; {how}"
        );
        return None;
    };
    let path = PathBuf::from(value);
    assert!(
        !path.as_os_str().is_empty(),
        "{var} is set but empty; unset it to skip these tests"
    );
    assert!(
        path.is_file(),
        "{var}={} but that file does not exist ({missing})",
        path.display()
    );
    Some(path)
}

/// One HTTP request from a synchronous test, on a thread and runtime of
/// its own (so async tests may call it too): its status and body text. An
/// answer must come within 30 s.
pub fn http(method: &str, url: &str, body: Option<Value>) -> (u16, String) {
    let (method, url) = (method.to_owned(), url.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let mut req = reqwest::Client::new()
                    .request(method.parse().expect("method"), &url)
                    .timeout(Duration::from_secs(30));
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let resp = req
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{method} {url}: no answer within 30 s: {e}"));
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            })
    })
    .join()
    .expect("request thread")
}
