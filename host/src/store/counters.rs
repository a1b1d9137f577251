//! Counters kept in step with the runs (migration `0006_counters`): runs by
//! state (`run_counts`), and runs holding slots or waiting by pool, queue,
//! tag and label (`occupancy`). Every state change updates them in its own
//! transaction, so `/metrics`, `weir pool ls` and admission stats read one
//! row per thing counted instead of scanning runs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use sqlx::Row;

use super::commit::WriteTx;
use super::rows::count;
use super::{Occupancy, Result};
use crate::domain::RunState;

/// What a run is counted under: (kind, key, value) rows of `occupancy`.
#[derive(Debug, Default)]
pub(super) struct Keys(BTreeSet<(&'static str, String, String)>);

impl Keys {
    pub(super) fn of(
        pool: &str,
        queue: &str,
        tags: &[String],
        labels: &Map<String, Value>,
    ) -> Self {
        let mut keys = BTreeSet::new();
        keys.insert(("pool", pool.to_owned(), String::new()));
        keys.insert(("queue", pool.to_owned(), queue.to_owned()));
        for tag in tags {
            keys.insert(("tag", tag.clone(), String::new()));
        }
        for (k, v) in labels {
            // Labels are strings; anything else is not counted (nor matched
            // by `label_occupancy`).
            if let Value::String(v) = v {
                keys.insert(("label", k.clone(), v.clone()));
            }
        }
        Self(keys)
    }
}

/// (holding slots, waiting) for one run in `state`.
fn class(state: RunState) -> (i64, i64) {
    (
        i64::from(state.holds_slots()),
        i64::from(state.is_waiting()),
    )
}

/// The counter changes of one transaction, applied by [`Tally::apply`] as
/// its last statements.
///
/// On PostgreSQL the counter rows are shared by every transaction that
/// moves a run, so their row locks are taken last and always in one order
/// (`run_counts` by state, then `occupancy` by kind, key, value): a
/// transaction waiting for a counter row then holds nothing but counter rows
/// that sort before it, and no two transactions can wait on each other.
/// (Updating them where each run moved deadlocked: a release pass held
/// `Pending`'s row while it locked its next run, which a cancel held while
/// it waited for `Pending`'s row.) It also makes a release pass one update
/// per counter, not one per run.
#[derive(Debug, Default)]
pub(super) struct Tally {
    states: BTreeMap<&'static str, i64>,
    occupancy: BTreeMap<(&'static str, String, String), (i64, i64)>,
}

impl Tally {
    /// Counts `n` runs moving `from` → `to` (`from` `None`: new runs).
    pub(super) fn moved(&mut self, keys: &Keys, from: Option<RunState>, to: RunState, n: i64) {
        if n == 0 || from == Some(to) {
            return;
        }
        *self.states.entry(to.as_str()).or_default() += n;
        if let Some(from) = from {
            *self.states.entry(from.as_str()).or_default() -= n;
        }
        let (a0, q0) = from.map(class).unwrap_or((0, 0));
        let (a1, q1) = class(to);
        let (active, queued) = ((a1 - a0) * n, (q1 - q0) * n);
        if (active, queued) == (0, 0) {
            return;
        }
        for key in &keys.0 {
            let t = self.occupancy.entry(key.clone()).or_default();
            t.0 += active;
            t.1 += queued;
        }
    }

    /// Applies the changes: call last in the transaction, before commit.
    pub(super) async fn apply(self, tx: &mut WriteTx) -> Result<()> {
        let states: Vec<(&str, i64)> = self.states.into_iter().filter(|(_, n)| *n != 0).collect();
        if !states.is_empty() {
            let sql = format!(
                "INSERT INTO run_counts (state, n) VALUES {} \
                 ON CONFLICT (state) DO UPDATE SET n = run_counts.n + excluded.n",
                marks(states.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for (state, n) in states {
                q = q.bind(state).bind(n);
            }
            q.execute(&mut **tx).await?;
        }
        let rows: Vec<_> = self
            .occupancy
            .into_iter()
            .filter(|(_, d)| *d != (0, 0))
            .collect();
        // In chunks, still in the one sorted order: a release of many runs
        // with distinct labels has more rows than one statement binds
        // (SQLite 32,766 variables, PostgreSQL 65,535 parameters).
        for part in rows.chunks(OCCUPANCY_CHUNK) {
            let sql = format!(
                "INSERT INTO occupancy (kind, key, value, active, queued) VALUES {} \
                 ON CONFLICT (kind, key, value) DO UPDATE SET \
                 active = occupancy.active + excluded.active, \
                 queued = occupancy.queued + excluded.queued",
                marks(part.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for ((kind, key, value), (active, queued)) in part {
                q = q
                    .bind(*kind)
                    .bind(key.as_str())
                    .bind(value.as_str())
                    .bind(*active)
                    .bind(*queued);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Occupancy rows per statement (five bound variables each).
const OCCUPANCY_CHUNK: usize = 1_000;

/// `($1, $2), ($3, $4), …`: `rows` tuples of `width` placeholders.
pub(super) fn marks(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One counter row: zero when nothing was ever counted under it.
pub(super) async fn occupancy<'e, E>(
    executor: E,
    kind: &str,
    key: &str,
    value: &str,
) -> Result<Occupancy>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT active, queued FROM occupancy WHERE kind = $1 AND key = $2 AND value = $3",
    )
    .bind(kind)
    .bind(key)
    .bind(value)
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        Some(row) => Occupancy {
            active: count(row.try_get("active")?),
            queued: count(row.try_get("queued")?),
        },
        None => Occupancy::default(),
    })
}

/// Counts the labels of the runs holding slots or waiting again, from their
/// rows: after a run whose labels do not read back was set aside, so what
/// it added cannot be taken away by key. Unreadable labels count as none.
pub(super) async fn recount_labels(tx: &mut WriteTx) -> Result<()> {
    sqlx::query("DELETE FROM occupancy WHERE kind = 'label'")
        .execute(&mut **tx)
        .await?;
    let rows = sqlx::query(
        "SELECT state, labels FROM runs WHERE state IN \
         ('Pending','Running','Cancelling','Scheduled','Late','AwaitingRetry')",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut totals: std::collections::BTreeMap<(String, String), (i64, i64)> =
        std::collections::BTreeMap::new();
    for row in rows {
        let state: String = row.try_get("state")?;
        let Some(state) = RunState::parse(&state) else {
            continue;
        };
        let raw: String = row.try_get("labels")?;
        let Ok(labels) = serde_json::from_str::<Map<String, Value>>(&raw) else {
            continue;
        };
        let (a, q) = class(state);
        for (k, v) in labels {
            if let Value::String(v) = v {
                let t = totals.entry((k, v)).or_default();
                t.0 += a;
                t.1 += q;
            }
        }
    }
    for ((key, value), (active, queued)) in totals {
        sqlx::query(
            "INSERT INTO occupancy (kind, key, value, active, queued) VALUES ('label', $1, $2, $3, $4)",
        )
        .bind(key)
        .bind(value)
        .bind(active)
        .bind(queued)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
