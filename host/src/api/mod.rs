//! The HTTP API (`/api/v1`, JSON), plus `/healthz`, `/readyz`, `/metrics`.
//! Handlers are thin: they parse, call the [`Dispatcher`] or the store, and
//! shape the JSON. Every route here is listed in `openapi.json`.

mod auth;
mod error;
mod extract;
#[cfg(test)]
mod fuzz;
mod overview;
mod plugins;
mod request_id;
mod resources;
mod runs;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::dispatcher::Dispatcher;

pub(crate) use error::ApiError;

/// Request bodies above this are refused with 413.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(crate) const OPENAPI: &str = include_str!("openapi.json");

pub(crate) type AppState = Arc<Dispatcher>;

/// The routes, as (method, path) pairs, for documentation checks.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/summary"),
    ("get", "/api/v1/base-job-templates/{type}"),
    ("get", "/api/v1/pools"),
    ("post", "/api/v1/pools"),
    ("get", "/api/v1/pools/{name}"),
    ("patch", "/api/v1/pools/{name}"),
    ("delete", "/api/v1/pools/{name}"),
    ("post", "/api/v1/pools/{name}/pause"),
    ("post", "/api/v1/pools/{name}/resume"),
    ("get", "/api/v1/pools/{pool}/queues"),
    ("post", "/api/v1/pools/{pool}/queues"),
    ("get", "/api/v1/pools/{pool}/queues/{name}"),
    ("patch", "/api/v1/pools/{pool}/queues/{name}"),
    ("delete", "/api/v1/pools/{pool}/queues/{name}"),
    ("post", "/api/v1/pools/{pool}/queues/{name}/pause"),
    ("post", "/api/v1/pools/{pool}/queues/{name}/resume"),
    ("get", "/api/v1/limits"),
    ("post", "/api/v1/limits"),
    ("get", "/api/v1/limits/{tag}"),
    ("patch", "/api/v1/limits/{tag}"),
    ("delete", "/api/v1/limits/{tag}"),
    ("get", "/api/v1/deployments"),
    ("post", "/api/v1/deployments"),
    ("get", "/api/v1/deployments/{name}"),
    ("patch", "/api/v1/deployments/{name}"),
    ("delete", "/api/v1/deployments/{name}"),
    ("post", "/api/v1/deployments/{name}/render"),
    ("get", "/api/v1/deployments/{name}/schedules"),
    ("post", "/api/v1/deployments/{name}/schedules"),
    ("get", "/api/v1/deployments/{name}/schedules/{schedule}"),
    ("delete", "/api/v1/deployments/{name}/schedules/{schedule}"),
    (
        "post",
        "/api/v1/deployments/{name}/schedules/{schedule}/pause",
    ),
    (
        "post",
        "/api/v1/deployments/{name}/schedules/{schedule}/resume",
    ),
    ("get", "/api/v1/schedules"),
    ("get", "/api/v1/runs"),
    ("post", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("post", "/api/v1/runs/{id}/cancel"),
    ("get", "/api/v1/runs/{id}/logs"),
    ("get", "/api/v1/runs/events"),
    ("get", "/api/v1/plugins"),
    ("get", "/api/v1/plugins/{name}"),
    ("get", "/api/v1/plugins/{name}/decisions"),
    ("post", "/api/v1/plugins/{name}/replay"),
    ("post", "/api/v1/plugins/{name}"),
    ("delete", "/api/v1/plugins/{name}"),
    ("get", "/api/v1/pools/{pool}/bindings"),
    ("post", "/api/v1/pools/{pool}/bindings"),
    ("delete", "/api/v1/pools/{pool}/bindings/{plugin}"),
    ("get", "/api/v1/routers"),
    ("post", "/api/v1/routers"),
    ("delete", "/api/v1/routers/{plugin}"),
];

/// The API without authentication (every caller may do everything).
#[cfg(test)]
pub(crate) fn router(dispatcher: Arc<Dispatcher>) -> Router {
    router_with_auth(dispatcher, None)
}

