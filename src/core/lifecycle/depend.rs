//! Jobs that wait for other jobs (`after_jobs`).
//!
//! A waiting job is created with `waiting_on` = its `after_jobs` and **without index entries**,
//! so no claim ever walks past its tasks. Each job it names keeps a list of who waits for it
//! (`keys::dependents`). When a job ends (its last task acked, fail-fast, cancel),
//! [`settle_dependents`] re-checks every job on that list ([`check_waiting`]): completed
//! dependencies leave `waiting_on`; a failed, canceled or deleted one ends the waiting job per
//! its `on_dependency_failure`; when nothing is left the job's segments are indexed, then
//! `waiting_on` is cleared by compare-and-swap.
//!
//! Why this never loses a release:
//! - Submit writes its name into each dependency's list *before* its job record (the commit
//!   point) and checks the dependencies *after* it; the ack that ends a dependency writes the
//!   task first and reads the list after. With a linearizable store one of the two sees the
//!   other, so either the submit finds the dependency completed or the ack finds the waiter.
//! - The index entries are written before the record that clears `waiting_on`; a claim that
//!   meets an entry of a job still waiting skips it without dropping it
//!   (`claimable::job_waiting`). A crash in between leaves a job waiting with its entries; the
//!   next [`check_waiting`] (any ack of the dependency again, `GET /v1/jobs/{id}`, a requeue)
//!   finishes the release. Every step is idempotent: a second release only adds entries that
//!   claims treat as duplicates.
//!
//! Cycles are impossible by construction: a job may only name jobs that already exist.

use super::{cancel_remaining, index_segments, per_frame, update_job};
use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::model::{DependencyFailure, JobRecord};
use crate::core::records::{load, Rec};
use crate::core::rollup::{self, JobState};
use crate::core::Ctx;
use crate::store::{keys, Store};
use serde::{Deserialize, Serialize};

/// Most jobs that may wait for one job.
pub const MAX_DEPENDENTS: usize = 1000;

/// Who waits for a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Dependents {
    jobs: Vec<String>,
}

/// Before a waiting job is committed: every job it names exists (400 naming the first that
/// does not) and, for a job waiting frame by frame, has frames (400 naming `after_frames`),
/// and lists it as a dependent. Nothing is written before every check passed.
pub async fn register<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<()> {
    for (i, dep) in job.spec.after_jobs.iter().enumerate() {
        let Some(found) = load::<JobRecord, _>(ctx.store, &keys::job(dep)).await? else {
            return Err(Error::field(
                "after_jobs",
                format!("after_jobs[{i}]: there is no job {dep}"),
            ));
        };
        if job.spec.after_frames && found.value.frames_total == 0 {
            return Err(Error::field(
                "after_frames",
                format!("after_frames: job {dep} (after_jobs[{i}]) has no frames to wait for"),
            ));
        }
    }
    for dep in &job.spec.after_jobs {
        let id = job.spec.id.as_str();
        let what = format!("dependents of job {dep}");
        cas::update(
            ctx.store,
            &keys::dependents(dep),
            &what,
            async |rec: Option<Rec<Dependents>>| {
                let mut list = rec.map(|r| r.value).unwrap_or_default();
                if list.jobs.iter().any(|j| j == id) {
                    return Ok(Step::Stop(()));
                }
                if list.jobs.len() >= MAX_DEPENDENTS {
                    return Err(Error::Conflict(format!(
                        "job {dep} already has {MAX_DEPENDENTS} jobs waiting for it"
                    )));
                }
                list.jobs.push(id.to_string());
                Ok(Step::Write(list, ()))
            },
        )
        .await?;
    }
    Ok(())
}

/// The jobs waiting for job `id` (none when nobody ever waited for it).
pub async fn dependents_of<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Vec<String>> {
    let list = load::<Dependents, _>(ctx.store, &keys::dependents(id)).await?;
    Ok(list.map(|l| l.value.jobs).unwrap_or_default())
}

/// After an ack completed `task` of `job` (written before this reads anything): releases the
/// held tasks of jobs waiting for its frames (`per_frame::after_ack`), then re-checks the
/// jobs waiting for it if it may have completed. One read when nobody waits for it (the common
/// case); else one more read (the acked task's segment) when that segment still has work, so
/// the job cannot have completed.
pub async fn settle_after_ack<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    task: &crate::core::model::Task,
) -> Result<()> {
    let id = &job.spec.id;
    let Some(list) = load::<Dependents, _>(ctx.store, &keys::dependents(id)).await? else {
        return Ok(());
    };
    super::per_frame::after_ack(ctx, job, task, &list.value.jobs).await?;
    let seg = task.index / crate::core::model::SEGMENT_TASKS;
    let key = keys::segment(id, &job.gen, seg);
    let segment = load::<crate::core::model::Segment, _>(ctx.store, &key).await?;
    if segment.is_some_and(|s| crate::core::scheduler::claimable::is_live(&s.value)) {
        return Ok(());
    }
    settle_list(ctx, id, &list.value).await
}

/// After `job_id` changed in a way that may have ended it (a job that is gone counts as
/// ended): re-checks the jobs waiting for it. One read when nobody waits for it.
pub async fn settle_dependents<S: Store>(ctx: &Ctx<'_, S>, job_id: &str) -> Result<()> {
    let Some(list) = load::<Dependents, _>(ctx.store, &keys::dependents(job_id)).await? else {
        return Ok(());
    };
    settle_list(ctx, job_id, &list.value).await
}

