//! Turning command-line text into JSON: `--param K=V`, `--job-variables
//! JSON|@FILE`, JSON files.

use std::path::Path;

use serde_json::{Map, Value};

use super::CliError;

/// One `--param KEY=VALUE`: the value is JSON if it parses as JSON (`3`,
/// `true`, `null`, `{"a":1}`, `"quoted"`), else the literal string.
pub(crate) fn parse_param(raw: &str) -> Result<(String, Value), CliError> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(CliError::input(
            "--param",
            format!("expected KEY=VALUE, got {raw:?} (no '=')"),
        ));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(CliError::input(
            "--param",
            format!("expected KEY=VALUE, got {raw:?} (empty key)"),
        ));
    }
    let value =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// All `--param`s as an object (a later key wins); `None` when there are none.
pub(crate) fn parse_params(raw: &[String]) -> Result<Option<Map<String, Value>>, CliError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let mut map = Map::new();
    for item in raw {
        let (key, value) = parse_param(item)?;
        map.insert(key, value);
    }
    Ok(Some(map))
}

/// `--job-variables`: inline JSON or `@path` to a JSON file; must be an object.
pub(crate) fn parse_job_variables(raw: &str) -> Result<Map<String, Value>, CliError> {
    const ARG: &str = "--job-variables";
    let value = match raw.strip_prefix('@') {
        Some(path) => read_json_file(Path::new(path), ARG)?,
        None => serde_json::from_str(raw)
            .map_err(|e| CliError::input(ARG, format!("not valid JSON: {e}")))?,
    };
    match value {
        Value::Object(map) => Ok(map),
        other => Err(CliError::input(
            ARG,
            format!("must be a JSON object, got {}", json_kind(&other)),
        )),
    }
}

/// Reads and parses a JSON file named by flag `arg`.
pub(crate) fn read_json_file(path: &Path, arg: &str) -> Result<Value, CliError> {
    if path.as_os_str().is_empty() {
        return Err(CliError::input(arg, "empty file name"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::input(arg, format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::input(arg, format!("{} is not valid JSON: {e}", path.display())))
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `--retries N [--retry-delay SECONDS]`, shared by deployments and runs.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryArgs {
    /// Retry a failed or crashed run up to N times
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Seconds to wait before each retry [default: 0]
    #[arg(long, value_name = "SECONDS", requires = "retries")]
    pub retry_delay: Option<u32>,
}

impl RetryArgs {
    /// `{"max": N, "delay_seconds": S}`, or `None` when `--retries` is absent.
    pub(crate) fn to_json(&self) -> Option<Value> {
        self.retries.map(
            |max| serde_json::json!({ "max": max, "delay_seconds": self.retry_delay.unwrap_or(0) }),
        )
    }
}
