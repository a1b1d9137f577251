//! Plugins (uploaded as the request body) and their bindings.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::registry::BindingSpec;

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

pub(super) async fn unbind_pool(
    State(d): State<AppState>,
    Path((pool, plugin)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    d.store.delete_binding(Some(&pool), &plugin).await?;
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
) -> Result<StatusCode, ApiError> {
    d.store.delete_binding(None, &plugin).await?;
    Ok(StatusCode::NO_CONTENT)
}
