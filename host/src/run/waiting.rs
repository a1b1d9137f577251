//! Why a waiting run waits: what the scheduler's own state says of it
//! ([`WaitFacts`], read by the store in one snapshot), in the order a
//! reader needs it — its time, a plugin's deferral, a paused pool or queue,
//! each full limit with the runs holding it, and its turn.
//!
//! Nothing here guesses: each hold is a fact the release walk
//! (`domain/release.rs`) acts on, read from the same rows. The position in
//! the pool follows the walk's order (priority levels, round-robin between
//! the queues of a level, FIFO within a queue), limits aside.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{HistoryEntry, RunId, RunState};
use crate::store::{LimitFacts, QueueLine, QueueWaiting, WAIT_COUNT_CAP, WaitFacts};

/// The `waiting` object of a waiting run (`GET /api/v1/runs/{id}`, `weir
/// run inspect`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Waiting {
    /// The first hold in words, or that nothing holds it.
    pub summary: String,
    /// Where it stands among the runs a release pass would read now;
    /// `None` while it is not due (a time or a deferral holds it).
    pub position: Option<Position>,
    /// Everything that holds it, most decisive first; empty when it goes at
    /// the scheduler's next pass.
    pub holds: Vec<Held>,
}

/// A hold, with its words (`text`) beside its fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Held {
    #[serde(flatten)]
    pub hold: Hold,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Position {
    /// 1 = next in its queue.
    pub in_queue: u64,
    /// 1 = next in its pool's release order.
    pub in_pool: u64,
    /// The counts behind these stop past `WAIT_COUNT_CAP` due runs per
    /// queue: when one did, the position is at least what is said.
    pub at_least: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Hold {
    /// Scheduled for a later time.
    Scheduled {
        until: DateTime<Utc>,
    },
    /// Its last attempt failed; it waits for its retry delay, then runs as
    /// attempt `next_attempt`.
    Retry {
        until: DateTime<Utc>,
        next_attempt: u32,
    },
    /// An admission plugin deferred it; admission decides again at `until`.
    Deferred {
        until: DateTime<Utc>,
        plugin: Option<String>,
        version: Option<u64>,
        reason: Option<String>,
    },
    /// Its pool or queue no longer exists.
    Missing {
        scope: Scope,
        name: String,
    },
    Paused {
        scope: Scope,
        name: String,
    },
    /// A limit with every slot taken.
    Limit {
        scope: Scope,
        name: String,
        used: u64,
        limit: u32,
        /// Runs holding its slots (at most ten, by id: oldest first).
        holders: Vec<RunId>,
    },
    /// Due runs ahead of it (at least so many, when `at_least`).
    Turn {
        ahead_in_queue: u64,
        ahead_in_pool: u64,
        at_least: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Scope {
    Pool,
    Queue,
    Tag,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Pool => "pool",
            Scope::Queue => "queue",
            Scope::Tag => "tag",
        }
    }
}

impl Hold {
    fn describe(&self) -> String {
        let t = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self {
            Hold::Scheduled { until } => format!("scheduled for {}", t(until)),
            Hold::Retry {
                until,
                next_attempt,
            } => format!(
                "attempt {} failed; attempt {next_attempt} starts after {}",
                next_attempt.saturating_sub(1),
                t(until)
            ),
            Hold::Deferred {
                until,
                plugin,
                version,
                reason,
            } => {
                let by = match (plugin, version) {
                    (Some(p), Some(v)) => format!(" by {p}@{v}"),
                    (Some(p), None) => format!(" by {p}"),
                    _ => String::new(),
                };
                let why = reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                format!("deferred{by} until {}{why}", t(until))
            }
            Hold::Missing { scope, name } => {
                format!("its {} {name} no longer exists", scope.as_str())
            }
            Hold::Paused { scope, name } => format!("{} {name} is paused", scope.as_str()),
            Hold::Limit {
                scope,
                name,
                used,
                limit,
                holders,
            } => {
                let ids: Vec<String> = holders.iter().map(ToString::to_string).collect();
                let more = used.saturating_sub(holders.len() as u64);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(
                    "{} {name} is full ({used}/{limit} slots), held by {}{more}",
                    scope.as_str(),
                    ids.join(", ")
                )
            }
            Hold::Turn {
                ahead_in_queue,
                ahead_in_pool,
                at_least,
            } => {
                let more = if *at_least { "at least " } else { "" };
                format!(
                    "{more}{ahead_in_queue} due run(s) ahead of it in its queue, {more}{ahead_in_pool} in its pool's release order"
                )
            }
        }
    }
}

/// Why the run of `facts` waits at `now`; `history` is its history (the
/// deferring plugin's decision is read from it).
pub(crate) fn explain(facts: &WaitFacts, history: &[HistoryEntry], now: DateTime<Utc>) -> Waiting {
    let run = &facts.run;
    let mut holds = Vec::new();
    let later = run.scheduled_at > now;
    if facts.deferred {
        let (plugin, version, reason) = last_deferral(history);
        holds.push(Hold::Deferred {
            until: run.scheduled_at,
            plugin,
            version,
            reason,
        });
    } else if later && run.state == RunState::AwaitingRetry {
        holds.push(Hold::Retry {
            until: run.scheduled_at,
            // Counted up when the attempt failed.
            next_attempt: run.attempt,
        });
    } else if later {
        holds.push(Hold::Scheduled {
            until: run.scheduled_at,
        });
    }
    let due = !facts.deferred && !later;

    match &facts.pool {
        None => holds.push(Hold::Missing {
            scope: Scope::Pool,
            name: run.pool.clone(),
        }),
        Some(pool) => limit_holds(&mut holds, Scope::Pool, &run.pool, pool),
    }
    match &facts.queue {
        None => holds.push(Hold::Missing {
            scope: Scope::Queue,
            name: format!("{}/{}", run.pool, run.queue),
        }),
        Some(queue) => limit_holds(
            &mut holds,
            Scope::Queue,
            &format!("{}/{}", run.pool, run.queue),
            queue,
        ),
    }
    for (tag, facts) in &facts.tags {
        limit_holds(&mut holds, Scope::Tag, tag, facts);
    }

    let position = if due {
        position(&facts.pool_queues, &run.queue)
    } else {
        None
    };
    if let Some(p) = position
        && p.in_queue > 1
    {
        holds.push(Hold::Turn {
            ahead_in_queue: p.in_queue - 1,
            ahead_in_pool: p.in_pool - 1,
            at_least: p.at_least,
        });
    }
    let summary = match holds.first() {
        Some(first) => first.describe(),
        None => "nothing holds it: it goes at the scheduler's next pass".to_string(),
    };
    Waiting {
        summary,
        position,
        holds: holds
            .into_iter()
            .map(|hold| Held {
                text: hold.describe(),
                hold,
            })
            .collect(),
    }
}

/// A queue's or pool's waiting runs counted by what holds them (the
/// `waiting` of `GET /api/v1/pools`, `.../queues`; `weir pool ls`, `weir
/// queue ls`), each run under the first hold [`explain`] would name for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct WaitingCounts {
    /// Scheduled or Late for a later time.
    pub scheduled: u64,
    /// Waiting out a retry delay.
    pub retry: u64,
    /// Deferred by an admission plugin.
    pub deferred: u64,
    /// Due, in a paused pool or queue.
    pub paused: u64,
    /// Due, held by a full pool, queue or tag limit.
    pub limit: u64,
    /// Due and free to go: released at the scheduler's next pass, in
    /// release order.
    pub turn: u64,
    /// Waiting runs past the first `WAIT_COUNT_CAP` of a queue in release
    /// order: counted in its total, not sorted by reason (so reading the
    /// counts costs at most that many runs per queue).
    pub unsorted: u64,
}

