//! What a caller (HTTP body or config file) asks for, and the checks every
//! resource's fields pass. The API and the config file both deserialize
//! these, so validation lives in one place.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::dispatcher::DispatchError;
use crate::domain::{LateAction, MAX_TAGS, PoolType, RetryPolicy, ValidationError, validate_tag};
use crate::template::BaseJobTemplate;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    #[serde(default)]
    pub base_job_template: Option<Value>,
    /// Kubernetes pools: a named cluster connection from the server's
    /// configuration (default: the server's default connection).
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolUpdate {
    #[serde(default)]
    pub base_job_template: Option<Value>,
    #[serde(default, with = "double_option")]
    pub cluster: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub concurrency_limit: Option<Option<u32>>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    pub name: String,
    #[serde(default = "one")]
    pub priority: u32,
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub description: String,
    /// Seconds past its time after which a Scheduled run turns Late
    /// (absent: the server's `late_after_seconds`).
    #[serde(default)]
    pub late_after_seconds: Option<u32>,
    /// `keep` (default) or `cancel`: what happens to a run that turns Late.
    #[serde(default)]
    pub late_action: LateAction,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueUpdate {
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default, with = "double_option")]
    pub concurrency_limit: Option<Option<u32>>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, with = "double_option")]
    pub late_after_seconds: Option<Option<u32>>,
    #[serde(default)]
    pub late_action: Option<LateAction>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub tag: String,
    pub limit: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub name: String,
    pub pool: String,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub job_variables: Map<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub retries: RetryPolicy,
    /// The team whose submitter tokens may run it.
    #[serde(default)]
    pub team: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentUpdate {
    #[serde(default, with = "double_option")]
    pub queue: Option<Option<String>>,
    #[serde(default)]
    pub job_variables: Option<Map<String, Value>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub retries: Option<RetryPolicy>,
    /// `null` removes the team.
    #[serde(default, with = "double_option")]
    pub team: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderSpec {
    #[serde(default)]
    pub job_variables: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// Serde helper: a missing field is `None`, an explicit `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A limit of 0 holds every run; limits above this are surely typos.
const MAX_LIMIT: u32 = 1_000_000;
pub(crate) const MAX_KEY_LEN: usize = 256;

pub(crate) fn validate_limit(field: &str, value: Option<u32>) -> Result<(), ValidationError> {
    match value {
        Some(v) if v > MAX_LIMIT => Err(ValidationError::new(
            field,
            format!("must be at most {MAX_LIMIT}"),
        )),
        _ => Ok(()),
    }
}

/// The longest late threshold a queue may set: 30 days.
const MAX_LATE_AFTER: u32 = 30 * 24 * 3600;

pub(crate) fn validate_late_after(field: &str, value: Option<u32>) -> Result<(), ValidationError> {
    match value {
        Some(v) if v == 0 || v > MAX_LATE_AFTER => Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_LATE_AFTER} seconds (30 days), not {v}"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn validate_priority(field: &str, value: u32) -> Result<(), ValidationError> {
    if value == 0 || value > 1000 {
        return Err(ValidationError::new(
            field,
            "must be between 1 (served first) and 1000",
        ));
    }
    Ok(())
}

pub(crate) fn validate_tags(field: &str, tags: &[String]) -> Result<Vec<String>, ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        validate_tag(&format!("{field}[{i}]"), t)?;
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

pub(crate) fn validate_description(field: &str, d: &str) -> Result<(), ValidationError> {
    if d.len() > 4096 {
        return Err(ValidationError::new(field, "must be at most 4096 bytes"));
    }
    Ok(())
}

pub(crate) fn parse_template(
    pool_type: PoolType,
    value: Option<Value>,
) -> Result<BaseJobTemplate, DispatchError> {
    let template = match value {
        None => BaseJobTemplate::default_for(pool_type.template_kind()),
        Some(v) => BaseJobTemplate::from_value(v)?,
    };
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::submit::merge_parameters;

    #[test]
    fn parameters_merge_key_by_key() {
        let base = serde_json::json!({"a": 1, "b": 2})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let over = serde_json::json!({"b": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            Value::Object(merge_parameters(&base, &over)),
            serde_json::json!({"a": 1, "b": 3})
        );
    }

    #[test]
    fn tags_are_validated_and_deduplicated() {
        let tags = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert_eq!(
            validate_tags("tags", &tags).ok(),
            Some(vec!["a".into(), "b".into()])
        );
        let err = validate_tags("tags", &["ok".into(), "not ok".into()]).expect_err("space");
        assert_eq!(err.field, "tags[1]");
    }

    #[test]
    fn update_distinguishes_null_from_missing() {
        let u: PoolUpdate =
            serde_json::from_str(r#"{"concurrency_limit": null}"#).unwrap_or_default();
        assert_eq!(u.concurrency_limit, Some(None));
        let u: PoolUpdate = serde_json::from_str(r#"{}"#).unwrap_or_default();
        assert_eq!(u.concurrency_limit, None);
        let u: PoolUpdate = serde_json::from_str(r#"{"concurrency_limit": 3}"#).unwrap_or_default();
        assert_eq!(u.concurrency_limit, Some(Some(3)));
    }
}
