//! One farm, two ways to reach it: in-process through `handle()` over the memory store (time
//! moved by hand), or over real HTTP (a spawned `edgefarm serve`, or any server named by
//! `EDGEFARM_URL` + `EDGEFARM_SECRET`, with time passing for real).
//!
//! Two lease lengths, so that no case depends on how fast the machine is: most cases run on a
//! farm whose leases are long ([`LEASE_MS`]), so a lease the case holds never lapses however slow
//! the machine is; the few cases that need a lease to lapse (`cases!(...; lapse: ...)`) run on a
//! farm of its own with short leases ([`LAPSE_LEASE_MS`]; over `EDGEFARM_URL`, the server
//! `EDGEFARM_LAPSE_URL` names), and check anything that holds only while a lease is live only
//! when the time they measured shows it was live (`Farm::mark`, `Farm::lease_live_since`).

use bytes::Bytes;
use edgefarm::core::{Config, Ctx, SeqIds};
use edgefarm::store::interleave::Yielding;
use edgefarm::store::Memory;
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::BTreeMap;

#[path = "../support/serve.rs"]
pub mod serve;
pub use serve::Serve;
use std::time::Duration;

/// Lease length of the farms most cases run on: long enough that no lease lapses during a case
/// even on a machine many times slower than usual (the cases never wait for it).
pub const LEASE_MS: u64 = 120_000;
/// Lease length of the farms the lapse cases run on: short, since those cases wait for it.
pub const LAPSE_LEASE_MS: u64 = 1_500;
pub const SECRET: &str = "conformance-secret";

/// An answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }
    /// The error code of a JSON error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

pub enum Farm {
    InProcess {
        /// Yields before every store call, so requests joined on the test's thread interleave
        /// between a read and its CAS as they do on a real server (over the plain memory store
        /// each request would run to its end before the next started).
        store: Yielding<Memory>,
        config: Config,
        now: Cell<u64>,
        ids: SeqIds,
        queue: String,
    },
    Http {
        lease_ms: u64,
        client: reqwest::Client,
        base: String,
        secret: String,
        /// The server this farm started (none with `EDGEFARM_URL`); killed on drop.
        server: Option<Serve>,
        queue: String,
    },
}

/// A queue name of its own for each farm, so cases sharing one server (`EDGEFARM_URL`) never
/// claim each other's tasks.
fn own_queue() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "q{}-{}-{}",
        std::process::id(),
        t % 1_000_000_007,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A point in the farm's time (virtual in-process, real over HTTP), from [`Farm::mark`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    virtual_ms: u64,
    real: std::time::Instant,
}

/// `edgefarm serve` on SQLite with leases (and nexrender timeouts) of `lease_ms`, and the
/// heartbeat and poll intervals the suite expects.
pub async fn start_server(lease_ms: u64) -> Serve {
    Serve::build()
        .secret(SECRET)
        .lease_ms(lease_ms)
        .heartbeat_ms(500)
        .poll_ms(200)
        .flag("--nexrender-timeout-ms", &lease_ms.to_string())
        .env("EDGEFARM_LOG", "warn")
        .start()
        .await
}

impl Farm {
    pub fn in_process() -> Farm {
        Farm::in_process_with_lease(LEASE_MS)
    }

    /// An in-process farm with the lapse cases' short leases.
    pub fn in_process_lapsing() -> Farm {
        Farm::in_process_with_lease(LAPSE_LEASE_MS)
    }

    fn in_process_with_lease(lease_ms: u64) -> Farm {
        let mut config = Config::new(SECRET);
        config.lease_ms = lease_ms;
        config.heartbeat_ms = 500;
        config.poll_ms = 200;
        config.nexrender.timeout_ms = lease_ms;
        Farm::InProcess {
            store: Yielding::new(Memory::new()),
            config,
            now: Cell::new(1_800_000_000_000),
            ids: SeqIds::default(),
            queue: own_queue(),
        }
    }

    /// A spawned server, or the one `EDGEFARM_URL` names (its leases must be [`LEASE_MS`]).
    pub async fn http() -> Farm {
        Farm::http_with_lease("EDGEFARM_URL", LEASE_MS).await
    }

    /// A spawned server with the lapse cases' short leases, or the one `EDGEFARM_LAPSE_URL`
    /// names when `EDGEFARM_URL` is set (its leases must be [`LAPSE_LEASE_MS`]).
    pub async fn http_lapsing() -> Farm {
        Farm::http_with_lease("EDGEFARM_LAPSE_URL", LAPSE_LEASE_MS).await
    }

