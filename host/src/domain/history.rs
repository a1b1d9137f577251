//! Keeping a run's history bounded.
//!
//! State changes are few per run (a bounded number of attempts, each a few
//! states), but plugin decisions are not: an admission plugin that defers a
//! run again and again is judged again and again. So lines that are not
//! state changes — plugin decisions — join a run's history through
//! [`plan`]: a decision that repeats the run's newest line is folded into it
//! with a count, messages are clipped, and past [`MAX_DECISION_LINES`] lines
//! the rest are only counted, in one summary line. Both store dialects apply
//! the plan; the rule is written once, here.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::HistoryEntry;

/// Lines a run's history holds before further plugin decisions are only
/// counted in a summary line.
pub(crate) const MAX_DECISION_LINES: usize = 200;

/// A history line's message is clipped to this many bytes.
pub(crate) const MAX_MESSAGE_BYTES: usize = 2048;

/// The cause of the summary line that counts decisions past the bound.
pub(crate) const SUMMARY_CAUSE: &str = "weir:history";

/// How a plugin-decision line joins a run's history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HistoryWrite {
    /// Append this line.
    Insert(HistoryEntry),
    /// Replace the run's newest line with this one (a repeat folded in, or
    /// the summary's count raised).
    ReplaceLast(HistoryEntry),
}

/// Decides how `new` joins a history of `lines` lines whose newest is `last`.
pub(crate) fn plan(
    lines: usize,
    last: Option<&HistoryEntry>,
    mut new: HistoryEntry,
) -> HistoryWrite {
    clip_message(&mut new.message);
    if let Some(last) = last {
        if repeats(last, &new) {
            return HistoryWrite::ReplaceLast(fold(last, new));
        }
        if lines >= MAX_DECISION_LINES && last.cause == SUMMARY_CAUSE {
            let count = summary_count(last).saturating_add(1);
            return HistoryWrite::ReplaceLast(summary(last.state, count, new.at));
        }
    }
    if lines >= MAX_DECISION_LINES {
        return HistoryWrite::Insert(summary(new.state, 1, new.at));
    }
    HistoryWrite::Insert(new)
}

/// `message` clipped as [`clip_message`] does, borrowed when short enough.
pub(crate) fn clipped(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    let mut owned = message.to_owned();
    clip_message(&mut owned);
    owned.into()
}

/// Clips a message to [`MAX_MESSAGE_BYTES`] on a char boundary, marked.
pub(crate) fn clip_message(message: &mut String) {
    if message.len() <= MAX_MESSAGE_BYTES {
        return;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push('…');
}

/// Fields of a decision's detail that differ between two identical
/// decisions: timing, and what folding adds.
const VOLATILE: [&str; 4] = ["elapsed_ms", "repeated", "first_at", "last_at"];

fn stable(detail: &Option<Value>) -> Option<Value> {
    let mut d = detail.clone()?;
    if let Value::Object(map) = &mut d {
        for key in VOLATILE {
            map.remove(key);
        }
    }
    Some(d)
}

/// The same decision again: same state, same cause, same detail but for
/// timing (so the same plugin version, decision and reason).
fn repeats(last: &HistoryEntry, new: &HistoryEntry) -> bool {
    last.cause != SUMMARY_CAUSE
        && last.state == new.state
        && last.cause == new.cause
        && last.detail.is_some()
        && stable(&last.detail) == stable(&new.detail)
}

fn fold(last: &HistoryEntry, new: HistoryEntry) -> HistoryEntry {
    let repeated = last
        .detail
        .as_ref()
        .and_then(|d| d.get("repeated"))
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .saturating_add(1);
    let mut detail = new.detail.unwrap_or(Value::Null);
    if let Value::Object(map) = &mut detail {
        map.insert("repeated".into(), json!(repeated));
        map.insert("first_at".into(), json!(last.at));
        map.insert("last_at".into(), json!(new.at));
    }
    let mut message = format!(
        "{} [×{repeated}, last at {}]",
        base(&new.message),
        new.at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    clip_message(&mut message);
    HistoryEntry {
        state: last.state,
        // The line keeps its place: when the decision was first made.
        at: last.at,
        message,
        cause: new.cause,
        detail: Some(detail),
    }
}

/// A message without the ` [×N, last at T]` a fold added.
fn base(message: &str) -> &str {
    match message.rfind(" [×") {
        Some(i) if message.ends_with(']') => &message[..i],
        _ => message,
    }
}

fn summary_count(line: &HistoryEntry) -> u64 {
    line.detail
        .as_ref()
        .and_then(|d| d.get("not_recorded"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn summary(state: super::RunState, count: u64, at: DateTime<Utc>) -> HistoryEntry {
    HistoryEntry {
        state,
        at,
        message: format!(
            "{count} further plugin decision(s) not recorded: a run's history keeps at most {MAX_DECISION_LINES} lines"
        ),
        cause: SUMMARY_CAUSE.into(),
        detail: Some(json!({"not_recorded": count, "last_at": at})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunState;

    fn defer(reason: &str, ms: f64, at: i64) -> HistoryEntry {
        HistoryEntry {
            state: RunState::Scheduled,
            at: DateTime::from_timestamp(at, 0).expect("time"),
            message: format!("admission quota@1: defer 5s: {reason} ({ms} ms)"),
            cause: "admission:quota".into(),
            detail: Some(json!({
                "plugin": "quota", "version": 1, "elapsed_ms": ms,
                "decision": {"decision": "defer", "seconds": 5, "reason": reason},
            })),
        }
    }

    fn apply(history: &mut Vec<HistoryEntry>, new: HistoryEntry) {
        match plan(history.len(), history.last(), new) {
            HistoryWrite::Insert(e) => history.push(e),
            HistoryWrite::ReplaceLast(e) => *history.last_mut().expect("a last line") = e,
        }
    }

    #[test]
    fn a_repeated_deferral_is_one_line_with_a_count() {
        let mut h = Vec::new();
        for i in 0..1000 {
            apply(&mut h, defer("team over quota", 0.1 + i as f64, i));
        }
        assert_eq!(h.len(), 1);
        let d = h[0].detail.as_ref().expect("detail");
        assert_eq!(d["repeated"], 1000);
        assert_eq!(h[0].at.timestamp(), 0, "keeps the first time");
        assert!(h[0].message.contains("[×1000"), "{}", h[0].message);
        assert!(!h[0].message.contains("[×999"), "{}", h[0].message);
        // Another reason is another line.
        apply(&mut h, defer("pool busy", 0.2, 2000));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn past_the_bound_decisions_are_counted_in_one_line() {
        let mut h = Vec::new();
        for i in 0..(MAX_DECISION_LINES + 500) {
            apply(&mut h, defer(&format!("reason {i}"), 0.1, i as i64));
        }
        assert_eq!(h.len(), MAX_DECISION_LINES + 1);
        let last = h.last().expect("summary");
        assert_eq!(last.cause, SUMMARY_CAUSE);
        assert_eq!(last.detail.as_ref().expect("detail")["not_recorded"], 500);
    }

    #[test]
    fn messages_are_clipped() {
        let mut h = Vec::new();
        apply(&mut h, defer(&"é".repeat(1 << 20), 0.1, 0));
        assert!(h[0].message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }
}
