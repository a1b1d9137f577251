//! The error a plugin returns when it refuses to decide.

use std::fmt;

/// A plugin's refusal to decide (the WIT `plugin-error`): the host records the
/// message and applies the binding's on-error policy. From `validate-config`,
/// it refuses the binding with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub message: String,
}

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Prefixes the message with some context: `"{context}: {message}"`.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self::new(format!("{context}: {}", self.message))
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// `Result` with [`PluginError`] as the error.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Returns early with a [`PluginError`] built like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::PluginError::new(::std::format!($($arg)*)))
    };
}
