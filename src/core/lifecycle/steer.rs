//! Steering a job: cancel, pause, resume, requeue, a new priority or tag set, delete.
//!
//! Cancel, pause and a new priority or tags act on the claim index lazily: the job's entries
//! are not touched, and the claim that meets one drops it (`claimable::job_open`). Resume,
//! requeue and a new priority or tags write new entries for the segments that still have work.

use super::{cancel_remaining, index_segments, live_segments, reopen, update_job};
use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::job_list;
use crate::core::model::{DependencyFailure, JobRecord, Segment};
use crate::core::records::Rec;
use crate::core::rollup::{self, JobState};
use crate::core::scheduler::task_ref::load_job;
use crate::core::scheduler::transition::{apply, Event};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};

/// What `POST /v1/jobs/{id}/{action}` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// End the job: its remaining tasks are canceled.
    Cancel,
    /// No new claims until resumed; running tasks finish.
    Pause,
    /// Claims again.
    Resume,
    /// Run failed and canceled tasks again (`all`: completed ones too; by default only when
    /// the whole job completed).
    Requeue {
        /// Completed tasks too.
        all: Option<bool>,
    },
}

/// Applies `action` to `job` (as just read). A finished job cannot be canceled, paused or
/// resumed (409); any job can be requeued.
pub async fn act<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord, action: Action) -> Result<JobRecord> {
    let id = job.spec.id.as_str();
    let state = rollup::load_view(ctx.store, job).await?.state;
    let finished = |verb: &str| {
        Error::Conflict(format!(
            "job {id} is already {} and cannot be {verb}",
            state.as_str()
        ))
    };
    match action {
        Action::Cancel => {
            if state.is_finished() {
                return Err(finished("canceled"));
            }
            let job = update_job(ctx, id, |j| {
                j.canceled = true;
                j.ended_ms = Some(ctx.now_ms);
                Ok(())
            })
            .await?;
            cancel_remaining(ctx, &job, "the job was canceled").await?;
            Box::pin(super::ended(ctx, &job)).await?;
            Ok(job)
        }
        Action::Pause => {
            if state.is_finished() {
                return Err(finished("paused"));
            }
            update_job(ctx, id, |j| {
                j.paused = true;
                Ok(())
            })
            .await
        }
        Action::Resume => {
            if state.is_finished() {
                return Err(finished("resumed"));
            }
            let job = update_job(ctx, id, |j| {
                j.paused = false;
                Ok(())
            })
            .await?;
            index_segments(ctx, &job, Some(&live_segments(ctx, &job).await?)).await?;
            Ok(job)
        }
        Action::Requeue { all } => {
            requeue(ctx, id, all.unwrap_or(state == JobState::Completed)).await
        }
    }
}

/// Clears the job's end and pause, requeues its failed and canceled tasks (and completed ones
/// with `completed_too`), and indexes what has work again. A segment whose retries run out
/// answers 503: the request may be sent again (a requeue is never refused).
async fn requeue<S: Store>(ctx: &Ctx<'_, S>, id: &str, completed_too: bool) -> Result<JobRecord> {
    let job = update_job(ctx, id, |j| {
        reopen(j);
        j.paused = false;
        // Its next end is a new webhook event.
        j.round += 1;
        // A job that went on without a failed dependency (`continue`) waits for its jobs
        // again: what they render now runs, what they still lack is skipped again.
        if j.spec.on_dependency_failure == DependencyFailure::Continue && j.waiting_on.is_empty() {
            j.waiting_on.clone_from(&j.spec.after_jobs);
            j.dependency_error = None;
        }
        Ok(())
    })
    .await?;
    // What the job is to render again: the frames of its tasks not completed now.
    let mut again = super::rewait::Again::new();
    for k in 0..job.segments() {
        let key = keys::segment(id, &job.gen, k);
        let what = format!("segment {k} of job {id}");
        let pending = cas::update(ctx.store, &key, &what, async |seg: Option<Rec<Segment>>| {
            let Some(Rec { mut value, .. }) = seg else {
                return Ok(Step::Stop(Vec::new()));
            };
            for t in value.tasks.iter_mut() {
                // Refused for leased tasks (they run on) and, without `completed_too`,
                // completed ones: they stay as they are.
                let _ = apply(t, Event::Requeued { completed_too }, ctx.now_ms);
            }
            let pending = super::rewait::again_of(&value.tasks);
            Ok(Step::Write(value, pending))
        })
        .await?;
        again.extend(pending);
    }
    index_segments(ctx, &job, Some(&live_segments(ctx, &job).await?)).await?;
    // A job ended by a failed dependency waits again, and is released or ended anew.
    Box::pin(super::depend::check_waiting(ctx, id)).await?;
    // The jobs that used what it renders again wait for it again (`rewait`).
    Box::pin(super::rewait::after_requeue(ctx, &job, &again)).await?;
    Ok(job)
}

/// A new priority and/or tag set (validated): new index entries under them; the old ones are
/// dropped by the claims that meet them.
pub async fn steer<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    priority: Option<i64>,
    tags: Option<Vec<String>>,
) -> Result<JobRecord> {
    let job = update_job(ctx, id, |j| {
        if let Some(pr) = priority {
            j.spec.priority = pr;
        }
        if let Some(t) = &tags {
            j.spec.tags.clone_from(t);
        }
        Ok(())
    })
    .await?;
    index_segments(ctx, &job, Some(&live_segments(ctx, &job).await?)).await?;
    Ok(job)
}

/// Deletes a job: the record goes first (from then on the job is gone for everyone), then its
/// list entry and segments. Nodes still running its tasks are told to stop (`stale_lease`).
pub async fn delete<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<()> {
    let rec = load_job(ctx, id).await?;
    if ctx
        .store
        .delete(&keys::job(id), Cond::Version(rec.version))
        .await?
        == crate::store::Write::Lost
    {
        return Err(Error::Conflict(format!(
            "job {id} changed while it was being deleted; try again"
        )));
    }
    job_list::remove(ctx, rec.value.list_page, id).await?;
    for k in 0..rec.value.segments() {
        ctx.store
            .delete(&keys::segment(id, &rec.value.gen, k), Cond::Any)
            .await?;
    }
    ctx.store.delete(&keys::job_preview(id), Cond::Any).await?;
    crate::core::webhooks::outbox::forget(ctx, &rec.value).await?;
    Box::pin(super::depend::forget(ctx, id)).await
}
