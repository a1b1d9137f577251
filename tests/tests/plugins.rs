//! WebAssembly plugins end to end: real components compiled from
//! `plugins/` and `tests/plugins/`, loaded by wasmtime inside a real Weir,
//! judging real runs.

use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_tests::api::{Api, start};
use weir_tests::harness::{another_version_of, component, guest, plugin_entries};

async fn add(api: &Api, name: &str, file: &str) -> Value {
    let (status, v) = api.upload(name, &component(file)).await;
    assert!(status.is_success(), "upload {name}: {status} {v}");
    v
}

async fn process_pool(api: &Api, name: &str) {
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": name, "type": "process"})),
    )
    .await;
}

async fn kube_pool(api: &Api, name: &str) {
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": name, "type": "kubernetes"})),
    )
    .await;
}

fn history_causes(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| e["cause"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn registry_versions_worlds_and_bindings() {
    let api = start().await;
    process_pool(&api, "local").await;
    let v1 = add(&api, "quota", "team-quota").await;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["world"], "admission");
    assert!(
        v1["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    // The same bytes again: no new version.
    let (status, same) = api.upload("quota", &component("team-quota")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["version"], 1);
    // Garbage is refused, naming the upload.
    let (status, e) = api
        .raw("POST", "/api/v1/plugins/junk", b"not wasm".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "wasm");
    // A router cannot bind to a pool, an admission plugin not as a router.
    add(&api, "router", "tag-router").await;
    let (status, e) = api
        .send(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "router"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (status, _) = api
        .send("POST", "/api/v1/routers", Some(json!({"plugin": "quota"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A bad config is refused with the plugin's own message.
    let (status, e) = api
        .send(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "quota", "config": {"max_running": "many"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "config");
    assert!(
        e["detail"].as_str().unwrap_or("").contains("max_running"),
        "{e}"
    );
    let b = api
        .ok(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "quota", "config": {"max_running": 2, "defer_seconds": 5}})),
        )
        .await;
    assert_eq!(b["on_error"], "fail-closed");
    assert_eq!(b["deadline_ms"], 50);
    let (status, _) = api.send("DELETE", "/api/v1/plugins/quota", None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a bound plugin cannot be deleted"
    );
    let detail = api.ok("GET", "/api/v1/plugins/quota", None).await;
    assert_eq!(detail["bindings"].as_array().map(Vec::len), Some(1));
    let (status, _) = api
        .send("DELETE", "/api/v1/pools/local/bindings/quota", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.send("DELETE", "/api/v1/plugins/quota", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.server.shutdown();
}

#[tokio::test]
async fn mutators_shape_the_job_a_run_gets() {
    // No cluster here: the default connection's kubeconfig does not exist,
    // so a released run ends Crashed at once, whatever KUBECONFIG the
    // environment has (tests/tests/kubernetes.rs runs mutated Jobs for real).
    let api = weir_tests::api::start_with(tempfile::tempdir().expect("tempdir"), |o| {
        o.kubernetes.default.kubeconfig = Some("/nonexistent/weir-test-kubeconfig".into());
    })
    .await;
    kube_pool(&api, "gpu").await;
    add(&api, "gpu-node-selector", "gpu-node-selector").await;
    add(&api, "team-resources", "team-resources").await;
    api.ok(
        "POST",
        "/api/v1/pools/gpu/bindings",
        Some(json!({"plugin": "gpu-node-selector", "config": {
            "node_selector": {"accelerator": "nvidia-a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        }})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/pools/gpu/bindings",
        Some(
            json!({"plugin": "team-resources", "config": {"teams": {"ml": {
            "default": {"cpu": "500m", "memory": "1Gi"}, "max": {"cpu": "4", "memory": "8Gi"}}}}}),
        ),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "train", "pool": "gpu", "tags": ["gpu"],
            "job_variables": {"image": "registry.example.com/train:1", "labels": {"team": "ml"},
                              "cpu_limit": "16"}})),
    )
    .await;
    let rendered = api
        .ok("POST", "/api/v1/deployments/train/render", Some(json!({})))
        .await;
    let pod = &rendered["job_configuration"]["job_manifest"]["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["accelerator"], "nvidia-a100", "{pod}");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    let resources = &pod["containers"][0]["resources"];
    assert_eq!(
        resources["limits"]["nvidia.com/gpu"],
        json!("1"),
        "{resources}"
    );
    assert_eq!(
        resources["limits"]["cpu"], "4",
        "clamped to the team's max: {resources}"
    );
    assert_eq!(
        resources["requests"]["memory"], "1Gi",
        "team default: {resources}"
    );

    // A submitted run goes through both mutators at launch; their patches are
    // on its history. (The run then ends Crashed: no cluster to submit to.)
    let done = api.run_to_end(json!({"deployment": "train"})).await;
    let gpu = plugin_entries(&done, "gpu-node-selector");
    assert_eq!(gpu.len(), 1, "{done}");
    let ops = gpu[0]["detail"]["patch"].to_string();
    assert!(
        ops.contains("nodeSelector") && ops.contains("nvidia.com~1gpu"),
        "{ops}"
    );
    let team = plugin_entries(&done, "team-resources");
    assert_eq!(team.len(), 1, "{done}");
    assert!(
        team[0]["detail"]["patch"]
            .to_string()
            .contains("/resources"),
        "{done}"
    );
    assert_eq!(done["state"], "Crashed", "{done}");
    assert!(
        done["state_message"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/weir-test-kubeconfig"),
        "{done}"
    );
    api.server.shutdown();
}

#[tokio::test]
async fn a_process_run_gets_its_mutation_and_history_records_it() {
    let api = start().await;
    process_pool(&api, "local").await;
    add(&api, "add-label", "add-label").await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "add-label"})),
    )
    .await;
    let done = api
        .run_to_end(json!({"pool": "local", "job": {"command": "sh -c 'echo added=$ADDED'"}}))
        .await;
    assert_eq!(done["state"], "Completed", "{done}");
    let id = done["id"].as_str().expect("id");
    let logs = api
        .http
        .get(api.url(&format!("/api/v1/runs/{id}/logs")))
        .send()
        .await
        .expect("logs")
        .text()
        .await
        .expect("text");
    assert_eq!(logs, "added=yes\n");
    let entries = plugin_entries(&done, "add-label");
    assert_eq!(entries.len(), 1, "{done}");
    let d = &entries[0]["detail"];
    assert_eq!(d["world"], "mutator");
    assert_eq!(d["version"], 1);
    assert!(
        d["digest"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256:"))
    );
    assert!(d["elapsed_ms"].as_f64().is_some());
    assert_eq!(d["patch"][0]["path"], "/env/ADDED");
    api.server.shutdown();
}

/// `deployment render` and the release build the job with one builder
/// (`host/src/run/build.rs`): the preview carries the mutators' patches, and
/// a mutator that breaks the job's shape is refused by the preview with the
/// very reason the launch fails the run with.
#[tokio::test]
async fn the_preview_is_the_job_the_release_builds() {
    let api = start().await;
    process_pool(&api, "local").await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "d", "pool": "local",
                    "job_variables": {"command": "sh -c 'echo added=$ADDED'"}})),
    )
    .await;
    add(&api, "add-label", "add-label").await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "add-label"})),
    )
    .await;
    let rendered = api
        .ok("POST", "/api/v1/deployments/d/render", Some(json!({})))
        .await;
    assert_eq!(
        rendered["job_configuration"]["env"]["ADDED"], "yes",
        "{rendered}"
    );
    let done = api.run_to_end(json!({"deployment": "d"})).await;
    assert_eq!(done["state"], "Completed", "{done}");

    // A mutator whose valid patch leaves an invalid job.
    add(&api, "breaks-shape", "breaks-shape").await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "breaks-shape"})),
    )
    .await;
    let (status, refused) = api
        .send("POST", "/api/v1/deployments/d/render", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let preview_reason = refused["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        preview_reason.starts_with("the mutated job is invalid: ")
            && preview_reason.contains("timeout_seconds"),
        "{refused}"
    );
    let failed = api.run_to_end(json!({"deployment": "d"})).await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    assert_eq!(
        failed["state_message"],
        json!(format!("cannot build the job: {preview_reason}")),
        "the launch refuses the job with the preview's reason"
    );
    api.server.shutdown();
}

