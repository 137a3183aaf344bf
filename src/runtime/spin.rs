//! The Spin shell: a `wasi:http@0.3` handler (spin-sdk 7, Spin 4.1 or later) that runs the same
//! `core::handle()` over the Spin key-value store `default`.
//!
//! Spin makes a fresh instance for every request and runs requests in parallel, so nothing lives
//! between requests but the store; the store's compare-and-swap is what keeps two requests from
//! handing out the same task (`store::spin_kv`).
//!
//! Settings are environment variables of the component (`[component.edgefarm] environment` in
//! spin.toml, or `spin up --env`), under the names `edgefarm serve` and the Worker read. Time
//! comes from the WASI wall clock, ids from WASI randomness: the core stays pure.
//!
//! As on Cloudflare: job events (`Accept: text/event-stream`) stream each changed `job` event for
//! at most [`STREAM_SECONDS`] (a task spawned after the answer started reads the job once a
//! second), and long polls answer at once with `Retry-After`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{box_body, BoxBody, EmptyBody, FullBody, Request};
use spin_sdk::wasip3::random::random::get_random_u64;

use super::edge::{self, Follow, STREAM_SECONDS};
use crate::core::nexrender::set_peer;
use crate::core::{Config, Ctx, Ids, JobEvent};
use crate::store::spin_kv::host::SpinCells;
use crate::store::spin_kv::SpinKv;
use crate::wire::errors::ErrorBody;

/// Where Spin tells a component the client's `IP:port`.
const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// The key-value store the component is granted in spin.toml.
const STORE_LABEL: &str = "default";

struct WasiIds;

impl Ids for WasiIds {
    fn random(&self) -> u128 {
        (get_random_u64() as u128) << 64 | get_random_u64() as u128
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn config() -> Result<Config, String> {
    edge::config_from_vars(|name| std::env::var(name).ok()).map_err(|e| {
        format!(
            "{e}: set it under [component.edgefarm] environment in spin.toml, or `spin up --env`"
        )
    })
}

fn full(resp: http::Response<Bytes>) -> http::Response<BoxBody> {
    resp.map(|b| {
        if b.is_empty() {
            box_body(EmptyBody::new())
        } else {
            box_body(FullBody::new(b))
        }
    })
}

/// A JSON error in the core's shape, for failures before the core runs.
fn error(status: http::StatusCode, code: &str, message: &str) -> http::Response<Bytes> {
    crate::core::http::json(status, &ErrorBody::new(code, message))
}

/// One request through the core over the Spin store.
async fn answer(req: http::Request<Bytes>, config: &Config) -> http::Response<Bytes> {
    let cells = match SpinCells::open(STORE_LABEL) {
        Ok(c) => c,
        Err(e) => {
            let status = http::StatusCode::SERVICE_UNAVAILABLE;
            return error(status, "unavailable", &e.to_string());
        }
    };
    let now_ms = now_ms();
    let store = SpinKv::new(cells, now_ms, &get_random_u64);
    let ctx = Ctx {
        store: &store,
        config,
        now_ms,
        ids: &WasiIds,
        notes: Default::default(),
    };
    edge::run_core(req, &ctx).await
}

/// Follows a job as server-sent events for a bounded time (module docs).
fn event_stream(req: http::Request<Bytes>, config: Config) -> http::Response<BoxBody> {
    let (parts, _) = req.into_parts();
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let (mut tx, body) = spin_sdk::http::body::stream::<Vec<u8>>();
    spin_sdk::wasip3::spawn(async move {
        let mut follow = Follow::new(last_event_id);
        let deadline = now_ms() + STREAM_SECONDS * 1000;
        while !follow.done() {
            let mut read = http::Request::new(Bytes::new());
            *read.uri_mut() = parts.uri.clone();
            *read.headers_mut() = parts.headers.clone();
            let resp = answer(read, &config).await;
            let event = resp.extensions().get::<JobEvent>();
            if let Some(chunk) = follow.chunk(resp.status().as_u16(), resp.body(), event) {
                if tx.try_send(chunk).is_err() {
                    return; // the client went away
                }
            }
            if now_ms() >= deadline {
                return;
            }
            spin_sdk::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut resp = http::Response::new(box_body(body));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

#[spin_sdk::http_service]
async fn serve(req: Request) -> http::Response<BoxBody> {
    let config = match config() {
        Ok(c) => c,
        Err(m) => {
            let status = http::StatusCode::INTERNAL_SERVER_ERROR;
            return full(error(status, "not_configured", &m));
        }
    };
    let (mut parts, body) = req.into_parts();
    // Spin puts the TCP peer in `spin-client-addr` (replacing any value the client sent).
    let peer = parts
        .headers
        .get(CLIENT_ADDR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<std::net::SocketAddr>().ok());
    set_peer(&mut parts.headers, peer.map(|p| p.ip()));
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    if let Some(r) = edge::declared_too_large(&config, parts.uri.path(), length) {
        return full(r);
    }
    let body = match body.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let message = format!("reading the body: {e:?}");
            return full(error(
                http::StatusCode::BAD_REQUEST,
                "bad_request",
                &message,
            ));
        }
    };
    let req = http::Request::from_parts(parts, body);
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if edge::is_event_stream(req.method() == http::Method::GET, req.uri().path(), accept) {
        return event_stream(req, config);
    }
    full(answer(req, &config).await)
}
