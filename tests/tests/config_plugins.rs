//! Plugins and their bindings declared in the config file (issue #16 item
//! 4), end to end with the real `weir` binary: a fresh data directory
//! brought up from the file makes the same decisions as another one; the
//! file is applied again at each start without change; a binding changed in
//! the file is changed in the store; a wrong digest is refused with a
//! message naming the file.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use weir_tests::harness::{WeirProcess, component, free_port, weir_bin};

fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("component");
    format!("sha256:{:x}", Sha256::digest(&bytes))
}

fn config(dir: &Path, prefixes: &str, digest: &str) -> std::path::PathBuf {
    let gate = component("approved-registries");
    let label = component("add-label");
    let text = format!(
        r#"
[[pools]]
name = "local"
type = "process"
base_job_template_file = "template.json"

[[deployments]]
name = "job"
pool = "local"
job_variables = {{ command = "true" }}

[[plugins]]
name = "approved-registries"
path = "{gate}"
digest = "{digest}"

[[plugins]]
name = "add-label"
path = "{label}"

[[bindings]]
pool = "local"
plugin = "approved-registries"
config = {{ prefixes = [{prefixes}] }}

[[bindings]]
pool = "local"
plugin = "add-label"
on_error = "fail-open"

[[bindings]]
pool = "local"
plugin = "approved-registries"
mode = "shadow"
config = {{ prefixes = ["ghcr.io/"] }}
"#,
        gate = gate.display(),
        label = label.display(),
    );
    // A process template with an `image` variable for the policy to judge.
    let template = r#"{
        "job_configuration": {"command": "{{ command }}", "env": {"IMAGE": "{{ image }}"}},
        "variables": {"type": "object", "required": ["command"], "properties": {
            "command": {"type": "string"},
            "image": {"type": "string", "default": "none"}}}
    }"#;
    std::fs::write(dir.join("template.json"), template).expect("write template");
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The state (and, for a rejected run, its reason's first words) of runs
/// with these images.
fn decisions(weir: &WeirProcess, images: &[&str]) -> Vec<(String, String)> {
    images
        .iter()
        .map(|image| {
            let vars = format!(r#"{{"image": "{image}"}}"#);
            let run = weir.cli_json(&["run", "create", "job", "--job-variables", &vars]);
            let id = run["id"].as_str().expect("id").to_owned();
            let end = weir.wait_state(&id, &["Completed", "Failed"]);
            let state = end["state"].as_str().unwrap_or("").to_owned();
            let message = end["state_message"].as_str().unwrap_or("").to_owned();
            (state, message.replace(&id, "<id>"))
        })
        .collect()
}

fn bindings(weir: &WeirProcess) -> Value {
    let mut list = weir.cli_json(&["pool", "bindings", "local"]);
    // What the file decides; ids and times are the store's own.
    if let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) {
        for b in items {
            if let Some(o) = b.as_object_mut() {
                o.remove("id");
                o.remove("created_at");
            }
        }
    }
    list
}

#[test]
fn plugins_and_bindings_in_the_config_file_bring_up_the_same_decisions() {
    let images = [
        "ghcr.io/acme/etl:1",
        "docker.io/evil/miner:1",
        "ghcr.io/acme-evil/x:1",
    ];
    let gate = component("approved-registries");
    let good = digest(&gate);

    let first = tempfile::tempdir().expect("tempdir");
    let file = config(first.path(), r#""ghcr.io/acme/""#, &good);
    let a = WeirProcess::start(&first.path().join("data"), Some(&file));
    let seen = decisions(&a, &images);
    assert_eq!(seen[0].0, "Completed", "{seen:?}");
    assert_eq!(seen[1].0, "Failed", "{seen:?}");
    assert!(seen[1].1.contains("docker.io/evil/miner:1"), "{seen:?}");
    assert_eq!(
        seen[2].0, "Failed",
        "prefixes match text ending in /: {seen:?}"
    );
    let bound = bindings(&a);
    let modes: Vec<&str> = bound["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["mode"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(modes, ["enforce", "enforce", "shadow"], "{bound}");

    // A fresh data directory from the same file: the same decisions.
    let second = tempfile::tempdir().expect("tempdir");
    let b = WeirProcess::start(&second.path().join("data"), Some(&file));
    assert_eq!(decisions(&b, &images), seen);
    assert_eq!(bindings(&b), bound);
    drop(b);

    // Applied again at a restart: nothing changes, no new version.
    let mut a = a;
    a.restart();
    assert_eq!(bindings(&a), bound);
    let plugin = a.cli_json(&["plugin", "inspect", "approved-registries"]);
    assert_eq!(plugin["newest_version"], 1, "{plugin}");

    // The file changes the binding's config: the store follows.
    drop(a);
    config(first.path(), r#""ghcr.io/acme/", "docker.io/evil/""#, &good);
    let a = WeirProcess::start(&first.path().join("data"), Some(&file));
    let now = decisions(&a, &images[..2]);
    assert_eq!(
        now[1].0, "Completed",
        "docker.io/evil/ is now approved: {now:?}"
    );
    drop(a);

    // A wrong digest: `weir serve` refuses to start, naming the file.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let third = tempfile::tempdir().expect("tempdir");
    let bad = config(third.path(), r#""ghcr.io/acme/""#, &wrong);
    let out = Command::new(weir_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(third.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("weir serve");
    assert!(!out.status.success(), "a wrong digest must stop the start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&gate.display().to_string())
            && stderr.contains(&good)
            && stderr.contains(&wrong),
        "{stderr}"
    );
}