#[tokio::test]
async fn admission_rejects_and_defers_with_recorded_reasons() {
    let api = start().await;
    kube_pool(&api, "k8s").await;
    add(&api, "approved-registries", "approved-registries").await;
    api.ok(
        "POST",
        "/api/v1/pools/k8s/bindings",
        Some(json!({"plugin": "approved-registries",
                    "config": {"prefixes": ["registry.example.com/"]}})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "job", "pool": "k8s"})),
    )
    .await;
    let (status, run) = api
        .send(
            "POST",
            "/api/v1/runs",
            Some(
                json!({"deployment": "job", "job_variables": {"image": "docker.io/evil/miner:1"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["state"], "Failed", "{run}");
    let msg = run["state_message"].as_str().unwrap_or("");
    assert!(
        msg.contains("approved-registries") && msg.contains("docker.io/evil/miner:1"),
        "{msg}"
    );

    // team-quota on a process pool: team "a" may have one running; the
    // second run is deferred, then admitted when its time comes again.
    process_pool(&api, "local").await;
    add(&api, "team-quota", "team-quota").await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "team-quota", "config": {"max_running": 1, "defer_seconds": 1}})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "work", "pool": "local",
                    "job_variables": {"command": "sleep 1.5", "labels": {"team": "a"}}})),
    )
    .await;
    let first = api
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "work"})))
        .await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    api.wait_state(&first_id, &["Running"]).await;
    let second = api
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "work"})))
        .await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    let deferred = plugin_entries(&second, "team-quota");
    assert_eq!(deferred.len(), 1, "{second}");
    assert_eq!(deferred[0]["detail"]["decision"]["decision"], "defer");
    let first_done = api.wait_state(&first_id, &["Completed", "Failed"]).await;
    let second_done = api.wait_state(&second_id, &["Completed", "Failed"]).await;
    assert_eq!(first_done["state"], "Completed");
    assert_eq!(second_done["state"], "Completed", "{second_done}");
    let decisions: Vec<String> = plugin_entries(&second_done, "team-quota")
        .iter()
        .map(|e| {
            e["detail"]["decision"]["decision"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(decisions.first().map(String::as_str), Some("defer"));
    assert_eq!(
        decisions.last().map(String::as_str),
        Some("admit"),
        "{decisions:?}"
    );
    let started = second_done["started_at"].as_str().expect("started");
    let ended = first_done["ended_at"].as_str().expect("ended");
    assert!(
        started >= ended,
        "the quota held: second started {started}, first ended {ended}"
    );
    api.server.shutdown();
}

#[tokio::test]
async fn routers_choose_pool_and_queue() {
    let api = start().await;
    process_pool(&api, "local").await;
    process_pool(&api, "gpu-pool").await;
    api.ok(
        "POST",
        "/api/v1/pools/gpu-pool/queues",
        Some(json!({"name": "fast"})),
    )
    .await;
    add(&api, "tag-router", "tag-router").await;
    api.ok(
        "POST",
        "/api/v1/routers",
        Some(json!({"plugin": "tag-router", "config": {"rules": [
            {"tag": "gpu", "pool": "gpu-pool", "queue": "fast", "add_tags": ["routed"]}]}})),
    )
    .await;
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "tags": ["gpu"], "job": {"command": "true"}})),
        )
        .await;
    assert_eq!(run["pool"], "gpu-pool", "{run}");
    assert_eq!(run["queue"], "fast");
    assert_eq!(run["tags"], json!(["gpu", "routed"]));
    assert!(history_causes(&run).contains(&"router:tag-router".to_owned()));
    let plain = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "job": {"command": "true"}})),
        )
        .await;
    assert_eq!(plain["pool"], "local");
    api.server.shutdown();
}

