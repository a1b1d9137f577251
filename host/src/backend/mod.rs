//! Backends execute a finalised job and report how it ended. The launcher
//! owns the run's state; a backend only says what happened.

pub(crate) mod kubernetes;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::domain::{PoolType, RunId};

pub(crate) use kubernetes::KubernetesBackend;
pub(crate) use process::ProcessBackend;
#[allow(unreachable_pub)] // re-exported at the crate root (lib.rs)
pub use process::{ProcessSettings, supervise};

/// One attempt of one run, handed to a backend.
pub struct Execution {
    pub run_id: RunId,
    pub attempt: u32,
    /// The finalised job configuration (after rendering and mutators).
    pub job: Value,
    /// The pool's cluster connection (Kubernetes pools).
    pub cluster: Option<String>,
    /// Set when Weir restarted while this attempt was in flight: look for
    /// the job before doing anything.
    pub resume: Option<Resume>,
    /// Where the job's output goes.
    pub log_path: PathBuf,
    /// Cancelled when the run is cancelled: stop the job and return
    /// [`Outcome::Cancelled`].
    pub cancel: CancellationToken,
    /// Send once the job is running.
    pub started: oneshot::Sender<()>,
}

/// Resuming an attempt after a restart.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The run never reached Running: if its job does not exist, the
    /// submission may not have happened, and creating it is safe. A run seen
    /// Running whose job is gone has an unknown outcome instead.
    pub may_create: bool,
    /// Where the attempt was placed, as recorded with its intent
    /// ([`Backend::placement`] of the replica that submitted it).
    pub placement: Option<String>,
}

/// Where to read an attempt's output from.
pub struct LogRequest {
    pub run_id: RunId,
    pub attempt: u32,
    pub job: Value,
    pub cluster: Option<String>,
    pub follow: bool,
}

pub(crate) type LogStream = BoxStream<'static, std::io::Result<Bytes>>;

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
    /// Whether the launcher records the execution's inputs (job, cluster) in
    /// the store before calling [`Backend::execute`], so that a restart can
    /// resume the attempt by looking for its job.
    fn records_intent(&self) -> bool {
        false
    }

    /// Where this backend runs attempts when that is local to this host
    /// (the process backend: host name and runs directory); recorded with
    /// the intent. A replica with another placement cannot see such an
    /// attempt, so it must not resume it (see [`Resume::placement`]).
    fn placement(&self) -> Option<String> {
        None
    }

    /// Whether [`Backend::logs`] serves the attempt's output; otherwise it is
    /// the run's log file in the data directory.
    fn keeps_logs(&self) -> bool {
        false
    }

    /// The attempt's output, when the backend keeps it (the process backend
    /// writes the run's log file instead).
    async fn logs(&self, _request: LogRequest) -> Result<LogStream, String> {
        Err("this backend keeps no output of its own".into())
    }

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
