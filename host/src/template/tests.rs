use serde_json::{Map, Value, json};

use super::finalize::{ENV_RUN_TOKEN, LABEL_DEPLOYMENT, LABEL_POOL, LABEL_QUEUE};
use super::*;

const PREFECT_KUBERNETES: &str = include_str!("testdata/prefect-kubernetes.json");

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn template(job_configuration: Value, properties: Value) -> BaseJobTemplate {
    BaseJobTemplate::from_value(json!({
        "job_configuration": job_configuration,
        "variables": {"type": "object", "properties": properties},
    }))
    .unwrap()
}

/// A template declaring `names` as unconstrained variables.
fn loose(job_configuration: Value, names: &[&str]) -> BaseJobTemplate {
    let properties: Map<String, Value> = names.iter().map(|n| (n.to_string(), json!({}))).collect();
    template(job_configuration, Value::Object(properties))
}

fn prefect() -> BaseJobTemplate {
    BaseJobTemplate::from_value(serde_json::from_str(PREFECT_KUBERNETES).unwrap()).unwrap()
}

const META: RunMetadata<'static> = RunMetadata {
    parameters: r#"{"x":1}"#,
    run_id: "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
    pool: "k8s-pool",
    queue: "default",
    deployment: Some("etl/nightly"),
    api_url: "http://weir.example:4200/api",
    run_token: None,
};

fn env_list(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rendering

#[test]
fn whole_value_placeholder_takes_the_values_json_type() {
    let t = loose(
        json!({
            "o": "{{ o }}", "l": "{{l}}", "n": "{{  n  }}", "f": "{{ f }}",
            "b": "{{ b }}", "s": "{{ s }}", "nested": ["{{ n }}", {"deep": "{{ o }}"}]
        }),
        &["o", "l", "n", "f", "b", "s"],
    );
    let vars = obj(json!({
        "o": {"a": 1}, "l": [1, "two"], "n": 3, "f": 1.5, "b": false, "s": "text"
    }));
    assert_eq!(
        t.render(&vars),
        json!({
            "o": {"a": 1}, "l": [1, "two"], "n": 3, "f": 1.5, "b": false, "s": "text",
            "nested": [3, {"deep": {"a": 1}}]
        })
    );
}

#[test]
fn embedded_placeholders_insert_text() {
    let t = loose(
        json!({"msg": "{{ s }}-{{n}}/{{ b }} {{ o }} {{ l }}"}),
        &["s", "n", "b", "o", "l"],
    );
    let vars = obj(json!({"s": "hi", "n": 42, "b": true, "o": {"k": "v"}, "l": [1, 2]}));
    assert_eq!(
        t.render(&vars),
        json!({"msg": "hi-42/true {\"k\":\"v\"} [1,2]"})
    );
}

#[test]
fn inserted_text_is_never_re_expanded() {
    let t = loose(
        json!({"embedded": "run {{ a }} now", "whole": "{{ a }}", "obj": "{{ o }}"}),
        &["a", "b", "o"],
    );
    let vars = obj(json!({"a": "{{ b }}", "b": "SECRET", "o": {"k": "{{ b }}"}}));
    assert_eq!(
        t.render(&vars),
        json!({"embedded": "run {{ b }} now", "whole": "{{ b }}", "obj": {"k": "{{ b }}"}})
    );
}

#[test]
fn missing_or_null_whole_value_removes_key_and_list_item() {
    let t = loose(
        json!({
            "gone": "{{ missing }}",
            "null": "{{ nothing }}",
            "kept": "{{ present }}",
            "list": ["a", "{{ missing }}", "{{ present }}", "{{ nothing }}", "z"],
        }),
        &["missing", "nothing", "present"],
    );
    let vars = obj(json!({"present": "p", "nothing": null}));
    assert_eq!(
        t.render(&vars),
        json!({"kept": "p", "list": ["a", "p", "z"]})
    );
}

#[test]
fn missing_embedded_placeholder_becomes_empty() {
    let t = loose(
        json!({"s": "a-{{ missing }}-b", "t": "{{ nothing }}x"}),
        &["missing", "nothing"],
    );
    let vars = obj(json!({"nothing": null}));
    assert_eq!(t.render(&vars), json!({"s": "a--b", "t": "x"}));
}

#[test]
fn dotted_placeholders_walk_into_objects() {
    let t = loose(
        json!({
            "foo": "{{ env.FOO }}",
            "region": "{{cluster.region}}",
            "url": "https://{{ cluster.host }}:{{ cluster.port }}/",
            "first": "{{ hosts.0 }}",
            "absent": "{{ cluster.nope }}",
            "through_scalar": "{{ env.FOO.BAR }}",
            "literal": "{{ a.b }}",
        }),
        &["env", "cluster", "hosts", "a.b"],
    );
    let vars = obj(json!({
        "env": {"FOO": "foo-value"},
        "cluster": {"region": "eu-west-1", "host": "k8s", "port": 6443},
        "hosts": ["h0", "h1"],
        "a.b": "literal dotted name",
    }));
    assert_eq!(
        t.render(&vars),
        json!({
            "foo": "foo-value",
            "region": "eu-west-1",
            "url": "https://k8s:6443/",
            "first": "h0",
            "literal": "literal dotted name",
        })
    );
}

#[test]
fn keys_are_not_templated_and_other_values_are_copied() {
    let t = loose(
        json!({"{{ k }}": "{{ k }}", "n": 1, "b": true, "z": null, "s": "{ k } {{", "e": ""}),
        &["k"],
    );
    assert_eq!(
        t.render(&obj(json!({"k": "v"}))),
        json!({"{{ k }}": "v", "n": 1, "b": true, "z": null, "s": "{ k } {{", "e": ""})
    );
}

// ---------------------------------------------------------------------------------------------
// Layering

fn layered() -> BaseJobTemplate {
    template(
        json!({}),
        json!({
            "image": {"type": "string", "default": "base:1"},
            "cpu": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "100m"},
            "memory": {"type": "string", "default": "64Mi"},
            "labels": {"type": "object", "default": {"team": "core", "tier": "batch"}},
            "cluster": {"type": "object", "default": {"region": "eu", "zone": "a"}},
            "env": {
                "type": "object",
                "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "default": {"BASE": "1", "SHARED": "base"}
            },
        }),
    )
}

