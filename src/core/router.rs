//! `handle()`: the one entry point every runtime calls. It checks size and credentials, then
//! hands the request to the handler of its route once the permission table (`core::access`)
//! allows it.

use super::api;
use super::auth::{authenticate, Caller};
use super::auth_limit;
use super::dashboard;
use super::error::{Error, Result};
use super::http::decode;
use super::wake::{self, Wake};
use super::{Config, Ctx};
use crate::store::Store;
use bytes::Bytes;
use http::{Method, Request, Response};

/// Answers one request. Never panics on input; every failure is a JSON error answer.
/// The answer carries a [`Wake`] in its extensions: what it means for waiting long polls.
pub async fn handle<S: Store>(req: Request<Bytes>, ctx: &Ctx<'_, S>) -> Response<Bytes> {
    let mut resp = match route(&req, ctx).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    let status = resp.status();
    let wake = match resp.extensions_mut().get_mut::<Wake>() {
        // Rejected requests leave the store as it was: nothing to wake for.
        Some(set) if !status.is_success() => std::mem::take(set),
        Some(set) => *set,
        None => {
            let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
            let leases = (ctx.config.lease_ms, ctx.config.nexrender.timeout_ms);
            wake::of_request(req.method(), &parts, status, leases, ctx.now_ms)
        }
    };
    // Even a rejected request may have recorded a webhook event before it failed.
    let mut wake = wake;
    wake.webhook_due_ms = ctx.notes.webhook_due_ms();
    resp.extensions_mut().insert(wake);
    resp
}

async fn route<S: Store>(req: &Request<Bytes>, ctx: &Ctx<'_, S>) -> Result<Response<Bytes>> {
    let path = req.uri().path();
    let parts: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let method = req.method();
    let limit = body_limit(ctx.config, path);
    if req.body().len() > limit {
        return Err(too_large(ctx.config, path));
    }
    match (method, parts.as_slice()) {
        (&Method::GET, ["v1", "health"]) => return Ok(api::health(ctx)),
        // The dashboard and the API description need no credentials (the page asks for them).
        (&Method::GET, [""]) => {
            let origin = ctx.config.bucket.as_ref().map(|b| b.origin());
            return Ok(dashboard::page(origin.as_deref()));
        }
        (&Method::GET, ["v1", "openapi.json"]) => return Ok(dashboard::openapi()),
        // The nexrender façade has its own auth (`nexrender-secret`) and error shapes.
        (_, ["api", "v1", rest @ ..]) => return Ok(super::nexrender::route(req, ctx, rest).await),
        (_, ["v1", ..]) => {}
        _ => return Err(Error::NotFound(format!("route {path}"))),
    }
    let headers = req.headers();
    if super::auth::bearer(headers).is_some() {
        if let Some(throttled) = auth_limit::check(ctx, headers).await? {
            return Ok(throttled);
        }
    }
    let caller = match authenticate(ctx, headers).await {
        Ok(caller) => caller,
        Err(e) => {
            if auth_limit::counts(&e) {
                auth_limit::failed(ctx, headers).await?;
            }
            return Err(e);
        }
    };
    v1(req, ctx, &caller, method, &parts[1..]).await
}

/// The largest body a request to `path` may carry: the nexrender façade's own limit on
/// `/api/v1` (jobs with inline assets), `Limits::body_bytes` elsewhere. Shells that bound what
/// they read use it too, so both answer the same 413.
pub fn body_limit(config: &Config, path: &str) -> usize {
    if path.starts_with("/api/v1/") {
        config.nexrender.body_bytes
    } else if path == "/v1/blobs/missing" {
        config
            .limits
            .manifest_body_bytes
            .max(config.limits.body_bytes)
    } else {
        config.limits.body_bytes
    }
}

/// The 413 for a body over [`body_limit`], naming the limit and how to change it.
pub fn too_large(config: &Config, path: &str) -> Error {
    let limit = body_limit(config, path);
    if path.starts_with("/api/v1/") {
        Error::TooLarge(format!(
            "the request body is over this server's nexrender limit of {limit} bytes ({})",
            super::nexrender::BODY_LIMIT_SETTING
        ))
    } else {
        Error::TooLarge(format!("the request body is over {limit} bytes"))
    }
}

