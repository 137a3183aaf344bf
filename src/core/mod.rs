//! The pure core: `handle(request, ctx) -> response` over a [`Store`].
//!
//! It never reads a clock, sleeps, spawns or touches files: time is `ctx.now_ms` and randomness
//! comes from `ctx.ids`, so it runs unchanged on wasm32 and tests move time by hand.
//!
//! Where each rule lives (also in docs/CORE.md):
//!
//! | rule | file |
//! | --- | --- |
//! | what can happen to a task: every (state, event) pair | `scheduler/transition/mod.rs` |
//! | what a claim may take (task, job, partition rules; pause/cancel racing a claim per store) | `scheduler/claimable.rs` |
//! | the claim itself (index walk, one CAS per segment, KV read-back) | `scheduler/claim.rs` |
//! | the lease guard, heartbeat, release, late holder of a lapsed lease | `scheduler/lease.rs` |
//! | acks: done / failed, first success wins | `scheduler/ack.rs` |
//! | lease expiry, the grace after a restart | `scheduler/expiry.rs` |
//! | removed nodes' leases | `scheduler/revoked.rs` |
//! | the claim index (partitions, priority buckets, pages) | `scheduler/index.rs` |
//! | a job's life: create + index, cancel, pause/resume, requeue, priority/tags, delete, fail-fast | `lifecycle/` |
//! | a job waiting frame by frame: which held task an ack releases | `lifecycle/per_frame.rs` (which task renders which frame: `task_map.rs`) |
//! | a job's state and counts, rolled up from its tasks | `rollup.rs` |
//! | the compare-and-swap loop and what a client gets when its retries run out | `cas.rs` |
//! | which nodes can reach a job, offline nodes, no node left for a task | `reach.rs` |
//! | the job list (paged, newest first) | `job_list.rs` |
//! | nexrender's `PUT` asks as task events | `nexrender/lease.rs` |
//! | who may do what: the permission table of every route and role | `access.rs` |
//! | failed authentications per client address (429) | `auth_limit.rs` |
//! | webhooks: the event of a job's end, its outbox, signing, retries, allowed receivers | `webhooks/` |
//! | request parsing and answer shapes only | `api/`, `nexrender/routes.rs` |
#![deny(missing_docs)]

pub mod access;
pub mod api;
pub mod auth;
pub mod auth_limit;
pub mod blobs;
pub mod cas;
pub mod counters;
pub mod dashboard;
pub mod error;
pub mod frames;
pub mod http;
pub mod job_list;
pub mod job_path;
pub mod lifecycle;
pub mod model;
pub mod nexrender;
pub mod reach;
pub mod records;
pub mod rollup;
pub mod router;
pub mod scheduler;
pub mod task_map;
pub mod validate;
pub mod wake;
pub mod webhooks;

pub use error::{Error, Result};
pub use router::handle;
pub use wake::{JobEvent, LongPoll, Notes, Wake};

use crate::store::Store;
use std::cell::Cell;

