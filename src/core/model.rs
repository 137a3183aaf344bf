//! The records the core keeps in the store and the states they move through.
//!
//! A job's tasks live in segments of up to [`SEGMENT_TASKS`] tasks; a segment is the unit of
//! compare-and-swap, so a claim, heartbeat or ack is one conditional write of one small record.
//! Job counters and state are a roll-up of its segments (see `rollup`), never a second record
//! that could disagree with them. Rejected alternative: all tasks inside the job record (one CAS
//! per job, but every claim rewrites the whole job, O(tasks)).

use crate::core::frames::FrameRange;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Tasks per segment.
pub const SEGMENT_TASKS: u32 = 64;

/// What kind of program a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Blender renders frames.
    Blender,
    /// An allowed program with an argv template.
    Command,
    /// A nexrender (After Effects) job.
    Nexrender,
    /// FFmpeg turns rendered frames into a video (see `validate::ffmpeg_params`).
    Ffmpeg,
}

impl JobType {
    /// The name used in the API and in index keys.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Blender => "blender",
            JobType::Command => "command",
            JobType::Nexrender => "nexrender",
            JobType::Ffmpeg => "ffmpeg",
        }
    }
}

/// What happens to a job when one of its tasks runs out of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The job fails at once and its remaining tasks are canceled.
    #[default]
    Fail,
    /// The other tasks still run; the job ends failed.
    Continue,
}

/// A job as submitted, with every default filled in. Its digest decides whether a second
/// submit with the same id is the same job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Program kind.
    #[serde(rename = "type")]
    pub kind: JobType,
    /// Queue name.
    pub queue: String,
    /// Higher first.
    pub priority: i64,
    /// A node must have every tag.
    pub tags: Vec<String>,
    /// Type-specific parameters.
    pub params: Value,
    /// Frame spec, if any.
    pub frames: Option<String>,
    /// Frames per task.
    pub chunk_size: u64,
    /// Failed attempts before a task fails.
    pub max_attempts: u32,
    /// Seconds a task may run before the node kills it.
    pub task_timeout_s: u64,
    /// Failure policy.
    pub on_failure: OnFailure,
    /// The input manifest, when the job carries its files (absent: the nodes' shared storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<crate::core::blobs::inputs::Inputs>,
    /// Jobs that must complete before any task of this one is handed out (`lifecycle::depend`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_jobs: Vec<String>,
    /// What this job does when one of `after_jobs` fails or is canceled.
    #[serde(default, skip_serializing_if = "DependencyFailure::is_default")]
    pub on_dependency_failure: DependencyFailure,
    /// Receivers told when the job completes, fails or is canceled (`core::webhooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::wire::webhooks::Webhook>,
    /// The jobs of its later stages (`{id}-{name}`, submitted with it in `stages`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// Wait for `after_jobs` frame by frame (`lifecycle::per_frame`): a task is handed out as
    /// soon as every task of each of `after_jobs` that renders one of its frames completed,
    /// not only once those jobs completed. Left out of the spec when false, so older digests
    /// stay the same.
    #[serde(default, skip_serializing_if = "is_false")]
    pub after_frames: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a waiting job does when a job it waits for fails, is canceled or is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DependencyFailure {
    /// It fails (nothing of it ran).
    #[default]
    Fail,
    /// It is canceled.
    Cancel,
    /// It goes on without it: a job waiting as a whole runs anyway once nothing it waits for is
    /// still running; a job waiting frame by frame runs the tasks whose frames were rendered and
    /// skips (cancels) only those whose frames were not.
    Continue,
}

impl DependencyFailure {
    /// The default (left out of the spec, so older digests stay the same).
    pub fn is_default(&self) -> bool {
        *self == DependencyFailure::Fail
    }
}