/// Every misbehaving plugin is contained, the run gets the outcome its
/// binding's on-error says, and the next run through a good plugin is fine.
#[tokio::test]
async fn misbehaving_plugins_are_contained() {
    let api = start().await;
    process_pool(&api, "local").await;
    add(&api, "good", "add-label").await;
    let cases = [
        ("loop-forever", "timeout", ""),
        ("alloc-forever", "memory_limit", ""),
        ("panics", "trap", "boom: deliberate panic"),
        ("bad-patch", "invalid_output", ""),
        ("forbidden-patch", "invalid_output", ""),
        ("huge-output", "invalid_output", ""),
        ("malformed", "invalid_output", ""),
    ];
    for (plugin, kind, text) in cases {
        add(&api, plugin, plugin).await;
        for on_error in ["fail-closed", "fail-open"] {
            api.ok(
                "POST",
                "/api/v1/pools/local/bindings",
                // Only loop-forever is about time; the others get a deadline
                // a loaded 2-core CI machine cannot hit (copying 8 MiB out of
                // huge-output took over 50 ms in a debug build there once).
                Some(json!({"plugin": plugin, "on_error": on_error,
                            "deadline_ms": if plugin == "loop-forever" { 50 } else { 2000 },
                            "memory_mb": if plugin == "alloc-forever" { 16 } else { 64 }})),
            )
            .await;
            let done = api
                .run_to_end(json!({"pool": "local", "job": {"command": "true"}}))
                .await;
            let entries = plugin_entries(&done, plugin);
            let msg = done["state_message"].as_str().unwrap_or("");
            if on_error == "fail-closed" {
                assert_eq!(done["state"], "Failed", "{plugin}: {done}");
                assert!(
                    msg.contains(plugin) && msg.contains(kind),
                    "{plugin}: {msg}"
                );
                assert!(msg.contains(text), "{plugin}: {msg}");
                let failed = done["history"].as_array().and_then(|h| h.last()).cloned();
                assert_eq!(
                    failed
                        .as_ref()
                        .map(|f| f["detail"]["error"]["kind"].clone()),
                    Some(json!(kind)),
                    "{plugin}: {done}"
                );
            } else {
                assert_eq!(done["state"], "Completed", "{plugin} fail-open: {done}");
                assert_eq!(entries.len(), 1, "{plugin}: {done}");
                assert_eq!(entries[0]["detail"]["error"]["kind"], kind);
                assert!(
                    entries[0]["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("skipped")
                );
            }
            api.ok(
                "DELETE",
                &format!("/api/v1/pools/local/bindings/{plugin}"),
                None,
            )
            .await;
            let health = api.ok("GET", "/healthz", None).await;
            assert_eq!(health["status"], "ok");
        }
        // The next run through a good plugin is unaffected.
        api.ok(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "good"})),
        )
        .await;
        let done = api
            .run_to_end(
                json!({"pool": "local", "job": {"command": "sh -c 'test \"$ADDED\" = yes'"}}),
            )
            .await;
        assert_eq!(done["state"], "Completed", "after {plugin}: {done}");
        api.ok("DELETE", "/api/v1/pools/local/bindings/good", None)
            .await;
    }
    api.server.shutdown();
}

