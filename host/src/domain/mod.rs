//! Weir's domain: the nouns a run passes through, their validation, and the
//! run state machine. Nothing here does I/O.

mod deployment;
pub mod document;
pub mod history;
mod limit;
mod name;
mod plugin;
mod pool;
mod queue;
pub mod release;
mod run;
mod run_state;
mod template;
mod token;

pub use deployment::{Deployment, RetryPolicy};
pub use limit::ConcurrencyLimit;
pub use name::{MAX_TAGS, validate_dns_label, validate_tag};
pub use plugin::{OnError, PluginBinding, PluginVersion, World};
pub use pool::{Pool, PoolType};
pub use queue::{DEFAULT_QUEUE, Queue};
pub use run::{Cause, HistoryEntry, Run, RunId, RunSource};
pub use run_state::{IllegalTransition, RunState};
pub use template::{BaseJobTemplate, TemplateKind};
pub use token::{Role, TokenRecord};

/// An input that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
