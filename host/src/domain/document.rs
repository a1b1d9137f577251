//! Bounds on the JSON documents Weir accepts, builds and stores.
//!
//! serde_json reads back at most [`READ_BACK_DEPTH`] levels of nesting, and
//! recursive code (serialising, dropping, comparing, rendering a template)
//! uses stack in proportion to depth. So every document that enters — an API
//! body, a config file's values, a template, a plugin's patch values and the
//! job a patch builds — is held to [`MAX_DEPTH`], well under what the store
//! reads back even inside the wrappers it stores documents in (a history
//! line's `detail.patch[i].value`, a submission's `job`). The store refuses to
//! write anything deeper than [`READ_BACK_DEPTH`] as a last line of defence:
//! Weir never stores what it cannot read back.
//!
//! Measuring is iterative (an explicit stack), so a document of any depth is
//! measured without recursion, and it stops as soon as a bound is passed, so
//! measuring costs at most the bound, not the document.

use serde_json::Value;

use super::ValidationError;

/// The deepest nesting of arrays and objects Weir accepts in any document.
/// A Kubernetes Job manifest in a base job template is about 12 levels deep.
pub(crate) const MAX_DEPTH: usize = 64;

/// The deepest nesting serde_json reads back: its recursion limit is 128,
/// and the level that reaches it fails.
pub(crate) const READ_BACK_DEPTH: usize = 127;

/// The approximate encoded size a job may grow to through plugins' patches:
/// the same bound as an API request body, so a job a plugin builds is no
/// larger than one a user could submit.
pub(crate) const MAX_JOB_BYTES: usize = 1 << 20;

/// How deep and how large a document is, as far as it was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Levels of array and object nesting: 0 for a scalar, 1 for `{}` or
    /// `[1]`, 2 for `{"a": []}`.
    pub depth: usize,
    /// Approximate encoded size in bytes (strings and keys count their
    /// UTF-8 length plus quotes; escapes are not counted).
    pub bytes: usize,
}

impl Shape {
    /// Measures `value`, stopping once its depth passes `max_depth` or its
    /// size passes `max_bytes` (the shape returned is then over that bound,
    /// not necessarily exact).
    pub(crate) fn measure(value: &Value, max_depth: usize, max_bytes: usize) -> Shape {
        let mut shape = Shape::default();
        let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
        while let Some((v, level)) = stack.pop() {
            shape.bytes = shape.bytes.saturating_add(scalar_bytes(v));
            let children = match v {
                Value::Array(items) => {
                    shape.bytes = shape.bytes.saturating_add(items.len());
                    Some(items.len())
                }
                Value::Object(map) => {
                    for key in map.keys() {
                        shape.bytes = shape.bytes.saturating_add(key.len() + 4);
                    }
                    Some(map.len())
                }
                _ => None,
            };
            if children.is_some() {
                shape.depth = shape.depth.max(level + 1);
            }
            if shape.depth > max_depth || shape.bytes > max_bytes {
                return shape;
            }
            match v {
                Value::Array(items) => stack.extend(items.iter().map(|i| (i, level + 1))),
                Value::Object(map) => stack.extend(map.values().map(|i| (i, level + 1))),
                _ => {}
            }
        }
        shape
    }

    /// The depth of `value`, measured up to just past `max_depth`.
    pub(crate) fn depth_of(value: &Value, max_depth: usize) -> usize {
        Shape::measure(value, max_depth, usize::MAX).depth
    }
}

fn scalar_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        // A generous bound on a number's text (u64::MAX is 20 digits).
        Value::Number(_) => 24,
        Value::String(s) => s.len() + 2,
        Value::Array(_) | Value::Object(_) => 2,
    }
}

/// Refuses a document nested deeper than [`MAX_DEPTH`], naming `field`.
pub(crate) fn check_depth(field: &str, value: &Value) -> Result<(), ValidationError> {
    let depth = Shape::depth_of(value, MAX_DEPTH);
    if depth > MAX_DEPTH {
        return Err(ValidationError::new(
            field,
            format!(
                "is nested more than {MAX_DEPTH} levels deep (arrays and objects); at most {MAX_DEPTH} are accepted"
            ),
        ));
    }
    Ok(())
}

/// [`check_depth`] for an object held as a map, without building a `Value`.
pub(crate) fn check_map_depth(
    field: &str,
    map: &serde_json::Map<String, Value>,
) -> Result<(), ValidationError> {
    for (key, value) in map {
        if Shape::depth_of(value, MAX_DEPTH) >= MAX_DEPTH {
            return Err(ValidationError::new(
                format!("{field}.{key}"),
                format!(
                    "is nested more than {} levels deep (arrays and objects); {field} may nest at most {MAX_DEPTH}",
                    MAX_DEPTH - 1
                ),
            ));
        }
    }
    Ok(())
}

/// The first top-level key of an object whose value is nested too deep
/// (counting the object itself as one level), for naming it in an error.
pub(crate) fn too_deep_field(body: &Value) -> Option<String> {
    let Value::Object(map) = body else {
        return None;
    };
    map.iter()
        .find(|(_, v)| Shape::depth_of(v, MAX_DEPTH) >= MAX_DEPTH)
        .map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `levels` arrays nested in one another, built without recursion.
    fn nested(levels: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(Shape::depth_of(&json!(1), 64), 0);
        assert_eq!(Shape::depth_of(&json!({}), 64), 1);
        assert_eq!(Shape::depth_of(&json!({"a": [1, {"b": []}]}), 64), 4);
        assert_eq!(Shape::depth_of(&nested(64), 64), 64);
        // Stops just past the bound, whatever the real depth.
        let mut v = nested(100_000);
        assert_eq!(Shape::depth_of(&v, 64), 65);
        // Dropping a deep value recurses; take it apart by hand.
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn bytes_are_a_bound_on_the_encoding() {
        let v = json!({"name": "weir", "n": [1, 2, 3], "ok": true});
        let text = serde_json::to_string(&v).expect("encodes");
        let shape = Shape::measure(&v, 64, usize::MAX);
        assert!(
            shape.bytes >= text.len(),
            "{} < {}",
            shape.bytes,
            text.len()
        );
        assert!(shape.bytes < text.len() * 8);
        let big = json!(["x".repeat(1000), "y".repeat(1000)]);
        assert!(Shape::measure(&big, 64, 100).bytes > 100);
    }

    #[test]
    fn the_limits_agree_with_what_serde_json_reads_back() {
        let deepest = serde_json::to_string(&nested(READ_BACK_DEPTH)).expect("encodes");
        assert!(serde_json::from_str::<Value>(&deepest).is_ok());
        let deeper = serde_json::to_string(&nested(READ_BACK_DEPTH + 1)).expect("encodes");
        assert!(serde_json::from_str::<Value>(&deeper).is_err());
        // What Weir accepts fits, with room for the store's wrappers.
        const { assert!(MAX_DEPTH + 8 <= READ_BACK_DEPTH) };
    }

    #[test]
    fn check_names_the_field() {
        assert!(check_depth("job_variables", &nested(MAX_DEPTH)).is_ok());
        let e = check_depth("job_variables", &nested(MAX_DEPTH + 1)).expect_err("too deep");
        assert_eq!(e.field, "job_variables");
        assert!(e.reason.contains("64"), "{}", e.reason);
        let body = json!({"name": "x", "job_variables": nested(MAX_DEPTH)});
        assert_eq!(too_deep_field(&body).as_deref(), Some("job_variables"));
    }
}
