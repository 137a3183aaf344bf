//! Heartbeats (`extend_if_lease`) and releases (`release_if_lease`): both only act for the
//! caller that holds the task's current lease. Also the lease guard every holder's request
//! goes through (`hold`: `revive_lapsed`, then `check_lease`). The state changes are
//! `transition::apply` (`Revive`, `Heartbeat`, `Released`).

use super::task_ref::{update_task, TaskRef};
use super::transition::{apply, Event};
use crate::core::error::{Error, Result};
use crate::core::model::{JobRecord, Lease, Progress, Task, TaskState};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};

/// Checks that `token` (and `node`, for a node credential) holds the current lease of `task`,
/// with a reason a person can act on when it does not.
pub fn check_lease<'t>(
    job: &JobRecord,
    task: &'t Task,
    token: &str,
    node: Option<&str>,
) -> Result<&'t Lease> {
    let id = super::task_ref::task_id(&job.spec.id, task.index);
    if job.canceled {
        return Err(Error::StaleLease(format!(
            "job {} was canceled; stop task {id}",
            job.spec.id
        )));
    }
    let held = task
        .lease
        .as_ref()
        .filter(|l| task.state == TaskState::Leased && l.token == token);
    match held {
        Some(l) if node.is_none_or(|n| n == l.node) => Ok(l),
        Some(_) => Err(Error::Forbidden(format!(
            "the lease on task {id} belongs to another node"
        ))),
        None => Err(Error::StaleLease(match (&task.state, &task.lease) {
            (TaskState::Leased, Some(l)) => format!(
                "the lease on task {id} was taken over: attempt {} now runs on node {}",
                l.attempt, l.node
            ),
            // The task says why its last attempt ended (a lapse, a withdrawal because what it
            // uses renders again, a removed node), so the node's log does too.
            (TaskState::Queued, _) => match &task.error {
                Some(why) => format!("task {id} went back to the queue: {why}"),
                None => format!("the lease on task {id} ended and the task went back to the queue"),
            },
            (state, _) => format!(
                "task {id} is {} and holds no lease of yours",
                serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
        })),
    }
}

/// Gives a lapsed lease back to its holder, when nobody has claimed the task since it lapsed
/// (`Task::lapsed` is cleared by every grant): a node that kept rendering through a server
/// outage, or was slow to be heard from, keeps its work. The expiry's failed attempt, if it was
/// counted, is taken back. First success still wins: a completed task keeps no lapsed lease,
/// and a task leased to anyone since refuses the late holder.
pub fn revive_lapsed<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    task: &mut Task,
    token: &str,
    node: Option<&str>,
) {
    let ours = task
        .lapsed
        .as_ref()
        .is_some_and(|l| l.lease.token == token && node.is_none_or(|n| n == l.lease.node));
    // Only a task still queued is revived (the state machine refuses any other). One whose
    // lapse used up its attempts (`Failed`) was dropped from the claim index when the lapse
    // was settled; reviving it would strand it (a later release or expiry would leave it
    // queued where no claim can find it).
    if !ours || job.canceled || job.failed {
        return;
    }
    let revive = Event::Revive {
        expires_ms: ctx.now_ms + ctx.config.lease_ms,
    };
    // Refused (not queued): the holder is told its lease is stale by `check_lease`.
    let _ = apply(task, revive, ctx.now_ms);
}

/// [`revive_lapsed`], then [`check_lease`]: the lease `token` holds, if any.
pub fn hold<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    task: &mut Task,
    token: &str,
    node: Option<&str>,
) -> Result<Lease> {
    revive_lapsed(ctx, job, task, token, node);
    check_lease(job, task, token, node).cloned()
}

/// What a heartbeat carries.
#[derive(Debug, Default)]
pub struct Beat {
    /// Lease token.
    pub token: String,
    /// Progress, if reported.
    pub progress: Option<Progress>,
    /// Activity line, if reported.
    pub activity: Option<String>,
    /// Log chunk, if any.
    pub log: Option<String>,
}

/// Extends the lease if `beat.token` still holds it; appends the log chunk under the attempt's
/// own keys. A lease past its expiry that nobody has claimed yet is still the caller's.
pub async fn extend_if_lease<S: Store>(
    ctx: &Ctx<'_, S>,
    task: &TaskRef,
    beat: Beat,
    node: Option<&str>,
) -> Result<(JobRecord, Task)> {
    if let Some(log) = beat.log.as_deref().filter(|l| !l.is_empty()) {
        // The chunk is written before the segment counts it, so a counted chunk always exists.
        let (job, mut current) = super::task_ref::read_task(ctx, task).await?;
        let lease = hold(ctx, &job, &mut current, &beat.token, node)?;
        let chunk = current
            .history
            .iter()
            .rev()
            .find(|a| a.attempt == lease.attempt)
            .map_or(0, |a| a.log_chunks);
        if chunk >= ctx.config.limits.log_chunks_per_attempt {
            // The attempt's log is full: keep its beginning and keep the lease alive (a render
            // must not die of its own verbosity), but store no more text for it.
            return update_task(ctx, task, |job, t| {
                hold(ctx, job, t, &beat.token, node)?;
                apply_beat(ctx, t, &beat)
            })
            .await;
        }
        ctx.store
            .put(
                &keys::log_chunk(&task.id(), lease.attempt, chunk),
                log.as_bytes(),
                Cond::Any,
            )
            .await?;
        return update_task(ctx, task, |job, t| {
            let attempt = hold(ctx, job, t, &beat.token, node)?.attempt;
            if let Some(a) = t.history.iter_mut().rev().find(|a| a.attempt == attempt) {
                a.log_chunks = a.log_chunks.max(chunk + 1);
            }
            apply_beat(ctx, t, &beat)
        })
        .await;
    }
    update_task(ctx, task, |job, t| {
        hold(ctx, job, t, &beat.token, node)?;
        apply_beat(ctx, t, &beat)
    })
    .await
}

/// The lease extended (`transition::Event::Heartbeat`), and what the beat reports shown.
fn apply_beat<S: Store>(ctx: &Ctx<'_, S>, t: &mut Task, beat: &Beat) -> Result<()> {
    let expires_ms = ctx.now_ms + ctx.config.lease_ms;
    apply(t, Event::Heartbeat { expires_ms }, ctx.now_ms)?;
    if let Some(p) = beat.progress {
        t.progress = Some(Progress {
            done: p.done.min(p.total),
            total: p.total,
        });
    }
    if beat.activity.is_some() {
        t.activity.clone_from(&beat.activity);
    }
    Ok(())
}

/// Gives the task back to the queue at once; the attempt does not count as a failure.
pub async fn release_if_lease<S: Store>(
    ctx: &Ctx<'_, S>,
    task: &TaskRef,
    token: &str,
    node: Option<&str>,
) -> Result<(JobRecord, Task)> {
    update_task(ctx, task, |job, t| {
        hold(ctx, job, t, token, node)?;
        Ok(apply(t, Event::Released, ctx.now_ms)?)
    })
    .await
}
