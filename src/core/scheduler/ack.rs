//! Acks: a node reports a task done (`complete_if_lease`) or failed (`fail_if_lease`). Both act
//! only for the current lease holder, so a late or duplicate node can never replace the
//! winner's result: the first success wins because after it nobody holds a lease. The task's
//! change is `transition::apply` (`Done`, `Failed`, then `DeadEnd` when no node is left); a
//! task out of attempts under `on_failure = fail` then ends its job (`lifecycle::fail_job`).

use super::lease::hold;
use super::task_ref::{update_task, TaskRef};
use super::transition::{apply, Event};
use crate::core::counters::{self, Tally};
use crate::core::error::Result;
use crate::core::model::{JobRecord, OnFailure, Task, TaskState};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use serde_json::Value;

pub use super::transition::MAX_FAILED_NODES;

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
        let result = result.clone();
        Ok(apply(t, Event::Done { result }, ctx.now_ms)?)
    })
    .await?;
    let tally = Tally {
        acks: 1,
        ..Tally::default()
    };
    counters::record(ctx, node.unwrap_or(&current_node(&current)), tally).await;
    // Jobs waiting for its frames may run them now; the last task of its job may have
    // completed it: release the jobs waiting for it, tell its webhooks.
    Box::pin(crate::core::lifecycle::ended_after_ack(
        ctx, &done.0, &done.1,
    ))
    .await?;
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
        hold(ctx, job, t, token, node)?;
        let failed = Event::Failed {
            error: error.clone(),
            max_attempts: job.spec.max_attempts,
        };
        apply(t, failed, ctx.now_ms)?;
        // Back in the queue: if every node that can run it failed it, nobody is left.
        if let Some(names) = (t.state == TaskState::Queued)
            .then(|| crate::core::reach::dead_end(&job.spec, t, &nodes))
            .flatten()
        {
            apply(t, Event::DeadEnd { names: &names }, ctx.now_ms)?;
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
        crate::core::lifecycle::fail_job(ctx, &job.spec.id).await?;
    } else if t.state == TaskState::Failed {
        // Under `continue` the job ends failed once nothing is left to run.
        Box::pin(crate::core::lifecycle::ended(ctx, &job)).await?;
    }
    Ok((job, t))
}

/// The node holding a task's lease (the shard key of its counters), or "" when none does.
fn current_node(t: &Task) -> String {
    t.lease.as_ref().map(|l| l.node.clone()).unwrap_or_default()
}
