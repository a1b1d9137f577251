//! What replicas tell the leader: "something may let a run go" (a new run,
//! a resumed queue, a changed limit) and "cancel this run", carried by
//! PostgreSQL's LISTEN/NOTIFY on [`CHANNEL`].
//!
//! Nothing depends on a notification arriving: a new leader makes a full
//! scheduler pass and looks at every run in flight when it takes over, and
//! the leader sweeps Cancelling runs every [`SWEEP`]. Notifications only
//! make the common case fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::CHANNEL;
use crate::domain::RunId;

/// How often the leader looks for Cancelling runs it missed a message for.
pub(crate) const SWEEP: Duration = Duration::from_secs(2);

/// A message between replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Wake,
    Cancel(RunId),
}

impl Signal {
    fn payload(self) -> String {
        match self {
            Signal::Wake => "wake".into(),
            Signal::Cancel(id) => format!("cancel:{id}"),
        }
    }

    /// `None` for a payload this version does not know (a newer replica's).
    pub fn parse(payload: &str) -> Option<Self> {
        if payload == "wake" {
            return Some(Signal::Wake);
        }
        let id = payload.strip_prefix("cancel:")?;
        id.parse().ok().map(Signal::Cancel)
    }
}

/// This replica's end of the bus. Without a database to talk through
/// ([`Bus::local`]) it only knows that it leads.
#[derive(Clone)]
pub struct Bus {
    leader: Arc<AtomicBool>,
    out: Option<mpsc::UnboundedSender<Signal>>,
    options: Option<PgConnectOptions>,
}

impl Bus {
    /// The sole replica: always the leader, nobody to tell.
    pub fn local() -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(true)),
            out: None,
            options: None,
        }
    }

    /// A replica on a shared PostgreSQL database: a standby until it leads.
    /// Starts the task that publishes this replica's signals.
    pub fn postgres(options: PgConnectOptions) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options.clone());
        tokio::spawn(publish(pool, rx));
        Self {
            leader: Arc::new(AtomicBool::new(false)),
            out: Some(tx),
            options: Some(options),
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.out.is_some()
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::Release);
    }

    /// Tells the leader, if this replica is not it.
    pub fn send(&self, signal: Signal) {
        if self.is_leader() {
            return;
        }
        if let Some(out) = &self.out {
            let _ = out.send(signal);
        }
    }

    /// The leader's side: hands every signal from other replicas to
    /// `on_signal` until `stop`. Reconnects when the connection drops.
    pub async fn listen(&self, stop: CancellationToken, on_signal: impl Fn(Signal)) {
        let Some(options) = &self.options else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let listener = async {
                let mut l = PgListener::connect_with(
                    &PgPoolOptions::new()
                        .max_connections(1)
                        .connect_lazy_with(options.clone()),
                )
                .await?;
                l.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = tokio::select! {
                () = stop.cancelled() => return,
                l = listener => match l {
                    Ok(l) => l,
                    Err(e) => {
                        warn!("cannot listen for other replicas, retrying in {backoff:?}: {e}");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            backoff = Duration::from_millis(100);
            // A reconnect may have missed messages: act as if woken.
            on_signal(Signal::Wake);
            loop {
                let n = tokio::select! {
                    () = stop.cancelled() => return,
                    n = listener.try_recv() => n,
                };
                match n {
                    Ok(Some(n)) => match Signal::parse(n.payload()) {
                        Some(s) => on_signal(s),
                        None => debug!(payload = n.payload(), "unknown replica signal"),
                    },
                    // The connection was lost; try_recv reconnects next time.
                    Ok(None) => on_signal(Signal::Wake),
                    Err(e) => {
                        warn!("lost the replicas' channel: {e}");
                        break;
                    }
                }
            }
        }
    }
}

/// Sends queued signals, coalescing wakes that pile up while one is sent.
async fn publish(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Signal>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(s) = rx.try_recv() {
            if s != Signal::Wake || !batch.contains(&Signal::Wake) {
                batch.push(s);
            }
        }
        for s in batch {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(s.payload())
                .execute(&pool)
                .await
            {
                // The leader's sweep and its scheduler's timer still get there.
                warn!("cannot notify the leader ({s:?}): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_and_unknown_payloads_are_ignored() {
        let id: RunId = "0190f3b4-0000-7000-8000-000000000001"
            .parse()
            .expect("run id");
        for s in [Signal::Wake, Signal::Cancel(id)] {
            assert_eq!(Signal::parse(&s.payload()), Some(s));
        }
        assert_eq!(Signal::parse("cancel:not-a-uuid"), None);
        assert_eq!(Signal::parse("rebalance"), None);
    }
}
