//! The one hook for "this job may have ended": called after every change that can end a job
//! (the ack of its last task, a task failed for good, fail-fast, cancel, a failed dependency,
//! a nexrender `finished`/`error`). It settles the jobs waiting for it (`depend`) and records
//! its webhook event (`core::webhooks`).
//!
//! Cost on the hot path (every ack): one read (the job's dependents list) when the job has no
//! webhook receivers; with receivers, the job is rolled up (one read per 64 tasks) to see
//! whether it ended.

use crate::core::error::Result;
use crate::core::model::JobRecord;
use crate::core::records::load;
use crate::core::rollup;
use crate::core::webhooks;
use crate::core::Ctx;
use crate::store::{keys, Store};

/// After a change to `job` (as the change left it, or as read before it) that may have ended
/// it.
pub async fn ended<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<()> {
    let id = job.spec.id.as_str();
    if !webhooks::outbox::receivers(&ctx.config.webhooks, job).is_empty() {
        // Read again: the flags may have changed since `job` was read.
        if let Some(fresh) = load::<JobRecord, _>(ctx.store, &keys::job(id)).await? {
            let view = rollup::load_view(ctx.store, &fresh.value).await?;
            webhooks::emit(ctx, &fresh.value, &view).await?;
        }
    }
    Box::pin(super::depend::settle_dependents(ctx, id)).await
}
