//! The task state machine: every change of a task's state (and of its lease) is one call of
//! [`apply`], which takes the task, an [`Event`] and the time, and either changes the task or
//! refuses with a [`Refusal`] that leaves it untouched. The match on (state, event) has no
//! wildcard arm, so a new state or event does not build until each pair is decided.
//!
//! | event (who sends it)                            | queued       | leased          | completed  | failed     | canceled   |
//! |-------------------------------------------------|--------------|-----------------|------------|------------|------------|
//! | `Claim` (claim.rs; nexrender pickup, `started`) | → leased     | refused¹        | refused    | refused    | refused    |
//! | `Revive` (lease.rs: a lapsed lease's holder)    | → leased²    | refused         | refused    | refused    | refused    |
//! | `Heartbeat` (lease.rs; nexrender holder's PUT)  | refused      | leased (longer) | refused    | refused    | refused    |
//! | `Done` (ack.rs)                                 | refused      | → completed     | refused    | refused    | refused    |
//! | `Failed` (ack.rs)                               | refused      | → queued/failed³| refused    | refused    | refused    |
//! | `Expired` (claim.rs, nexrender: lease lapsed)   | refused      | → queued/failed⁴| refused    | refused    | refused    |
//! | `Released` (lease.rs; nexrender `queued`, override) | refused  | → queued        | refused    | refused    | refused    |
//! | `Revoked` (claim.rs: holder removed or left)   | refused      | → queued        | refused    | refused    | refused    |
//! | `DeadEnd` (claim.rs, ack.rs: no node left)      | → failed     | refused         | refused    | refused    | refused    |
//! | `Canceled` (lifecycle: cancel, fail-fast)       | → canceled   | → canceled      | refused    | refused    | refused    |
//! | `Requeued` (lifecycle: requeue; nexrender `queued`) | queued⁵  | refused         | → queued⁶  | → queued   | → queued   |
//! | `Rewait` (lifecycle: rewait)                    | queued⁸      | → queued⁸       | → queued⁸  | → queued⁸  | → queued⁸  |
//! | `Covered` (lifecycle: per_frame, depend)        | queued⁷      | refused         | refused    | refused    | refused    |
//! | `Finished` (nexrender `finished`)               | → completed  | → completed     | completed  | → completed| → completed|
//! | `Errored` (nexrender `error`)                   | → failed     | → failed        | → failed   | failed     | → failed   |
//!
//! 1. A lapsed lease is first settled with `Expired` (so its attempt counts); `claimable()` in
//!    `claimable.rs` accepts a leased task only for that reason.
//! 2. Only with the lapsed lease the task still keeps (`Task::lapsed`, cleared by every grant):
//!    its holder is heard from before anyone else claimed the task. The expiry's failure is
//!    taken back.
//! 3. Back to the queue, or failed when out of attempts or failed by [`MAX_FAILED_NODES`]
//!    nodes; the holder's node never gets the task again.
//! 4. Failed when the failures reach the job's `max_attempts`; an expiry while the server was
//!    down is not counted. The lease is kept as `lapsed` for its holder (note 2).
//! 5. Stays queued with fresh failures (the nodes that failed it may try again).
//! 6. Only with `completed_too` (a requeue of a completed job, or `all`); else refused.
//! 7. Only a held task (`Task::held`, a task of an `after_frames` job whose frames are not
//!    rendered yet): it stays queued and is no longer held, so claims may take it. Refused for
//!    a task not held (releasing twice changes nothing). A held task keeps its flag through
//!    `Canceled` and `Requeued`: requeued, it waits for its frames again.
//! 8. What the task used is rendered again (a job its job waits for was requeued): it runs
//!    again after that, held with `hold` (frame by frame). Refused for a queued task already
//!    waiting as asked (held if `hold`, no lapsed lease): nothing would change. A running attempt is withdrawn (its
//!    holder's next heartbeat or ack is answered `stale_lease`); a lapsed lease can no longer
//!    be revived. A finished task starts afresh, like `Requeued`.
//!
//! Who may send an event is decided before it gets here: the lease token and node
//! (`lease::hold`), the nexrender executor identity (`nexrender/lease.rs`), and the job-level
//! rules of a claim (`claimable.rs`). What a task shows besides its state and lease (progress,
//! activity line, log chunks) is set by the caller in the same compare-and-swap.
//!
//! `Finished` and `Errored` are nexrender's: a nexrender client may report the end of a job it
//! does not hold, when nobody else holds it (nexrender-server's own rule), so they apply from
//! any state — also to a task of a job canceled through `/v1`.

