//! The Cloudflare Workers shell: a Worker entry, one Durable Object per farm, and the Workers KV
//! alternative, all running the same `core::handle()`.
//!
//! Durable Object mode (default): the Worker forwards *every* request (`/v1/*`, `/api/v1/*`,
//! `/`, anything else) to the object named by `EDGEFARM_FARM` (`idFromName`), which turns it
//! into an `http::Request`, runs `handle()` over its own storage and answers. One object per farm
//! serialises all writes of the farm, which is what makes its compare-and-swap atomic
//! (`store::durable_object`). Rejected alternative: one object per queue or per job, which
//! would scale writes further but split records the core updates together (the job list, a job
//! and its claim index) across objects, with no transaction spanning them.
//!
//! KV mode (`EDGEFARM_STORE = "kv"`): the Worker runs `handle()` itself over the KV namespace;
//! weaker guarantees, see `store::workers_kv` and docs/CLOUDFLARE.md.
//!
//! The core stays pure: time comes from `Date::now()` (std's clock panics on
//! wasm32-unknown-unknown), randomness from `crypto.getRandomValues` (getrandom `wasm_js`).
//!
//! Things the native shell does with loops, done here within Workers' limits:
//! - Job events (`Accept: text/event-stream`): the Worker polls the core about once a second and
//!   streams each changed `job` event for at most [`STREAM_SECONDS`], then ends; an
//!   `EventSource` reconnects with `Last-Event-ID` and gets only newer events. Polling from the
//!   Worker rather than inside the object keeps the object free to serve other requests.
//! - Long polls (`?wait=`) answer at once (204 + `Retry-After`), as the API allows for runtimes
//!   that cannot hold requests cheaply: an object holding requests open would block its farm.
//! - Lease expiry is lazy (the next claim settles a lapsed lease). After handing out or renewing
//!   a lease the object sets an alarm at its expiry; the alarm only logs that leases may have
//!   lapsed (the hook for an eager expiry pass), because correctness never depends on it.
//! - Blob bytes (`PUT`/`GET`/`HEAD /v1/blobs/{sha256}`) stream between the client and an R2
//!   bucket in the Worker, never through the farm's object ([`r2`]).

use super::edge::{self, Follow, STREAM_SECONDS};
use crate::core::nexrender::set_peer;
use crate::core::{Config, Ctx, Ids, JobEvent, Wake};
use crate::store::durable_object::DurableObjectStore;
use crate::store::envelope::Versions;
use crate::store::workers_kv::WorkersKv;
use crate::wire::errors::ErrorBody;
use bytes::Bytes;
use std::cell::Cell;
use std::time::Duration;
use worker::{
    durable_object, event, Context, Date, Delay, DurableObject, Env, Headers, Request, RequestInit,
    Response, Result, State,
};

mod r2;

/// Durable Object namespace binding (wrangler.toml).
const DO_BINDING: &str = "EDGEFARM_DO";
/// KV namespace binding (wrangler.toml).
const KV_BINDING: &str = "EDGEFARM_KV";

struct WebIds;

