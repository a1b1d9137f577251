//! `weir plugin new`, end to end, as a plugin author uses it: for each
//! language (Rust, Python, JavaScript, TypeScript) and world (router, admission,
//! mutator), write the project with the real `weir` binary, run the
//! project's own tests, build it with its own build command, run the
//! component through `weir plugin test` on the project's samples, then add
//! and bind it in a live Weir and see it decide real runs.
//!
//! Needs the pinned Python and JavaScript toolchains that
//! `tests/plugins/guests/build.sh` installs (`.ci/run` runs it and sets
//! `WEIR_GUESTS`; `toolchains.env` there says where they are), and a Python
//! with pytest (`WEIR_PYTEST_PYTHON`, set by `.ci/run`; default `python3`).
//! A TypeScript project runs `npm install` as its README says (typescript,
//! @types/node and componentize-js, pinned in its `package.json`, from the
//! npm registry).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weir_tests::harness::{WeirProcess, eventually_blocking, guest, plugin_entries, weir_bin};

const LANGS: [&str; 4] = ["rust", "python", "js", "ts"];

/// Where the guest toolchains are; `None` (said as SKIPPED) without
/// `WEIR_GUESTS`, a panic if it is set and they are not there.
struct Toolchains {
    componentize_py: String,
    componentize_js_bin: String,
    pytest_python: String,
}

fn toolchains() -> Option<Toolchains> {
    let env_file = guest("toolchains.env")?;
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("{} cannot be read ({e})", env_file.display()));
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{} has no {key}", env_file.display()))
            .to_owned()
    };
    Some(Toolchains {
        componentize_py: get("COMPONENTIZE_PY"),
        componentize_js_bin: get("COMPONENTIZE_JS_BIN"),
        pytest_python: std::env::var("WEIR_PYTEST_PYTHON").unwrap_or_else(|_| "python3".into()),
    })
}

/// Runs `cmd` in `dir`, asserting success; returns stdout.
fn run(what: &str, dir: &Path, cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A project's tests, natively, with its own test command.
fn native_tests(lang: &str, dir: &Path, tools: &Toolchains, cargo_target: &Path) {
    let what = format!("{} tests", dir.display());
    let out = match lang {
        "rust" => run(
            &what,
            dir,
            Command::new("cargo")
                .args(["test", "--quiet"])
                .env("CARGO_TARGET_DIR", cargo_target),
        ),
        "python" => run(
            &what,
            dir,
            Command::new(&tools.pytest_python).args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
            ]),
        ),
        "ts" => {
            run(
                &format!("{} npm install", dir.display()),
                dir,
                Command::new("npm").args(["install", "--no-audit", "--no-fund", "--silent"]),
            );
            // tsc, then node --test: a type error fails here.
            run(&what, dir, Command::new("npm").args(["test", "--silent"]))
        }
        _ => run(&what, dir, Command::new("npm").args(["test", "--silent"])),
    };
    // Each project has tests, and they ran: not a suite that found nothing.
    let ran = match lang {
        "rust" => out.contains("test result: ok. ") && !out.contains("ok. 0 passed"),
        "python" => out.contains(" passed"),
        _ => out.contains("# pass ") && !out.contains("# pass 0"),
    };
    assert!(ran, "{what} ran no test:\n{out}");
}

/// Builds a project with its own build command; returns the component.
fn build(lang: &str, name: &str, dir: &Path, tools: &Toolchains, cargo_target: &Path) -> PathBuf {
    let what = format!("{} build", dir.display());
    match lang {
        "rust" => run(
            &what,
            dir,
            Command::new("./build.sh").env("CARGO_TARGET_DIR", cargo_target),
        ),
        "python" => run(
            &what,
            dir,
            Command::new("./build.sh").env("COMPONENTIZE_PY", &tools.componentize_py),
        ),
        // Its node_modules is there (native_tests installed it).
        "ts" => run(
            &what,
            dir,
            Command::new("npm").args(["run", "build", "--silent"]),
        ),
        _ => {
            // `npm run build` finds componentize-js on PATH when the project
            // has no node_modules: the pinned one CI installed, instead of
            // an `npm install` per project.
            let path = format!(
                "{}:{}",
                tools.componentize_js_bin,
                std::env::var("PATH").unwrap_or_default()
            );
            run(
                &what,
                dir,
                Command::new("npm")
                    .args(["run", "build", "--silent"])
                    .env("PATH", path),
            )
        }
    };
    let wasm = dir.join(format!("{name}.wasm"));
    let head =
        std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: no component ({e})", wasm.display()));
    // A component's preamble: "\0asm", version 0x0d, layer 1.
    assert_eq!(
        head.get(..8),
        Some(&[0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0][..]),
        "{} is not a component",
        wasm.display()
    );
    wasm
}

