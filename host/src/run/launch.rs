//! The back half of a run's life, after the scheduler released it:
//! render the job → (mutators) → backend → outcome → state, retries, slots.

use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::{Backend, Backends, Execution, Outcome, Resume};
use crate::dispatcher::{DispatchError, Dispatcher};
use crate::domain::{Cause, Pool, Run, RunId, RunSource, RunState};
use crate::run::build::{BuildError, JobRequest, Purpose, Source};
use crate::run::cancel::InFlight;
use crate::store::{StoreError, Transition};

/// The launcher of this replica (the leader): runs each released or
/// recovered run's attempt on a task of its own, and owns what that takes —
/// the backends, the registry of attempts in flight (their cancel tokens;
/// `run/cancel.rs` delivers cancels into it through the dispatcher) and the
/// shutdown, at which its tasks stop and leave their attempts to recovery.
pub(crate) struct Launcher {
    dispatcher: Arc<Dispatcher>,
    backends: Backends,
    in_flight: Arc<InFlight>,
    shutdown: CancellationToken,
}

impl Launcher {
    /// The one launcher of a process; `None` if the dispatcher has one.
    pub(crate) fn new(
        dispatcher: Arc<Dispatcher>,
        shutdown: CancellationToken,
    ) -> Option<Arc<Self>> {
        let in_flight = Arc::new(InFlight::default());
        if !dispatcher.attach_in_flight(in_flight.clone()) {
            return None;
        }
        Some(Arc::new(Self {
            backends: dispatcher.backends.clone(),
            dispatcher,
            in_flight,
            shutdown,
        }))
    }

    pub(crate) fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    pub(crate) fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Starts a released run on its own task.
    pub(crate) fn spawn(self: &Arc<Self>, run: Run) {
        let this = self.clone();
        self.attempt(run.id, false, move |cancel| async move {
            launch(&this.dispatcher, &this.backends, run, cancel).await;
        });
    }

    /// Stops the attempt of `id` if it is in flight here.
    pub(crate) fn cancel(&self, id: RunId) -> bool {
        self.in_flight.cancel(id)
    }

    /// Runs one attempt on its own task, registered in flight (its token
    /// already cancelled when `cancelled`) until it ends or the launcher
    /// shuts down.
    pub(super) fn attempt<F, Fut>(self: &Arc<Self>, id: RunId, cancelled: bool, work: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.in_flight.register(id);
        if cancelled {
            cancel.cancel();
        }
        let work = work(cancel);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                // Stopped like a killed host: recovery takes it from here.
                () = this.shutdown.cancelled() => return,
            }
            this.in_flight.forget(id);
            this.dispatcher.wake_scheduler();
        });
    }
}

/// Builds the job a run executes (`run/build.rs`, every step), recording
/// the mutators' decisions in its history.
pub(crate) async fn build_job(
    dispatcher: &Dispatcher,
    run: &Run,
) -> Result<(Pool, Value), BuildFailure> {
    let pool = dispatcher
        .store
        .get_pool(&run.pool)
        .await
        .map_err(|e| e.to_string())?;
    let source = run.source();
    let deployment = match &source {
        RunSource::Deployment(name) => Some(
            dispatcher
                .store
                .get_deployment(name)
                .await
                .map_err(|e| e.to_string())?,
        ),
        RunSource::Raw(_) => None,
    };
    let id = run.id.to_string();
    let request = JobRequest {
        run_id: &id,
        pool: &pool,
        queue: &run.queue,
        source: match (&deployment, &source) {
            (Some(d), _) => Source::Deployment(d),
            (None, RunSource::Raw(job)) => Source::Raw(job),
            (None, RunSource::Deployment(_)) => {
                return Err("the run's deployment could not be read".to_owned().into());
            }
        },
        job_variables: &run.job_variables,
        parameters: &run.parameters,
        tags: &run.tags,
        labels: &run.labels,
        parent_run_id: run.parent_run_id,
    };
    let mut history = Vec::new();
    let built = dispatcher
        .job_builder()
        .build(&request, Purpose::Release(run.id), &mut history)
        .await;
    if let Err(e) = dispatcher.store.append_history(run.id, &history).await {
        warn!(run = %run.id, "cannot record plugin decisions: {e}");
    }
    match built {
        Ok(job) => Ok((pool, job)),
        Err(BuildError::Refused(r)) => Err(BuildFailure {
            message: r.message,
            detail: Some(r.detail),
        }),
        Err(e) => Err(e.to_string().into()),
    }
}

/// Why a run's job could not be built, with a plugin's structured detail
/// when a mutator refused.
#[derive(Debug)]
pub(crate) struct BuildFailure {
    pub message: String,
    pub detail: Option<Value>,
}

impl From<String> for BuildFailure {
    fn from(message: String) -> Self {
        Self {
            message,
            detail: None,
        }
    }
}

pub(super) async fn record(dispatcher: &Dispatcher, run: &Run, t: Transition) {
    let to = t.to;
    match dispatcher.transition(run.id, t).await {
        Ok(_) => {}
        // A concurrent cancel may have moved the run on; the table decides.
        Err(DispatchError::Store(StoreError::IllegalTransition(e))) => {
            info!(run = %run.id, "state change to {to} skipped: {e}");
        }
        Err(e) => warn!(run = %run.id, "cannot record {to}: {e}"),
    }
}