impl Ids for WebIds {
    fn random(&self) -> u128 {
        let mut b = [0u8; 16];
        if getrandom_wasm::fill(&mut b).is_err() {
            // Only when the runtime has no crypto at all; Math.random beats failing the request.
            let r = || (worker::js_sys::Math::random() * u64::MAX as f64) as u128;
            return r() << 64 | r();
        }
        u128::from_le_bytes(b)
    }
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// The nexrender body limit by default: a job must fit in one storage value, and a SQLite-backed
/// Durable Object keeps at most 2 MB of key and value; the rest of the job record (and room for
/// a merge) fits in the remaining ~0.4 MB. The Workers request limit (100 MB on most plans) and
/// isolate memory (128 MB) are far above it. `EDGEFARM_NEXRENDER_BODY_BYTES` overrides it.
const NEXRENDER_BODY_BYTES: usize = 3 << 19;

/// Settings from wrangler vars; the secret from `wrangler secret put` (or `.dev.vars`).
fn config(env: &Env) -> std::result::Result<Config, String> {
    edge::config_from_vars(|name| {
        let secret = matches!(
            name,
            "EDGEFARM_SECRET" | "EDGEFARM_S3_SECRET_KEY" | "EDGEFARM_WEBHOOK_SECRET"
        )
            .then(|| env.secret(name).ok().map(|s| s.to_string()))
            .flatten();
        let body = (name == "EDGEFARM_NEXRENDER_BODY_BYTES")
            .then(|| NEXRENDER_BODY_BYTES.to_string());
        secret.or_else(|| var(env, name)).or(body)
    })
    .map(|mut c| {
        // A request carries at most the plan's body limit: bigger blobs go up in parts
        // (`r2::parts`), at least R2's smallest part each.
        let part = var(env, "EDGEFARM_BLOB_PART_BYTES")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(r2::DEFAULT_PART_BYTES)
            .max(r2::MIN_PART_BYTES);
        c.blob_part_bytes = Some(part);
        c
    })
    .map_err(|e| format!("{e}: run `wrangler secret put EDGEFARM_SECRET`, or put it in .dev.vars for wrangler dev"))
}

fn kv_mode(env: &Env) -> bool {
    var(env, "EDGEFARM_STORE").is_some_and(|s| s.trim() == "kv")
}

/// A JSON error in the core's shape, for failures before the core runs.
fn error(status: u16, code: &str, message: &str) -> Result<Response> {
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::from_bytes(body)?
        .with_status(status)
        .with_headers(headers))
}

/// The method, path with query, and the headers `keep` accepts, of a Workers request, as the
/// start of the `http::Request` the core takes (`to_http` adds the body, `r2` none).
fn head_of(req: &Request, keep: impl Fn(&str) -> bool) -> Result<http::request::Builder> {
    let url = req.url()?;
    let uri = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut b = http::Request::builder()
        .method(req.method().as_ref())
        .uri(uri);
    for (k, v) in req.headers().entries() {
        if keep(&k) {
            b = b.header(k, v);
        }
    }
    Ok(b)
}

async fn to_http(req: &mut Request) -> Result<std::result::Result<http::Request<Bytes>, String>> {
    let b = head_of(req, |_| true)?;
    let body = req.bytes().await.unwrap_or_default();
    let mut out = match b.body(Bytes::from(body)) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.to_string())),
    };
    // Cloudflare's edge gives the client's address in `CF-Connecting-IP` (replacing any value
    // the client sent; wrangler dev sets it when the client did not): the Workers counterpart
    // of the native shell's TCP peer. It is still on the request forwarded to the farm's object.
    let ip = req.headers().get("cf-connecting-ip").ok().flatten();
    set_peer(out.headers_mut(), ip.and_then(|ip| ip.trim().parse().ok()));
    Ok(Ok(out))
}

/// A body declared over its route's limit is refused before it is read (`edge`).
fn too_large(config: &Config, req: &Request) -> Option<http::Response<Bytes>> {
    let length = req.headers().get("content-length").ok().flatten();
    edge::declared_too_large(config, &req.path(), length.as_deref())
}

fn from_http(resp: http::Response<Bytes>) -> Result<Response> {
    let (parts, body) = resp.into_parts();
    let headers = Headers::new();
    for (k, v) in &parts.headers {
        if let Ok(v) = v.to_str() {
            headers.append(k.as_str(), v)?;
        }
    }
    // A JS Response with a 204/304 status must have no body at all, not an empty one.
    let out = if body.is_empty() {
        Response::empty()?
    } else {
        Response::from_bytes(body.to_vec())?
    };
    Ok(out.with_status(parts.status.as_u16()).with_headers(headers))
}

/// Version source for KV mode, one per isolate (requests of an isolate share it).
fn kv_versions() -> &'static Versions {
    thread_local! {
        static V: &'static Versions = Box::leak(Box::default());
    }
    V.with(|v| *v)
}

