//! Plugins (uploaded as the request body) and their bindings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryPairs};
use super::runs::check_read;
use crate::auth::Principal;
use crate::domain::BindingMode;
use crate::pipeline::{Candidate, DEFAULT_DECISIONS, MAX_DECISIONS, ReplayRequest, parse_since};
use crate::registry::BindingSpec;

/// How many of the newest history records `/decisions` looks through.
const DECISIONS_SCAN: u64 = 5_000;
/// Decisions listed by `/decisions` at most (and by default).
const DECISIONS_MAX: u32 = 200;
const DECISIONS_DEFAULT: u32 = 50;

type Reply = Result<Json<Value>, ApiError>;

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub(super) async fn list(State(d): State<AppState>) -> Reply {
    let mut items = Vec::new();
    for p in d.store.list_plugins().await? {
        let mut v = to_value(&p);
        v["bindings"] = json!(d.store.bindings_of_plugin(&p.name).await?.len());
        items.push(v);
    }
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn add(
    State(d): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|e| {
        super::extract::body_error(e, "a plugin upload", crate::registry::MAX_PLUGIN_BYTES)
    })?;
    let (version, created) = d.pipeline.registry().add(&name, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(to_value(&version))))
}

pub(super) async fn get(State(d): State<AppState>, Path(name): Path<String>) -> Reply {
    let versions = d.store.plugin_versions(&name).await?;
    let bindings = d.store.bindings_of_plugin(&name).await?;
    let newest = versions.last().cloned();
    let mut body = json!({
        "name": name,
        "world": newest.as_ref().map(|v| v.world),
        "newest_version": newest.as_ref().map(|v| v.version),
        "versions": versions,
        "bindings": bindings,
    });
    // What the newest version says about itself (0.2.0 plugins): asked of
    // the plugin now, so a failure to answer is shown, not hidden.
    if let Some(v) = &newest {
        match d.pipeline.registry().describe(&v.digest).await {
            Ok(Some(description)) => body["description"] = json!(description),
            Ok(None) => {}
            Err(e) => body["description_error"] = json!(e),
        }
    }
    Ok(Json(body))
}

/// Replays a candidate against the plugin's recorded decisions
/// (`pipeline::replay`): query `version` (a stored version) or a component
/// as the body, and `pool`, `since` (RFC 3339 or an age: `90m`, `12h`,
/// `7d`), `limit` (1 – 10000, default 100), `config` (JSON: the candidate's
/// config instead of each decision's own).
pub(super) async fn replay(
    State(d): State<AppState>,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let body = body.map_err(|e| {
        super::extract::body_error(e, "a replay's component", crate::registry::MAX_PLUGIN_BYTES)
    })?;
    let mut version = None;
    let mut request = ReplayRequest {
        plugin: name,
        candidate: Candidate::Version(0),
        pool: None,
        since: None,
        limit: DEFAULT_DECISIONS,
        config: None,
    };
    for (key, value) in &pairs {
        match key.as_str() {
            "version" => {
                version = Some(value.parse::<u32>().map_err(|_| {
                    ApiError::bad_request(
                        Some("version"),
                        format!("{value:?} is not a version number"),
                    )
                })?);
            }
            "pool" => request.pool = Some(value.clone()),
            "since" => {
                let since = parse_since(value, chrono::Utc::now())
                    .map_err(|e| ApiError::bad_request(Some("since"), e.reason))?;
                request.since = Some(since);
            }
            "limit" => {
                request.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_DECISIONS).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            Some("limit"),
                            format!("{value:?} is not a number between 1 and {MAX_DECISIONS}"),
                        )
                    })?;
            }
            "config" => {
                request.config = Some(serde_json::from_str(value).map_err(|e| {
                    ApiError::bad_request(Some("config"), format!("not JSON: {e}"))
                })?);
            }
            other => {
                return Err(ApiError::bad_request(
                    Some(other),
                    format!(
                        "unknown query parameter {other:?}; use version, pool, since, limit, config"
                    ),
                ));
            }
        }
    }
    request.candidate = match (version, body.is_empty()) {
        (Some(v), true) => Candidate::Version(v),
        (None, false) => Candidate::Wasm(body.to_vec()),
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                Some("version"),
                "give a version or a component as the body, not both",
            ));
        }
        (None, true) => {
            return Err(ApiError::bad_request(
                Some("version"),
                "give the version to replay, or a component as the body",
            ));
        }
    };
    let report = d.pipeline.replay(request).await?;
    Ok(Json(to_value(&report)))
}

