//! Pools, queues, tag limits and deployments.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::domain::{ConcurrencyLimit, Pool, PoolType, Queue};
use crate::resources::{
    DeploymentSpec, DeploymentUpdate, LimitSpec, PoolSpec, PoolUpdate, QueueSpec, QueueUpdate,
    RenderSpec, ScheduleSpec,
};
use crate::run::waiting::WaitingCounts;
use crate::template::BaseJobTemplate;

type Reply = Result<Json<Value>, ApiError>;
type Created = Result<(StatusCode, Json<Value>), ApiError>;

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Waiting runs by what holds them, per (pool, queue) of `pool` or of
/// every pool, read in one snapshot.
async fn waiting_by_queue(
    d: &AppState,
    pool: Option<&str>,
) -> Result<BTreeMap<(String, String), WaitingCounts>, ApiError> {
    let now = chrono::Utc::now();
    Ok(d.store
        .queue_waiting(pool, now)
        .await?
        .iter()
        .map(|q| ((q.pool.clone(), q.queue.clone()), WaitingCounts::of(q)))
        .collect())
}

fn pool_waiting(waiting: &BTreeMap<(String, String), WaitingCounts>, pool: &str) -> WaitingCounts {
    let mut sum = WaitingCounts::default();
    for ((p, _), counts) in waiting {
        if p == pool {
            sum.add(counts);
        }
    }
    sum
}

async fn pool_json(d: &AppState, pool: &Pool) -> Result<Value, ApiError> {
    let waiting = waiting_by_queue(d, Some(&pool.name)).await?;
    pool_json_with(d, pool, pool_waiting(&waiting, &pool.name)).await
}

async fn pool_json_with(
    d: &AppState,
    pool: &Pool,
    waiting: WaitingCounts,
) -> Result<Value, ApiError> {
    let occ = d.store.pool_occupancy(&pool.name).await?;
    let mut v = to_value(pool);
    v["active_runs"] = json!(occ.active);
    v["queued_runs"] = json!(occ.queued);
    v["waiting"] = to_value(&waiting);
    Ok(v)
}

async fn queue_json(d: &AppState, queue: &Queue) -> Result<Value, ApiError> {
    let waiting = waiting_by_queue(d, Some(&queue.pool)).await?;
    queue_json_with(d, queue, &waiting).await
}

async fn queue_json_with(
    d: &AppState,
    queue: &Queue,
    waiting: &BTreeMap<(String, String), WaitingCounts>,
) -> Result<Value, ApiError> {
    let occ = d.store.queue_occupancy(&queue.pool, &queue.name).await?;
    let mut v = to_value(queue);
    v["active_runs"] = json!(occ.active);
    v["queued_runs"] = json!(occ.queued);
    let counts = waiting
        .get(&(queue.pool.clone(), queue.name.clone()))
        .copied()
        .unwrap_or_default();
    v["waiting"] = to_value(&counts);
    Ok(v)
}

async fn limit_json(d: &AppState, limit: &ConcurrencyLimit) -> Result<Value, ApiError> {
    let mut v = to_value(limit);
    v["active_slots"] = json!(d.store.tag_slots_in_use(&limit.tag).await?);
    Ok(v)
}

pub(super) async fn default_template(Path(kind): Path<String>) -> Reply {
    let pool_type = PoolType::parse(&kind).ok_or_else(|| {
        ApiError::bad_request(
            Some("type"),
            format!("{kind:?} is not a pool type; use process or kubernetes"),
        )
    })?;
    Ok(Json(to_value(&BaseJobTemplate::default_for(
        pool_type.template_kind(),
    ))))
}

// -- pools -------------------------------------------------------------------