/// `weir plugin test` on the project's samples, as its README says, with
/// `cache` as its compile cache (the live Weir's, so it does not compile the
/// same big guest again).
fn plugin_test(world: &str, dir: &Path, wasm: &Path, cache: &Path) -> Value {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["-o", "json", "plugin", "test"])
        .arg(wasm)
        .args([
            "--ctx",
            "run.json",
            "--config",
            "config.json",
            "--stats",
            "stats.json",
            // A big guest on a loaded machine; the default is 50 ms.
            "--deadline-ms",
            "2000",
            "--cache-dir",
        ])
        .arg(cache);
    if world == "mutator" {
        cmd.args(["--job", "job.json"]);
    }
    let out = run(
        &format!("weir plugin test {}", wasm.display()),
        dir,
        &mut cmd,
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("plugin test printed no JSON ({e}): {out}"))
}

/// The env entry `name` of the first container of a Kubernetes job.
fn container_env(job: &Value, name: &str) -> Option<Value> {
    job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].clone())
}

/// What `plugin` decided about `run`, line by line (`defer`, `admit`, ...;
/// the whole decision as JSON where it has no `decision` field).
fn decisions_of(run: &Value, plugin: &str) -> Vec<String> {
    plugin_entries(run, plugin)
        .iter()
        .map(|e| {
            let d = &e["detail"]["decision"];
            d["decision"]
                .as_str()
                .map_or_else(|| d.to_string(), str::to_owned)
        })
        .collect()
}