/// The stored job record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The spec, with PATCHed priority and tags.
    pub spec: JobSpec,
    /// Digest of the spec as first submitted (idempotent re-submits compare against it).
    pub digest: String,
    /// Generation of the segment keys.
    pub gen: String,
    /// Number of tasks.
    pub tasks: u32,
    /// Number of frames (0 for a job without frames).
    pub frames_total: u64,
    /// Set by cancel.
    pub canceled: bool,
    /// Set when a task ran out of attempts under `OnFailure::Fail`.
    pub failed: bool,
    /// Set by pause, cleared by resume.
    pub paused: bool,
    /// Submission time.
    pub created_ms: u64,
    /// Last change to the record itself.
    pub updated_ms: u64,
    /// When cancel or fail-fast ended the job.
    pub ended_ms: Option<u64>,
    /// Page of the job list holding this job.
    pub list_page: u64,
    /// Where the nexrender façade keeps the job as nexrender clients sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nexrender: Option<Value>,
    /// The personal token that submitted it (absent: the farm secret, or a record from before
    /// tokens had roles). A submitter may steer only the jobs it submitted (`core::access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_by: Option<crate::wire::tokens::SubmittedBy>,
    /// The `after_jobs` not completed yet: while any is left, the job is `waiting` and its
    /// segments are not in the claim index (`lifecycle::depend`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    /// Why a job waiting on others ended without running (a dependency failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_error: Option<String>,
    /// How many times the job was requeued: a job that ends again after a requeue has new
    /// webhook events (`keys::webhook_event`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl JobRecord {
    /// Number of segments.
    pub fn segments(&self) -> u32 {
        self.tasks.div_ceil(SEGMENT_TASKS)
    }
}

/// The state of one task. Every change of it is one call of `scheduler::transition::apply`,
/// whose doc holds the whole (state, event) table.
///
/// Who moves a task out of each state:
/// - `Queued`: left by a claim or the late holder of a lapsed lease (→ `Leased`), cancel
///   (→ `Canceled`), no node left to run it (→ `Failed`), nexrender `finished`/`error`.
/// - `Leased`: left by ack done (→ `Completed`), ack failed or an expired lease seen by a claim
///   (→ `Queued`, or `Failed` when out of attempts), release or its node's removal (→ `Queued`),
///   cancel (→ `Canceled`), nexrender `finished`/`error`/`queued`.
/// - `Completed`, `Failed`, `Canceled`: left only by requeue (→ `Queued`; a completed task
///   only when completed ones are requeued too), and nexrender `finished`/`error`/`queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a node.
    Queued,
    /// A node holds a lease on it (which may have expired).
    Leased,
    /// Done; its result is the winning attempt's.
    Completed,
    /// Ran out of attempts.
    Failed,
    /// Canceled with its job.
    Canceled,
}

impl TaskState {
    /// Completed, failed or canceled: only a requeue moves it again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled
        )
    }
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Secret the holder proves itself with.
    pub token: String,
    /// The node holding it.
    pub node: String,
    /// When it lapses unless extended.
    pub expires_ms: u64,
    /// Which attempt it is.
    pub attempt: u32,
}

/// Progress of a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// Frames (or units) done.
    pub done: u64,
    /// Frames (or units) in all.
    pub total: u64,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acked done; the winner.
    Completed,
    /// Acked failed.
    Failed,
    /// The node went silent past the lease.
    Expired,
    /// The node gave it back.
    Released,
    /// The job was canceled while it ran.
    Canceled,
}

/// One granted lease, kept for history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Node that held it.
    pub node: String,
    /// Grant time.
    pub started_ms: u64,
    /// End time.
    pub ended_ms: Option<u64>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// Log chunks written.
    pub log_chunks: u32,
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Position in the job.
    pub index: u32,
    /// Frames rendered, if the job has frames.
    pub frames: Option<FrameRange>,
    /// State.
    pub state: TaskState,
    /// Leases granted so far.
    pub attempts: u32,
    /// Failed or expired attempts (compared with max_attempts).
    pub failures: u32,
    /// Nodes whose attempt failed; they are not given the task again.
    pub failed_nodes: Vec<String>,
    /// The current lease, when leased.
    pub lease: Option<Lease>,
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
    /// The lease that lapsed last, while nobody else has claimed the task since: its holder may
    /// still ack (or heartbeat) it, e.g. after a server outage. Cleared by the next grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lapsed: Option<Lapsed>,
    /// Held back until the frames it waits for are rendered (a task of an `after_frames` job,
    /// from its creation until `transition::Event::Covered`): never claimable while set
    /// (`claimable::claimable`). Only a queued task is released; a job no longer waiting has
    /// no queued task held (`lifecycle::depend::check_waiting` clears the rest first).
    #[serde(default, skip_serializing_if = "is_false")]
    pub held: bool,
}

