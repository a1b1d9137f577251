//! Runtime tests against real components: the good and bad plugins of
//! `tests/plugins/` (see its README), built once per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::types::{MAX_REASON_BYTES, Route};
use super::*;

/// Builds `tests/plugins` (its own workspace and target dir, so no wait on
/// the outer build's lock) and returns the directory of its `.wasm` files.
fn plugins_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins");
        let target_dir = workspace.join("target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target_dir)
            // Whatever the outer build set is not for this workspace.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("running cargo to build tests/plugins");
        assert!(
            status.success(),
            "building tests/plugins failed ({status}); is the wasm32-wasip2 target installed? \
             (`rustup target add wasm32-wasip2`)"
        );
        target_dir.join("wasm32-wasip2/release")
    })
}

fn wasm(crate_name: &str) -> Vec<u8> {
    let path = plugins_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One runtime shared by the tests, as in the server: a bad plugin's call
/// must not poison it for the next test either. Its disk cache keeps repeat
/// loads from recompiling.
fn runtime() -> &'static Arc<PluginRuntime> {
    static RUNTIME: OnceLock<(Arc<PluginRuntime>, tempfile::TempDir)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let cache = tempfile::tempdir().expect("temp dir");
            let runtime = PluginRuntime::new(Some(cache.path().to_path_buf()), 8)
                .expect("creating the plugin runtime");
            (runtime, cache)
        })
        .0
}