#[tokio::test]
async fn a_new_version_takes_effect_without_restart_and_a_bad_one_never_replaces_a_working_one() {
    let api = start().await;
    process_pool(&api, "local").await;
    // Version 1: admits everything; it refuses a config with key "bad".
    add(&api, "gate", "always-admit").await;
    let (status, e) = api
        .send(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "gate", "config": {"bad": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let config = json!({"max_running": 5, "defer_seconds": 1});
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "gate", "config": config})),
    )
    .await;
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "job": {"command": "true"}})),
        )
        .await;
    let v1 = plugin_entries(&run, "gate")[0]["detail"]["digest"].clone();
    // Version 2 (team-quota, also an admission plugin) accepts the binding's
    // config and is used by the next decision, with no restart.
    let v2 = add(&api, "gate", "team-quota").await;
    assert_eq!(v2["version"], 2);
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "job": {"command": "true"}})),
        )
        .await;
    let used = plugin_entries(&run, "gate")[0]["detail"].clone();
    assert_eq!(used["version"], 2);
    assert_eq!(used["digest"], v2["digest"]);
    assert_ne!(used["digest"], v1);
    // A version that refuses the binding's config is not taken.
    let (status, e) = api.upload("gate", &component("approved-registries")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["field"], "config");
    let detail = api.ok("GET", "/api/v1/plugins/gate", None).await;
    assert_eq!(detail["newest_version"], 2, "{detail}");
    // And decisions still use version 2.
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "job": {"command": "true"}})),
        )
        .await;
    assert_eq!(plugin_entries(&run, "gate")[0]["detail"]["version"], 2);
    api.server.shutdown();
}

/// The plugin author's path: `plugin test` offline, `plugin add`,
/// `pool bind`, `plugin inspect`, through the real CLI binary.
#[test]
fn plugin_cli_from_test_to_bind() {
    use weir_tests::harness::{WeirProcess, weir_bin};
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = component("gpu-node-selector");
    let wasm = wasm.to_str().expect("utf-8 path");
    let ctx = dir.path().join("run.json");
    std::fs::write(
        &ctx,
        json!({"run_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "deployment": "train",
               "pool": "gpu", "queue": "default", "tags": ["gpu"], "labels": {"team": "ml"},
               "parameters": {}, "job_variables": {}, "parent_run": null})
        .to_string(),
    )
    .expect("write ctx");
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({"namespace": "default", "job_manifest": {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "weir-x"}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}}}}})
        .to_string(),
    )
    .expect("write job");
    let cfg = dir.path().join("cfg.json");
    std::fs::write(&cfg, json!({"node_selector": {"gpu": "yes"}}).to_string()).expect("cfg");

    // Offline: no server needed.
    let out = std::process::Command::new(weir_bin())
        .args(["-o", "json", "plugin", "test", wasm, "--ctx"])
        .arg(&ctx)
        .arg("--job")
        .arg(&job)
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("plugin test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["world"], "mutator");
    // The plugin's own `log` call, shown to its author.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("placed GPU run") && said.contains(r#"resource="nvidia.com/gpu""#),
        "{said}"
    );
    assert_eq!(
        result["job"]["job_manifest"]["spec"]["template"]["spec"]["nodeSelector"]["gpu"], "yes",
        "{result}"
    );

    let weir = WeirProcess::start(&dir.path().join("data"), None);
    weir.cli_json(&["pool", "create", "gpu", "--type", "kubernetes"]);
    let added = weir.cli_json(&["plugin", "add", "gpu-node-selector", wasm]);
    assert_eq!(added["version"], 1);
    let cfg_arg = format!("@{}", cfg.display());
    let bound = weir.cli_json(&[
        "pool",
        "bind",
        "gpu",
        "gpu-node-selector@1",
        "--config",
        &cfg_arg,
        "--on-error",
        "fail-open",
        "--deadline-ms",
        "100",
    ]);
    assert_eq!(bound["pinned_version"], 1);
    assert_eq!(bound["on_error"], "fail-open");
    let inspect = weir.cli_json(&["plugin", "inspect", "gpu-node-selector"]);
    assert_eq!(inspect["bindings"][0]["pool"], "gpu");
    let bindings = weir.cli_json(&["pool", "bindings", "gpu"]);
    assert_eq!(bindings["items"].as_array().map(Vec::len), Some(1));
    let out = weir.cli(&["pool", "bind", "gpu", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[tokio::test]
async fn a_deferral_is_capped_at_a_day_and_says_so() {
    let api = start().await;
    process_pool(&api, "local").await;
    add(&api, "defers", "defers-forever").await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "defers", "config": {"seconds": 4_294_967_295u64, "reason_bytes": 5000}})),
    )
    .await;
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"pool": "local", "job": {"command": "true"}})),
        )
        .await;
    let id = run["id"].as_str().expect("id");
    let run = api.ok("GET", &format!("/api/v1/runs/{id}"), None).await;
    let line = plugin_entries(&run, "defers")
        .into_iter()
        .next()
        .cloned()
        .expect("the deferral");
    assert_eq!(line["detail"]["decision"]["seconds"], 86_400, "{line}");
    assert_eq!(line["detail"]["asked_seconds"], 4_294_967_295u64, "{line}");
    // Why it waits: deferred by the plugin's version, until its time, with
    // the plugin's reason; not due, so no position.
    let deferral = &run["waiting"]["holds"][0];
    assert_eq!(deferral["kind"], "deferred", "{run}");
    assert_eq!(deferral["plugin"], "defers");
    assert_eq!(deferral["version"], 1);
    assert_eq!(deferral["until"], run["scheduled_at"]);
    assert_eq!(deferral["reason"], line["detail"]["decision"]["reason"]);
    assert!(run["waiting"]["position"].is_null(), "{run}");
    assert!(
        run["waiting"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("deferred by defers@1 until ")),
        "{run}"
    );
    // Its pool counts it as deferred.
    let pool = api.ok("GET", "/api/v1/pools/local", None).await;
    assert_eq!(pool["waiting"]["deferred"], 1, "{pool}");
    assert_eq!(pool["queued_runs"], 1, "{pool}");
    let message = line["message"].as_str().unwrap_or("");
    assert!(
        message.contains("defer 86400s (asked 4294967295s; at most 86400s)"),
        "{message}"
    );
    // The 5,000-byte reason is clipped at the plugin boundary.
    let reason = line["detail"]["decision"]["reason"].as_str().unwrap_or("");
    assert!(reason.len() <= 1024 + 3, "{}", reason.len());
    // Scheduled for a day from now, not for 2163.
    let at = chrono::DateTime::parse_from_rfc3339(run["scheduled_at"].as_str().expect("at"))
        .expect("time");
    let ahead = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        ahead <= chrono::Duration::hours(24) && ahead > chrono::Duration::hours(23),
        "{ahead}"
    );
}

