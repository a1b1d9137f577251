//! The Kubernetes backend against the real control plane of `tests/cluster/`
//! (kube-apiserver, job controller, scheduler, kwok): runs become Jobs, are
//! followed to their true outcome, cancelled, limited and recovered.
//!
//! Gated on `WEIR_K8S_KUBECONFIG` (set by `.ci/run`): without it each test
//! prints SKIPPED and returns; with it and no cluster, they fail.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api as KubeApi, Client};
use serde_json::{Value, json};
use weir_tests::api::{Api, start_kube};
use weir_tests::cluster;
use weir_tests::harness::{
    WeirProcess, component, entered, eventually, eventually_blocking, most_at_once,
};

/// A Weir with a kubernetes pool `k8s` and a deployment `hello` whose Jobs
/// go to a fresh namespace; `None` when the cluster is not configured.
struct Setup {
    api: Api,
    client: Client,
    ns: String,
}

async fn setup(prefix: &str) -> Option<Setup> {
    let kubeconfig = cluster::kubeconfig_path()?;
    let client = cluster::client().await?;
    let ns = cluster::fresh_namespace(&client, prefix).await;
    let api = start_kube(&kubeconfig).await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "k8s", "type": "kubernetes"})),
    )
    .await;
    api.ok(
        "POST",
        "/api/v1/deployments",
        Some(json!({"name": "hello", "pool": "k8s",
                    "job_variables": {"image": "busybox:1.36", "namespace": ns,
                                      "command": "echo hello"}})),
    )
    .await;
    Some(Setup { api, client, ns })
}

/// Waits for the Event Weir records on a Job with `reason`.
async fn event_on(client: &Client, ns: &str, job: &str, reason: &str) -> String {
    let events: KubeApi<k8s_openapi::api::events::v1::Event> =
        KubeApi::namespaced(client.clone(), ns);
    eventually(
        &format!("a {reason} event on Job {job}"),
        Duration::from_secs(30),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                let on_job = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(job);
                (on_job && e.reason.as_deref() == Some(reason)).then(|| e.note.unwrap_or_default())
            })
        },
    )
    .await
}

fn run_id(run: &Value) -> String {
    run["id"].as_str().expect("run id").to_owned()
}

fn job_name(run: &Value) -> String {
    format!("weir-{}", run_id(run))
}

async fn wait_end(api: &Api, id: &str) -> Value {
    eventually(
        &format!("run {id} to end"),
        Duration::from_secs(90),
        || async {
            let run = api.ok("GET", &format!("/api/v1/runs/{id}"), None).await;
            matches!(
                run["state"].as_str(),
                Some("Completed" | "Failed" | "Crashed" | "Cancelled")
            )
            .then_some(run)
        },
    )
    .await
}

async fn create(api: &Api, body: Value) -> Value {
    api.ok("POST", "/api/v1/runs", Some(body)).await
}

#[tokio::test]
async fn a_run_becomes_a_job_and_completes_with_its_pod_visible() {
    let Some(s) = setup("weir-complete").await else {
        return;
    };
    let run = create(&s.api, json!({"deployment": "hello"})).await;
    let done = wait_end(&s.api, &run_id(&run)).await;
    assert_eq!(done["state"], "Completed", "{done}");
    assert!(entered(&done, &["Running"]).is_some(), "{done}");

    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    let job = jobs
        .get(&job_name(&run))
        .await
        .expect("the run's Job exists");
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("weir.dev/run-id"), Some(&run_id(&run)));
    assert_eq!(labels.get("weir.dev/pool").map(String::as_str), Some("k8s"));
    assert_eq!(
        labels.get("weir.dev/queue").map(String::as_str),
        Some("default")
    );
    assert_eq!(
        labels.get("weir.dev/deployment").map(String::as_str),
        Some("hello")
    );
    assert_eq!(
        labels.get("weir.dev/attempt").map(String::as_str),
        Some("1")
    );
    let container = &job
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0];
    assert_eq!(container.image.as_deref(), Some("busybox:1.36"));
    let env: BTreeMap<String, String> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(env.get("WEIR_RUN_ID"), Some(&run_id(&run)));
    assert!(
        env.get("WEIR_API_URL")
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{env:?}"
    );
    assert_eq!(job.status.as_ref().and_then(|s| s.succeeded), Some(1));
    let note = event_on(&s.client, &s.ns, &job_name(&run), "Submitted").await;
    assert_eq!(note, format!("Weir run {} attempt 1", run_id(&run)));

    let pods: KubeApi<Pod> = KubeApi::namespaced(s.client.clone(), &s.ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("weir.dev/run-id={}", run_id(&run))))
        .await
        .expect("list pods");
    assert_eq!(listed.items.len(), 1, "one pod for one attempt");
    assert_eq!(
        listed.items[0]
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
}

