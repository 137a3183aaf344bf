//! `/v1/tasks/{id}`: the task as the API shows it, and the lease holder's heartbeat, ack and
//! release bodies.

use crate::core::blobs::FileEntry;
use crate::core::frames::FrameRange;
use crate::core::model::{Attempt, NodeState, Progress, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task as `GET /v1/tasks/{id}`, an ack, a release and a job's task list show it (the lease
/// token is never shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Task id (`{job}.{index}`).
    pub id: String,
    /// Job id.
    pub job: String,
    /// Position in the job.
    pub index: u32,
    /// Frames rendered, if the job has frames.
    pub frames: Option<FrameRange>,
    /// State.
    pub state: TaskState,
    /// Leases granted so far.
    pub attempts: u32,
    /// Failed or expired attempts.
    pub failures: u32,
    /// Nodes whose attempt failed.
    pub failed_nodes: Vec<String>,
    /// The current lease, when leased.
    pub lease: Option<TaskLease>,
    /// Progress of the current attempt.
    pub progress: Option<Progress>,
    /// Last activity line.
    pub activity: Option<String>,
    /// The winning result.
    pub result: Option<Value>,
    /// Last error.
    pub error: Option<String>,
    /// Latest attempts, oldest first (bounded).
    pub history: Vec<Attempt>,
    /// Last change.
    pub updated_ms: u64,
    /// Queued but held back until the frames it waits for are rendered (a task of a job
    /// waiting frame by frame, `after_frames`): no node gets it yet.
    #[serde(default)]
    pub held: bool,
}

/// A task's current lease, without its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLease {
    /// The node holding it.
    pub node: String,
    /// When it lapses unless extended.
    pub expires_ms: u64,
    /// Which attempt it is.
    pub attempt: u32,
}

/// `GET /v1/jobs/{id}/tasks`: in index order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    /// This page.
    pub tasks: Vec<Task>,
    /// The next page's cursor (`null` on the last page).
    pub next_cursor: Option<String>,
}

/// `POST /v1/tasks/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Lease token.
    pub lease: String,
    /// Progress of the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The latest activity line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// New log text since the last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// The 200 answer to a heartbeat (a lease no longer held is a 409 `stale_lease` error with
/// `keep_running: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// Always `true` on a 200.
    pub keep_running: bool,
    /// The lease's new expiry.
    pub lease_expires_ms: Option<u64>,
    /// The node's state as the server sees it (a drained node finishes its tasks).
    pub node_state: NodeState,
}

/// How a task ended, as an ack says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Success.
    Done,
    /// Failure.
    Failed,
}

/// An ack: in a queue poll's `tasks`, or on its own (`POST /v1/tasks/{id}/ack`, where the id
/// comes from the path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// Task id (katar's `_id`; `id` is accepted too).
    #[serde(rename = "_id", alias = "id")]
    pub id: String,
    /// `done` or `failed`.
    pub status: AckStatus,
    /// Lease token.
    pub lease: String,
    /// Result of a done task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Error of a failed task (a string; anything else is shown as its JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Files a done task made, each already uploaded as a blob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<FileEntry>,
}

/// `POST /v1/tasks/{id}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Lease token.
    pub lease: String,
}