impl WaitingCounts {
    /// One queue's counts.
    pub(crate) fn of(q: &QueueWaiting) -> Self {
        let scan = &q.scanned;
        let due = scan.due + scan.tag_full;
        let (paused, limit, turn) = if q.pool_paused || q.queue_paused {
            (due, 0, 0)
        } else if q.pool_full || q.queue_full {
            (0, due, 0)
        } else {
            (0, scan.tag_full, scan.due)
        };
        Self {
            scheduled: scan.scheduled,
            retry: scan.retry,
            deferred: scan.deferred,
            paused,
            limit,
            turn,
            unsorted: q.queued.saturating_sub(scan.total()),
        }
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.scheduled += other.scheduled;
        self.retry += other.retry;
        self.deferred += other.deferred;
        self.paused += other.paused;
        self.limit += other.limit;
        self.turn += other.turn;
        self.unsorted += other.unsorted;
    }
}

fn limit_holds(holds: &mut Vec<Hold>, scope: Scope, name: &str, facts: &LimitFacts) {
    if facts.paused {
        holds.push(Hold::Paused {
            scope,
            name: name.to_owned(),
        });
    }
    if let Some(limit) = facts.limit
        && facts.used >= u64::from(limit)
    {
        holds.push(Hold::Limit {
            scope,
            name: name.to_owned(),
            used: facts.used,
            limit,
            holders: facts.holders.clone(),
        });
    }
}

/// The run's place in its queue and in the pool's release order: all due
/// runs of higher-priority (lower number) queues go first; within its
/// level, one run per queue per round, queues in name order; paused queues
/// release nothing.
fn position(queues: &[QueueLine], own: &str) -> Option<Position> {
    let mine = queues.iter().position(|q| q.name == own)?;
    let line = &queues[mine];
    let ahead = line.ahead?;
    let capped = |n: u64| n > WAIT_COUNT_CAP;
    let mut at_least = capped(ahead);
    let mut in_pool = ahead;
    for (i, q) in queues.iter().enumerate() {
        if i == mine || q.paused {
            continue;
        }
        if q.priority < line.priority {
            in_pool += q.due;
            at_least |= capped(q.due);
        } else if q.priority == line.priority {
            // Rounds before ours: `ahead` full rounds, plus this round's
            // turn if the queue comes first in it.
            let rounds = ahead + u64::from(i < mine);
            in_pool += q.due.min(rounds);
            at_least |= capped(q.due) && q.due < rounds;
        }
    }
    Some(Position {
        in_queue: ahead + 1,
        in_pool: in_pool + 1,
        at_least,
    })
}

