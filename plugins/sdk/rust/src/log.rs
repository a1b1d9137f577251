//! Structured logging into the host's tracing (the WIT `log` import), tagged
//! by the host with the plugin's name and the run.
//!
//! ```
//! use weir_plugin_sdk::log;
//! let team = "data";
//! log::info("deferring run", &[("team", &team), ("running", &3)]);
//! ```
//!
//! Inside a component the `export_*!` macros route records to the host.
//! Elsewhere (native unit tests) records are kept per thread and can be read
//! with [`take`].

use std::cell::RefCell;
use std::fmt::Display;
use std::sync::OnceLock;

/// The WIT `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// Where records go: the host's `log` import, set by the export macros.
pub type Sink = fn(Level, &str, &[(String, String)]);

static SINK: OnceLock<Sink> = OnceLock::new();

const MAX_KEPT: usize = 1_000;

thread_local! {
    static KEPT: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
}

/// Sends records to `sink` from now on (the export macros call this; a second
/// call is ignored).
pub fn set_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Logs `message` with `fields` (values are formatted with `Display`).
pub fn log(level: Level, message: &str, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect();
    match SINK.get() {
        Some(sink) => sink(level, message, &fields),
        None => KEPT.with(|kept| {
            let mut kept = kept.borrow_mut();
            if kept.len() < MAX_KEPT {
                kept.push(Record {
                    level,
                    message: message.to_owned(),
                    fields,
                });
            }
        }),
    }
}

pub fn trace(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Trace, message, fields);
}

pub fn debug(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Debug, message, fields);
}

pub fn info(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Info, message, fields);
}

pub fn warn(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Warn, message, fields);
}

pub fn error(message: &str, fields: &[(&str, &dyn Display)]) {
    log(Level::Error, message, fields);
}

/// Takes the records this thread logged while no sink was set (native tests).
pub fn take() -> Vec<Record> {
    KEPT.with(|kept| std::mem::take(&mut *kept.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_without_a_sink() {
        let _ = take();
        info("hello", &[("team", &"a"), ("n", &3)]);
        warn("careful", &[]);
        let records = take();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].level, Level::Info);
        assert_eq!(
            records[0].fields,
            vec![
                ("team".to_owned(), "a".to_owned()),
                ("n".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(records[1].message, "careful");
        assert!(take().is_empty());
    }
}
