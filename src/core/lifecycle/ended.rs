//! The one hook for "this job may have ended": called after every change that can end a job
//! (the ack of its last task, a task failed for good, fail-fast, cancel, a failed dependency,
//! a nexrender `finished`/`error`). It settles the jobs waiting for it (`depend`, and after an
//! ack the per-frame release) and records its webhook event (`core::webhooks`).
//!
//! Cost on the hot path (every ack): one read (the job's dependents list) when the job has no
//! webhook receivers. With receivers, one more read (the acked task's segment); only when that
//! segment has no work left is the job rolled up (one read per 64 tasks) to see whether it
//! ended.

use crate::core::error::Result;
use crate::core::model::{JobRecord, Segment, Task, SEGMENT_TASKS};
use crate::core::records::load;
use crate::core::rollup;
use crate::core::scheduler::claimable::is_live;
use crate::core::webhooks;
use crate::core::Ctx;
use crate::store::{keys, Store};

/// After a change to `job` (as the change left it, or as read before it) that may have ended
/// it.
pub async fn ended<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<()> {
    tell_webhooks(ctx, job, None).await?;
    Box::pin(super::depend::settle_dependents(ctx, &job.spec.id)).await
}

/// After an ack completed `task` of `job` (written before this reads anything).
pub async fn ended_after_ack<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    task: &Task,
) -> Result<()> {
    tell_webhooks(ctx, job, Some(task)).await?;
    Box::pin(super::depend::settle_after_ack(ctx, job, task)).await
}

/// Records the job's webhook event if it has receivers and ended. `acked`: the task whose ack
/// this follows; while its segment still has work the job cannot have ended.
async fn tell_webhooks<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    acked: Option<&Task>,
) -> Result<()> {
    if webhooks::outbox::receivers(&ctx.config.webhooks, job).is_empty() {
        return Ok(());
    }
    let id = job.spec.id.as_str();
    if let Some(t) = acked {
        let key = keys::segment(id, &job.gen, t.index / SEGMENT_TASKS);
        if load::<Segment, _>(ctx.store, &key)
            .await?
            .is_some_and(|s| is_live(&s.value))
        {
            return Ok(());
        }
    }
    // Read again: the flags may have changed since `job` was read.
    if let Some(fresh) = load::<JobRecord, _>(ctx.store, &keys::job(id)).await? {
        let view = rollup::load_view(ctx.store, &fresh.value).await?;
        webhooks::emit(ctx, &fresh.value, &view).await?;
    }
    Ok(())
}
