//! Webhooks: telling receivers when a job completes, fails or is canceled.
//!
//! The core decides and records; the shells only move bytes:
//! 1. **Emit** (`outbox::emit`): wherever a job may have ended (`lifecycle::ended`, after the
//!    write that ended it, in the same request), the job's end is recorded once per
//!    (job, generation, round, event) with create-if-absent, and put in the outbox. A later
//!    ack, re-ack or read of the ended job repeats the emit, which finds the record and only
//!    makes sure it is in the outbox: nothing is lost when a request is cut short in between.
//! 2. **Due** (`POST /v1/webhooks/due`): a shell asks what to send; the core signs each request
//!    (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`, HMAC-SHA256
//!    with the receiver's `whsec_` secret) at the time it is given, and leases it to that shell
//!    for a minute.
//! 3. **Report** (`POST /v1/webhooks/report`): the shell says what each receiver answered. 2xx
//!    is delivered; 410 Gone gives up; anything else (or no answer) is retried after
//!    [`outbox::backoff_ms`] — 5 s, 20 s, 80 s, ... up to an hour apart, [`Settings::attempts`]
//!    attempts in all (about 6½ hours by default).
//!
//! Every answer that leaves something due tells its shell when (`Wake::webhook_due_ms`), so a
//! shell sleeps until then instead of polling: an idle farm does nothing. Delivery is at least
//! once (a shell that dies after sending and before reporting sends again after its lease);
//! receivers deduplicate by `webhook-id`, which is the same on every attempt of one event.
//!
//! Who delivers: the native server from a background task (`runtime::native::webhooks`); the
//! others through the same two calls (docs/WEBHOOKS.md says what each runtime guarantees).

pub mod outbox;
pub mod sign;
pub mod target;

pub use outbox::{due, emit, list, report};

use crate::wire::webhooks::Webhook;

/// The farm's webhook settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Receivers told about every job (besides each job's own).
    pub farm: Vec<Webhook>,
    /// Whether receivers on loopback and private addresses are allowed (a LAN receiver).
    pub allow_private: bool,
    /// The delay before the first retry; each next one is four times longer, up to 720 times
    /// this (an hour for the default 5 s).
    pub first_retry_ms: u64,
    /// Attempts per event and receiver before it is given up.
    pub attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            farm: Vec::new(),
            allow_private: false,
            first_retry_ms: 5_000,
            attempts: 12,
        }
    }
}