#[test]
fn defaults_then_deployment_then_run() {
    let t = layered();
    let deployment = obj(json!({"image": "dep:2", "cpu": "500m", "labels": {"team": "data"}}));
    let run = obj(json!({"image": "run:3"}));
    let vars = t.resolve_variables(&[&deployment, &run]).unwrap();
    assert_eq!(vars["image"], json!("run:3"));
    assert_eq!(vars["cpu"], json!("500m"));
    assert_eq!(vars["memory"], json!("64Mi"));
    // Non-env objects are replaced wholesale.
    assert_eq!(vars["labels"], json!({"team": "data"}));
    assert_eq!(vars["env"], json!({"BASE": "1", "SHARED": "base"}));

    let defaults_only = t.resolve_variables(&[]).unwrap();
    assert_eq!(defaults_only["image"], json!("base:1"));
    assert_eq!(defaults_only["cpu"], json!("100m"));
}

#[test]
fn null_in_a_layer_unsets_a_variable() {
    let t = layered();
    let run = obj(json!({"cpu": null, "memory": null}));
    let vars = t.resolve_variables(&[&run]).unwrap();
    assert!(!vars.contains_key("cpu"));
    // Not validated against its type ("string"): null means unset.
    assert!(!vars.contains_key("memory"));
}

#[test]
fn env_merges_key_by_key_and_null_deletes() {
    let t = layered();
    let deployment = obj(json!({"env": {"DEP": "d", "SHARED": "deployment"}}));
    let run = obj(json!({"env": {"RUN": "r", "BASE": null, "NEVER_SET": null}}));
    let vars = t.resolve_variables(&[&deployment, &run]).unwrap();
    assert_eq!(
        vars["env"],
        json!({"SHARED": "deployment", "DEP": "d", "RUN": "r"})
    );
    assert_eq!(
        vars["env"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["SHARED", "DEP", "RUN"]
    );
}

#[test]
fn dotted_layer_keys_merge_into_objects() {
    let t = layered();
    let deployment = obj(json!({"env.FOO": "x", "cluster.zone": "b"}));
    let run = obj(json!({"env.BASE": null, "cluster.node.pool": "gpu", "labels.tier": null}));
    let vars = t.resolve_variables(&[&deployment, &run]).unwrap();
    assert_eq!(vars["env"], json!({"SHARED": "base", "FOO": "x"}));
    assert_eq!(
        vars["cluster"],
        json!({"region": "eu", "zone": "b", "node": {"pool": "gpu"}})
    );
    assert_eq!(vars["labels"], json!({"team": "core"}));
}

#[test]
fn unknown_variable_is_an_error_even_with_additional_properties() {
    let mut t = layered();
    t.variables["additionalProperties"] = json!(true);
    let run = obj(json!({"imagee": "typo:1"}));
    let err = t.resolve_variables(&[&run]).unwrap_err();
    assert!(
        matches!(err, TemplateError::UnknownVariable { .. }),
        "{err:?}"
    );
    assert_eq!(err.field(), "job_variables.imagee");
    assert!(err.to_string().contains("imagee"), "{err}");
    assert!(
        err.reason().contains("image"),
        "lists known variables: {err}"
    );

    let dotted = obj(json!({"nope.FOO": "x"}));
    let err = t.resolve_variables(&[&dotted]).unwrap_err();
    assert_eq!(err.field(), "job_variables.nope");
}

#[test]
fn wrong_type_is_an_error_naming_the_variable() {
    let t = layered();
    let run = obj(json!({"cpu": 2}));
    let err = t.resolve_variables(&[&run]).unwrap_err();
    assert!(
        matches!(err, TemplateError::InvalidVariable { .. }),
        "{err:?}"
    );
    assert_eq!(err.field(), "job_variables.cpu");
    assert!(err.reason().contains("string or null"), "{err}");
    assert!(
        err.reason().contains("anyOf"),
        "includes jsonschema's message: {err}"
    );

    let nested = obj(json!({"env": {"N": 5}}));
    let err = t.resolve_variables(&[&nested]).unwrap_err();
    assert_eq!(err.field(), "job_variables.env");
    assert!(err.reason().contains("at N"), "{err}");
}

#[test]
fn missing_required_variable_is_an_error() {
    let t = BaseJobTemplate::from_value(json!({
        "job_configuration": {"c": "{{ command }}"},
        "variables": {
            "type": "object",
            "required": ["command"],
            "properties": {"command": {"type": "string"}, "other": {"type": "string"}},
        },
    }))
    .unwrap();
    let layer = obj(json!({"other": "x"}));
    let err = t.resolve_variables(&[&layer]).unwrap_err();
    assert!(
        matches!(err, TemplateError::MissingVariable { .. }),
        "{err:?}"
    );
    assert_eq!(err.field(), "job_variables.command");
    assert!(err.reason().contains("required"), "{err}");

    // A later null unsets it again.
    let set = obj(json!({"command": "run"}));
    let unset = obj(json!({"command": null}));
    let err = t.resolve_variables(&[&set, &unset]).unwrap_err();
    assert_eq!(err.field(), "job_variables.command");

    assert_eq!(
        t.resolve_variables(&[&set]).unwrap(),
        obj(json!({"command": "run"}))
    );
}

#[test]
fn refs_into_definitions_are_resolved() {
    let t = prefect();
    let good = obj(json!({"cluster_config": {"config": {}, "context_name": "kind"}}));
    let vars = t.resolve_variables(&[&good]).unwrap();
    assert_eq!(vars["cluster_config"]["context_name"], json!("kind"));

    let bad = obj(json!({"cluster_config": {"config": {}}}));
    let err = t.resolve_variables(&[&bad]).unwrap_err();
    assert_eq!(err.field(), "job_variables.cluster_config");

    // The allOf form pydantic emits for a non-optional reference.
    let t = BaseJobTemplate::from_value(json!({
        "job_configuration": {"c": "{{ cluster_config }}"},
        "variables": {
            "type": "object",
            "properties": {
                "cluster_config": {"allOf": [{"$ref": "#/definitions/ClusterConfig"}]}
            },
            "definitions": {
                "ClusterConfig": {
                    "type": "object",
                    "properties": {"context_name": {"type": "string"}},
                    "required": ["context_name"],
                }
            },
        },
    }))
    .unwrap();
    let good = obj(json!({"cluster_config": {"context_name": "kind"}}));
    assert!(t.resolve_variables(&[&good]).is_ok());
    let bad = obj(json!({"cluster_config": {"context_name": 7}}));
    let err = t.resolve_variables(&[&bad]).unwrap_err();
    assert_eq!(err.field(), "job_variables.cluster_config");
    assert!(err.reason().contains("context_name"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Template shape

#[test]
fn from_value_rejects_bad_shapes_naming_the_field() {
    let cases = [
        (json!([]), "base_job_template"),
        (
            json!({"variables": {"properties": {}}}),
            "base_job_template.job_configuration",
        ),
        (
            json!({"job_configuration": [], "variables": {"properties": {}}}),
            "base_job_template.job_configuration",
        ),
        (
            json!({"job_configuration": {}}),
            "base_job_template.variables",
        ),
        (
            json!({"job_configuration": {}, "variables": "x"}),
            "base_job_template.variables",
        ),
        (
            json!({"job_configuration": {}, "variables": {"type": "object"}}),
            "base_job_template.variables.properties",
        ),
        (
            json!({"job_configuration": {}, "variables": {"type": "array", "properties": {}}}),
            "base_job_template.variables.type",
        ),
        (
            json!({"job_configuration": {}, "variables": {"properties": {"image": 5}}}),
            "base_job_template.variables.properties.image",
        ),
        (
            json!({"job_configuration": {}, "variables": {"properties": {"image": {"type": 5}}}}),
            "base_job_template.variables.properties.image.type",
        ),
        (
            json!({"job_configuration": {}, "variables": {
                "properties": {"image": {"type": "string"}}, "required": ["imag"]}}),
            "base_job_template.variables.required",
        ),
        (
            json!({"job_configuration": {}, "variables": {
                "properties": {"image": {"type": "string", "default": 3}}}}),
            "base_job_template.variables.properties.image.default",
        ),
        (
            json!({"job_configuration": {"x": "{{ image }} {{ undeclared }}"},
                   "variables": {"properties": {"image": {}}}}),
            "base_job_template.job_configuration",
        ),
    ];
    for (value, field) in cases {
        let err = BaseJobTemplate::from_value(value.clone()).unwrap_err();
        assert!(
            matches!(err, TemplateError::InvalidTemplate { .. }),
            "{err:?}"
        );
        assert_eq!(err.field(), field, "for {value}: {err}");
    }
    let err = BaseJobTemplate::from_value(json!({"job_configuration": {"x": "{{ undeclared }}"},
        "variables": {"properties": {}}}))
    .unwrap_err();
    assert!(err.reason().contains("undeclared"), "{err}");
}

#[test]
fn serde_round_trips_and_deserializing_validates() {
    let t = prefect();
    let text = serde_json::to_string(&t).unwrap();
    let back: BaseJobTemplate = serde_json::from_str(&text).unwrap();
    assert_eq!(back, t);
    let err =
        serde_json::from_value::<BaseJobTemplate>(json!({"job_configuration": {}})).unwrap_err();
    assert!(
        err.to_string().contains("base_job_template.variables"),
        "{err}"
    );

    assert_eq!(
        serde_json::to_value(TemplateKind::Kubernetes).unwrap(),
        json!("kubernetes")
    );
    assert_eq!(
        serde_json::from_value::<TemplateKind>(json!("process")).unwrap(),
        TemplateKind::Process
    );
}

// ---------------------------------------------------------------------------------------------
// The Prefect Kubernetes template

fn prefect_job_variables() -> Map<String, Value> {
    obj(json!({
        "image": "ghcr.io/acme/flows:1.2",
        "namespace": "data",
        "env": {"LOG_LEVEL": "debug", "EMPTY": null},
        "cpu_request": "250m",
        "cpu_limit": "1",
        "memory_request": "256Mi",
        "memory_limit": "1Gi",
        "labels": {"team": "data"},
        "annotations": {"owner": "alice@example.com"},
        "service_account_name": "flow-runner",
        "backoff_limit": 2,
        "finished_job_ttl": 3600,
        "command": "python -m flows.etl --date '2024-01-01 00:00'",
    }))
}

#[test]
fn prefect_template_loads_unchanged() {
    let raw: Value = serde_json::from_str(PREFECT_KUBERNETES).unwrap();
    let t = BaseJobTemplate::from_value(raw.clone()).unwrap();
    assert_eq!(t.job_configuration, raw["job_configuration"]);
    assert_eq!(t.variables, raw["variables"]);
    assert_eq!(serde_json::to_value(&t).unwrap(), raw);
    assert!(t.variable_names().contains(&"cluster_config"));
}

#[test]
fn prefect_template_renders_job_variables_where_prefect_users_expect_them() {
    let t = prefect();
    let deployment = prefect_job_variables();
    let vars = t.resolve_variables(&[&deployment]).unwrap();
    let rendered = t.render(&vars);
    let manifest = &rendered["job_manifest"];
    let container = &manifest["spec"]["template"]["spec"]["containers"][0];

    assert_eq!(rendered["namespace"], json!("data"));
    assert_eq!(rendered["pod_watch_timeout_seconds"], json!(60));
    assert_eq!(rendered["stream_output"], json!(true));
    assert!(rendered.get("cluster_config").is_none());
    assert!(rendered.get("job_watch_timeout_seconds").is_none());

    assert_eq!(manifest["metadata"]["namespace"], json!("data"));
    assert_eq!(manifest["metadata"]["labels"], json!({"team": "data"}));
    assert_eq!(
        manifest["metadata"]["annotations"],
        json!({"owner": "alice@example.com"})
    );
    assert_eq!(manifest["metadata"]["generateName"], json!("-"));
    assert_eq!(manifest["spec"]["backoffLimit"], json!(2));
    assert_eq!(manifest["spec"]["ttlSecondsAfterFinished"], json!(3600));
    assert_eq!(
        manifest["spec"]["template"]["spec"]["serviceAccountName"],
        json!("flow-runner")
    );
    assert_eq!(container["image"], json!("ghcr.io/acme/flows:1.2"));
    assert_eq!(container["imagePullPolicy"], json!("IfNotPresent"));
    assert_eq!(
        container["resources"],
        json!({
            "limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "250m", "memory": "256Mi"}
        })
    );
    assert_eq!(container["env"], json!({"LOG_LEVEL": "debug"}));
    assert_eq!(
        container["args"],
        json!("python -m flows.etl --date '2024-01-01 00:00'")
    );

    let job = finalize(TemplateKind::Kubernetes, rendered, &META).unwrap();
    let manifest = &job["job_manifest"];
    let container = &manifest["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        manifest["metadata"]["name"],
        json!("weir-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    );
    assert!(manifest["metadata"].get("generateName").is_none());
    assert_eq!(manifest["metadata"]["labels"]["team"], json!("data"));
    assert_eq!(
        manifest["metadata"]["labels"][LABEL_RUN_ID],
        json!(META.run_id)
    );
    assert_eq!(
        env_list(container),
        pairs(&[
            ("LOG_LEVEL", "debug"),
            ("WEIR_API_URL", "http://weir.example:4200/api"),
            ("WEIR_RUN_ID", META.run_id),
            ("WEIR_PARAMETERS", META.parameters),
        ])
    );
    assert_eq!(
        container["args"],
        json!(["python", "-m", "flows.etl", "--date", "2024-01-01 00:00"])
    );
    assert_eq!(job["pod_watch_timeout_seconds"], json!(60));
}

#[test]
fn prefect_template_without_job_variables_drops_unset_fields() {
    let t = prefect();
    let job = build_job(&t, TemplateKind::Kubernetes, &[], &META).unwrap();
    let manifest = &job["job_manifest"];
    let container = &manifest["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(job["namespace"], json!("default"));
    assert_eq!(manifest["metadata"]["namespace"], json!("default"));
    assert!(container.get("image").is_none());
    assert!(container.get("args").is_none());
    assert_eq!(
        container["resources"],
        json!({"limits": {}, "requests": {}})
    );
    assert!(manifest["spec"].get("ttlSecondsAfterFinished").is_none());
    assert!(
        manifest["spec"]["template"]["spec"]
            .get("serviceAccountName")
            .is_none()
    );
    assert_eq!(manifest["spec"]["backoffLimit"], json!(0));
    assert_eq!(
        env_list(container),
        pairs(&[
            ("WEIR_API_URL", META.api_url),
            ("WEIR_RUN_ID", META.run_id),
            ("WEIR_PARAMETERS", META.parameters)
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Finalising: Kubernetes

fn manifest_config(container: Value) -> Value {
    json!({
        "namespace": "jobs",
        "pod_watch_timeout_seconds": 30,
        "job_manifest": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"generateName": "x-", "labels": {"app": "etl"}},
            "spec": {"template": {"spec": {"containers": [container]}}},
        },
    })
}

#[test]
fn finalize_kubernetes_labels_names_and_namespaces_the_job() {
    let job = finalize(
        TemplateKind::Kubernetes,
        manifest_config(json!({"name": "c", "image": "i"})),
        &META,
    )
    .unwrap();
    let manifest = &job["job_manifest"];
    let expected = json!({
        "app": "etl",
        "weir.dev/run-id": META.run_id,
        "weir.dev/pool": "k8s-pool",
        "weir.dev/queue": "default",
        "weir.dev/deployment": "etl-nightly",
    });
    assert_eq!(manifest["metadata"]["labels"], expected);
    let mut pod_expected = expected.clone();
    pod_expected.as_object_mut().unwrap().shift_remove("app");
    assert_eq!(
        manifest["spec"]["template"]["metadata"]["labels"],
        pod_expected
    );
    assert_eq!(
        manifest["metadata"]["name"],
        json!("weir-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    );
    assert!(manifest["metadata"].get("generateName").is_none());
    assert_eq!(manifest["metadata"]["namespace"], json!("jobs"));
    assert_eq!(job["namespace"], json!("jobs"));
    assert_eq!(job["pod_watch_timeout_seconds"], json!(30));

    // No deployment: no deployment label. No namespace anywhere: "default".
    let mut config = manifest_config(json!({"name": "c"}));
    config.as_object_mut().unwrap().shift_remove("namespace");
    let meta = RunMetadata {
        deployment: None,
        pool: "GPU pool (eu)!",
        ..META
    };
    let job = finalize(TemplateKind::Kubernetes, config, &meta).unwrap();
    let labels = &job["job_manifest"]["metadata"]["labels"];
    assert!(labels.get(LABEL_DEPLOYMENT).is_none());
    assert_eq!(labels[LABEL_POOL], json!("GPU-pool--eu"));
    assert_eq!(
        job["job_manifest"]["metadata"]["namespace"],
        json!("default")
    );
    assert_eq!(job["namespace"], json!("default"));
}

#[test]
fn finalize_kubernetes_keeps_the_manifests_own_namespace() {
    let mut config = manifest_config(json!({"name": "c"}));
    config["job_manifest"]["metadata"]["namespace"] = json!("own");
    config.as_object_mut().unwrap().shift_remove("namespace");
    let job = finalize(TemplateKind::Kubernetes, config.clone(), &META).unwrap();
    assert_eq!(job["job_manifest"]["metadata"]["namespace"], json!("own"));
    assert_eq!(job["namespace"], json!("own"));

    config["namespace"] = json!("other");
    let err = finalize(TemplateKind::Kubernetes, config, &META).unwrap_err();
    assert_eq!(
        err.field(),
        "job_configuration.job_manifest.metadata.namespace"
    );
}

#[test]
fn finalize_kubernetes_env_becomes_a_list_with_weir_entries() {
    let job = finalize(
        TemplateKind::Kubernetes,
        manifest_config(json!({
            "name": "c",
            "env": {"Z": "last-first", "DROP": null, "A": "a", "N": 3, "WEIR_RUN_ID": "spoofed"},
        })),
        &META,
    )
    .unwrap();
    let container = &job["job_manifest"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_list(container),
        pairs(&[
            ("Z", "last-first"),
            ("A", "a"),
            ("N", "3"),
            ("WEIR_RUN_ID", META.run_id),
            ("WEIR_API_URL", META.api_url),
            ("WEIR_PARAMETERS", META.parameters),
        ])
    );

    let job = finalize(
        TemplateKind::Kubernetes,
        manifest_config(json!({
            "name": "c",
            "env": [
                {"name": "WEIR_API_URL", "value": "old"},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "WEIR_API_URL", "value": "dup"},
            ],
        })),
        &META,
    )
    .unwrap();
    let env = &job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([
            {"name": "WEIR_API_URL", "value": META.api_url},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "WEIR_RUN_ID", "value": META.run_id},
            {"name": "WEIR_PARAMETERS", "value": META.parameters},
        ])
    );
}

#[test]
fn finalize_kubernetes_splits_string_args_and_commands() {
    let mut config = manifest_config(json!({
        "name": "c",
        "command": "/bin/sh -c",
        "args": "echo \"hello world\" && exit 0",
    }));
    config["job_manifest"]["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "init", "args": "wait-for 'db:5432'", "env": {"X": "1"}}]);
    let job = finalize(TemplateKind::Kubernetes, config, &META).unwrap();
    let pod = &job["job_manifest"]["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["command"], json!(["/bin/sh", "-c"]));
    assert_eq!(
        pod["containers"][0]["args"],
        json!(["echo", "hello world", "&&", "exit", "0"])
    );
    assert_eq!(
        pod["initContainers"][0]["args"],
        json!(["wait-for", "db:5432"])
    );
    assert_eq!(
        env_list(&pod["initContainers"][0]),
        pairs(&[
            ("X", "1"),
            ("WEIR_API_URL", META.api_url),
            ("WEIR_RUN_ID", META.run_id),
            ("WEIR_PARAMETERS", META.parameters)
        ])
    );

    let list = finalize(
        TemplateKind::Kubernetes,
        manifest_config(json!({"name": "c", "args": ["a b"]})),
        &META,
    )
    .unwrap();
    assert_eq!(
        list["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["a b"])
    );

    let err = finalize(
        TemplateKind::Kubernetes,
        manifest_config(json!({"name": "c", "args": "echo 'unterminated"})),
        &META,
    )
    .unwrap_err();
    assert_eq!(
        err.field(),
        "job_configuration.job_manifest.spec.template.spec.containers[0].args"
    );
}

#[test]
fn finalize_kubernetes_errors_name_the_field() {
    let mut bad_api = manifest_config(json!({"name": "c"}));
    bad_api["job_manifest"]["apiVersion"] = json!("batch/v1beta1");
    let mut bad_kind = manifest_config(json!({"name": "c"}));
    bad_kind["job_manifest"]["kind"] = json!("CronJob");
    let mut no_kind = manifest_config(json!({"name": "c"}));
    no_kind["job_manifest"]
        .as_object_mut()
        .unwrap()
        .shift_remove("kind");
    let mut no_containers = manifest_config(json!({"name": "c"}));
    no_containers["job_manifest"]["spec"]["template"]["spec"] = json!({});
    let mut bad_env = manifest_config(json!({"name": "c", "env": "A=1"}));
    bad_env["namespace"] = json!("jobs");
    let cases = [
        (bad_api, "job_configuration.job_manifest.apiVersion"),
        (bad_kind, "job_configuration.job_manifest.kind"),
        (no_kind, "job_configuration.job_manifest.kind"),
        (json!({"namespace": "x"}), "job_configuration.job_manifest"),
        (
            json!({"job_manifest": "x"}),
            "job_configuration.job_manifest",
        ),
        (
            no_containers,
            "job_configuration.job_manifest.spec.template.spec.containers",
        ),
        (
            bad_env,
            "job_configuration.job_manifest.spec.template.spec.containers[0].env",
        ),
        (json!("x"), "job_configuration"),
    ];
    for (config, field) in cases {
        let err = finalize(TemplateKind::Kubernetes, config.clone(), &META).unwrap_err();
        assert!(matches!(err, TemplateError::InvalidJob { .. }), "{err:?}");
        assert_eq!(err.field(), field, "for {config}: {err}");
    }

    let meta = RunMetadata {
        run_id: "not a valid id",
        ..META
    };
    let err = finalize(
        TemplateKind::Kubernetes,
        manifest_config(json!({"name": "c"})),
        &meta,
    )
    .unwrap_err();
    assert_eq!(err.field(), "run_id");
}

#[test]
fn label_values_are_sanitised() {
    use super::finalize::label_value;
    assert_eq!(label_value("k8s-pool"), "k8s-pool");
    assert_eq!(label_value("team/etl nightly"), "team-etl-nightly");
    assert_eq!(label_value("-_.x.-"), "x");
    let long = "a".repeat(70);
    assert_eq!(label_value(&long).len(), 63);
    assert_eq!(
        label_value(&format!("{}-b", "a".repeat(62))),
        "a".repeat(62)
    );
}

// ---------------------------------------------------------------------------------------------
// Finalising: process

#[test]
fn finalize_process_normalises_the_configuration() {
    let job = finalize(
        TemplateKind::Process,
        json!({
            "plugin_option": {"x": 1},
            "timeout_seconds": 90,
            "command": "python -m flows.etl --name 'nightly run'",
            "env": {"A": "1", "DROP": null, "N": 2, "WEIR_API_URL": "spoofed"},
            "working_dir": "/srv/flows",
        }),
        &META,
    )
    .unwrap();
    assert_eq!(
        job,
        json!({
            "command": ["python", "-m", "flows.etl", "--name", "nightly run"],
            "env": {"A": "1", "N": "2", "WEIR_API_URL": META.api_url, "WEIR_RUN_ID": META.run_id, "WEIR_PARAMETERS": META.parameters},
            "working_dir": "/srv/flows",
            "timeout_seconds": 90,
            "plugin_option": {"x": 1},
        })
    );
    let keys: Vec<&String> = job.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "command",
            "env",
            "working_dir",
            "timeout_seconds",
            "plugin_option"
        ]
    );

    let minimal = finalize(
        TemplateKind::Process,
        json!({"command": ["echo", "a b"], "working_dir": null}),
        &META,
    )
    .unwrap();
    assert_eq!(
        minimal,
        json!({
            "command": ["echo", "a b"],
            "env": {"WEIR_API_URL": META.api_url, "WEIR_RUN_ID": META.run_id, "WEIR_PARAMETERS": META.parameters},
        })
    );
}

#[test]
fn finalize_process_errors_name_the_field() {
    let cases = [
        (json!({}), "job_configuration.command"),
        (json!({"command": ""}), "job_configuration.command"),
        (json!({"command": "   "}), "job_configuration.command"),
        (
            json!({"command": "echo 'oops"}),
            "job_configuration.command",
        ),
        (json!({"command": []}), "job_configuration.command"),
        (json!({"command": 5}), "job_configuration.command"),
        (
            json!({"command": ["ok", 1]}),
            "job_configuration.command[1]",
        ),
        (
            json!({"command": "x", "env": ["A=1"]}),
            "job_configuration.env",
        ),
        (
            json!({"command": "x", "env": {"A": {}}}),
            "job_configuration.env.A",
        ),
        (
            json!({"command": "x", "working_dir": 1}),
            "job_configuration.working_dir",
        ),
        (
            json!({"command": "x", "timeout_seconds": 0}),
            "job_configuration.timeout_seconds",
        ),
        (
            json!({"command": "x", "timeout_seconds": 1.5}),
            "job_configuration.timeout_seconds",
        ),
        (
            json!({"command": "x", "timeout_seconds": "60"}),
            "job_configuration.timeout_seconds",
        ),
        (json!(["x"]), "job_configuration"),
    ];
    for (config, field) in cases {
        let err = finalize(TemplateKind::Process, config.clone(), &META).unwrap_err();
        assert_eq!(err.field(), field, "for {config}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Weir's defaults

#[test]
fn default_templates_parse() {
    for (kind, text) in [
        (TemplateKind::Process, DEFAULT_PROCESS),
        (TemplateKind::Kubernetes, DEFAULT_KUBERNETES),
    ] {
        let value: Value = serde_json::from_str(text).unwrap();
        let t = BaseJobTemplate::from_value(value).unwrap();
        assert_eq!(BaseJobTemplate::default_for(kind), t);
        for name in t.variable_names() {
            let prop = &t.variables["properties"][name];
            assert!(prop.get("title").is_some(), "{kind:?} {name} has a title");
            assert!(
                prop.get("description").is_some(),
                "{kind:?} {name} has a description"
            );
        }
    }
}

#[test]
fn default_process_template_builds_a_process_job() {
    let t = BaseJobTemplate::default_for(TemplateKind::Process);
    let err = build_job(&t, TemplateKind::Process, &[], &META).unwrap_err();
    assert!(
        matches!(err, TemplateError::MissingVariable { .. }),
        "{err:?}"
    );
    assert_eq!(err.field(), "job_variables.command");

    let deployment = obj(json!({"command": "python flow.py --x 1", "env": {"A": "1", "B": "2"}}));
    let run = obj(json!({"env.B": null, "timeout_seconds": 30}));
    let job = build_job(&t, TemplateKind::Process, &[&deployment, &run], &META).unwrap();
    assert_eq!(
        job,
        json!({
            "command": ["python", "flow.py", "--x", "1"],
            "env": {"A": "1", "WEIR_API_URL": META.api_url, "WEIR_RUN_ID": META.run_id, "WEIR_PARAMETERS": META.parameters},
            "timeout_seconds": 30,
            "labels": {},
        })
    );

    let bad = obj(json!({"command": "x", "timeout_seconds": 0}));
    let err = build_job(&t, TemplateKind::Process, &[&bad], &META).unwrap_err();
    assert_eq!(err.field(), "job_variables.timeout_seconds");
}

#[test]
fn default_kubernetes_template_builds_a_job() {
    let t = BaseJobTemplate::default_for(TemplateKind::Kubernetes);
    let job = build_job(&t, TemplateKind::Kubernetes, &[], &META).unwrap();
    let manifest = &job["job_manifest"];
    let pod = &manifest["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(job["namespace"], json!("default"));
    assert_eq!(job["pod_start_timeout_seconds"], json!(300));
    assert!(job.get("name").is_none());
    assert_eq!(manifest["metadata"]["namespace"], json!("default"));
    assert_eq!(manifest["spec"]["backoffLimit"], json!(0));
    assert_eq!(pod["restartPolicy"], json!("Never"));
    assert!(pod.get("nodeSelector").is_none());
    assert_eq!(container["name"], json!("job"));
    assert_eq!(container["image"], json!("busybox:1.36"));
    assert_eq!(container["imagePullPolicy"], json!("IfNotPresent"));
    assert!(container.get("args").is_none());
    assert_eq!(
        env_list(container),
        pairs(&[
            ("WEIR_API_URL", META.api_url),
            ("WEIR_RUN_ID", META.run_id),
            ("WEIR_PARAMETERS", META.parameters)
        ])
    );
    assert_eq!(
        manifest["spec"]["template"]["metadata"]["labels"][LABEL_QUEUE],
        json!("default")
    );
}

#[test]
fn default_kubernetes_template_accepts_prefect_job_variables() {
    let t = BaseJobTemplate::default_for(TemplateKind::Kubernetes);
    let deployment = prefect_job_variables();
    let run = obj(json!({
        "name": "nightly",
        "image_pull_policy": "Always",
        "node_selector": {"pool": "gpu"},
        "pod_start_timeout_seconds": 60,
    }));
    let job = build_job(&t, TemplateKind::Kubernetes, &[&deployment, &run], &META).unwrap();
    let manifest = &job["job_manifest"];
    let pod_template = &manifest["spec"]["template"];
    let container = &pod_template["spec"]["containers"][0];
    assert_eq!(job["name"], json!("nightly"));
    assert_eq!(job["namespace"], json!("data"));
    assert_eq!(job["pod_start_timeout_seconds"], json!(60));
    assert_eq!(manifest["metadata"]["namespace"], json!("data"));
    assert_eq!(manifest["metadata"]["labels"]["team"], json!("data"));
    assert_eq!(pod_template["metadata"]["labels"]["team"], json!("data"));
    assert_eq!(
        pod_template["metadata"]["annotations"],
        json!({"owner": "alice@example.com"})
    );
    assert_eq!(manifest["spec"]["backoffLimit"], json!(2));
    assert_eq!(manifest["spec"]["ttlSecondsAfterFinished"], json!(3600));
    assert_eq!(
        pod_template["spec"]["serviceAccountName"],
        json!("flow-runner")
    );
    assert_eq!(pod_template["spec"]["nodeSelector"], json!({"pool": "gpu"}));
    assert_eq!(container["image"], json!("ghcr.io/acme/flows:1.2"));
    assert_eq!(container["imagePullPolicy"], json!("Always"));
    assert_eq!(
        container["resources"],
        json!({
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"}
        })
    );
    assert_eq!(
        container["args"],
        json!(["python", "-m", "flows.etl", "--date", "2024-01-01 00:00"])
    );
    assert_eq!(
        env_list(container),
        pairs(&[
            ("LOG_LEVEL", "debug"),
            ("WEIR_API_URL", META.api_url),
            ("WEIR_RUN_ID", META.run_id),
            ("WEIR_PARAMETERS", META.parameters)
        ])
    );

    let bad = obj(json!({"image_pull_policy": "Sometimes"}));
    let err = build_job(&t, TemplateKind::Kubernetes, &[&bad], &META).unwrap_err();
    assert_eq!(err.field(), "job_variables.image_pull_policy");
    assert!(err.reason().contains("IfNotPresent"), "{err}");
}

#[test]
fn labels_the_api_server_would_refuse_are_refused_naming_the_label() {
    let t = prefect();
    let ok = obj(json!({"image": "i:1", "labels": {"example.com/team": "data-1", "tier": ""}}));
    let job = build_job(&t, TemplateKind::Kubernetes, &[&ok], &META).unwrap();
    assert_eq!(
        job["job_manifest"]["metadata"]["labels"]["example.com/team"],
        json!("data-1")
    );
    for (labels, bad) in [
        (json!({"bad key": "x"}), "bad key"),
        (json!({"Example.com/team": "x"}), "Example.com/team"),
        (json!({"team": "-starts-with-a-dash"}), "team"),
        (json!({"team": "x".repeat(64)}), "team"),
        (json!({"team": 7}), "team"),
        (json!({"team": "{{ image }}"}), "team"),
    ] {
        let vars = obj(json!({"image": "i:1", "labels": labels}));
        let err = build_job(&t, TemplateKind::Kubernetes, &[&vars], &META).unwrap_err();
        // The template's schema refuses a non-string first; either way the
        // error names the labels and the bad one.
        assert!(
            err.field().contains("labels") && err.to_string().contains(bad),
            "{labels}: {err} (field {})",
            err.field()
        );
    }
}

#[test]
fn the_run_token_is_stamped_only_when_given() {
    let with = RunMetadata {
        run_token: Some("weirrun_x_00"),
        ..META
    };
    let process = finalize(
        TemplateKind::Process,
        json!({"command": "true", "env": {"WEIR_RUN_TOKEN": "forged"}}),
        &with,
    )
    .unwrap();
    assert_eq!(process["env"][ENV_RUN_TOKEN], json!("weirrun_x_00"));
    let process = finalize(TemplateKind::Process, json!({"command": "true"}), &META).unwrap();
    assert!(process["env"].get(ENV_RUN_TOKEN).is_none());

    let config = json!({"job_manifest": {"apiVersion": "batch/v1", "kind": "Job",
        "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}});
    let job = finalize(TemplateKind::Kubernetes, config.clone(), &with).unwrap();
    let container = &job["job_manifest"]["spec"]["template"]["spec"]["containers"][0];
    assert!(
        env_list(container).contains(&(ENV_RUN_TOKEN.to_owned(), "weirrun_x_00".to_owned())),
        "{container}"
    );
    let job = finalize(TemplateKind::Kubernetes, config, &META).unwrap();
    let container = &job["job_manifest"]["spec"]["template"]["spec"]["containers"][0];
    assert!(!env_list(container).iter().any(|(k, _)| k == ENV_RUN_TOKEN));
}

#[test]
fn a_job_nested_past_64_levels_by_its_variables_is_refused_naming_the_job() {
    // Each input is within the bound; the rendered job is not.
    let nested = |levels: usize| (0..levels).fold(Value::Null, |v, _| json!([v]));
    let t = loose(
        manifest_config(json!({"name": "c", "image": "i", "args": "{{ deep }}"})),
        &["deep"],
    );
    let vars = t
        .resolve_variables(&[&obj(json!({"deep": nested(60)}))])
        .expect("variables are fine on their own");
    let err = finalize(TemplateKind::Kubernetes, t.render(&vars), &META).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("job_configuration"), "{text}");
    assert!(text.contains("nested more than 64 levels"), "{text}");
    // And a template nested too deep is refused when it is loaded.
    let err = BaseJobTemplate::from_value(json!({
        "job_configuration": nested(70),
        "variables": {"type": "object", "properties": {}},
    }))
    .unwrap_err();
    assert!(err.to_string().contains("base_job_template"), "{err}");
}
