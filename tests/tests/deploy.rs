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
//!
//! The Helm chart `deploy/helm/weir` is checked here too, rendered by a real
//! `helm` (`weir_tests::helm`, gated on `WEIR_HELM`): its objects pass the
//! same strict dry run, its Role grants exactly what `deploy/role.yaml`
//! grants, its defaults are `deploy/`'s config, probes and security context,
//! and it refuses several replicas on SQLite. The chart renders into the
//! namespace it is given (`--namespace`), so the tests render it straight
//! into their fresh namespace.

use std::collections::{BTreeMap, BTreeSet};
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
use weir_tests::helm;

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

// The Helm chart, deploy/helm/weir, rendered by `helm template` (gated on
// WEIR_HELM; see tests/src/helm.rs).

/// The chart's CI values (chart-testing's `ci/` convention): PostgreSQL from
/// an existing Secret, 2 replicas, the ServiceMonitor, no RBAC and no
/// ServiceAccount of the chart's, a kubeconfig Secret for a second cluster.
fn postgres_values() -> PathBuf {
    helm::chart_dir().join("ci/postgres-values.yaml")
}

/// Writes a values file `name` holding `text` in `dir` and returns its path.
fn values_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The kinds of `objects`, sorted.
fn kinds(objects: &[DynamicObject]) -> Vec<String> {
    let mut kinds: Vec<String> = objects.iter().map(|o| kind_of(o).to_owned()).collect();
    kinds.sort();
    kinds
}

/// The one object of `kind` the chart rendered.
fn one<'a>(objects: &'a [DynamicObject], kind: &str) -> &'a DynamicObject {
    let found: Vec<&DynamicObject> = objects.iter().filter(|o| kind_of(o) == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "the chart should render exactly one {kind}; it rendered {:?}",
        kinds(objects)
    );
    found[0]
}

/// The Weir container of the rendered Deployment.
fn weir_container(objects: &[DynamicObject]) -> &Value {
    &one(objects, "Deployment").data["spec"]["template"]["spec"]["containers"][0]
}

