//! The native server (`edgefarm serve`): axum in front, the core on one thread behind it.
//!
//! The core's store futures are not `Send`, and SQLite wants one writer anyway, so every request
//! is sent over a channel to a single core thread. That thread takes every request waiting, runs
//! them one after another inside one SQLite transaction, commits (one fsync for the batch: group
//! commit), and only then answers them — no client hears "accepted" before its write is durable.
//! Long polls and job event streams are loops in this shell around ordinary core requests,
//! woken when a batch with writes commits.

use crate::core::{handle, Config, Ctx, Ids};
use crate::store::{Memory, Sqlite, Store};
use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request as AxumRequest};
use axum::response::Response as AxumResponse;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, Notify};

/// Flags of `edgefarm serve`; each also reads an environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEFARM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Data directory for the embedded SQLite store.
    #[arg(long, env = "EDGEFARM_DATA", default_value = "edgefarm-data")]
    pub data: PathBuf,
    /// Keep everything in memory (nothing survives a restart).
    #[arg(long)]
    pub memory: bool,
    /// Farm secret; generated and kept in the data dir when absent.
    #[arg(long, env = "EDGEFARM_SECRET")]
    pub secret: Option<String>,
    /// Lease length handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_LEASE_MS", default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Heartbeat interval handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// Poll interval handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_POLL_MS", default_value_t = 2_000)]
    pub poll_ms: u64,
    /// nexrender façade: pickup order (oldest-first, newest-first, random, priority).
    #[arg(
        long,
        env = "EDGEFARM_NEXRENDER_ORDERING",
        default_value = "oldest-first"
    )]
    pub nexrender_ordering: crate::core::nexrender::Ordering,
    /// nexrender façade: ms of executor silence after which its job is queued again.
    #[arg(long, env = "EDGEFARM_NEXRENDER_TIMEOUT_MS", default_value_t = 600_000)]
    pub nexrender_timeout_ms: u64,
    /// nexrender façade: leases before a job whose executors keep going silent ends in error.
    #[arg(long, env = "EDGEFARM_NEXRENDER_MAX_ATTEMPTS", default_value_t = 3)]
    pub nexrender_max_attempts: u32,
}

/// Longest long poll (`?wait=`), seconds.
const MAX_WAIT_S: u64 = 30;
/// Most requests committed together.
const MAX_BATCH: usize = 256;

type Job = (Request<Bytes>, oneshot::Sender<Response<Bytes>>);

/// A store the core thread can wrap a batch of requests in.
trait Batching: Store {
    fn begin(&self) -> anyhow::Result<()>;
    fn commit(&self) -> anyhow::Result<()>;
    fn rollback(&self);
}

