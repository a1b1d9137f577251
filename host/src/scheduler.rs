//! Releases waiting runs when their time has come and every limit allows.
//!
//! Event-driven: it sleeps until something may let a run go (a new run, a
//! freed slot, a resumed pool or queue, a changed limit: all call
//! [`Dispatcher::wake_scheduler`]) or until the next scheduled time or late
//! threshold the store reports. The ordering and the atomic slot taking live
//! in [`Store::release_ready`](crate::store::Store::release_ready).
//! The leader's schedules loop (`run_schedules`, its pass in
//! `run/schedule.rs`) shares the same loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::dispatcher::Dispatcher;
use crate::domain::Cause;
use crate::run::launch::Launcher;

/// Runs released per store transaction; a full batch loops at once.
const BATCH: usize = 512;
/// Upper bound on a sleep, so a clock jump cannot strand a run for long.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub(crate) async fn run(launcher: Arc<Launcher>, shutdown: CancellationToken) {
    let wake = launcher.dispatcher().wake_handle();
    wake_loop("scheduler", &wake, &shutdown, || pass(&launcher)).await;
}

/// The leader's schedules' loop: a pass over every schedule
/// (`run/schedule.rs`), then a sleep until one is due or a schedule changes.
pub(crate) async fn run_schedules(dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) {
    let wake = dispatcher.schedules_wake_handle();
    wake_loop("schedules", &wake, &shutdown, || async {
        crate::run::schedule::pass(&dispatcher)
            .await
            .map(sleep_until)
    })
    .await;
}

/// Runs `pass` until `shutdown`: after each, sleeps for what it says, or
/// until woken; a failed pass is retried with backoff (100 ms doubling to
/// 5 s). The scheduler's loop and the schedules' loop (`run/schedule.rs`).
pub(crate) async fn wake_loop<F, Fut, E>(
    what: &str,
    wake: &Notify,
    shutdown: &CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Duration, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let sleep_for = match pass().await {
            Ok(next) => {
                backoff = Duration::from_millis(100);
                next
            }
            Err(e) => {
                warn!("{what} pass failed, retrying in {backoff:?}: {e}");
                let b = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                b
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// How long to sleep until `next` (at most [`MAX_SLEEP`], just past it).
pub(crate) fn sleep_until(next: Option<chrono::DateTime<Utc>>) -> Duration {
    let now = Utc::now();
    match next {
        Some(t) => (t - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP)
            // Let the clock pass the boundary before waking.
            .saturating_add(Duration::from_millis(1)),
        None => MAX_SLEEP,
    }
}

/// One pass: mark late runs, release all that may go, and say how long to
/// sleep before the next time-driven event.
async fn pass(launcher: &Arc<Launcher>) -> Result<Duration, crate::store::StoreError> {
    let dispatcher = launcher.dispatcher();
    let store = &dispatcher.store;
    let late_after = dispatcher.settings.late_after;
    let now = Utc::now();
    let late = store.mark_late(now, late_after).await?;
    if !late.is_empty() {
        debug!(late = late.len(), "marked runs late");
    }
    // Queues that cancel Late runs: each is cancelled with how late it was.
    // A run released meanwhile is not (Pending → Cancelled is refused).
    for run in late.iter().filter(|l| l.cancel) {
        let reason = format!(
            "cancelled because it was late: {} past its scheduled time; queue {}/{} cancels \
             runs more than {} s late",
            human_duration(run.late_by),
            run.pool,
            run.queue,
            run.late_after_seconds
        );
        let detail = serde_json::json!({
            "late_by_seconds": run.late_by.num_seconds(),
            "late_after_seconds": run.late_after_seconds,
            "late_action": "cancel",
        });
        match dispatcher
            .cancel_waiting(run.id, reason, Cause::SCHEDULER, Some(detail))
            .await
        {
            Ok(true) => dispatcher.metrics.late_run_cancelled(),
            Ok(false) => debug!(run = %run.id, "a late run was released before its cancel"),
            Err(e) => warn!(run = %run.id, "cannot cancel a late run: {e}"),
        }
    }
    // Runs an admission plugin deferred are judged again when due, outside
    // any store transaction (plugin calls take their own time).
    for run in store.due_admissions(now, BATCH).await? {
        if let Err(e) = dispatcher.readmit(&run).await {
            warn!(run = %run.id, "re-admission failed: {e}");
        }
    }
    loop {
        let released = store.release_ready(Utc::now(), BATCH).await?;
        let n = released.len();
        for r in released {
            dispatcher.metrics.run_released(r.waited);
            launcher.spawn(r.run);
        }
        if n < BATCH {
            break;
        }
    }
    let next = store.next_wake(Utc::now(), late_after).await?;
    Ok(sleep_until(next))
}

/// `2h 5m`, `3m 20s`, `45s`: how late a run was, for its history.
fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, _) => format!("{m}m {sec}s"),
        _ => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lateness_reads_as_hours_minutes_seconds() {
        use chrono::Duration;
        assert_eq!(super::human_duration(Duration::seconds(45)), "45s");
        assert_eq!(super::human_duration(Duration::seconds(200)), "3m 20s");
        assert_eq!(super::human_duration(Duration::seconds(7500)), "2h 5m");
        assert_eq!(super::human_duration(Duration::seconds(-3)), "0s");
    }
}
