//! Small `serde_json::Value` helpers.

use serde_json::{Map, Value};

/// The JSON type of `v`, for error messages: `null`, `boolean`, `number`,
/// `string`, `array` or `object`.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `v` as short JSON text for error messages (at most about 60 characters).
pub fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    let cut: String = text.chars().take(57).collect();
    format!("{cut}...")
}

/// The object at `map[key]`, inserting `{}` when the key is missing or
/// `null`. `None` when the key holds something else than an object.
pub fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key.to_owned()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The array at `map[key]`, inserting `[]` when the key is missing or `null`.
/// `None` when the key holds something else than an array.
pub fn array_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Vec<Value>> {
    let slot = map.entry(key.to_owned()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
}

/// Walks `path` (object keys) from `v`, mutably. `None` if a step is missing
/// or not an object.
pub fn pointer_object_mut<'a>(
    v: &'a mut Value,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object_mut()?.get_mut(*key)?;
    }
    cur.as_object_mut()
}

/// Walks `path` (object keys) from `v`. `None` if a step is missing or not an
/// object.
pub fn pointer_object<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    cur.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_insert_or_refuse() {
        let mut m = json!({"a": null, "b": 1})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(object_entry(&mut m, "a").is_some());
        assert!(object_entry(&mut m, "b").is_none());
        assert!(array_entry(&mut m, "c").is_some());
        assert_eq!(Value::Object(m), json!({"a": {}, "b": 1, "c": []}));
    }

    #[test]
    fn short_cuts_long_values() {
        let long = Value::from("x".repeat(100));
        assert_eq!(short(&long).chars().count(), 60);
        assert_eq!(short(&json!([1])), "[1]");
    }

    #[test]
    fn pointer_walks_objects() {
        let mut v = json!({"a": {"b": {"c": 1}}});
        assert!(pointer_object(&v, &["a", "b"]).is_some());
        assert!(pointer_object(&v, &["a", "b", "c"]).is_none());
        assert!(pointer_object_mut(&mut v, &["a", "x"]).is_none());
    }
}
