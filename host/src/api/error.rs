//! API errors: JSON `{"error", "field", "detail"}` with the right status.
//! A 500 says only that the server failed and under which request id its
//! log holds the cause (`"error": "internal"`, `"request_id"`); what failed
//! inside (a database's message, a path) never reaches the client.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::dispatcher::DispatchError;
use crate::domain::ValidationError;
use crate::pipeline::ReplayError;
use crate::registry::RegistryError;
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub field: Option<String>,
    pub detail: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        field: Option<&str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            field: field.map(str::to_owned),
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_request(field: Option<&str>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", field, detail)
    }

    pub(crate) fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some(field),
            detail,
        )
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", None, detail)
    }

    /// The store is away (503) or its disk is full (507): said plainly,
    /// the database's message logged under the request's id.
    pub(crate) fn outage(status: StatusCode, error: &'static str, cause: &str) -> Self {
        let id = super::request_id::current().unwrap_or_else(|| "none".into());
        tracing::warn!(request_id = %id, "{error}: {cause}");
        let detail = if status == StatusCode::INSUFFICIENT_STORAGE {
            "the store's disk is full: nothing was changed; retry once space is freed"
        } else {
            "the store is unavailable (its database cannot be reached, is restarting or \
             refuses connections): nothing was changed; retry later"
        };
        Self::new(status, error, None, detail)
    }

    /// A failure inside the server: `cause` is logged with the request's
    /// id, and the answer says only where to look.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> Self {
        let id = super::request_id::current().unwrap_or_else(|| "none".into());
        tracing::error!(request_id = %id, "internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            format!(
                "the server failed to handle this request; its log has the cause under request id {id}"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // RFC 6750: a 401 names the scheme the client should use.
        let challenge = (self.status == StatusCode::UNAUTHORIZED)
            .then_some([(header::WWW_AUTHENTICATE, "Bearer realm=\"weir\"")]);
        // RFC 9110: a 503 may say when to try again.
        let retry = (self.status == StatusCode::SERVICE_UNAVAILABLE)
            .then_some([(header::RETRY_AFTER, "1")]);
        let mut body = json!({
            "error": self.error,
            "field": self.field,
            "detail": self.detail,
        });
        if self.status == StatusCode::INTERNAL_SERVER_ERROR
            && let Some(id) = super::request_id::current()
        {
            body["request_id"] = id.into();
        }
        (self.status, challenge, retry, Json(body)).into_response()
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::invalid(&e.field, e.reason)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Conflict { field, detail } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", field.as_deref(), detail)
            }
            StoreError::IllegalTransition(t) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                Some("state"),
                t.to_string(),
            ),
            StoreError::Unreadable { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                None,
                e.to_string(),
            ),
            // Nothing was done; the same request may succeed later. The
            // database's own words go to the log, as for a 500.
            StoreError::Unavailable(cause) => {
                ApiError::outage(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", &cause)
            }
            StoreError::Full(cause) => {
                ApiError::outage(StatusCode::INSUFFICIENT_STORAGE, "store_full", &cause)
            }
            StoreError::Database { .. }
            | StoreError::Uncommitted(_)
            | StoreError::Migrate(_)
            | StoreError::Corrupt(_) => ApiError::internal(format_args!("store: {e}")),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::Invalid(v) => v.into(),
            DispatchError::Template(t) => ApiError::invalid(t.field(), t.to_string()),
            DispatchError::Store(s) => s.into(),
            DispatchError::Refused(detail) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", None, detail)
            }
            DispatchError::Auth(a) => a.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(v) => v.into(),
            RegistryError::Load(l) => ApiError::invalid("wasm", l.to_string()),
            e @ RegistryError::Config { .. } => ApiError::invalid("config", e.to_string()),
            RegistryError::Store(s) => s.into(),
        }
    }
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Invalid(v) => v.into(),
            ReplayError::Registry(r) => r.into(),
            ReplayError::Store(s) => s.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(detail) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", None, detail)
            }
            AuthError::Forbidden(detail) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", None, detail)
            }
            AuthError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_away_is_503_with_retry_after_and_a_full_disk_507() {
        let away: ApiError = StoreError::Unavailable("connection refused".into()).into();
        assert_eq!(away.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(away.error, "store_unavailable");
        assert!(
            !away.detail.contains("connection refused"),
            "{}",
            away.detail
        );
        let resp = away.into_response();
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let full: ApiError = StoreError::Full("database or disk is full".into()).into();
        assert_eq!(full.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(full.error, "store_full");
        assert!(
            full.detail.starts_with("the store's disk is full"),
            "{}",
            full.detail
        );
        assert!(
            full.into_response()
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
    }
}
