//! Deployment schedules (`schedules`, migration `0009_schedules`): a row per
//! schedule, its definition and how far its runs have been created
//! (`created_through`). The runs themselves are ordinary runs whose
//! idempotency key names the schedule, its generation and the time.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::commit::WriteTx;
use super::rows::{flag, from_json, from_micros, micros, parse_uuid, to_json, to_u32};
use super::{Result, StoreError};
use crate::domain::{Catchup, RunId, Schedule, When};

const COLUMNS: &str = "deployment, name, id, generation, kind, cron, timezone, interval_seconds, \
    anchor, at, parameters, job_variables, catchup, paused, created_through, created_at, updated_at";

fn schedule_from_row(row: &AnyRow) -> Result<Schedule> {
    let kind: String = row.try_get("kind")?;
    let when = match kind.as_str() {
        "cron" => When::Cron {
            cron: row
                .try_get::<Option<String>, _>("cron")?
                .ok_or_else(|| StoreError::Corrupt("schedule cron: missing".into()))?,
            timezone: row
                .try_get::<Option<String>, _>("timezone")?
                .ok_or_else(|| StoreError::Corrupt("schedule timezone: missing".into()))?,
        },
        "interval" => When::Interval {
            interval_seconds: row
                .try_get::<Option<i64>, _>("interval_seconds")?
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| StoreError::Corrupt("schedule interval_seconds".into()))?,
            anchor: from_micros(
                row.try_get::<Option<i64>, _>("anchor")?
                    .ok_or_else(|| StoreError::Corrupt("schedule anchor: missing".into()))?,
            )?,
        },
        "once" => When::Once {
            at: from_micros(
                row.try_get::<Option<i64>, _>("at")?
                    .ok_or_else(|| StoreError::Corrupt("schedule at: missing".into()))?,
            )?,
        },
        other => return Err(StoreError::Corrupt(format!("schedule kind {other:?}"))),
    };
    let catchup: String = row.try_get("catchup")?;
    Ok(Schedule {
        deployment: row.try_get("deployment")?,
        name: row.try_get("name")?,
        id: row.try_get("id")?,
        generation: to_u32("generation", row.try_get("generation")?)?,
        when,
        parameters: from_json("parameters", &row.try_get::<String, _>("parameters")?)?,
        job_variables: from_json("job_variables", &row.try_get::<String, _>("job_variables")?)?,
        catchup: Catchup::parse(&catchup)
            .ok_or_else(|| StoreError::Corrupt(format!("schedule catchup {catchup:?}")))?,
        paused: flag(row, "paused")?,
        created_through: from_micros(row.try_get("created_through")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

/// The definition's columns: kind, cron, timezone, interval, anchor, at.
type WhenColumns = (
    &'static str,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn when_columns(when: &When) -> WhenColumns {
    match when {
        When::Cron { cron, timezone } => (
            "cron",
            Some(cron.clone()),
            Some(timezone.clone()),
            None,
            None,
            None,
        ),
        When::Interval {
            interval_seconds,
            anchor,
        } => (
            "interval",
            None,
            None,
            Some(i64::try_from(*interval_seconds).unwrap_or(i64::MAX)),
            Some(micros(*anchor)),
            None,
        ),
        When::Once { at } => ("once", None, None, None, None, Some(micros(*at))),
    }
}

pub(super) async fn insert(tx: &mut WriteTx, s: &Schedule) -> Result<()> {
    let exists = sqlx::query("SELECT 1 FROM deployments WHERE name = $1")
        .bind(&s.deployment)
        .fetch_optional(&mut **tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::not_found("deployment", &s.deployment));
    }
    let (kind, cron, tz, interval, anchor, at) = when_columns(&s.when);
    let inserted = sqlx::query(&format!(
        "INSERT INTO schedules ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(&s.deployment)
    .bind(&s.name)
    .bind(&s.id)
    .bind(i64::from(s.generation))
    .bind(kind)
    .bind(cron)
    .bind(tz)
    .bind(interval)
    .bind(anchor)
    .bind(at)
    .bind(to_json(&s.parameters)?)
    .bind(to_json(&s.job_variables)?)
    .bind(s.catchup.as_str())
    .bind(s.paused)
    .bind(micros(s.created_through))
    .bind(micros(s.created_at))
    .bind(micros(s.updated_at))
    .execute(&mut **tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(StoreError::conflict(
            Some("name"),
            format!(
                "deployment {:?} already has a schedule {:?}",
                s.deployment, s.name
            ),
        )),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Replaces a schedule's row (its definition, pause, generation, progress).
pub(super) async fn replace(tx: &mut WriteTx, s: &Schedule) -> Result<()> {
    let (kind, cron, tz, interval, anchor, at) = when_columns(&s.when);
    let done = sqlx::query(
        "UPDATE schedules SET generation = $1, kind = $2, cron = $3, timezone = $4, \
         interval_seconds = $5, anchor = $6, at = $7, parameters = $8, job_variables = $9, \
         catchup = $10, paused = $11, created_through = $12, updated_at = $13 \
         WHERE deployment = $14 AND name = $15",
    )
    .bind(i64::from(s.generation))
    .bind(kind)
    .bind(cron)
    .bind(tz)
    .bind(interval)
    .bind(anchor)
    .bind(at)
    .bind(to_json(&s.parameters)?)
    .bind(to_json(&s.job_variables)?)
    .bind(s.catchup.as_str())
    .bind(s.paused)
    .bind(micros(s.created_through))
    .bind(micros(s.updated_at))
    .bind(&s.deployment)
    .bind(&s.name)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(not_found(&s.deployment, &s.name));
    }
    Ok(())
}

fn not_found(deployment: &str, name: &str) -> StoreError {
    StoreError::not_found("schedule", format!("{deployment}/{name}"))
}

pub(super) async fn get(
    reader: &AnyPool,
    deployment: &str,
    name: &str,
) -> Result<Option<Schedule>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE deployment = $1 AND name = $2"
    ))
    .bind(deployment)
    .bind(name)
    .fetch_optional(reader)
    .await?
    .as_ref()
    .map(schedule_from_row)
    .transpose()
}

/// One schedule's row read for update inside a write.
pub(super) async fn get_for_update(
    tx: &mut WriteTx,
    lock_row: &str,
    deployment: &str,
    name: &str,
) -> Result<Schedule> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedules WHERE deployment = $1 AND name = $2{lock_row}"
    ))
    .bind(deployment)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| not_found(deployment, name))?;
    schedule_from_row(&row)
}

