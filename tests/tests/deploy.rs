//! `deploy/` (Weir's in-cluster manifests) against the real API server of
//! `tests/cluster/`: every object passes a strict server-side dry run, and the
//! Role lets the `weir` ServiceAccount do exactly what the Kubernetes backend
//! needs and nothing around it. Two checks need no cluster: the kustomization
//! lists every manifest, and the ConfigMap holds a config Weir accepts.
//!
//! Namespaced objects are sent to a fresh namespace (their `metadata.namespace`
//! and the RoleBinding's subject namespace overridden) rather than to `weir`:
//! tests share one long-lived cluster and run in parallel, and a real `weir`
//! namespace would be state outside any test that collides with a real
//! `kubectl apply -k deploy/` and lingers (namespace deletion is asynchronous).
//! Nothing in the manifests depends on the namespace's name except the
//! RoleBinding's subject, which is overridden with it; the Namespace object
//! itself is cluster-scoped and dry-run as it is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference, Pod, Secret};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
    ValidationDirective, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use weir_tests::cluster;
use weir_tests::harness::eventually;

const FIELD_MANAGER: &str = "weir-tests";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The files `deploy/kustomization.yaml` lists under `resources`, in order.
fn kustomization_resources() -> Vec<String> {
    let path = deploy_dir().join("kustomization.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    assert_eq!(doc["kind"], "Kustomization", "{}", path.display());
    doc["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no resources list", path.display()))
        .iter()
        .map(|r| {
            r.as_str()
                .unwrap_or_else(|| panic!("{}: resource {r} is not a string", path.display()))
                .to_owned()
        })
        .collect()
}

/// Every object in the files the kustomization lists (multi-document files
/// split, empty documents skipped), with the file it came from.
fn manifests() -> Vec<(String, DynamicObject)> {
    let mut all = Vec::new();
    for file in kustomization_resources() {
        let path = deploy_dir().join(&file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let object: DynamicObject = serde_json::from_value(doc)
                .unwrap_or_else(|e| panic!("{file}: not a Kubernetes object: {e}"));
            assert!(
                object.types.is_some(),
                "{file}: an object without apiVersion/kind"
            );
            all.push((file.clone(), object));
        }
    }
    all
}

fn kind_of(object: &DynamicObject) -> &str {
    object.types.as_ref().map_or("", |t| t.kind.as_str())
}

/// The one object of `kind` in deploy/.
fn manifest(kind: &str) -> DynamicObject {
    let mut found: Vec<_> = manifests()
        .into_iter()
        .filter(|(_, o)| kind_of(o) == kind)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(found.len(), 1, "deploy/ should hold exactly one {kind}");
    found.remove(0)
}

/// `object` moved into `namespace`: `metadata.namespace`, and a RoleBinding's
/// ServiceAccount subjects.
fn into_namespace(mut object: DynamicObject, namespace: &str) -> DynamicObject {
    object.metadata.namespace = Some(namespace.to_owned());
    if kind_of(&object) == "RoleBinding"
        && let Some(subjects) = object.data["subjects"].as_array_mut()
    {
        for subject in subjects {
            if subject["kind"] == "ServiceAccount" {
                subject["namespace"] = json!(namespace);
            }
        }
    }
    object
}

/// Server-side applies `object` (strict field validation; a dry run when
/// `dry_run`), namespaced ones into `namespace`. Returns the API's answer.
async fn apply(
    client: &Client,
    object: &DynamicObject,
    namespace: &str,
    dry_run: bool,
) -> kube::Result<DynamicObject> {
    let types = object
        .types
        .as_ref()
        .expect("manifests() checked apiVersion/kind");
    let gvk = GroupVersionKind::try_from(types)
        .unwrap_or_else(|e| panic!("bad apiVersion {}: {e}", types.api_version));
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the API server does not serve {gvk:?}: {e}"));
    let name = object.name_any();
    let (api, object) = match caps.scope {
        Scope::Namespaced => (
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource),
            into_namespace(object.clone(), namespace),
        ),
        Scope::Cluster => (
            Api::<DynamicObject>::all_with(client.clone(), &resource),
            object.clone(),
        ),
    };
    let mut params = PatchParams::apply(FIELD_MANAGER).validation(ValidationDirective::Strict);
    if dry_run {
        params = params.dry_run();
    }
    api.patch(&name, &params, &Patch::Apply(&object)).await
}

