//! Schedules become runs: on the leader, a loop plans each schedule
//! (`domain/schedule.rs`: missed times by the catch-up policy, then upcoming
//! times ahead of time) and creates each planned time's run through the
//! ordinary submit path, as Scheduled for that time.
//!
//! Exactly once per time: the run's idempotency key is
//! `schedule/<id>/<generation>/<time>`, so a time planned twice (a restart
//! between creating its run and recording progress, a leader handing over
//! mid-pass) names the run created first. Progress (`created_through`) moves
//! once per schedule and pass, after its runs, only forward and only for the
//! generation planned.

use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::{debug, warn};

use crate::auth::Principal;
use crate::dispatcher::{DispatchError, Dispatcher};
use crate::domain::schedule::Slot;
use crate::domain::{HistoryEntry, RunState, Schedule};
use crate::run::submit::RunSpec;
use crate::store::StoreError;

/// How far ahead runs are created, and how many at most per schedule.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleSettings {
    pub horizon: chrono::Duration,
    pub ahead: usize,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            horizon: chrono::Duration::hours(1),
            ahead: 10,
        }
    }
}

/// One pass over every schedule; says until when nothing is due (the
/// leader's loop is `scheduler::run_schedules`).
pub(crate) async fn pass(d: &Dispatcher) -> Result<Option<DateTime<Utc>>, StoreError> {
    let settings = d.settings.schedules;
    let mut next: Option<DateTime<Utc>> = None;
    for s in d.store.list_schedules(None).await? {
        if s.paused {
            continue;
        }
        let table = match s.when.timetable() {
            Ok(t) => t,
            Err(e) => {
                warn!(schedule = %s.name, deployment = %s.deployment, "unusable schedule: {e}");
                continue;
            }
        };
        let now = Utc::now();
        let plan = s.plan(&table, now, settings.horizon, settings.ahead);
        for slot in &plan.create {
            match create(d, &s, slot).await {
                Ok(()) => {}
                // Progress is not recorded: the next pass plans these times
                // again, and the ones already created are found by key.
                Err(DispatchError::Store(e)) => return Err(e),
                // The run cannot be made (the deployment's template changed
                // under the schedule's variables, the deployment is gone):
                // this time is skipped, said in the log, and the next tried.
                Err(e) => warn!(
                    schedule = %s.name, deployment = %s.deployment, at = %slot.at,
                    "no run for this scheduled time: {e}"
                ),
            }
        }
        // Progress once per schedule and pass (a restart before it plans the
        // same times again and finds their runs by key).
        if plan.through > s.created_through && !d.store.advance_schedule(&s, plan.through).await? {
            // Paused, resumed, changed or removed meanwhile: runs this pass
            // created after a pause cancelled the generation's runs would be
            // left over, so they are cancelled again.
            let why = match d.store.get_schedule(&s.deployment, &s.name).await {
                Ok(now) if now.id == s.id && now.generation == s.generation && !now.paused => None,
                Ok(now) if now.id == s.id && now.generation == s.generation => Some("paused"),
                Ok(_) => Some("changed"),
                Err(StoreError::NotFound { .. }) => Some("removed"),
                Err(e) => return Err(e),
            };
            if let Some(why) = why
                && let Err(e) = d.cancel_schedule_runs(&s, why).await
            {
                warn!(schedule = %s.name, "cannot cancel its left-over runs: {e}");
            }
            continue;
        }
        if plan.skipped > 0 {
            d.metrics.schedule_times_skipped(plan.skipped);
            debug!(schedule = %s.name, skipped = plan.skipped, "missed times skipped");
        }
        let advanced = Schedule {
            created_through: plan.through,
            ..s
        };
        if let Some(t) = advanced.next_pass(&table, Utc::now(), settings.horizon) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next)
}

/// The run of one scheduled time, through the ordinary submit path.
async fn create(d: &Dispatcher, s: &Schedule, slot: &Slot) -> Result<(), DispatchError> {
    let at = slot.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let message = match &slot.catchup {
        Some(words) => format!("for {at}, schedule {:?}; {words}", s.name),
        None => format!("for {at}, schedule {:?}", s.name),
    };
    let origin = HistoryEntry {
        state: RunState::Scheduled,
        at: Utc::now(),
        message,
        cause: cause(s),
        detail: Some(json!({
            "schedule": s.name,
            "scheduled_for": at,
            "generation": s.generation,
            "catchup": s.catchup.as_str(),
            "caught_up": slot.catchup.is_some(),
        })),
    };
    let spec = RunSpec {
        deployment: Some(s.deployment.clone()),
        parameters: s.parameters.clone(),
        job_variables: s.job_variables.clone(),
        scheduled_at: Some(slot.at),
        idempotency_key: Some(s.run_key(slot.at)),
        origin: Some(origin),
        ..RunSpec::default()
    };
    let (run, created) = d.create_run_as(&Principal::Anyone, spec, &cause(s)).await?;
    if created {
        d.metrics.schedule_run_created();
    } else {
        debug!(run = %run.id, "this scheduled time already had its run");
    }
    Ok(())
}

fn cause(s: &Schedule) -> String {
    format!("schedule:{}", s.name)
}
