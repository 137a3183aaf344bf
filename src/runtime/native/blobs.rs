//! Blob bytes through `edgefarm serve`: the core decides (credentials, name, size, whether the
//! farm has it) and answers with a `Transfer`; this file streams the body into the data dir's
//! blob folder or a file out of it, never holding a whole blob in memory.

use super::requests::{ending_connection, Shell};
use crate::blob::fs::FsBlobs;
use crate::blob::{self, BlobError, Blobs, ByteRange, Chunks, Download};
use crate::core::blobs::{Stored, Transfer};
use axum::body::Body;
use axum::response::Response as AxumResponse;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Request, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Whether the request moves blob bytes (and so must not be read whole before the core).
pub fn is_transfer(parts: &http::request::Parts) -> bool {
    crate::runtime::edge::is_blob_transfer(&parts.method, parts.uri.path())
}

fn bare(parts: &http::request::Parts) -> Request<Bytes> {
    let mut req = Request::new(Bytes::new());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    req
}

/// Whether the request has body bytes on the wire (a PUT does; a GET or HEAD does not).
fn carries_body(parts: &http::request::Parts) -> bool {
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || parts.headers.contains_key(header::TRANSFER_ENCODING)
}

fn error(status: StatusCode, code: &str, field: Option<&str>, message: String) -> AxumResponse {
    let mut err = serde_json::json!({"code": code, "message": message});
    if let Some(f) = field {
        err["field"] = f.into();
    }
    crate::core::http::json(status, &serde_json::json!({ "error": err })).map(Body::from)
}

struct BodyChunks {
    stream: axum::body::BodyDataStream,
    idle: Duration,
}

impl Chunks for BodyChunks {
    async fn next(&mut self) -> Option<Result<Bytes, String>> {
        match tokio::time::timeout(self.idle, self.stream.next()).await {
            Ok(next) => next.map(|r| r.map_err(|e| e.to_string())),
            Err(_) => Some(Err(format!("no bytes for {} s", self.idle.as_secs()))),
        }
    }
}

/// Serves one blob upload or download.
pub async fn serve(
    shell: Shell,
    blobs: Arc<FsBlobs>,
    parts: http::request::Parts,
    body: Body,
) -> AxumResponse {
    let resp = shell.call(bare(&parts)).await;
    let Some(transfer) = resp.extensions().get::<Transfer>().cloned() else {
        // "The farm has it", or refused: the body is left unread.
        let resp = resp.map(Body::from);
        return if carries_body(&parts) {
            ending_connection(resp)
        } else {
            resp
        };
    };
    match transfer {
        Transfer::Receive { sha256, size } => {
            let mut chunks = BodyChunks {
                stream: body.into_data_stream(),
                idle: shell.header_timeout,
            };
            let limit = shell.header_timeout
                + Duration::from_secs_f64(size as f64 / shell.min_body_rate.max(1) as f64);
            let got =
                tokio::time::timeout(limit, blob::receive(&*blobs, &sha256, size, &mut chunks))
                    .await;
            let refused = match got {
                Ok(Ok(())) => {
                    let mut req = bare(&parts);
                    req.extensions_mut().insert(Stored { sha256, size });
                    return shell.call(req).await.map(Body::from);
                }
                Ok(Err(BlobError::Mismatch(m))) => {
                    error(StatusCode::BAD_REQUEST, "bad_request", Some("body"), m)
                }
                Ok(Err(BlobError::Truncated(m))) => {
                    error(StatusCode::BAD_REQUEST, "truncated", Some("body"), m)
                }
                Ok(Err(BlobError::Backend(e))) => {
                    tracing::error!(error = %e, blob = %sha256, "blob store failed");
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        None,
                        "internal error".into(),
                    )
                }
                Err(_) => error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    None,
                    format!("the blob did not arrive within {} s", limit.as_secs()),
                ),
            };
            // Refused part-way: the rest of the body may still be on its way.
            ending_connection(refused)
        }
        Transfer::Send { sha256, size, head } => {
            let range = parts
                .headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            send(&blobs, &sha256, size, ByteRange::parse(range, size), head).await
        }
    }
}

async fn send(
    blobs: &FsBlobs,
    sha256: &str,
    size: u64,
    range: ByteRange,
    head: bool,
) -> AxumResponse {
    let (status, span) = match range {
        ByteRange::Whole => (StatusCode::OK, (size > 0).then(|| (0, size - 1))),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, Some((start, end))),
        ByteRange::Unsatisfiable => {
            let mut resp = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                Some("Range"),
                format!("the blob has {size} bytes"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    let len = span.map_or(0, |(s, e)| e - s + 1);
    let body = if head || len == 0 {
        Body::empty()
    } else {
        match blobs.open(sha256, span).await {
            Ok(Some(download)) => {
                let stream = futures_util::stream::unfold(download, |mut d| async move {
                    match d.next().await {
                        Ok(Some(b)) => Some((Ok::<Bytes, BlobError>(b), d)),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::error!(error = %e, "blob read failed mid-download");
                            Some((Err(e), d))
                        }
                    }
                });
                Body::from_stream(stream)
            }
            Ok(None) => {
                tracing::error!(blob = %sha256, "a recorded blob has no bytes in the blob folder");
                return error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    None,
                    format!("blob {sha256} not found"),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, blob = %sha256, "blob open failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    "internal error".into(),
                );
            }
        }
    };
    let mut resp = AxumResponse::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        h.insert(header::ETAG, v);
    }
    if let (StatusCode::PARTIAL_CONTENT, Some((s, e))) = (status, span) {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}
