//! The JSON bodies of the queue protocol, as docs/API.md defines them. Unknown fields are
//! ignored so that a newer server does not break an older node.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /v1/queue/{queue}`.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    #[serde(default = "default_interval")]
    pub interval: u64,
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    #[serde(default = "default_max_tasks")]
    pub max_tasks: u32,
}

fn default_interval() -> u64 {
    2_000
}
fn default_lease() -> u64 {
    60_000
}
fn default_heartbeat() -> u64 {
    15_000
}
fn default_max_tasks() -> u32 {
    8
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            interval: default_interval(),
            lease_ms: default_lease(),
            heartbeat_ms: default_heartbeat(),
            max_tasks: default_max_tasks(),
        }
    }
}

/// The frame range of a task (inclusive, every `step`-th frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frames {
    pub from: i64,
    pub to: i64,
    #[serde(default = "one")]
    pub step: i64,
}

fn one() -> i64 {
    1
}

impl Frames {
    /// How many frames the range holds (0 when it is malformed).
    pub fn count(&self) -> u32 {
        if self.step < 1 || self.to < self.from {
            return 0;
        }
        u32::try_from((self.to - self.from) / self.step + 1).unwrap_or(u32::MAX)
    }
}

/// Done or failed, as the ack says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Done,
    Failed,
}

/// One finished task, reported in a poll's `tasks` array until the server answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ack {
    #[serde(rename = "_id")]
    pub id: String,
    pub status: AckStatus,
    pub lease: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files the task made, already uploaded as blobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<crate::core::blobs::FileEntry>,
}

/// `POST /v1/queue/{queue}` body.
#[derive(Debug, Serialize)]
pub struct PollRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    pub max: u32,
    pub types: &'a [String],
    pub tags: &'a [String],
    pub tasks: &'a [Ack],
}

/// A task handed to this node.
#[derive(Debug, Clone, Deserialize)]
pub struct ClaimedTask {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub job: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub lease: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
    #[serde(default)]
    pub frames: Option<Frames>,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub task_timeout_s: Option<u64>,
    #[serde(default)]
    pub job_name: Option<String>,
    /// Set when the job carries its files (`node::carried`).
    #[serde(default)]
    pub inputs: Option<crate::core::blobs::inputs::Inputs>,
}

/// The `error` object of an API answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The server's answer to one ack.
#[derive(Debug, Clone, Deserialize)]
pub struct AckAnswer {
    #[serde(rename = "_id")]
    pub id: String,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<ApiError>,
}

/// `200` answer of a poll.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PollAnswer {
    #[serde(default)]
    pub tasks: Vec<ClaimedTask>,
    #[serde(default)]
    pub acks: Vec<AckAnswer>,
    #[serde(default)]
    pub node_state: Option<String>,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// Progress of a task: frames done of total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    pub done: u32,
    pub total: u32,
}

/// `POST /v1/tasks/{id}/heartbeat` body.
#[derive(Debug, Serialize)]
pub struct Heartbeat<'a> {
    pub lease: &'a str,
    pub progress: Progress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub log: &'a str,
}

/// Answer to a heartbeat (200, or 409 with `keep_running: false`).
#[derive(Debug, Clone, Deserialize)]
pub struct HeartbeatAnswer {
    #[serde(default = "yes")]
    pub keep_running: bool,
    #[serde(default)]
    pub node_state: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /v1/nodes` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Enrolment {
    pub node: NodeInfo,
    pub token: String,
}

/// The node object (only what the agent reads).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub types: Option<Vec<String>>,
}

/// One attempt of a task, as `GET /v1/tasks/{id}` shows it (only what the agent reads).
#[derive(Debug, Clone, Deserialize)]
pub struct AttemptInfo {
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// A task as `GET /v1/tasks/{id}` shows it (only what the agent reads).
#[derive(Debug, Clone, Deserialize)]
pub struct TaskInfo {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub history: Vec<AttemptInfo>,
}
