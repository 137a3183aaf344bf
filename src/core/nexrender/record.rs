//! Reading and writing nexrender jobs: the job record (with the nexrender JSON) and its one
//! task. The task is written first by every transition (it decides), the record after it (it
//! describes); a crash between the two leaves a record that `job::present` corrects on read.

use crate::core::error::{Error, Result};
use crate::core::model::{JobRecord, JobType, Segment, Task};
use crate::core::records::{self, Rec};
use crate::core::scheduler::task_ref::load_job;
use crate::core::validate::is_ident;
use crate::core::Ctx;
use crate::store::{keys, Store};

fn not_found(uid: &str) -> Error {
    Error::NotFound(format!("nexrender job {uid}"))
}

/// The job and its task, or 404 when there is no nexrender job of that uid (a `/v1` job of
/// another type is not one).
pub async fn load<S: Store>(ctx: &Ctx<'_, S>, uid: &str) -> Result<(JobRecord, Task)> {
    if !is_ident(uid, 64) {
        return Err(not_found(uid));
    }
    // The record first: listing skips other jobs without reading their segments.
    let job = match load_job(ctx, uid).await {
        Ok(rec) if rec.value.spec.kind == JobType::Nexrender => rec.value,
        Ok(_) | Err(Error::NotFound(_)) => return Err(not_found(uid)),
        Err(e) => return Err(e),
    };
    let key = keys::segment(uid, &job.gen, 0);
    let seg: Option<Rec<Segment>> = records::load(ctx.store, &key).await?;
    match seg.and_then(|s| s.value.tasks.into_iter().find(|t| t.index == 0)) {
        Some(task) => Ok((job, task)),
        None => Err(not_found(uid)),
    }
}

/// Read-modify-CAS of the job record; `change` sees the freshly read record on every try.
pub async fn update<S, F>(ctx: &Ctx<'_, S>, uid: &str, mut change: F) -> Result<JobRecord>
where
    S: Store,
    F: FnMut(&mut JobRecord),
{
    crate::core::lifecycle::update_job(ctx, uid, |job| {
        change(job);
        Ok(())
    })
    .await
}
