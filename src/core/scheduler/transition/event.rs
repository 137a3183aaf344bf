//! The events of the task state machine, their names, and the refusal of one a task's state
//! does not allow (the table: `transition/mod.rs`).

use crate::core::model::TaskState;
use serde_json::Value;

/// What happens to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A claim grants a new lease (a new attempt).
    Claim {
        /// The node (or nexrender executor) taking it.
        node: &'a str,
        /// The new lease's secret.
        token: String,
        /// When the lease lapses unless extended.
        expires_ms: u64,
    },
    /// The holder of the lapsed lease is heard from before anyone claimed the task again.
    Revive {
        /// The revived lease's new expiry.
        expires_ms: u64,
    },
    /// The holder extends its lease.
    Heartbeat {
        /// The new expiry.
        expires_ms: u64,
    },
    /// The holder reports success.
    Done {
        /// The task's result.
        result: Value,
    },
    /// The holder reports failure.
    Failed {
        /// What went wrong.
        error: String,
        /// The job's attempts.
        max_attempts: u32,
    },
    /// The lease lapsed (seen by a claim: expiry is lazy).
    Expired {
        /// The job's attempts.
        max_attempts: u32,
        /// Whether the attempt counts as a failure (not when the server was down).
        counted: bool,
    },
    /// The holder gives the task back; not a failure.
    Released,
    /// The holder's node was removed; not a failure.
    Revoked,
    /// Every node able to run the task has failed it (`reach::dead_end`), named here.
    DeadEnd {
        /// The nodes' names.
        names: &'a str,
    },
    /// The job was canceled, or failed fast.
    Canceled {
        /// Why, shown as the task's error.
        why: &'a str,
    },
    /// The job is run again.
    Requeued {
        /// Completed tasks render again too.
        completed_too: bool,
    },
    /// A job this task's job waits for renders again what the task used (a requeue of it,
    /// `lifecycle::rewait`): the task runs again after it, so it goes back to the queue, held
    /// when its job waits frame by frame. A running attempt is withdrawn.
    Rewait {
        /// Held until its frames are rendered again (its job waits frame by frame).
        hold: bool,
        /// Why, shown as the task's error when a running attempt is withdrawn.
        why: &'a str,
    },
    /// The frames a held task waits for are rendered, or the jobs it waits for completed
    /// (`lifecycle::per_frame`, `lifecycle::depend`): it may be claimed.
    Covered,
    /// nexrender `finished`: the job ended well, whoever held it.
    Finished,
    /// nexrender `error`: the job ended badly, whoever held it.
    Errored {
        /// The worker's error text.
        error: String,
    },
}

/// An [`Event`]'s name, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// [`Event::Claim`].
    Claim,
    /// [`Event::Revive`].
    Revive,
    /// [`Event::Heartbeat`].
    Heartbeat,
    /// [`Event::Done`].
    Done,
    /// [`Event::Failed`].
    Failed,
    /// [`Event::Expired`].
    Expired,
    /// [`Event::Released`].
    Released,
    /// [`Event::Revoked`].
    Revoked,
    /// [`Event::DeadEnd`].
    DeadEnd,
    /// [`Event::Canceled`].
    Canceled,
    /// [`Event::Requeued`].
    Requeued,
    /// [`Event::Rewait`].
    Rewait,
    /// [`Event::Covered`].
    Covered,
    /// [`Event::Finished`].
    Finished,
    /// [`Event::Errored`].
    Errored,
}

impl Event<'_> {
    /// The event's name.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Claim { .. } => EventKind::Claim,
            Event::Revive { .. } => EventKind::Revive,
            Event::Heartbeat { .. } => EventKind::Heartbeat,
            Event::Done { .. } => EventKind::Done,
            Event::Failed { .. } => EventKind::Failed,
            Event::Expired { .. } => EventKind::Expired,
            Event::Released => EventKind::Released,
            Event::Revoked => EventKind::Revoked,
            Event::DeadEnd { .. } => EventKind::DeadEnd,
            Event::Canceled { .. } => EventKind::Canceled,
            Event::Requeued { .. } => EventKind::Requeued,
            Event::Rewait { .. } => EventKind::Rewait,
            Event::Covered => EventKind::Covered,
            Event::Finished => EventKind::Finished,
            Event::Errored { .. } => EventKind::Errored,
        }
    }
}

/// An event the task's state does not allow; the task is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a task in state {state:?} does not take {event:?}")]
pub struct Refusal {
    /// The task's state.
    pub state: TaskState,
    /// The event refused.
    pub event: EventKind,
}

impl From<Refusal> for crate::core::Error {
    fn from(r: Refusal) -> Self {
        crate::core::Error::Conflict(r.to_string())
    }
}
