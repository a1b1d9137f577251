//! Reading a binding's config (JSON) with errors that name the key.
//!
//! ```
//! use weir_plugin_sdk::config::{parse, ConfigObject};
//! # fn main() -> weir_plugin_sdk::Result<()> {
//! let value = parse(r#"{"prefixes": ["ghcr.io/acme/"], "strict": true}"#)?;
//! let cfg = ConfigObject::root(&value)?;
//! cfg.allow_only(&["prefixes", "strict"])?;
//! let prefixes = cfg.required("prefixes", cfg.strings("prefixes")?)?;
//! let strict = cfg.bool("strict")?.unwrap_or(false);
//! assert_eq!(prefixes, ["ghcr.io/acme/"]);
//! assert!(strict);
//! # Ok(())
//! # }
//! ```
//!
//! Messages read like ``config key `rules[1].queue`: expected a string, got
//! number 3`` and ``config: unknown key `rules[0].tagg` (allowed: tag, label,
//! pool, queue, add_tags)``.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{BAD_CONFIG, Refusal, Result};
use crate::json::{short, type_name};

/// Parses a binding's config text. Empty text and `null` give `{}` (a binding
/// without config), so optional keys take their defaults and required keys
/// are reported missing.
pub fn parse(text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str(text) {
        Ok(Value::Null) => Ok(Value::Object(Map::new())),
        Ok(v) => Ok(v),
        Err(e) => Err(Refusal::new(
            BAD_CONFIG,
            format!("config is not valid JSON: {e}"),
        )),
    }
}

