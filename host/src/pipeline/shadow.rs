//! Shadow bindings (issue #16): a plugin bound in `shadow` mode judges the
//! same live runs as the enforced chain and its decision is recorded beside
//! the enforced one's, with whether they agree — but it never changes a
//! run, and its failures are recorded, never applied.
//!
//! What it is given: the input its enforced counterpart (the same plugin
//! bound to enforce here) was given, so a new version is compared with the
//! old on the same job; without a counterpart, the input at its place in
//! the order (that of the first enforced binding ordered after it, else the
//! stage's result). Agreement: for admission, the shadow's decision against
//! the stage's verdict (would the run's fate differ?); for routers and
//! mutators, against its counterpart's outcome (route; patch, or reject),
//! none without one.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{cause, detail, entry, ms};
use crate::domain::{HistoryEntry, PluginBinding, PluginVersion, RunState};

/// What an enforced binding was given, and what it decided.
pub(super) struct Seen<T> {
    pub order: i32,
    pub plugin: String,
    pub input: T,
    /// Its outcome as recorded (`None`: it failed or did not decide).
    pub outcome: Option<Value>,
}

/// The input a shadow binding is given, and its counterpart's outcome.
pub(super) fn input_for<'a, T>(
    seen: &'a [Seen<T>],
    shadow: &PluginBinding,
    end: &'a T,
) -> (&'a T, Option<&'a Value>) {
    if let Some(s) = seen.iter().find(|s| s.plugin == shadow.plugin) {
        return (&s.input, s.outcome.as_ref());
    }
    match seen.iter().find(|s| s.order > shadow.order) {
        Some(s) => (&s.input, None),
        None => (end, None),
    }
}

/// Whether a shadow's outcome agrees with the enforced one (see the module
/// doc).
pub(super) fn agrees(world: &str, shadow: &Value, enforced: &Value) -> bool {
    match world {
        "admission" => shadow.get("decision") == enforced.get("decision"),
        "mutator" => match (shadow.get("patch"), enforced.get("patch")) {
            (Some(a), Some(b)) => a == b,
            _ => shadow.get("decision") == enforced.get("decision"),
        },
        _ => shadow == enforced,
    }
}

/// The label a shadow outcome is counted under in the metrics.
pub(super) fn decision_label(outcome: &Result<Value, (String, String)>) -> String {
    match outcome {
        Err(_) => "error".into(),
        Ok(v) => match (v.get("decision").and_then(Value::as_str), v.get("patch")) {
            (Some(d), _) => d.to_owned(),
            (None, Some(_)) => "patch".into(),
            (None, None) => "route".into(),
        },
    }
}

/// The history line of one shadow decision.
#[allow(clippy::too_many_arguments)]
pub(super) fn line(
    b: &PluginBinding,
    version: Option<&PluginVersion>,
    world: &str,
    state: RunState,
    elapsed: Duration,
    outcome: &Result<Value, (String, String)>,
    enforced: Option<&Value>,
    agreement: Option<bool>,
) -> HistoryEntry {
    let mut d: Map<String, Value> = detail(b, version, world, elapsed);
    d.insert("mode".into(), json!("shadow"));
    let said = match outcome {
        Ok(v) => {
            match v.get("patch") {
                Some(ops) => d.insert("patch".into(), ops.clone()),
                None => d.insert("decision".into(), v.clone()),
            };
            summary(v)
        }
        Err((kind, message)) => {
            d.insert("error".into(), json!({"kind": kind, "message": message}));
            format!("failed ({kind}: {message}); ignored (shadow)")
        }
    };
    if let Some(e) = enforced {
        d.insert("enforced".into(), e.clone());
    }
    if let Some(a) = agreement {
        d.insert("agrees".into(), json!(a));
    }
    let label = match version {
        Some(v) => format!("{}@{}", b.plugin, v.version),
        None => b.plugin.clone(),
    };
    let versus = match (enforced, agreement) {
        (Some(e), Some(true)) => format!("; agrees with the enforced {}", summary(e)),
        (Some(e), Some(false)) => format!("; differs from the enforced {}", summary(e)),
        _ => String::new(),
    };
    entry(
        state,
        format!(
            "shadow {world} {label}: {said}{versus} ({} ms)",
            ms(elapsed)
        ),
        cause(world, &b.plugin),
        d,
    )
}

/// An outcome in a few words.
fn summary(v: &Value) -> String {
    if let Some(ops) = v.get("patch").and_then(Value::as_array) {
        return format!("{} patch operation(s)", ops.len());
    }
    match v.get("decision").and_then(Value::as_str) {
        Some(d) => match v.get("reason").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => format!("{d}: {r}"),
            _ => d.to_owned(),
        },
        None => format!("route {v}"),
    }
}
