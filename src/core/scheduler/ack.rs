//! Acks: a node reports a task done (`complete_if_lease`) or failed (`fail_if_lease`). Both act
//! only for the current lease holder, so a late or duplicate node can never replace the
//! winner's result: the first success wins because after it nobody holds a lease.
//!
//! Also here: ending a whole job early (`fail_job`, `cancel_remaining`), which the ack of a task
//! that ran out of attempts triggers under `on_failure = fail`.

use super::lease::hold;
use super::task_ref::{load_job, update_task, TaskRef};
use crate::core::counters::{self, Tally};
use crate::core::error::Result;
use crate::core::model::{JobRecord, OnFailure, Outcome, Segment, Task, TaskState};
use crate::core::records::{load, save, CAS_RETRIES};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use serde_json::Value;

/// Distinct nodes failing a task after which it fails whatever its attempts.
pub const MAX_FAILED_NODES: usize = 3;

/// Marks the task completed with `result` if the caller holds its lease. The result is first
/// stored under the attempt's own key, then inlined into the task.
pub async fn complete_if_lease<S: Store>(
    ctx: &Ctx<'_, S>,
    task: &TaskRef,
    token: &str,
    node: Option<&str>,
    result: Value,
) -> Result<(JobRecord, Task)> {
    let (job, mut current) = super::task_ref::read_task(ctx, task).await?;
    let attempt = hold(ctx, &job, &mut current, token, node)?.attempt;
    let bytes = serde_json::to_vec(&result).unwrap_or_default();
    ctx.store
        .put(&keys::result(&task.id(), attempt), &bytes, Cond::Any)
        .await?;
    let done = update_task(ctx, task, |job, t| {
        hold(ctx, job, t, token, node)?;
        t.end_attempt(Outcome::Completed, ctx.now_ms);
        t.state = TaskState::Completed;
        t.result = Some(result.clone());
        t.error = None;
        if let Some(p) = t.progress.as_mut() {
            p.done = p.total;
        }
        Ok(())
    })
    .await?;
    let tally = Tally {
        acks: 1,
        ..Tally::default()
    };
    counters::record(ctx, node.unwrap_or(&current_node(&current)), tally).await;
    Ok(done)
}

/// Records a failed attempt if the caller holds the lease: the task goes back to the queue for
/// another node, or fails when out of attempts, failed by [`MAX_FAILED_NODES`] nodes, or failed
/// by every enrolled node that can run it (`reach::dead_end`: waiting would be for ever).
pub async fn fail_if_lease<S: Store>(
    ctx: &Ctx<'_, S>,
    task: &TaskRef,
    token: &str,
    node: Option<&str>,
    error: String,
) -> Result<(JobRecord, Task)> {
    // Read before the write (the change below cannot wait on the store); failures are rare.
    let nodes = crate::core::reach::load_nodes(ctx).await?;
    let (job, t) = update_task(ctx, task, |job, t| {
        let holder = hold(ctx, job, t, token, node)?.node;
        t.end_attempt(Outcome::Failed, ctx.now_ms);
        t.failures += 1;
        if !t.failed_nodes.contains(&holder) {
            t.failed_nodes.push(holder);
        }
        t.error = Some(error.clone());
        t.progress = None;
        let out_of_attempts =
            t.failures >= job.spec.max_attempts || t.failed_nodes.len() >= MAX_FAILED_NODES;
        t.state = if out_of_attempts {
            TaskState::Failed
        } else {
            TaskState::Queued
        };
        if let Some(names) = (!out_of_attempts)
            .then(|| crate::core::reach::dead_end(&job.spec, t, &nodes))
            .flatten()
        {
            crate::core::reach::fail_dead_end(t, &names, ctx.now_ms);
        }
        Ok(())
    })
    .await?;
    let tally = Tally {
        failures: 1,
        ..Tally::default()
    };
    let holder = t.failed_nodes.last().cloned().unwrap_or_default();
    counters::record(ctx, node.unwrap_or(&holder), tally).await;
    if t.state == TaskState::Failed && job.spec.on_failure == OnFailure::Fail {
        fail_job(ctx, &job.spec.id).await?;
    }
    Ok((job, t))
}

/// Marks a job failed (a task ran out of attempts under `on_failure = fail`) and cancels what
/// is left of it.
pub async fn fail_job<S: Store>(ctx: &Ctx<'_, S>, job_id: &str) -> Result<()> {
    let key = keys::job(job_id);
    for _ in 0..CAS_RETRIES {
        let Ok(rec) = load_job(ctx, job_id).await else {
            return Ok(());
        };
        if rec.value.failed || rec.value.spec.on_failure != OnFailure::Fail {
            return Ok(());
        }
        let mut job = rec.value;
        job.failed = true;
        job.ended_ms = Some(ctx.now_ms);
        job.updated_ms = ctx.now_ms;
        if save(ctx.store, &key, &job, Cond::Version(rec.version))
            .await?
            .is_some()
        {
            return cancel_remaining(ctx, &job, "another task of the job failed").await;
        }
    }
    Ok(())
}

/// Cancels every queued or leased task of a job (their nodes learn it at the next heartbeat).
/// Segment by segment; if this stops halfway the job flags still stop every claim.
pub async fn cancel_remaining<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    why: &str,
) -> Result<()> {
    for k in 0..job.segments() {
        let key = keys::segment(&job.spec.id, &job.gen, k);
        for _ in 0..CAS_RETRIES {
            let Some(mut seg) = load::<Segment, _>(ctx.store, &key).await? else {
                break;
            };
            let mut changed = false;
            for t in seg
                .value
                .tasks
                .iter_mut()
                .filter(|t| !t.state.is_terminal())
            {
                t.end_attempt(Outcome::Canceled, ctx.now_ms);
                t.state = TaskState::Canceled;
                t.error = Some(why.to_string());
                t.updated_ms = ctx.now_ms;
                changed = true;
            }
            if !changed
                || save(ctx.store, &key, &seg.value, Cond::Version(seg.version))
                    .await?
                    .is_some()
            {
                break;
            }
        }
    }
    Ok(())
}

/// The node holding a task's lease (the shard key of its counters), or "" when none does.
fn current_node(t: &Task) -> String {
    t.lease.as_ref().map(|l| l.node.clone()).unwrap_or_default()
}
