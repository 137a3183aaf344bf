//! The task transitions a nexrender `PUT` asks for, each one compare-and-swap of the job's
//! segment through `update_task`, guarded by who holds the lease. The changes themselves are
//! events of the task state machine (`scheduler/transition.rs`): `started` is a `Claim`
//! (after an `Expired` for a lapsed lease), a holder's report a `Heartbeat`, `finished` and
//! `error` are `Finished` and `Errored`, `queued` a `Released` or `Requeued`, an override a
//! `Released`. The guard and the change are
//! evaluated on the same read, so two workers racing for one job cannot both win.
//!
//! The lease holder is named by the executor identity (`nexrender-name`, else the peer
//! address), not by a token: stock nexrender clients carry none. So what a PUT may do depends
//! on who sends it:
//! - **the holder**: any state is a report that renews its lease (`started` and `render:*` set
//!   what the job shows, `finished`/`error` end it, `queued` gives it back). A holder re-sending
//!   `started` is never refused: the 1.6x worker re-sends it (un-awaited) when a render fails,
//!   and a refusal there ends the worker's process on an unhandled rejection.
//! - **the last holder of an ended job**: a report that arrives after its own `finished` or
//!   `error` (the worker's un-awaited PUTs race its awaited ones) is answered 200 and changes
//!   nothing; a re-sent `finished`/`error` applies again.
//! - **a former holder** whose lease lapsed and went to someone else: 409 `stale_lease`.
//! - **any other client** (a dashboard, a script): `started` is a claim, exclusive (409 while
//!   someone holds the job); a `picked`/`render:*` report on a job someone holds is shown on the
//!   job (state and progress) and leaves the lease where it is; `finished`, `error` and
//!   `queued` apply to a job nobody holds. With the override header ([`Put::overrides`]) the
//!   client ends any lease first, on purpose: an admin's repair.
//!
//! Rejected alternative: refusing a second `started` within one lease, which protected two old
//! workers sharing one identity (same host, no `nexrender-name`) from both rendering a job —
//! but refused the 1.6x worker's own re-sent `started` as well, killing it on every failed
//! render. Two workers sharing one identity are one executor here, as in nexrender-server: give
//! each its own `--name` (workers from 1.6x) or address (the 1.8.x worker has no `--name`).

use super::job::in_progress;
use crate::core::error::{Error, Result};
use crate::core::model::{JobRecord, Progress, Task, TaskState};
use crate::core::scheduler::claimable::claimable;
use crate::core::scheduler::expiry::lease_expired;
use crate::core::scheduler::task_ref::{update_task, TaskRef};
use crate::core::scheduler::transition::{apply as transit, Event};
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
    /// A late report of an ended job by its last holder: nothing changed, and the PUT's fields
    /// must not be merged either (its `error: null` would erase the error it reported).
    pub late: bool,
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

fn ended(t: &Task) -> bool {
    matches!(
        t.state,
        TaskState::Completed | TaskState::Failed | TaskState::Canceled
    )
}

/// The job ended and `who` held its last lease: a late report of its own render.
fn ended_by(t: &Task, who: &str) -> bool {
    ended(t) && t.history.last().is_some_and(|a| a.node == who)
}

/// `who` held one of the job's (recent) leases: its reports are a former holder's, not a
/// dashboard's.
fn held_before(t: &Task, who: &str) -> bool {
    t.history.iter().any(|a| a.node == who)
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
    /// The caller asked, with the override header, to end whoever's lease first (an admin's
    /// repair); only a state that needs the job free uses it.
    pub overrides: bool,
}

/// A lapsed lease settled before a claim, so its attempt counts (`Event::Expired`).
fn settle_expired(t: &mut Task, job: &JobRecord, now: u64) -> Result<()> {
    let max_attempts = job.spec.max_attempts;
    Ok(transit(
        t,
        Event::Expired {
            max_attempts,
            counted: true,
        },
        now,
    )?)
}

