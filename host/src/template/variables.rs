//! Variable layering and validation against the template's `variables` schema.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use super::TemplateError;
use super::render::type_name;

const SCHEMA_FIELD: &str = "base_job_template.variables";

/// Turns a JSON pointer (`/a/b~1c`) into its unescaped segments.
fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn dotted(prefix: &str, segments: &[String]) -> String {
    let mut out = prefix.to_owned();
    for segment in segments {
        out.push('.');
        out.push_str(segment);
    }
    out
}

/// Validators compiled so far, by the schema's JSON text. Every run's submit and release reads
/// its pool's template from the store and validates against the same schema; compiling it each
/// time was a fifth of `POST /api/v1/runs` (a `perf` profile, `BENCHMARKS.md`). Compiling is a
/// pure function of the schema (no remote `$ref`s: `jsonschema` is built without them), so a
/// memo is safe; it is bounded by [`COMPILED_MAX`] and starts over when full.
static COMPILED: LazyLock<Mutex<HashMap<String, Arc<Validator>>>> = LazyLock::new(Mutex::default);

/// How many distinct schemas [`COMPILED`] keeps (a schema is a few KiB of text and its
/// validator a few times that).
const COMPILED_MAX: usize = 256;

fn compile(schema: &Value) -> Result<Arc<Validator>, TemplateError> {
    let Ok(key) = serde_json::to_string(schema) else {
        return compile_uncached(schema).map(Arc::new);
    };
    let memo = || COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(validator) = memo().get(&key) {
        return Ok(Arc::clone(validator));
    }
    let validator = Arc::new(compile_uncached(schema)?);
    let mut memo = memo();
    if memo.len() >= COMPILED_MAX {
        memo.clear();
    }
    memo.insert(key, Arc::clone(&validator));
    Ok(validator)
}

fn compile_uncached(schema: &Value) -> Result<Validator, TemplateError> {
    jsonschema::validator_for(schema).map_err(|e| {
        let segments = pointer_segments(e.instance_path.as_str());
        TemplateError::template(
            dotted(SCHEMA_FIELD, &segments),
            format!("is not a valid JSON Schema: {e}"),
        )
    })
}

fn properties(schema: &Value) -> Result<&Map<String, Value>, TemplateError> {
    match schema.get("properties") {
        Some(Value::Object(p)) => Ok(p),
        Some(other) => Err(TemplateError::template(
            format!("{SCHEMA_FIELD}.properties"),
            format!("must be an object, got {}", type_name(other)),
        )),
        None => Err(TemplateError::template(
            format!("{SCHEMA_FIELD}.properties"),
            "is required: declare each variable as a property",
        )),
    }
}

/// The `default` of every property that has a non-null one.
fn defaults(properties: &Map<String, Value>) -> Map<String, Value> {
    properties
        .iter()
        .filter_map(|(name, prop)| {
            prop.get("default")
                .filter(|d| !d.is_null())
                .map(|d| (name.clone(), d.clone()))
        })
        .collect()
}

