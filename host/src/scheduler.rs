//! Releases waiting runs when their time has come and every limit allows.
//!
//! Event-driven: it sleeps until something may let a run go (a new run, a
//! freed slot, a resumed pool or queue, a changed limit: all call
//! [`Dispatcher::wake_scheduler`]) or until the next scheduled time or late
//! threshold the store reports. The ordering and the atomic slot taking live
//! in [`Store::release_ready`](crate::store::Store::release_ready).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::run::launch::Launcher;

/// Runs released per store transaction; a full batch loops at once.
const BATCH: usize = 512;
/// Upper bound on a sleep, so a clock jump cannot strand a run for long.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub(crate) async fn run(launcher: Arc<Launcher>, shutdown: CancellationToken) {
    let wake = launcher.dispatcher().wake_handle();
    let mut backoff = Duration::from_millis(100);
    loop {
        let sleep_for = match pass(&launcher).await {
            Ok(next) => {
                backoff = Duration::from_millis(100);
                next
            }
            Err(e) => {
                warn!("scheduler pass failed, retrying in {backoff:?}: {e}");
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

/// One pass: mark late runs, release all that may go, and say how long to
/// sleep before the next time-driven event.
async fn pass(launcher: &Arc<Launcher>) -> Result<Duration, crate::store::StoreError> {
    let dispatcher = launcher.dispatcher();
    let store = &dispatcher.store;
    let late_after = dispatcher.settings.late_after;
    let now = Utc::now();
    let late = store.mark_late(now - late_after).await?;
    if late > 0 {
        debug!(late, "marked runs late");
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
    let now = Utc::now();
    let next = store.next_wake(now, late_after).await?;
    Ok(match next {
        Some(t) => (t - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP)
            // Let the clock pass the boundary before waking.
            .saturating_add(Duration::from_millis(1)),
        None => MAX_SLEEP,
    })
}