/// weir:plugin@0.2.0 in a live Weir, beside 0.1.0: a binding's config is
/// checked against the schema the plugin describes; an admission plugin
/// asks for its team's load and rejects with a structured refusal that
/// history, API and CLI show as such; a mutator returns the whole job (the
/// recorded patch is the host's diff) or rejects the run.
// Multi-threaded: the CLI is a blocking child process talking to the
// in-process server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_0_2_0_plugins_judge_live_runs_with_structured_refusals() {
    use weir_tests::harness::weir_bin;
    let api = start().await;
    process_pool(&api, "local").await;
    let added = add(&api, "quota2", "v2-admission").await;
    assert_eq!(added["wit_version"], "0.2.0", "{added}");
    add(&api, "marker", "v2-mutator").await;

    // The schema the plugin describes refuses a config before the plugin
    // sees it, and says where.
    let (status, e) = api
        .send(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "quota2", "config": {"max": "one"}})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {e}");
    assert!(e.to_string().contains("config/max"), "{e}");
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "quota2", "config": {"max": 1}})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "marker", "config": {"mode": "job"}})),
    )
    .await;
    let described = api.ok("GET", "/api/v1/plugins/quota2", None).await;
    assert_eq!(
        described["description"]["name"], "v2-admission",
        "{described}"
    );
    assert_eq!(
        described["description"]["config_schema"]["required"],
        json!(["max"]),
        "{described}"
    );

    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "work", "pool": "local",
                    "job_variables": {"command": "sleep 3", "labels": {"team": "a"}}})),
    )
    .await;
    let first = api
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "work"})))
        .await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    let running = api.wait_state(&first_id, &["Running"]).await;
    // The mutator gave the whole job; the history has the host's patch.
    let marked = plugin_entries(&running, "marker");
    assert_eq!(marked.len(), 1, "{running}");
    let patch = marked[0]["detail"]["patch"].to_string();
    assert!(
        patch.contains("/env/MUTATED") && patch.contains("/env/POOL_TYPE"),
        "{patch}"
    );

    // Team a has one running: the second is rejected, with a code and details.
    let second = api
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "work"})))
        .await;
    assert_eq!(second["state"], "Failed", "{second}");
    let message = second["state_message"].as_str().unwrap_or("");
    assert!(
        message.contains("[quota-exceeded] team a has 1 running; its quota is 1"),
        "{message}"
    );
    let judged = plugin_entries(&second, "quota2");
    let decision = &judged.last().expect("a quota2 entry")["detail"]["decision"];
    assert_eq!(decision["decision"], "reject", "{second}");
    assert_eq!(decision["code"], "quota-exceeded", "{second}");
    assert_eq!(
        decision["details"],
        json!({"team": "a", "running": 1, "max": 1}),
        "{second}"
    );
    let second_id = second["id"].as_str().expect("id");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(weir_bin())
            .args(args)
            .env("WEIR_API_URL", &api.base)
            .output()
            .expect("weir CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = cli(&["run", "inspect", second_id]);
    assert!(shown.contains("[quota-exceeded]"), "{shown}");
    let shown = cli(&["plugin", "inspect", "quota2"]);
    assert!(shown.contains("v2-admission 2.0.0"), "{shown}");

    // A mutator's reject ends the run with the refusal.
    process_pool(&api, "strict").await;
    api.ok(
        "POST",
        "/api/v1/pools/strict/bindings",
        Some(json!({"plugin": "marker", "config": {"mode": "reject"}})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "refused", "pool": "strict",
                    "job_variables": {"command": "true"}})),
    )
    .await;
    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"deployment": "refused"})),
        )
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    let ended = api
        .wait_state(&id, &["Failed", "Completed", "Crashed"])
        .await;
    assert_eq!(ended["state"], "Failed", "{ended}");
    let message = ended["state_message"].as_str().unwrap_or("");
    assert!(
        message.contains("marker") && message.contains("[image-not-allowed]"),
        "{message}"
    );
    api.wait_state(&first_id, &["Completed"]).await;
    api.server.shutdown();
}