    async fn http_with_lease(url_var: &str, lease_ms: u64) -> Farm {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client");
        if std::env::var("EDGEFARM_URL").is_ok() {
            let base = std::env::var(url_var).unwrap_or_else(|_| {
                panic!(
                    "with EDGEFARM_URL set, {url_var} must name a server whose leases (and \
                     nexrender timeout) are {lease_ms} ms"
                )
            });
            let secret = std::env::var("EDGEFARM_SECRET").unwrap_or_else(|_| SECRET.to_string());
            return Farm::Http {
                lease_ms,
                client,
                base: base.trim_end_matches('/').to_string(),
                secret,
                server: None,
                queue: own_queue(),
            };
        }
        let server = start_server(lease_ms).await;
        Farm::Http {
            lease_ms,
            client,
            base: server.base.clone(),
            secret: SECRET.to_string(),
            server: Some(server),
            queue: own_queue(),
        }
    }

    pub fn secret(&self) -> String {
        match self {
            Farm::InProcess { config, .. } => config.secret.clone(),
            Farm::Http { secret, .. } => secret.clone(),
        }
    }

    /// This farm's queue.
    pub fn queue(&self) -> &str {
        match self {
            Farm::InProcess { queue, .. } | Farm::Http { queue, .. } => queue,
        }
    }

    /// Whether this is `edgefarm serve` (its store is SQLite or memory), as opposed to another
    /// runtime such as `wrangler dev`.
    pub async fn is_native_server(&self) -> bool {
        if !self.is_http() {
            return false;
        }
        let health = self
            .raw("GET", "/v1/health", None, vec![], &[])
            .await
            .json();
        matches!(health["store"]["kind"].as_str(), Some("sqlite" | "memory"))
    }

    /// Whether other cases use the same server at the same time (`EDGEFARM_URL`).
    pub fn is_shared(&self) -> bool {
        matches!(self, Farm::Http { server: None, .. })
    }

    pub fn is_http(&self) -> bool {
        matches!(self, Farm::Http { .. })
    }

    /// This farm's lease length (and nexrender timeout), ms.
    pub fn lease_ms(&self) -> u64 {
        match self {
            Farm::InProcess { config, .. } => config.lease_ms,
            Farm::Http { lease_ms, .. } => *lease_ms,
        }
    }

    /// Now, to measure how much time passed since (see [`Farm::since`]).
    pub fn mark(&self) -> Mark {
        let virtual_ms = match self {
            Farm::InProcess { now, .. } => now.get(),
            Farm::Http { .. } => 0,
        };
        Mark {
            virtual_ms,
            real: std::time::Instant::now(),
        }
    }

    /// Time passed since `mark`: the virtual clock in-process, the real one over HTTP.
    pub fn since(&self, mark: Mark) -> u64 {
        match self {
            Farm::InProcess { now, .. } => now.get().saturating_sub(mark.virtual_ms),
            Farm::Http { .. } => mark.real.elapsed().as_millis() as u64,
        }
    }

    /// Whether a lease granted by a request sent after `mark` was certainly still live when
    /// the server handled every request answered until now. The server grants the lease no
    /// earlier than `mark` and handles a request no later than its answer arrives, so this
    /// holds while less than a lease length has passed since `mark`; after that, what a live
    /// lease promises (nobody else can claim the task) no longer applies, and a case checks it
    /// only when this says it does.
    pub fn lease_live_since(&self, mark: Mark) -> bool {
        self.since(mark) < self.lease_ms()
    }

    /// Lets `ms` pass: by hand in-process, for real over HTTP.
    pub async fn advance(&self, ms: u64) {
        match self {
            Farm::InProcess { now, .. } => now.set(now.get() + ms),
            Farm::Http { .. } => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }

    /// Every key and value, in-process only (over HTTP the suite compares what the API shows).
    pub fn snapshot(&self) -> Option<BTreeMap<String, Vec<u8>>> {
        match self {
            Farm::InProcess { store, .. } => Some(store.inner().snapshot()),
            Farm::Http { .. } => None,
        }
    }

    /// Sends a request with raw bytes and extra headers.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        match self {
            Farm::InProcess {
                store,
                config,
                now,
                ids,
                ..
            } => {
                let mut req = http::Request::builder().method(method).uri(path);
                if let Some(t) = token {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let req = req.body(Bytes::from(body)).expect("a valid request");
                let ctx = Ctx {
                    store,
                    config,
                    now_ms: now.get(),
                    ids,
                    notes: Default::default(),
                };
                let resp = edgefarm::core::handle(req, &ctx).await;
                let (parts, body) = resp.into_parts();
                Resp {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                }
            }
            Farm::Http { client, base, .. } => {
                let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
                let mut req = client.request(method, format!("{base}{path}")).body(body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let resp = req.send().await.expect("the server should answer");
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap_or_default();
                Resp {
                    status,
                    headers,
                    body,
                }
            }
        }
    }

    /// A JSON request with the farm secret.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        self.raw(method, path, Some(&self.secret()), bytes, &[])
            .await
    }