#[test]
fn kustomization_lists_every_manifest_and_each_kind_once() {
    let listed: BTreeSet<String> = kustomization_resources().into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .expect("read deploy/")
        .map(|e| {
            e.expect("a deploy/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "kustomization.yaml resources vs deploy/*.yaml"
    );

    let mut kinds: Vec<String> = manifests()
        .iter()
        .map(|(_, o)| kind_of(o).to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for (file, object) in manifests() {
        if kind_of(&object) != "Namespace" {
            assert_eq!(
                object.metadata.namespace.as_deref(),
                Some("weir"),
                "{file}: namespaced objects live in namespace weir"
            );
        }
    }
}

#[test]
fn the_role_grants_exactly_the_documented_rules() {
    // deploy/README.md says what each rule is for; a new one needs a reason
    // there and here. The cluster test below checks what they allow.
    let role = manifest("Role");
    assert_eq!(
        role.data["rules"],
        json!([
            {"apiGroups": ["batch"], "resources": ["jobs"],
             "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ])
    );
    let binding = manifest("RoleBinding");
    assert_eq!(
        binding.data["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.name_any()})
    );
    assert_eq!(
        binding.data["subjects"],
        json!([{"kind": "ServiceAccount", "name": "weir", "namespace": "weir"}])
    );
    let deployment = manifest("Deployment");
    assert_eq!(
        deployment.data["spec"]["template"]["spec"]["serviceAccountName"],
        json!(manifest("ServiceAccount").name_any())
    );
}

#[test]
fn configmap_holds_a_config_weir_accepts_with_the_default_template_in_namespace_weir() {
    let config_map: ConfigMap = serde_json::from_value(
        serde_json::to_value(manifest("ConfigMap")).expect("a DynamicObject serialises"),
    )
    .expect("deploy/configmap.yaml is a ConfigMap");
    let data = config_map.data.expect("the ConfigMap has data");
    // The Deployment mounts the ConfigMap as /etc/weir: same file names here.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in &data {
        std::fs::write(dir.path().join(name), text).expect("write a ConfigMap key");
    }
    let config = weir::Config::load(&dir.path().join("weir.toml"))
        .unwrap_or_else(|e| panic!("deploy/configmap.yaml weir.toml: {e}"));
    assert_eq!(
        config.server.listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:4680")
    );
    assert_eq!(
        config.server.data_dir.as_deref(),
        Some(Path::new("/var/lib/weir"))
    );
    let [pool] = config.pools.as_slice() else {
        panic!("weir.toml should declare exactly one pool");
    };
    assert_eq!(pool.name, "default-k8s");
    assert_eq!(pool.pool_type.as_str(), "kubernetes");
    let file = pool
        .base_job_template_file
        .as_ref()
        .expect("default-k8s names its template file");
    let text = data
        .get(&file.to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("the ConfigMap has no key {}", file.display()));
    let template: Value = serde_json::from_str(text).expect("the template is JSON");
    weir::BaseJobTemplate::from_value(template.clone())
        .unwrap_or_else(|e| panic!("the default-k8s template is refused: {e}"));

    // Weir's own default (what `weir pool get-default-base-job-template
    // --type kubernetes` prints) with only the namespace's default changed.
    let mut expected = serde_json::to_value(weir::BaseJobTemplate::default_for(
        weir::TemplateKind::Kubernetes,
    ))
    .expect("the default template serialises");
    expected["variables"]["properties"]["namespace"]["default"] = json!("weir");
    assert_eq!(template, expected, "deploy/configmap.yaml template drifted");

    // The Deployment's volume and args point at what the ConfigMap holds.
    let deployment = manifest("Deployment");
    let pod = &deployment.data["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["args"],
        json!(["serve", "--config", "/etc/weir/weir.toml"])
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        json!(config_map.metadata.name)
    );
}

#[tokio::test]
async fn every_manifest_passes_a_strict_server_side_dry_run() {
    let Some(client) = cluster::client().await else {
        return;
    };
    let ns = cluster::fresh_namespace(&client, "deploy-dry-run").await;
    let objects = manifests();
    for (file, object) in &objects {
        let kind = kind_of(object);
        let answer = apply(&client, object, &ns, true)
            .await
            .unwrap_or_else(|e| panic!("{file}: {kind} {} refused: {e}", object.name_any()));
        assert_eq!(answer.name_any(), object.name_any(), "{file}");
        assert_eq!(kind_of(&answer), kind, "{file}");
    }

    // A dry run stores nothing.
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &discovery::pinned_kind(&client, &GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .await
            .expect("apps/v1 Deployment is served")
            .0,
    );
    let stored = deployments
        .list(&ListParams::default())
        .await
        .expect("list deployments");
    assert!(stored.items.is_empty(), "the dry run created a Deployment");

    // And it is strict: a misspelt field is refused, not dropped.
    let mut typo = manifest("Deployment");
    let container = &mut typo.data["spec"]["template"]["spec"]["containers"][0];
    let probe = container
        .as_object_mut()
        .expect("a container object")
        .remove("readinessProbe")
        .expect("the container has a readinessProbe");
    container["readinesProbe"] = probe;
    let refused = apply(&client, &typo, &ns, true).await;
    let message = format!("{refused:?}");
    // Server-side apply turns the manifest into a typed object before field
    // validation runs, so kube-apiserver 1.35 answers 500 "field not declared
    // in schema" rather than strict decoding's 400; either is a refusal that
    // names the field, which is the point.
    let code = cluster::api_error_code("dry run of a misspelt Deployment", refused);
    assert!(matches!(code, 400 | 500), "HTTP {code}: {message}");
    assert!(message.contains("readinesProbe"), "{message}");

    cluster::delete_namespace(&client, &ns).await;
}

/// A Job for the RBAC test; kwok completes its pod, no container runs.
fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "job", "image": "weir.invalid/rbac:0", "command": ["true"]}]
            }}
        }
    }))
    .expect("a valid Job")
}

#[tokio::test]
async fn the_weir_role_allows_what_the_backend_needs_and_refuses_the_rest() {
    let Some(admin) = cluster::client().await else {
        return;
    };
    let ns = cluster::fresh_namespace(&admin, "deploy-rbac").await;
    let other = cluster::fresh_namespace(&admin, "deploy-rbac-other").await;
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        apply(&admin, &manifest(kind), &ns, false)
            .await
            .unwrap_or_else(|e| panic!("creating the {kind} in {ns}: {e}"));
    }
    // Something to be refused reading.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "not-for-weir"},
        "stringData": {"password": "hunter2"}
    }))
    .expect("a valid Secret");
    Api::<Secret>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("admin creates a secret");

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = cluster::service_account_kubeconfig(&admin, &ns, "weir", dir.path()).await;
    let weir = cluster::client_from(&kubeconfig).await;

    // The kubeconfig really is the ServiceAccount.
    let review = Api::<SelfSubjectReview>::all(weir.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("any authenticated user may review itself");
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:weir").as_str())
    );

    // Allowed: Jobs in its namespace. The first call may race the RBAC
    // authorizer's cache of the new RoleBinding, hence the retry on 403 only.
    let jobs: Api<Job> = Api::namespaced(weir.clone(), &ns);
    eventually(
        "the weir ServiceAccount may create a Job",
        Duration::from_secs(15),
        || async {
            match jobs.create(&PostParams::default(), &job("rbac-job")).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(s)) if s.code == 403 => None,
                Err(e) => panic!("create Job as weir: {e}"),
            }
        },
    )
    .await;
    let got = jobs.get("rbac-job").await.expect("weir gets its Job");
    assert_eq!(got.name_any(), "rbac-job");
    let listed = jobs
        .list(&ListParams::default())
        .await
        .expect("weir lists Jobs");
    assert_eq!(
        listed.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        ["rbac-job"]
    );
    let mut watch = jobs
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .expect("weir watches Jobs")
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stream has an event")
        .expect("the watch event is not an error");
    match first {
        WatchEvent::Added(j) => assert_eq!(j.name_any(), "rbac-job"),
        other => panic!("expected the Job as the watch's first event, got {other:?}"),
    }

    // Allowed: its Job's pods (the job controller creates one) and their logs.
    let pods: Api<Pod> = Api::namespaced(weir.clone(), &ns);
    let selector = ListParams::default().labels("batch.kubernetes.io/job-name=rbac-job");
    let pod = eventually(
        "the Job's pod, listed by weir",
        Duration::from_secs(30),
        || async {
            let list = pods.list(&selector).await.expect("weir lists pods");
            list.items.into_iter().next()
        },
    )
    .await;
    pods.get(&pod.name_any()).await.expect("weir gets a pod");
    let mut pod_watch = pods
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .expect("weir watches pods")
        .boxed();
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_secs(10), pod_watch.next()).await,
            Ok(Some(Ok(WatchEvent::Added(_))))
        ),
        "the pod watch's first event is the pod"
    );
    // kwok runs no kubelet, so the log request itself fails past authorization
    // (the API server cannot reach a kubelet); only a 403 would be RBAC's.
    if let Err(kube::Error::Api(s)) = pods.logs(&pod.name_any(), &LogParams::default()).await {
        assert_ne!(s.code, 403, "weir may read pod logs: {}", s.message);
    }

    // Allowed: Events about its Jobs, in both Event APIs.
    let reference = ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: Some("rbac-job".to_owned()),
        namespace: Some(ns.clone()),
        uid: got.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    let core_event: Event = serde_json::from_value(json!({
        "metadata": {"name": "rbac-job.core"},
        "reason": "Test", "message": "core/v1 event from weir", "type": "Normal",
    }))
    .expect("a valid Event");
    Api::<Event>::namespaced(weir.clone(), &ns)
        .create(
            &PostParams::default(),
            &Event {
                involved_object: reference.clone(),
                ..core_event
            },
        )
        .await
        .expect("weir creates a core/v1 Event");
    let events_api = discovery::pinned_kind(
        &weir,
        &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
    )
    .await
    .expect("events.k8s.io/v1 is served")
    .0;
    let events: Api<DynamicObject> = Api::namespaced_with(weir.clone(), &ns, &events_api);
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let event: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "rbac-job.events"},
        "eventTime": now, "reportingController": "weir.dev/weir", "reportingInstance": "weir-test",
        "action": "Test", "reason": "Test", "type": "Normal", "note": "events.k8s.io/v1 event from weir",
        "regarding": reference,
    }))
    .expect("a valid events.k8s.io Event");
    events
        .create(&PostParams::default(), &event)
        .await
        .expect("weir creates an events.k8s.io/v1 Event");
    events
        .patch(
            "rbac-job.events",
            &PatchParams::default(),
            &Patch::Merge(json!({"series": {"count": 2, "lastObservedTime": now}})),
        )
        .await
        .expect("weir patches an events.k8s.io/v1 Event into a series");

    // Refused, each with 403 Forbidden.
    let code = |what: &str, r| cluster::api_error_code(what, r);
    assert_eq!(
        code(
            "create a Job in another namespace",
            Api::<Job>::namespaced(weir.clone(), &other)
                .create(&PostParams::default(), &job("elsewhere"))
                .await
                .map(|_| ())
        ),
        403
    );
    assert_eq!(
        code(
            "list Jobs in all namespaces",
            Api::<Job>::all(weir.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ())
        ),
        403
    );
    let secrets: Api<Secret> = Api::namespaced(weir.clone(), &ns);
    assert_eq!(
        code(
            "get a secret",
            secrets.get("not-for-weir").await.map(|_| ())
        ),
        403
    );
    assert_eq!(
        code(
            "list secrets",
            secrets.list(&ListParams::default()).await.map(|_| ())
        ),
        403
    );
    assert_eq!(
        code(
            "create a bare pod (bypassing Jobs)",
            pods.create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "bare"},
                    "spec": {"containers": [{"name": "c", "image": "weir.invalid/bare:0"}]}
                }))
                .expect("a valid Pod")
            )
            .await
            .map(|_| ())
        ),
        403
    );
    assert_eq!(
        code(
            "change a Job (no update or patch)",
            jobs.patch(
                "rbac-job",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"changed": "yes"}}}))
            )
            .await
            .map(|_| ())
        ),
        403
    );
    assert_eq!(
        code(
            "delete a pod",
            pods.delete(&pod.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        403
    );

    // Allowed: deleting its Job (what cancel does), pods with it.
    jobs.delete("rbac-job", &DeleteParams::background())
        .await
        .expect("weir deletes its Job");
    eventually("the Job gone", Duration::from_secs(30), || async {
        match jobs.get_opt("rbac-job").await.expect("weir gets Jobs") {
            None => Some(()),
            Some(_) => None,
        }
    })
    .await;

    cluster::delete_namespace(&admin, &ns).await;
    cluster::delete_namespace(&admin, &other).await;
}

/// Weir itself, holding only the `weir` ServiceAccount's token and the Role
/// from `deploy/`: it submits, watches and cancels Jobs in its namespace,
/// and a run whose Job is meant for another namespace fails with the API
/// server's refusal.
#[tokio::test]
async fn weir_with_the_service_account_token_runs_and_cancels_jobs_in_its_namespace_only() {
    let Some(admin) = cluster::client().await else {
        return;
    };
    let ns = cluster::fresh_namespace(&admin, "deploy-weir").await;
    let other = cluster::fresh_namespace(&admin, "deploy-weir-other").await;
    for kind in ["ServiceAccount", "Role", "RoleBinding"] {
        apply(&admin, &manifest(kind), &ns, false)
            .await
            .unwrap_or_else(|e| panic!("creating the {kind} in {ns}: {e}"));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = cluster::service_account_kubeconfig(&admin, &ns, "weir", dir.path()).await;
    let api = weir_tests::api::start_kube(&kubeconfig).await;
    api.ok(
        "POST",
        "/api/v1/pools",
        Some(json!({"name": "k8s", "type": "kubernetes"})),
    )
    .await;
    for (name, namespace, outcome) in [
        ("ours", &ns, ""),
        ("hang", &ns, "hang"),
        ("theirs", &other, ""),
    ] {
        let mut vars = json!({"image": "busybox:1.36", "namespace": namespace});
        if !outcome.is_empty() {
            vars["annotations"] = json!({"weir.dev/test-outcome": outcome});
        }
        api.ok(
            "POST",
            "/api/v1/deployments",
            Some(json!({"name": name, "pool": "k8s", "job_variables": vars})),
        )
        .await;
    }
    // The RoleBinding may take a moment to reach the authorizer's cache:
    // the first run is retried while it fails with 403 only.
    let done = eventually(
        "a run as the weir ServiceAccount",
        Duration::from_secs(60),
        || async {
            let run = api
                .ok("POST", "/api/v1/runs", Some(json!({"deployment": "ours"})))
                .await;
            let id = run["id"].as_str().expect("id").to_owned();
            let done = api
                .wait_state(&id, &["Completed", "Failed", "Crashed"])
                .await;
            let refused = done["state_message"]
                .as_str()
                .is_some_and(|m| m.contains("(403 Forbidden)"));
            (!refused).then_some(done)
        },
    )
    .await;
    assert_eq!(done["state"], "Completed", "{done}");

    let run = api
        .ok("POST", "/api/v1/runs", Some(json!({"deployment": "hang"})))
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    api.wait_state(&id, &["Running"]).await;
    api.ok("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    let cancelled = api.wait_state(&id, &["Cancelled", "Crashed"]).await;
    assert_eq!(cancelled["state"], "Cancelled", "{cancelled}");
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &ns);
    assert!(
        jobs.get_opt(&format!("weir-{id}"))
            .await
            .expect("get")
            .is_none(),
        "the cancelled run's Job is gone"
    );

    let run = api
        .ok(
            "POST",
            "/api/v1/runs",
            Some(json!({"deployment": "theirs"})),
        )
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    let refused = api
        .wait_state(&id, &["Failed", "Crashed", "Completed"])
        .await;
    assert_eq!(refused["state"], "Failed", "{refused}");
    let message = refused["state_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("(403 Forbidden)")
            && message.contains(&format!(
                "system:serviceaccount:{ns}:weir\" cannot create resource \"jobs\""
            ))
            && message.contains(&format!("in the namespace \"{other}\"")),
        "{message}"
    );
    let theirs: Api<Job> = Api::namespaced(admin.clone(), &other);
    assert!(
        theirs
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was created outside weir's namespace"
    );
    api.server.shutdown();
    cluster::delete_namespace(&admin, &ns).await;
    cluster::delete_namespace(&admin, &other).await;
}
