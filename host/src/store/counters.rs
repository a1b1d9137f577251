//! Counters kept in step with the runs (migration `0006_counters`): runs by
//! state (`run_counts`), and runs holding slots or waiting by pool, queue,
//! tag and label (`occupancy`). Every state change updates them in its own
//! transaction, so `/metrics`, `weir pool ls` and admission stats read one
//! row per thing counted instead of scanning runs.

use std::collections::BTreeSet;

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

/// Counts `n` runs moving `from` → `to` (`from` `None`: new runs), in the
/// transaction that moves them.
pub(super) async fn moved(
    tx: &mut WriteTx,
    keys: &Keys,
    from: Option<RunState>,
    to: RunState,
    n: i64,
) -> Result<()> {
    if n == 0 || from == Some(to) {
        return Ok(());
    }
    match from {
        Some(from) => {
            sqlx::query(
                "UPDATE run_counts SET n = n + CASE WHEN state = $1 THEN $3 ELSE $4 END \
                 WHERE state IN ($1, $2)",
            )
            .bind(to.as_str())
            .bind(from.as_str())
            .bind(n)
            .bind(-n)
            .execute(&mut **tx)
            .await?;
        }
        None => {
            sqlx::query("UPDATE run_counts SET n = n + $2 WHERE state = $1")
                .bind(to.as_str())
                .bind(n)
                .execute(&mut **tx)
                .await?;
        }
    }
    let (a0, q0) = from.map(class).unwrap_or((0, 0));
    let (a1, q1) = class(to);
    let (active, queued) = ((a1 - a0) * n, (q1 - q0) * n);
    if (active, queued) == (0, 0) || keys.0.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..keys.0.len())
        .map(|i| {
            let b = i * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO occupancy (kind, key, value, active, queued) VALUES {} \
         ON CONFLICT (kind, key, value) DO UPDATE SET \
         active = occupancy.active + excluded.active, \
         queued = occupancy.queued + excluded.queued",
        rows.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (kind, key, value) in &keys.0 {
        q = q
            .bind(*kind)
            .bind(key.as_str())
            .bind(value.as_str())
            .bind(active)
            .bind(queued);
    }
    q.execute(&mut **tx).await?;
    Ok(())
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
