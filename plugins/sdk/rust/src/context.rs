//! Plain Rust versions of what a plugin receives and returns.
//!
//! They are independent of any `generate!` call, so plugin logic written
//! against them runs (and is unit-tested) natively; the `export_*!` macros
//! convert between them and the bindings generated in the plugin crate.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{BAD_RUN, Refusal, Result};
use crate::job::Job;
use crate::json::type_name;
use crate::patch::PatchOp;

/// The backend of a pool (the WIT `pool-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolType {
    Process,
    Kubernetes,
}

/// What a plugin knows about the run it judges (the WIT `run` resource, read
/// once), with `labels` as a map and `parameters` / `job-variables` parsed
/// from their JSON text.
///
/// Its serde form is the `run.json` that `weir plugin test --ctx` reads: the
/// getters' names with `_` (the id as `run_id`), and `labels`, `parameters`,
/// `job_variables` as JSON objects. Missing fields take their defaults.
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
    /// The type of the pool chosen so far; `None` if no pool of that name
    /// exists (only a router can see that). In `run.json` it is left out:
    /// `weir plugin test` reads it from `--stats` (`pool_type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<PoolType>,
    /// The run's tags (deployment tags plus run tags, plus those routers
    /// added).
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
            .map_err(|e| Refusal::new(BAD_RUN, format!("invalid run context: {e}")))
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

    /// A value a run may give as a job variable or as a parameter: the job
    /// variable `key` if set (not `null`), else the parameter; with which
    /// of the two it was (`"job variable"` or `"parameter"`), for messages.
    pub fn setting(&self, key: &str) -> Option<(&'static str, &Value)> {
        self.job_variable(key)
            .map(|v| ("job variable", v))
            .or_else(|| self.parameter(key).map(|v| ("parameter", v)))
    }
}

/// Parses JSON text that must hold an object (`what` names it in errors,
/// with the code `bad-run`). Empty text and `null` give an empty object.
pub fn parse_object(what: &str, text: &str) -> Result<Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(Refusal::new(
            BAD_RUN,
            format!("{what} must be a JSON object, got {}", type_name(&other)),
        )),
        Err(e) => Err(Refusal::new(
            BAD_RUN,
            format!("{what} is not valid JSON: {e}"),
        )),
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

/// What an occupancy question is about (the WIT `scope`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The judged run's pool.
    Pool,
    /// The judged run's queue.
    Queue,
    /// Runs carrying this tag.
    Tag(String),
    /// Runs whose label `key` has `value`.
    Label { key: String, value: String },
}

impl Scope {
    pub fn tag(tag: impl Into<String>) -> Self {
        Self::Tag(tag.into())
    }

    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Label {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Load, asked for when needed (the WIT `stats` import). Each distinct
/// question is one read of the host's store, remembered for the rest of the
/// decision; a decision may ask at most 64.
///
/// Inside a component the export macros pass the host's answers; in native
/// tests use a [`StatsTable`].
pub trait Stats {
    fn occupancy(&self, scope: &Scope) -> Counts;
}

/// Fixed answers to occupancy questions, for native tests. Its serde form is
/// the `stats.json` that `weir plugin test --stats` reads: `pool`, `queue`,
/// `tags` `{TAG: counts}`, `labels` `{KEY: {VALUE: counts}}` and
/// `pool_type`. Unlisted scopes count zero. It remembers what was asked
/// ([`StatsTable::asked`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsTable {
    pub pool: Counts,
    pub queue: Counts,
    pub tags: BTreeMap<String, Counts>,
    pub labels: BTreeMap<String, BTreeMap<String, Counts>>,
    /// What `weir plugin test` answers for the run's pool type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<PoolType>,
    #[serde(skip)]
    asked: RefCell<Vec<Scope>>,
}

impl StatsTable {
    /// Parses a `stats.json` document (see the type's docs).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Refusal::new(BAD_RUN, format!("invalid stats: {e}")))
    }

    /// Sets the counts of runs whose label `key` has `value`.
    pub fn with_label(mut self, key: &str, value: &str, counts: Counts) -> Self {
        self.labels
            .entry(key.to_owned())
            .or_default()
            .insert(value.to_owned(), counts);
        self
    }

    /// Sets the counts of runs carrying `tag`.
    pub fn with_tag(mut self, tag: &str, counts: Counts) -> Self {
        self.tags.insert(tag.to_owned(), counts);
        self
    }

    /// The questions asked so far, in order.
    pub fn asked(&self) -> Vec<Scope> {
        self.asked.borrow().clone()
    }
}

impl Stats for StatsTable {
    fn occupancy(&self, scope: &Scope) -> Counts {
        self.asked.borrow_mut().push(scope.clone());
        match scope {
            Scope::Pool => self.pool,
            Scope::Queue => self.queue,
            Scope::Tag(tag) => self.tags.get(tag).copied().unwrap_or_default(),
            Scope::Label { key, value } => self
                .labels
                .get(key)
                .and_then(|values| values.get(value))
                .copied()
                .unwrap_or_default(),
        }
    }
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
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admit,
    /// Rejected: the run ends Failed with this refusal.
    Reject(Refusal),
    /// Judge the run again after `seconds` (at most 86,400).
    Defer {
        seconds: u32,
        reason: String,
    },
}

impl Admission {
    /// Rejects with `code` and `message`; add details with
    /// [`Refusal::with_details`] on [`Admission::Reject`] directly.
    pub fn reject(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Reject(Refusal::new(code, message))
    }