#[tokio::test]
async fn a_failing_pod_fails_the_run_with_the_reason_and_exit_code() {
    let Some(s) = setup("weir-fail").await else {
        return;
    };
    let run = create(
        &s.api,
        json!({"deployment": "hello", "job_variables": {
            "annotations": {"weir.dev/test-outcome": "fail"}, "backoff_limit": 0}}),
    )
    .await;
    let done = wait_end(&s.api, &run_id(&run)).await;
    assert_eq!(done["state"], "Failed", "{done}");
    assert_eq!(done["exit_code"], 1, "{done}");
    let msg = done["state_message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("BackoffLimitExceeded: ") && msg.contains("exited with 1"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unschedulable_pod_crashes_after_the_pod_start_timeout_and_not_before() {
    let Some(s) = setup("weir-unsched").await else {
        return;
    };
    let run = create(
        &s.api,
        json!({"deployment": "hello", "job_variables": {
            "node_selector": {"weir.dev/no-such-node": "true"},
            "pod_start_timeout_seconds": 5}}),
    )
    .await;
    let done = wait_end(&s.api, &run_id(&run)).await;
    assert_eq!(done["state"], "Crashed", "{done}");
    let msg = done["state_message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("within the pod start timeout of 5 s") && msg.contains("cannot be scheduled"),
        "{msg}"
    );
    let pending = entered(&done, &["Pending"]).expect("released");
    let crashed = entered(&done, &["Crashed"]).expect("crashed");
    assert!(
        crashed - pending >= chrono::Duration::seconds(5),
        "crashed {} after release, before the 5 s timeout",
        crashed - pending
    );
    assert!(entered(&done, &["Running"]).is_none(), "{done}");
    // The Job that could not start is removed, so it cannot start later.
    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    let name = job_name(&run);
    eventually(
        "the unstartable Job to be deleted",
        Duration::from_secs(30),
        || async { matches!(jobs.get_opt(&name).await, Ok(None)).then_some(()) },
    )
    .await;
    let note = event_on(&s.client, &s.ns, &name, "PodStartTimeout").await;
    assert!(note.contains("cannot be scheduled"), "{note}");
}

#[tokio::test]
async fn cancel_deletes_the_job_and_the_run_is_cancelled_when_it_is_gone() {
    let Some(s) = setup("weir-cancel").await else {
        return;
    };
    let run = create(
        &s.api,
        json!({"deployment": "hello", "job_variables": {
            "annotations": {"weir.dev/test-outcome": "hang"}}}),
    )
    .await;
    let id = run_id(&run);
    s.api.wait_state(&id, &["Running"]).await;
    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    assert!(jobs.get_opt(&job_name(&run)).await.expect("get").is_some());
    s.api
        .ok("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    let done = wait_end(&s.api, &id).await;
    assert_eq!(done["state"], "Cancelled", "{done}");
    assert!(
        jobs.get_opt(&job_name(&run)).await.expect("get").is_none(),
        "the Job is gone once the run is Cancelled"
    );
    event_on(&s.client, &s.ns, &job_name(&run), "Cancelled").await;
}

#[tokio::test]
async fn a_job_deleted_by_someone_else_crashes_the_run_with_that_reason() {
    let Some(s) = setup("weir-deleted").await else {
        return;
    };
    let run = create(
        &s.api,
        json!({"deployment": "hello", "job_variables": {
            "annotations": {"weir.dev/test-outcome": "hang"}}}),
    )
    .await;
    let id = run_id(&run);
    s.api.wait_state(&id, &["Running"]).await;
    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    jobs.delete(&job_name(&run), &Default::default())
        .await
        .expect("someone else deletes the Job");
    let done = wait_end(&s.api, &id).await;
    assert_eq!(done["state"], "Crashed", "{done}");
    assert_eq!(
        done["state_message"],
        format!(
            "the Job {}/{} was deleted before it finished (not by Weir)",
            s.ns,
            job_name(&run)
        )
    );
}

#[tokio::test]
async fn a_server_side_validation_error_reaches_the_user_verbatim() {
    let Some(s) = setup("weir-invalid").await else {
        return;
    };
    let run = create(
        &s.api,
        json!({"deployment": "hello", "job_variables": {"image": ""}}),
    )
    .await;
    let done = wait_end(&s.api, &run_id(&run)).await;
    assert_eq!(done["state"], "Failed", "{done}");
    let msg = done["state_message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "Job.batch \"{}\" is invalid: spec.template.spec.containers[0].image: Required value",
            job_name(&run)
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn pool_and_tag_limits_hold_with_real_jobs() {
    let Some(s) = setup("weir-limits").await else {
        return;
    };
    s.api
        .ok(
            "PATCH",
            "/api/v1/pools/k8s",
            Some(json!({"concurrency_limit": 2})),
        )
        .await;
    s.api
        .ok(
            "POST",
            "/api/v1/limits",
            Some(json!({"tag": "heavy", "limit": 1})),
        )
        .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let tags = if i % 2 == 0 {
            json!(["heavy"])
        } else {
            json!([])
        };
        let run = create(
            &s.api,
            json!({"deployment": "hello", "tags": tags, "job_variables": {
                "annotations": {"weir.dev/test-delay-ms": "1500"}}}),
        )
        .await;
        ids.push(run_id(&run));
    }
    let mut spans = Vec::new();
    for id in &ids {
        let done = wait_end(&s.api, id).await;
        assert_eq!(done["state"], "Completed", "{done}");
        let heavy = done["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("heavy")));
        let start = entered(&done, &["Pending"]).expect("released");
        let end = entered(&done, &["Completed"]).expect("completed");
        spans.push((start, end, heavy));
    }
    let all: Vec<_> = spans.iter().map(|(s, e, _)| (*s, *e)).collect();
    let heavy: Vec<_> = spans
        .iter()
        .filter(|(_, _, heavy)| *heavy)
        .map(|(s, e, _)| (*s, *e))
        .collect();
    assert_eq!(most_at_once(&all), 2, "pool limit 2: {spans:?}");
    assert_eq!(most_at_once(&heavy), 1, "tag limit 1: {spans:?}");
}

#[tokio::test]
async fn a_raw_job_manifest_runs_through_the_pool() {
    let Some(s) = setup("weir-raw").await else {
        return;
    };
    let manifest = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"namespace": s.ns, "labels": {"team": "data"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}]}}}
    });
    let run = create(&s.api, json!({"pool": "k8s", "job": manifest})).await;
    let done = wait_end(&s.api, &run_id(&run)).await;
    assert_eq!(done["state"], "Completed", "{done}");
    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    let job = jobs.get(&job_name(&run)).await.expect("job");
    let labels = job.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("data"));
    assert_eq!(labels.get("weir.dev/run-id"), Some(&run_id(&run)));
}