impl Batching for Memory {
    fn begin(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn commit(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn rollback(&self) {}
}

impl Batching for Sqlite {
    fn begin(&self) -> anyhow::Result<()> {
        Ok(Sqlite::begin(self)?)
    }
    fn commit(&self) -> anyhow::Result<()> {
        Ok(Sqlite::commit(self)?)
    }
    fn rollback(&self) {
        if let Err(e) = Sqlite::rollback(self) {
            tracing::error!(error = %e, "rollback failed");
        }
    }
}

struct OsIds;

impl Ids for OsIds {
    fn random(&self) -> u128 {
        let mut b = [0u8; 16];
        // getrandom only fails when the OS has no entropy source at all; fall back to the clock
        // mixed with a counter rather than panicking in a request.
        if getrandom::fill(&mut b).is_err() {
            return now_ms() as u128 ^ (std::process::id() as u128) << 64;
        }
        u128::from_le_bytes(b)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs requests from `rx` against `store` until the channel closes.
fn core_loop<S: Batching>(
    store: S,
    config: Config,
    mut rx: mpsc::Receiver<Job>,
    changed: Arc<Notify>,
) {
    let ids = OsIds;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = store.begin() {
            tracing::error!(error = %e, "cannot begin a batch");
        }
        let writes = batch.iter().any(|(r, _)| r.method() != Method::GET);
        let mut answers = Vec::with_capacity(batch.len());
        for (req, reply) in batch {
            let ctx = Ctx {
                store: &store,
                config: &config,
                now_ms: now_ms(),
                ids: &ids,
            };
            answers.push((
                crate::store::conformance::block_on(handle(req, &ctx)),
                reply,
            ));
        }
        let committed = store.commit();
        if let Err(e) = &committed {
            tracing::error!(error = %e, "commit failed; answering 500 to the batch");
            store.rollback();
        }
        for (resp, reply) in answers {
            let resp = match &committed {
                Ok(()) => resp,
                Err(_) => crate::core::Error::Store(crate::store::StoreError::Unavailable(
                    "commit failed".into(),
                ))
                .into_response(),
            };
            let _ = reply.send(resp);
        }
        if writes {
            changed.notify_waiters();
        }
    }
}

#[derive(Clone)]
struct Shell {
    tx: mpsc::Sender<Job>,
    changed: Arc<Notify>,
    body_limit: usize,
    latency: Arc<super::latency::Latency>,
}

impl Shell {
    async fn call(&self, req: Request<Bytes>) -> Response<Bytes> {
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

fn wait_seconds(parts: &http::request::Parts) -> u64 {
    let q = crate::core::http::query(parts.uri.query());
    q.get("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_WAIT_S)
}

fn is_event_stream(parts: &http::request::Parts) -> bool {
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    parts.method == Method::GET
        && accept.contains("text/event-stream")
        && parts.uri.path().starts_with("/v1/jobs/")
}

async fn serve_request(shell: Shell, peer: SocketAddr, req: AxumRequest) -> AxumResponse {
    let (mut parts, body) = req.into_parts();
    // The core cannot see the socket; it reads the peer here (a client's own value is replaced).
    crate::core::nexrender::set_peer(&mut parts.headers, Some(peer.ip()));
    let body = match axum::body::to_bytes(body, shell.body_limit + 1).await {
        Ok(b) => b,
        Err(_) => {
            let e = crate::core::Error::TooLarge(format!(
                "the request body is over {} bytes",
                shell.body_limit
            ));
            return e.into_response().map(Body::from);
        }
    };
    if is_event_stream(&parts) {
        return event_stream(shell, parts, body);
    }
    let wait = wait_seconds(&parts);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let changed = shell.changed.notified();
        let resp = shell.call(copy_request(&parts, &body)).await;
        let long_poll = parts.method == Method::POST && parts.uri.path().starts_with("/v1/queue/");
        if !(long_poll
            && resp.status() == StatusCode::NO_CONTENT
            && tokio::time::Instant::now() < deadline)
        {
            return resp.map(Body::from);
        }
        // Claimable work appears through writes; leases also lapse with time, hence the timer.
        let _ = tokio::time::timeout(Duration::from_millis(500), changed).await;
    }
}

/// Follows a job as server-sent events: the core's `job` event each time the job changes,
/// until it finishes or the client goes away.
fn event_stream(shell: Shell, parts: http::request::Parts, body: Bytes) -> AxumResponse {
    let stream = futures_util::stream::unfold(
        (shell, parts, body, None::<Bytes>, false),
        |(shell, parts, body, last, done)| async move {
            if done {
                return None;
            }
            let notify = shell.changed.clone();
            loop {
                let changed = notify.notified();
                let resp = shell.call(copy_request(&parts, &body)).await;
                if resp.status() != StatusCode::OK {
                    let chunk = Bytes::from(format!(
                        "event: error\ndata: {}\n\n",
                        String::from_utf8_lossy(resp.body())
                    ));
                    return Some((
                        Ok::<Bytes, std::convert::Infallible>(chunk),
                        (shell, parts, body, last, true),
                    ));
                }
                let event = resp.into_body();
                let finished = crate::core::api::jobs::event_is_final(&event);
                if last.as_ref() != Some(&event) {
                    return Some((
                        Ok(event.clone()),
                        (shell, parts, body, Some(event), finished),
                    ));
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
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

fn load_or_make_secret(args: &ServeArgs) -> anyhow::Result<(String, bool)> {
    if let Some(s) = &args.secret {
        anyhow::ensure!(
            s.len() >= 8,
            "the farm secret must be at least 8 characters"
        );
        return Ok((s.clone(), false));
    }
    let path = args.data.join("secret");
    if !args.memory {
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Ok((s.trim().to_string(), false));
        }
    }
    let secret = format!("efs_{:032x}", OsIds.random());
    if !args.memory {
        write_private(&path, &secret)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok((secret, true))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Runs the server until SIGINT/SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.memory {
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("cannot create data dir {}", args.data.display()))?;
    }
    let (secret, generated) = load_or_make_secret(&args)?;
    let mut config = Config::new(secret.clone());
    config.lease_ms = args.lease_ms.max(100);
    config.heartbeat_ms = args.heartbeat_ms.max(50);
    config.poll_ms = args.poll_ms.max(50);
    config.started_ms = now_ms(); // leases from before this start get a grace (core::scheduler::claim::lease_clock)
    config.nexrender = crate::core::nexrender::Settings {
        ordering: args.nexrender_ordering,
        timeout_ms: args.nexrender_timeout_ms.max(100),
        max_attempts: args.nexrender_max_attempts.max(1),
    };
    let body_limit = config.limits.body_bytes;
    let (tx, rx) = mpsc::channel::<Job>(4096);
    let changed = Arc::new(Notify::new());
    let store_desc;
    let core = {
        let changed = changed.clone();
        if args.memory {
            store_desc = "memory (nothing survives a restart)".to_string();
            std::thread::Builder::new()
                .name("edgefarm-core".into())
                .spawn(move || core_loop(Memory::new(), config, rx, changed))?
        } else {
            let path = args.data.join("edgefarm.db");
            store_desc = format!("sqlite at {}", path.display());
            let store =
                Sqlite::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            std::thread::Builder::new()
                .name("edgefarm-core".into())
                .spawn(move || core_loop(store, config, rx, changed))?
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let shell = Shell { tx, changed, body_limit, latency: Default::default() };
        let app = axum::Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: AxumRequest| {
            let shell = shell.clone();
            super::latency::timed(shell.latency.clone(), req, move |req| serve_request(shell, peer, req))
        });
        tracing::info!(%addr, store = %store_desc, "edgefarm serving");
        println!("edgefarm listening on http://{addr} (store: {store_desc})");
        if generated {
            println!("farm secret (new): {secret}\n  export EDGEFARM_SECRET={secret} EDGEFARM_URL=http://{addr}");
        }
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    drop(rt);
    let _ = core.join();
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
