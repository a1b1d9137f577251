//! Runs: create, list, get, cancel, logs.

use std::io::SeekFrom;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryPairs, RunIdPath};
use crate::auth::Principal;
use crate::backend::LogRequest;
use crate::domain::{Cause, Run, RunState};
use crate::run::submit::RunSpec;
use crate::run::waiting;
use crate::store::{RunFilter, StoreError};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

fn run_json(run: &Run) -> Value {
    serde_json::to_value(run).unwrap_or(Value::Null)
}

pub(super) async fn create(
    State(d): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(spec): JsonBody<RunSpec>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (run, created) = d.create_run_as(&principal, spec, Cause::API).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(run_json(&run))))
}

pub(super) async fn get(
    State(d): State<AppState>,
    Extension(principal): Extension<Principal>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Value>, ApiError> {
    let run = d.store.get_run(id, true).await?;
    check_read(&d, &principal, &run).await?;
    let mut json = run_json(&run);
    // Why it waits, from the state the scheduler decides on (read after the
    // run: a run that moved on since has no `waiting`).
    let now = chrono::Utc::now();
    let facts = if run.state.is_waiting() {
        d.store.waiting_facts(id, now).await?
    } else {
        None
    };
    let waiting = match facts {
        Some(facts) => {
            let history = run.history.as_deref().unwrap_or_default();
            serde_json::to_value(waiting::explain(&facts, history, now)).unwrap_or(Value::Null)
        }
        None => Value::Null,
    };
    if let Some(object) = json.as_object_mut() {
        object.insert("waiting".into(), waiting);
    }
    Ok(Json(json))
}

/// The team of a run's deployment (`None` for a raw job or a deleted
/// deployment).
async fn team_of(d: &AppState, run: &Run) -> Result<Option<String>, ApiError> {
    let Some(name) = &run.deployment else {
        return Ok(None);
    };
    match d.store.get_deployment(name).await {
        Ok(dep) => Ok(dep.team),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A submitter asking for a run outside its team and pools gets the same
/// 404 as for a run that does not exist (it learns nothing about other
/// teams' runs); a run token asking for another run gets 403 with why.
pub(super) async fn check_read(
    d: &AppState,
    principal: &Principal,
    run: &Run,
) -> Result<(), ApiError> {
    if *principal == Principal::Anyone {
        return Ok(());
    }
    let team = team_of(d, run).await?;
    match principal.may_read_run(run, team.as_deref()) {
        Ok(()) => Ok(()),
        Err(_) if principal.is_scoped_submitter() => Err(ApiError::from(StoreError::not_found(
            "run",
            run.id.to_string(),
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn cancel(
    State(d): State<AppState>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(run_json(&d.cancel_run(id, Cause::API).await?)))
}

fn parse_filter(pairs: &[(String, String)]) -> Result<RunFilter, ApiError> {
    let mut filter = RunFilter {
        limit: DEFAULT_PAGE,
        ..RunFilter::default()
    };
    for (key, value) in pairs {
        match key.as_str() {
            "state" => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    let state = RunState::parse(s).ok_or_else(|| {
                        ApiError::bad_request(
                            Some("state"),
                            format!(
                                "{s:?} is not a run state; use one of {}",
                                RunState::ALL.map(RunState::as_str).join(", ")
                            ),
                        )
                    })?;
                    filter.states.push(state);
                }
            }
            "pool" => filter.pool = Some(value.clone()),
            "queue" => filter.queue = Some(value.clone()),
            "deployment" => filter.deployment = Some(value.clone()),
            "tag" => filter.tag = Some(value.clone()),
            "parent" => {
                filter.parent = Some(uuid::Uuid::parse_str(value).map_err(|e| {
                    ApiError::bad_request(Some("parent"), format!("{value:?} is not a run id: {e}"))
                })?);
            }
            "limit" => {
                let n: u32 = value.parse().map_err(|_| {
                    ApiError::bad_request(Some("limit"), format!("{value:?} is not a number"))
                })?;
                if n == 0 || n > MAX_PAGE {
                    return Err(ApiError::bad_request(
                        Some("limit"),
                        format!("must be between 1 and {MAX_PAGE}"),
                    ));
                }
                filter.limit = n;
            }
            "cursor" => {
                filter.before_seq = Some(value.parse().map_err(|_| {
                    ApiError::bad_request(
                        Some("cursor"),
                        format!("{value:?} is not a cursor from this API"),
                    )
                })?);
            }
            other => {
                return Err(ApiError::bad_request(
                    Some(other),
                    format!(
                        "unknown query parameter {other:?}; use state, pool, queue, deployment, tag, parent, limit, cursor"
                    ),
                ));
            }
        }
    }
    Ok(filter)
}

pub(super) async fn list(
    State(d): State<AppState>,
    Extension(principal): Extension<Principal>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let filter = parse_filter(&pairs)?;
    let page = d.store.list_runs(&filter).await?;
    // A submitter's page leaves out runs outside its team and pools (so a
    // page may hold fewer than `limit` items; the cursor still moves on).
    let mut items: Vec<Value> = Vec::with_capacity(page.runs.len());
    for run in &page.runs {
        match check_read(&d, &principal, run).await {
            Ok(()) => items.push(run_json(run)),
            Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::FORBIDDEN => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(json!({
        "items": items,
        "next_cursor": page.next_seq.map(|s| s.to_string()),
    })))
}

/// The run's output. With `follow=true` the body stays open and streams new
/// output until the run has ended and everything was sent.
pub(super) async fn logs(
    State(d): State<AppState>,
    Extension(principal): Extension<Principal>,
    RunIdPath(id): RunIdPath,
    QueryPairs(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let mut follow = false;
    for (k, v) in &pairs {
        match (k.as_str(), v.as_str()) {
            ("follow", "true" | "1" | "") => follow = true,
            ("follow", "false" | "0") => follow = false,
            ("follow", other) => {
                return Err(ApiError::bad_request(
                    Some("follow"),
                    format!("{other:?} is not true or false"),
                ));
            }
            (other, _) => {
                return Err(ApiError::bad_request(
                    Some(other),
                    format!("unknown query parameter {other:?}; use follow"),
                ));
            }
        }
    }
    // 404 for an unknown run, before anything is streamed.
    let run = d.store.get_run(id, false).await?;
    check_read(&d, &principal, &run).await?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    // Kubernetes runs: the pod's log, read through the backend.
    let pool_type = d.store.get_pool(&run.pool).await?.pool_type;
    if let Some(backend) = d.backends.get(pool_type).filter(|b| b.keeps_logs()) {
        let Some(intent) = d.store.submission(id, run.attempt).await? else {
            // Not submitted yet: nothing to show.
            return Ok((text_plain, Vec::new()).into_response());
        };
        let request = LogRequest {
            run_id: id,
            attempt: run.attempt,
            job: intent.get("job").cloned().unwrap_or_default(),
            cluster: intent
                .get("cluster")
                .and_then(Value::as_str)
                .map(str::to_owned),
            follow,
        };
        let stream = backend
            .logs(request)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "backend", None, e))?;
        return Ok((text_plain, Body::from_stream(stream)).into_response());
    }
    let path = d.log_path(id);
    if !follow {
        let body = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ApiError::internal(format_args!(
                    "cannot read the log {}: {e}",
                    path.display()
                )));
            }
        };
        return Ok((text_plain, body).into_response());
    }
    struct Tail {
        offset: u64,
        done: bool,
    }
    let stream = futures::stream::unfold(
        Tail {
            offset: 0,
            done: false,
        },
        move |mut tail| {
            let d = d.clone();
            let path = path.clone();
            async move {
                if tail.done {
                    return None;
                }
                loop {
                    // Read the run's state before the file, so output written
                    // before it ended is never missed.
                    let ended = match d.store.get_run(id, false).await {
                        Ok(r) => r.state.is_terminal(),
                        Err(_) => true,
                    };
                    let chunk = read_from(&path, tail.offset).await;
                    match chunk {
                        Ok(bytes) if !bytes.is_empty() => {
                            tail.offset += bytes.len() as u64;
                            return Some((Ok::<Bytes, std::io::Error>(bytes), tail));
                        }
                        Ok(_) if ended => return None,
                        Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        Err(e) => {
                            tail.done = true;
                            return Some((Err(e), tail));
                        }
                    }
                }
            }
        },
    );
    Ok((text_plain, Body::from_stream(stream)).into_response())
}

async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Bytes> {
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Bytes::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(64 * 1024);
    (&mut f).take(1024 * 1024).read_to_end(&mut buf).await?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_parse_and_errors_name_the_parameter() {
        let f = parse_filter(&pairs(&[
            ("state", "Running,Late"),
            ("state", "Failed"),
            ("limit", "5"),
        ]))
        .unwrap_or_else(|e| panic!("{}", e.detail));
        assert_eq!(
            f.states,
            vec![RunState::Running, RunState::Late, RunState::Failed]
        );
        assert_eq!(f.limit, 5);
        for (q, field) in [
            (("state", "running"), "state"),
            (("limit", "0"), "limit"),
            (("limit", "x"), "limit"),
            (("limit", "1001"), "limit"),
            (("cursor", "abc"), "cursor"),
            (("parent", "nope"), "parent"),
            (("colour", "red"), "colour"),
        ] {
            let e = parse_filter(&pairs(&[q])).expect_err(field);
            assert_eq!(e.field.as_deref(), Some(field));
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
