//! Webhooks: where a job's end is told (`webhooks` in a job spec, or the farm's own), the event
//! a receiver gets, the deliveries an operator reads (`GET /v1/webhooks/deliveries`), and the
//! two calls a shell makes to deliver (`POST /v1/webhooks/due`, `POST /v1/webhooks/report`).

use serde::{Deserialize, Serialize};

/// One receiver of a job's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http` or `https` URL the events are POSTed to. Job views show only its origin (a
    /// webhook URL often is a credential, e.g. a chat service's).
    pub url: String,
    /// The signing secret, Standard Webhooks style: `whsec_` and the base64 of 24 to 64 bytes.
    /// Stored, never shown back (job views leave it out).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// The JSON body POSTed to a receiver. Headers: `webhook-id` (the same on every retry of one
/// event), `webhook-timestamp` (Unix seconds of this attempt), `webhook-signature`
/// (`v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed by the secret's bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `job.completed`, `job.failed` or `job.canceled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event happened, RFC 3339 (UTC).
    pub timestamp: String,
    /// The job as it ended.
    pub data: EventJob,
}

/// What an event says about its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventJob {
    /// Job id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Program kind (`blender`, `command`, `ffmpeg`, `nexrender`).
    #[serde(rename = "type")]
    pub kind: crate::core::model::JobType,
    /// Queue.
    pub queue: String,
    /// `completed`, `failed` or `canceled`.
    pub state: crate::wire::jobs::JobState,
    /// Tasks by state.
    pub counts: crate::wire::jobs::Counts,
    /// Frames in the job.
    pub frames_total: u64,
    /// Frames completed.
    pub frames_done: u64,
    /// Submission time, ms since the epoch.
    pub created_ms: u64,
    /// When it ended, ms since the epoch.
    pub finished_ms: Option<u64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The personal token that submitted it (null: the farm secret).
    pub submitted_by: Option<crate::wire::tokens::SubmittedBy>,
    /// How many times the job was requeued before this end (0 for its first end).
    pub round: u32,
}

/// Where one delivery stands with one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; will be tried (again) at `next_attempt_ms`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: out of attempts, or the receiver answered 410 Gone.
    Failed,
}

/// One event for one receiver, as `GET /v1/webhooks/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event's `webhook-id`.
    pub id: String,
    /// The event type.
    pub event: String,
    /// The job.
    pub job: String,
    /// The receiver's URL.
    pub url: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the event happened, ms since the epoch.
    pub created_ms: u64,
    /// The last attempt, ms since the epoch.
    pub last_attempt_ms: Option<u64>,
    /// The receiver's last HTTP status, when it answered.
    pub last_status: Option<u16>,
    /// What went wrong last (connection, timeout, status).
    pub last_error: Option<String>,
    /// When it is tried next (pending only).
    pub next_attempt_ms: Option<u64>,
    /// When it was delivered.
    pub delivered_ms: Option<u64>,
}

/// `GET /v1/webhooks/deliveries`: pending deliveries, then the latest finished ones, newest
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryList {
    /// The deliveries.
    pub deliveries: Vec<Delivery>,
}

/// One HTTP request a shell should send now, signed by the core (`POST /v1/webhooks/due`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Which event (give it back in the report).
    pub delivery: String,
    /// Which receiver of the event (give it back in the report).
    pub target: u32,
    /// Where to POST.
    pub url: String,
    /// Headers to send, as `[name, value]` pairs (content type and the three `webhook-*`).
    pub headers: Vec<[String; 2]>,
    /// The body, byte for byte (it is what the signature covers).
    pub body: String,
}

/// The answer of `POST /v1/webhooks/due`: what to send now (each is leased to the caller for a
/// minute, so two shells do not send it at once), and when to ask again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Due {
    /// Requests to send now.
    pub requests: Vec<Outgoing>,
    /// When the next pending delivery is due, ms since the epoch (null: none pending).
    pub next_due_ms: Option<u64>,
}

/// How one sent request went (`POST /v1/webhooks/report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// `delivery` of the [`Outgoing`].
    pub delivery: String,
    /// `target` of the [`Outgoing`].
    pub target: u32,
    /// The receiver's HTTP status, when it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// What went wrong when it did not answer (refused, timed out, address not allowed).
    #[serde(default)]
    pub error: Option<String>,
}

/// The body of `POST /v1/webhooks/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reports {
    /// One per request sent.
    pub reports: Vec<Report>,
}

/// The answer of `POST /v1/webhooks/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    /// When the next pending delivery is due, ms since the epoch (null: none pending).
    pub next_due_ms: Option<u64>,
}