pub(super) async fn list(reader: &AnyPool, deployment: Option<&str>) -> Result<Vec<Schedule>> {
    let rows = match deployment {
        Some(d) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM schedules WHERE deployment = $1 ORDER BY name"
            ))
            .bind(d)
            .fetch_all(reader)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM schedules ORDER BY deployment, name"
            ))
            .fetch_all(reader)
            .await?
        }
    };
    rows.iter().map(schedule_from_row).collect()
}

/// Moves `created_through` forward to `through`, only for this generation
/// and only forward, so a pass racing a pause, a resume or another pass
/// never moves it back or across generations. False: nothing moved.
pub(super) async fn advance(
    tx: &mut WriteTx,
    s: &Schedule,
    through: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE schedules SET created_through = $1 WHERE deployment = $2 AND name = $3 \
         AND id = $4 AND generation = $5 AND paused = $6 AND created_through < $1",
    )
    .bind(micros(through))
    .bind(&s.deployment)
    .bind(&s.name)
    .bind(&s.id)
    .bind(i64::from(s.generation))
    .bind(false)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn delete(tx: &mut WriteTx, deployment: &str, name: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM schedules WHERE deployment = $1 AND name = $2")
        .bind(deployment)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(not_found(deployment, name));
    }
    Ok(())
}

/// Runs still waiting (Scheduled or Late, not released) whose idempotency
/// key starts with `prefix`: a schedule generation's upcoming runs.
pub(super) async fn waiting_runs(
    reader: &AnyPool,
    deployment: &str,
    prefix: &str,
) -> Result<Vec<RunId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE state IN ('Scheduled', 'Late') AND deployment = $1 \
         AND substr(idempotency_key, 1, $2) = $3 ORDER BY scheduled_at",
    )
    .bind(deployment)
    .bind(i32::try_from(prefix.len()).unwrap_or(i32::MAX))
    .bind(prefix)
    .fetch_all(reader)
    .await?;
    ids.iter().map(|id| parse_uuid(id)).collect()
}