/// The API; with an [`Authenticator`](crate::auth::Authenticator) every
/// route but `/healthz`, `/readyz` and `/api/v1/openapi.json` needs a token.
pub(crate) fn router_with_auth(dispatcher: Arc<Dispatcher>, auth: auth::AuthState) -> Router {
    use resources::*;
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(overview::whoami))
        .route("/summary", get(overview::summary))
        .route("/base-job-templates/{type}", get(default_template))
        .route("/pools", get(list_pools).post(create_pool))
        .route(
            "/pools/{name}",
            get(get_pool).patch(update_pool).delete(delete_pool),
        )
        .route("/pools/{name}/pause", post(pause_pool))
        .route("/pools/{name}/resume", post(resume_pool))
        .route("/pools/{pool}/queues", get(list_queues).post(create_queue))
        .route(
            "/pools/{pool}/queues/{name}",
            get(get_queue).patch(update_queue).delete(delete_queue),
        )
        .route("/pools/{pool}/queues/{name}/pause", post(pause_queue))
        .route("/pools/{pool}/queues/{name}/resume", post(resume_queue))
        .route("/limits", get(list_limits).post(create_limit))
        .route(
            "/limits/{tag}",
            get(get_limit).patch(update_limit).delete(delete_limit),
        )
        .route(
            "/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route(
            "/deployments/{name}",
            get(get_deployment)
                .patch(update_deployment)
                .delete(delete_deployment),
        )
        .route("/deployments/{name}/render", post(render_deployment))
        .route(
            "/deployments/{name}/schedules",
            get(list_schedules).post(create_schedule),
        )
        .route(
            "/deployments/{name}/schedules/{schedule}",
            get(get_schedule).delete(delete_schedule),
        )
        .route(
            "/deployments/{name}/schedules/{schedule}/pause",
            post(pause_schedule),
        )
        .route(
            "/deployments/{name}/schedules/{schedule}/resume",
            post(resume_schedule),
        )
        .route("/schedules", get(list_all_schedules))
        .route("/runs", get(runs::list).post(runs::create))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/logs", get(runs::logs))
        .route("/runs/events", get(overview::run_events))
        .route("/plugins", get(plugins::list))
        .route(
            "/plugins/{name}",
            get(plugins::get)
                .post(plugins::add)
                .delete(plugins::delete)
                .layer(DefaultBodyLimit::max(
                    crate::registry::MAX_PLUGIN_BYTES + 1024,
                )),
        )
        .route("/plugins/{name}/decisions", get(plugins::decisions))
        .route(
            "/plugins/{name}/replay",
            post(plugins::replay).layer(DefaultBodyLimit::max(
                crate::registry::MAX_PLUGIN_BYTES + 1024,
            )),
        )
        .route(
            "/pools/{pool}/bindings",
            get(plugins::list_pool_bindings).post(plugins::bind_pool),
        )
        .route(
            "/pools/{pool}/bindings/{plugin}",
            axum::routing::delete(plugins::unbind_pool),
        )
        .route(
            "/routers",
            get(plugins::list_routers).post(plugins::bind_router),
        )
        .route(
            "/routers/{plugin}",
            axum::routing::delete(plugins::unbind_router),
        );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::authenticate,
        ))
        .layer(axum::Extension(Arc::new(overview::Throughput::default())))
        .layer(axum::Extension(Arc::new(overview::LiveFeed::default())))
        // The dashboard's pages and assets: no data in them, so no token
        // (the page asks for one and sends it with each API call).
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(catch_panics())
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(dispatcher)
}

type PanicHandler = fn(Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response;

/// A handler that panics (a bug) answers 500 in the API's error shape and
/// is logged, instead of dropping the connection; the server goes on.
fn catch_panics() -> tower_http::catch_panic::CatchPanicLayer<PanicHandler> {
    tower_http::catch_panic::CatchPanicLayer::custom(panicked as PanicHandler)
}

fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(format_args!("an API handler panicked: {what}")).into_response()
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(axum::extract::State(d): axum::extract::State<AppState>) -> impl IntoResponse {
    match d.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "ready",
                "leader": d.replicas().is_leader(),
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unavailable", "detail": e.to_string()})),
        ),
    }
}

async fn metrics(
    axum::extract::State(d): axum::extract::State<AppState>,
) -> Result<impl IntoResponse, ApiError> {
    let stats = d.store.stats().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        d.metrics.render(&stats),
    ))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_error_shape() {
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    panic!("boom");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .layer(catch_panics())
            .layer(axum::middleware::from_fn(request_id::assign));
        let request = axum::http::Request::builder()
            .uri("/boom")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let header = response
            .headers()
            .get(request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("x-request-id");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "internal");
        assert_eq!(body["request_id"], header.as_str());
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&header) && !detail.contains("boom"),
            "{body}"
        );
    }

    /// A store failure answers 500 with the request's id, and nothing of
    /// the database's own message; a caller's usable id is kept.
    #[tokio::test]
    async fn a_500_names_the_request_and_hides_the_cause() {
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/fail",
                get(|| async {
                    Err::<(), ApiError>(
                        crate::store::StoreError::Corrupt("table runs: secret detail".into())
                            .into(),
                    )
                }),
            )
            .layer(axum::middleware::from_fn(request_id::assign));
        let request = axum::http::Request::builder()
            .uri("/fail")
            .header(request_id::HEADER, "client-id-42")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response
                .headers()
                .get(request_id::HEADER)
                .map(|v| v.as_bytes()),
            Some(&b"client-id-42"[..])
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret"), "{text}");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "internal");
        assert_eq!(body["request_id"], "client-id-42");
    }

    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = match serde_json::from_str(OPENAPI) {
            Ok(v) => v,
            Err(e) => panic!("openapi.json is not JSON: {e}"),
        };
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is missing from openapi.json"
            );
        }
        // And nothing documented that is not served.
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in paths {
            for method in item
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                    assert!(
                        ROUTES.contains(&(method.as_str(), path.as_str())),
                        "{method} {path} is documented but not served"
                    );
                }
            }
        }
    }
}
