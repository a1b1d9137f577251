//! Where auth sits in a request: this middleware reads `Authorization:
//! Bearer`, asks the [`Authenticator`] who is calling, checks the route's
//! [`Action`] against the role table and hands the [`Principal`] to the
//! handler (run handlers then check team, pools and run on the resource).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::{Action, Authenticator, Principal};

/// `None`: auth is off and every caller is [`Principal::Anyone`].
pub(super) type AuthState = Option<Arc<Authenticator>>;

pub(super) async fn authenticate(
    State(auth): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let Some(action) = action_for(request.method(), &path) else {
        return next.run(request).await;
    };
    let principal = match &auth {
        None => Principal::Anyone,
        Some(auth) => {
            let bearer = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            match auth.authenticate(bearer).await {
                Ok(p) => p,
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    if let Err(e) = principal.require(action) {
        return ApiError::from(e).into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The action of each route; `None` for the open ones (health, readiness,
/// the API description). Every route in `ROUTES` is covered by a test.
pub(super) fn action_for(method: &Method, path: &str) -> Option<Action> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let write = *method != Method::GET;
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    Some(match (first, path) {
        ("healthz" | "readyz", _) | (_, "/openapi.json") => return None,
        ("metrics", _) => Action::ReadMetrics,
        ("tokens", _) => Action::ManageTokens,
        ("runs", "/runs") if write => Action::CreateRun,
        ("runs", p) if p.ends_with("/cancel") => Action::CancelRun,
        ("runs", _) => Action::ReadRuns,
        (_, "/deployments/{name}/render") => Action::ReadConfig,
        _ if !write => Action::ReadConfig,
        ("pools", p) if p.contains("/queues") => Action::ManageQueues,
        ("pools", p) if p.contains("/bindings") => Action::ManagePlugins,
        ("pools", _) => Action::ManagePools,
        ("limits", _) => Action::ManageLimits,
        ("deployments", _) => Action::ManageDeployments,
        ("plugins" | "routers", _) => Action::ManagePlugins,
        // A write to a route this table does not know is an admin's.
        _ => Action::ManagePools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ROUTES;

    #[test]
    fn every_route_has_its_action() {
        use Action::*;
        let expected = |method: &str, path: &str| -> Option<Action> {
            Some(match (method, path) {
                (_, "/healthz" | "/readyz" | "/api/v1/openapi.json") => return None,
                (_, "/metrics") => ReadMetrics,
                ("post", "/api/v1/runs") => CreateRun,
                ("post", "/api/v1/runs/{id}/cancel") => CancelRun,
                ("get", p) if p.starts_with("/api/v1/runs") => ReadRuns,
                ("post", "/api/v1/deployments/{name}/render") => ReadConfig,
                (_, p) if p.starts_with("/api/v1/tokens") => ManageTokens,
                ("get", _) => ReadConfig,
                (_, p) if p.contains("/queues") => ManageQueues,
                (_, p) if p.contains("/bindings") => ManagePlugins,
                (_, p) if p.starts_with("/api/v1/pools") => ManagePools,
                (_, p) if p.starts_with("/api/v1/limits") => ManageLimits,
                (_, p) if p.starts_with("/api/v1/deployments") => ManageDeployments,
                (_, p) if p.starts_with("/api/v1/plugins") => ManagePlugins,
                (_, p) if p.starts_with("/api/v1/routers") => ManagePlugins,
                other => panic!("no expected action for {other:?}"),
            })
        };
        for (method, path) in ROUTES {
            let m = Method::from_bytes(method.to_uppercase().as_bytes())
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            assert_eq!(
                action_for(&m, path),
                expected(method, path),
                "{method} {path}"
            );
        }
    }
}