async fn settle_list<S: Store>(ctx: &Ctx<'_, S>, job_id: &str, list: &Dependents) -> Result<()> {
    if let Some(job) = load::<JobRecord, _>(ctx.store, &keys::job(job_id)).await? {
        if !rollup::load_view(ctx.store, &job.value)
            .await?
            .state
            .is_finished()
        {
            return Ok(());
        }
    }
    for waiting in &list.jobs {
        cas::best_effort(
            check_waiting(ctx, waiting).await,
            "release of a waiting job",
        )?;
    }
    Ok(())
}

/// Re-checks what a waiting job waits for, and releases or ends it (see the module doc).
/// Nothing when the job is gone or not waiting.
pub async fn check_waiting<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<()> {
    let Some(job) = load::<JobRecord, _>(ctx.store, &keys::job(id)).await? else {
        return Ok(());
    };
    let job = job.value;
    if job.waiting_on.is_empty() || job.canceled || job.failed {
        return Ok(());
    }
    let mut done = Vec::new();
    let mut broken = None;
    // Under `continue`: the jobs that ended without completing (they are done with, too).
    let mut gone: Vec<(String, String)> = Vec::new();
    let policy = job.spec.on_dependency_failure;
    for dep in &job.waiting_on {
        let state = match load::<JobRecord, _>(ctx.store, &keys::job(dep)).await? {
            Some(d) => Some(rollup::load_view(ctx.store, &d.value).await?.state),
            None => None,
        };
        let why = match state {
            Some(JobState::Completed) => {
                done.push(dep.clone());
                continue;
            }
            Some(JobState::Failed) => format!("job {dep} failed"),
            Some(JobState::Canceled) => format!("job {dep} was canceled"),
            None => format!("job {dep} was deleted"),
            Some(_) => continue,
        };
        if policy == DependencyFailure::Continue {
            gone.push((dep.clone(), why));
        } else {
            broken = Some(why);
            break;
        }
    }
    if let Some(why) = broken {
        let ended = update_job(ctx, id, |j| {
            if j.waiting_on.is_empty() || j.canceled || j.failed {
                return Ok(());
            }
            match policy {
                DependencyFailure::Fail => j.failed = true,
                DependencyFailure::Cancel | DependencyFailure::Continue => j.canceled = true,
            }
            j.ended_ms = Some(ctx.now_ms);
            j.dependency_error = Some(why.clone());
            Ok(())
        })
        .await?;
        cancel_remaining(ctx, &ended, &why).await?;
        // This job ended too: whoever waits for it (or its webhooks) learns it now.
        return Box::pin(super::ended(ctx, &ended)).await;
    }
    if !gone.is_empty() && done.len() + gone.len() == job.waiting_on.len() {
        // `continue`: nothing it waits for is still running. Frame by frame, what was rendered
        // runs (released while `waiting_on` still names the jobs that rendered it) and what
        // was not is skipped; as a whole, it runs anyway.
        let why = gone
            .iter()
            .map(|(_, w)| w.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if job.spec.after_frames {
            per_frame::sweep(ctx, &job).await?;
            let skipped = format!("{why}: its frames were not rendered");
            per_frame::cancel_held(ctx, &job, &skipped).await?;
        } else {
            let mut released = job.clone();
            released.waiting_on.clear();
            index_segments(ctx, &released, None).await?;
        }
        let note = if job.spec.after_frames {
            format!("{why}; the tasks whose frames it did not render were skipped")
        } else {
            format!("{why}; this job ran anyway")
        };
        let job = update_job(ctx, id, |j| {
            if !j.canceled && !j.failed {
                j.waiting_on.clear();
                j.dependency_error = Some(note.clone());
            }
            Ok(())
        })
        .await?;
        // Everything may have been skipped: then it ended here.
        return Box::pin(super::ended(ctx, &job)).await;
    }
    if done.len() == job.waiting_on.len() {
        if job.spec.after_frames {
            // Every task still held is released (entries first), so that a job no longer
            // waiting has no queued task held.
            per_frame::release_all(ctx, &job).await?;
        } else {
            // Entries first, then the record that makes them valid (`index_segments` indexes
            // nothing for a job still waiting, so it is given the job as it is about to be).
            let mut released = job.clone();
            released.waiting_on.clear();
            index_segments(ctx, &released, None).await?;
        }
    }
    let job = if done.is_empty() {
        job
    } else {
        update_job(ctx, id, |j| {
            // Ended meanwhile (a cancel racing the release): it keeps waiting, and a requeue
            // releases it again — which, frame by frame, also releases the tasks the cancel
            // left held.
            if !j.canceled && !j.failed {
                j.waiting_on.retain(|d| !done.contains(d));
            }
            Ok(())
        })
        .await?
    };
    if !job.waiting_on.is_empty() {
        // Frame by frame: what is rendered already runs (a submit after part of it was
        // rendered, a job waited for that completed, a release a crash cut short).
        per_frame::sweep(ctx, &job).await?;
    }
    Ok(())
}

/// A job deleted: nobody can wait for it any more (its waiters end by their policy). Called
/// after its record is gone, which `settle_dependents` reads as "ended".
pub async fn forget<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<()> {
    settle_dependents(ctx, id).await?;
    ctx.store
        .delete(&keys::dependents(id), crate::store::Cond::Any)
        .await?;
    Ok(())
}
