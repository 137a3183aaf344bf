//! `/v1/nodes`: enrolment, the node as the API shows it, the list.

use crate::core::model::JobType;
use serde::{Deserialize, Serialize};

/// `POST /v1/nodes` body (an empty body enrols a node with every default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrol {
    /// Display name (the id when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags it offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Job types it runs (blender and command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<JobType>>,
    /// Tasks it runs at once (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
}

/// `POST /v1/nodes` answer: the node and its token (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The new node.
    pub node: Node,
    /// Its bearer token.
    pub token: String,
}

/// A node's state as shown: `offline` when not heard from (`core::reach::is_online`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShownState {
    /// Online, takes tasks.
    Awake,
    /// Online, takes no new task.
    Draining,
    /// Not heard from, or left.
    Offline,
}

impl ShownState {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ShownState::Awake => "awake",
            ShownState::Draining => "draining",
            ShownState::Offline => "offline",
        }
    }
}

/// A node as the API shows it (no token hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tags it offers.
    pub tags: Vec<String>,
    /// Job types it runs.
    pub types: Vec<JobType>,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Shown state.
    pub state: ShownState,
    /// `state != offline`.
    pub online: bool,
    /// Whether it was drained (also while offline).
    pub draining: bool,
    /// Queues it polled, most recent last.
    pub queues: Vec<String>,
    /// Last poll or heartbeat.
    pub last_seen_ms: u64,
    /// When it said it was leaving, until it is seen again.
    pub left_ms: Option<u64>,
    /// Enrolment time.
    pub created_ms: u64,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// Every enrolled node.
    pub nodes: Vec<Node>,
}