async fn load(name: &str) -> LoadedPlugin {
    runtime()
        .load(&wasm(name))
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn ctx() -> RunContext {
    RunContext {
        run_id: "0190a6f2-0000-7000-8000-000000000001".into(),
        deployment: Some("etl".into()),
        pool: "default".into(),
        queue: "default".into(),
        tags: vec!["nightly".into()],
        labels: [("team".to_string(), "data".to_string())].into(),
        parameters: json!({"date": "2026-11-27"}),
        job_variables: json!({}),
        parent_run: None,
    }
}

/// What a plugin may ask, answered with zeros (the counts a test does not
/// care about).
fn none() -> Arc<dyn Lookup> {
    Arc::new(FixedStats::default())
}

fn fixed(stats: &Stats) -> Arc<dyn Lookup> {
    Arc::new(FixedStats::from(stats))
}

/// A mutator's changed job and patch; a reject fails the test.
fn changed(result: Result<Mutated, CallError>) -> Result<(Value, Value), CallError> {
    result.map(|m| match m {
        Mutated::Job { job, patch } => (job, patch),
        Mutated::Reject(r) => panic!("the mutator rejected the run: {r}"),
    })
}

fn process_job() -> Value {
    json!({"command": ["true"], "env": {"WEIR_RUN_ID": "r1"}})
}

fn forbidden() -> Vec<String> {
    vec!["/job_manifest/metadata/name".into()]
}

/// The good plugin call made after every bad one: the runtime still works.
async fn assert_runtime_healthy() {
    let plugin = load("add-label").await;
    let (result, _) = plugin
        .mutate(
            "{}",
            &ctx(),
            &process_job(),
            &forbidden(),
            &none(),
            &Limits::default(),
        )
        .await;
    let (patched, _) = changed(result).expect("a good plugin after a bad one");
    assert_eq!(patched["env"]["ADDED"], "yes");
}

#[tokio::test]
async fn detects_each_world_and_version() {
    for (name, world) in [
        ("echo-router", World::Router),
        ("always-admit", World::Admission),
        ("add-label", World::Mutator),
    ] {
        let plugin = load(name).await;
        assert_eq!(plugin.world(), world, "{name}");
        assert_eq!(plugin.wit_version(), "0.1.0");
        assert!(
            plugin.digest().starts_with("sha256:"),
            "{}",
            plugin.digest()
        );
        assert_eq!(plugin.digest().len(), "sha256:".len() + 64);
    }
}

#[tokio::test]
async fn refuses_what_is_not_a_plugin_component() {
    let rt = runtime();
    let core_module = b"\0asm\x01\0\0\0";
    let err = rt.load(core_module).await.unwrap_err();
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    for garbage in [&b""[..], b"hello", b"PK\x03\x04 not wasm at all"] {
        let err = rt.load(garbage).await.unwrap_err();
        assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");
    }

    // A component header followed by garbage does not compile.
    let err = rt.load(b"\0asm\x0d\0\x01\0\xff\xff\xff").await.unwrap_err();
    assert!(matches!(err, LoadError::Compile(_)), "{err}");

    // A valid but empty component exports no world.
    let err = rt.load(b"\0asm\x0d\0\x01\0").await.unwrap_err();
    assert!(
        matches!(&err, LoadError::UnknownWorld { exports } if exports.is_empty()),
        "{err}"
    );
}

#[tokio::test]
async fn validate_config_accepts_and_refuses() {
    let admit = load("always-admit").await;
    let limits = Limits::default();
    let (ok, took) = admit.validate_config(r#"{"max": 3}"#, &limits).await;
    ok.expect("a good config");
    assert!(took < Duration::from_secs(5));

    let (refused, _) = admit.validate_config(r#"{"bad": true}"#, &limits).await;
    let err = refused.unwrap_err();
    assert_eq!(err.kind(), "plugin_error");
    assert!(err.to_string().contains("\"bad\""), "{err}");

    let router = load("echo-router").await;
    let (refused, _) = router.validate_config(r#"{"pool": 3}"#, &limits).await;
    assert_eq!(refused.unwrap_err().kind(), "plugin_error");
}

#[tokio::test]
async fn router_routes() {
    let router = load("echo-router").await;
    let (route, _) = router
        .route(r#"{"pool": "gpu"}"#, &ctx(), &none(), &Limits::default())
        .await;
    assert_eq!(
        route.expect("a route"),
        Route {
            pool: Some("gpu".into()),
            queue: None,
            add_tags: vec!["routed".into()],
        }
    );
}

#[tokio::test]
async fn plugin_log_calls_become_tracing_events() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // A current-thread test runtime: the guard covers the whole test body.
    let _guard = tracing::subscriber::set_default(subscriber);
    let router = load("echo-router").await;
    let (route, _) = router
        .route(r#"{"pool": "gpu"}"#, &ctx(), &none(), &Limits::default())
        .await;
    route.expect("a route");
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|line| line.contains("routing"))
        .unwrap_or_else(|| panic!("no `routing` event in:\n{logs}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains(router.digest()), "{line}");
    assert!(line.contains(&ctx().run_id), "{line}");
    assert!(
        line.contains(r#"fields={from="default", to="gpu"}"#),
        "{line}"
    );
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn admission_admits_and_passes_plugin_errors_through() {
    let stats = Stats {
        pool: Counts {
            running: 2,
            queued: 1,
        },
        team: Some("data".into()),
        ..Stats::default()
    };
    let limits = Limits::default();
    let admit = load("always-admit").await;
    let (decision, _) = admit.admit("{}", &ctx(), &fixed(&stats), &limits).await;
    assert_eq!(decision.expect("a decision"), Admission::Admit);

    let refuses = load("plugin-error").await;
    let (decision, _) = refuses.admit("{}", &ctx(), &fixed(&stats), &limits).await;
    let err = decision.unwrap_err();
    assert_eq!(
        err,
        CallError::Plugin {
            refusal: Refusal::message("quota service says no".into())
        }
    );
    assert_eq!(err.kind(), "plugin_error");
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn mutator_patches_the_job_and_returns_the_ops() {
    let plugin = load("add-label").await;
    let (result, _) = plugin
        .mutate(
            "{}",
            &ctx(),
            &process_job(),
            &forbidden(),
            &none(),
            &Limits::default(),
        )
        .await;
    let (patched, ops) = changed(result).expect("a patch");
    assert_eq!(
        patched,
        json!({"command": ["true"], "env": {"WEIR_RUN_ID": "r1", "ADDED": "yes"}})
    );
    assert_eq!(
        ops,
        json!([{"op": "add", "path": "/env/ADDED", "value": "yes"}])
    );
}

#[tokio::test]
async fn no_state_leaks_between_calls() {
    // add-label adds a second op when its static call counter passes one:
    // only a reused instance could make it do so.
    let plugin = load("add-label").await;
    let mut all_ops = Vec::new();
    for _ in 0..3 {
        let (result, _) = plugin
            .mutate(
                "{}",
                &ctx(),
                &process_job(),
                &[],
                &none(),
                &Limits::default(),
            )
            .await;
        all_ops.push(changed(result).expect("a patch").1);
    }
    let expected = json!([{"op": "add", "path": "/env/ADDED", "value": "yes"}]);
    assert!(all_ops.iter().all(|ops| *ops == expected), "{all_ops:?}");
}

#[tokio::test]
async fn calling_the_wrong_world_is_a_host_error() {
    let router = load("echo-router").await;
    let (result, _) = router
        .mutate(
            "{}",
            &ctx(),
            &process_job(),
            &[],
            &none(),
            &Limits::default(),
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "host", "{err}");
    assert!(
        err.to_string()
            .contains("mutator function called on a router plugin")
    );
    let (result, _) = router
        .admit("{}", &ctx(), &none(), &Limits::default())
        .await;
    assert_eq!(result.unwrap_err().kind(), "host");
}

#[tokio::test]
async fn an_endless_loop_times_out() {
    let plugin = load("loop-forever").await;
    let limits = Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    };
    let (result, took) = plugin
        .mutate("{}", &ctx(), &process_job(), &[], &none(), &limits)
        .await;
    assert_eq!(
        result.unwrap_err(),
        CallError::Timeout {
            deadline: Duration::from_millis(50)
        }
    );
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(took < Duration::from_secs(1), "stopped late: {took:?}");
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let plugin = load("alloc-forever").await;
    let limits = Limits {
        memory_bytes: 16 << 20,
        deadline: Duration::from_secs(5),
        ..Limits::default()
    };
    let (result, _) = plugin
        .mutate("{}", &ctx(), &process_job(), &[], &none(), &limits)
        .await;
    let err = result.unwrap_err();
    assert_eq!(
        err,
        CallError::MemoryLimit {
            limit_bytes: 16 << 20
        }
    );
    assert_eq!(err.kind(), "memory_limit");
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn a_panic_is_a_trap_carrying_the_panic_message() {
    let plugin = load("panics").await;
    let (result, _) = plugin
        .mutate(
            "{}",
            &ctx(),
            &process_job(),
            &[],
            &none(),
            &Limits::default(),
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "trap", "{err}");
    let message = err.to_string();
    assert!(message.contains("boom: deliberate panic"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn bad_patches_are_invalid_output() {
    let k8s_job = json!({"job_manifest": {"metadata": {"name": "run-1", "labels": {}}}});
    for (name, job, expect_in_reason) in [
        ("bad-patch", process_job(), "does not apply"),
        (
            "forbidden-patch",
            k8s_job,
            "forbidden path /job_manifest/metadata/name",
        ),
        ("huge-output", process_job(), "(output cap 1048576 bytes)"),
        ("malformed", process_job(), "value is not JSON"),
    ] {
        let plugin = load(name).await;
        // What is checked here is the output; a generous deadline keeps a
        // busy machine from turning an 8 MiB answer into a timeout.
        let limits = Limits {
            deadline: Duration::from_secs(5),
            ..Limits::default()
        };
        let (result, _) = plugin
            .mutate("{}", &ctx(), &job, &forbidden(), &none(), &limits)
            .await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), "invalid_output", "{name}: {err}");
        assert!(err.to_string().contains(expect_in_reason), "{name}: {err}");
        assert_runtime_healthy().await;
    }
}

#[tokio::test]
async fn concurrent_calls_share_the_permits() {
    let runtime = PluginRuntime::new(None, 2).expect("runtime");
    let plugin = runtime.load(&wasm("add-label")).await.expect("load");
    let calls = (0..8).map(|_| {
        let plugin = plugin.clone();
        tokio::spawn(async move {
            plugin
                .mutate(
                    "{}",
                    &ctx(),
                    &process_job(),
                    &[],
                    &none(),
                    &Limits::default(),
                )
                .await
                .0
        })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("task").expect("mutate");
    }
}

#[tokio::test]
async fn precompiled_artifacts_are_cached_and_a_corrupt_one_is_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = PluginRuntime::new(Some(dir.path().to_path_buf()), 2).expect("runtime");
    let bytes = wasm("echo-router");

    let first = runtime.load(&bytes).await.expect("first load");
    assert_eq!(runtime.cache_hits(), 0);
    let artifacts: Vec<_> = std::fs::read_dir(dir.path())
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(
        artifact_checksum(&artifacts[0]).exists(),
        "the checksum is kept beside the artifact"
    );
    let artifact = &artifacts[0];
    let hex = first.digest().trim_start_matches("sha256:");
    let file_name = artifact.file_name().unwrap().to_string_lossy().to_string();
    assert!(file_name.starts_with(hex), "{file_name}");

    runtime.load(&bytes).await.expect("second load");
    assert_eq!(runtime.cache_hits(), 1);

    // A flipped byte in the middle: the checksum catches it; a miss.
    let mut damaged = std::fs::read(artifact).expect("artifact");
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(artifact, &damaged).expect("damage");
    let reloaded = runtime.load(&bytes).await.expect("load after damage");
    assert_eq!(runtime.cache_hits(), 1);
    // The recompiled artifact replaced the damaged one.
    runtime.load(&bytes).await.expect("load after repair");
    assert_eq!(runtime.cache_hits(), 2);

    // Garbage and a truncated file are misses too, and so is an artifact
    // whose checksum is gone.
    for junk in [&b"not an artifact"[..], &[][..]] {
        std::fs::write(artifact, junk).expect("junk");
        runtime.load(&bytes).await.expect("load over junk");
    }
    assert_eq!(runtime.cache_hits(), 2);
    std::fs::remove_file(artifact_checksum(artifact)).expect("remove the checksum");
    runtime.load(&bytes).await.expect("load without a checksum");
    assert_eq!(runtime.cache_hits(), 2);
    runtime.load(&bytes).await.expect("load after repair");
    assert_eq!(runtime.cache_hits(), 3);

    // What came from the cache works.
    let (route, _) = reloaded
        .route(r#"{"pool": "a"}"#, &ctx(), &none(), &Limits::default())
        .await;
    assert_eq!(route.expect("route").pool.as_deref(), Some("a"));
}

fn artifact_checksum(artifact: &std::path::Path) -> std::path::PathBuf {
    artifact.with_extension("sha256")
}

#[test]
fn both_engine_configurations_are_valid() {
    // The on-demand one is the fallback: it must work when it is needed.
    for pooling in [true, false] {
        let engine = wasmtime::Engine::new(&super::runtime::engine_config(pooling));
        assert!(engine.is_ok(), "pooling={pooling}: {:?}", engine.err());
    }
}

#[tokio::test]
async fn uses_the_pooling_allocator_here() {
    // The machines this project runs on can reserve the pool; on one that
    // cannot, the runtime falls back to on-demand and this says so.
    assert_eq!(runtime().allocator(), "pooling");
}

mod patches {
    use super::super::patch::apply;
    use super::super::types::{PatchKind, PatchOp};
    use super::*;

    fn op(kind: PatchKind, path: &str, from: Option<&str>, value: Option<&str>) -> PatchOp {
        PatchOp {
            op: kind,
            path: path.into(),
            from: from.map(Into::into),
            value: value.map(Into::into),
        }
    }

    fn job() -> Value {
        json!({"job_manifest": {"metadata": {"name": "run-1", "namespace": "ns", "labels": {}}}})
    }

    #[test]
    fn copies_that_double_the_job_are_refused_by_size_at_the_op_that_passes_it() {
        // Each op copies the whole of /d into itself: 2^40 copies if applied
        // blindly. The bound stops it once the job passes 1 MiB.
        let mut ops = vec![op(
            PatchKind::Add,
            "/d",
            None,
            Some(&format!("[\"{}\"]", "x".repeat(1000))),
        )];
        for _ in 0..40 {
            ops.push(op(PatchKind::Copy, "/d/-", Some("/d"), None));
        }
        let err = apply(&job(), &ops, &[]).unwrap_err();
        assert_eq!(err.kind(), "invalid_output");
        let text = err.to_string();
        assert!(text.contains("would be over 1048576 bytes"), "{text}");
        // 1 KB doubled: refused about the 10th copy, not the 40th.
        let index: usize = text
            .split("op ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("names the op");
        assert!((9..=12).contains(&index), "{text}");
        assert!(text.contains("(copy /d/-)"), "{text}");
    }

    #[test]
    fn values_and_the_job_are_held_to_64_levels() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // A test op's value is stored in the history: bounded too.
        let err = apply(
            &job(),
            &[op(PatchKind::Test, "/x", None, Some(&deep(65)))],
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("value is nested more than 64"),
            "{err}"
        );
        // 64 levels at the root is the most a job may have.
        let ok = apply(
            &json!({}),
            &[op(PatchKind::Add, "/a", None, Some(&deep(63)))],
            &[],
        );
        assert!(ok.is_ok(), "{ok:?}");
        let err = apply(
            &json!({}),
            &[op(PatchKind::Add, "/a", None, Some(&deep(64)))],
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("the job would be nested more than 64"),
            "{err}"
        );
        // A move that hangs the job's own subtree deeper is measured as well.
        let ops = [
            op(PatchKind::Add, "/a", None, Some(&deep(40))),
            op(
                PatchKind::Add,
                "/b",
                None,
                Some(&format!("{{\"c\": {}}}", deep(30))),
            ),
        ];
        let mut ops = ops.to_vec();
        let tip = format!("/b/c{}/-", "/0".repeat(29));
        ops.push(op(PatchKind::Move, &tip, Some("/a"), None));
        let err = apply(&json!({}), &ops, &[]).unwrap_err();
        assert!(err.to_string().contains("op 2 (move"), "{err}");
    }

    #[test]
    fn forbidden_means_at_or_under_the_pointer() {
        let forbidden = forbidden();
        let ok = apply(
            &job(),
            &[op(
                PatchKind::Replace,
                "/job_manifest/metadata/namespace",
                None,
                Some("\"b\""),
            )],
            &forbidden,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let err = apply(
            &job(),
            &[op(
                PatchKind::Remove,
                "/job_manifest/metadata/name",
                None,
                None,
            )],
            &forbidden,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("op 0 (remove /job_manifest/metadata/name)"),
            "{err}"
        );
    }

    #[test]
    fn reads_of_forbidden_paths_are_allowed_writes_through_move_are_not() {
        let forbidden = forbidden();
        let read = apply(
            &job(),
            &[
                op(
                    PatchKind::Test,
                    "/job_manifest/metadata/name",
                    None,
                    Some("\"run-1\""),
                ),
                op(
                    PatchKind::Copy,
                    "/job_manifest/metadata/labels/run",
                    Some("/job_manifest/metadata/name"),
                    None,
                ),
            ],
            &forbidden,
        );
        let (patched, _) = read.expect("reads are fine");
        assert_eq!(
            patched["job_manifest"]["metadata"]["labels"]["run"],
            "run-1"
        );
        let moved = apply(
            &job(),
            &[op(
                PatchKind::Move,
                "/job_manifest/metadata/labels/run",
                Some("/job_manifest/metadata/name"),
                None,
            )],
            &forbidden,
        );
        assert_eq!(moved.unwrap_err().kind(), "invalid_output");
    }

    #[test]
    fn an_ancestor_rewrite_of_a_forbidden_path_is_caught() {
        let forbidden = forbidden();
        let same_name = apply(
            &job(),
            &[op(
                PatchKind::Replace,
                "/job_manifest/metadata",
                None,
                Some(r#"{"name":"run-1"}"#),
            )],
            &forbidden,
        );
        assert!(same_name.is_ok(), "{same_name:?}");
        let err = apply(
            &job(),
            &[op(
                PatchKind::Replace,
                "/job_manifest/metadata",
                None,
                Some(r#"{"name":"x"}"#),
            )],
            &forbidden,
        )
        .unwrap_err();
        assert!(err.to_string().contains("changes forbidden path"), "{err}");
    }

    #[test]
    fn missing_value_or_from_and_bad_pointers_are_invalid() {
        for bad in [
            op(PatchKind::Add, "/env/X", None, None),
            op(PatchKind::Copy, "/env/X", None, None),
            op(PatchKind::Add, "no-leading-slash", None, Some("1")),
        ] {
            let err = apply(&process_job(), &[bad], &[]).unwrap_err();
            assert_eq!(err.kind(), "invalid_output", "{err}");
        }
    }

    #[test]
    fn a_failed_patch_leaves_nothing_half_applied() {
        let (patched, ops) = apply(&process_job(), &[], &[]).expect("empty patch");
        assert_eq!(patched, process_job());
        assert_eq!(ops, json!([]));
        let err = apply(
            &process_job(),
            &[
                op(PatchKind::Add, "/env/A", None, Some("\"1\"")),
                op(PatchKind::Test, "/env/A", None, Some("\"2\"")),
            ],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not apply"), "{err}");
    }
}

mod serde_shapes {
    use super::*;

    #[test]
    fn admission_is_tagged_by_decision() {
        let defer = Admission::Defer {
            seconds: 30,
            reason: "busy".into(),
        };
        let json = serde_json::to_value(&defer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"decision": "defer", "seconds": 30, "reason": "busy"})
        );
        let admit: Admission = serde_json::from_str(r#"{"decision":"admit"}"#).unwrap();
        assert_eq!(admit, Admission::Admit);
    }

    #[test]
    fn run_context_reads_a_minimal_file_and_refuses_unknown_keys() {
        let ctx: RunContext =
            serde_json::from_str(r#"{"run_id":"r1","pool":"p","queue":"default"}"#).unwrap();
        assert_eq!(ctx.parameters, serde_json::json!({}));
        assert!(ctx.tags.is_empty());
        let err = serde_json::from_str::<RunContext>(
            r#"{"run_id":"r1","pool":"p","queue":"q","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn world_is_lowercase() {
        assert_eq!(serde_json::to_value(World::Mutator).unwrap(), "mutator");
        assert_eq!(World::Admission.to_string(), "admission");
    }
}

// -- hostile plugins (issue #11): each attack is refused with a clear kind,
// bounded in what it costs the host, and the runtime keeps serving.

#[tokio::test]
async fn small_ops_that_nest_the_job_deep_are_refused_before_the_stack_is() {
    let plugin = load("deep-nesting").await;
    let limits = Limits {
        deadline: Duration::from_secs(2),
        ..Limits::default()
    };
    let (result, _) = plugin
        .mutate("{}", &ctx(), &process_job(), &forbidden(), &none(), &limits)
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    assert!(
        err.to_string().contains("nested more than 64 levels"),
        "{err}"
    );
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn a_guest_asleep_in_a_host_call_is_stopped_at_its_deadline_and_frees_its_slot() {
    // One slot: if the sleeper kept it past its deadline, the next call
    // could not get it and would fail `busy`.
    let runtime = PluginRuntime::new(None, 1).expect("runtime");
    let sleeper = runtime.load(&wasm("sleeps")).await.expect("load");
    let good = runtime.load(&wasm("echo-router")).await.expect("load");
    let limits = Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    };
    for _ in 0..3 {
        let (result, _) = sleeper.route("{}", &ctx(), &none(), &limits).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), "timeout", "{err}");
        let (result, _) = good.route("{}", &ctx(), &none(), &Limits::default()).await;
        let route = result.expect("the slot is free again");
        assert_eq!(route.add_tags, vec!["routed".to_string()]);
    }
}

#[tokio::test]
async fn waiting_for_a_slot_is_bounded_and_fails_as_busy() {
    let runtime = PluginRuntime::new(None, 1).expect("runtime");
    let hog = runtime.load(&wasm("loop-forever")).await.expect("load");
    let good = runtime.load(&wasm("add-label")).await.expect("load");
    // The hog holds the only slot for 3 s; the good call may wait its own
    // deadline plus a second for it, and gives up first.
    let holding = tokio::spawn(async move {
        let limits = Limits {
            deadline: Duration::from_secs(3),
            ..Limits::default()
        };
        hog.mutate("{}", &ctx(), &process_job(), &[], &none(), &limits)
            .await
            .0
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (result, _) = good
        .mutate(
            "{}",
            &ctx(),
            &process_job(),
            &[],
            &none(),
            &Limits::default(),
        )
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "busy", "{err}");
    assert!(err.to_string().contains("all 1 plugin call slots"), "{err}");
    let hog = holding.await.expect("task").unwrap_err();
    assert_eq!(hog.kind(), "timeout", "{hog}");
    // And once the hog is gone, the slot serves again.
    let (result, _) = good
        .mutate(
            "{}",
            &ctx(),
            &process_job(),
            &[],
            &none(),
            &Limits::default(),
        )
        .await;
    result.expect("the slot is free again");
}

#[tokio::test]
async fn a_router_adding_too_many_tags_is_refused_before_any_work_grows_with_them() {
    let plugin = load("many-tags").await;
    let limits = Limits {
        deadline: Duration::from_secs(2),
        ..Limits::default()
    };
    // 100,000: over the hostcall fuel, so not even copied out.
    let (result, _) = plugin.route("{}", &ctx(), &none(), &limits).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    assert!(err.to_string().contains("passed more than"), "{err}");
    // 65: copied, then refused by count before the host merges them.
    let (result, _) = plugin
        .route(r#"{"count": 65}"#, &ctx(), &none(), &limits)
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    assert!(
        err.to_string()
            .contains("added 65 tags; a run carries at most 64"),
        "{err}"
    );
    let (result, _) = plugin
        .route(r#"{"count": 64}"#, &ctx(), &none(), &limits)
        .await;
    assert_eq!(result.expect("64 tags are fine").add_tags.len(), 64);
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn outputs_over_the_cap_are_refused_while_being_copied_out() {
    // Many tiny ops (text under the cap, records far over it) and many ops
    // aliasing one 16 MiB guest string: both stop at the hostcall fuel.
    for name in ["many-ops", "aliased-output"] {
        let plugin = load(name).await;
        let limits = Limits {
            deadline: Duration::from_secs(2),
            ..Limits::default()
        };
        let (result, _) = plugin
            .mutate("{}", &ctx(), &process_job(), &forbidden(), &none(), &limits)
            .await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), "invalid_output", "{name}: {err}");
        assert!(
            err.to_string().contains("passed more than"),
            "{name}: {err}"
        );
        assert_runtime_healthy().await;
    }
}

#[tokio::test]
async fn long_reasons_are_clipped() {
    let plugin = load("defers-forever").await;
    let (result, _) = plugin
        .admit(
            r#"{"seconds": 4294967295}"#,
            &ctx(),
            &none(),
            &Limits::default(),
        )
        .await;
    match result.expect("a deferral") {
        Admission::Defer { seconds, reason } => {
            // The plugin layer passes the asked time on; the pipeline caps it.
            assert_eq!(seconds, u32::MAX);
            assert!(reason.starts_with("over quota !!!"), "{reason}");
            assert!(
                reason.len() <= MAX_REASON_BYTES + '…'.len_utf8(),
                "{}",
                reason.len()
            );
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
}

/// A Python or JavaScript test plugin of `tests/plugins/guests/` (see its
/// `build.sh`, which installs the pinned toolchains and prints the directory
/// to put in `WEIR_GUESTS`). `.ci/run` builds them and sets `WEIR_GUESTS`, so
/// there these tests run and fail if a file is missing; elsewhere, without
/// the variable, they say SKIPPED on stderr.
fn guest(file: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("WEIR_GUESTS") else {
        eprintln!(
            "SKIPPED: plugin::tests guest {file}: WEIR_GUESTS is not set \
             (tests/plugins/guests/build.sh builds them and prints the directory)"
        );
        return None;
    };
    let path = Path::new(&dir).join(file);
    Some(std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "WEIR_GUESTS is set but {} is unreadable: {e}",
            path.display()
        )
    }))
}

/// A Python (componentize-py) and a JavaScript (componentize-js) component
/// load into the pooling allocator, decide, and are held to the same bounds
/// as a Rust one: a loop, a memory bomb, an uncaught exception and a plugin
/// error each give their own recorded kind, and the next call works.
#[tokio::test]
async fn python_and_javascript_guests_decide_and_are_held_to_the_same_bounds() {
    let stats = none();
    for (file, language, raise_kind) in [
        ("python-hostile.wasm", "python", "trap"),
        ("js-hostile.wasm", "javascript", "plugin_error"),
    ] {
        let Some(wasm) = guest(file) else { continue };
        let plugin = runtime()
            .load(&wasm)
            .await
            .unwrap_or_else(|e| panic!("loading {file}: {e}"));
        assert_eq!(plugin.world(), World::Admission, "{file}");
        assert_eq!(plugin.wit_version(), "0.1.0", "{file}");
        let admit = |config: &'static str, limits: Limits| {
            let plugin = &plugin;
            let stats = &stats;
            async move { plugin.admit(config, &ctx(), stats, &limits).await.0 }
        };
        // What these check is the decision or the kind of failure; a
        // generous deadline keeps a busy machine from turning a decision into
        // a timeout (per-call times seen so far: plugins/README.md).
        let roomy = Limits {
            deadline: Duration::from_secs(5),
            ..Limits::default()
        };

        let decided = admit(r#"{"do": "admit"}"#, roomy.clone()).await;
        assert_eq!(decided, Ok(Admission::Admit), "{file}");
        let Ok(Admission::Reject { reason, .. }) =
            admit(r#"{"do": "reject"}"#, roomy.clone()).await
        else {
            panic!("{file}: expected a rejection");
        };
        assert_eq!(
            reason,
            format!("{language} refuses run {}", ctx().run_id),
            "{file}"
        );
        let refused = admit(r#"{"do": "error"}"#, roomy.clone()).await;
        assert_eq!(
            refused,
            Err(CallError::Plugin {
                refusal: Refusal::message(format!("{language} says no"))
            }),
            "{file}"
        );
        let (bad_config, _) = plugin.validate_config(r#"{"do": 3}"#, &roomy).await;
        let bad_config = bad_config.unwrap_err();
        assert_eq!(bad_config.kind(), "plugin_error", "{file}: {bad_config}");
        assert!(
            bad_config.to_string().contains("config key `do`"),
            "{file}: {bad_config}"
        );

        let looped = admit(
            r#"{"do": "loop"}"#,
            Limits {
                deadline: Duration::from_millis(200),
                ..Limits::default()
            },
        )
        .await;
        assert_eq!(
            looped,
            Err(CallError::Timeout {
                deadline: Duration::from_millis(200)
            }),
            "{file}"
        );
        let hoarded = admit(r#"{"do": "allocate"}"#, roomy.clone()).await;
        assert_eq!(
            hoarded,
            Err(CallError::MemoryLimit {
                limit_bytes: Limits::default().memory_bytes
            }),
            "{file}"
        );
        let raised = admit(r#"{"do": "raise"}"#, roomy.clone())
            .await
            .unwrap_err();
        assert_eq!(raised.kind(), raise_kind, "{file}: {raised}");
        assert!(
            raised.to_string().contains("an uncaught"),
            "{file}: {raised}"
        );

        // Nothing of those failures is left behind.
        let again = admit(r#"{"do": "admit"}"#, roomy.clone()).await;
        assert_eq!(again, Ok(Admission::Admit), "{file} after its failures");
        // Nor of any decision: each starts from the component's initial
        // image, though its pool slot (and the pages it touched) is reused.
        for call in 0..5 {
            let fresh = admit(r#"{"do": "remember"}"#, roomy.clone()).await;
            assert_eq!(fresh, Ok(Admission::Admit), "{file}, call {call}");
        }
    }
    assert_runtime_healthy().await;
}

/// A [`Lookup`] that answers from fixed counts and records each question,
/// so a test can see what a plugin asked and that nothing was asked for it.
struct Recording {
    answers: FixedStats,
    asked: std::sync::Mutex<Vec<Scope>>,
}

impl Recording {
    fn new(answers: FixedStats) -> Arc<Self> {
        Arc::new(Recording {
            answers,
            asked: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> Vec<Scope> {
        self.asked.lock().expect("lock").clone()
    }
}

#[async_trait::async_trait]
impl Lookup for Recording {
    async fn occupancy(&self, scope: &Scope) -> Result<Counts, String> {
        self.asked.lock().expect("lock").push(scope.clone());
        self.answers.occupancy(scope).await
    }

    async fn pool_type(&self, pool: &str) -> Result<Option<crate::domain::PoolType>, String> {
        self.answers.pool_type(pool).await
    }
}

/// A [`Lookup`] whose store is down, or slow past any deadline.
struct Broken {
    hang: bool,
}

#[async_trait::async_trait]
impl Lookup for Broken {
    async fn occupancy(&self, _scope: &Scope) -> Result<Counts, String> {
        if self.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Err("the store is unavailable".into())
    }

    async fn pool_type(&self, _pool: &str) -> Result<Option<crate::domain::PoolType>, String> {
        Err("the store is unavailable".into())
    }
}

fn counts(running: u32, queued: u32) -> Counts {
    Counts { running, queued }
}

#[tokio::test]
async fn contract_0_2_0_plugins_load_beside_0_1_0_and_describe_themselves() {
    for (name, world, described) in [
        ("v2-router", World::Router, "v2-router 1.0.0"),
        ("v2-admission", World::Admission, "v2-admission 2.0.0"),
        ("v2-mutator", World::Mutator, "v2-mutator 0.3.0"),
    ] {
        let plugin = load(name).await;
        assert_eq!(plugin.world(), world, "{name}");
        assert_eq!(plugin.wit_version(), "0.2.0", "{name}");
        let (d, _) = plugin.describe(&Limits::default()).await;
        let d = d
            .expect("describe")
            .expect("a 0.2.0 plugin describes itself");
        assert_eq!(format!("{} {}", d.name, d.version), described);
        assert!(!d.summary.is_empty());
        assert_eq!(
            d.config_schema.as_ref().map(|s| s["type"].clone()),
            Some(json!("object"))
        );
    }
    let old = load("always-admit").await;
    let (d, _) = old.describe(&Limits::default()).await;
    assert_eq!(d, Ok(None), "a 0.1.0 plugin has no describe");
}

#[tokio::test]
async fn a_0_2_0_router_reads_the_run_and_asks_only_what_it_needs() {
    let plugin = load("v2-router").await;
    let lookup = Recording::new(FixedStats {
        pool: counts(1, 7),
        pool_type: Some(crate::domain::PoolType::Kubernetes),
        ..FixedStats::default()
    });
    let dyn_lookup: Arc<dyn Lookup> = lookup.clone();
    let (route, _) = plugin
        .route(
            r#"{"pool": "gpu"}"#,
            &ctx(),
            &dyn_lookup,
            &Limits::default(),
        )
        .await;
    let route = route.expect("a route");
    assert_eq!(route.pool.as_deref(), Some("gpu"));
    assert_eq!(route.add_tags, vec!["pool-type-kubernetes", "queued-7"]);
    // The pool's counts, asked once, of the run's own pool.
    assert_eq!(lookup.asked(), vec![Scope::Pool("default".into())]);
}

#[tokio::test]
async fn a_0_2_0_admission_plugin_asks_for_a_label_and_rejects_with_a_structured_refusal() {
    let plugin = load("v2-admission").await;
    let lookup = Recording::new(FixedStats {
        labels: [(
            "team".to_string(),
            [("data".to_string(), counts(3, 0))].into(),
        )]
        .into(),
        ..FixedStats::default()
    });
    let dyn_lookup: Arc<dyn Lookup> = lookup.clone();
    let limits = Limits::default();
    let (admitted, _) = plugin
        .admit(r#"{"max": 5}"#, &ctx(), &dyn_lookup, &limits)
        .await;
    assert_eq!(admitted, Ok(Admission::Admit));
    // Only the label it asked about was read: not the pool, queue or tags
    // that a 0.1.0 plugin is given whether it looks at them or not.
    assert_eq!(
        lookup.asked(),
        vec![Scope::Label {
            key: "team".into(),
            value: "data".into()
        }]
    );
    let (rejected, _) = plugin
        .admit(r#"{"max": 3}"#, &ctx(), &dyn_lookup, &limits)
        .await;
    assert_eq!(
        rejected,
        Ok(Admission::Reject {
            reason: "team data has 3 running; its quota is 3".into(),
            code: Some("quota-exceeded".into()),
            details: Some(json!({"team": "data", "running": 3, "max": 3})),
        })
    );

    // A 0.1.0 plugin is given its counts up front: four questions.
    let old = load("always-admit").await;
    let before = lookup.asked().len();
    let (admitted, _) = old.admit("{}", &ctx(), &dyn_lookup, &limits).await;
    assert_eq!(admitted, Ok(Admission::Admit));
    assert_eq!(lookup.asked().len() - before, 4, "{:?}", lookup.asked());
}

#[tokio::test]
async fn a_0_2_0_plugins_refusal_is_kept_structured_and_its_bounds_hold() {
    let plugin = load("v2-admission").await;
    let limits = Limits::default();
    let (refused, _) = plugin
        .admit(r#"{"max": 1, "do": "error"}"#, &ctx(), &none(), &limits)
        .await;
    let err = refused.unwrap_err();
    assert_eq!(
        err,
        CallError::Plugin {
            refusal: Refusal {
                code: Some("quota-service-down".into()),
                message: "the quota service did not answer".into(),
                details: Some(json!({"retry_after_s": 30})),
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "plugin returned an error: [quota-service-down] the quota service did not answer"
    );
    for (mode, says) in [
        ("bad-code", "refusal code \"Not A Code\""),
        ("bad-details", "refusal details are not a JSON object"),
        ("ask-many", "more than 64 distinct occupancy questions"),
    ] {
        let config = format!(r#"{{"max": 1, "do": "{mode}"}}"#);
        let (result, _) = plugin.admit(&config, &ctx(), &none(), &limits).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), "invalid_output", "{mode}: {err}");
        assert!(err.to_string().contains(says), "{mode}: {err}");
    }
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn a_lookup_that_fails_or_hangs_fails_the_call_as_the_hosts_and_in_time() {
    let plugin = load("v2-admission").await;
    let limits = Limits::default();
    let down: Arc<dyn Lookup> = Arc::new(Broken { hang: false });
    let (result, _) = plugin.admit(r#"{"max": 1}"#, &ctx(), &down, &limits).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "host", "{err}");
    assert!(
        err.to_string().contains("the store is unavailable"),
        "{err}"
    );

    let hangs: Arc<dyn Lookup> = Arc::new(Broken { hang: true });
    let started = std::time::Instant::now();
    let (result, _) = plugin.admit(r#"{"max": 1}"#, &ctx(), &hangs, &limits).await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    // The question ended at the call's deadline, not the lookup's hour: a
    // call slot is never held by a slow store. (Not a timing assertion on
    // the deadline itself: only that an hour did not pass.)
    assert!(started.elapsed() < Duration::from_secs(60));

    // A 0.1.0 plugin's counts are read before the call; the failure is the
    // host's too.
    let old = load("always-admit").await;
    let (result, _) = old.admit("{}", &ctx(), &down, &limits).await;
    assert_eq!(result.unwrap_err().kind(), "host");
    assert_runtime_healthy().await;
}

#[tokio::test]
async fn a_config_is_checked_against_the_described_schema_before_the_plugin_sees_it() {
    let plugin = load("v2-admission").await;
    let limits = Limits::default();
    let (ok, _) = plugin.validate_config(r#"{"max": 3}"#, &limits).await;
    assert_eq!(ok, Ok(()));
    for (config, names) in [
        (r#"{"max": "three"}"#, "config/max"),
        (r#"{}"#, "\"max\" is a required property"),
        (r#"{"max": 3, "extra": 1}"#, "extra"),
    ] {
        let (result, _) = plugin.validate_config(config, &limits).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), "config_schema", "{config}: {err}");
        assert!(err.to_string().contains(names), "{config}: {err}");
    }
    // What the schema allows, the plugin may still refuse, structured.
    let (result, _) = plugin.validate_config(r#"{"max": 13}"#, &limits).await;
    let Err(CallError::Plugin { refusal }) = result else {
        panic!("expected the plugin's refusal, got {result:?}");
    };
    assert_eq!(refusal.code.as_deref(), Some("unlucky"));
    assert_eq!(refusal.details, Some(json!({"field": "max"})));
}

#[tokio::test]
async fn a_0_2_0_mutator_may_return_the_job_a_patch_or_a_reject() {
    let plugin = load("v2-mutator").await;
    let limits = Limits::default();
    let job = process_job();
    let env_forbidden = vec!["/env/WEIR_RUN_ID".to_string()];
    let mutate = |mode: &'static str| {
        let (plugin, job, forbidden, limits) = (&plugin, &job, &env_forbidden, &limits);
        async move {
            let config = format!(r#"{{"mode": "{mode}"}}"#);
            plugin
                .mutate(&config, &ctx(), job, forbidden, &none(), limits)
                .await
                .0
        }
    };
    // The whole job: the host computes the patch, and records it.
    let (changed_job, patch) = changed(mutate("job").await).expect("a job");
    assert_eq!(changed_job["env"]["MUTATED"], "job");
    assert_eq!(changed_job["env"]["POOL_TYPE"], "process");
    assert_eq!(changed_job["env"]["WEIR_RUN_ID"], "r1");
    let mut ops: Vec<String> = patch
        .as_array()
        .expect("an RFC 6902 array")
        .iter()
        .map(|op| format!("{} {} {}", op["op"], op["path"], op["value"]))
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        vec![
            r#""add" "/env/MUTATED" "job""#,
            r#""add" "/env/POOL_TYPE" "process""#
        ]
    );
    // A patch, as in 0.1.0.
    let (patched, patch) = changed(mutate("patch").await).expect("a patch");
    assert_eq!(patched["env"]["MUTATED"], "patch");
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/env/MUTATED", "value": "patch"}])
    );
    // A reject.
    let Ok(Mutated::Reject(refusal)) = mutate("reject").await else {
        panic!("expected a reject");
    };
    assert_eq!(refusal.code.as_deref(), Some("image-not-allowed"));
    assert_eq!(
        refusal.message,
        format!("run {} may not run here", ctx().run_id)
    );
    // A whole job is held to the forbidden paths as a patch is.
    let err = mutate("forbidden-job").await.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    assert!(
        err.to_string().contains("forbidden path /env/WEIR_RUN_ID"),
        "{err}"
    );
    let err = mutate("not-json").await.unwrap_err();
    assert_eq!(err.kind(), "invalid_output", "{err}");
    assert!(
        err.to_string().contains("the returned job: not JSON"),
        "{err}"
    );
}
