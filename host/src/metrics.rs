//! Prometheus metrics: counters and the scheduling-latency histogram are kept
//! live; run counts, queue depth and slot use are read from the store at
//! scrape time, so they are true after a restart.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::RunState;
use crate::store::StoreStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    pool: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabel {
    kind: String,
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabel {
    plugin: String,
    world: String,
    decision: String,
    /// `yes`, `no`, or `none` (nothing enforced to compare with).
    agrees: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    shadow_decisions: Family<ShadowLabel, Counter>,
    inputs_recorded: Counter,
    inputs_dropped: Counter,
    runs_created: Counter,
    late_cancelled: Counter,
    scheduled_runs: Counter,
    schedule_skipped: Counter,
    transitions: Family<StateLabel, Counter>,
    scheduling_latency: Histogram,
    runs: Family<StateLabel, Gauge>,
    queue_depth: Family<QueueLabel, Gauge>,
    queue_active: Family<QueueLabel, Gauge>,
    slots_used: Family<SlotLabel, Gauge>,
    slots_limit: Family<SlotLabel, Gauge>,
    leader: Gauge,
    store_writes: Counter,
    store_commits: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let runs_created = Counter::default();
        let shadow_decisions = Family::<ShadowLabel, Counter>::default();
        registry.register(
            "plugin_shadow_decisions",
            "Decisions of plugins bound in shadow mode, by plugin, world, decision and \
             agreement with what was enforced",
            shadow_decisions.clone(),
        );
        let inputs_recorded = Counter::default();
        let inputs_dropped = Counter::default();
        registry.register(
            "decision_inputs_recorded",
            "Plugin decisions whose inputs were recorded for replay",
            inputs_recorded.clone(),
        );
        registry.register(
            "decision_inputs_dropped",
            "Plugin decisions whose inputs were not recorded: the recorder was behind \
             (its queue full) or its write failed",
            inputs_dropped.clone(),
        );
        let transitions = Family::<StateLabel, Counter>::default();
        // 100 µs … ~100 s.
        let scheduling_latency = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 21),
        );
        let runs = Family::<StateLabel, Gauge>::default();
        let queue_depth = Family::<QueueLabel, Gauge>::default();
        let queue_active = Family::<QueueLabel, Gauge>::default();
        let slots_used = Family::<SlotLabel, Gauge>::default();
        let slots_limit = Family::<SlotLabel, Gauge>::default();
        registry.register("runs_created", "Runs created", runs_created.clone());
        let late_cancelled = Counter::default();
        registry.register(
            "late_runs_cancelled",
            "Runs cancelled because they turned Late in a queue whose late action is cancel",
            late_cancelled.clone(),
        );
        let scheduled_runs = Counter::default();
        registry.register(
            "schedule_runs_created",
            "Runs created by deployment schedules (on time or by a catch-up policy)",
            scheduled_runs.clone(),
        );
        let schedule_skipped = Counter::default();
        registry.register(
            "schedule_times_skipped",
            "Scheduled times missed while no replica led that their catch-up policy gave no run",
            schedule_skipped.clone(),
        );
        registry.register(
            "run_transitions",
            "State changes recorded, by target state",
            transitions.clone(),
        );
        registry.register(
            "scheduling_latency_seconds",
            "Time from a run being due to its release by the scheduler",
            scheduling_latency.clone(),
        );
        registry.register("runs", "Runs by state", runs.clone());
        registry.register(
            "queue_depth",
            "Runs waiting in each queue",
            queue_depth.clone(),
        );
        registry.register(
            "queue_active_runs",
            "Runs holding slots in each queue",
            queue_active.clone(),
        );
        registry.register(
            "slots_in_use",
            "Concurrency slots held, by kind (pool, queue, tag)",
            slots_used.clone(),
        );
        registry.register(
            "slots_limit",
            "Concurrency limit, by kind (absent: unlimited)",
            slots_limit.clone(),
        );
        let store_writes = Counter::default();
        let store_commits = Counter::default();
        registry.register(
            "store_writes",
            "Write transactions committed through the embedded store's group commit",
            store_writes.clone(),
        );
        registry.register(
            "store_commits",
            "COMMITs (fsyncs) the embedded store's group commit issued for them",
            store_commits.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the scheduler and the backends, else 0",
            leader.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            shadow_decisions,
            inputs_recorded,
            inputs_dropped,
            runs_created,
            late_cancelled,
            scheduled_runs,
            schedule_skipped,
            transitions,
            scheduling_latency,
            runs,
            queue_depth,
            queue_active,
            slots_used,
            slots_limit,
            leader,
            store_writes,
            store_commits,
        }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Decisions whose inputs were recorded (`true`) or dropped.
    pub fn decision_inputs(&self, recorded: bool, n: u64) {
        if recorded {
            self.inputs_recorded.inc_by(n);
        } else {
            self.inputs_dropped.inc_by(n);
        }
    }

    /// One decision of a shadow binding.
    pub fn shadow_decided(&self, plugin: &str, world: &str, decision: &str, agrees: Option<bool>) {
        self.shadow_decisions
            .get_or_create(&ShadowLabel {
                plugin: plugin.to_owned(),
                world: world.to_owned(),
                decision: decision.to_owned(),
                agrees: match agrees {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "none",
                }
                .to_owned(),
            })
            .inc();
    }

    pub fn run_created(&self) {
        self.runs_created.inc();
    }

    pub fn late_run_cancelled(&self) {
        self.late_cancelled.inc();
    }

    pub fn schedule_run_created(&self) {
        self.scheduled_runs.inc();
    }

    pub fn schedule_times_skipped(&self, n: u64) {
        self.schedule_skipped.inc_by(n);
    }

    pub fn run_transitioned(&self, to: RunState) {
        self.transitions
            .get_or_create(&StateLabel {
                state: to.as_str().to_owned(),
            })
            .inc();
    }

    pub fn run_released(&self, waited: Duration) {
        self.scheduling_latency.observe(waited.as_secs_f64());
        self.run_transitioned(RunState::Pending);
    }

    /// Prometheus text exposition of everything, with `stats` read just now.
    pub fn render(&self, stats: &StoreStats) -> String {
        self.runs.clear();
        for state in RunState::ALL {
            let n = stats
                .runs_by_state
                .get(state.as_str())
                .copied()
                .unwrap_or(0);
            self.runs
                .get_or_create(&StateLabel {
                    state: state.as_str().to_owned(),
                })
                .set(n as i64);
        }
        self.queue_depth.clear();
        self.queue_active.clear();
        for ((pool, queue), occ) in &stats.queues {
            let label = QueueLabel {
                pool: pool.clone(),
                queue: queue.clone(),
            };
            self.queue_depth
                .get_or_create(&label)
                .set(occ.queued as i64);
            self.queue_active
                .get_or_create(&label)
                .set(occ.active as i64);
        }
        self.slots_used.clear();
        self.slots_limit.clear();
        for ((kind, key), (used, limit)) in &stats.slots {
            let label = SlotLabel {
                kind: kind.clone(),
                key: key.clone(),
            };
            self.slots_used.get_or_create(&label).set(*used as i64);
            if let Some(l) = limit {
                self.slots_limit.get_or_create(&label).set(i64::from(*l));
            }
        }
        if let Some((writes, commits)) = stats.group_commit {
            use std::sync::atomic::Ordering;
            self.store_writes.inner().store(writes, Ordering::Relaxed);
            self.store_commits.inner().store(commits, Ordering::Relaxed);
        }
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = encode(&mut out, &registry);
        }
        out
    }
}
