//! `/v1/queue/{queue}`: the poll-and-ack protocol of render nodes.

use super::errors::ErrorDetail;
use super::tasks::Ack;
use crate::core::blobs::inputs::Inputs;
use crate::core::frames::FrameRange;
use crate::core::model::{JobType, NodeState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /v1/queue/{queue}`: what the server wants nodes to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// The queue.
    pub queue: String,
    /// Poll interval, ms.
    pub interval: u64,
    /// Lease length, ms.
    pub lease_ms: u64,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Most tasks one poll may claim.
    pub max_tasks: u32,
}

/// `POST /v1/queue/{queue}` body: acks first, then claim up to `max` tasks (an empty body
/// claims one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    /// The node (farm secret only; a node token polls for its own node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Most tasks to claim (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Job types it runs (a node token: remembered on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<JobType>>,
    /// Tags it offers (a node token: remembered on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Tasks it runs at once (a node token: remembered on the node, so `nodes` shows what a
    /// restarted node was given, not what it enrolled with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Acks of finished tasks.
    #[serde(default)]
    pub tasks: Vec<Ack>,
}

/// A task handed to a node by a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedTask {
    /// Task id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Job id.
    pub job: String,
    /// Job name.
    pub job_name: String,
    /// Program kind.
    #[serde(rename = "type")]
    pub kind: JobType,
    /// Queue.
    pub queue: String,
    /// Lease token.
    pub lease: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When the lease lapses unless extended.
    pub lease_expires_ms: u64,
    /// Lease length, ms.
    pub lease_ms: u64,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Frames to render, if the job has frames.
    pub frames: Option<FrameRange>,
    /// The job's parameters.
    pub params: Value,
    /// Seconds the task may run.
    pub task_timeout_s: u64,
    /// The job's input manifest, when the job carries its files (absent otherwise: such
    /// answers are exactly as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
}

/// The server's answer to one ack of a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckAnswer {
    /// Task id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Applied.
    pub ok: bool,
    /// Why not (absent when applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The 200 answer of a poll (a poll with no ack that claimed nothing is a 204).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollAnswer {
    /// Claimed tasks.
    pub tasks: Vec<ClaimedTask>,
    /// One answer per ack, in order.
    pub acks: Vec<AckAnswer>,
    /// The node's state as the server sees it.
    pub node_state: NodeState,
    /// Poll interval, ms.
    pub interval: u64,
}
