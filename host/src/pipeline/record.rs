//! Recording what each plugin decision saw (issue #16), so that another
//! version can be replayed against it (`replay.rs`).
//!
//! Every decision the pipeline makes — enforced or shadow, a route, an
//! admission, a patch, a failure — hands its inputs here: the run's context,
//! the stats the stage read (every occupancy and pool-type answer, as the
//! plugin was given them), the binding's config and limits, and for a
//! mutator the job it was given. A background task encodes them (JSON, then
//! zstd; each part named by the SHA-256 of its text, so a part shared by
//! several decisions — the context all of a run's admission plugins saw, a
//! binding's config — is stored once) and writes them in batches: one
//! transaction for what arrived within 100 ms. A run never waits for it:
//! the queue is bounded and a decision that finds it full is counted as
//! dropped (`weir_decision_inputs_dropped_total`) and not recorded. A host
//! killed with decisions in the queue loses their inputs (not their runs):
//! replay does not find those decisions.
//!
//! Retention: the newest `keep` decisions younger than `keep_for`; the
//! task sweeps the rest once a minute.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::domain::{BindingMode, PluginBinding, PoolType};
use crate::metrics::Metrics;
use crate::plugin::{Counts, Scope};
use crate::store::{Blob, DecisionRecord, Store};

/// Decisions waiting to be written at most; past it they are dropped.
const QUEUE: usize = 8_192;
/// Decisions written per transaction at most.
const BATCH: usize = 512;
/// A stored part decodes to at most this many bytes.
const MAX_PART_BYTES: usize = 16 * 1024 * 1024;
/// zstd's default level: fast, and most of the gain on JSON this size.
const LEVEL: i32 = 3;
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long the recorder gathers decisions before it writes them.
const LINGER: Duration = Duration::from_millis(100);

/// How long recorded inputs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// The newest this many decisions; 0 records none.
    pub keep: u64,
    /// Decisions older than this are swept whatever their number.
    pub keep_for: chrono::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep: 100_000,
            keep_for: chrono::Duration::days(30),
        }
    }
}

/// One occupancy answer a stage gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Answer {
    #[serde(flatten)]
    pub scope: ScopeRecord,
    pub counts: Counts,
}

/// A [`Scope`] as recorded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ScopeRecord {
    Pool(String),
    Queue { pool: String, queue: String },
    Tag(String),
    Label { key: String, value: String },
}

impl From<&Scope> for ScopeRecord {
    fn from(s: &Scope) -> Self {
        match s {
            Scope::Pool(p) => ScopeRecord::Pool(p.clone()),
            Scope::Queue { pool, queue } => ScopeRecord::Queue {
                pool: pool.clone(),
                queue: queue.clone(),
            },
            Scope::Tag(t) => ScopeRecord::Tag(t.clone()),
            Scope::Label { key, value } => ScopeRecord::Label {
                key: key.clone(),
                value: value.clone(),
            },
        }
    }
}

impl From<&ScopeRecord> for Scope {
    fn from(s: &ScopeRecord) -> Self {
        match s {
            ScopeRecord::Pool(p) => Scope::Pool(p.clone()),
            ScopeRecord::Queue { pool, queue } => Scope::Queue {
                pool: pool.clone(),
                queue: queue.clone(),
            },
            ScopeRecord::Tag(t) => Scope::Tag(t.clone()),
            ScopeRecord::Label { key, value } => Scope::Label {
                key: key.clone(),
                value: value.clone(),
            },
        }
    }
}

/// Everything a stage's plugins read of the store, as answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StatsRead {
    pub occupancy: Vec<Answer>,
    /// Pool name → its type (`None`: no such pool).
    pub pool_types: std::collections::BTreeMap<String, Option<PoolType>>,
}

/// The binding a decision was made under: what replay calls the
/// candidate with unless told otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindingRecord {
    pub config: Value,
    pub deadline_ms: u32,
    pub memory_mb: u32,
}

impl From<&PluginBinding> for BindingRecord {
    fn from(b: &PluginBinding) -> Self {
        Self {
            config: b.config.clone(),
            deadline_ms: b.deadline_ms,
            memory_mb: b.memory_mb,
        }
    }
}

/// One decision and what it saw, before encoding.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub plugin: String,
    pub world: &'static str,
    pub mode: BindingMode,
    pub version: u32,
    pub digest: String,
    pub pool: String,
    pub outcome: Value,
    pub context: crate::plugin::RunContext,
    pub stats: StatsRead,
    pub binding: BindingRecord,
    pub job: Option<Value>,
}

enum Message {
    Decision(Box<Decision>),
    Flush(oneshot::Sender<()>),
}