/// A lease that ran out before its holder was heard from, kept until the task is claimed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lapsed {
    /// The lease as it was.
    pub lease: Lease,
    /// Whether its expiry was counted as a failed attempt (not when it ran out while the server
    /// itself was down).
    pub counted: bool,
}

/// Attempts kept in a task's history.
pub const HISTORY_KEPT: usize = 8;

impl Task {
    /// A fresh queued task.
    pub fn new(index: u32, frames: Option<FrameRange>, now_ms: u64) -> Self {
        Task {
            index,
            frames,
            state: TaskState::Queued,
            attempts: 0,
            failures: 0,
            failed_nodes: Vec::new(),
            lease: None,
            progress: None,
            activity: None,
            result: None,
            error: None,
            history: Vec::new(),
            updated_ms: now_ms,
            lapsed: None,
            held: false,
        }
    }

    /// Frames this task covers (1 for a task without frames).
    pub fn frame_count(&self) -> u64 {
        self.frames.map_or(1, |f| f.len())
    }

    /// The current attempt's history record.
    pub fn current_attempt_mut(&mut self) -> Option<&mut Attempt> {
        let n = self.lease.as_ref()?.attempt;
        self.history.iter_mut().rev().find(|a| a.attempt == n)
    }

    /// Ends the current attempt with `outcome` and drops the lease. Every way a lease ends goes
    /// through here, so the history always says how.
    pub fn end_attempt(&mut self, outcome: Outcome, now_ms: u64) {
        if let Some(a) = self.current_attempt_mut() {
            a.ended_ms = Some(now_ms);
            a.outcome = Some(outcome);
        }
        self.lease = None;
    }
}

/// A segment: consecutive tasks of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The tasks, by index.
    pub tasks: Vec<Task>,
}

/// A node's state as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes tasks.
    Awake,
    /// Takes no new task; finishes the ones it has.
    Draining,
}

/// An enrolled node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
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
    /// Awake or draining.
    pub state: NodeState,
    /// Last poll or heartbeat.
    pub last_seen_ms: u64,
    /// Enrolment time.
    pub created_ms: u64,
    /// sha256 of its token, hex.
    pub token_sha256: String,
    /// Queues it polled, most recent last (bounded by [`NODE_QUEUES_KEPT`]); a job on another
    /// queue cannot reach it.
    #[serde(default)]
    pub queues: Vec<String>,
    /// How long its last poll asked the server to hold it (`?wait=`): it is not overdue before
    /// `last_seen_ms` plus this.
    #[serde(default)]
    pub poll_wait_ms: u64,
    /// When it said it was leaving (`POST /v1/nodes/{id}/leave`); cleared when it is seen again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_ms: Option<u64>,
}

/// Queues remembered per node.
pub const NODE_QUEUES_KEPT: usize = 8;

/// A personal token (`POST /v1/tokens`): only the sha256 of `eft_{id}_{secret}` is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Token id.
    pub id: String,
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub role: crate::wire::tokens::Role,
    /// Queues it may submit to (empty: any).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Highest priority it may give a job.
    #[serde(default)]
    pub max_priority: Option<i64>,
    /// When it stops working.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// Enrolments left (node-join tokens).
    #[serde(default)]
    pub uses_left: Option<u32>,
    /// Creation time.
    pub created_ms: u64,
    /// sha256 of the whole token, hex.
    pub token_sha256: String,
}
