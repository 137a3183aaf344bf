//! `/v1/jobs`: the submit body, the job as every answer shows it, the list, the steering bodies.

use crate::core::blobs::FileEntry;
use crate::core::model::{DependencyFailure, JobSpec, JobType, OnFailure};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job as a client sends it (`POST /v1/jobs`); every field but `type` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSubmit {
    /// Job id (a re-submit of the same id and spec is the same job); made up when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name (the id when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Program kind.
    #[serde(rename = "type")]
    pub kind: JobType,
    /// Queue (`default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Higher first (50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// A node must have every tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Type-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Frame spec (`1-250`, `1,5,10-20`, `1-100x5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<String>,
    /// Frames per task (10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    /// Failed attempts before a task fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Seconds a task may run before the node kills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_timeout_s: Option<u64>,
    /// Failure policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// The input manifest: files already uploaded as blobs (`core::blobs::inputs` checks and
    /// stores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<FileEntry>>,
    /// Jobs that must complete first; the job is `waiting` until they have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_jobs: Option<Vec<String>>,
    /// When one of `after_jobs` fails or is canceled: `fail` (default) or `cancel` this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failure: Option<DependencyFailure>,
    /// Receivers told when the job completes, fails or is canceled (`url` and a `whsec_`
    /// `secret` each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<crate::wire::webhooks::Webhook>>,
    /// Wait for `after_jobs` frame by frame (false): each task is handed out as soon as the
    /// tasks of those jobs that render its frames completed. Needs `after_jobs` and `frames`,
    /// and every job named must have frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_frames: Option<bool>,
    /// Later stages (a comp, a preview video): each becomes a job `{id}-{name}` that waits for
    /// the stage before it (the first one for this job), as a whole or frame by frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageSubmit>>,
}

/// One later stage of a submitted job (`JobSubmit::stages`): a job of its own, `{id}-{name}`,
/// on the same queue and priority, waiting for the stage before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSubmit {
    /// Stage name (`comp`, `video`); the stage's job id is `{id}-{name}`.
    pub name: String,
    /// Program kind.
    #[serde(rename = "type")]
    pub kind: JobType,
    /// Type-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Frame spec (the job's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<String>,
    /// Frames per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    /// A node must have every tag (the job's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Failed attempts before a task fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Seconds a task may run before the node kills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_timeout_s: Option<u64>,
    /// Failure policy within the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Wait for the stage before frame by frame (false: for the whole of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_frame: Option<bool>,
    /// When the stage before fails or is canceled: `fail`, `cancel` or `continue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failure: Option<DependencyFailure>,
    /// Receivers told when this stage ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<crate::wire::webhooks::Webhook>>,
}

/// Tasks by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// All tasks.
    pub total: u64,
    /// Waiting.
    pub queued: u64,
    /// Held by a node.
    pub leased: u64,
    /// Done.
    pub completed: u64,
    /// Out of attempts.
    pub failed: u64,
    /// Canceled.
    pub canceled: u64,
}

/// The state of a job, derived from its tasks (`core::rollup::state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the jobs it names in `after_jobs`: none of its tasks is handed out.
    Waiting,
    /// Nothing started yet.
    Queued,
    /// Some task started.
    Active,
    /// No new task is handed out.
    Paused,
    /// Every task completed.
    Completed,
    /// A task ran out of attempts.
    Failed,
    /// Canceled.
    Canceled,
}

impl JobState {
    /// Every state, in the order the API lists them.
    pub const ALL: [JobState; 7] = [
        JobState::Waiting,
        JobState::Queued,
        JobState::Active,
        JobState::Paused,
        JobState::Completed,
        JobState::Failed,
        JobState::Canceled,
    ];

    /// Completed, failed or canceled.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Canceled
        )
    }

    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Queued => "queued",
            JobState::Active => "active",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }
}

/// A job as every `/v1/jobs` answer shows it (and the `job` event of a followed job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The spec fields, flattened.
    #[serde(flatten)]
    pub spec: JobSpec,
    /// Derived state.
    pub state: JobState,
    /// Paused flag (a paused job may still have running tasks).
    pub paused: bool,
    /// Tasks by state.
    pub counts: Counts,
    /// Frames in the job.
    pub frames_total: u64,
    /// Frames done, counting progress of running tasks.
    pub frames_done: u64,
    /// `frames_done / frames_total` (tasks for a job without frames).
    pub progress: f64,
    /// Submission time.
    pub created_ms: u64,
    /// Last change to the job or any task.
    pub updated_ms: u64,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// Why it failed (or what failed in it): the first failed task's error, with its frames.
    pub error: Option<String>,
    /// Why its queued tasks wait, when no online node could take them (`core::reach::waiting`;
    /// filled in by the API, which reads the nodes), or which jobs it waits for ("waits for job
    /// X", "waits for job X frame by frame" while an `after_frames` job is still waiting).
    pub waiting: Option<String>,
    /// The personal token that submitted it (null: the farm secret).
    #[serde(default)]
    pub submitted_by: Option<crate::wire::tokens::SubmittedBy>,
}

/// `GET /v1/jobs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    /// This page.
    pub jobs: Vec<Job>,
    /// The next page's cursor (`null` on the last page).
    pub next_cursor: Option<String>,
}

/// `PATCH /v1/jobs/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPatch {
    /// New priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// New tags (replacing the old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `POST /v1/jobs/{id}/requeue` (an empty body is `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requeue {
    /// Re-render completed tasks too (the default when the job completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
}

/// `DELETE /v1/jobs/{id}` and `DELETE /v1/nodes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// What was deleted.
    pub id: String,
    /// Always `true`.
    pub deleted: bool,
}
