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

/// `GET /`: the dashboard. The page may only load what it carries and call its own origin,
/// and, when blobs live in a bucket, that bucket's origin: a frame link's fetch follows the
/// farm's 307 to a presigned URL there (`bucket_origin`, from [`Bucket::origin`]; the bucket
/// must also allow the dashboard's origin by CORS, docs/ASSETS.md).
///
/// [`Bucket::origin`]: crate::core::blobs::s3::Bucket::origin
pub fn page(bucket_origin: Option<&str>) -> Response<Bytes> {
    let mut resp = asset(PAGE, "text/html; charset=utf-8");
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp(bucket_origin));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The page's Content-Security-Policy. An origin that cannot be a header value (it never is:
/// it comes from a parsed URL's ASCII serialization) is left out rather than break the page.
fn csp(bucket_origin: Option<&str>) -> HeaderValue {
    let other = bucket_origin
        .filter(|o| {
            !o.is_empty()
                && o.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'\'' | b'"'))
        })
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         img-src 'self' blob: data:{other}; connect-src 'self'{other}; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// `GET /v1/openapi.json`.
pub fn openapi() -> Response<Bytes> {
    asset(OPENAPI, "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bucket_origin: Option<&str>) -> String {
        page(bucket_origin).headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .to_string()
    }

    #[test]
    fn the_page_calls_only_its_own_origin_without_a_bucket() {
        let p = policy(None);
        assert!(p.contains("connect-src 'self';"), "{p}");
        assert!(p.contains("img-src 'self' blob: data:;"), "{p}");
    }

    #[test]
    fn with_a_bucket_the_page_may_fetch_and_show_from_its_origin_only() {
        let p = policy(Some("https://farm.s3.eu-west-1.amazonaws.com"));
        assert!(
            p.contains("connect-src 'self' https://farm.s3.eu-west-1.amazonaws.com;"),
            "{p}"
        );
        assert!(
            p.contains("img-src 'self' blob: data: https://farm.s3.eu-west-1.amazonaws.com;"),
            "{p}"
        );
        assert!(p.starts_with("default-src 'none';"), "{p}");
    }

    #[test]
    fn an_origin_that_would_add_a_directive_is_left_out() {
        let p = policy(Some("https://x; script-src *"));
        assert!(p.contains("connect-src 'self';"), "{p}");
        assert!(!p.contains("script-src *"), "{p}");
    }
}
