//! Jobs that wait for others frame by frame (`after_frames`): a comp of frame 10 starts as soon
//! as frame 10 is rendered, not when the whole render completed.
//!
//! Such a job is created like any waiting job (`waiting_on`, `depend.rs`), but with every task
//! **held** (`Task::held`) and no index entry. A held task is never claimable (the task rule,
//! `claimable::claimable`); while the job waits, its entries are not skipped wholesale
//! (`claimable::job_waiting`), so the tasks released so far are claimed as usual.
//!
//! **Release.** After an ack completes a task of a job `D`, [`after_ack`] looks at every job `W`
//! waiting for `D` frame by frame: the tasks of `W` rendering the acked frames (`task_map`, no
//! read) that are held and whose frames are now rendered by completed tasks of *every* job
//! `W` still waits for (a job `W` no longer waits for completed as a whole) are released: per
//! segment of `W`, the segment's index entry first, then one compare-and-swap of the segment
//! applying `Event::Covered`. A frame no task of a job waited for renders waits for that whole
//! job (released by `depend::check_waiting`, like every task still held then).
//!
//! Why no release is lost or doubled:
//! - Two acks completing the two tasks a held task waits for: each writes its task first and
//!   reads the other's segment after, so with a linearizable store one of them sees both.
//! - Entries first: a segment's entry is written before the write that releases its first
//!   task, and a claim that meets an entry whose segment has only held work keeps it (a held
//!   task is queued, so the segment is live: `claimable::is_live`). A segment that already has
//!   a released queued or leased task has its entry (it was written before that task's
//!   release, and is dropped only once nothing in the segment is queued or leased), so no
//!   second one is written; the compare-and-swap of the segment makes that decision exact.
//!   While the job is paused a claim skips its entries rather than dropping them (a resume may
//!   have read the segment just before this release wrote it); a new priority or tag set read
//!   after the release writes the entry again under them ([`recheck`]).
//! - A crash between the entry and the release leaves an entry and a held task: the next ack
//!   rendering its frames, a `GET /v1/jobs/{id}` or a requeue ([`sweep`] from
//!   `depend::check_waiting`), or at the latest the whole-job release finishes it. Releasing
//!   twice changes nothing (`Covered` is refused for a task not held), and a claim hands a
//!   task out once (its own compare-and-swap).
//!
//! Cost: an ack with nobody waiting for its job reads one record (`depend`). Otherwise, per job
//! waiting frame by frame: its record, the records of the other jobs it waits for, the segments
//! of those jobs that render the acked frames (usually one each), and per segment of `W` holding
//! a task rendering them: one read, the entry when it is the segment's first release (one
//! append: about four operations), one write; then one read of `W` again. Never every segment.
//!
//! Requeue keeps each task's flag: a requeued held task (canceled while it waited) waits for
//! its frames again; a released one runs again at once (its frames were rendered).

