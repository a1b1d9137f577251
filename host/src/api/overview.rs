//! What the dashboard reads besides the resources themselves: who the
//! caller is (`/whoami`), runs by state and recent throughput
//! (`/summary`), and a stream that says when any run changed
//! (`/runs/events`, server-sent events).
//!
//! All three read the store's counters and its newest history record, so
//! they are true across replicas (each replica reads the same database) and
//! cost the same with 100 runs or 10 million.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Action, Principal};
use crate::domain::RunState;
use crate::store::{Activity, Store};

/// The window over which `/summary` reports runs ended per minute.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(300);
/// How often the live feed reads the store while anyone listens.
const FEED_EVERY: Duration = Duration::from_millis(500);

pub(super) async fn whoami(Extension(principal): Extension<Principal>) -> Json<Value> {
    let may = |action| principal.require(action).is_ok();
    let (kind, role, team, pools) = match &principal {
        Principal::Anyone => ("anyone", None, None, Vec::new()),
        Principal::Token(scope) => (
            "token",
            Some(scope.role.as_str()),
            scope.team.clone(),
            scope.pools.clone(),
        ),
        Principal::Run(_) => ("run", None, None, Vec::new()),
    };
    Json(json!({
        "auth": !matches!(principal, Principal::Anyone),
        "kind": kind,
        "role": role,
        "team": team,
        "pools": pools,
        "may": {
            "cancel_runs": may(Action::CancelRun),
            "create_runs": may(Action::CreateRun),
            "read_metrics": may(Action::ReadMetrics),
            "manage_plugins": may(Action::ManagePlugins),
        },
    }))
}

/// Samples of the number of ended runs, shared by every caller of
/// `/summary`: the rate is measured over the samples callers took, so it is
/// `null` until two lie at least a few seconds apart.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Throughput {
    /// Records `ended` at `now`; runs ended per minute over the window.
    fn sample(&self, now: Instant, ended: u64) -> Option<f64> {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples
            .back()
            .is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
        {
            samples.push_back((now, ended));
        }
        // Keep one sample at or past the window's start as the baseline.
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= THROUGHPUT_WINDOW)
        {
            samples.pop_front();
        }
        let (first_at, first) = *samples.front()?;
        let span = now.duration_since(first_at);
        if span < Duration::from_secs(5) {
            return None;
        }
        let per_minute = ended.saturating_sub(first) as f64 * 60.0 / span.as_secs_f64();
        Some((per_minute * 10.0).round() / 10.0)
    }
}

pub(super) async fn summary(
    State(d): State<AppState>,
    Extension(throughput): Extension<Arc<Throughput>>,
) -> Result<Json<Value>, ApiError> {
    let activity = d.store.activity().await?;
    let mut by_state = serde_json::Map::new();
    let mut ended = 0;
    for state in RunState::ALL {
        let n = activity
            .runs_by_state
            .get(state.as_str())
            .copied()
            .unwrap_or(0);
        if state.is_terminal() {
            ended += n;
        }
        by_state.insert(state.as_str().into(), json!(n));
    }
    let per_minute = throughput.sample(Instant::now(), ended);
    Ok(Json(json!({
        "runs_by_state": by_state,
        "ended_per_minute": per_minute,
        "throughput_window_seconds": THROUGHPUT_WINDOW.as_secs(),
    })))
}

/// One reader of the store's activity for every open `/runs/events`
/// stream: started by the first listener, it stops when the last one goes.
#[derive(Debug, Default)]
pub(crate) struct LiveFeed {
    sender: Mutex<Option<watch::Sender<String>>>,
}

impl LiveFeed {
    fn subscribe(&self, store: &Arc<dyn Store>) -> watch::Receiver<String> {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = sender.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(String::new());
        *sender = Some(tx.clone());
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FEED_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if tx.is_closed() {
                    break;
                }
                match store.activity().await {
                    Ok(activity) => {
                        tx.send_if_modified(|mark| {
                            let new = mark_of(&activity);
                            let changed = *mark != new;
                            *mark = new;
                            changed
                        });
                    }
                    // The store is away: listeners keep their last mark and
                    // the feed tries again next tick.
                    Err(e) => tracing::debug!("live feed: {e}"),
                }
            }
        });
        rx
    }
}

/// What changes whenever a run does: the newest history record, and the
/// counts by state (which move even when history numbers commit out of
/// order on PostgreSQL).
fn mark_of(activity: &Activity) -> String {
    let counts: Vec<String> = activity
        .runs_by_state
        .iter()
        .map(|(state, n)| format!("{state}={n}"))
        .collect();
    format!("{}:{}", activity.history_seq, counts.join(","))
}

pub(super) async fn run_events(
    State(d): State<AppState>,
    Extension(feed): Extension<Arc<LiveFeed>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = feed.subscribe(&d.store);
    // The first event comes at once (the mark as it is), then one per change.
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let mark = rx.borrow_and_update().clone();
        let event = Event::default()
            .event("runs")
            .data(json!({ "mark": mark }).to_string());
        Some((Ok(event), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_measured_over_the_samples_taken() {
        let t = Throughput::default();
        let start = Instant::now();
        assert_eq!(t.sample(start, 100), None, "one sample is no rate");
        assert_eq!(t.sample(start + Duration::from_secs(2), 110), None);
        // 60 more runs in 30 s: 120 per minute.
        assert_eq!(t.sample(start + Duration::from_secs(30), 160), Some(120.0));
        // Past the window, the baseline moves on: 0 ended since.
        let later = start + THROUGHPUT_WINDOW + Duration::from_secs(40);
        t.sample(later - Duration::from_secs(10), 160);
        assert_eq!(t.sample(later, 160), Some(0.0));
    }

    #[test]
    fn the_mark_moves_with_history_and_counts() {
        let mut a = Activity::default();
        a.runs_by_state.insert("Running".into(), 1);
        let before = mark_of(&a);
        a.history_seq += 1;
        assert_ne!(mark_of(&a), before);
        let seq_only = mark_of(&a);
        a.runs_by_state.insert("Running".into(), 0);
        assert_ne!(mark_of(&a), seq_only);
    }
}
