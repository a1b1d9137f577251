//! Runs whose stored rows cannot be read back, and how they are set aside.
//!
//! Weir refuses to write what it cannot read back ([`super::encode_json`]),
//! but a data directory or database written by an older Weir (or damaged)
//! may hold such a row. One run's bad row must not keep the host from
//! starting (every start would fail the same way: a crash loop), so at start
//! the leader looks for unfinished runs whose rows do not read back, and
//! ends each one Crashed with the reason. What cannot be read is replaced by
//! a readable placeholder, and the start of its raw text is kept as a JSON
//! string (which reads back whatever it holds) in the run's history.
//!
//! The rules are here, once; each dialect runs the SQL.

use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::domain::{Cause, HistoryEntry, RunState};

/// The JSON columns of a run row, each with the placeholder that replaces
/// unreadable text (`None`: SQL NULL).
pub(crate) const RUN_JSON_COLUMNS: [(&str, Option<&str>); 5] = [
    ("job", None),
    ("tags", Some("[]")),
    ("labels", Some("{}")),
    ("parameters", Some("{}")),
    ("job_variables", Some("{}")),
];

/// How much of an unreadable document's raw text is kept.
const KEPT_BYTES: usize = 4096;

/// Why `raw`, the text of `column`, does not read back as that column's
/// type, or `None` when it does.
pub(crate) fn unreadable(column: &str, raw: Option<&str>) -> Option<String> {
    let raw = raw?;
    let result = match column {
        "tags" => super::decode_json::<Vec<String>>(column, raw).map(drop),
        "labels" | "parameters" | "job_variables" => {
            super::decode_json::<Map<String, Value>>(column, raw).map(drop)
        }
        _ => super::decode_json::<Value>(column, raw).map(drop),
    };
    result.err().map(|e| e.to_string())
}

/// A readable stand-in for unreadable text, for columns (a submission's
/// target, a history line's detail) that hold any JSON.
pub(crate) fn set_aside(raw: &str) -> String {
    json!({"set_aside": clip(raw), "bytes": raw.len()}).to_string()
}

fn clip(raw: &str) -> &str {
    let mut end = raw.len().min(KEPT_BYTES);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    &raw[..end]
}

/// The history line of a quarantined run: why, and the start of each
/// unreadable column's raw text.
pub(crate) fn entry(reason: &str, columns: &[(String, String)]) -> HistoryEntry {
    let set_aside: Map<String, Value> = columns
        .iter()
        .map(|(column, raw)| {
            (
                column.clone(),
                json!({"text": clip(raw), "bytes": raw.len()}),
            )
        })
        .collect();
    HistoryEntry {
        state: RunState::Crashed,
        at: Utc::now(),
        message: reason.to_owned(),
        cause: Cause::RECOVERY.to_owned(),
        detail: Some(json!({ "set_aside": set_aside })),
    }
}

/// The reason recorded for a run whose rows did not read back.
pub(crate) fn reason(why: &str) -> String {
    format!(
        "its stored data could not be read back ({why}); the run was ended so that Weir could start, and what could not be read was set aside in this line"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_text_is_told_and_set_aside_readably() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(unreadable("job", Some(&deep)).is_some());
        assert!(unreadable("job", Some("{\"a\": 1}")).is_none());
        assert!(unreadable("job", None).is_none());
        assert!(unreadable("tags", Some("{}")).is_some(), "tags are a list");
        assert!(
            unreadable("labels", Some("[]")).is_some(),
            "labels are an object"
        );
        let kept: Value = serde_json::from_str(&set_aside(&deep)).expect("reads back");
        assert_eq!(kept["bytes"], 400);
        let line = entry("why", &[("job".into(), deep.clone())]);
        let text = serde_json::to_string(&line).expect("encodes");
        let back: HistoryEntry = serde_json::from_str(&text).expect("reads back");
        assert_eq!(
            back.detail.expect("detail")["set_aside"]["job"]["bytes"],
            400
        );
    }
}