/// The handle the pipeline records through; cheap to clone.
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Starts the recording task, or `None` when `retention.keep` is 0.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        retention: Retention,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Option<Self> {
        if retention.keep == 0 {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, retention, metrics.clone(), rx, stop));
        Some(Self { queue: tx, metrics })
    }

    /// Queues one decision; never waits. A full queue drops it (counted).
    pub(crate) fn record(&self, d: Decision) {
        if self.queue.try_send(Message::Decision(Box::new(d))).is_err() {
            self.metrics.decision_inputs(false, 1);
        }
    }

    /// Returns once every decision queued before the call is written (or
    /// dropped), so a replay right after a run sees its decisions.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Message::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    retention: Retention,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Message>,
    stop: CancellationToken,
) {
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => None,
            m = rx.recv() => m,
            _ = sweep.tick() => {
                let cutoff = Utc::now() - retention.keep_for;
                if let Err(e) = store.sweep_decisions(retention.keep, cutoff).await {
                    warn!(error = %e, "cannot sweep recorded decision inputs");
                }
                continue;
            }
        };
        let Some(first) = first else {
            // Stopping: write what is queued, then end.
            rx.close();
            let mut rest = Vec::new();
            while let Ok(m) = rx.try_recv() {
                rest.push(m);
            }
            write(&store, &metrics, rest).await;
            return;
        };
        // Gather for up to LINGER (a flush ends it): a few large write
        // transactions, not one per decision beside the runs' own writes.
        let until = tokio::time::Instant::now() + LINGER;
        let mut flushing = matches!(first, Message::Flush(_));
        let mut batch = vec![first];
        while batch.len() < BATCH && !flushing {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(m)) => {
                    flushing = matches!(m, Message::Flush(_));
                    batch.push(m);
                }
                Ok(None) | Err(_) => break,
            }
        }
        write(&store, &metrics, batch).await;
    }
}

/// Encodes and writes a batch, then answers its flushes.
async fn write(store: &Arc<dyn Store>, metrics: &Metrics, batch: Vec<Message>) {
    let mut decisions = Vec::new();
    let mut flushes = Vec::new();
    for m in batch {
        match m {
            Message::Decision(d) => decisions.push(*d),
            Message::Flush(tx) => flushes.push(tx),
        }
    }
    if !decisions.is_empty() {
        let n = decisions.len() as u64;
        // Compression is CPU work: off the reactor.
        let encoded = tokio::task::spawn_blocking(move || {
            let mut encoder = Encoder::new()?;
            decisions
                .iter()
                .map(|d| encoder.encode(d))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let written = match encoded {
            Ok(Ok(records)) => store
                .record_decisions(&records)
                .await
                .map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(()) => metrics.decision_inputs(true, n),
            Err(e) => {
                warn!(error = %e, decisions = n, "cannot record decision inputs");
                metrics.decision_inputs(false, n);
            }
        }
    }
    for f in flushes {
        let _ = f.send(());
    }
}

/// Encodes a batch: one zstd context for all of it, and a part the batch
/// has already encoded (a binding's config, stats read alike) taken from
/// there.
struct Encoder {
    zstd: zstd::bulk::Compressor<'static>,
    done: std::collections::HashMap<String, Blob>,
}

impl Encoder {
    fn new() -> Result<Self, String> {
        Ok(Self {
            zstd: zstd::bulk::Compressor::new(LEVEL).map_err(|e| e.to_string())?,
            done: std::collections::HashMap::new(),
        })
    }

    fn encode(&mut self, d: &Decision) -> Result<DecisionRecord, String> {
        Ok(DecisionRecord {
            run_id: d.run_id.clone(),
            at: d.at,
            plugin: d.plugin.clone(),
            world: d.world.to_owned(),
            mode: d.mode,
            version: d.version,
            digest: d.digest.clone(),
            pool: d.pool.clone(),
            outcome: d.outcome.clone(),
            context: self.part(&d.context)?,
            stats: self.part(&d.stats)?,
            binding: self.part(&d.binding)?,
            job: d.job.as_ref().map(|j| self.part(j)).transpose()?,
        })
    }

    /// A part as stored: zstd of its JSON, named by the JSON's SHA-256.
    fn part<T: Serialize>(&mut self, v: &T) -> Result<Blob, String> {
        let text = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&text)));
        if let Some(b) = self.done.get(&digest) {
            return Ok(b.clone());
        }
        let data = self.zstd.compress(&text).map_err(|e| e.to_string())?;
        let blob = Blob { digest, data };
        self.done.insert(blob.digest.clone(), blob.clone());
        Ok(blob)
    }
}

/// A stored part read back.
pub(crate) fn unblob<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    let text = zstd::bulk::decompress(data, MAX_PART_BYTES)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("cannot decode: {e}"))
}

/// A failed call as an outcome.
pub(crate) fn error_outcome(kind: &str, message: &str) -> Value {
    json!({"error": {"kind": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_equal_parts_share_a_digest() {
        let stats = StatsRead {
            occupancy: vec![Answer {
                scope: ScopeRecord::Queue {
                    pool: "p".into(),
                    queue: "q".into(),
                },
                counts: Counts {
                    running: 2,
                    queued: 7,
                },
            }],
            pool_types: [("p".to_owned(), Some(PoolType::Process))].into(),
        };
        let a = Encoder::new().expect("zstd").part(&stats).expect("encode");
        let b = Encoder::new()
            .expect("zstd")
            .part(&stats.clone())
            .expect("encode");
        assert_eq!(a.digest, b.digest);
        assert_eq!(unblob::<StatsRead>(&a.data).expect("decode"), stats);
        let text = serde_json::to_value(&stats).expect("json");
        assert_eq!(text["occupancy"][0]["queue"]["queue"], "q");
        let other = Encoder::new()
            .expect("zstd")
            .part(&StatsRead::default())
            .expect("encode");
        assert_ne!(other.digest, a.digest);
        // Garbage is an error, not a panic.
        assert!(unblob::<StatsRead>(b"not zstd").is_err());
    }
}
