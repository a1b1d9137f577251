//! Weir's domain: the nouns a run passes through, their validation, and the
//! run state machine. Nothing here does I/O.

mod deployment;
pub(crate) mod document;
pub(crate) mod history;
mod limit;
mod name;
mod plugin;
mod pool;
mod queue;
pub(crate) mod release;
mod run;
mod run_state;
pub(crate) mod schedule;
mod template;
mod token;

#[allow(unreachable_pub)] // re-exported at the crate root (lib.rs)
pub use deployment::{Deployment, RetryPolicy};
pub use limit::ConcurrencyLimit;
pub(crate) use name::{MAX_TAGS, validate_dns_label, validate_tag};
pub(crate) use plugin::{BindingMode, OnError, PluginBinding, PluginVersion, World};
pub use pool::{Pool, PoolType};
pub(crate) use queue::DEFAULT_QUEUE;
#[allow(unreachable_pub)] // re-exported at the crate root (lib.rs)
pub use queue::{LateAction, Queue};
pub(crate) use run::{Cause, RunId};
#[allow(unreachable_pub)] // re-exported at the crate root (lib.rs)
pub use run::{HistoryEntry, Run, RunSource};
#[allow(unreachable_pub)] // re-exported at the crate root (lib.rs)
pub use run_state::{IllegalTransition, RunState};
pub(crate) use schedule::{Catchup, Schedule, When};
pub use template::{BaseJobTemplate, TemplateKind};
pub(crate) use token::{Role, TokenRecord};

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