/// Applies a PUT to task 0 of its job, renewing the caller's lease by the executor timeout and
/// recording its progress when the caller holds the lease.
pub async fn apply<'a, S: Store>(
    ctx: &Ctx<'_, S>,
    put: &Put<'a>,
) -> Result<(JobRecord, Task, Effect)> {
    let Put {
        job,
        who,
        ref ask,
        progress,
        overrides,
    } = *put;
    let timeout_ms = ctx.config.nexrender.timeout_ms;
    let now = ctx.now_ms;
    let task = TaskRef {
        job: job.to_string(),
        index: 0,
    };
    let mut effect = Effect::default();
    let claim = |node: &'a str| Event::Claim {
        node,
        token: ctx.token(),
        expires_ms: now + timeout_ms,
    };
    let (job, t) = update_task(ctx, &task, |job, t| {
        effect = Effect::default();
        let taken = |node: String| {
            Error::Conflict(format!(
                "job {} is leased to executor {node}; it renders there",
                job.spec.id
            ))
        };
        if overrides && !matches!(ask, Ask::Touch) {
            if let Some(node) = held_by_other(t, who, now) {
                // Ended on purpose, not by silence: no failure counted, no blocklist.
                transit(t, Event::Released, now)?;
                t.activity = None;
                tracing::info!(job = %job.spec.id, from = %node, by = %who, "nexrender lease overridden");
            }
        }
        match ask {
            Ask::Start => {
                // A lapsed lease is settled first, so its attempt counts even when the worker
                // that comes back has the same identity as the one that went silent.
                if lease_expired(t, now) {
                    settle_expired(t, job, now)?;
                }
                if claimable(t, who, now) {
                    transit(t, claim(who), now)?;
                } else if mine(t, who) {
                    // The picker starts the job, or the holder says it again: a renewal.
                } else if ended_by(t, who) {
                    // Sent before its own `error`/`finished` and arrived after it.
                    effect.late = true;
                    return Ok(());
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
                if mine(t, who) {
                    t.activity = Some(state.clone());
                } else if ended_by(t, who) {
                    effect.late = true;
                    return Ok(());
                } else if overrides && claimable(t, who, now) {
                    // Taken over on purpose: a lapsed lease is settled (counted) first.
                    if lease_expired(t, now) {
                        settle_expired(t, job, now)?;
                    }
                    if !claimable(t, who, now) {
                        return Err(Error::Conflict(format!(
                            "job {} has no attempts left",
                            job.spec.id
                        )));
                    }
                    transit(t, claim(who), now)?;
                    t.activity = Some(state.clone());
                } else if held_by_other(t, who, now).is_some() && !held_before(t, who) {
                    // Someone else's report (a dashboard): shown on the job, lease untouched;
                    // the holder's next report replaces it.
                    t.activity = Some(state.clone());
                    if let Some(p) = progress {
                        t.progress = Some(Progress {
                            done: p.min(100),
                            total: 100,
                        });
                    }
                } else {
                    return Err(Error::StaleLease(format!(
                        "job {} is not leased to executor {who} (its lease lapsed or it was never picked); PUT started to take it",
                        job.spec.id
                    )));
                }
            }
            Ask::Finish | Ask::Fail(_) => {
                // Also a holder's re-sent end, which applies again (its latest word).
                if let Some(node) = held_by_other(t, who, now) {
                    return Err(taken(node));
                }
                let end = match ask {
                    Ask::Fail(e) => Event::Errored { error: e.clone() },
                    _ => Event::Finished,
                };
                transit(t, end, now)?;
            }
            Ask::Release => {
                if let Some(node) = held_by_other(t, who, now) {
                    return Err(taken(node));
                }
                match t.state {
                    TaskState::Leased => transit(t, Event::Released, now)?,
                    TaskState::Queued => {}
                    TaskState::Completed | TaskState::Failed | TaskState::Canceled => {
                        // Run again, as `/v1 requeue` of a completed job does.
                        let again = Event::Requeued {
                            completed_too: true,
                        };
                        transit(t, again, now)?;
                        effect.requeued = true;
                    }
                }
                t.progress = None;
                t.activity = None;
            }
            Ask::Touch => {}
        }
        if mine(t, who) {
            transit(t, Event::Heartbeat { expires_ms: now + timeout_ms }, now)?;
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
    if t.state.is_terminal() {
        // `finished` or `error`: the job ended (webhooks, waiting jobs).
        Box::pin(crate::core::lifecycle::ended(ctx, &job)).await?;
    }
    Ok((job, t, effect))
}
