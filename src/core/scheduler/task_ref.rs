//! Task ids (`{job}.{index}`), and the read-modify-CAS of one task that every transition of a
//! single task goes through (`update_task`, over `core::cas::update`).

use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::model::{JobRecord, Segment, Task, SEGMENT_TASKS};
use crate::core::records::{load, Rec};
use crate::core::validate::is_ident;
use crate::core::Ctx;
use crate::store::{keys, Store};

/// A parsed task id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    /// Job id.
    pub job: String,
    /// Task index in the job.
    pub index: u32,
}

impl TaskRef {
    /// Parses `{job}.{index}`.
    pub fn parse(id: &str) -> Result<TaskRef> {
        let bad = || Error::NotFound(format!("task {id}"));
        let (job, index) = id.rsplit_once('.').ok_or_else(bad)?;
        let index = index.parse().map_err(|_| bad())?;
        if !is_ident(job, 64) {
            return Err(bad());
        }
        Ok(TaskRef {
            job: job.to_string(),
            index,
        })
    }

    /// The id.
    pub fn id(&self) -> String {
        task_id(&self.job, self.index)
    }

    /// Segment number holding the task.
    pub fn segment(&self) -> u32 {
        self.index / SEGMENT_TASKS
    }
}

/// The id of task `index` of `job`.
pub fn task_id(job: &str, index: u32) -> String {
    format!("{job}.{index}")
}

/// Loads a job record or answers 404.
pub async fn load_job<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Rec<JobRecord>> {
    load(ctx.store, &keys::job(id))
        .await?
        .ok_or_else(|| Error::NotFound(format!("job {id}")))
}

/// Reads one task (and its job) without changing anything.
pub async fn read_task<S: Store>(ctx: &Ctx<'_, S>, task: &TaskRef) -> Result<(JobRecord, Task)> {
    let job = load_job(ctx, &task.job).await?.value;
    let key = keys::segment(&job.spec.id, &job.gen, task.segment());
    let seg = load::<Segment, _>(ctx.store, &key).await?;
    let found = seg.and_then(|s| s.value.tasks.into_iter().find(|t| t.index == task.index));
    match found {
        Some(t) => Ok((job, t)),
        None => Err(Error::NotFound(format!("task {}", task.id()))),
    }
}

/// Applies `change` to one task and writes its segment with a CAS (`core::cas`), re-reading
/// and re-applying on a lost CAS. `change` sees the freshly read task every time, so its guard
/// (lease token, state) is always checked against what is actually written over. Returns the
/// job and the task as written.
pub async fn update_task<S, F>(
    ctx: &Ctx<'_, S>,
    task: &TaskRef,
    mut change: F,
) -> Result<(JobRecord, Task)>
where
    S: Store,
    F: FnMut(&JobRecord, &mut Task) -> Result<()>,
{
    let job = load_job(ctx, &task.job).await?.value;
    let key = keys::segment(&job.spec.id, &job.gen, task.segment());
    let what = format!("task {}", task.id());
    let gone = || Error::NotFound(format!("task {}", task.id()));
    let written = cas::update(ctx.store, &key, &what, async |seg: Option<Rec<Segment>>| {
        let mut seg = seg.ok_or_else(gone)?.value;
        let t = seg
            .tasks
            .iter_mut()
            .find(|t| t.index == task.index)
            .ok_or_else(gone)?;
        change(&job, t)?;
        t.updated_ms = ctx.now_ms;
        let written = t.clone();
        Ok(Step::Write(seg, written))
    })
    .await?;
    Ok((job, written))
}