#[tokio::test]
async fn prefects_default_template_renders_and_the_api_server_accepts_it() {
    let Some(s) = setup("weir-prefect").await else {
        return;
    };
    let template: Value = serde_json::from_str(include_str!(
        "../../host/src/template/testdata/prefect-kubernetes.json"
    ))
    .expect("prefect template");
    s.api
        .ok(
            "POST",
            "/api/v1/pools",
            Some(json!({"name": "prefect", "type": "kubernetes", "base_job_template": template})),
        )
        .await;
    s.api
        .ok(
            "POST",
            "/api/v1/deployments",
            Some(json!({"name": "flow", "pool": "prefect", "job_variables": {
                "image": "prefecthq/prefect:3-latest", "namespace": s.ns,
                "env": {"PREFECT_LOGGING_LEVEL": "DEBUG"}}})),
        )
        .await;
    let run = create(
        &s.api,
        json!({"deployment": "flow", "job_variables": {
            "cpu_request": "250m", "memory_limit": "1Gi",
            "labels": {"team": "data"}, "backoff_limit": 0}}),
    )
    .await;
    let done = wait_end(&s.api, &run_id(&run)).await;
    assert_eq!(done["state"], "Completed", "{done}");
    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    let job = jobs.get(&job_name(&run)).await.expect("job");
    let spec = job.spec.expect("spec");
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.expect("pod spec");
    let c = &pod.containers[0];
    assert_eq!(c.name, "prefect-job");
    assert_eq!(c.image.as_deref(), Some("prefecthq/prefect:3-latest"));
    let env = c.env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "PREFECT_LOGGING_LEVEL" && e.value.as_deref() == Some("DEBUG")),
        "{env:?}"
    );
    let resources = c.resources.clone().expect("resources");
    assert_eq!(
        resources
            .requests
            .and_then(|r| r.get("cpu").map(|q| q.0.clone())),
        Some("250m".to_owned())
    );
    assert_eq!(
        resources
            .limits
            .and_then(|r| r.get("memory").map(|q| q.0.clone())),
        Some("1Gi".to_owned())
    );
    assert_eq!(
        job.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("data")
    );
}

