//! Human output: compact tables, key/value blocks, timestamps; and JSON.

use std::io::Write;

use chrono::{DateTime, Local};
use comfy_table::{CellAlignment, Table, presets};
use serde_json::Value;

use super::CliError;

/// Writes `text` (plus a newline if it lacks one) to stdout. A closed pipe
/// (`weir run ls | head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<(), CliError> {
    if cfg!(test) {
        // Through the test harness's capture.
        print!("{text}{}", if text.ends_with('\n') { "" } else { "\n" });
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    ignore_broken_pipe(result)
}

pub(crate) fn ignore_broken_pipe(result: std::io::Result<()>) -> Result<(), CliError> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Stdout(e)),
        _ => Ok(()),
    }
}

/// Writes a message to stderr (progress and hints that must not mix with
/// machine-readable stdout).
pub(crate) fn note(text: &str) {
    if cfg!(test) {
        eprintln!("{text}");
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

pub(crate) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub(crate) fn emit_json(value: &Value) -> Result<(), CliError> {
    emit(&pretty(value))
}

/// A borderless table: upper-case headers, columns two spaces apart, no
/// trailing spaces.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        t.add_row(row);
    }
    let last = headers.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
        column.set_cell_alignment(CellAlignment::Left);
    }
    t.to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key: value` lines with the values aligned.
pub(crate) fn kv_block(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| {
            format!("{:<width$} {v}", format!("{k}:"))
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `items` array of a list answer.
pub(crate) fn items(list: &Value) -> Result<&Vec<Value>, CliError> {
    list.get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| CliError::Response("a list answer has no \"items\" array".to_string()))
}

/// A field as display text: strings as is, null/missing as "-", others as
/// compact JSON.
pub(crate) fn field(obj: &Value, key: &str) -> String {
    fmt_value(obj.get(key).unwrap_or(&Value::Null))
}

pub(crate) fn fmt_value(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            if a.is_empty() {
                "-".to_string()
            } else {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// A concurrency limit: a number, or "none" when null.
/// A pool's or queue's `waiting` counts in words, most actionable first,
/// e.g. `3 limit, 1 deferred`; `-` when nothing waits.
pub(crate) fn waiting_text(obj: &Value) -> String {
    const REASONS: [&str; 7] = [
        "turn",
        "limit",
        "paused",
        "deferred",
        "retry",
        "scheduled",
        "unsorted",
    ];
    let Some(waiting) = obj.get("waiting") else {
        return "-".to_string();
    };
    let parts: Vec<String> = REASONS
        .iter()
        .filter_map(|reason| {
            let n = waiting.get(*reason).and_then(Value::as_u64)?;
            (n > 0).then(|| format!("{n} {reason}"))
        })
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

pub(crate) fn limit_text(obj: &Value, key: &str) -> String {
    match obj.get(key) {
        None | Some(Value::Null) => "none".to_string(),
        Some(v) => fmt_value(v),
    }
}

/// A timestamp in the short local form used in tables (`2024-05-01 14:03:07`).
pub(crate) fn short_time(obj: &Value, key: &str) -> String {
    match obj.get(key).and_then(Value::as_str) {
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            Err(_) => s.to_string(),
        },
        None => "-".to_string(),
    }
}

/// A timestamp as the server sent it (RFC 3339), or "-".
pub(crate) fn full_time(obj: &Value, key: &str) -> String {
    field(obj, key)
}

/// A time of day in local time for progress lines (`14:03:07.251`).
pub(crate) fn clock_time(obj: &Value, key: &str) -> String {
    match obj.get(key).and_then(Value::as_str) {
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Local).format("%H:%M:%S%.3f").to_string(),
            Err(_) => s.to_string(),
        },
        None => "-".to_string(),
    }
}

pub(crate) fn str_of<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}