pub(super) async fn list_pools(State(d): State<AppState>) -> Reply {
    let waiting = waiting_by_queue(&d, None).await?;
    let mut items = Vec::new();
    for p in d.store.list_pools().await? {
        let counts = pool_waiting(&waiting, &p.name);
        items.push(pool_json_with(&d, &p, counts).await?);
    }
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_pool(
    State(d): State<AppState>,
    JsonBody(spec): JsonBody<PoolSpec>,
) -> Created {
    let pool = d.create_pool(spec).await?;
    Ok((StatusCode::CREATED, Json(pool_json(&d, &pool).await?)))
}

pub(super) async fn get_pool(State(d): State<AppState>, Path(name): Path<String>) -> Reply {
    let pool = d.store.get_pool(&name).await?;
    Ok(Json(pool_json(&d, &pool).await?))
}

pub(super) async fn update_pool(
    State(d): State<AppState>,
    Path(name): Path<String>,
    JsonBody(update): JsonBody<PoolUpdate>,
) -> Reply {
    let pool = d.update_pool(&name, update).await?;
    Ok(Json(pool_json(&d, &pool).await?))
}

pub(super) async fn delete_pool(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    d.store.delete_pool(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_pool_paused(d: &AppState, name: &str, paused: bool) -> Reply {
    let pool = d
        .update_pool(
            name,
            PoolUpdate {
                paused: Some(paused),
                ..PoolUpdate::default()
            },
        )
        .await?;
    Ok(Json(pool_json(d, &pool).await?))
}

pub(super) async fn pause_pool(State(d): State<AppState>, Path(name): Path<String>) -> Reply {
    set_pool_paused(&d, &name, true).await
}

pub(super) async fn resume_pool(State(d): State<AppState>, Path(name): Path<String>) -> Reply {
    set_pool_paused(&d, &name, false).await
}

// -- queues ------------------------------------------------------------------

pub(super) async fn list_queues(State(d): State<AppState>, Path(pool): Path<String>) -> Reply {
    let queues = d.store.list_queues(&pool).await?;
    let waiting = waiting_by_queue(&d, Some(&pool)).await?;
    let mut items = Vec::new();
    for q in queues {
        items.push(queue_json_with(&d, &q, &waiting).await?);
    }
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_queue(
    State(d): State<AppState>,
    Path(pool): Path<String>,
    JsonBody(spec): JsonBody<QueueSpec>,
) -> Created {
    let queue = d.create_queue(&pool, spec).await?;
    Ok((StatusCode::CREATED, Json(queue_json(&d, &queue).await?)))
}

pub(super) async fn get_queue(
    State(d): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> Reply {
    let queue = d.store.get_queue(&pool, &name).await?;
    Ok(Json(queue_json(&d, &queue).await?))
}

pub(super) async fn update_queue(
    State(d): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
    JsonBody(update): JsonBody<QueueUpdate>,
) -> Reply {
    let queue = d.update_queue(&pool, &name, update).await?;
    Ok(Json(queue_json(&d, &queue).await?))
}

pub(super) async fn delete_queue(
    State(d): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    d.store.delete_queue(&pool, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_queue_paused(d: &AppState, pool: &str, name: &str, paused: bool) -> Reply {
    let queue = d
        .update_queue(
            pool,
            name,
            QueueUpdate {
                paused: Some(paused),
                ..QueueUpdate::default()
            },
        )
        .await?;
    Ok(Json(queue_json(d, &queue).await?))
}

pub(super) async fn pause_queue(
    State(d): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> Reply {
    set_queue_paused(&d, &pool, &name, true).await
}

pub(super) async fn resume_queue(
    State(d): State<AppState>,
    Path((pool, name)): Path<(String, String)>,
) -> Reply {
    set_queue_paused(&d, &pool, &name, false).await
}

// -- limits ------------------------------------------------------------------

pub(super) async fn list_limits(State(d): State<AppState>) -> Reply {
    let mut items = Vec::new();
    for l in d.store.list_limits().await? {
        items.push(limit_json(&d, &l).await?);
    }
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_limit(
    State(d): State<AppState>,
    JsonBody(spec): JsonBody<LimitSpec>,
) -> Created {
    let limit = d.create_limit(spec).await?;
    Ok((StatusCode::CREATED, Json(limit_json(&d, &limit).await?)))
}

pub(super) async fn get_limit(State(d): State<AppState>, Path(tag): Path<String>) -> Reply {
    let limit = d.store.get_limit(&tag).await?;
    Ok(Json(limit_json(&d, &limit).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitUpdate {
    limit: u32,
}

pub(super) async fn update_limit(
    State(d): State<AppState>,
    Path(tag): Path<String>,
    JsonBody(update): JsonBody<LimitUpdate>,
) -> Reply {
    let limit = d.update_limit(&tag, update.limit).await?;
    Ok(Json(limit_json(&d, &limit).await?))
}

pub(super) async fn delete_limit(
    State(d): State<AppState>,
    Path(tag): Path<String>,
) -> Result<StatusCode, ApiError> {
    d.delete_limit(&tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

// -- schedules ---------------------------------------------------------------

/// A schedule as the API shows it, with its next times (from now, or from
/// where its runs have been created to when that is later).
fn schedule_json(s: &crate::domain::Schedule) -> Value {
    let mut v = to_value(s);
    let next: Vec<String> = match (s.paused, s.when.timetable()) {
        (false, Ok(table)) => table
            .between(
                chrono::Utc::now(),
                chrono::DateTime::<chrono::Utc>::MAX_UTC,
                3,
            )
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect(),
        _ => Vec::new(),
    };
    if let Value::Object(m) = &mut v {
        m.insert("next_times".into(), json!(next));
    }
    v
}

pub(super) async fn list_all_schedules(State(d): State<AppState>) -> Reply {
    let items: Vec<Value> = d
        .list_schedules(None)
        .await?
        .iter()
        .map(schedule_json)
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn list_schedules(State(d): State<AppState>, Path(name): Path<String>) -> Reply {
    let items: Vec<Value> = d
        .list_schedules(Some(&name))
        .await?
        .iter()
        .map(schedule_json)
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_schedule(
    State(d): State<AppState>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Created {
    let schedule = d.create_schedule(&name, spec).await?;
    Ok((StatusCode::CREATED, Json(schedule_json(&schedule))))
}

pub(super) async fn get_schedule(
    State(d): State<AppState>,
    Path((name, schedule)): Path<(String, String)>,
) -> Reply {
    Ok(Json(schedule_json(
        &d.get_schedule(&name, &schedule).await?,
    )))
}

pub(super) async fn delete_schedule(
    State(d): State<AppState>,
    Path((name, schedule)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    d.delete_schedule(&name, &schedule).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn pause_schedule(
    State(d): State<AppState>,
    Path((name, schedule)): Path<(String, String)>,
) -> Reply {
    Ok(Json(schedule_json(
        &d.set_schedule_paused(&name, &schedule, true).await?,
    )))
}

pub(super) async fn resume_schedule(
    State(d): State<AppState>,
    Path((name, schedule)): Path<(String, String)>,
) -> Reply {
    Ok(Json(schedule_json(
        &d.set_schedule_paused(&name, &schedule, false).await?,
    )))
}

// -- deployments -------------------------------------------------------------

pub(super) async fn list_deployments(State(d): State<AppState>) -> Reply {
    let items: Vec<Value> = d
        .store
        .list_deployments()
        .await?
        .iter()
        .map(to_value)
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_deployment(
    State(d): State<AppState>,
    JsonBody(spec): JsonBody<DeploymentSpec>,
) -> Created {
    let deployment = d.create_deployment(spec).await?;
    Ok((StatusCode::CREATED, Json(to_value(&deployment))))
}

pub(super) async fn get_deployment(State(d): State<AppState>, Path(name): Path<String>) -> Reply {
    Ok(Json(to_value(&d.store.get_deployment(&name).await?)))
}

pub(super) async fn update_deployment(
    State(d): State<AppState>,
    Path(name): Path<String>,
    JsonBody(update): JsonBody<DeploymentUpdate>,
) -> Reply {
    Ok(Json(to_value(&d.update_deployment(&name, update).await?)))
}

pub(super) async fn delete_deployment(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    d.delete_deployment(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn render_deployment(
    State(d): State<AppState>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<RenderSpec>,
) -> Reply {
    let (pool, job) = d.render_deployment(&name, spec).await?;
    Ok(Json(json!({
        "pool": pool.name,
        "type": pool.pool_type,
        "job_configuration": job,
    })))
}