/// KV mode: the core runs in the Worker itself.
async fn answer_over_kv(env: &Env, mut req: Request) -> Result<Response> {
    let config = match config(env) {
        Ok(c) => c,
        Err(m) => return error(500, "not_configured", &m),
    };
    if let Some(r) = too_large(&config, &req) {
        return from_http(r);
    }
    let http_req = match to_http(&mut req).await? {
        Ok(r) => r,
        Err(m) => return error(400, "bad_request", &m),
    };
    let now_ms = Date::now().as_millis();
    let store = WorkersKv::new(env.kv(KV_BINDING)?, kv_versions(), now_ms);
    let ctx = Ctx {
        store: &store,
        config: &config,
        now_ms,
        ids: &WebIds,
        notes: Default::default(),
    };
    let mut resp = edge::run_core(http_req, &ctx).await;
    edge::job_event_to_header(&mut resp);
    from_http(resp)
}

async fn answer(env: &Env, req: Request) -> Result<Response> {
    if kv_mode(env) {
        return answer_over_kv(env, req).await;
    }
    let farm = var(env, "EDGEFARM_FARM").unwrap_or_else(|| "default".into());
    let stub = env
        .durable_object(DO_BINDING)?
        .id_from_name(&farm)?
        .get_stub()?;
    stub.fetch_with_request(without_internal_headers(req)?)
        .await
}