/// Checks that `schema` is a usable variables schema (see `BaseJobTemplate::from_value`).
pub(crate) fn check_schema(schema: &Value) -> Result<(), TemplateError> {
    match schema.get("type") {
        None => {}
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => {
            return Err(TemplateError::template(
                format!("{SCHEMA_FIELD}.type"),
                format!("must be \"object\", got {other}"),
            ));
        }
    }
    let props = properties(schema)?;
    for (name, prop) in props {
        if !prop.is_object() && !prop.is_boolean() {
            return Err(TemplateError::template(
                format!("{SCHEMA_FIELD}.properties.{name}"),
                format!("must be a JSON Schema object, got {}", type_name(prop)),
            ));
        }
    }
    match schema.get("required") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(name) if props.contains_key(name) => {}
                    Some(name) => {
                        return Err(TemplateError::template(
                            format!("{SCHEMA_FIELD}.required"),
                            format!("lists \"{name}\", which is not declared in properties"),
                        ));
                    }
                    None => {
                        return Err(TemplateError::template(
                            format!("{SCHEMA_FIELD}.required"),
                            format!("must list property names, got {item}"),
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(TemplateError::template(
                format!("{SCHEMA_FIELD}.required"),
                format!("must be a list of property names, got {}", type_name(other)),
            ));
        }
    }
    let validator = compile(schema)?;
    // Defaults must satisfy their own schema (required-ness aside: a required variable need not
    // have a default).
    let instance = Value::Object(defaults(props));
    let bad_default = validator.iter_errors(&instance).find(|e| {
        !(e.instance_path.as_str().is_empty()
            && matches!(e.kind, ValidationErrorKind::Required { .. }))
    });
    if let Some(e) = bad_default {
        let segments = pointer_segments(e.instance_path.as_str());
        let name = segments.first().cloned().unwrap_or_default();
        let reason = format!("default does not match the variable's schema: {e}");
        return Err(TemplateError::template(
            format!("{SCHEMA_FIELD}.properties.{name}.default"),
            reason,
        ));
    }
    Ok(())
}

/// Sets (or, for null, deletes) `path` inside `target`, creating objects as needed.
fn set_nested(target: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = target;
    for part in parents {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else {
            return;
        };
        current = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    if let Value::Object(map) = current {
        if value.is_null() {
            map.shift_remove(*last);
        } else {
            map.insert((*last).to_owned(), value);
        }
    }
}

/// Applies one layer to `merged` (see `BaseJobTemplate::resolve_variables`).
fn apply_layer(
    merged: &mut Map<String, Value>,
    layer: &Map<String, Value>,
    properties: &Map<String, Value>,
) {
    for (key, value) in layer {
        if key == "env"
            && let Value::Object(entries) = value
        {
            let env = merged
                .entry("env")
                .or_insert_with(|| Value::Object(Map::new()));
            if !env.is_object() {
                *env = Value::Object(Map::new());
            }
            for (name, entry) in entries {
                set_nested(env, &[name], entry.clone());
            }
            continue;
        }
        let segments: Vec<&str> = key.split('.').collect();
        let is_path = segments.len() > 1
            && segments.iter().all(|s| !s.is_empty())
            && !properties.contains_key(key);
        if is_path {
            let root = merged
                .entry(segments[0])
                .or_insert_with(|| Value::Object(Map::new()));
            set_nested(root, &segments[1..], value.clone());
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
}

/// A short description of what a property accepts, for error messages.
fn describe(prop: &Value) -> Option<String> {
    if let Some(options) = prop.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return Some(format!("one of {}", list.join(", ")));
    }
    let mut types: Vec<String> = Vec::new();
    match prop.get("type") {
        Some(Value::String(t)) => types.push(t.clone()),
        Some(Value::Array(ts)) => {
            types.extend(ts.iter().filter_map(Value::as_str).map(String::from))
        }
        _ => {}
    }
    for keyword in ["anyOf", "oneOf", "allOf"] {
        for branch in prop
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = branch.get("type").and_then(Value::as_str) {
                types.push(t.to_owned());
            } else if let Some(r) = branch.get("$ref").and_then(Value::as_str) {
                types.push(r.rsplit('/').next().unwrap_or(r).to_owned());
            }
        }
    }
    types.dedup();
    (!types.is_empty()).then(|| types.join(" or "))
}

fn variable_error(
    e: &ValidationError<'_>,
    properties: &Map<String, Value>,
    more: usize,
) -> TemplateError {
    let and_more = if more > 0 {
        format!(" (and {more} more error(s))")
    } else {
        String::new()
    };
    let segments = pointer_segments(e.instance_path.as_str());
    if let (None, ValidationErrorKind::Required { property }) = (segments.first(), &e.kind) {
        let name = property
            .as_str()
            .map_or_else(|| property.to_string(), String::from);
        return TemplateError::MissingVariable {
            field: format!("job_variables.{name}"),
            reason: format!("required variable has no value: {e}{and_more}"),
        };
    }
    let Some(name) = segments.first() else {
        return TemplateError::InvalidVariable {
            field: "job_variables".to_owned(),
            reason: format!("{e}{and_more}"),
        };
    };
    let mut reason = String::from("wrong value");
    if segments.len() > 1 {
        reason.push_str(&format!(" at {}", segments[1..].join(".")));
    }
    if segments.len() == 1
        && let Some(expected) = properties.get(name).and_then(describe)
    {
        reason.push_str(&format!(" (expected {expected})"));
    }
    reason.push_str(&format!(": {e}{and_more}"));
    TemplateError::InvalidVariable {
        field: format!("job_variables.{name}"),
        reason,
    }
}

/// Layers defaults and `layers`, then validates (see `BaseJobTemplate::resolve_variables`).
pub(crate) fn resolve(
    schema: &Value,
    layers: &[&Map<String, Value>],
) -> Result<Map<String, Value>, TemplateError> {
    let props = properties(schema)?;
    let mut merged = defaults(props);
    for layer in layers {
        apply_layer(&mut merged, layer, props);
    }
    if let Some(unknown) = merged.keys().find(|k| !props.contains_key(*k)) {
        let known: Vec<&str> = props.keys().map(String::as_str).collect();
        return Err(TemplateError::UnknownVariable {
            field: format!("job_variables.{unknown}"),
            reason: format!(
                "\"{unknown}\" is not a variable of this template (known: {})",
                known.join(", ")
            ),
        });
    }
    merged.retain(|_, v| !v.is_null());
    let validator = compile(schema)?;
    let instance = Value::Object(merged);
    let errors: Vec<ValidationError<'_>> = validator.iter_errors(&instance).collect();
    if let Some(first) = errors.first() {
        return Err(variable_error(first, props, errors.len() - 1));
    }
    drop(errors);
    match instance {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_schema_is_compiled_once_and_never_mistaken_for_another() {
        let integer = json!({"type": "object", "properties": {"x": {"type": "integer"}}});
        let string = json!({"type": "object", "properties": {"x": {"type": "string"}}});
        let first = compile(&integer).unwrap();
        assert!(Arc::ptr_eq(&first, &compile(&integer).unwrap()));
        assert!(!Arc::ptr_eq(&first, &compile(&string).unwrap()));

        let layer = json!({"x": "text"});
        let Value::Object(layer) = layer else {
            unreachable!()
        };
        for _ in 0..2 {
            let refused = resolve(&integer, &[&layer]).unwrap_err();
            assert!(refused.to_string().contains("job_variables.x"), "{refused}");
            assert_eq!(resolve(&string, &[&layer]).unwrap()["x"], "text");
        }
    }

    #[test]
    fn a_schema_that_does_not_compile_is_refused_every_time() {
        let bad = json!({"type": "object", "properties": {"x": {"type": 12}}});
        for _ in 0..2 {
            let refused = compile(&bad).expect_err("an invalid schema is refused");
            assert!(
                refused.to_string().contains("not a valid JSON Schema"),
                "{refused}"
            );
        }
    }
}