/// Limits on what a request may ask for; each breach is a 413 or 400 naming the limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub body_bytes: usize,
    /// Most tasks one job may have.
    pub tasks_per_job: u64,
    /// Most frames one job may have.
    pub frames_per_job: u64,
    /// Longest name, queue, tag or id.
    pub string_len: usize,
    /// Most tags on a job or node.
    pub tags: usize,
    /// Largest `params` object, bytes of JSON.
    pub params_bytes: usize,
    /// Largest log chunk in one heartbeat, bytes.
    pub log_chunk_bytes: usize,
    /// Most log chunks kept per attempt (with `log_chunk_bytes`, bounds the log of one attempt);
    /// later chunks are dropped, the heartbeat still extends the lease.
    pub log_chunks_per_attempt: u32,
    /// Largest result of one task, bytes of JSON.
    pub result_bytes: usize,
    /// Most acks in one queue request.
    pub acks_per_request: usize,
    /// Most tasks claimed by one queue request.
    pub claim_max: u32,
    /// Largest body of `POST /v1/blobs/missing`, bytes: 10,000 hashes must fit. (A submit keeps
    /// `body_bytes`: its manifest must fit in it.)
    pub manifest_body_bytes: usize,
    /// Most files in one job's input manifest.
    pub inputs_per_job: usize,
    /// Most bytes in one job's input manifest.
    pub input_bytes_per_job: u64,
    /// Largest blob, bytes.
    pub blob_bytes: u64,
    /// Most hashes in one "which do you lack?" request.
    pub blobs_per_check: usize,
    /// Most output files one ack may list.
    pub outputs_per_task: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 1 << 20,
            tasks_per_job: 100_000,
            frames_per_job: 1_000_000,
            string_len: 256,
            tags: 16,
            params_bytes: 64 << 10,
            log_chunk_bytes: 64 << 10,
            // 1024 chunks of at most 64 KiB: at most 64 MiB of log per attempt.
            log_chunks_per_attempt: 1024,
            result_bytes: 64 << 10,
            acks_per_request: 64,
            claim_max: 16,
            manifest_body_bytes: 4 << 20,
            inputs_per_job: 10_000,
            input_bytes_per_job: 1 << 40,
            blob_bytes: 64 << 30,
            blobs_per_check: 10_000,
            outputs_per_task: 10_000,
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The farm secret (admin credential).
    pub secret: String,
    /// Lease length handed out with each claim.
    pub lease_ms: u64,
    /// Heartbeat interval nodes should keep.
    pub heartbeat_ms: u64,
    /// Poll interval nodes should keep.
    pub poll_ms: u64,
    /// Limits.
    pub limits: Limits,
    /// The nexrender façade (`/api/v1`): pickup ordering, executor timeout, attempts.
    pub nexrender: nexrender::Settings,
    /// When this server process started (ms since the epoch; 0 when unknown, e.g. on runtimes
    /// without a long-lived process). Time before it may have been an outage: no lease lapses
    /// within one lease length of it, and a lease that ran out before it is not counted against
    /// its task (see `scheduler::claim::lease_clock`).
    pub started_ms: u64,
    /// Where blob bytes live when not in the shell's own backend: an S3-compatible bucket the
    /// core signs short-lived URLs for (`core::blobs::s3`). `None`: the shell's backend, if any.
    pub bucket: Option<std::sync::Arc<blobs::s3::Bucket>>,
    /// Failed authentications allowed per client address and window (`auth_limit`).
    pub auth_limit: auth_limit::AuthLimit,
    /// Webhooks: the farm's own receivers, the private-address rule, retries (`webhooks`).
    pub webhooks: webhooks::Settings,
    /// Blobs over this many bytes are uploaded to the farm in parts of this size (a shell whose
    /// requests are bounded: the Cloudflare Worker, with R2 multipart). `None`: one request.
    pub blob_part_bytes: Option<u64>,
}

impl Config {
    /// Defaults with the given secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Config {
            secret: secret.into(),
            lease_ms: 60_000,
            heartbeat_ms: 15_000,
            poll_ms: 2_000,
            limits: Limits::default(),
            nexrender: nexrender::Settings::default(),
            started_ms: 0,
            bucket: None,
            auth_limit: auth_limit::AuthLimit::default(),
            webhooks: webhooks::Settings::default(),
            blob_part_bytes: None,
        }
    }
}

/// A source of randomness for ids and tokens.
pub trait Ids {
    /// 128 fresh random bits.
    fn random(&self) -> u128;
}

/// Deterministic ids for tests: a counter.
#[derive(Debug, Default)]
pub struct SeqIds(Cell<u128>);

impl Ids for SeqIds {
    fn random(&self) -> u128 {
        self.0.set(self.0.get() + 1);
        // Spread the counter over the bits so tokens and ids look distinct.
        self.0
            .get()
            .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    }
}

/// Everything a request may use besides its own bytes.
pub struct Ctx<'a, S: Store> {
    /// The store.
    pub store: &'a S,
    /// Settings.
    pub config: &'a Config,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
    /// Randomness.
    pub ids: &'a dyn Ids,
    /// What the request leaves for its shell to do later (`handle()` puts it on the answer).
    pub notes: Notes,
}

impl<S: Store> Ctx<'_, S> {
    /// A uuid v7 from `now_ms` and fresh random bits (time-ordered ids).
    pub fn uuid_v7(&self) -> String {
        let r = self.ids.random();
        let ms = self.now_ms & 0xFFFF_FFFF_FFFF;
        let rand_a = (r >> 64) as u16 & 0x0FFF;
        let rand_b = (r as u64) & 0x3FFF_FFFF_FFFF_FFFF;
        let hi = (ms << 16) | 0x7000 | rand_a as u64;
        let lo = 0x8000_0000_0000_0000 | rand_b;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xFFFF,
            hi & 0xFFFF,
            lo >> 48,
            lo & 0xFFFF_FFFF_FFFF
        )
    }

    /// A 128-bit random token, hex.
    pub fn token(&self) -> String {
        format!("{:032x}", self.ids.random())
    }
}
