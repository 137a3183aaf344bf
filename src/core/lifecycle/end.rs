//! A job ending early: fail-fast when a task ran out of attempts under `on_failure = fail`
//! (called by the ack that failed it and by the claim that settled it), and the cancel of
//! whatever is left of a job (also after `/v1` cancel).
//!
//! Both run after the change that caused them is written (the failed task, the canceled
//! flag), so when retries run out here they are left for later ([`cas::best_effort`]) instead
//! of answering 503: the request's own change landed, and a retry would be refused (the
//! lease is gone, the job is already canceled). What is left is safe: the job reads failed or
//! canceled anyway (its state is rolled up from its failed task or its flag, `rollup.rs`), a
//! canceled job's leases are refused at their next heartbeat (`lease::check_lease`), and no
//! claim takes a task of a job whose flag is set. What may remain is a fail-fast that did not
//! stop the job's other tasks (they run on), or canceled tasks still counted as queued.

use crate::core::cas::{self, Step};
use crate::core::error::Result;
use crate::core::model::{JobRecord, OnFailure, Segment, Task};
use crate::core::records::Rec;
use crate::core::scheduler::transition::{apply, Event};
use crate::core::Ctx;
use crate::store::{keys, Store};

/// Marks a job failed (a task ran out of attempts under `on_failure = fail`) and cancels what
/// is left of it; then, as under `continue`, settles what follows a job's end (`ended`).
/// Nothing when the job is gone.
pub async fn fail_job<S: Store>(ctx: &Ctx<'_, S>, job_id: &str) -> Result<()> {
    let what = format!("job {job_id}");
    let key = keys::job(job_id);
    let marked = cas::update(
        ctx.store,
        &key,
        &what,
        async |rec: Option<Rec<JobRecord>>| {
            let Some(Rec { value: mut job, .. }) = rec else {
                return Ok(Step::Stop(None));
            };
            if job.failed || job.spec.on_failure != OnFailure::Fail {
                return Ok(Step::Stop(Some((false, job))));
            }
            job.failed = true;
            job.ended_ms = Some(ctx.now_ms);
            job.updated_ms = ctx.now_ms;
            Ok(Step::Write(job.clone(), Some((true, job))))
        },
    )
    .await;
    let Some(Some((marked, job))) = cas::best_effort(marked, "fail-fast of a job")? else {
        return Ok(());
    };
    if marked {
        cancel_remaining(ctx, &job, "another task of the job failed").await?;
    }
    // Under `continue` the job ends failed once nothing else is left to run.
    Box::pin(super::ended(ctx, &job)).await
}

/// Cancels every queued or leased task of a job (their nodes learn it at the next heartbeat).
/// Segment by segment; if this stops halfway the job flags still stop every claim.
pub async fn cancel_remaining<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    why: &str,
) -> Result<()> {
    for k in 0..job.segments() {
        // Refused for tasks already completed, failed or canceled: they stay.
        let canceled = cancel_in_segment(ctx, job, k, why, |_| true).await;
        cas::best_effort(canceled, "cancel of a job's tasks")?;
    }
    Ok(())
}

/// Cancels the tasks of segment `k` of `job` that `pick` names (one compare-and-swap; nothing
/// written when none of them could be canceled). The one segment walk of [`cancel_remaining`]
/// and of the per-frame skip (`per_frame::cancel_held`), which differ only in what they pick
/// and in what they do when retries run out.
pub(super) async fn cancel_in_segment<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    k: u32,
    why: &str,
    pick: impl Fn(&Task) -> bool,
) -> Result<()> {
    let key = keys::segment(&job.spec.id, &job.gen, k);
    let what = format!("segment {k} of job {}", job.spec.id);
    cas::update(ctx.store, &key, &what, async |seg: Option<Rec<Segment>>| {
        let Some(Rec { mut value, .. }) = seg else {
            return Ok(Step::Stop(()));
        };
        let mut changed = false;
        for t in value.tasks.iter_mut().filter(|t| pick(t)) {
            changed |= apply(t, Event::Canceled { why }, ctx.now_ms).is_ok();
        }
        Ok(if changed {
            Step::Write(value, ())
        } else {
            Step::Stop(())
        })
    })
    .await
}
