//! Property-based fuzzing of the template pipeline (issue #6, hostile
//! input): arbitrary templates and job variables never panic the renderer,
//! and a value that contains placeholders is inserted as text, never
//! expanded. The seeds in `testdata/fuzz-corpus/` are run every time;
//! proptest keeps any failing case it finds in `proptest-regressions/`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

const META: RunMetadata<'static> = RunMetadata {
    run_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    pool: "p",
    queue: "default",
    deployment: Some("d"),
    api_url: "http://127.0.0.1:4680",
    parameters: "{}",
    run_token: None,
};

/// Text that is often template syntax.
fn texty() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z.]{0,6}".prop_map(|s| format!("{{{{ {s} }}}}")),
        "[ -~]{0,12}",
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("{{ env }}".to_owned()),
        Just("{{ a.b.0 }}".to_owned()),
        Just("\u{0}\u{202e}é".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        texty().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(texty(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn layer() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("env".to_owned()),
            Just("env.X".to_owned()),
            Just("a.b".to_owned()),
            "[a-z.]{1,5}",
        ],
        json_value(),
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// Runs the whole pipeline; only panics are failures (errors are fine).
fn exercise(template: Value, layers: &[Map<String, Value>]) {
    let Ok(t) = BaseJobTemplate::from_value(template) else {
        return;
    };
    let refs: Vec<&Map<String, Value>> = layers.iter().collect();
    for kind in [TemplateKind::Process, TemplateKind::Kubernetes] {
        let _ = build_job(&t, kind, &refs, &META);
    }
    if let Ok(vars) = t.resolve_variables(&refs) {
        let _ = t.render(&vars);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_templates_and_variables_never_panic(
        config in json_value(),
        layers in prop::collection::vec(layer(), 0..3),
    ) {
        let template = json!({
            "job_configuration": config,
            "variables": {"type": "object", "properties": {
                "a": {}, "b": {}, "env": {"type": "object", "default": {}}}},
        });
        exercise(template, &layers);
    }

    #[test]
    fn a_value_is_inserted_as_text_and_never_expanded_again(value in texty(), other in texty()) {
        let t = BaseJobTemplate::from_value(json!({
            "job_configuration": {"embedded": "<{{ v }}|{{ w }}>", "whole": "{{ v }}"},
            "variables": {"type": "object", "properties": {"v": {"type": "string"}, "w": {"type": "string"}}},
        }))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let layer: Map<String, Value> =
            [("v".to_owned(), json!(value)), ("w".to_owned(), json!(other))].into_iter().collect();
        let vars = t
            .resolve_variables(&[&layer])
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rendered = t.render(&vars);
        prop_assert_eq!(&rendered["embedded"], &json!(format!("<{value}|{other}>")));
        prop_assert_eq!(&rendered["whole"], &json!(value));
    }
}

#[test]
fn the_corpus_runs_through_the_pipeline_without_panicking() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/template/testdata/fuzz-corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read seed");
        let seed: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let layers: Vec<Map<String, Value>> = seed["layers"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l.as_object().cloned()).collect())
            .unwrap_or_default();
        exercise(seed["template"].clone(), &layers);
        seen += 1;
    }
    assert!(seen >= 3, "the corpus has its seeds: {seen}");
}
