//! One HTTP request through the shell: the client's address, the body (size- and time-bounded),
//! then the core — held and re-run for long polls, repeated as an event stream for followers.
//!
//! What to do with an answer is read from the core's typed signals in its extensions
//! (`core::wake`): `LongPoll` (hold it and send the request again: the re-run rule is written
//! there), `JobEvent` (the followed job finished), `Wake` (gathered by the core thread). The
//! shell never looks at a path or a body to learn what the core did.

use super::batch::Job;
use super::peer::Proxies;
use super::wakes::{client_key, Holds, Wakes};
use super::MAX_WAIT_S;
use crate::core::{JobEvent, LongPoll};
use crate::wire::errors::ErrorBody;
use axum::body::Body;
use axum::extract::Request as AxumRequest;
use axum::response::Response as AxumResponse;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What every request handler shares.
#[derive(Clone)]
pub struct Shell {
    pub tx: mpsc::Sender<Job>,
    pub wakes: Arc<Wakes>,
    pub holds: Arc<Holds>,
    pub proxies: Arc<Proxies>,
    /// The core's settings, for the per-route body limit (`/api/v1` takes larger bodies).
    pub config: Arc<crate::core::Config>,
    /// Time to send the headers; a body gets this plus its size limit at `min_body_rate`.
    pub header_timeout: Duration,
    /// Slowest accepted body upload, bytes per second.
    pub min_body_rate: u64,
    /// `Retry-After` of a long poll answered at once (seconds).
    pub retry_after_s: u64,
    pub latency: Arc<super::super::latency::Latency>,
    /// Where blob bytes live (`<data dir>/blobs`).
    pub blobs: Arc<crate::blob::fs::FsBlobs>,
}

impl super::server::Handler for Shell {
    fn call(
        self,
        peer: SocketAddr,
        req: AxumRequest,
    ) -> impl std::future::Future<Output = AxumResponse> + Send + 'static {
        let latency = self.latency.clone();
        super::super::latency::timed(latency, req, move |req| serve_request(self, peer, req))
    }
}

impl Shell {
    pub(super) async fn call(&self, req: Request<Bytes>) -> Response<Bytes> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((req, reply)).await.is_err() {
            return crate::core::http::empty(StatusCode::SERVICE_UNAVAILABLE);
        }
        answer
            .await
            .unwrap_or_else(|_| crate::core::http::empty(StatusCode::SERVICE_UNAVAILABLE))
    }
}

fn copy_request(parts: &http::request::Parts, body: &Bytes) -> Request<Bytes> {
    let mut req = Request::new(body.clone());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    req
}

fn is_event_stream(parts: &http::request::Parts) -> bool {
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    crate::runtime::edge::is_event_stream(parts.method == Method::GET, parts.uri.path(), accept)
}

fn error(status: StatusCode, code: &str, message: String) -> AxumResponse {
    crate::core::http::json(status, &ErrorBody::new(code, message)).map(Body::from)
}

/// Marks an answer given while the request body is still (partly) unread. hyper then drops the
/// connection instead of draining the rest, and without this header the client would already
/// have put the connection back in its pool: its next request on it fails with "connection
/// closed before message completed" (seen on busy machines, where the body is still in flight).
pub fn ending_connection(mut resp: AxumResponse) -> AxumResponse {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn serve_request(shell: Shell, peer: SocketAddr, req: AxumRequest) -> AxumResponse {
    let (mut parts, body) = req.into_parts();
    // The core cannot see the socket; the shell says who is asking (a client's own claim is
    // replaced; a trusted proxy's forwarded address is believed).
    let client = shell.proxies.client(peer.ip(), &parts.headers);
    crate::core::nexrender::set_peer(&mut parts.headers, Some(client));
    if super::blobs::is_transfer(&parts) {
        let blobs = shell.blobs.clone();
        return super::blobs::serve(shell, blobs, parts, body).await;
    }
    let path = parts.uri.path();
    let limit = crate::core::router::body_limit(&shell.config, path);
    let body_timeout = shell.header_timeout
        + Duration::from_secs_f64(limit as f64 / shell.min_body_rate.max(1) as f64);
    let read = axum::body::to_bytes(body, limit.saturating_add(1));
    let body = match tokio::time::timeout(body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            let e = crate::core::router::too_large(&shell.config, path);
            return ending_connection(e.into_response().map(Body::from));
        }
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {} s",
                body_timeout.as_secs()
            );
            return ending_connection(error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                message,
            ));
        }
    };
    let key = client_key(&parts.headers, client);
    if is_event_stream(&parts) {
        return event_stream(shell, parts, body, key);
    }
    let started = tokio::time::Instant::now();
    let mut hold = None;
    loop {
        // Registered before the call, so a wake during the call is not lost.
        let claimable = shell.wakes.claimable.notified();
        let mut resp = shell.call(copy_request(&parts, &body)).await;
        // Only an answer the core marks `LongPoll` may be held; sending the same request again
        // is then safe (the re-run rule, `core::wake::LongPoll`).
        let Some(long_poll) = resp.extensions().get::<LongPoll>().copied() else {
            return resp.map(Body::from);
        };
        let wait_ms = long_poll.wait_ms.min(MAX_WAIT_S * 1000);
        let deadline = started + Duration::from_millis(wait_ms);
        if tokio::time::Instant::now() >= deadline {
            return resp.map(Body::from);
        }
        if hold.is_none() {
            hold = shell.holds.try_hold(key);
            if hold.is_none() {
                // Too many held for this client: answer now, as the edge shells do.
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(shell.retry_after_s));
                return resp.map(Body::from);
            }
        }
        // Woken when the core says a task may be claimable, or at a lease's expiry.
        let _ = tokio::time::timeout_at(deadline, claimable).await;
    }
}

/// Follows a job as server-sent events: the core's `job` event each time the job changes,
/// until it finishes or the client goes away.
fn event_stream(shell: Shell, parts: http::request::Parts, body: Bytes, key: u64) -> AxumResponse {
    let Some(hold) = shell.holds.try_hold(key) else {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many long polls and event streams open from this client".into(),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(shell.retry_after_s));
        return resp;
    };
    let stream = futures_util::stream::unfold(
        (shell, parts, body, None::<Bytes>, false, hold),
        |(shell, parts, body, last, done, hold)| async move {
            if done {
                return None;
            }
            let wakes = shell.wakes.clone();
            loop {
                let written = wakes.written.notified();
                let resp = shell.call(copy_request(&parts, &body)).await;
                if resp.status() != StatusCode::OK {
                    let chunk = Bytes::from(format!(
                        "event: error\ndata: {}\n\n",
                        String::from_utf8_lossy(resp.body())
                    ));
                    return Some((
                        Ok::<Bytes, std::convert::Infallible>(chunk),
                        (shell, parts, body, last, true, hold),
                    ));
                }
                let finished = resp
                    .extensions()
                    .get::<JobEvent>()
                    .is_some_and(|e| e.finished);
                let event = resp.into_body();
                if last.as_ref() != Some(&event) {
                    return Some((
                        Ok(event.clone()),
                        (shell, parts, body, Some(event), finished, hold),
                    ));
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), written).await;
            }
        },
    );
    let mut resp = AxumResponse::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
