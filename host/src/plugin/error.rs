//! The plugin layer's errors: loading a component, and calling one.

use std::time::Duration;

use thiserror::Error;

/// Why a plugin call produced no decision. Each message is one line, so it
/// can go into a run's history as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("plugin exceeded its {deadline:?} deadline")]
    Timeout { deadline: Duration },
    #[error("plugin exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    /// `message` carries the guest's panic message when it printed one.
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    /// The plugin returned something the host refuses: a patch that does not
    /// apply or touches a forbidden path, oversized output, value text that
    /// is not JSON.
    #[error("plugin returned invalid output: {reason}")]
    InvalidOutput { reason: String },
    /// A binding's config does not match the schema the plugin describes;
    /// the plugin's `validate-config` was not called.
    #[error("the config does not match the plugin's config schema: {errors}")]
    ConfigSchema { errors: String },
    /// The plugin refused to decide (0.1.0 `plugin-error`, 0.2.0 `refusal`).
    #[error("plugin returned an error: {refusal}")]
    Plugin { refusal: super::types::Refusal },
    /// Every concurrency slot stayed busy for as long as the call could
    /// wait; the plugin was not called.
    #[error("all {slots} plugin call slots stayed busy for {waited:?}; the plugin was not called")]
    Busy { slots: usize, waited: Duration },
    /// Anything else: the wrong world's function, an exhausted instance pool,
    /// a host task that failed.
    #[error("plugin host error: {reason}")]
    Host { reason: String },
}

impl CallError {
    /// A stable short name, for metrics labels and history lines.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit { .. } => "memory_limit",
            CallError::Trap { .. } => "trap",
            CallError::InvalidOutput { .. } => "invalid_output",
            CallError::Plugin { .. } => "plugin_error",
            CallError::ConfigSchema { .. } => "config_schema",
            CallError::Busy { .. } => "busy",
            CallError::Host { .. } => "host",
        }
    }
}

/// Why a component could not be loaded as a plugin.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error(
        "component exports no weir:plugin world (router, admission or mutator); it exports: {}",
        if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
    )]
    UnknownWorld { exports: Vec<String> },
    #[error("component exports more than one weir:plugin world: {}", worlds.join(", "))]
    MultipleWorlds { worlds: Vec<String> },
    #[error("component targets weir:plugin@{version}; this host supports {}", supported.join(", "))]
    UnsupportedVersion {
        version: String,
        supported: Vec<&'static str>,
    },
    #[error("compiling the component failed: {0}")]
    Compile(String),
    /// Its imports are not all provided by the host, or its exports do not
    /// match the world's types.
    #[error("linking the component failed: {0}")]
    Link(String),
    #[error("creating the wasm engine failed: {0}")]
    Engine(String),
    #[error("plugin cache directory {path} is unusable: {reason}")]
    CacheDir { path: String, reason: String },
    #[error("plugin loader failed: {0}")]
    Host(String),
}