/// The plugin's recent decisions (at most `limit`), newest first, among the
/// last [`DECISIONS_SCAN`] history records, with counts over all of those
/// by outcome (enforced and
/// shadow apart), the shadow decisions that disagreed with what was
/// enforced, and failures by kind; only those of runs the caller may read.
pub(super) async fn decisions(
    State(d): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Reply {
    let mut limit = DECISIONS_DEFAULT;
    for (key, value) in &pairs {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=DECISIONS_MAX).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            Some("limit"),
                            format!("{value:?} is not a number between 1 and {DECISIONS_MAX}"),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(
                    Some(other),
                    format!("unknown query parameter {other:?}; use limit"),
                ));
            }
        }
    }
    if d.store.plugin_versions(&name).await?.is_empty() {
        return Err(ApiError::not_found(format!("plugin {name:?} not found")));
    }
    let mut items = Vec::new();
    let mut outcomes = serde_json::Map::new();
    let mut failures = serde_json::Map::new();
    let mut shadows = serde_json::Map::new();
    let mut disagreements = 0u64;
    // Counted over every decision within the scan; listed up to `limit`.
    let mut readable: std::collections::HashMap<crate::domain::RunId, bool> =
        std::collections::HashMap::new();
    for (run_id, entry) in d.store.recent_decisions(&name, DECISIONS_SCAN).await? {
        let may = match readable.get(&run_id) {
            Some(may) => *may,
            None => {
                let may = principal_may_read(&d, &principal, run_id).await?;
                readable.insert(run_id, may);
                may
            }
        };
        if !may {
            continue;
        }
        let detail = entry.detail.unwrap_or(Value::Null);
        let error_kind = detail["error"]["kind"].as_str().map(str::to_owned);
        let outcome = match (&error_kind, detail["decision"]["decision"].as_str()) {
            (Some(_), _) => "error".to_owned(),
            (None, Some(decision)) => decision.to_owned(),
            (None, None) if detail.get("patch").is_some() => "patch".to_owned(),
            (None, None) => "other".to_owned(),
        };
        let shadow = detail["mode"] == "shadow";
        let agrees = detail.get("agrees").and_then(Value::as_bool);
        if shadow {
            bump(&mut shadows, &outcome);
            if agrees == Some(false) {
                disagreements += 1;
            }
        } else {
            bump(&mut outcomes, &outcome);
        }
        if let Some(kind) = &error_kind {
            bump(&mut failures, kind);
        }
        if items.len() >= limit as usize {
            continue;
        }
        items.push(json!({
            "run_id": run_id,
            "at": entry.at,
            "state": entry.state,
            "world": detail["world"],
            "version": detail["version"],
            "digest": detail["digest"],
            "outcome": outcome,
            "mode": if shadow { "shadow" } else { "enforce" },
            "agrees": agrees,
            "error_kind": error_kind,
            "elapsed_ms": detail["elapsed_ms"],
            "message": entry.message,
        }));
    }
    Ok(Json(json!({
        "items": items,
        "outcomes": outcomes,
        "shadow_outcomes": shadows,
        "shadow_disagreements": disagreements,
        "failures_by_kind": failures,
        "scanned": DECISIONS_SCAN,
    })))
}

fn bump(counts: &mut serde_json::Map<String, Value>, key: &str) {
    let n = counts.get(key).and_then(Value::as_u64).unwrap_or(0);
    counts.insert(key.to_owned(), json!(n + 1));
}

async fn principal_may_read(
    d: &AppState,
    principal: &Principal,
    run: crate::domain::RunId,
) -> Result<bool, ApiError> {
    if *principal == Principal::Anyone {
        return Ok(true);
    }
    let run = match d.store.get_run(run, false).await {
        Ok(run) => run,
        Err(crate::store::StoreError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    match check_read(d, principal, &run).await {
        Ok(()) => Ok(true),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::FORBIDDEN => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

pub(super) async fn delete(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    d.store.delete_plugin(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_pool_bindings(
    State(d): State<AppState>,
    Path(pool): Path<String>,
) -> Reply {
    d.store.get_pool(&pool).await?;
    Ok(Json(
        json!({ "items": d.store.list_bindings(Some(&pool)).await? }),
    ))
}

pub(super) async fn bind_pool(
    State(d): State<AppState>,
    Path(pool): Path<String>,
    JsonBody(spec): JsonBody<BindingSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b = d.pipeline.registry().bind(Some(&pool), spec).await?;
    Ok((StatusCode::CREATED, Json(to_value(&b))))
}

/// `?mode=enforce|shadow`: which of the plugin's bindings (absent: both).
fn mode_of(pairs: &[(String, String)]) -> Result<Option<BindingMode>, ApiError> {
    let mut mode = None;
    for (key, value) in pairs {
        match key.as_str() {
            "mode" => {
                mode = Some(BindingMode::parse(value).ok_or_else(|| {
                    ApiError::bad_request(
                        Some("mode"),
                        format!("{value:?} is not a binding mode; use enforce or shadow"),
                    )
                })?);
            }
            other => {
                return Err(ApiError::bad_request(
                    Some(other),
                    format!("unknown query parameter {other:?}; use mode"),
                ));
            }
        }
    }
    Ok(mode)
}

pub(super) async fn unbind_pool(
    State(d): State<AppState>,
    Path((pool, plugin)): Path<(String, String)>,
    QueryPairs(pairs): QueryPairs,
) -> Result<StatusCode, ApiError> {
    let mode = mode_of(&pairs)?;
    d.store.delete_binding(Some(&pool), &plugin, mode).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_routers(State(d): State<AppState>) -> Reply {
    Ok(Json(json!({ "items": d.store.list_bindings(None).await? })))
}

pub(super) async fn bind_router(
    State(d): State<AppState>,
    JsonBody(spec): JsonBody<BindingSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b = d.pipeline.registry().bind(None, spec).await?;
    Ok((StatusCode::CREATED, Json(to_value(&b))))
}

pub(super) async fn unbind_router(
    State(d): State<AppState>,
    Path(plugin): Path<String>,
    QueryPairs(pairs): QueryPairs,
) -> Result<StatusCode, ApiError> {
    let mode = mode_of(&pairs)?;
    d.store.delete_binding(None, &plugin, mode).await?;
    Ok(StatusCode::NO_CONTENT)
}
