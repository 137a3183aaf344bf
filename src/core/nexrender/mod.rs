//! The nexrender façade: nexrender-server's `/api/v1` protocol over edgefarm's scheduler, so the
//! stock `@nexrender/api` client and `@nexrender/worker` work against edgefarm unchanged.
//!
//! Design decision: a nexrender job is an ordinary edgefarm job of type `nexrender` with one
//! task. The job record keeps the nexrender JSON as clients sent it (`JobRecord.nexrender`); the
//! task keeps the truth about who renders it: a pickup is a claim of the task, the executor is
//! the lease holder, and every transition a worker asks for (`started`, progress, `finished`,
//! `error`, `queued`) is one compare-and-swap of the task's segment, guarded by who holds the
//! lease (`lease.rs`). What nexrender clients see as `state`, `executor` and `renderProgress`
//! is derived from the task each time it is read (`job::present`), so a worker that dies
//! between two writes never leaves a job that says `started` while nobody holds it: the lease
//! lapses after [`Settings::timeout_ms`] of silence and the job reads `queued` again, its
//! attempt counted, until `max_attempts` — then `error`, with a message that says why.
//!
//! Rejected alternative: nexrender-server's model, the JSON `state` field as the only truth,
//! changed by read-then-write. Two pickups on two instances (or a pickup racing a worker's
//! `PUT started`) can then both win, and a job whose worker died stays `started` for ever.
//!
//! Files: `routes.rs` (the handlers), `job.rs` (defaults, tags, times, the derived view),
//! `validate.rs` (nexrender's job rules), `status.rs` (the status projection), `lease.rs`
//! (the task transitions a PUT asks for), `pickup.rs` (the pickup claim and its ordering).

mod job;
mod lease;
mod pickup;
mod record;
mod routes;
mod status;
mod validate;

pub use job::{peer as peer_of, set_peer, PEER_HEADER};

use super::auth::constant_time_eq;
use super::error::Error;
use super::http::{empty, json};
use super::Ctx;
use crate::store::Store;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

/// How a pickup chooses among queued jobs (nexrender's `NEXRENDER_ORDERING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// FIFO: the oldest queued job first.
    #[default]
    OldestFirst,
    /// LIFO: the newest queued job first.
    NewestFirst,
    /// A random queued job among the oldest ones (a window of the claim index, see `pickup.rs`).
    Random,
    /// Highest `priority` first, the oldest of equal priority first.
    Priority,
}

impl std::str::FromStr for Ordering {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "oldest-first" | "" => Ok(Ordering::OldestFirst),
            "newest-first" => Ok(Ordering::NewestFirst),
            "random" => Ok(Ordering::Random),
            "priority" => Ok(Ordering::Priority),
            other => Err(format!(
                "unknown nexrender ordering {other:?}: use oldest-first, newest-first, random or priority"
            )),
        }
    }
}

/// Settings of the façade (part of `core::Config`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pickup ordering.
    pub ordering: Ordering,
    /// Silence after which an executor's lease lapses. Long by default: the stock worker only
    /// reports when its progress changes, and a `started` job may not report for minutes.
    pub timeout_ms: u64,
    /// Leases granted before a job whose executors keep going silent ends in `error`.
    pub max_attempts: u32,
    /// Largest `/api/v1` request body, and largest nexrender job (as JSON) a PUT may merge into
    /// being. Its own limit, above `Limits::body_bytes`: nexrender jobs carry inline `data:`
    /// assets. Each runtime sizes its default to what it can take and keep (docs/NEXRENDER.md).
    pub body_bytes: usize,
}

/// How an operator sets [`Settings::body_bytes`], named in the 413 answer.
pub const BODY_LIMIT_SETTING: &str = "--nexrender-body-bytes / EDGEFARM_NEXRENDER_BODY_BYTES";

/// nexrender-server's own body limit (100 MiB), the default where the runtime allows it.
pub const DEFAULT_BODY_BYTES: usize = 100 << 20;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ordering: Ordering::OldestFirst,
            timeout_ms: 10 * 60 * 1000,
            max_attempts: 3,
            body_bytes: DEFAULT_BODY_BYTES,
        }
    }
}

/// Headers a browser may send to the façade (CORS preflight answer).
const CORS_HEADERS: &str = "nexrender-secret, nexrender-name, content-type, x-edgefarm-override";

/// Answers one `/api/v1/...` request; `parts` are the path segments after `api/v1`.
pub async fn route<S: Store>(
    req: &Request<Bytes>,
    ctx: &Ctx<'_, S>,
    parts: &[&str],
) -> Response<Bytes> {
    let mut resp = match (req.method(), parts) {
        (&Method::OPTIONS, _) => preflight(),
        (&Method::GET, ["health"]) => {
            super::http::text(StatusCode::OK, "ok", "text/plain; charset=utf-8")
        }
        _ => match check_secret(ctx, req.headers()) {
            Err(e) => e.into_response(),
            Ok(()) => match routes::dispatch(req, ctx, parts).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            },
        },
    };
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn preflight() -> Response<Bytes> {
    let mut resp = empty(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_HEADERS),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(86_400));
    resp
}

/// nexrender's auth: the farm secret in `nexrender-secret`, compared in constant time; a wrong
/// or missing one is 403 (nexrender-server answers 403 for both, so its clients expect it).
fn check_secret<S: Store>(ctx: &Ctx<'_, S>, headers: &http::HeaderMap) -> Result<(), Error> {
    let secret = ctx.config.secret.as_bytes();
    if secret.is_empty() {
        return Ok(());
    }
    let sent = headers
        .get("nexrender-secret")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(sent, secret) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "send the farm secret in the nexrender-secret header".into(),
        ))
    }
}

/// Answers with `body` and status 200: nexrender clients call `response.json()` on every 2xx.
fn ok(body: &serde_json::Value) -> Response<Bytes> {
    json(StatusCode::OK, body)
}