/// A JSON object inside a config, with its path (for messages). `null` values
/// count as absent keys.
#[derive(Debug, Clone)]
pub struct ConfigObject<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> ConfigObject<'a> {
    /// The config's top level, which must be an object.
    pub fn root(value: &'a Value) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                path: String::new(),
                map,
            }),
            other => Err(Refusal::new(
                BAD_CONFIG,
                format!(
                    "config must be a JSON object, got {} {}",
                    type_name(other),
                    short(other)
                ),
            )),
        }
    }

    /// This object's path in the config (`""` for the top level).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` in this object, e.g. `rules[0].tag`.
    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// An error about `key`: ``config key `{path}`: {message}``.
    pub fn error(&self, key: &str, message: impl std::fmt::Display) -> Refusal {
        Refusal::new(
            BAD_CONFIG,
            format!("config key `{}`: {message}", self.key_path(key)),
        )
    }

    fn type_error(&self, key: &str, expected: &str, got: &Value) -> Refusal {
        self.error(
            key,
            format!("expected {expected}, got {} {}", type_name(got), short(got)),
        )
    }

    /// Rejects keys other than `allowed`, naming the first unknown one.
    pub fn allow_only(&self, allowed: &[&str]) -> Result<()> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(Refusal::new(
                BAD_CONFIG,
                format!(
                    "config: unknown key `{}` (allowed: {})",
                    self.key_path(k),
                    allowed.join(", ")
                ),
            )),
        }
    }

    /// The raw value of `key`, unless absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The object's entries (including `null` values).
    pub fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> + use<'a> {
        self.map.iter()
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `value` if present, else a "missing" error naming `key`.
    pub fn required<T>(&self, key: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| {
            Refusal::new(
                BAD_CONFIG,
                format!("config: missing key `{}`", self.key_path(key)),
            )
        })
    }

    /// An optional string.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.type_error(key, "a string", other)),
        }
    }

    /// An optional non-empty string.
    pub fn non_empty_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.str(key)? {
            Some("") => Err(self.error(key, "must not be empty")),
            other => Ok(other),
        }
    }

    /// An optional boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "a boolean", other)),
        }
    }

    /// An optional integer in `0..=u32::MAX`.
    pub fn u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().map(u32::try_from) {
                Some(Ok(n)) => Ok(Some(n)),
                _ => Err(self.type_error(key, "an integer from 0 to 4294967295", v)),
            },
        }
    }

    /// An optional list of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.type_error(key, "a list of strings", v));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(Refusal::new(
                    BAD_CONFIG,
                    format!(
                        "config key `{}[{i}]`: expected a string, got {} {}",
                        self.key_path(key),
                        type_name(other),
                        short(other)
                    ),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An optional object whose values are all strings.
    pub fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Object(map) = v else {
            return Err(self.type_error(key, "an object of strings", v));
        };
        let path = self.key_path(key);
        map.iter()
            .map(|(k, item)| match item {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(Refusal::new(
                    BAD_CONFIG,
                    format!(
                        "config key `{}`: expected a string, got {} {}",
                        join(&path, k),
                        type_name(other),
                        short(other)
                    ),
                )),
            })
            .collect::<Result<BTreeMap<_, _>>>()
            .map(Some)
    }

    /// An optional nested object.
    pub fn object(&self, key: &str) -> Result<Option<ConfigObject<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(ConfigObject {
                path: self.key_path(key),
                map,
            })),
            Some(other) => Err(self.type_error(key, "an object", other)),
        }
    }

    /// An optional list of objects.
    pub fn objects(&self, key: &str) -> Result<Option<Vec<ConfigObject<'a>>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.type_error(key, "a list of objects", v));
        };
        let path = self.key_path(key);
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(ConfigObject {
                    path: format!("{path}[{i}]"),
                    map,
                }),
                other => Err(Refusal::new(
                    BAD_CONFIG,
                    format!(
                        "config key `{path}[{i}]`: expected an object, got {} {}",
                        type_name(other),
                        short(other)
                    ),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The entries of an object of objects (e.g. `{"teams": {"a": {...}}}`),
    /// each value as a nested object.
    pub fn object_map(&self, key: &str) -> Result<Option<Vec<(String, ConfigObject<'a>)>>> {
        let Some(outer) = self.object(key)? else {
            return Ok(None);
        };
        outer
            .map
            .iter()
            .map(|(k, item)| {
                let path = join(&outer.path, k);
                match item {
                    Value::Object(map) => Ok((k.clone(), ConfigObject { path, map })),
                    other => Err(Refusal::new(
                        BAD_CONFIG,
                        format!(
                            "config key `{path}`: expected an object, got {} {}",
                            type_name(other),
                            short(other)
                        ),
                    )),
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_and_null_config_is_an_empty_object() {
        assert_eq!(parse("").ok(), Some(json!({})));
        assert_eq!(parse(" null ").ok(), Some(json!({})));
        let err = parse("{").expect_err("invalid");
        assert!(err.message.starts_with("config is not valid JSON"), "{err}");
    }

    #[test]
    fn root_must_be_an_object() {
        let v = json!([1]);
        let err = ConfigObject::root(&v).expect_err("array");
        assert_eq!(err.message, "config must be a JSON object, got array [1]");
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let v = json!({"rules": [{"tag": "a"}, {"tagg": "b"}]});
        let cfg = ConfigObject::root(&v).expect("object");
        assert!(cfg.allow_only(&["rules"]).is_ok());
        let rules = cfg.objects("rules").expect("list").unwrap_or_default();
        assert!(rules[0].allow_only(&["tag"]).is_ok());
        let err = rules[1].allow_only(&["tag", "label"]).expect_err("unknown");
        assert_eq!(
            err.message,
            "config: unknown key `rules[1].tagg` (allowed: tag, label)"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let v = json!({"n": "5", "s": 1, "b": "yes", "l": ["a", 2], "m": {"k": true}, "o": 1, "neg": -1});
        let cfg = ConfigObject::root(&v).expect("object");
        let msg = |r: Refusal| r.message;
        assert_eq!(
            msg(cfg.u32("n").expect_err("string")),
            "config key `n`: expected an integer from 0 to 4294967295, got string \"5\""
        );
        assert!(cfg.u32("neg").is_err());
        assert_eq!(
            msg(cfg.str("s").expect_err("number")),
            "config key `s`: expected a string, got number 1"
        );
        assert!(cfg.bool("b").is_err());
        assert_eq!(
            msg(cfg.strings("l").expect_err("number")),
            "config key `l[1]`: expected a string, got number 2"
        );
        assert_eq!(
            msg(cfg.string_map("m").expect_err("bool")),
            "config key `m.k`: expected a string, got boolean true"
        );
        assert!(cfg.object("o").is_err());
        assert!(cfg.objects("o").is_err());
    }

    #[test]
    fn absent_and_null_keys_are_none() {
        let v = json!({"a": null});
        let cfg = ConfigObject::root(&v).expect("object");
        assert_eq!(cfg.str("a").ok(), Some(None));
        assert_eq!(cfg.u32("b").ok(), Some(None));
        let err = cfg
            .required("a", cfg.str("a").ok().flatten())
            .expect_err("missing");
        assert_eq!(err.message, "config: missing key `a`");
    }

    #[test]
    fn object_maps_nest_paths() {
        let v = json!({"teams": {"a": {"max": 1}, "b": 2}});
        let cfg = ConfigObject::root(&v).expect("object");
        let err = cfg.object_map("teams").expect_err("b is a number");
        assert_eq!(
            err.message,
            "config key `teams.b`: expected an object, got number 2"
        );
        let v = json!({"teams": {"a": {"max": "x"}}});
        let cfg = ConfigObject::root(&v).expect("object");
        let teams = cfg.object_map("teams").expect("ok").unwrap_or_default();
        let err = teams[0].1.u32("max").expect_err("string");
        assert!(err.message.starts_with("config key `teams.a.max`"), "{err}");
    }

    #[test]
    fn non_empty_strings() {
        let v = json!({"a": ""});
        let cfg = ConfigObject::root(&v).expect("object");
        assert_eq!(
            cfg.non_empty_str("a").expect_err("empty").message,
            "config key `a`: must not be empty"
        );
    }
}
