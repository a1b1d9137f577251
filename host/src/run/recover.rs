//! Recover: after a restart (or a new leader taking over), every run that
//! was released is found again — re-attached to its attempt, or ended with
//! why — and Cancelling runs no attempt here will stop are finished.

use std::sync::Arc;

use tracing::{info, warn};

use serde_json::Value;

use super::launch::{Launcher, execute, outcome_transition, record};
use crate::backend::{Backend, Outcome, Resume};
use crate::dispatcher::DispatchError;
use crate::domain::{Cause, Run, RunState};
use crate::store::{StoreError, Transition};

/// After a restart: runs that held slots when the host stopped.
///
/// Every backend records its intent (the finalised job) before it starts an
/// attempt, and is asked to look for the attempt and follow it: an attempt
/// whose intent was never recorded was never started and is launched now.
/// A recorded one is resumed ([`Resume`]): a process attempt's supervisor
/// kept running without the host and recorded (or will record) the exit
/// status in the data directory; a Kubernetes Job is looked up. Either
/// backend creates the attempt if the run never reached Running and nothing
/// exists, and calls it Crashed (outcome unknown) only when nothing can tell
/// how it ended. Returns how many runs were recovered.
pub(crate) async fn recover(launcher: &Arc<Launcher>) -> Result<usize, DispatchError> {
    let dispatcher = launcher.dispatcher();
    let backends = launcher.backends();
    // One run's unreadable row must not stop the host from starting (every
    // start would fail the same way): such runs are ended first, with why.
    for (id, why) in dispatcher.store.unreadable_runs().await? {
        warn!(run = %id, "stored data does not read back: {why}; ending the run Crashed");
        dispatcher.store.quarantine_run(id, &why).await?;
        dispatcher.metrics.run_transitioned(RunState::Crashed);
    }
    let runs = dispatcher.store.active_runs().await?;
    let mut recovered = 0;
    for run in runs {
        recovered += 1;
        let pool_type = match dispatcher.store.get_pool(&run.pool).await {
            Ok(p) => Some(p.pool_type),
            Err(e) => {
                warn!(run = %run.id, "cannot read the run's pool: {e}");
                None
            }
        };
        let backend = pool_type
            .and_then(|t| backends.get(t))
            .filter(|b| b.records_intent());
        if let Some(backend) = backend {
            let intent = match dispatcher.store.submission(run.id, run.attempt).await {
                Ok(intent) => intent,
                Err(e) => {
                    warn!(run = %run.id, "cannot read the run's submission: {e}; ending the run Crashed");
                    dispatcher
                        .store
                        .quarantine_run(run.id, &e.to_string())
                        .await?;
                    dispatcher.metrics.run_transitioned(RunState::Crashed);
                    continue;
                }
            };
            resume(launcher, backend, run, intent);
            continue;
        }
        // No backend that can find the attempt again (none of today's).
        let t = if run.state == RunState::Cancelling {
            Transition::new(
                RunState::Cancelled,
                "weir stopped while cancelling; the attempt cannot be followed after a restart",
                Cause::RECOVERY,
            )
        } else {
            outcome_transition(
                &run,
                Outcome::Crashed {
                    reason: format!(
                        "weir stopped while the run was {}; its backend cannot follow it after a restart",
                        run.state
                    ),
                },
                Cause::RECOVERY,
            )
        };
        record(dispatcher, &run, t).await;
    }
    Ok(recovered)
}

/// Picks up one in-flight run of an intent-recording backend on its own task.
/// `intent` is the recorded job of the run's current attempt.
fn resume(launcher: &Arc<Launcher>, backend: Arc<dyn Backend>, run: Run, intent: Option<Value>) {
    let Some(intent) = intent else {
        // Never submitted: the intent is recorded before the backend call.
        if run.state == RunState::Cancelling {
            let dispatcher = launcher.dispatcher().clone();
            tokio::spawn(async move {
                let t = Transition::new(
                    RunState::Cancelled,
                    "cancelled before it was submitted",
                    Cause::RECOVERY,
                );
                record(&dispatcher, &run, t).await;
            });
        } else {
            info!(run = %run.id, "was released but never submitted; launching it");
            launcher.spawn(run);
        }
        return;
    };
    let dispatcher = launcher.dispatcher().clone();
    let cancelling = run.state == RunState::Cancelling;
    launcher.attempt(run.id, cancelling, move |cancel| async move {
        let id = run.id;
        let job = intent.get("job").cloned().unwrap_or(Value::Null);
        let cluster = intent
            .get("cluster")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let resume = Resume {
            may_create: run.state == RunState::Pending,
            placement: intent
                .get("placement")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        info!(run = %id, state = %run.state, "resuming after a restart");
        execute(
            &dispatcher,
            backend,
            &run,
            job,
            cluster,
            Some(resume),
            cancel,
        )
        .await;
    });
}

/// The leader's safety net for cancels whose stop was missed (asked on
/// another replica and the message lost, or landed before a launch began and
/// that launch never came): every
/// Cancelling run whose attempt is in flight here is stopped (a no-op if it
/// already was), and one with no attempt in flight here on two sweeps in a
/// row (so not one being launched right now) is Cancelled.
pub(crate) async fn sweep_cancelling(
    launcher: &Launcher,
    orphans: &mut std::collections::HashSet<crate::domain::RunId>,
) -> Result<(), StoreError> {
    let dispatcher = launcher.dispatcher();
    let mut seen = std::collections::HashSet::new();
    for run in dispatcher.store.active_runs().await? {
        if run.state != RunState::Cancelling || launcher.cancel(run.id) {
            continue;
        }
        if orphans.contains(&run.id) {
            let t = Transition::new(
                RunState::Cancelled,
                "cancelled; no attempt of the run was in flight",
                Cause::RECOVERY,
            );
            record(dispatcher, &run, t).await;
        } else {
            seen.insert(run.id);
        }
    }
    *orphans = seen;
    Ok(())
}
