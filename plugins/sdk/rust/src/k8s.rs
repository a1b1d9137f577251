//! Helpers for Kubernetes objects inside a job (containers, resources, env).

use serde_json::{Map, Value, json};

use crate::json::{array_entry, object_entry};

/// A container's `name` (`"?"` when it has none).
pub fn container_name(container: &Map<String, Value>) -> &str {
    container.get("name").and_then(Value::as_str).unwrap_or("?")
}

/// `container.resources.<section>` (`"requests"` or `"limits"`), created when
/// missing or `null`. `None` if `resources` or the section is not an object.
pub fn resources_mut<'a>(
    container: &'a mut Map<String, Value>,
    section: &str,
) -> Option<&'a mut Map<String, Value>> {
    object_entry(object_entry(container, "resources")?, section)
}

/// `container.resources.<section>`, if present.
pub fn resources<'a>(
    container: &'a Map<String, Value>,
    section: &str,
) -> Option<&'a Map<String, Value>> {
    container.get("resources")?.get(section)?.as_object()
}

/// Sets the environment variable `name` on a container: in a list-form `env`
/// (`[{"name", "value"}]`, what the host renders) the entry is replaced or
/// appended; in an object-form `env` the key is set; a missing `env` becomes
/// a list. Returns `false` if `env` is neither.
pub fn set_env(container: &mut Map<String, Value>, name: &str, value: &str) -> bool {
    if let Some(Value::Object(env)) = container.get_mut("env") {
        env.insert(name.to_owned(), Value::from(value));
        return true;
    }
    let Some(env) = array_entry(container, "env") else {
        return false;
    };
    let entry = json!({"name": name, "value": value});
    match env
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn resources_are_created() {
        let mut c = obj(json!({"name": "job", "resources": {"requests": {"cpu": "1"}}}));
        resources_mut(&mut c, "limits")
            .expect("object")
            .insert("cpu".into(), json!("2"));
        assert_eq!(
            resources(&c, "requests").and_then(|r| r.get("cpu")),
            Some(&json!("1"))
        );
        assert_eq!(
            resources(&c, "limits").and_then(|r| r.get("cpu")),
            Some(&json!("2"))
        );
        assert_eq!(container_name(&c), "job");
        let mut bad = obj(json!({"resources": []}));
        assert!(resources_mut(&mut bad, "limits").is_none());
        assert_eq!(container_name(&bad), "?");
    }

    #[test]
    fn env_in_both_forms() {
        let mut c = obj(json!({"env": [{"name": "A", "value": "1"}]}));
        assert!(set_env(&mut c, "A", "2"));
        assert!(set_env(&mut c, "B", "3"));
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
        );
        let mut c = obj(json!({"env": {"A": "1"}}));
        assert!(set_env(&mut c, "B", "2"));
        assert_eq!(c["env"], json!({"A": "1", "B": "2"}));
        let mut c = obj(json!({}));
        assert!(set_env(&mut c, "A", "1"));
        assert_eq!(c["env"], json!([{"name": "A", "value": "1"}]));
        let mut c = obj(json!({"env": "x"}));
        assert!(!set_env(&mut c, "A", "1"));
    }
}