/// What a decision says once who said it is taken away: the text after
/// `<plugin>@<version>: ` (or after `): plugin returned an error: ` for a
/// plugin's error), with its leading `[code] ` (every language's version
/// refuses with the same codes).
fn said(message: &str) -> String {
    let rest = match message.find("@1: ") {
        Some(i) if !message.contains("failed (") => &message[i + 4..],
        _ => message.rsplit_once("): ").map_or(message, |(_, r)| r),
    };
    let rest = rest
        .strip_prefix("plugin returned an error: ")
        .unwrap_or(rest);
    assert!(
        rest.starts_with('[') && rest.contains("] "),
        "a refusal without a code: {message}"
    );
    rest.to_owned()
}

/// The example policies `approved-registries` and `gpu-node-selector` in
/// Rust, Python and JavaScript (each with its SDK, weir:plugin@0.2.0), bound
/// to three pools of a live Weir with the same configs, make the same
/// decisions with the same refusals (code and message) and the same job
/// changes.
#[tokio::test]
async fn the_example_policies_decide_the_same_in_rust_python_and_javascript() {
    let files = [
        guest("python-approved-registries.wasm"),
        guest("python-gpu-node-selector.wasm"),
        guest("js-approved-registries.wasm"),
        guest("js-gpu-node-selector.wasm"),
    ];
    let [Some(py_ar), Some(py_gpu), Some(js_ar), Some(js_gpu)] = files else {
        return;
    };
    let api = start().await;
    let languages = [
        (
            "rust",
            component("approved-registries"),
            component("gpu-node-selector"),
        ),
        ("python", py_ar, py_gpu),
        ("js", js_ar, js_gpu),
    ];
    for (lang, ar, gpu) in &languages {
        let pool = format!("k8s-{lang}");
        kube_pool(&api, &pool).await;
        for (name, file) in [(format!("ar-{lang}"), ar), (format!("gpu-{lang}"), gpu)] {
            let (status, v) = api.upload(&name, file).await;
            assert!(status.is_success(), "upload {name}: {status} {v}");
        }
        api.ok(
            "POST",
            &format!("/api/v1/pools/{pool}/bindings"),
            Some(json!({"plugin": format!("ar-{lang}"),
                        "config": {"prefixes": ["registry.example.com/", "ghcr.io/acme/"]},
                        "deadline_ms": 2000})),
        )
        .await;
        api.ok(
            "POST",
            &format!("/api/v1/pools/{pool}/bindings"),
            Some(json!({"plugin": format!("gpu-{lang}"),
                        "config": {"node_selector": {"nvidia.com/gpu.present": "true"},
                                   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                    "effect": "NoSchedule"}]},
                        "deadline_ms": 2000})),
        )
        .await;
        // Paused: an admitted run waits as Scheduled (no cluster here).
        api.ok("POST", &format!("/api/v1/pools/{pool}/pause"), None)
            .await;
        for (deployment, tags) in [("plain", json!([])), ("tagged", json!(["gpu"]))] {
            api.ok(
                "POST",
                "/api/v1/deployments",
                Some(json!({"name": format!("{deployment}-{lang}"), "pool": pool, "tags": tags})),
            )
            .await;
        }
    }

    // Admission: the same verdict and reason from each.
    let images = [
        json!("registry.example.com/team/app:1"),
        Value::Null,
        json!("ghcr.io/acme-evil/x:1"),
        json!("busybox:1.36"),
        json!("ghcr.io/acme/tool@sha256:abc"),
    ];
    let mut rejected = 0;
    for image in &images {
        let mut verdicts = Vec::new();
        for (lang, _, _) in &languages {
            let mut job_variables = json!({});
            if !image.is_null() {
                job_variables["image"] = image.clone();
            }
            let run = api
                .ok(
                    "POST",
                    "/api/v1/runs",
                    Some(json!({"deployment": format!("plain-{lang}"),
                                "job_variables": job_variables})),
                )
                .await;
            let state = run["state"].as_str().unwrap_or("").to_owned();
            let message = run["state_message"].as_str().unwrap_or("");
            // A refusal's reason, without who said it; an admitted run's
            // message carries timings, so only its state is compared.
            let reason = if state == "Failed" {
                said(message)
            } else {
                String::new()
            };
            verdicts.push((state, reason));
        }
        assert!(
            verdicts.iter().all(|v| v == &verdicts[0]),
            "image {image}: {verdicts:?}"
        );
        if verdicts[0].0 == "Failed" {
            rejected += 1;
        }
    }
    assert_eq!(rejected, 2, "two of the five images are refused");

    // Mutation: the same pod spec from each (the previews are the jobs a
    // release would build), or the same refusal.
    let cases = [
        ("plain", json!({}), json!({})),
        ("plain", json!({"gpus": 2}), json!({})),
        ("plain", json!({"gpu": true}), json!({})),
        ("tagged", json!({}), json!({})),
        ("plain", json!({"gpus": -1}), json!({})),
        ("plain", json!({"gpu": "yes"}), json!({})),
    ];
    let mut changed = 0;
    for (deployment, parameters, job_variables) in &cases {
        let mut outcomes = Vec::new();
        for (lang, _, _) in &languages {
            let (status, rendered) = api
                .send(
                    "POST",
                    &format!("/api/v1/deployments/{deployment}-{lang}/render"),
                    Some(json!({"parameters": parameters, "job_variables": job_variables})),
                )
                .await;
            let outcome = if status.is_success() {
                rendered["job_configuration"]["job_manifest"]["spec"]["template"]["spec"].clone()
            } else {
                json!({"status": status.as_u16(),
                       "said": said(rendered["detail"].as_str().unwrap_or(""))})
            };
            outcomes.push(outcome);
        }
        assert!(
            outcomes.iter().all(|o| o == &outcomes[0]),
            "{deployment} {parameters} {job_variables}: {outcomes:#?}"
        );
        if outcomes[0]["nodeSelector"]["nvidia.com/gpu.present"] == "true" {
            changed += 1;
        }
    }
    assert_eq!(
        changed, 3,
        "three of the six cases place the run on GPU nodes"
    );
    api.server.shutdown();
}