#[tokio::test]
async fn a_mutator_plugins_node_selector_and_resources_are_on_the_created_job() {
    let Some(s) = setup("weir-mutate").await else {
        return;
    };
    for (name, file) in [
        ("gpu", "gpu-node-selector"),
        ("resources", "team-resources"),
    ] {
        let (status, body) = s.api.upload(name, &component(file)).await;
        assert!(status.is_success(), "{name}: {status} {body}");
    }
    s.api
        .ok(
            "POST",
            "/api/v1/pools/k8s/bindings",
            Some(json!({"plugin": "gpu", "config": {
                "node_selector": {"nvidia.com/gpu.present": "true"}}})),
        )
        .await;
    s.api
        .ok(
            "POST",
            "/api/v1/pools/k8s/bindings",
            Some(json!({"plugin": "resources", "config": {"teams": {
                "data": {"default": {"cpu": "500m", "memory": "512Mi"}}}}})),
        )
        .await;
    let run = create(
        &s.api,
        json!({"deployment": "hello", "tags": ["gpu"],
               "job_variables": {"labels": {"team": "data"}}}),
    )
    .await;
    let id = run_id(&run);
    let jobs: KubeApi<Job> = KubeApi::namespaced(s.client.clone(), &s.ns);
    let name = job_name(&run);
    let job = eventually(
        "the mutated Job to be created",
        Duration::from_secs(30),
        || async { jobs.get_opt(&name).await.ok().flatten() },
    )
    .await;
    let pod = job.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(
        pod.node_selector
            .unwrap_or_default()
            .get("nvidia.com/gpu.present")
            .map(String::as_str),
        Some("true")
    );
    let resources = pod.containers[0].resources.clone().expect("resources");
    let limits = resources.limits.unwrap_or_default();
    assert_eq!(
        limits.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("1")
    );
    assert_eq!(limits.get("cpu").map(|q| q.0.as_str()), Some("500m"));
    let requests = resources.requests.unwrap_or_default();
    assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("512Mi"));
    // No GPU node here: stop it rather than wait for the start timeout.
    s.api
        .ok("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    let done = wait_end(&s.api, &id).await;
    assert_eq!(done["state"], "Cancelled", "{done}");
}

