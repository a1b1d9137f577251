//! The web dashboard (`weir serve` at `/`): every page — `/` overview,
//! `/runs`, `/runs/{id}`, `/plugins`, `/pools/{name}` — answers with one
//! HTML shell, and its script and stylesheet (`/ui/app.js`,
//! `/ui/app.css`) are compiled into the binary: no build step, no CDN, no
//! file outside the binary, works air-gapped.
//!
//! The pages hold no data: the script reads the API (`/api/v1`) with the
//! token the user signs in with, so every scope holds exactly as it does
//! for the CLI — the API refuses what a role may not do, and the page only
//! leaves out the buttons for it.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Same-origin only: no inline script or style, nothing from elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes (stateless; merged into the server's router).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/runs", get(page))
        .route("/runs/{id}", get(page))
        .route("/plugins", get(page))
        .route("/pools/{name}", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(stylesheet))
}

struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: HeaderValue,
}

fn asset(
    cell: &'static OnceLock<Asset>,
    body: &'static str,
    content_type: &'static str,
) -> &'static Asset {
    cell.get_or_init(|| {
        let digest = Sha256::digest(body.as_bytes());
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Asset {
            body,
            content_type,
            etag: HeaderValue::from_str(&format!("\"{hex}\""))
                .unwrap_or(HeaderValue::from_static("\"weir\"")),
        }
    })
}

/// The asset, or 304 when the browser holds this version; revalidated on
/// each load (`no-cache`), so an upgraded server is never hidden behind a
/// cached script.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, asset.etag.clone()),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if request.get(header::IF_NONE_MATCH) == Some(&asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.body).into_response()
}

async fn page(request: HeaderMap) -> Response {
    static CELL: OnceLock<Asset> = OnceLock::new();
    serve(
        asset(&CELL, INDEX_HTML, "text/html; charset=utf-8"),
        &request,
    )
}

async fn script(request: HeaderMap) -> Response {
    static CELL: OnceLock<Asset> = OnceLock::new();
    serve(
        asset(&CELL, APP_JS, "text/javascript; charset=utf-8"),
        &request,
    )
}

async fn stylesheet(request: HeaderMap) -> Response {
    static CELL: OnceLock<Asset> = OnceLock::new();
    serve(asset(&CELL, APP_CSS, "text/css; charset=utf-8"), &request)
}