/// Shadow bindings (issue #16 item 3): version 2 of `approved-registries`,
/// bound in shadow with a stricter config beside version 1 enforcing, judges
/// 200 live runs: every run completes as version 1 decides, and version 2's
/// would-be rejections are recorded — exactly for the runs it would reject —
/// as disagreements, in history, in the decisions endpoint and in the
/// metrics. A shadow mutator's patch never reaches the job, and a shadow
/// that panics never fails a run. Then `--mode enforce` promotes version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_bindings_judge_live_runs_and_change_none() {
    let api = start().await;
    api.image_pool("local").await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "job", "pool": "local",
                    "job_variables": {"command": "sh -c 'echo added=$ADDED'"}})),
    )
    .await;
    let v1 = add(&api, "approved-registries", "approved-registries").await;
    let (status, v2) = api
        .upload(
            "approved-registries",
            &another_version_of("approved-registries"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(
        (v1["version"].as_u64(), v2["version"].as_u64()),
        (Some(1), Some(2))
    );
    api.ok(
        "POST",
        "/api/v1/pools/local/bindings",
        Some(json!({"plugin": "approved-registries", "version": 1,
                    "config": {"prefixes": ["ghcr.io/acme/", "docker.io/library/"]}})),
    )
    .await;
    let shadow = api
        .ok(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(
                json!({"plugin": "approved-registries", "version": 2, "mode": "shadow",
                        "config": {"prefixes": ["ghcr.io/acme/"]}}),
            ),
        )
        .await;
    assert_eq!(shadow["mode"], "shadow");
    // A second shadow of the plugin is a conflict.
    let (status, _) = api
        .send(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "approved-registries", "mode": "shadow",
                        "config": {"prefixes": ["x/"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Shadow mutators: add-label (no enforced counterpart) and one that
    // panics.
    for (name, file) in [("add-label", "add-label"), ("panics", "panics")] {
        add(&api, name, file).await;
        api.ok(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": name, "mode": "shadow"})),
        )
        .await;
    }

    let mut ids = Vec::new();
    let mut stricter_rejects = std::collections::BTreeSet::new();
    for i in 0..200 {
        let image = if i % 3 == 0 {
            "docker.io/library/python:3"
        } else {
            "ghcr.io/acme/etl:1"
        };
        let run = api
            .ok(
                "POST",
                "/api/v1/runs",
                Some(json!({"deployment": "job", "job_variables": {"image": image}})),
            )
            .await;
        let id = run["id"].as_str().expect("id").to_owned();
        if i % 3 == 0 {
            stricter_rejects.insert(id.clone());
        }
        ids.push(id);
    }
    let mut seen_rejects = std::collections::BTreeSet::new();
    for id in &ids {
        let run = api
            .wait_state(id, &["Completed", "Failed", "Crashed"])
            .await;
        assert_eq!(run["state"], "Completed", "version 1 decides: {run}");
        let lines = plugin_entries(&run, "approved-registries");
        let shadow: Vec<&&Value> = lines
            .iter()
            .filter(|l| l["detail"]["mode"] == "shadow")
            .collect();
        assert_eq!(shadow.len(), 1, "{run}");
        let line = shadow[0];
        assert_eq!(line["detail"]["version"], 2);
        assert_eq!(line["detail"]["enforced"]["decision"], "admit");
        match line["detail"]["decision"]["decision"].as_str() {
            Some("reject") => {
                assert_eq!(line["detail"]["agrees"], false, "{line}");
                assert!(
                    line["message"].as_str().is_some_and(|m| m
                        .starts_with("shadow admission approved-registries@2: reject")
                        && m.contains("differs from the enforced admit")),
                    "{line}"
                );
                seen_rejects.insert(id.clone());
            }
            Some("admit") => assert_eq!(line["detail"]["agrees"], true, "{line}"),
            other => panic!("{other:?}: {line}"),
        }
        // The shadow mutators: recorded, never applied, never failing.
        let label = plugin_entries(&run, "add-label");
        assert_eq!(label.len(), 1, "{run}");
        assert_eq!(label[0]["detail"]["mode"], "shadow");
        assert_eq!(label[0]["detail"]["patch"][0]["path"], "/env/ADDED");
        assert!(
            label[0]["detail"]["agrees"].is_null(),
            "nothing to compare with"
        );
        let panicked = plugin_entries(&run, "panics");
        assert_eq!(panicked[0]["detail"]["error"]["kind"], "trap", "{run}");
    }
    assert_eq!(
        seen_rejects, stricter_rejects,
        "exactly the runs v2 would reject"
    );
    let (_, log) = api
        .send("GET", &format!("/api/v1/runs/{}/logs", ids[0]), None)
        .await;
    assert_eq!(
        log.as_str().map(str::trim),
        Some("added="),
        "the shadow's patch is not applied"
    );

    // The decisions endpoint and the metrics count the disagreements.
    let decisions = api
        .ok(
            "GET",
            "/api/v1/plugins/approved-registries/decisions?limit=200",
            None,
        )
        .await;
    assert_eq!(
        decisions["shadow_disagreements"].as_u64(),
        Some(stricter_rejects.len() as u64),
        "{}",
        decisions["shadow_outcomes"]
    );
    let text = api.metrics().await;
    let disagreed = format!(
        "weir_plugin_shadow_decisions_total{{plugin=\"approved-registries\",world=\"admission\",decision=\"reject\",agrees=\"no\"}} {}",
        stricter_rejects.len()
    );
    assert!(text.contains(&disagreed), "{disagreed} not in /metrics");

    // Promoted: version 2 with its stricter config now decides.
    let promoted = api
        .ok(
            "POST",
            "/api/v1/pools/local/bindings",
            Some(json!({"plugin": "approved-registries", "mode": "enforce"})),
        )
        .await;
    assert_eq!(
        (
            promoted["pinned_version"].as_u64(),
            promoted["mode"].as_str()
        ),
        (Some(2), Some("enforce"))
    );
    let list = api.ok("GET", "/api/v1/pools/local/bindings", None).await;
    let gates: Vec<&Value> = list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|b| b["plugin"] == "approved-registries")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(gates.len(), 1, "{list}");
    let refused = api
        .run_to_end(json!({"deployment": "job",
                           "job_variables": {"image": "docker.io/library/python:3"}}))
        .await;
    assert_eq!(refused["state"], "Failed", "{refused}");
    // Unbinding one mode leaves the other.
    api.ok(
        "DELETE",
        "/api/v1/pools/local/bindings/add-label?mode=shadow",
        None,
    )
    .await;
    let (status, _) = api
        .send(
            "DELETE",
            "/api/v1/pools/local/bindings/add-label?mode=shadow",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, e) = api
        .send(
            "DELETE",
            "/api/v1/pools/local/bindings/panics?mode=both",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
}
