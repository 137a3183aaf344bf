//! A job that renders again makes the jobs that used its frames wait for it again: a requeued
//! render re-encodes its preview video and re-runs its comp, instead of leaving them completed
//! with the old frames (or running them at once on a mix of old and new ones).
//!
//! After a requeue of job `X` ([`after_requeue`]), every job `D` waiting for `X` (`keys::dependents`)
//! that was not ended by a cancel or a failure takes `X` into `waiting_on` again, and its tasks
//! that use a frame `X` is to render again go back to the queue (`Event::Rewait`): all of them
//! for a whole-job wait, those overlapping the frames for a frame-by-frame one (held again). A
//! task of `D` running meanwhile is withdrawn: it would finish on the old frames. Then the same
//! for the jobs waiting for `D`, and so on down the chain (no cycles: a job only names jobs that
//! existed before it).
//!
//! Why no release is lost (the rules of `depend.rs` and `per_frame.rs`):
//! - `D`'s record names `X` again *before* its tasks go back, and `depend::check_waiting` runs
//!   on `D` *after* them. An ack completing `X` meanwhile writes its task first and reads `D`
//!   after; so either that ack sees `D` waiting (and releases it), or this final check sees `X`
//!   completed (and releases it), and a frame-by-frame sweep there releases every task whose
//!   frames were rendered again while its tasks were being held.
//! - If `X` completed and released `D` between the two writes, `D` no longer waits but has
//!   tasks queued again: the final step indexes them (held ones are released first), which is
//!   what `check_waiting` would have done.
//!
//! Every step is idempotent, so a requeue answered 503 (too much contention) may be sent again
//! and finishes the work: the frames `X` is to render are those of its tasks not completed.

use super::{index_segments, live_segments, per_frame, update_job};
use crate::core::cas::{self, Step};
use crate::core::error::Result;
use crate::core::frames::FrameRange;
use crate::core::model::{JobRecord, Segment, Task, TaskState, SEGMENT_TASKS};
use crate::core::records::{load, Rec};
use crate::core::scheduler::transition::{apply, Event};
use crate::core::task_map::TaskMap;
use crate::core::Ctx;
use crate::store::{keys, Store};
use std::collections::BTreeSet;

/// What a job is to render again: the frames of its tasks that are not completed (`None` for
/// a task without frames).
pub type Again = Vec<Option<FrameRange>>;

/// The part of [`Again`] that `tasks` make: the frames of those not completed.
pub fn again_of<'t>(tasks: impl IntoIterator<Item = &'t Task>) -> Again {
    tasks
        .into_iter()
        .filter(|t| t.state != TaskState::Completed)
        .map(|t| t.frames)
        .collect()
}

/// After `job` was requeued: the jobs waiting for it wait again for what it renders again
/// (`again`), and so on down the chain (see the module doc).
pub async fn after_requeue<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    again: &Again,
) -> Result<()> {
    if again.is_empty() {
        return Ok(());
    }
    for waiter in super::depend::dependents_of(ctx, &job.spec.id).await? {
        Box::pin(rewait(ctx, &waiter, &job.spec.id, again)).await?;
    }
    Ok(())
}

/// `id` waits again for `dep`, which renders `again` anew.
async fn rewait<S: Store>(ctx: &Ctx<'_, S>, id: &str, dep: &str, again: &Again) -> Result<()> {
    let Some(rec) = load::<JobRecord, _>(ctx.store, &keys::job(id)).await? else {
        return Ok(());
    };
    let job = rec.value;
    // Ended by a cancel or a failure (its own, or a dependency's under its policy): it stays
    // ended until requeued itself (`steer::requeue`, which makes it wait again).
    if job.canceled || job.failed {
        return Ok(());
    }
    let uses = uses_of(&job, again);
    if uses.is_empty() {
        return Ok(());
    }
    let job = if job.waiting_on.iter().any(|d| d == dep) {
        job
    } else {
        update_job(ctx, id, |j| {
            if !j.waiting_on.iter().any(|d| d == dep) && !j.canceled && !j.failed {
                j.waiting_on.push(dep.to_string());
                // What it said about an earlier wait (`continue`) is history now.
                j.dependency_error = None;
                // Its next end is a new webhook event.
                j.round += 1;
            }
            Ok(())
        })
        .await?
    };
    if job.canceled || job.failed {
        return Ok(());
    }
    let why = format!("job {dep} renders its frames again");
    let hold = job.spec.after_frames;
    let pick = |t: &Task| uses.contains(&t.index);
    // What this job renders again in turn: the frames of its tasks in `uses`, now queued.
    let mut its_again = Again::new();
    let segs: BTreeSet<u32> = uses.iter().map(|t| t / SEGMENT_TASKS).collect();
    for seg in segs {
        let key = keys::segment(id, &job.gen, seg);
        let what = format!("segment {seg} of job {id}");
        let tasks = cas::update(ctx.store, &key, &what, async |rec: Option<Rec<Segment>>| {
            let Some(Rec { mut value, .. }) = rec else {
                return Ok(Step::Stop(Vec::new()));
            };
            let mut touched = false;
            for t in value.tasks.iter_mut().filter(|t| pick(t)) {
                // Refused for a task already waiting as asked: nothing to write for it.
                let event = Event::Rewait { hold, why: &why };
                touched |= apply(t, event, ctx.now_ms).is_ok();
            }
            let picked: Vec<Task> = value.tasks.iter().filter(|t| pick(t)).cloned().collect();
            Ok(if touched {
                Step::Write(value, picked)
            } else {
                Step::Stop(picked)
            })
        })
        .await?;
        its_again.extend(again_of(&tasks));
    }
    // Down the chain even when nothing changed here: a requeue sent again after a 503 finishes
    // what the first one left.
    Box::pin(after_requeue(ctx, &job, &its_again)).await?;
    // Released between the record and its tasks (see the module doc): index what runs again.
    let Some(now) = load::<JobRecord, _>(ctx.store, &keys::job(id)).await? else {
        return Ok(());
    };
    let now = now.value;
    if now.waiting_on.is_empty() && !now.canceled && !now.failed {
        if now.spec.after_frames {
            per_frame::release_all(ctx, &now).await?;
        }
        index_segments(ctx, &now, Some(&live_segments(ctx, &now).await?)).await?;
    }
    Box::pin(super::depend::check_waiting(ctx, id)).await
}

/// The tasks of `job` that use a frame in `again`: every task for a whole-job wait, those
/// rendering an overlapping frame for a frame-by-frame one.
fn uses_of(job: &JobRecord, again: &Again) -> BTreeSet<u32> {
    if !job.spec.after_frames || again.iter().any(Option::is_none) {
        return (0..job.tasks).collect();
    }
    let map = TaskMap::of(&job.spec);
    again
        .iter()
        .flatten()
        .flat_map(|range| map.tasks_overlapping(range))
        .collect()
}
