//! A plugin's refusal: of the run (inside an [`crate::Admission::Reject`] or
//! [`crate::Mutation::Reject`]), or to decide at all (the `Err` of every
//! call: the host records it and applies the binding's on-error policy; from
//! `validate-config`, it refuses the binding).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The code of a config the plugin cannot use.
pub const BAD_CONFIG: &str = "bad-config";
/// The code of a job the plugin cannot read.
pub const BAD_JOB: &str = "bad-job";
/// The code of run data the plugin cannot read (e.g. parameters that are
/// not a JSON object).
pub const BAD_RUN: &str = "bad-run";

/// The WIT `refusal`: a stable, machine-readable `code` (1 to 64 of `a-z`,
/// `0-9` and `-`: the host refuses any other as invalid output), a message
/// for people (the host clips it to 1 KiB), and optional details (a JSON
/// object, at most 16 KiB), kept and shown as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
}

impl Refusal {
    /// A refusal with `code` and `message` and no details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }

    /// The same refusal with `details`, a JSON object (anything else is
    /// kept as `{"value": details}`).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(match details {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        });
        self
    }

    /// Prefixes the message with some context: `"{context}: {message}"`.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Whether `code` is one the host accepts: 1 to 64 of `a-z`, `0-9`, `-`.
    pub fn is_valid_code(code: &str) -> bool {
        (1..=64).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// The details as JSON text (what the WIT record carries).
    pub fn details_json(&self) -> Option<String> {
        self.details
            .as_ref()
            .map(|d| Value::Object(d.clone()).to_string())
    }
}

impl fmt::Display for Refusal {
    /// `[code] message`, as Weir's history shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}

/// `Result` with [`Refusal`] as the error: `Err` is a refusal to decide.
pub type Result<T, E = Refusal> = std::result::Result<T, E>;

/// Returns early with `Err(Refusal::new(code, format!(...)))`.
///
/// ```
/// # use weir_plugin_sdk::{Result, bail};
/// fn check(n: i64) -> Result<i64> {
///     if n < 0 {
///         bail!("negative", "n must be at least 0, got {n}");
///     }
///     Ok(n)
/// }
/// assert_eq!(check(-1).unwrap_err().to_string(), "[negative] n must be at least 0, got -1");
/// ```
#[macro_export]
macro_rules! bail {
    ($code:expr, $($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Refusal::new($code, ::std::format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes() {
        assert!(Refusal::is_valid_code("quota-exceeded"));
        assert!(Refusal::is_valid_code("a1"));
        assert!(!Refusal::is_valid_code(""));
        assert!(!Refusal::is_valid_code("Not A Code"));
        assert!(!Refusal::is_valid_code("under_score"));
        assert!(!Refusal::is_valid_code(&"a".repeat(65)));
    }

    #[test]
    fn details_are_an_object() {
        let r = Refusal::new("x", "m").with_details(json!({"a": 1}));
        assert_eq!(r.details_json().as_deref(), Some(r#"{"a":1}"#));
        let r = Refusal::new("x", "m").with_details(json!([1]));
        assert_eq!(r.details_json().as_deref(), Some(r#"{"value":[1]}"#));
        assert_eq!(Refusal::new("x", "m").details_json(), None);
        assert_eq!(
            Refusal::new("x", "m").context("ctx").to_string(),
            "[x] ctx: m"
        );
    }
}
