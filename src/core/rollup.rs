//! A job's counters, state and progress, computed from its segments each time they are read.
//!
//! Deriving them (rather than keeping counters on the job record) means they can never disagree
//! with the tasks: a task change is one CAS on one segment and nothing else has to follow.

use super::error::Result;
use super::model::{JobRecord, OnFailure, Segment, Task, TaskState};
use super::records::{load, Rec};
use crate::store::{keys, Store};

pub use crate::wire::jobs::{Counts, Job as JobView, JobState};

/// Reads every segment of a job (a job of n tasks has n/64 segments).
pub async fn segments<S: Store>(store: &S, job: &JobRecord) -> Result<Vec<Rec<Segment>>> {
    let mut out = Vec::with_capacity(job.segments() as usize);
    for k in 0..job.segments() {
        if let Some(seg) =
            load::<Segment, _>(store, &keys::segment(&job.spec.id, &job.gen, k)).await?
        {
            out.push(seg);
        }
    }
    Ok(out)
}

/// The state rule, in one place.
pub fn state(job: &JobRecord, c: &Counts, started: bool) -> JobState {
    if job.canceled {
        JobState::Canceled
    } else if c.total > 0 && c.completed == c.total {
        JobState::Completed
    } else if job.failed || (c.failed > 0 && job.spec.on_failure == OnFailure::Fail) {
        JobState::Failed
    } else if c.queued + c.leased == 0 {
        // Every task finished and some did not complete.
        JobState::Failed
    } else if waits_whole(job, started) {
        JobState::Waiting
    } else if job.paused {
        JobState::Paused
    } else if started {
        JobState::Active
    } else {
        JobState::Queued
    }
}

/// Whether a job shows as `waiting`: it waits for other jobs and, frame by frame, none of its
/// tasks ran yet (once one did, it is `active` while the rest may still wait).
fn waits_whole(job: &JobRecord, started: bool) -> bool {
    let runs_already = job.spec.after_frames && started;
    !job.waiting_on.is_empty() && !runs_already
}

/// Rolls a job and its tasks up into the view.
pub fn view<'a>(job: &JobRecord, tasks: impl Iterator<Item = &'a Task>) -> JobView {
    let mut c = Counts::default();
    let (mut frames_done, mut units_done, mut started) = (0u64, 0f64, false);
    let mut updated = job.updated_ms;
    let mut last_end = 0u64;
    let mut error = None;
    for t in tasks {
        if t.state == TaskState::Failed && error.is_none() {
            let what = match t.frames {
                Some(f) if f.from == f.to => format!("task {} (frame {})", t.index, f.from),
                Some(f) => format!("task {} (frames {}-{})", t.index, f.from, f.to),
                None => format!("task {}", t.index),
            };
            let why = t.error.as_deref().unwrap_or("no error given");
            error = Some(format!("{what} failed: {why}"));
        }
        c.total += 1;
        updated = updated.max(t.updated_ms);
        started |= t.attempts > 0;
        match t.state {
            TaskState::Queued => c.queued += 1,
            TaskState::Leased => c.leased += 1,
            TaskState::Completed => c.completed += 1,
            TaskState::Failed => c.failed += 1,
            TaskState::Canceled => c.canceled += 1,
        }
        if t.state.is_terminal() {
            last_end = last_end.max(t.updated_ms);
        }
        let frames = t.frame_count();
        let done = match (t.state, t.progress) {
            (TaskState::Completed, _) => frames,
            (TaskState::Leased, Some(p)) if p.total > 0 => (p.done.min(p.total) * frames) / p.total,
            _ => 0,
        };
        frames_done += done;
        units_done += done as f64 / frames.max(1) as f64;
    }
    let state = state(job, &c, started);
    let progress = if job.frames_total > 0 {
        frames_done as f64 / job.frames_total as f64
    } else if c.total > 0 {
        units_done / c.total as f64
    } else {
        0.0
    };
    let finished_ms = state
        .is_finished()
        .then(|| job.ended_ms.unwrap_or(last_end.max(job.created_ms)));
    JobView {
        spec: crate::core::model::JobSpec {
            webhooks: crate::core::webhooks::target::shown(&job.spec.webhooks),
            ..job.spec.clone()
        },
        state,
        paused: job.paused,
        counts: c,
        frames_total: job.frames_total,
        frames_done: if job.frames_total > 0 { frames_done } else { 0 },
        progress: (progress * 10_000.0).round() / 10_000.0,
        created_ms: job.created_ms,
        updated_ms: updated,
        finished_ms,
        error: error.or_else(|| job.dependency_error.clone()),
        waiting: waiting(job, state),
        submitted_by: job.submitted_by.clone(),
    }
}

/// What a job waiting for others says it waits for.
fn waiting(job: &JobRecord, state: JobState) -> Option<String> {
    let deps = job.waiting_on.join(", ");
    if job.spec.after_frames && !job.waiting_on.is_empty() && !state.is_finished() {
        Some(format!("waits for job {deps} frame by frame"))
    } else {
        (state == JobState::Waiting).then(|| format!("waits for job {deps}"))
    }
}

/// Loads the segments and rolls up.
pub async fn load_view<S: Store>(store: &S, job: &JobRecord) -> Result<JobView> {
    let segs = segments(store, job).await?;
    Ok(view(job, segs.iter().flat_map(|s| s.value.tasks.iter())))
}