/// Turns a failed attempt into AwaitingRetry when the run has retries left.
pub(crate) fn outcome_transition(run: &Run, outcome: Outcome, cause: &str) -> Transition {
    let retry = |message: String, exit_code: Option<i32>| {
        let delay = chrono::Duration::seconds(i64::from(run.retries.delay_seconds));
        let at = Utc::now() + delay;
        Transition {
            to: RunState::AwaitingRetry,
            message: format!(
                "attempt {} of {}: {message}; retrying at {}",
                run.attempt,
                run.retries.max + 1,
                at.to_rfc3339()
            ),
            cause: cause.to_owned(),
            exit_code,
            retry_at: Some(at),
            detail: None,
        }
    };
    let retries_left = run.attempt <= run.retries.max;
    match outcome {
        Outcome::Completed => Transition::new(RunState::Completed, "completed", cause),
        Outcome::Failed { exit_code, message } if retries_left => retry(message, exit_code),
        Outcome::Crashed { reason } if retries_left => retry(format!("crashed: {reason}"), None),
        Outcome::Failed { exit_code, message } => Transition {
            exit_code,
            ..Transition::new(RunState::Failed, message, cause)
        },
        Outcome::Crashed { reason } => Transition::new(RunState::Crashed, reason, cause),
        Outcome::Cancelled { message } => Transition::new(RunState::Cancelled, message, cause),
    }
}

async fn launch(
    dispatcher: &Dispatcher,
    backends: &Backends,
    run: Run,
    cancel: tokio_util::sync::CancellationToken,
) {
    // Render.
    let (pool, job) = match build_job(dispatcher, &run).await {
        Ok(built) => built,
        Err(e) => {
            let mut t = outcome_transition(
                &run,
                Outcome::Failed {
                    exit_code: None,
                    message: format!("cannot build the job: {}", e.message),
                },
                Cause::LAUNCHER,
            );
            t.detail = e.detail;
            record(dispatcher, &run, t).await;
            return;
        }
    };

    let Some(backend) = backends.get(pool.pool_type) else {
        let t = Transition::new(
            RunState::Crashed,
            format!(
                "this Weir has no backend for {} pools",
                pool.pool_type.as_str()
            ),
            Cause::LAUNCHER,
        );
        record(dispatcher, &run, t).await;
        return;
    };

    if cancel.is_cancelled() {
        record(dispatcher, &run, cancelled_before_start()).await;
        return;
    }

    // Record the intent before submitting, so a restart looks for the job
    // instead of guessing whether it was submitted.
    if backend.records_intent() {
        let intent = json!({"job": job, "cluster": pool.cluster, "placement": backend.placement()});
        match dispatcher
            .store
            .record_submission(run.id, run.attempt, &intent)
            .await
        {
            Ok(true) => {}
            // A cancel landed before this launch registered its token (the
            // run is Cancelling) and nothing was submitted.
            Ok(false) => {
                record(dispatcher, &run, cancelled_before_start()).await;
                return;
            }
            Err(e) => {
                let t = outcome_transition(
                    &run,
                    Outcome::Crashed {
                        reason: format!("cannot record the submission before making it: {e}"),
                    },
                    Cause::LAUNCHER,
                );
                record(dispatcher, &run, t).await;
                return;
            }
        }
    }
    execute(dispatcher, backend, &run, job, pool.cluster, None, cancel).await;
}

/// A launch that finds its run cancelled before anything was submitted.
fn cancelled_before_start() -> Transition {
    Transition::new(
        RunState::Cancelled,
        "cancelled before it started",
        Cause::LAUNCHER,
    )
}

/// Executes an attempt on its backend and records Running and the outcome.
pub(super) async fn execute(
    dispatcher: &Dispatcher,
    backend: std::sync::Arc<dyn Backend>,
    run: &Run,
    job: Value,
    cluster: Option<String>,
    resume: Option<Resume>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let (started_tx, mut started_rx) = oneshot::channel();
    let exec = backend.execute(Execution {
        run_id: run.id,
        attempt: run.attempt,
        job,
        cluster,
        resume,
        log_path: dispatcher.log_path(run.id),
        cancel: cancel.clone(),
        started: started_tx,
    });
    tokio::pin!(exec);
    let running = || Transition::new(RunState::Running, "started", Cause::BACKEND);
    // A resumed run may have been seen Running already.
    let mut running_recorded = run.state != RunState::Pending;
    let outcome = tokio::select! {
        outcome = &mut exec => outcome,
        Ok(()) = &mut started_rx, if !running_recorded => {
            record(dispatcher, run, running()).await;
            running_recorded = true;
            exec.await
        }
    };
    if !running_recorded && started_rx.try_recv().is_ok() {
        // It finished before its start was recorded: record both, in order.
        record(dispatcher, run, running()).await;
    }
    let t = outcome_transition(run, outcome, Cause::BACKEND);
    record(dispatcher, run, t).await;
}