/// The Weir container's environment variable `name`, whole (value or valueFrom).
fn env_var(objects: &[DynamicObject], name: &str) -> Option<Value> {
    weir_container(objects)["env"]
        .as_array()
        .expect("the Weir container has env")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// A ConfigMap's `data`.
fn config_map_data(object: &DynamicObject) -> BTreeMap<String, String> {
    let config_map: ConfigMap =
        serde_json::from_value(serde_json::to_value(object).expect("a DynamicObject serialises"))
            .unwrap_or_else(|e| panic!("ConfigMap {} is not a ConfigMap: {e}", object.name_any()));
    config_map
        .data
        .unwrap_or_else(|| panic!("ConfigMap {} has no data", object.name_any()))
}

/// The ConfigMap's files written to a directory (as the pod sees them in
/// /etc/weir) and weir.toml loaded from there.
fn load_config(data: &BTreeMap<String, String>) -> weir::Config {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in data {
        std::fs::write(dir.path().join(name), text).expect("write a ConfigMap key");
    }
    weir::Config::load(&dir.path().join("weir.toml"))
        .unwrap_or_else(|e| panic!("the chart's weir.toml is refused: {e}"))
}

/// A Role's rules as (apiGroup, resource, verb) triples. A rule with more
/// than those three lists (resourceNames, nonResourceURLs) fails the test:
/// the comparison would not see it.
fn grants(role: &DynamicObject) -> BTreeSet<(String, String, String)> {
    let rules = role.data["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("Role {} has no rules", role.name_any()));
    let mut triples = BTreeSet::new();
    for rule in rules {
        let keys: BTreeSet<&str> = rule
            .as_object()
            .unwrap_or_else(|| panic!("rule {rule} is not an object"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "rule {rule}"
        );
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule {rule}: {key} is not a list"))
                .iter()
                .map(|v| {
                    v.as_str()
                        .unwrap_or_else(|| panic!("rule {rule}: {key} holds {v}"))
                        .to_owned()
                })
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    triples.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    triples
}

#[tokio::test]
async fn the_charts_objects_pass_a_strict_server_side_dry_run() {
    if helm::helm_binary().is_none() {
        return;
    }
    let Some(client) = cluster::client().await else {
        return;
    };
    let ns = cluster::fresh_namespace(&client, "helm-dry-run").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let postgres = postgres_values();
    let database_url = values_file(
        dir.path(),
        "database-url.yaml",
        "database:\n  url: postgres://weir:s3cret@db.example:5432/weir\n",
    );
    let cases: [(&str, Vec<&Path>, &[&str]); 3] = [
        (
            "default values",
            vec![],
            &[
                "ConfigMap",
                "Deployment",
                "PersistentVolumeClaim",
                "Role",
                "RoleBinding",
                "Service",
                "ServiceAccount",
            ],
        ),
        (
            "ci/postgres-values.yaml",
            vec![postgres.as_path()],
            &["ConfigMap", "Deployment", "Service", "ServiceMonitor"],
        ),
        (
            "database.url",
            vec![database_url.as_path()],
            &[
                "ConfigMap",
                "Deployment",
                "PersistentVolumeClaim",
                "Role",
                "RoleBinding",
                "Secret",
                "Service",
                "ServiceAccount",
            ],
        ),
    ];
    for (what, files, expected) in cases {
        let objects = helm::render(&files, &ns);
        assert_eq!(kinds(&objects), expected, "{what}: the chart's kinds");
        for object in &objects {
            let kind = kind_of(object);
            // Everything in the release namespace, as rendered (apply()
            // would move an object that names no namespace, hiding it).
            assert_eq!(
                object.metadata.namespace.as_deref(),
                Some(ns.as_str()),
                "{what}: {kind} {} is not in the release namespace",
                object.name_any()
            );
            // The test cluster serves no monitoring.coreos.com CRDs (no
            // Prometheus Operator), so the API server cannot check the
            // ServiceMonitor: its shape is checked in plain Rust by
            // the_charts_service_monitor_scrapes_metrics_on_the_http_port.
            if kind == "ServiceMonitor" {
                continue;
            }
            let answer = apply(&client, object, &ns, true)
                .await
                .unwrap_or_else(|e| panic!("{what}: {kind} {} refused: {e}", object.name_any()));
            assert_eq!(answer.name_any(), object.name_any(), "{what}");
            assert_eq!(kind_of(&answer), kind, "{what}");
        }
    }
    cluster::delete_namespace(&client, &ns).await;
}

#[test]
fn the_charts_service_monitor_scrapes_metrics_on_the_http_port() {
    if helm::helm_binary().is_none() {
        return;
    }
    assert!(
        helm::render(&[], "weir")
            .iter()
            .all(|o| kind_of(o) != "ServiceMonitor"),
        "metrics.serviceMonitor.enabled is false by default"
    );
    let postgres = postgres_values();
    let objects = helm::render(&[postgres.as_path()], "weir-monitoring");
    let monitor = one(&objects, "ServiceMonitor");
    let service = one(&objects, "Service");
    assert_eq!(
        monitor.types.as_ref().map(|t| t.api_version.as_str()),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(
        monitor.metadata.namespace.as_deref(),
        Some("weir-monitoring")
    );
    let labels = monitor.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("release").map(String::as_str),
        Some("prometheus"),
        "metrics.serviceMonitor.labels are on the ServiceMonitor"
    );
    let spec_keys: BTreeSet<&str> = monitor.data["spec"]
        .as_object()
        .expect("the ServiceMonitor has a spec")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(spec_keys, BTreeSet::from(["endpoints", "selector"]));
    // It selects the chart's Service (in its own namespace) by labels the
    // Service has...
    let selector = monitor.data["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("spec.selector.matchLabels");
    assert!(
        !selector.is_empty(),
        "an empty selector selects every Service"
    );
    let service_labels = service.metadata.labels.clone().unwrap_or_default();
    for (key, value) in selector {
        assert_eq!(
            service_labels.get(key).map(|v| json!(v)).as_ref(),
            Some(value),
            "the Service lacks the ServiceMonitor's label {key}"
        );
    }
    // ... and scrapes its http port's /metrics, with the token /metrics
    // needs while auth is on.
    assert!(
        service.data["spec"]["ports"]
            .as_array()
            .expect("the Service has ports")
            .iter()
            .any(|p| p["name"] == "http"),
        "the Service has a port named http"
    );
    assert_eq!(
        monitor.data["spec"]["endpoints"],
        json!([{
            "port": "http", "path": "/metrics", "scheme": "http",
            "interval": "15s", "scrapeTimeout": "10s",
            "authorization": {"type": "Bearer", "credentials": {"name": "weir-metrics-token", "key": "token"}},
        }])
    );
}

#[test]
fn the_charts_role_grants_exactly_what_deploys_role_grants() {
    if helm::helm_binary().is_none() {
        return;
    }
    let objects = helm::render(&[], "weir-helm");
    let role = one(&objects, "Role");
    let expected = grants(&manifest("Role"));
    assert!(!expected.is_empty(), "deploy/role.yaml grants something");
    assert_eq!(
        grants(role),
        expected,
        "deploy/helm/weir's Role vs deploy/role.yaml (deploy/README.md says what each rule is for)"
    );
    // Bound to the chart's ServiceAccount, in the release namespace, which
    // is the one the pod runs as.
    let account = one(&objects, "ServiceAccount");
    let binding = one(&objects, "RoleBinding");
    assert_eq!(
        binding.data["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.name_any()})
    );
    assert_eq!(
        binding.data["subjects"],
        json!([{"kind": "ServiceAccount", "name": account.name_any(), "namespace": "weir-helm"}])
    );
    for object in [role, binding, account] {
        assert_eq!(
            object.metadata.namespace.as_deref(),
            Some("weir-helm"),
            "{}",
            kind_of(object)
        );
    }
    assert_eq!(
        one(&objects, "Deployment").data["spec"]["template"]["spec"]["serviceAccountName"],
        json!(account.name_any())
    );
    // Release weir: the same names as deploy/.
    assert_eq!(role.name_any(), manifest("Role").name_any());
    assert_eq!(account.name_any(), manifest("ServiceAccount").name_any());

    // rbac.create=false, serviceAccount.create=false: none of the three, and
    // the pod runs as the ServiceAccount named in the values.
    let postgres = postgres_values();
    let objects = helm::render(&[postgres.as_path()], "weir-helm");
    for kind in ["Role", "RoleBinding", "ServiceAccount"] {
        assert!(
            objects.iter().all(|o| kind_of(o) != kind),
            "rbac.create=false, serviceAccount.create=false: the chart rendered a {kind}"
        );
    }
    assert_eq!(
        one(&objects, "Deployment").data["spec"]["template"]["spec"]["serviceAccountName"],
        json!("weir-runner")
    );
}

#[test]
fn the_charts_defaults_are_deploys_config_probes_and_security_context() {
    if helm::helm_binary().is_none() {
        return;
    }
    let objects = helm::render(&[], "weir");

    // weir.toml and the default-k8s template, byte for byte.
    let chart_files = config_map_data(one(&objects, "ConfigMap"));
    let deploy_files = config_map_data(&manifest("ConfigMap"));
    assert_eq!(
        chart_files, deploy_files,
        "the chart's default config (values.yaml config, configFiles) vs deploy/configmap.yaml"
    );
    assert_eq!(
        one(&objects, "ConfigMap").name_any(),
        manifest("ConfigMap").name_any()
    );
    // Jobs get the Service's URL: for release weir in namespace weir, the
    // config's api_url exactly (WEIR_ADVERTISE_URL overrides it elsewhere).
    let config = load_config(&chart_files);
    assert_eq!(
        env_var(&objects, "WEIR_ADVERTISE_URL"),
        Some(json!({"name": "WEIR_ADVERTISE_URL", "value": config.server.api_url}))
    );
    assert_eq!(
        env_var(&objects, "WEIR_LOG"),
        Some(json!({"name": "WEIR_LOG", "value": "info"}))
    );
    assert_eq!(
        env_var(&objects, "WEIR_AUTH"),
        Some(json!({"name": "WEIR_AUTH", "value": "auto"}))
    );

    // The pod: deploy/deployment.yaml's settings.
    let chart = one(&objects, "Deployment");
    let deploy = manifest("Deployment");
    for field in ["replicas", "strategy"] {
        assert_eq!(
            chart.data["spec"][field], deploy.data["spec"][field],
            "Deployment spec.{field}: the chart's default vs deploy/deployment.yaml"
        );
    }
    let chart_pod = &chart.data["spec"]["template"]["spec"];
    let deploy_pod = &deploy.data["spec"]["template"]["spec"];
    for field in [
        "securityContext",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
        "volumes",
    ] {
        assert_eq!(
            chart_pod[field], deploy_pod[field],
            "pod {field}: the chart's default vs deploy/deployment.yaml"
        );
    }
    let chart_container = &chart_pod["containers"][0];
    let deploy_container = &deploy_pod["containers"][0];
    for field in [
        "name",
        "args",
        "ports",
        "readinessProbe",
        "livenessProbe",
        "securityContext",
        "resources",
        "volumeMounts",
        "imagePullPolicy",
    ] {
        assert_eq!(
            chart_container[field], deploy_container[field],
            "container {field}: the chart's default vs deploy/deployment.yaml"
        );
    }
    assert_eq!(
        one(&objects, "PersistentVolumeClaim").data["spec"],
        manifest("PersistentVolumeClaim").data["spec"]
    );
    assert_eq!(
        one(&objects, "Service").data["spec"]["ports"],
        manifest("Service").data["spec"]["ports"]
    );
    // Every pod of a config rolls when the config changes.
    let annotations = &chart.data["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations["checksum/config"]
            .as_str()
            .is_some_and(|c| c.len() == 64),
        "checksum/config: {annotations}"
    );
}

#[test]
fn the_charts_kubeconfig_secret_is_mounted_read_only_where_the_config_looks() {
    if helm::helm_binary().is_none() {
        return;
    }
    let postgres = postgres_values();
    let objects = helm::render(&[postgres.as_path()], "weir");
    let config = load_config(&config_map_data(one(&objects, "ConfigMap")));
    let gpu = config
        .kubernetes
        .clusters
        .get("gpu")
        .expect("ci/postgres-values.yaml's config names cluster gpu");
    let kubeconfig = gpu
        .kubeconfig
        .as_ref()
        .expect("cluster gpu has a kubeconfig");
    assert!(
        config
            .pools
            .iter()
            .any(|p| p.cluster.as_deref() == Some("gpu")),
        "a pool uses cluster gpu"
    );
    let pod = &one(&objects, "Deployment").data["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "kubeconfigs")
        .expect("a kubeconfigs volume");
    assert_eq!(volume["secret"], json!({"secretName": "weir-kubeconfigs"}));
    let mount = weir_container(&objects)["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == "kubeconfigs")
        .expect("the kubeconfigs volume is mounted");
    assert_eq!(mount["readOnly"], json!(true));
    let mount_path = mount["mountPath"].as_str().expect("a mountPath");
    assert!(
        kubeconfig.starts_with(mount_path),
        "{} is not under the kubeconfigs mount {mount_path}",
        kubeconfig.display()
    );
    // PostgreSQL without a claim: every replica's data directory is its own.
    assert_eq!(
        one(&objects, "Deployment").data["spec"]["replicas"],
        json!(2)
    );
    assert_eq!(
        one(&objects, "Deployment").data["spec"]["strategy"],
        json!({"type": "RollingUpdate"})
    );
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["name"] == "data" && v["emptyDir"] == json!({})),
        "the data volume is an emptyDir: {}",
        pod["volumes"]
    );
}

#[test]
fn the_chart_gives_weir_the_database_url_only_through_a_secret() {
    if helm::helm_binary().is_none() {
        return;
    }
    // SQLite (the default): no URL, no Secret.
    let objects = helm::render(&[], "weir");
    assert!(env_var(&objects, "WEIR_DATABASE_URL").is_none());
    assert!(objects.iter().all(|o| kind_of(o) != "Secret"));

    // database.url: the chart's own Secret holds it; only that Secret does.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = "postgres://weir:s3cret@db.example:5432/weir";
    let file = values_file(
        dir.path(),
        "database-url.yaml",
        &format!("database:\n  url: {url}\n"),
    );
    let objects = helm::render(&[file.as_path()], "weir");
    let secret: Secret = serde_json::from_value(
        serde_json::to_value(one(&objects, "Secret")).expect("a DynamicObject serialises"),
    )
    .expect("the chart's Secret is a Secret");
    let name = secret.metadata.name.clone().expect("the Secret has a name");
    let data = secret.data.expect("the Secret has data");
    assert_eq!(
        data.get("url").map(|b| b.0.as_slice()),
        Some(url.as_bytes()),
        "database.secretKey defaults to url"
    );
    assert_eq!(
        env_var(&objects, "WEIR_DATABASE_URL"),
        Some(json!({"name": "WEIR_DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": name, "key": "url"}}}))
    );
    for object in objects.iter().filter(|o| kind_of(o) != "Secret") {
        let text = serde_json::to_string(object).expect("a DynamicObject serialises");
        assert!(
            !text.contains("s3cret"),
            "{} {} holds the database password",
            kind_of(object),
            object.name_any()
        );
    }

    // database.existingSecret: referenced, not created.
    let postgres = postgres_values();
    let objects = helm::render(&[postgres.as_path()], "weir");
    assert!(objects.iter().all(|o| kind_of(o) != "Secret"));
    assert_eq!(
        env_var(&objects, "WEIR_DATABASE_URL"),
        Some(json!({"name": "WEIR_DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": "weir-postgres", "key": "database-url"}}}))
    );
}

#[test]
fn the_chart_refuses_several_replicas_on_sqlite() {
    if helm::helm_binary().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let two = values_file(dir.path(), "two.yaml", "replicaCount: 2\n");
    let refused = helm::template(&[two.as_path()], "weir")
        .expect_err("replicaCount 2 on SQLite should not render");
    assert!(
        refused.contains("replicaCount is 2") && refused.contains("PostgreSQL"),
        "{refused}"
    );
    // Nor a RollingUpdate, which would start a second writer.
    let rolling = values_file(
        dir.path(),
        "rolling.yaml",
        "strategy:\n  type: RollingUpdate\n",
    );
    let refused = helm::template(&[rolling.as_path()], "weir")
        .expect_err("RollingUpdate on SQLite should not render");
    assert!(refused.contains("strategy.type"), "{refused}");

    // On PostgreSQL two replicas render, once they do not share the
    // ReadWriteOnce claim.
    let postgres = values_file(
        dir.path(),
        "postgres.yaml",
        "database:\n  existingSecret: weir-postgres\n",
    );
    let refused = helm::template(&[two.as_path(), postgres.as_path()], "weir")
        .expect_err("two replicas sharing one ReadWriteOnce claim should not render");
    assert!(refused.contains("persistence.enabled"), "{refused}");
    let no_claim = values_file(
        dir.path(),
        "no-claim.yaml",
        "persistence:\n  enabled: false\n",
    );
    let objects = helm::render(
        &[two.as_path(), postgres.as_path(), no_claim.as_path()],
        "weir",
    );
    assert_eq!(
        one(&objects, "Deployment").data["spec"]["replicas"],
        json!(2)
    );
}
