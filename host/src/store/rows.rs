//! Rows to values and back: how each column is encoded (times as integer
//! microseconds, JSON as text, flags as booleans or SQLite integers) and how
//! each kind of row is decoded, with the column named in every error.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::BaseJobTemplate;
use crate::domain::{
    BindingMode, ConcurrencyLimit, Deployment, HistoryEntry, LateAction, OnError, PluginBinding,
    PluginVersion, Pool, PoolType, Queue, RetryPolicy, Run, RunState, World,
};
use crate::domain::{Role, TokenRecord};

/// A flag column: a boolean in PostgreSQL, an integer in SQLite.
pub(super) fn flag(row: &AnyRow, column: &str) -> Result<bool> {
    match row.try_get::<bool, _>(column) {
        Ok(b) => Ok(b),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_micros(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

pub(super) fn opt_micros(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_micros).transpose()
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    super::encode_json(v)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T> {
    super::decode_json(column, s)
}

pub(super) fn to_u32(column: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column}: {v} out of range")))
}

pub(super) fn opt_u32(column: &str, v: Option<i64>) -> Result<Option<u32>> {
    v.map(|v| to_u32(column, v)).transpose()
}

pub(super) fn count(v: i64) -> u64 {
    v.max(0) as u64
}

pub(super) fn parse_state(s: &str) -> Result<RunState> {
    RunState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run state {s:?}")))
}

pub(super) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::from_str(s).map_err(|e| StoreError::Corrupt(format!("run id {s:?}: {e}")))
}

pub(super) fn pool_from_row(row: &AnyRow) -> Result<Pool> {
    let pool_type: String = row.try_get("type")?;
    let template: String = row.try_get("base_job_template")?;
    Ok(Pool {
        name: row.try_get("name")?,
        pool_type: PoolType::parse(&pool_type)
            .ok_or_else(|| StoreError::Corrupt(format!("pool type {pool_type:?}")))?,
        base_job_template: from_json::<BaseJobTemplate>("base_job_template", &template)?,
        cluster: row.try_get("cluster")?,
        concurrency_limit: opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
        paused: flag(row, "paused")?,
        description: row.try_get("description")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

pub(super) fn queue_from_row(row: &AnyRow) -> Result<Queue> {
    Ok(Queue {
        pool: row.try_get("pool")?,
        name: row.try_get("name")?,
        priority: to_u32("priority", row.try_get("priority")?)?,
        concurrency_limit: opt_u32("concurrency_limit", row.try_get("concurrency_limit")?)?,
        paused: flag(row, "paused")?,
        late_after_seconds: opt_u32("late_after_seconds", row.try_get("late_after_seconds")?)?,
        late_action: {
            let a: String = row.try_get("late_action")?;
            LateAction::parse(&a)
                .ok_or_else(|| StoreError::Corrupt(format!("queue late_action {a:?}")))?
        },
        description: row.try_get("description")?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

pub(super) fn limit_from_row(row: &AnyRow) -> Result<ConcurrencyLimit> {
    Ok(ConcurrencyLimit {
        tag: row.try_get("tag")?,
        limit: to_u32("slots", row.try_get("slots")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

pub(super) fn deployment_from_row(row: &AnyRow) -> Result<Deployment> {
    Ok(Deployment {
        name: row.try_get("name")?,
        pool: row.try_get("pool")?,
        queue: row.try_get("queue")?,
        job_variables: from_json("job_variables", row.try_get("job_variables")?)?,
        tags: from_json("tags", row.try_get("tags")?)?,
        parameters: from_json("parameters", row.try_get("parameters")?)?,
        description: row.try_get("description")?,
        team: row.try_get("team")?,
        retries: RetryPolicy {
            max: to_u32("retries_max", row.try_get("retries_max")?)?,
            delay_seconds: to_u32("retry_delay_seconds", row.try_get("retry_delay_seconds")?)?,
        },
        created_at: from_micros(row.try_get("created_at")?)?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

pub(super) fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let role: String = row.try_get("role")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("role: {role:?} is not a role")))?,
        team: row.try_get("team")?,
        pools: from_json("pools", row.try_get("pools")?)?,
        prefix: row.try_get("prefix")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        revoked_at: opt_micros(row.try_get("revoked_at")?)?,
    })
}

pub(super) fn run_from_row(row: &AnyRow) -> Result<Run> {
    let job: Option<String> = row.try_get("job")?;
    let parent: Option<String> = row.try_get("parent_run_id")?;
    Ok(Run {
        id: parse_uuid(row.try_get("id")?)?,
        state: parse_state(row.try_get("state")?)?,
        state_message: row.try_get("state_message")?,
        pool: row.try_get("pool")?,
        queue: row.try_get("queue")?,
        deployment: row.try_get("deployment")?,
        job: job.map(|j| from_json::<Value>("job", &j)).transpose()?,
        tags: from_json("tags", row.try_get("tags")?)?,
        labels: from_json("labels", row.try_get("labels")?)?,
        parameters: from_json("parameters", row.try_get("parameters")?)?,
        job_variables: from_json("job_variables", row.try_get("job_variables")?)?,
        parent_run_id: parent.as_deref().map(parse_uuid).transpose()?,
        idempotency_key: row.try_get("idempotency_key")?,
        scheduled_at: from_micros(row.try_get("scheduled_at")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        started_at: opt_micros(row.try_get("started_at")?)?,
        ended_at: opt_micros(row.try_get("ended_at")?)?,
        attempt: to_u32("attempt", row.try_get("attempt")?)?,
        retries: RetryPolicy {
            max: to_u32("retries_max", row.try_get("retries_max")?)?,
            delay_seconds: to_u32("retry_delay_seconds", row.try_get("retry_delay_seconds")?)?,
        },
        exit_code: row.try_get("exit_code")?,
        history: None,
    })
}

pub(super) fn parse_world(s: &str) -> Result<World> {
    match s {
        "router" => Ok(World::Router),
        "admission" => Ok(World::Admission),
        "mutator" => Ok(World::Mutator),
        other => Err(StoreError::Corrupt(format!("plugin world {other:?}"))),
    }
}

pub(super) fn plugin_version_from_row(row: &AnyRow) -> Result<PluginVersion> {
    Ok(PluginVersion {
        name: row.try_get("name")?,
        version: to_u32("version", row.try_get("version")?)?,
        digest: row.try_get("digest")?,
        world: parse_world(row.try_get("world")?)?,
        wit_version: row.try_get("wit_version")?,
        size: count(row.try_get("size")?),
        created_at: from_micros(row.try_get("created_at")?)?,
    })
}

pub(super) fn binding_from_row(row: &AnyRow) -> Result<PluginBinding> {
    let pool: String = row.try_get("pool")?;
    let on_error: String = row.try_get("on_error")?;
    let mode: String = row.try_get("mode")?;
    Ok(PluginBinding {
        id: row.try_get("id")?,
        pool: if pool.is_empty() { None } else { Some(pool) },
        plugin: row.try_get("plugin")?,
        pinned_version: opt_u32("pinned_version", row.try_get("pinned_version")?)?,
        config: from_json("config", row.try_get("config")?)?,
        order: i32::try_from(row.try_get::<i64, _>("position")?)
            .map_err(|_| StoreError::Corrupt("binding position out of range".into()))?,
        on_error: OnError::parse(&on_error)
            .ok_or_else(|| StoreError::Corrupt(format!("on_error {on_error:?}")))?,
        deadline_ms: to_u32("deadline_ms", row.try_get("deadline_ms")?)?,
        memory_mb: to_u32("memory_mb", row.try_get("memory_mb")?)?,
        created_at: from_micros(row.try_get("created_at")?)?,
        mode: BindingMode::parse(&mode)
            .ok_or_else(|| StoreError::Corrupt(format!("binding mode {mode:?}")))?,
    })
}

pub(super) fn history_from_row(row: &AnyRow) -> Result<HistoryEntry> {
    Ok(HistoryEntry {
        state: parse_state(row.try_get("state")?)?,
        at: from_micros(row.try_get("at")?)?,
        message: row.try_get("message")?,
        cause: row.try_get("cause")?,
        detail: row
            .try_get::<Option<String>, _>("detail")?
            .map(|d| from_json::<Value>("detail", &d))
            .transpose()?,
    })
}
