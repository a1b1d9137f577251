//! Request extractors that turn every malformed input into an [`ApiError`]
//! naming the field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::domain::document;

use super::error::ApiError;

/// A JSON body. Syntax errors are 400; a wrong type, a missing or an unknown
/// field is 422 with the field's path; an oversized body is 413.
/// An empty body reads as `{}` where the type allows it.
pub(super) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e, "a request body", super::MAX_BODY_BYTES))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse_json(text).map(JsonBody)
    }
}

/// A body that could not be read: 413 naming the limit when it was too
/// large, else 400.
pub(super) fn body_error(e: BytesRejection, what: &str, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            None,
            format!(
                "{what} may be at most {limit} bytes ({} MiB); this one is larger",
                limit >> 20
            ),
        )
    } else {
        ApiError::bad_request(None, format!("cannot read request body: {e}"))
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, so malformed JSON is told apart from a wrong shape.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(None, format!("malformed JSON: {e}")))?;
    // serde_json stops at 128 levels; Weir accepts 64 everywhere, so what
    // it stores nested in its own records still reads back.
    if let Some(field) = document::too_deep_field(&value) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some(field.as_str()),
            format!(
                "is nested more than {} levels deep (arrays and objects); a request body may nest at most {}",
                document::MAX_DEPTH - 1,
                document::MAX_DEPTH
            ),
        ));
    }
    // serde would read a struct from a JSON array too; bodies are objects.
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            None,
            "the request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names an unknown or missing field in the message, not the path.
        let field = field_from_message(&inner)
            .map(|f| {
                if path == "." || path.is_empty() {
                    f
                } else if path == f || path.ends_with(&format!(".{f}")) {
                    path.clone()
                } else {
                    format!("{path}.{f}")
                }
            })
            .unwrap_or(path);
        let field = if field == "." { String::new() } else { field };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            if field.is_empty() {
                None
            } else {
                Some(field.as_str())
            },
            inner,
        )
    })
}

fn field_from_message(message: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

/// The `{id}` of a run path, checked to be a UUID.
pub(super) struct RunIdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RunIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(Some("id"), e.to_string()))?;
        Uuid::parse_str(&raw)
            .map(RunIdPath)
            .map_err(|e| ApiError::bad_request(Some("id"), format!("{raw:?} is not a run id: {e}")))
    }
}

/// Query pairs in order, repeated keys kept.
pub(super) struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(QueryPairs(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<Outer>(b"{").expect_err("syntax");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_json::<Outer>(br#"{"name": 1}"#).expect_err("type");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_json::<Outer>(br#"{"name": "a", "inner": {"n": "x"}}"#).expect_err("nested");
        assert_eq!(e.field.as_deref(), Some("inner.n"));
        let e = parse_json::<Outer>(br#"{"name": "a", "colour": 1}"#).expect_err("unknown");
        assert_eq!(e.field.as_deref(), Some("colour"));
        let e = parse_json::<Outer>(br#"{}"#).expect_err("missing");
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_json::<Outer>(br#"{"name": "a", "inner": {}}"#).expect_err("missing nested");
        assert_eq!(e.field.as_deref(), Some("inner.n"));
        let e = parse_json::<Outer>(br#"[1]"#).expect_err("not an object");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
