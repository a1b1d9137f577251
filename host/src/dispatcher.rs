//! What every step of a run's life shares: the store, the plugin pipeline,
//! the settings, the metrics, the backends, the scheduler's wake-up, the
//! attempts in flight and the link to other replicas — and the one way a
//! state change is recorded ([`Dispatcher::transition`], metrics in step).
//! The steps themselves are elsewhere: `resources/` (pools, queues, limits,
//! deployments), `run/` (submit, build, launch, cancel, recover).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use crate::auth::{AuthError, RunTokenKey};
use crate::backend::Backends;
use crate::domain::{Run, RunId, ValidationError};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::replica::{Bus, Signal};
use crate::run::build::{BuildError, JobBuilder};
use crate::run::cancel::InFlight;
use crate::store::{Store, StoreError, Transition};
use crate::template::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin refused (fail-closed) while previewing.
    #[error("{0}")]
    Refused(String),
    /// The caller's token does not allow this (`host/src/auth/`).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

pub(crate) type Result<T, E = DispatchError> = std::result::Result<T, E>;

impl From<BuildError> for DispatchError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Template(t) => DispatchError::Template(t),
            BuildError::Refused(r) => DispatchError::Refused(r.message),
            e @ BuildError::Mutated(_) => DispatchError::Refused(e.to_string()),
        }
    }
}

/// Settings that shape every run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL jobs are given in `WEIR_API_URL`.
    pub api_url: String,
    /// A Scheduled run waiting longer than this past its time is marked Late.
    pub late_after: chrono::Duration,
    /// Per-run log files live here.
    pub log_dir: PathBuf,
    /// Names of the Kubernetes cluster connections a pool may choose.
    pub clusters: Vec<String>,
    /// When auth is on: the key each released job's `WEIR_RUN_TOKEN` is
    /// derived from. `None`: jobs get no run token.
    pub run_tokens: Option<RunTokenKey>,
    /// How far ahead schedules create their runs.
    pub schedules: crate::run::schedule::ScheduleSettings,
}

/// The owner of a run's front half, shared by the API, the config loader,
/// the scheduler and the launcher.
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The backends by pool type (the launcher runs jobs on them; the API
    /// reads Kubernetes runs' logs through them).
    pub backends: Backends,
    wake: Arc<Notify>,
    /// The schedules' loop waits on this (`run/schedule.rs`).
    schedules_wake: Arc<Notify>,
    /// The launcher's registry of the attempts in flight here, once this
    /// replica has a launcher (it leads): where a cancel is delivered
    /// (`run/cancel.rs`). The launcher owns it; this is the way in.
    in_flight: OnceLock<Arc<InFlight>>,
    /// This replica's link to the others (and whether it leads).
    replicas: Bus,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        pipeline: Arc<Pipeline>,
        settings: Settings,
        metrics: Arc<Metrics>,
        backends: Backends,
    ) -> Self {
        Self {
            backends,
            store,
            pipeline,
            settings,
            metrics,
            wake: Arc::new(Notify::new()),
            schedules_wake: Arc::new(Notify::new()),
            in_flight: OnceLock::new(),
            replicas: Bus::local(),
        }
    }

    /// One of several replicas on a shared database (see [`crate::replica`]).
    pub fn with_replicas(mut self, bus: Bus) -> Self {
        self.replicas = bus;
        self
    }

    pub fn replicas(&self) -> &Bus {
        &self.replicas
    }

    /// The scheduler waits on this; anything that may let a run go wakes it.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn wake_scheduler(&self) {
        self.wake.notify_one();
        // Another replica may be the one scheduling.
        self.replicas.send(Signal::Wake);
    }

    /// Wakes this replica's scheduler and schedules only (a signal from
    /// another replica, which may have changed a schedule).
    pub fn wake_local(&self) {
        self.wake.notify_one();
        self.schedules_wake.notify_one();
    }

    /// The schedules' loop waits on this.
    pub(crate) fn schedules_wake_handle(&self) -> Arc<Notify> {
        self.schedules_wake.clone()
    }

    /// A schedule changed: the leader's loop plans again.
    pub(crate) fn wake_schedules(&self) {
        self.schedules_wake.notify_one();
        self.replicas.send(Signal::Wake);
    }

    pub fn log_path(&self, id: RunId) -> PathBuf {
        self.settings.log_dir.join(format!("{id}.log"))
    }

    /// Called once by the launcher (`run/launch.rs`) with the registry it
    /// owns; a second launcher in one process is a bug, refused here.
    pub(crate) fn attach_in_flight(&self, in_flight: Arc<InFlight>) -> bool {
        self.in_flight.set(in_flight).is_ok()
    }

    /// Stops the attempt of `id` if this replica has it in flight.
    pub(crate) fn stop_in_flight(&self, id: RunId) -> bool {
        self.in_flight.get().is_some_and(|f| f.cancel(id))
    }

    /// The job builder with this dispatcher's mutators and settings.
    pub(crate) fn job_builder(&self) -> JobBuilder<'_> {
        JobBuilder {
            pipeline: &self.pipeline,
            settings: &self.settings,
        }
    }

    /// Records a state change and keeps the metrics in step.
    pub async fn transition(&self, id: RunId, t: Transition) -> Result<Run> {
        let to = t.to;
        let run = self.store.transition(id, t).await?;
        self.metrics.run_transitioned(to);
        if !to.holds_slots() {
            self.wake_scheduler();
        }
        Ok(run)
    }
}