mod event;

pub use event::{Event, EventKind, Refusal};

use crate::core::model::{
    Attempt, Lapsed, Lease, Outcome, Progress, Task, TaskState, HISTORY_KEPT,
};

/// Distinct nodes failing a task after which it fails whatever its attempts.
pub const MAX_FAILED_NODES: usize = 3;

/// The task `event` makes of `task` at `now_ms`, or why it does not apply.
pub fn next(task: &Task, event: Event<'_>, now_ms: u64) -> Result<Task, Refusal> {
    let mut t = task.clone();
    apply(&mut t, event, now_ms)?;
    Ok(t)
}

/// Applies `event` to `task` at `now_ms` (see the table in the module doc). On a refusal the
/// task is left exactly as it was.
pub fn apply(task: &mut Task, event: Event<'_>, now_ms: u64) -> Result<(), Refusal> {
    use TaskState::{Canceled, Completed, Failed, Leased, Queued};
    let refuse = Refusal {
        state: task.state,
        event: event.kind(),
    };
    match (task.state, event) {
        (
            Queued,
            Event::Claim {
                node,
                token,
                expires_ms,
            },
        ) => grant(task, node, token, expires_ms, now_ms),
        (Leased | Completed | Failed | Canceled, Event::Claim { .. }) => return Err(refuse),

        (Queued, Event::Revive { expires_ms }) => {
            let Some(Lapsed { mut lease, counted }) = task.lapsed.take() else {
                return Err(refuse);
            };
            if counted {
                task.failures = task.failures.saturating_sub(1);
            }
            if let Some(a) = task
                .history
                .iter_mut()
                .rev()
                .find(|a| a.attempt == lease.attempt)
            {
                a.ended_ms = None;
                a.outcome = None;
            }
            lease.expires_ms = expires_ms;
            task.lease = Some(lease);
            task.state = Leased;
            task.error = None;
        }
        (Leased | Completed | Failed | Canceled, Event::Revive { .. }) => return Err(refuse),

        (Leased, Event::Heartbeat { expires_ms }) => {
            if let Some(l) = task.lease.as_mut() {
                l.expires_ms = expires_ms;
            }
        }
        (Queued | Completed | Failed | Canceled, Event::Heartbeat { .. }) => return Err(refuse),

        (Leased, Event::Done { result }) => {
            task.end_attempt(Outcome::Completed, now_ms);
            task.state = Completed;
            task.result = Some(result);
            task.error = None;
            if let Some(p) = task.progress.as_mut() {
                p.done = p.total;
            }
        }
        (Queued | Completed | Failed | Canceled, Event::Done { .. }) => return Err(refuse),

        (
            Leased,
            Event::Failed {
                error,
                max_attempts,
            },
        ) => {
            let holder = task
                .lease
                .as_ref()
                .map(|l| l.node.clone())
                .unwrap_or_default();
            task.end_attempt(Outcome::Failed, now_ms);
            task.failures += 1;
            if !task.failed_nodes.contains(&holder) {
                task.failed_nodes.push(holder);
            }
            task.error = Some(error);
            task.progress = None;
            let out_of_attempts =
                task.failures >= max_attempts || task.failed_nodes.len() >= MAX_FAILED_NODES;
            task.state = if out_of_attempts { Failed } else { Queued };
        }
        (Queued | Completed | Failed | Canceled, Event::Failed { .. }) => return Err(refuse),

        (
            Leased,
            Event::Expired {
                max_attempts,
                counted,
            },
        ) => {
            let lease = task.lease.clone();
            let node = lease.as_ref().map(|l| l.node.clone()).unwrap_or_default();
            task.end_attempt(Outcome::Expired, now_ms);
            if counted {
                task.failures += 1;
            }
            task.lapsed = lease.map(|lease| Lapsed { lease, counted });
            task.error = Some(if counted {
                format!("lease expired: node {node} stopped answering")
            } else {
                format!(
                    "lease expired while the server was down (node {node}); not counted as a failure"
                )
            });
            task.progress = None;
            task.state = if task.failures >= max_attempts {
                Failed
            } else {
                Queued
            };
        }
        (Queued | Completed | Failed | Canceled, Event::Expired { .. }) => return Err(refuse),

        (Leased, Event::Released) => {
            task.end_attempt(Outcome::Released, now_ms);
            task.state = Queued;
            task.progress = None;
        }
        (Queued | Completed | Failed | Canceled, Event::Released) => return Err(refuse),

        (Leased, Event::Revoked) => {
            let node = task
                .lease
                .as_ref()
                .map(|l| l.node.clone())
                .unwrap_or_default();
            task.end_attempt(Outcome::Released, now_ms);
            task.error = Some(format!(
                "node {node} was removed or left; its lease was released"
            ));
            task.progress = None;
            task.state = Queued;
        }
        (Queued | Completed | Failed | Canceled, Event::Revoked) => return Err(refuse),

        (Queued, Event::DeadEnd { names }) => {
            let last = task.error.take().unwrap_or_default();
            task.error = Some(format!(
                "failed on every node that can run it ({names}): {last}"
            ));
            task.state = Failed;
        }
        (Leased | Completed | Failed | Canceled, Event::DeadEnd { .. }) => return Err(refuse),

        (Queued | Leased, Event::Canceled { why }) => {
            task.end_attempt(Outcome::Canceled, now_ms);
            task.state = Canceled;
            task.error = Some(why.to_string());
        }
        (Completed | Failed | Canceled, Event::Canceled { .. }) => return Err(refuse),

        (Queued, Event::Requeued { .. }) => {
            // A task still waiting gets a fresh start too: the nodes that failed it may take
            // it again (the user fixed the file, or the node), else it never runs.
            task.failures = 0;
            task.failed_nodes.clear();
        }
        (
            Completed,
            Event::Requeued {
                completed_too: false,
            },
        ) => return Err(refuse),
        (
            Completed,
            Event::Requeued {
                completed_too: true,
            },
        )
        | (Failed | Canceled, Event::Requeued { .. }) => start_afresh(task),
        (Leased, Event::Requeued { .. }) => return Err(refuse),

        // Refused when it would change nothing (already waiting as asked), so the caller
        // knows whether to write.
        (Queued, Event::Rewait { hold, .. }) => {
            if (task.held || !hold) && task.lapsed.is_none() {
                return Err(refuse);
            }
            task.held |= hold;
            task.lapsed = None;
        }
        (Leased, Event::Rewait { hold, why }) => {
            task.end_attempt(Outcome::Released, now_ms);
            task.state = Queued;
            task.held = hold;
            task.progress = None;
            task.error = Some(why.to_string());
        }
        (Completed | Failed | Canceled, Event::Rewait { hold, .. }) => {
            start_afresh(task);
            task.held = hold;
        }

        (Queued, Event::Covered) if task.held => task.held = false,
        (Queued | Leased | Completed | Failed | Canceled, Event::Covered) => return Err(refuse),

        (Queued | Leased | Completed | Failed | Canceled, Event::Finished) => {
            if task.state == Leased {
                task.end_attempt(Outcome::Completed, now_ms);
            }
            task.state = Completed;
            task.lease = None;
            task.error = None;
            task.progress = Some(Progress {
                done: 100,
                total: 100,
            });
        }
        (Queued | Leased | Completed | Failed | Canceled, Event::Errored { error }) => {
            if task.state == Leased {
                task.end_attempt(Outcome::Failed, now_ms);
            }
            task.state = Failed;
            task.lease = None;
            task.error = Some(error);
        }
    }
    task.updated_ms = now_ms;
    Ok(())
}

/// A finished task back in the queue as if new, but for `attempts`, which keeps counting so
/// attempt-scoped keys are never reused.
fn start_afresh(task: &mut Task) {
    task.state = TaskState::Queued;
    task.failures = 0;
    task.failed_nodes.clear();
    task.lease = None;
    task.lapsed = None;
    task.progress = None;
    task.result = None;
    task.error = None;
}

/// Leases a queued task to `node` (a new attempt).
fn grant(task: &mut Task, node: &str, token: String, expires_ms: u64, now_ms: u64) {
    task.attempts += 1;
    task.state = TaskState::Leased;
    task.lease = Some(Lease {
        token,
        node: node.to_string(),
        expires_ms,
        attempt: task.attempts,
    });
    task.progress = Some(Progress {
        done: 0,
        total: task.frame_count(),
    });
    task.activity = None;
    // Someone else holds it now: the lapsed lease's holder can no longer ack.
    task.lapsed = None;
    task.history.push(Attempt {
        attempt: task.attempts,
        node: node.to_string(),
        started_ms: now_ms,
        ended_ms: None,
        outcome: None,
        log_chunks: 0,
    });
    if task.history.len() > HISTORY_KEPT {
        task.history.remove(0);
    }
}

#[cfg(test)]
mod tests;