use super::index_segments;
use crate::core::cas::{self, Step};
use crate::core::error::Result;
use crate::core::model::{JobRecord, Segment, Task, TaskState, SEGMENT_TASKS};
use crate::core::records::{load, Rec};
use crate::core::scheduler::transition::{apply, Event};
use crate::core::task_map::{covered, TaskMap};
use crate::core::Ctx;
use crate::store::{keys, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// After an ack completed `task` of job `dep`: releases what it rendered for the jobs in
/// `waiters` that wait for `dep` frame by frame (see the module doc). Best effort per job: too
/// much contention leaves the rest for the next check.
pub async fn after_ack<S: Store>(
    ctx: &Ctx<'_, S>,
    dep: &JobRecord,
    task: &Task,
    waiters: &[String],
) -> Result<()> {
    let Some(frames) = task.frames else {
        return Ok(());
    };
    for id in waiters {
        let Some(w) = load::<JobRecord, _>(ctx.store, &keys::job(id)).await? else {
            continue;
        };
        let w = w.value;
        if !w.spec.after_frames || w.canceled || w.failed || !w.waiting_on.contains(&dep.spec.id) {
            continue;
        }
        let candidates = TaskMap::of(&w.spec).tasks_overlapping(&frames);
        let released = release(ctx, &w, Some(&candidates), Some(dep)).await;
        cas::best_effort(released, "per-frame release")?;
    }
    Ok(())
}

/// Releases every held task of `job` whose frames are rendered (a submit after part of what it
/// waits for was rendered, a release a crash cut short). Reads every segment of `job`.
pub async fn sweep<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<()> {
    if job.spec.after_frames && !job.canceled && !job.failed {
        release(ctx, job, None, None).await?;
    }
    Ok(())
}

/// Every job `job` waits for has completed: releases every task still held, segment by
/// segment (entries first), before `depend::check_waiting` clears `waiting_on`. After this a
/// queued task of the job is never held (the rule the claim relies on).
pub async fn release_all<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<()> {
    let mut released = Vec::new();
    for seg in 0..job.segments() {
        let key = keys::segment(&job.spec.id, &job.gen, seg);
        let read = load::<Segment, _>(ctx.store, &key).await?;
        if read
            .as_ref()
            .is_some_and(|r| r.value.tasks.iter().any(held))
        {
            release_segment(ctx, job, seg, read, &|_| true).await?;
            released.push(seg);
        }
    }
    recheck(ctx, job, &released).await
}

/// Under `on_dependency_failure = continue`, once nothing it waits for is running: cancels
/// every task still held (its frames were not rendered: a job it waits for failed), segment by
/// segment. Run after a [`sweep`], so that what was rendered has been released.
pub async fn cancel_held<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord, why: &str) -> Result<()> {
    for seg in 0..job.segments() {
        // Errors pass through (unlike a cancel's tidying): the caller clears `waiting_on` only
        // after this, and a held task left behind would never run.
        super::end::cancel_in_segment(ctx, job, seg, why, held).await?;
    }
    Ok(())
}

fn held(t: &Task) -> bool {
    t.held && t.state == TaskState::Queued
}

