//! The files a task made: acked by the node that ran it (after uploading each as a blob) and
//! listed per job for `edgefarm fetch`.
//!
//! Outputs are written under the attempt's own key before the ack's compare-and-swap, like the
//! result (`scheduler::ack`): a late or duplicate node can never replace the winner's list,
//! because the listing reads only the attempt that completed the task.

use super::manifest::{self, Bounds};
use super::FileEntry;
use crate::core::error::Result;
use crate::core::http::{json, query, query_u64};
use crate::core::model::{Outcome, Segment, TaskState, SEGMENT_TASKS};
use crate::core::records::{load, save};
use crate::core::scheduler::lease::hold;
use crate::core::scheduler::task_ref::{load_job, read_task, task_id, TaskRef};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use crate::wire::blobs::{OutputFile, OutputsPage};
use bytes::Bytes;
use http::{Response, StatusCode};

/// Checks the outputs of an ack and stores them under the caller's attempt. Refused (with the
/// store unchanged) when a path or hash is malformed or a blob is not on the farm; a caller
/// that does not hold the lease writes nothing (its ack fails next).
pub async fn record<S: Store>(
    ctx: &Ctx<'_, S>,
    task: &TaskRef,
    token: &str,
    node: Option<&str>,
    outputs: &[FileEntry],
) -> Result<()> {
    manifest::check("outputs", outputs, Bounds::outputs(&ctx.config.limits))?;
    super::require_present(ctx, "outputs", outputs).await?;
    let (job, mut t) = read_task(ctx, task).await?;
    // On a copy: `hold` may revive a lapsed lease; the ack's own write does that for real.
    let Ok(lease) = hold(ctx, &job, &mut t, token, node) else {
        return Ok(());
    };
    save(
        ctx.store,
        &keys::task_outputs(&task.id(), lease.attempt),
        &outputs,
        Cond::Any,
    )
    .await?;
    Ok(())
}

/// Most outputs per page.
pub const PAGE_MAX: u64 = 1000;

/// `GET /v1/jobs/{id}/outputs?cursor=&limit=`: the outputs of the job's completed tasks, in
/// task order; `next` is the cursor of the following page (`null` after the last task).
pub async fn list<S: Store>(
    ctx: &Ctx<'_, S>,
    job_id: &str,
    q: Option<&str>,
) -> Result<Response<Bytes>> {
    let q = query(q);
    let limit = query_u64(&q, "limit", 200, PAGE_MAX)?.max(1) as usize;
    let (files, next) = page(ctx, job_id, &q, limit).await?;
    let outputs: Vec<OutputFile> = files
        .into_iter()
        .map(|(task, file)| OutputFile {
            task,
            url: format!("/v1/blobs/{}", file.sha256),
            file,
        })
        .collect();
    Ok(json(StatusCode::OK, &OutputsPage { outputs, next }))
}

/// About `limit` outputs of `job_id`'s completed tasks from the task the query's `cursor`
/// names (whole tasks: a page may hold more), each with its task's id; the next cursor.
pub async fn page<S: Store>(
    ctx: &Ctx<'_, S>,
    job_id: &str,
    q: &std::collections::HashMap<String, String>,
    limit: usize,
) -> Result<(Vec<(String, FileEntry)>, Option<String>)> {
    let job = load_job(ctx, job_id).await?.value;
    let mut index = query_u64(q, "cursor", 0, job.tasks as u64)? as u32;
    let mut files: Vec<(String, FileEntry)> = Vec::new();
    let mut seg: Option<(u32, Segment)> = None;
    while index < job.tasks && files.len() < limit {
        let s = index / SEGMENT_TASKS;
        if seg.as_ref().map(|(n, _)| *n) != Some(s) {
            let key = keys::segment(&job.spec.id, &job.gen, s);
            let value = load::<Segment, _>(ctx.store, &key).await?.map(|r| r.value);
            seg = Some((s, value.unwrap_or(Segment { tasks: Vec::new() })));
        }
        let task = seg
            .as_ref()
            .and_then(|(_, sg)| sg.tasks.get((index % SEGMENT_TASKS) as usize));
        let winner = task
            .filter(|t| t.state == TaskState::Completed)
            .and_then(|t| {
                t.history
                    .iter()
                    .rev()
                    .find(|a| a.outcome == Some(Outcome::Completed))
            });
        if let Some(a) = winner {
            let id = task_id(&job.spec.id, index);
            let key = keys::task_outputs(&id, a.attempt);
            if let Some(rec) = load::<Vec<FileEntry>, _>(ctx.store, &key).await? {
                files.extend(rec.value.into_iter().map(|f| (id.clone(), f)));
            }
        }
        index += 1;
    }
    let next = (index < job.tasks).then(|| index.to_string());
    Ok((files, next))
}
