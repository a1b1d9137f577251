//! Backends execute a finalised job and report how it ended. The launcher
//! owns the run's state; a backend only says what happened.

mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::domain::{PoolType, RunId};

pub use process::{ProcessBackend, ProcessSettings};

/// One attempt of one run, handed to a backend.
pub struct Execution {
    pub run_id: RunId,
    pub attempt: u32,
    /// The finalised job configuration (after rendering and mutators).
    pub job: Value,
    /// Where the job's output goes.
    pub log_path: PathBuf,
    /// Cancelled when the run is cancelled: stop the job and return
    /// [`Outcome::Cancelled`].
    pub cancel: CancellationToken,
    /// Send once the job is running.
    pub started: oneshot::Sender<()>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// The job ran and failed, or its definition cannot be run.
    Failed {
        exit_code: Option<i32>,
        message: String,
    },
    /// The infrastructure failed the job; `reason` says how.
    Crashed {
        reason: String,
    },
    Cancelled {
        message: String,
    },
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs the attempt to its end. Never panics on bad input: a job it
    /// cannot run is `Failed` with the reason.
    async fn execute(&self, exec: Execution) -> Outcome;
}

/// The backends this Weir has, by pool type.
#[derive(Clone, Default)]
pub struct Backends {
    by_type: HashMap<PoolType, Arc<dyn Backend>>,
}

impl Backends {
    pub fn with(mut self, pool_type: PoolType, backend: Arc<dyn Backend>) -> Self {
        self.by_type.insert(pool_type, backend);
        self
    }

    pub fn get(&self, pool_type: PoolType) -> Option<Arc<dyn Backend>> {
        self.by_type.get(&pool_type).cloned()
    }
}