/// Releases the held tasks of `w` among `candidates` (`None`: all) whose frames are rendered.
/// `known`: a job waited for, as the caller already read it.
async fn release<S: Store>(
    ctx: &Ctx<'_, S>,
    w: &JobRecord,
    candidates: Option<&BTreeSet<u32>>,
    known: Option<&JobRecord>,
) -> Result<()> {
    let mut by_seg: BTreeMap<u32, Option<&BTreeSet<u32>>> = BTreeMap::new();
    match candidates {
        Some(c) => {
            for t in c {
                by_seg.insert(t / SEGMENT_TASKS, candidates);
            }
        }
        None => by_seg.extend((0..w.segments()).map(|s| (s, None))),
    }
    if by_seg.is_empty() {
        return Ok(());
    }
    let Some(mut deps) = Deps::load(ctx, w, known).await? else {
        return Ok(());
    };
    let mut released = Vec::new();
    for (seg, only) in by_seg {
        let key = keys::segment(&w.spec.id, &w.gen, seg);
        let read = load::<Segment, _>(ctx.store, &key).await?;
        let Some(r) = &read else { continue };
        // Decided before the compare-and-swap: it needs other jobs' segments. A frame once
        // rendered stays rendered for this purpose (a requeue of the job waited for does not
        // take back a task already released).
        let mut ready = BTreeSet::new();
        for t in r.value.tasks.iter().filter(|t| held(t)) {
            if only.is_some_and(|c| !c.contains(&t.index)) {
                continue;
            }
            if let Some(f) = t.frames {
                if deps.rendered(ctx, &f).await? {
                    ready.insert(t.index);
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        release_segment(ctx, w, seg, read, &|t| ready.contains(&t.index)).await?;
        released.push(seg);
    }
    recheck(ctx, w, &released).await
}

/// Releases the held tasks of segment `seg` of `job` that `pick` names, with one
/// compare-and-swap (`read`: the segment as the caller read it). The segment's index entry is
/// written first when it has no released queued or leased task (one that has, has its entry).
async fn release_segment<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    seg: u32,
    read: Option<Rec<Segment>>,
    pick: &dyn Fn(&Task) -> bool,
) -> Result<()> {
    let key = keys::segment(&job.spec.id, &job.gen, seg);
    let what = format!("segment {seg} of job {}", job.spec.id);
    let mut indexed = false;
    cas::update_from(
        ctx.store,
        &key,
        &what,
        Some(read),
        async |rec: Option<Rec<Segment>>| {
            let Some(Rec { mut value, .. }) = rec else {
                return Ok(Step::Stop(()));
            };
            if !value.tasks.iter().any(|t| held(t) && pick(t)) {
                return Ok(Step::Stop(()));
            }
            let has_entry = value
                .tasks
                .iter()
                .any(|t| matches!(t.state, TaskState::Queued | TaskState::Leased) && !t.held);
            if !has_entry && !indexed {
                // Entries first: a claim meeting it before the write below keeps it.
                index_segments(ctx, job, Some(&[seg])).await?;
                indexed = true;
            }
            for t in value.tasks.iter_mut().filter(|t| pick(t)) {
                // Refused for a task not held (released meanwhile): nothing to do for it.
                let _ = apply(t, Event::Covered, ctx.now_ms);
            }
            Ok(Step::Write(value, ()))
        },
    )
    .await
}

/// After releasing in `segs`: a new priority or tag set written meanwhile may have been missed
/// by both this release's entries and the steer's indexing (which read the segments before
/// the release); one more read of the job, and entries under what it says now if it changed.
async fn recheck<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord, segs: &[u32]) -> Result<()> {
    if segs.is_empty() {
        return Ok(());
    }
    let Some(now) = load::<JobRecord, _>(ctx.store, &keys::job(&job.spec.id)).await? else {
        return Ok(());
    };
    let now = now.value;
    if now.gen == job.gen
        && (now.spec.priority != job.spec.priority || now.spec.tags != job.spec.tags)
    {
        index_segments(ctx, &now, Some(segs)).await?;
    }
    Ok(())
}

/// The jobs a waiting job still waits for, each with its task map and the segments of it read
/// so far (each read once per release).
struct Deps {
    jobs: Vec<Dep>,
}

struct Dep {
    job: JobRecord,
    map: TaskMap,
    segs: HashMap<u32, Option<Segment>>,
}

impl Deps {
    /// `None` when one of them is gone (`depend::check_waiting` ends the waiting job).
    async fn load<S: Store>(
        ctx: &Ctx<'_, S>,
        w: &JobRecord,
        known: Option<&JobRecord>,
    ) -> Result<Option<Deps>> {
        let mut jobs = Vec::new();
        for id in &w.waiting_on {
            let job = match known.filter(|k| &k.spec.id == id) {
                Some(k) => k.clone(),
                None => match load::<JobRecord, _>(ctx.store, &keys::job(id)).await? {
                    Some(r) => r.value,
                    None => return Ok(None),
                },
            };
            jobs.push(Dep {
                map: TaskMap::of(&job.spec),
                job,
                segs: HashMap::new(),
            });
        }
        Ok(Some(Deps { jobs }))
    }

    /// Whether every frame of `range` is rendered by completed tasks of each job.
    async fn rendered<S: Store>(
        &mut self,
        ctx: &Ctx<'_, S>,
        range: &crate::core::frames::FrameRange,
    ) -> Result<bool> {
        for dep in &mut self.jobs {
            let Some(tasks) = dep.map.tasks_rendering(range) else {
                return Ok(false);
            };
            for seg in tasks
                .iter()
                .map(|t| t / SEGMENT_TASKS)
                .collect::<BTreeSet<_>>()
            {
                if !dep.segs.contains_key(&seg) {
                    let key = keys::segment(&dep.job.spec.id, &dep.job.gen, seg);
                    let read = load::<Segment, _>(ctx.store, &key).await?;
                    dep.segs.insert(seg, read.map(|r| r.value));
                }
            }
            let segs = &dep.segs;
            let done = move |i: u32| {
                segs.get(&(i / SEGMENT_TASKS))
                    .and_then(Option::as_ref)
                    .and_then(|s| s.tasks.iter().find(|t| t.index == i))
                    .is_some_and(|t| t.state == TaskState::Completed)
            };
            if !covered(range, [(&dep.map, &done as &dyn Fn(u32) -> bool)]) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