async fn v1<S: Store>(
    req: &Request<Bytes>,
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    method: &Method,
    parts: &[&str],
) -> Result<Response<Bytes>> {
    use crate::core::blobs::{inputs, outputs};
    use api::{blobs, jobs, metrics, nodes, previews, queue, tasks, tokens, webhooks};
    let body = req.body();
    let query = req.uri().query();
    super::access::authorize(ctx, caller, method, parts).await?;
    match (method, parts) {
        (&Method::GET, ["whoami"]) => Ok(tokens::whoami(caller)),
        (&Method::POST, ["tokens"]) => tokens::create(ctx, body).await,
        (&Method::GET, ["tokens"]) => tokens::list(ctx).await,
        (&Method::DELETE, ["tokens", id]) => tokens::revoke(ctx, id).await,
        (&Method::POST, ["jobs"]) => jobs::submit(ctx, caller, body).await,
        (&Method::GET, ["jobs"]) => jobs::list(ctx, query).await,
        (&Method::GET, ["jobs", id]) => jobs::get(ctx, id, req.headers()).await,
        (&Method::PATCH, ["jobs", id]) => jobs::patch(ctx, caller, id, body).await,
        (&Method::DELETE, ["jobs", id]) => jobs::delete(ctx, id).await,
        (&Method::GET, ["jobs", id, "tasks"]) => jobs::tasks(ctx, id, query).await,
        (&Method::GET, ["jobs", id, "preview"]) => previews::of_job(ctx, id, req.headers()).await,
        (&Method::POST, ["jobs", id, action]) => jobs::action(ctx, id, action, body).await,
        (&Method::GET, ["jobs", id, "inputs"]) => inputs::list(ctx, id, query).await,
        (&Method::GET, ["jobs", id, "outputs"]) => outputs::list(ctx, id, query).await,
        (&Method::POST, ["blobs", "missing"]) => blobs::missing(ctx, body).await,
        (&Method::PUT, ["blobs", sha]) => blobs::put(ctx, sha, req).await,
        (&Method::GET, ["blobs", sha]) => blobs::get(ctx, sha, false).await,
        (&Method::HEAD, ["blobs", sha]) => blobs::get(ctx, sha, true).await,
        (&Method::GET, ["tasks", id]) => tasks::get(ctx, caller, id).await,
        (&Method::GET, ["tasks", id, "log"]) => tasks::log(ctx, caller, id, query).await,
        (&Method::POST, ["tasks", id, "heartbeat"]) => {
            tasks::heartbeat(ctx, caller, id, body).await
        }
        (&Method::POST, ["tasks", id, "ack"]) => tasks::ack(ctx, caller, id, body).await,
        (&Method::POST, ["tasks", id, "release"]) => tasks::release(ctx, caller, id, body).await,
        (&Method::POST, ["tasks", id, "preview"]) => previews::upload(ctx, caller, id, req).await,
        (&Method::GET, ["preview"]) => previews::of_farm(ctx, req.headers()).await,
        (&Method::GET, ["metrics"]) => metrics::get(ctx, req.headers(), query).await,
        (&Method::GET, ["queue", q]) => queue::settings(ctx, q),
        (&Method::POST, ["queue", q]) => queue::poll(ctx, caller, q, query, body).await,
        (&Method::POST, ["nodes"]) => nodes::enrol(ctx, caller, body).await,
        (&Method::GET, ["nodes"]) => nodes::list(ctx).await,
        (&Method::GET, ["nodes", id]) => nodes::get(ctx, caller, id).await,
        (&Method::DELETE, ["nodes", id]) => nodes::delete(ctx, id).await,
        (&Method::POST, ["nodes", id, "leave"]) => nodes::leave(ctx, caller, id).await,
        (&Method::POST, ["nodes", id, action]) => nodes::action(ctx, id, action).await,
        (&Method::GET, ["webhooks", "deliveries"]) => webhooks::deliveries(ctx).await,
        (&Method::POST, ["webhooks", "due"]) => webhooks::due(ctx).await,
        (&Method::POST, ["webhooks", "report"]) => webhooks::report(ctx, body).await,
        (
            m,
            ["jobs" | "tasks" | "queue" | "nodes" | "preview" | "metrics" | "blobs" | "tokens"
            | "whoami" | "webhooks", ..],
        ) => Err(Error::MethodNotAllowed(m.to_string())),
        _ => Err(Error::NotFound(format!("route /v1/{}", parts.join("/")))),
    }
}
