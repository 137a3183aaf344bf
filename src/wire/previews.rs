//! `POST /v1/tasks/{id}/preview` (the images themselves are not JSON).

use serde::{Deserialize, Serialize};

/// A preview stored as the latest of its job and of the farm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewStored {
    /// Job id.
    pub job: String,
    /// Task id.
    pub task: String,
    /// Node that sent it.
    pub node: String,
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
    /// Image size.
    pub bytes: u64,
    /// When it was stored.
    pub received_ms: u64,
}