    pub fn defer(seconds: u32, reason: impl Into<String>) -> Self {
        Self::Defer {
            seconds,
            reason: reason.into(),
        }
    }
}

/// A mutator's decision (the WIT `mutation` variant).
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// The job, changed (or not): the host computes the patch from the job
    /// it passed in, checks it against the forbidden paths and records it.
    Job(Job),
    /// RFC 6902 operations on the job, as in contract 0.1.0.
    Patch(Vec<PatchOp>),
    /// The run ends Failed with this refusal.
    Reject(Refusal),
}

impl Mutation {
    pub fn reject(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Reject(Refusal::new(code, message))
    }

    /// The job the host would run: the changed job, or `original` with the
    /// operations applied. `None` for a rejection. For native tests.
    pub fn job(&self, original: &Value) -> Result<Option<Value>> {
        match self {
            Self::Job(job) => Ok(Some(job.value().clone())),
            Self::Patch(ops) => {
                let mut doc = original.clone();
                crate::patch::apply(&mut doc, ops)?;
                Ok(Some(doc))
            }
            Self::Reject(_) => Ok(None),
        }
    }
}

/// The plugin's description (the WIT `description`), returned by
/// [`crate::Plugin::describe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The plugin's own name (at most 128 bytes).
    pub name: String,
    /// Its version, e.g. `1.2.0` (at most 64 bytes).
    pub version: String,
    /// One line for people.
    pub summary: String,
    /// The JSON Schema of its config: the host checks a binding's config
    /// against it before `validate-config`.
    pub config_schema: Option<Value>,
}

impl Description {
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            summary: summary.into(),
            config_schema: None,
        }
    }

    /// The same description with a config schema.
    pub fn with_config_schema(mut self, schema: Value) -> Self {
        self.config_schema = Some(schema);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_json_parses_with_objects() {
        let ctx = RunContext::from_json(
            r#"{"run_id": "r", "deployment": "d", "pool": "p", "queue": "default", "tags": ["gpu"],
                "labels": {"team": "a"}, "parameters": {"n": 1, "gpus": 1},
                "job_variables": {"image": "x", "gpus": 2}, "parent_run": null}"#,
        )
        .expect("valid run.json");
        assert!(ctx.has_tag("gpu"));
        assert!(!ctx.has_tag("cpu"));
        assert_eq!(ctx.label("team"), Some("a"));
        assert_eq!(ctx.parameter("n"), Some(&Value::from(1)));
        assert_eq!(ctx.job_variable("image"), Some(&Value::from("x")));
        assert_eq!(ctx.setting("gpus"), Some(("job variable", &Value::from(2))));
        assert_eq!(ctx.setting("n"), Some(("parameter", &Value::from(1))));
        assert_eq!(ctx.setting("none"), None);
        assert_eq!(ctx.deployment.as_deref(), Some("d"));
        assert_eq!(ctx.pool_type, None);
    }

    #[test]
    fn run_json_rejects_unknown_fields() {
        let err = RunContext::from_json(r#"{"run": "r"}"#).expect_err("unknown field");
        assert_eq!(err.code, BAD_RUN);
        assert!(err.message.contains("unknown field `run`"), "{err}");
    }

    #[test]
    fn parse_object_names_bad_json() {
        assert_eq!(
            parse_object("parameters", "[1]")
                .expect_err("array")
                .message,
            "parameters must be a JSON object, got array"
        );
        let err = parse_object("job-variables", "{").expect_err("bad json");
        assert!(
            err.message.starts_with("job-variables is not valid JSON"),
            "{err}"
        );
        assert_eq!(parse_object("x", "null"), Ok(Map::new()));
        assert_eq!(parse_object("x", " "), Ok(Map::new()));
    }

    #[test]
    fn stats_json_answers_and_remembers_questions() {
        let stats = StatsTable::from_json(
            r#"{"pool_type": "kubernetes", "pool": {"running": 3, "queued": 1},
                "tags": {"gpu": {"queued": 2}}, "labels": {"team": {"a": {"running": 2}}}}"#,
        )
        .expect("valid stats");
        assert_eq!(stats.pool_type, Some(PoolType::Kubernetes));
        assert_eq!(stats.occupancy(&Scope::Pool).running, 3);
        assert_eq!(stats.occupancy(&Scope::tag("gpu")).queued, 2);
        assert_eq!(stats.occupancy(&Scope::label("team", "a")).running, 2);
        assert_eq!(
            stats.occupancy(&Scope::label("team", "b")),
            Counts::default()
        );
        assert_eq!(stats.occupancy(&Scope::Queue), Counts::default());
        assert_eq!(stats.asked().len(), 5);
        assert!(StatsTable::from_json(r#"{"team": "a"}"#).is_err());
        let built = StatsTable::default().with_label(
            "team",
            "a",
            Counts {
                running: 1,
                queued: 0,
            },
        );
        assert_eq!(built.occupancy(&Scope::label("team", "a")).running, 1);
    }

    #[test]
    fn a_mutation_gives_the_job_the_host_would_run() {
        let original = json!({"command": ["true"]});
        let mut job = Job::new(original.clone());
        job.value_mut()["env"] = json!({"A": "1"});
        let changed = json!({"command": ["true"], "env": {"A": "1"}});
        assert_eq!(
            Mutation::Job(job.clone()).job(&original),
            Ok(Some(changed.clone()))
        );
        assert_eq!(
            Mutation::Patch(job.patch()).job(&original),
            Ok(Some(changed))
        );
        assert_eq!(Mutation::reject("no", "never").job(&original), Ok(None));
    }
}
