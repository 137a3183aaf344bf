//! Static assets the core serves itself: the dashboard page (`GET /`) and the OpenAPI
//! description of `/v1` (`GET /v1/openapi.json`), both compiled into the binary or wasm module.
//!
//! Design decision: one self-contained HTML file (markup, CSS and script inline) embedded with
//! `include_str!`, so every runtime serves the same page with no asset store, CDN or build step,
//! and the page can only ever talk to the `/v1` API it came with. The page asks for the farm
//! secret and keeps it in the browser's localStorage; serving the page needs no credentials.
//! Rejected alternative: a JavaScript framework and bundler. It would need the internet at
//! build time and ship ten times the bytes for a page of tables and buttons.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// The dashboard page.
pub const PAGE: &str = include_str!("index.html");
/// The OpenAPI 3.1 description of `/v1`.
pub const OPENAPI: &str = include_str!("../openapi.json");

fn asset(body: &'static str, content_type: &'static str) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from_static(body.as_bytes()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /`: the dashboard. The page may only load what it carries and call its own origin.
pub fn page() -> Response<Bytes> {
    let mut resp = asset(PAGE, "text/html; charset=utf-8");
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `GET /v1/openapi.json`.
pub fn openapi() -> Response<Bytes> {
    asset(OPENAPI, "application/json")
}