    /// A JSON request with another credential.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        self.raw(method, path, Some(token), bytes, &[]).await
    }

    /// Whether the farm's store has an atomic compare-and-swap, from `GET /v1/health`.
    pub async fn atomic_cas(&self) -> bool {
        let health = self
            .raw("GET", "/v1/health", None, vec![], &[])
            .await
            .json();
        health["store"]["atomic_cas"].as_bool().unwrap_or(false)
    }

    /// `false` (and a named SKIP line, which the cloudflare-conformance script counts) when the
    /// store has no atomic compare-and-swap: a case that needs it returns early, and the skip is
    /// never reported as a pass by the script.
    pub async fn needs_atomic_cas(&self, case: &str) -> bool {
        if self.atomic_cas().await {
            return true;
        }
        eprintln!("SKIP (no atomic CAS): {case}");
        false
    }

    // --- data factory: defaults for everything, tests state what matters ---

    /// Submits a `command` job with `frames` and `chunk`, plus overrides; returns the job.
    pub async fn submit(&self, overrides: Value) -> Value {
        let mut spec = json!({"type": "command", "frames": "1-4", "chunk_size": 1, "queue": self.queue(),
                              "params": {"program": "touchframe", "args": ["{frame}"]}});
        if let (Some(s), Some(o)) = (spec.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                s.insert(k.clone(), v.clone());
            }
        }
        let r = self.call("POST", "/v1/jobs", Some(spec)).await;
        assert!(
            r.status == 202 || r.status == 200,
            "submit should be accepted, got {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Polls the default queue as `node`, acking `acks`, claiming up to `max`; returns the answer.
    pub async fn poll(&self, node: &str, max: u32, acks: Value) -> Resp {
        let path = format!("/v1/queue/{}", self.queue());
        self.call(
            "POST",
            &path,
            Some(json!({"node": node, "max": max, "tasks": acks})),
        )
        .await
    }

    /// Claims up to `max` tasks as `node`; returns them (empty on 204).
    pub async fn claim(&self, node: &str, max: u32) -> Vec<Value> {
        let r = self.poll(node, max, json!([])).await;
        match r.status {
            204 => vec![],
            200 => r.json()["tasks"].as_array().cloned().unwrap_or_default(),
            other => panic!(
                "claim answered {other}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }

    pub async fn job(&self, id: &str) -> Value {
        self.call("GET", &format!("/v1/jobs/{id}"), None)
            .await
            .json()
    }

    pub async fn tasks(&self, id: &str) -> Vec<Value> {
        self.call("GET", &format!("/v1/jobs/{id}/tasks?limit=1000"), None)
            .await
            .json()["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Acks a claimed task done through the ack route.
    pub async fn done(&self, task: &Value) -> Resp {
        let id = task["_id"].as_str().unwrap_or("");
        self.call(
            "POST",
            &format!("/v1/tasks/{id}/ack"),
            Some(json!({"lease": task["lease"], "status": "done", "result": {"exit_code": 0}})),
        )
        .await
    }

    /// Acks a claimed task failed.
    pub async fn fail(&self, task: &Value, error: &str) -> Resp {
        let id = task["_id"].as_str().unwrap_or("");
        self.call(
            "POST",
            &format!("/v1/tasks/{id}/ack"),
            Some(json!({"lease": task["lease"], "status": "failed", "error": error})),
        )
        .await
    }
}

/// Declares each case for every target: `cases!(submit_returns_202, ...)` makes
/// `in_process::submit_returns_202` and `http::submit_returns_202`. Cases that wait for a lease
/// to lapse are listed after `; lapse:` and get a farm with short leases ([`LAPSE_LEASE_MS`]).
#[macro_export]
macro_rules! cases {
    ($($case:ident),* $(,)? $(; lapse: $($lapse:ident),* $(,)?)?) => {
        mod in_process {
            $( #[tokio::test(flavor = "current_thread")] async fn $case() { let farm = $crate::harness::Farm::in_process(); super::$case(&farm).await; } )*
            $($( #[tokio::test(flavor = "current_thread")] async fn $lapse() { let farm = $crate::harness::Farm::in_process_lapsing(); super::$lapse(&farm).await; } )*)?
        }
        mod http {
            $( #[tokio::test(flavor = "current_thread")] async fn $case() { let farm = $crate::harness::Farm::http().await; super::$case(&farm).await; } )*
            $($( #[tokio::test(flavor = "current_thread")] async fn $lapse() { let farm = $crate::harness::Farm::http_lapsing().await; super::$lapse(&farm).await; } )*)?
        }
    };
}
