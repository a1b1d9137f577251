//! A thin HTTP client for the Weir API that works on `serde_json::Value`.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode, Url};
use serde_json::Value;

use super::CliError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Client {
    base: Url,
    base_text: String,
    http: reqwest::Client,
}

/// A successful JSON answer: its status (201 vs 200 matters for idempotent
/// run creation) and body (`Null` for an empty body, e.g. 204).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Client {
    /// `base` is the server URL given by `--api` / `WEIR_API_URL`, without
    /// `/api/v1` (a path prefix is kept).
    pub(crate) fn new(
        base: &str,
        token: Option<&str>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, CliError> {
        let url = parse_base(base)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    CliError::input("--token", "must be printable ASCII without spaces")
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let builder = with_ca_cert(reqwest::Client::builder(), ca_cert)?;
        let http = builder
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("weir-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Http {
                url: base.to_string(),
                source: e,
            })?;
        Ok(Client {
            base: url,
            base_text: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// `{base}/api/v1/{segments...}`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    pub(crate) async fn get(&self, segments: &[&str]) -> Result<Value, CliError> {
        Ok(self.send(Method::GET, self.url(segments), None).await?.body)
    }

    pub(crate) async fn get_url(&self, url: Url) -> Result<Value, CliError> {
        Ok(self.send(Method::GET, url, None).await?.body)
    }

    pub(crate) async fn post(
        &self,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Reply, CliError> {
        self.send(Method::POST, self.url(segments), body).await
    }

    pub(crate) async fn patch(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        Ok(self
            .send(Method::PATCH, self.url(segments), Some(body))
            .await?
            .body)
    }

    /// POSTs raw bytes (a plugin upload) and decodes the JSON answer.
    pub(crate) async fn post_bytes(
        &self,
        segments: &[&str],
        bytes: Vec<u8>,
    ) -> Result<Reply, CliError> {
        self.post_bytes_to(self.url(segments), bytes).await
    }

    /// [`Client::post_bytes`] to a URL (one with a query).
    pub(crate) async fn post_bytes_to(&self, url: Url, bytes: Vec<u8>) -> Result<Reply, CliError> {
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(bytes)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.transport(&url, e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(&url, e))?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        let body = serde_json::from_slice(&body).map_err(|e| {
            CliError::Response(format!("{} answered invalid JSON: {e}", url.path()))
        })?;
        Ok(Reply { status, body })
    }

    pub(crate) async fn delete(&self, segments: &[&str]) -> Result<(), CliError> {
        self.send(Method::DELETE, self.url(segments), None).await?;
        Ok(())
    }

    /// Sends a request and decodes a JSON answer; 4xx/5xx become
    /// [`CliError::Api`].
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Reply, CliError> {
        let mut request = self
            .http
            .request(method, url.clone())
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(&url, e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport(&url, e))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                CliError::Response(format!("{} answered invalid JSON: {e}", url.path()))
            })?
        };
        Ok(Reply { status, body })
    }

    /// Opens a streamed GET (no overall timeout); the caller reads the body.
    pub(crate) async fn stream(&self, url: Url) -> Result<Response, CliError> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| self.transport(&url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport(&url, e))?;
        Err(api_error(status, &bytes))
    }

    pub(crate) fn transport(&self, url: &Url, err: reqwest::Error) -> CliError {
        if err.is_connect() {
            CliError::Connect(self.base_text.clone(), err)
        } else {
            CliError::Http {
                url: url.to_string(),
                source: err,
            }
        }
    }
}

/// Trusts `--ca-cert` (a PEM file, e.g. a self-signed server certificate)
/// besides the system's roots.
fn with_ca_cert(
    builder: reqwest::ClientBuilder,
    ca_cert: Option<&std::path::Path>,
) -> Result<reqwest::ClientBuilder, CliError> {
    let Some(path) = ca_cert else {
        return Ok(builder);
    };
    let pem = std::fs::read(path)
        .map_err(|e| CliError::input("--ca-cert", format!("{}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| CliError::input("--ca-cert", format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::input(
            "--ca-cert",
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, cert| b.add_root_certificate(cert)))
}

fn parse_base(base: &str) -> Result<Url, CliError> {
    let url = Url::parse(base).map_err(|e| CliError::input("--api", format!("{base:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CliError::input(
            "--api",
            format!("{base:?}: use an http:// or https:// URL"),
        ));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(CliError::input("--api", format!("{base:?} has no host")));
    }
    Ok(url)
}

/// Builds [`CliError::Api`] from an error answer: the documented
/// `{"error", "field", "detail"}` body, or whatever text came back.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(v) = parsed.as_ref().filter(|v| v.get("detail").is_some()) {
        return CliError::Api {
            status: status.as_u16(),
            error: text_of(v, "error").unwrap_or_else(|| format!("http_{}", status.as_u16())),
            field: text_of(v, "field"),
            detail: text_of(v, "detail").unwrap_or_default(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("error");
    let detail = if text.is_empty() {
        format!("the server answered {} {reason}", status.as_u16())
    } else {
        let short: String = text.chars().take(300).collect();
        format!("the server answered {} {reason}: {short}", status.as_u16())
    };
    CliError::Api {
        status: status.as_u16(),
        error: format!("http_{}", status.as_u16()),
        field: None,
        detail,
    }
}
