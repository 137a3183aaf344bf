//! Creating a job. The list entry, the segments and the index entries are written first and
//! the job record last: it is the commit point, and readers skip what points at a job record
//! that is absent or of another generation (a submit that died halfway leaves orphans, never
//! a claimable task without an index entry).

use crate::core::auth::sha256_hex;
use crate::core::error::{Error, Result};
use crate::core::frames::{self, FrameRange};
use crate::core::job_list::{self, Listed};
use crate::core::model::{JobRecord, JobSpec, Segment, Task, SEGMENT_TASKS};
use crate::core::records::{load, save};
use crate::core::scheduler::index::{self, Entry};
use crate::core::scheduler::task_ref::load_job;
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};

/// What a `/v1` submit did.
#[derive(Debug)]
pub enum Submitted {
    /// A new job.
    Created(JobRecord),
    /// The same spec was submitted before under this id: that job.
    Existing(JobRecord),
}

/// Submits a validated spec (`runs`: its frame runs; `submitted_by`: the personal token): a new job, or the job already stored
/// under its id when that one has the same spec (idempotent re-submit); 409 when it has
/// another.
pub async fn submit<S: Store>(
    ctx: &Ctx<'_, S>,
    spec: JobSpec,
    runs: &[FrameRange],
    submitted_by: Option<crate::wire::tokens::SubmittedBy>,
) -> Result<Submitted> {
    let digest = sha256_hex(&serde_json::to_string(&spec).unwrap_or_default());
    let same_or_conflict = |existing: JobRecord| -> Result<Submitted> {
        if existing.digest == digest {
            Ok(Submitted::Existing(existing))
        } else {
            Err(Error::Conflict(format!(
                "job {} already exists with another spec",
                existing.spec.id
            )))
        }
    };
    if let Some(existing) = load::<JobRecord, _>(ctx.store, &keys::job(&spec.id)).await? {
        return same_or_conflict(existing.value);
    }
    let spec_after = spec.after_jobs.clone();
    let chunks = frames::chunks(runs, spec.chunk_size);
    // A job waiting frame by frame starts with every task held (`per_frame`).
    let held = spec.after_frames;
    let tasks: Vec<Task> = if chunks.is_empty() {
        vec![Task::new(0, None, ctx.now_ms)]
    } else {
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, f)| Task {
                held,
                ..Task::new(i as u32, Some(f), ctx.now_ms)
            })
            .collect()
    };
    let record = JobRecord {
        frames_total: frames::count(runs),
        tasks: tasks.len() as u32,
        gen: ctx.token()[..16].to_string(),
        digest: digest.clone(),
        spec,
        canceled: false,
        failed: false,
        paused: false,
        created_ms: ctx.now_ms,
        updated_ms: ctx.now_ms,
        ended_ms: None,
        list_page: 0,
        nexrender: None,
        submitted_by,
        waiting_on: spec_after.clone(),
        dependency_error: None,
        round: 0,
    };
    // Listed as a dependent before the commit point, checked after it (`depend`).
    Box::pin(super::depend::register(ctx, &record)).await?;
    match create(ctx, record, tasks).await? {
        Ok(job) => {
            if !job.waiting_on.is_empty() {
                Box::pin(super::depend::check_waiting(ctx, &job.spec.id)).await?;
                let job = load_job(ctx, &job.spec.id).await?.value;
                return Ok(Submitted::Created(job));
            }
            Ok(Submitted::Created(job))
        }
        Err(existing) => same_or_conflict(existing),
    }
}

/// Appends index entries for every segment of `job` that still has queued or leased tasks
/// (`live`; `None`: every segment, for a fresh job). Nothing for a job still waiting for
/// whole jobs: `depend::check_waiting` indexes it when it is released. A job waiting frame by
/// frame is indexed segment by segment as its tasks are released (`per_frame`): a fresh one
/// has every task held, so nothing.
pub async fn index_segments<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    live: Option<&[u32]>,
) -> Result<()> {
    if !job.waiting_on.is_empty() && !job.spec.after_frames {
        return Ok(());
    }
    let segs: Vec<u32> = match live {
        Some(l) => l.to_vec(),
        None if job.spec.after_frames => Vec::new(),
        None => (0..job.segments()).collect(),
    };
    let entries: Vec<Entry> = segs
        .into_iter()
        .map(|seg| Entry {
            job: job.spec.id.clone(),
            gen: job.gen.clone(),
            seg,
            t: ctx.now_ms,
            n: ctx.ids.random() as u64,
        })
        .collect();
    for part in index::parts_of(&job.spec) {
        let entries = entries.clone();
        index::append(ctx, &job.spec.queue, &part, job.spec.priority, entries).await?;
    }
    Ok(())
}

/// Writes a new job: list entry, segments and index entries first, the job record last (the
/// commit point). Returns the record, or the existing one when the id was taken meanwhile.
pub async fn create<S: Store>(
    ctx: &Ctx<'_, S>,
    mut job: JobRecord,
    tasks: Vec<Task>,
) -> Result<std::result::Result<JobRecord, JobRecord>> {
    let id = job.spec.id.clone();
    job.list_page = job_list::append(
        ctx,
        Listed {
            id: id.clone(),
            gen: job.gen.clone(),
        },
    )
    .await?;
    for (k, chunk) in tasks.chunks(SEGMENT_TASKS as usize).enumerate() {
        let seg = Segment {
            tasks: chunk.to_vec(),
        };
        save(
            ctx.store,
            &keys::segment(&id, &job.gen, k as u32),
            &seg,
            Cond::Any,
        )
        .await?;
    }
    index_segments(ctx, &job, None).await?;
    if save(ctx.store, &keys::job(&id), &job, Cond::Absent)
        .await?
        .is_some()
    {
        return Ok(Ok(job));
    }
    // Another submit of the same id won the race; our writes are orphans the readers skip.
    let existing = load_job(ctx, &id).await?.value;
    Ok(Err(existing))
}