#[test]
fn every_template_builds_passes_its_tests_and_decides_in_plugin_test_and_a_live_weir() {
    let Some(tools) = toolchains() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let cargo_target = root.path().join("cargo-target");
    let data = root.path().join("data");
    let cache = data.join("plugin-cache");
    let mut built = Vec::new();
    for lang in LANGS {
        for world in ["router", "admission", "mutator"] {
            let name = format!("t-{lang}-{world}");
            let dir = root.path().join(&name);
            let written: Value = serde_json::from_str(&run(
                "weir plugin new",
                root.path(),
                Command::new(weir_bin())
                    .args([
                        "-o", "json", "plugin", "new", &name, "--lang", lang, "--world", world,
                        "--dir",
                    ])
                    .arg(&dir),
            ))
            .expect("plugin new prints JSON");
            assert_eq!(written["wasm"], format!("{name}.wasm"));
            native_tests(lang, &dir, &tools, &cargo_target);
            let wasm = build(lang, &name, &dir, &tools, &cargo_target);

            // Offline, on the samples: team `a` has 2 running (stats.json),
            // the run carries the tag `gpu` (run.json).
            let out = plugin_test(world, &dir, &wasm, &cache);
            assert_eq!(out["world"], world, "{name}: {out}");
            assert_eq!(out["wit_version"], "0.2.0", "{name}: {out}");
            match world {
                "router" => assert_eq!(out["route"]["pool"], "gpu", "{name}: {out}"),
                "admission" => {
                    assert_eq!(out["admission"]["decision"], "defer", "{name}: {out}");
                    assert_eq!(
                        out["admission"]["reason"], "team a has 2 runs running (at most 2)",
                        "{name}: {out}"
                    );
                }
                _ => assert_eq!(
                    container_env(&out["job"], "GREETING"),
                    Some(Value::from("hello")),
                    "{name}: {out}"
                ),
            }
            assert_eq!(out["description"]["name"], name.as_str(), "{name}: {out}");
            built.push((lang, world, name, dir, wasm));
        }
    }

    // A live Weir: every plugin added and bound with its project's config.
    let weir = WeirProcess::start(&data, None);
    weir.cli_json(&["pool", "create", "gpu", "--type", "process"]);
    weir.cli_json(&["pool", "pause", "gpu"]);
    weir.cli_json(&["pool", "create", "start", "--type", "process"]);
    weir.cli_json(&["pool", "pause", "start"]);
    for (lang, world, name, dir, wasm) in &built {
        let wasm = wasm.to_str().expect("utf-8 path");
        let added = weir.cli_json(&["plugin", "add", name, wasm]);
        assert_eq!(added["version"], 1, "{added}");
        let config = match *world {
            // One running run per team here, and a quick retry.
            "admission" => r#"{"max_running_per_team": 1, "retry_seconds": 1}"#.to_owned(),
            _ => format!("@{}", dir.join("config.json").display()),
        };
        match *world {
            "router" => {
                weir.cli_json(&[
                    "router",
                    "bind",
                    name,
                    "--config",
                    &config,
                    "--deadline-ms",
                    "2000",
                ]);
            }
            _ => {
                let pool = format!("{world}-{lang}");
                weir.cli_json(&["pool", "create", &pool, "--type", "process"]);
                weir.cli_json(&[
                    "pool",
                    "bind",
                    &pool,
                    name,
                    "--config",
                    &config,
                    "--deadline-ms",
                    "2000",
                ]);
            }
        }
    }

    // Routers: a run with the tag `gpu` goes to pool `gpu`, and every
    // router of the chain decided it; a run without stays.
    let routed = weir.cli_json(&[
        "run",
        "create",
        "--pool",
        "start",
        "--command",
        "true",
        "--tag",
        "gpu",
    ]);
    let id = routed["id"].as_str().expect("id");
    let routed = weir.cli_json(&["run", "inspect", id]);
    assert_eq!(routed["pool"], "gpu", "{routed}");
    let stays = weir.cli_json(&["run", "create", "--pool", "start", "--command", "true"]);
    assert_eq!(stays["pool"], "start", "{stays}");
    for lang in LANGS {
        let decided = decisions_of(&routed, &format!("t-{lang}-router"));
        assert_eq!(decided.len(), 1, "t-{lang}-router: {routed}");
    }

    for lang in LANGS {
        // Admission: team `a` may have one running run; the second waits
        // with the plugin's reason; a run without a team is rejected.
        let pool = format!("admission-{lang}");
        let plugin = format!("t-{lang}-admission");
        for (deployment, variables) in [
            (
                "sleeps",
                r#"{"command": "sleep 30", "labels": {"team": "a"}}"#,
            ),
            ("quick", r#"{"command": "true", "labels": {"team": "a"}}"#),
            ("no-team", r#"{"command": "true"}"#),
        ] {
            let deployment = format!("{deployment}-{lang}");
            weir.cli_json(&[
                "deployment",
                "create",
                &deployment,
                "--pool",
                &pool,
                "--job-variables",
                variables,
            ]);
        }
        let first = weir.cli_json(&["run", "create", &format!("sleeps-{lang}")]);
        let first_id = first["id"].as_str().expect("id").to_owned();
        eventually_blocking(
            &format!("{first_id} Running"),
            Duration::from_secs(60),
            || {
                let run = weir.cli_json(&["run", "inspect", &first_id]);
                (run["state"] == "Running").then_some(())
            },
        );
        let second = weir.cli_json(&["run", "create", &format!("quick-{lang}")]);
        let second = weir.cli_json(&["run", "inspect", second["id"].as_str().expect("id")]);
        assert_eq!(
            decisions_of(&second, &plugin).first().map(String::as_str),
            Some("defer"),
            "{plugin}: {second}"
        );
        assert!(
            second
                .to_string()
                .contains("team a has 1 runs running (at most 1)"),
            "{plugin}: {second}"
        );
        assert_ne!(second["state"], "Running", "{plugin}: {second}");
        let out = weir.cli(&["-o", "json", "run", "create", &format!("no-team-{lang}")]);
        let rejected: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(
            rejected["state"],
            "Failed",
            "{plugin}: {rejected} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            rejected["state_message"]
                .as_str()
                .is_some_and(|m| m.contains("[missing-team] the run has no `team` label")),
            "{plugin}: {rejected}"
        );
        let cancelled = weir.cli(&["run", "cancel", &first_id]);
        assert!(
            cancelled.status.success(),
            "{}",
            String::from_utf8_lossy(&cancelled.stderr)
        );

        // Mutator: the job the release builds has the variable.
        let pool = format!("mutator-{lang}");
        let done = weir.cli(&[
            "-o",
            "json",
            "run",
            "create",
            "--pool",
            &pool,
            "--command",
            "sh -c 'echo greeting=$GREETING'",
            "--wait",
        ]);
        assert!(
            done.status.success(),
            "{}{}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
        let runs = weir.cli_json(&["run", "ls", "--pool", &pool]);
        let id = runs["items"][0]["id"].as_str().expect("a run").to_owned();
        let logs = weir.cli(&["run", "logs", &id]);
        assert_eq!(
            String::from_utf8_lossy(&logs.stdout),
            "greeting=hello\n",
            "t-{lang}-mutator"
        );
        let run = weir.cli_json(&["run", "inspect", &id]);
        assert_eq!(
            decisions_of(&run, &format!("t-{lang}-mutator")).len(),
            1,
            "{run}"
        );
    }
}
