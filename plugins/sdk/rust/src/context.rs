//! Plain Rust versions of the WIT records a plugin receives and returns.
//!
//! They are independent of any `generate!` call, so plugin logic written
//! against them runs (and is unit-tested) natively; the `export_*!` macros
//! convert between them and the bindings generated in the plugin crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{PluginError, Result};
use crate::json::type_name;

/// What a plugin knows about the run it judges (the WIT `run-context`), with
/// `labels` as a map and `parameters` / `job-variables` parsed from their JSON
/// text.
///
/// Its serde form is the `run.json` that `weir plugin test --ctx` reads: the
/// WIT field names with `_`, and `labels`, `parameters`, `job_variables` as
/// JSON objects. Missing fields take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunContext {
    /// The run's id (a UUIDv7, as text).
    pub run_id: String,
    /// The deployment the run was created from, if any.
    pub deployment: Option<String>,
    /// The pool and queue chosen so far (routers may change them).
    pub pool: String,
    pub queue: String,
    /// The run's tags (deployment tags plus run tags).
    pub tags: Vec<String>,
    /// The run's labels (the merged `labels` job variable). If the host sends
    /// a key twice, the last value wins.
    pub labels: BTreeMap<String, String>,
    /// The run's parameters.
    pub parameters: Map<String, Value>,
    /// The run's own job variables (merged over the deployment's).
    pub job_variables: Map<String, Value>,
    /// The parent run's id, for a child run.
    pub parent_run: Option<String>,
}

impl RunContext {
    /// Parses a `run.json` document (see the type's docs).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| PluginError::new(format!("invalid run context: {e}")))
    }

    /// Builds the context from the WIT record's fields, parsing `parameters`
    /// and `job_variables` (JSON text of objects; empty text or `null` is an
    /// empty object).
    #[allow(clippy::too_many_arguments)]
    pub fn from_wit(
        run_id: String,
        deployment: Option<String>,
        pool: String,
        queue: String,
        tags: Vec<String>,
        labels: Vec<(String, String)>,
        parameters: &str,
        job_variables: &str,
        parent_run: Option<String>,
    ) -> Result<Self> {
        Ok(Self {
            run_id,
            deployment,
            pool,
            queue,
            tags,
            labels: labels.into_iter().collect(),
            parameters: parse_object("parameters", parameters)?,
            job_variables: parse_object("job-variables", job_variables)?,
            parent_run,
        })
    }

    /// Whether the run carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The value of the run's label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The parameter `key`, unless absent or `null`.
    pub fn parameter(&self, key: &str) -> Option<&Value> {
        self.parameters.get(key).filter(|v| !v.is_null())
    }

    /// The job variable `key`, unless absent or `null`.
    pub fn job_variable(&self, key: &str) -> Option<&Value> {
        self.job_variables.get(key).filter(|v| !v.is_null())
    }
}

/// Parses JSON text that must hold an object (`what` names it in errors).
/// Empty text and `null` give an empty object.
pub fn parse_object(what: &str, text: &str) -> Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(PluginError::new(format!(
            "{what} must be a JSON object, got {}",
            type_name(&other)
        ))),
        Err(e) => Err(PluginError::new(format!("{what} is not valid JSON: {e}"))),
    }
}

/// Runs holding slots and runs waiting (the WIT `counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Counts {
    /// Runs holding slots (Pending, Running, Cancelling).
    pub running: u32,
    /// Runs waiting (Scheduled, Late, AwaitingRetry).
    pub queued: u32,
}

/// What a quota needs to know (the WIT `stats`), with the per-tag counts as a
/// map. Its serde form (for tests and `weir plugin test`) uses `_` names and
/// `tags` as an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stats {
    pub pool: Counts,
    pub queue: Counts,
    pub tags: BTreeMap<String, Counts>,
    /// The run's `team` label (as the host reads it), if any.
    pub team: Option<String>,
    /// The counts of runs with that `team` label.
    pub team_counts: Counts,
}

/// A router's decision (the WIT `route`): unset fields keep the current choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    pub pool: Option<String>,
    pub queue: Option<String>,
    pub add_tags: Vec<String>,
}

impl Route {
    /// Keep the current pool and queue, add no tags.
    pub fn unchanged() -> Self {
        Self::default()
    }
}

/// An admission decision (the WIT `admission` variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    Admit,
    /// Rejected, with the reason.
    Reject(String),
    /// Judge the run again after `seconds`.
    Defer {
        seconds: u32,
        reason: String,
    },
}

impl Admission {
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Reject(reason.into())
    }

    pub fn defer(seconds: u32, reason: impl Into<String>) -> Self {
        Self::Defer {
            seconds,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_parses_with_objects() {
        let ctx = RunContext::from_json(
            r#"{"run_id": "r", "deployment": "d", "pool": "p", "queue": "default", "tags": ["gpu"],
                "labels": {"team": "a"}, "parameters": {"n": 1}, "job_variables": {"image": "x"},
                "parent_run": null}"#,
        )
        .expect("valid run.json");
        assert!(ctx.has_tag("gpu"));
        assert!(!ctx.has_tag("cpu"));
        assert_eq!(ctx.label("team"), Some("a"));
        assert_eq!(ctx.parameter("n"), Some(&Value::from(1)));
        assert_eq!(ctx.job_variable("image"), Some(&Value::from("x")));
        assert_eq!(ctx.deployment.as_deref(), Some("d"));
    }

    #[test]
    fn run_json_rejects_unknown_fields() {
        let err = RunContext::from_json(r#"{"run": "r"}"#).expect_err("unknown field");
        assert!(err.message.contains("unknown field `run`"), "{err}");
    }

    #[test]
    fn from_wit_parses_json_text() {
        let ctx = RunContext::from_wit(
            "r".into(),
            None,
            "p".into(),
            "q".into(),
            vec![],
            vec![("team".into(), "a".into()), ("team".into(), "b".into())],
            r#"{"gpus": 2}"#,
            "",
            None,
        )
        .expect("valid");
        assert_eq!(ctx.label("team"), Some("b"));
        assert_eq!(ctx.parameter("gpus"), Some(&Value::from(2)));
        assert!(ctx.job_variables.is_empty());
    }

    #[test]
    fn from_wit_names_bad_json() {
        let err = RunContext::from_wit(
            "r".into(),
            None,
            "p".into(),
            "q".into(),
            vec![],
            vec![],
            "[1]",
            "{}",
            None,
        )
        .expect_err("array");
        assert_eq!(err.message, "parameters must be a JSON object, got array");
        let err = parse_object("job-variables", "{").expect_err("bad json");
        assert!(
            err.message.starts_with("job-variables is not valid JSON"),
            "{err}"
        );
        assert_eq!(parse_object("x", "null"), Ok(Map::new()));
    }

    #[test]
    fn stats_and_admission_serde_forms() {
        let stats: Stats = serde_json::from_str(
            r#"{"team": "a", "team_counts": {"running": 3}, "tags": {"gpu": {"queued": 2}}}"#,
        )
        .expect("valid stats");
        assert_eq!(stats.team_counts.running, 3);
        assert_eq!(stats.tags["gpu"].queued, 2);
        assert_eq!(
            serde_json::to_value(Admission::defer(5, "busy")).expect("serializes"),
            serde_json::json!({"defer": {"seconds": 5, "reason": "busy"}})
        );
    }
}