/// Weir killed while runs are Pending and Running, then restarted: every
/// run reaches its true outcome and no Job is created twice.
#[test]
fn a_restart_resumes_in_flight_jobs_without_creating_any_twice() {
    let Some(kubeconfig) = cluster::kubeconfig_path() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(cluster::client()).expect("client");
    let ns = rt.block_on(cluster::fresh_namespace(&client, "weir-restart"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kubernetes]
kubeconfig = "{}"

[[pools]]
name = "k8s"
type = "kubernetes"
concurrency_limit = 4

[[deployments]]
name = "slow"
pool = "k8s"
job_variables = {{ image = "busybox:1.36", namespace = "{ns}", backoff_limit = 0, annotations = {{ "weir.dev/test-delay-ms" = "3000" }} }}
"#,
            kubeconfig.display()
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let mut weir = WeirProcess::start(&data, Some(&config));
    let mut ids = Vec::new();
    for _ in 0..8 {
        let run = weir.cli_json(&["run", "create", "slow"]);
        ids.push(run_id(&run));
    }
    // Kill it once some runs are Running (the rest are Pending or queued
    // behind the pool limit of 4).
    eventually_blocking("a run to be Running", Duration::from_secs(30), || {
        let runs = weir.cli_json(&["run", "ls", "--state", "Running"]);
        (runs["items"].as_array().is_some_and(|a| !a.is_empty())).then_some(())
    });
    let before: BTreeMap<String, String> = ids
        .iter()
        .map(|id| {
            let r = weir.cli_json(&["run", "inspect", id]);
            (
                id.clone(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    weir.kill();
    assert!(
        before.values().any(|s| s == "Running"),
        "killed with a run Running: {before:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    weir.restart();

    let jobs: KubeApi<Job> = KubeApi::namespaced(client.clone(), &ns);
    for id in &ids {
        let done =
            eventually_blocking(&format!("run {id} to end"), Duration::from_secs(90), || {
                let r = weir.cli_json(&["run", "inspect", id]);
                matches!(
                    r["state"].as_str(),
                    Some("Completed" | "Failed" | "Crashed" | "Cancelled")
                )
                .then_some(r)
            });
        assert_eq!(
            done["state"], "Completed",
            "{id} was {} at the kill: {done}",
            before[id]
        );
        let running = done["history"]
            .as_array()
            .map(|h| h.iter().filter(|e| e["state"] == "Running").count());
        assert_eq!(running, Some(1), "{done}");
        // One Job, one pod: nothing was submitted twice.
        let listed = rt
            .block_on(jobs.list(&ListParams::default().labels(&format!("weir.dev/run-id={id}"))))
            .expect("list jobs");
        assert_eq!(listed.items.len(), 1, "{id}");
        let job = &listed.items[0];
        assert_eq!(
            job.status.as_ref().and_then(|s| s.succeeded),
            Some(1),
            "{id}"
        );
        assert_eq!(job.status.as_ref().and_then(|s| s.failed), None, "{id}");
    }
}

/// A restart resolves each in-flight run by looking, from the submission
/// intent recorded before the create: a Pending run whose Job was never
/// created gets it now; a Pending run whose Job exists adopts it (not a
/// second Job); a Running run whose Job is gone is Crashed with "cannot be
/// known". The store is prepared directly, as a host killed at those
/// instants would have left it.
#[tokio::test]
async fn a_restart_resolves_recorded_submissions_by_looking_at_the_cluster() {
    use weir::BaseJobTemplate;
    use weir::{NewRun, SqlStore, Store, Transition};
    use weir::{Pool, PoolType, RunState};

    let Some(kubeconfig) = cluster::kubeconfig_path() else {
        return;
    };
    let client = cluster::client().await.expect("client");
    let ns = cluster::fresh_namespace(&client, "weir-intent").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let job_config = |id: &str| {
        json!({"namespace": ns, "job_manifest": {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": format!("weir-{id}"), "namespace": ns,
                         "labels": {"weir.dev/run-id": id, "weir.dev/pool": "k8s"}},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": {"weir.dev/run-id": id, "weir.dev/pool": "k8s"}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "main", "image": "busybox:1.36"}]}}}}})
    };
    let mut ids = Vec::new();
    {
        let store = SqlStore::open_sqlite(&dir.path().join("weir.db"))
            .await
            .expect("open store");
        let now = chrono::Utc::now();
        store
            .create_pool(&Pool {
                name: "k8s".into(),
                pool_type: PoolType::Kubernetes,
                base_job_template: BaseJobTemplate::default_for(
                    PoolType::Kubernetes.template_kind(),
                ),
                cluster: None,
                concurrency_limit: None,
                paused: false,
                description: String::new(),
                created_at: now,
                updated_at: now,
            })
            .await
            .expect("pool");
        for _ in 0..3 {
            let id = uuid::Uuid::now_v7();
            store
                .insert_run(NewRun {
                    id,
                    pool: "k8s".into(),
                    queue: "default".into(),
                    deployment: None,
                    job: Some(job_config(&id.to_string())["job_manifest"].clone()),
                    tags: Vec::new(),
                    parameters: Default::default(),
                    job_variables: Default::default(),
                    parent_run_id: None,
                    idempotency_key: None,
                    scheduled_at: now,
                    retries: Default::default(),
                    message: "created".into(),
                    cause: "test".into(),
                    history: Vec::new(),
                    needs_admission: false,
                    labels: Default::default(),
                })
                .await
                .expect("run");
            ids.push(id);
        }
        let released = store
            .release_ready(chrono::Utc::now(), 10)
            .await
            .expect("release");
        assert_eq!(released.len(), 3);
        for id in &ids {
            let config = job_config(&id.to_string());
            store
                .record_submission(*id, 1, &json!({"job": config, "cluster": null}))
                .await
                .expect("intent");
        }
        // ids[1]: the create happened before the host died.
        let jobs: KubeApi<Job> = KubeApi::namespaced(client.clone(), &ns);
        let mut manifest = job_config(&ids[1].to_string())["job_manifest"].clone();
        manifest["metadata"]["labels"]["weir.dev/attempt"] = json!("1");
        manifest["spec"]["template"]["metadata"]["labels"]["weir.dev/attempt"] = json!("1");
        let created = jobs
            .create(
                &Default::default(),
                &serde_json::from_value(manifest).expect("job"),
            )
            .await
            .expect("create the Job the dead host created");
        // ids[2]: seen Running, then its Job vanished while the host was down.
        store
            .transition(
                ids[2],
                Transition::new(RunState::Running, "started", "backend"),
            )
            .await
            .expect("running");
        // The host dies here.
        drop(store);

        let api = weir_tests::api::start_with(dir, |o| {
            o.kubernetes.default.kubeconfig = Some(kubeconfig.clone());
        })
        .await;
        let never_created = wait_end(&api, &ids[0].to_string()).await;
        assert_eq!(never_created["state"], "Completed", "{never_created}");
        let adopted = wait_end(&api, &ids[1].to_string()).await;
        assert_eq!(adopted["state"], "Completed", "{adopted}");
        let job = jobs
            .get(&format!("weir-{}", ids[1]))
            .await
            .expect("adopted job");
        assert_eq!(
            job.metadata.uid, created.metadata.uid,
            "the Job the dead host created was followed, not replaced"
        );
        let lost = wait_end(&api, &ids[2].to_string()).await;
        assert_eq!(lost["state"], "Crashed", "{lost}");
        assert!(
            lost["state_message"]
                .as_str()
                .unwrap_or_default()
                .contains("the attempt's outcome cannot be known"),
            "{lost}"
        );
        assert!(
            jobs.get_opt(&format!("weir-{}", ids[2]))
                .await
                .expect("get")
                .is_none(),
            "no Job was created for the run whose outcome is unknown"
        );
        for id in &ids {
            let listed = jobs
                .list(&ListParams::default().labels(&format!("weir.dev/run-id={id}")))
                .await
                .expect("list");
            assert!(listed.items.len() <= 1, "{id}: {listed:?}");
        }
        let pool = api.ok("GET", "/api/v1/pools/k8s", None).await;
        assert_eq!(pool["active_runs"], 0, "slots came back: {pool}");
        api.server.shutdown();
    }
}