/// The request without the headers only the Worker may send to the farm's object
/// (`edge::INTERNAL_HEADERS`); rebuilt only when a client sent one.
fn without_internal_headers(req: Request) -> Result<Request> {
    let internal = |k: &str| edge::INTERNAL_HEADERS.contains(&k.to_ascii_lowercase().as_str());
    if !req.headers().entries().any(|(k, _)| internal(k.as_str())) {
        return Ok(req);
    }
    let headers = Headers::new();
    for (k, v) in req
        .headers()
        .entries()
        .filter(|(k, _)| !internal(k.as_str()))
    {
        headers.append(&k, &v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if let Some(body) = req.inner().body() {
        init.with_body(Some(body.into()));
    }
    Request::new_with_init(req.url()?.as_str(), &init)
}

fn is_event_stream(req: &Request) -> bool {
    let accept = req.headers().get("accept").ok().flatten();
    edge::is_event_stream(
        req.method() == worker::Method::Get,
        &req.path(),
        accept.as_deref(),
    )
}

struct Poller {
    env: Env,
    url: String,
    headers: Vec<(String, String)>,
    follow: Follow,
    deadline_ms: u64,
}

impl Poller {
    /// One `GET` of the job through the core (object or KV): status, body, and the core's
    /// `JobEvent` signal (carried over from the object in a header).
    async fn poll(&self) -> Result<(u16, Vec<u8>, Option<JobEvent>)> {
        let headers = Headers::new();
        for (k, v) in &self.headers {
            headers.append(k, v)?;
        }
        let mut init = RequestInit::new();
        init.with_headers(headers);
        let req = Request::new_with_init(&self.url, &init)?;
        let mut resp = answer(&self.env, req).await?;
        let header = resp.headers().get(edge::JOB_EVENT_HEADER).ok().flatten();
        let event = edge::job_event_from_header(header.as_deref());
        Ok((resp.status_code(), resp.bytes().await?, event))
    }

    /// The next chunk of the stream, or `None` when it ends.
    async fn next(mut self) -> Option<(Result<Vec<u8>>, Poller)> {
        while !self.follow.done() {
            let (status, body, event) = match self.poll().await {
                Ok(x) => x,
                Err(e) => (503, e.to_string().into_bytes(), None),
            };
            if let Some(chunk) = self.follow.chunk(status, &body, event.as_ref()) {
                return Some((Ok(chunk), self));
            }
            if Date::now().as_millis() >= self.deadline_ms {
                return None;
            }
            Delay::from(Duration::from_secs(1)).await;
        }
        None
    }
}

/// Follows a job as server-sent events for a bounded time (module docs).
fn event_stream(env: Env, req: &Request) -> Result<Response> {
    let keep = ["authorization", "accept"];
    let headers = req
        .headers()
        .entries()
        .filter(|(k, _)| keep.contains(&k.to_ascii_lowercase().as_str()))
        .collect();
    let poller = Poller {
        env,
        url: req.url()?.to_string(),
        headers,
        follow: Follow::new(req.headers().get("last-event-id").ok().flatten()),
        deadline_ms: Date::now().as_millis() + STREAM_SECONDS * 1000,
    };
    let stream = futures_util::stream::unfold(poller, Poller::next);
    let headers = Headers::new();
    headers.set("content-type", "text/event-stream")?;
    headers.set("cache-control", "no-cache")?;
    Ok(Response::from_stream(stream)?.with_headers(headers))
}

/// The store suite's route, in the Worker: checks the secret, runs the KV cases here and hands
/// the Durable Object cases to the farm's object (`runtime::store_suite`).
#[cfg(feature = "store-suite")]
async fn store_suite(env: &Env, mut req: Request) -> Result<Response> {
    use super::store_suite::{self as suite, Target};
    let config = match config(env) {
        Ok(c) => c,
        Err(m) => return error(500, "not_configured", &m),
    };
    let path = req.path();
    let http_req = match to_http(&mut req).await? {
        Ok(r) => r,
        Err(m) => return error(400, "bad_request", &m),
    };
    if !suite::authorized(http_req.headers(), &config.secret) {
        return from_http(suite::refusal(
            http::StatusCode::UNAUTHORIZED,
            "send the farm secret",
        ));
    }
    match suite::target(&path) {
        Some(Target::Cases) => from_http(suite::cases()),
        Some(Target::WorkersKv(rest)) => {
            let now_ms = Date::now().as_millis();
            let store = WorkersKv::new(env.kv(KV_BINDING)?, kv_versions(), now_ms);
            from_http(suite::run(store, "workers_kv", rest).await)
        }
        Some(Target::DurableObject(_)) => {
            let farm = var(env, "EDGEFARM_FARM").unwrap_or_else(|| "default".into());
            let stub = env
                .durable_object(DO_BINDING)?
                .id_from_name(&farm)?
                .get_stub()?;
            stub.fetch_with_str(&format!("https://farm{path}")).await
        }
        None => from_http(suite::refusal(
            http::StatusCode::NOT_FOUND,
            "no such store suite path",
        )),
    }
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    #[cfg(feature = "store-suite")]
    if req.path().starts_with(super::store_suite::PREFIX) {
        return store_suite(&env, req).await;
    }
    if is_event_stream(&req) {
        return event_stream(env, &req);
    }
    if r2::is_parts(&req) {
        return r2::parts(&env, req).await;
    }
    if r2::is_transfer(&req) {
        return r2::serve(&env, req).await;
    }
    answer(&env, req).await
}

/// One farm: its whole state, served one event at a time.
#[durable_object]
pub struct EdgefarmFarm {
    state: State,
    env: Env,
    versions: Versions,
    /// The pending alarm's time as this instance set it (0: none known), to set it at most
    /// once per lease rather than on every claim.
    alarm_at: Cell<u64>,
}

impl EdgefarmFarm {
    /// Sets an alarm at the expiry of a lease just granted or renewed, or when a webhook
    /// delivery is due (the core's `Wake` says when), unless one is due sooner.
    async fn note_wake(&self, wake: Option<Wake>, now_ms: u64) {
        let lease = wake.and_then(|w| w.lease_expires_ms).map(|t| t + 1000);
        let webhook = wake.and_then(|w| w.webhook_due_ms);
        let Some(at) = lease.into_iter().chain(webhook).min() else {
            return;
        };
        self.alarm_at_least(at, now_ms).await;
    }

    async fn alarm_at_least(&self, at: u64, now_ms: u64) {
        let pending = self.alarm_at.get();
        if pending > now_ms && pending <= at {
            return;
        }
        let at = at.max(now_ms);
        if self
            .state
            .storage()
            .set_alarm(Duration::from_millis(at - now_ms))
            .await
            .is_ok()
        {
            self.alarm_at.set(at);
        }
    }
}

impl EdgefarmFarm {
    /// A request of the object's own to the core, with the farm secret.
    async fn core_call<T: serde::de::DeserializeOwned>(
        &self,
        config: &Config,
        path: &str,
        body: Vec<u8>,
    ) -> std::result::Result<T, String> {
        let req = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {}", config.secret))
            .body(Bytes::from(body))
            .map_err(|e| e.to_string())?;
        let now_ms = Date::now().as_millis();
        let store = DurableObjectStore::new(self.state.storage(), &self.versions, now_ms);
        let ctx = Ctx {
            store: &store,
            config,
            now_ms,
            ids: &WebIds,
            notes: Default::default(),
        };
        let resp = crate::core::handle(req, &ctx).await;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("{path} answered {}", resp.status()));
        }
        serde_json::from_slice(resp.body()).map_err(|e| e.to_string())
    }

    /// Sends the webhook requests due now and reports how they went (`core::webhooks`);
    /// returns when the next one is due.
    async fn deliver_webhooks(&self) -> Option<u64> {
        use crate::wire::webhooks::{Due, Report, Reported, Reports};
        let config = config(&self.env).ok()?;
        let due: Due = match self
            .core_call(&config, "/v1/webhooks/due", Vec::new())
            .await
        {
            Ok(d) => d,
            Err(e) => {
                worker::console_error!("edgefarm: webhooks due: {e}");
                return Some(Date::now().as_millis() + 5_000);
            }
        };
        if due.requests.is_empty() {
            return due.next_due_ms;
        }
        let mut reports = Vec::new();
        for out in &due.requests {
            let (status, error) = match send_webhook(out).await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            };
            reports.push(Report {
                delivery: out.delivery.clone(),
                target: out.target,
                status,
                error,
            });
        }
        let body = serde_json::to_vec(&Reports { reports }).unwrap_or_default();
        match self
            .core_call::<Reported>(&config, "/v1/webhooks/report", body)
            .await
        {
            Ok(r) => r.next_due_ms,
            Err(e) => {
                worker::console_error!("edgefarm: webhooks report: {e}");
                Some(Date::now().as_millis() + 5_000)
            }
        }
    }
}

