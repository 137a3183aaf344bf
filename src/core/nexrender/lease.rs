//! The task transitions a nexrender `PUT` asks for, each one compare-and-swap of the job's
//! segment through `update_task`, guarded by who holds the lease. The guard and the change are
//! evaluated on the same read, so two workers racing for one job cannot both win.
//!
//! The lease holder is named by the executor identity (`nexrender-name`, else the peer
//! address), not by a token: stock nexrender clients carry none. Two old workers on one host
//! share an identity, so "already started" is recorded in the task itself (`activity`) and a
//! second `started` for the same lease is refused like a foreign one.

use super::job::in_progress;
use crate::core::error::{Error, Result};
use crate::core::model::{JobRecord, Outcome, Progress, Task, TaskState};
use crate::core::scheduler::claim::{claimable, grant, lease_expired, settle_expired};
use crate::core::scheduler::task_ref::{update_task, TaskRef};
use crate::core::Ctx;
use crate::store::Store;

/// What a PUT's `state` asks of the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `started`: take the job (a claim when it is free) or start the picked one.
    Start,
    /// `picked`, `render:*`: a report from the holder.
    Report(String),
    /// `finished`.
    Finish,
    /// `error`, with the worker's error text.
    Fail(String),
    /// `queued`: give the job back (or run a finished one again).
    Release,
    /// No state (or one nexrender does not define): only renews the holder's lease.
    Touch,
}

impl Ask {
    /// The ask of a PUT body's `state`.
    pub fn of(state: Option<&str>, error: String) -> Ask {
        match state {
            Some("started") => Ask::Start,
            Some("finished") => Ask::Finish,
            Some("error") => Ask::Fail(error),
            Some("queued") => Ask::Release,
            Some(s) if in_progress(s) => Ask::Report(s.to_string()),
            _ => Ask::Touch,
        }
    }
}

/// What a transition did, for the record write that follows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Effect {
    /// A finished or failed job went back to the queue: its index entries must be written again
    /// and the job's failed/canceled flags cleared.
    pub requeued: bool,
}

fn mine(t: &Task, who: &str) -> bool {
    t.state == TaskState::Leased && t.lease.as_ref().is_some_and(|l| l.node == who)
}

/// Leased to someone else whose lease has not lapsed.
fn held_by_other(t: &Task, who: &str, now_ms: u64) -> Option<String> {
    let l = t.lease.as_ref()?;
    (t.state == TaskState::Leased && l.node != who && !lease_expired(t, now_ms))
        .then(|| l.node.clone())
}

/// One PUT, as the task sees it.
#[derive(Debug, Clone)]
pub struct Put<'a> {
    /// Job uid.
    pub job: &'a str,
    /// The caller's executor identity.
    pub who: &'a str,
    /// What its `state` asks.
    pub ask: Ask,
    /// Its `renderProgress`, percent.
    pub progress: Option<u64>,
}

/// Applies a PUT to task 0 of its job, renewing the caller's lease by the executor timeout and
/// recording its progress when the caller holds the lease.
pub async fn apply<S: Store>(ctx: &Ctx<'_, S>, put: &Put<'_>) -> Result<(JobRecord, Task, Effect)> {
    let Put {
        job,
        who,
        ref ask,
        progress,
    } = *put;
    let timeout_ms = ctx.config.nexrender.timeout_ms;
    let now = ctx.now_ms;
    let task = TaskRef {
        job: job.to_string(),
        index: 0,
    };
    let mut effect = Effect::default();
    let (job, t) = update_task(ctx, &task, |job, t| {
        effect = Effect::default();
        let taken = |node: String| {
            Error::Conflict(format!(
                "job {} is leased to executor {node}; it renders there",
                job.spec.id
            ))
        };
        match ask {
            Ask::Start => {
                // A lapsed lease is settled first, so its attempt counts even when the worker
                // that comes back has the same identity as the one that went silent.
                if lease_expired(t, now) {
                    settle_expired(t, job.spec.max_attempts, now);
                }
                if claimable(t, who, now) {
                    grant(t, who, ctx.token(), now + timeout_ms, now);
                } else if mine(t, who) && matches!(t.activity.as_deref(), None | Some("picked")) {
                    // The executor that picked the job starts it.
                } else if let Some(node) = t.lease.as_ref().map(|l| l.node.clone()) {
                    return Err(taken(node));
                } else {
                    return Err(Error::Conflict(format!(
                        "job {} is {} and cannot be started",
                        job.spec.id,
                        super::job::derive(job, t, now).state
                    )));
                }
                t.activity = Some("started".into());
            }
            Ask::Report(state) => {
                if !mine(t, who) {
                    return Err(Error::StaleLease(format!(
                        "job {} is not leased to executor {who} (its lease lapsed or it was never picked)",
                        job.spec.id
                    )));
                }
                t.activity = Some(state.clone());
            }
            Ask::Finish | Ask::Fail(_) => {
                if let Some(node) = held_by_other(t, who, now) {
                    return Err(taken(node));
                }
                let (state, outcome) = match ask {
                    Ask::Finish => (TaskState::Completed, Outcome::Completed),
                    _ => (TaskState::Failed, Outcome::Failed),
                };
                if t.state == TaskState::Leased {
                    t.end_attempt(outcome, now);
                }
                t.state = state;
                t.lease = None;
                t.error = match ask {
                    Ask::Fail(e) => Some(e.clone()),
                    _ => None,
                };
                if state == TaskState::Completed {
                    t.progress = Some(Progress {
                        done: 100,
                        total: 100,
                    });
                }
            }
            Ask::Release => {
                if let Some(node) = held_by_other(t, who, now) {
                    return Err(taken(node));
                }
                match t.state {
                    TaskState::Leased => t.end_attempt(Outcome::Released, now),
                    TaskState::Queued => {}
                    TaskState::Completed | TaskState::Failed | TaskState::Canceled => {
                        // Run again: fresh failures, as `/v1 requeue` does. `attempts` keeps
                        // counting so attempt-scoped keys are never reused.
                        t.failures = 0;
                        t.failed_nodes.clear();
                        t.result = None;
                        t.error = None;
                        effect.requeued = true;
                    }
                }
                t.state = TaskState::Queued;
                t.progress = None;
                t.activity = None;
            }
            Ask::Touch => {}
        }
        if mine(t, who) {
            if let Some(l) = t.lease.as_mut() {
                l.expires_ms = now + timeout_ms;
            }
            if let Some(p) = progress {
                t.progress = Some(Progress {
                    done: p.min(100),
                    total: 100,
                });
            }
        }
        Ok(())
    })
    .await?;
    Ok((job, t, effect))
}