/// The plugin, version and reason of the last deferral in `history`.
fn last_deferral(history: &[HistoryEntry]) -> (Option<String>, Option<u64>, Option<String>) {
    history
        .iter()
        .rev()
        .filter_map(|h| h.detail.as_ref())
        .find(|d| d["decision"]["decision"] == "defer")
        .map(|d| {
            (
                d.get("plugin").and_then(Value::as_str).map(str::to_owned),
                d.get("version").and_then(Value::as_u64),
                d["decision"]
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, priority: i64, due: u64, ahead: Option<u64>) -> QueueLine {
        QueueLine {
            name: name.into(),
            priority,
            paused: false,
            due,
            ahead,
        }
    }

    #[test]
    fn queue_counts_name_each_run_under_its_first_hold() {
        let scan = crate::store::WaitScan {
            scheduled: 4,
            retry: 1,
            deferred: 2,
            tag_full: 3,
            due: 5,
        };
        let open = QueueWaiting {
            pool: "p".into(),
            queue: "q".into(),
            queued: 15,
            scanned: scan,
            ..QueueWaiting::default()
        };
        let counts = WaitingCounts::of(&open);
        assert_eq!((counts.scheduled, counts.retry, counts.deferred), (4, 1, 2));
        assert_eq!((counts.paused, counts.limit, counts.turn), (0, 3, 5));
        assert_eq!(counts.unsorted, 0);
        // A full queue holds every due run; a pause comes before it.
        let full = QueueWaiting {
            queue_full: true,
            ..open.clone()
        };
        let counts = WaitingCounts::of(&full);
        assert_eq!((counts.paused, counts.limit, counts.turn), (0, 8, 0));
        let paused = QueueWaiting {
            pool_paused: true,
            ..full
        };
        let counts = WaitingCounts::of(&paused);
        assert_eq!((counts.paused, counts.limit, counts.turn), (8, 0, 0));
        // Past the scan: counted, not sorted.
        let deep = QueueWaiting {
            queued: 15 + 2_000,
            ..open
        };
        let mut sum = WaitingCounts::of(&deep);
        assert_eq!(sum.unsorted, 2_000);
        sum.add(&WaitingCounts::of(&deep));
        assert_eq!((sum.unsorted, sum.turn), (4_000, 10));
    }

    #[test]
    fn the_pool_position_follows_priority_then_round_robin() {
        // Level 1: `a` (5 due) before everything; level 2: `b` (1 due),
        // ours `c` (third in it), `d` (10 due).
        let queues = vec![
            line("a", 1, 5, None),
            line("b", 2, 1, None),
            line("c", 2, 6, Some(2)),
            line("d", 2, 10, None),
        ];
        let p = position(&queues, "c").expect("a position");
        assert_eq!(p.in_queue, 3);
        // 5 (level 1) + 2 ahead in c + b's 1 (min(1, 3)) + d's 2 (min(10, 2)).
        assert_eq!(p.in_pool, 5 + 2 + 1 + 2 + 1);
        // A paused queue releases nothing, so it is not ahead.
        let mut paused = queues.clone();
        paused[0].paused = true;
        assert_eq!(position(&paused, "c").expect("a position").in_pool, 6);
        // First in its queue and its level's first queue: next after level 1.
        let queues = vec![line("a", 1, 5, None), line("b", 2, 3, Some(0))];
        assert_eq!(
            position(&queues, "b"),
            Some(Position {
                in_queue: 1,
                in_pool: 6,
                at_least: false
            })
        );
        // A count past the cap makes the position a lower bound.
        let deep = vec![
            line("a", 1, WAIT_COUNT_CAP + 1, None),
            line("b", 2, 3, Some(0)),
        ];
        let p = position(&deep, "b").expect("a position");
        assert!(p.at_least);
        assert_eq!(p.in_pool, WAIT_COUNT_CAP + 2);
        assert!(!position(&queues, "b").expect("a position").at_least);
    }

    #[test]
    fn a_deferral_is_read_from_the_last_deferring_decision() {
        let entry = |detail: Value| HistoryEntry {
            state: RunState::Scheduled,
            at: Utc::now(),
            message: String::new(),
            cause: "admission".into(),
            detail: Some(detail),
        };
        let history = vec![
            entry(serde_json::json!({"plugin": "old", "version": 1,
                "decision": {"decision": "defer", "reason": "before"}})),
            entry(serde_json::json!({"plugin": "q", "version": 3,
                "decision": {"decision": "defer", "seconds": 30, "reason": "team full"}})),
            entry(serde_json::json!({"plugin": "other", "decision": {"decision": "admit"}})),
        ];
        assert_eq!(
            last_deferral(&history),
            (Some("q".into()), Some(3), Some("team full".into()))
        );
        assert_eq!(last_deferral(&[]), (None, None, None));
    }
}