/// POSTs one signed webhook request; its HTTP status. Redirects are not followed.
async fn send_webhook(out: &crate::wire::webhooks::Outgoing) -> Result<u16> {
    let headers = Headers::new();
    for [k, v] in &out.headers {
        headers.set(k, v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_headers(headers)
        .with_redirect(worker::RequestRedirect::Manual)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&out.body)));
    let req = Request::new_with_init(&out.url, &init)?;
    let resp = worker::Fetch::Request(req).send().await?;
    Ok(resp.status_code())
}

impl DurableObject for EdgefarmFarm {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            versions: Versions::default(),
            alarm_at: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // Reached only through the Worker's `store_suite`, which checked the secret.
        #[cfg(feature = "store-suite")]
        let path = req.path();
        #[cfg(feature = "store-suite")]
        if let Some(super::store_suite::Target::DurableObject(rest)) =
            super::store_suite::target(&path)
        {
            let store = DurableObjectStore::new(
                self.state.storage(),
                &self.versions,
                Date::now().as_millis(),
            );
            return from_http(super::store_suite::run(store, "durable_object", rest).await);
        }
        let config = match config(&self.env) {
            Ok(c) => c,
            Err(m) => return error(500, "not_configured", &m),
        };
        if let Some(r) = too_large(&config, &req) {
            return from_http(r);
        }
        let mut http_req = match to_http(&mut req).await? {
            Ok(r) => r,
            Err(m) => return error(400, "bad_request", &m),
        };
        // Only the Worker reaches the object, and it strips these headers from what clients send.
        edge::blob_request_from_worker(&mut http_req);
        let now_ms = Date::now().as_millis();
        let store = DurableObjectStore::new(self.state.storage(), &self.versions, now_ms);
        let ctx = Ctx {
            store: &store,
            config: &config,
            now_ms,
            ids: &WebIds,
            notes: Default::default(),
        };
        let mut resp = edge::run_core(http_req, &ctx).await;
        self.note_wake(resp.extensions().get::<Wake>().copied(), now_ms)
            .await;
        edge::job_event_to_header(&mut resp);
        edge::transfer_to_header(&mut resp);
        from_http(resp)
    }

    async fn alarm(&self) -> Result<Response> {
        // Leases granted before now may have lapsed; the next claim of their queue settles
        // them (lazy expiry), so nothing has to happen here for correctness. Webhooks due now
        // are sent from here.
        self.alarm_at.set(0);
        if let Some(next) = self.deliver_webhooks().await {
            self.alarm_at_least(next, Date::now().as_millis()).await;
        }
        Response::empty()
    }
}
