//! Which blobs are garbage: the one rule every backend's collector follows (`edgefarm gc` on
//! the native server; the same calls for a bucket or another store).
//!
//! A blob is garbage when **no job on the farm references it** and its record is **older than
//! the collector's age**. A job references the files of its input manifest and the outputs
//! every attempt of its tasks acked, whatever the job's state: a queued, running or paused job
//! is never robbed of its files, and a finished job keeps its frames until it is deleted
//! (`DELETE /v1/jobs/{id}` is how a user frees them). The age covers what no job names yet: a
//! blob uploaded for a submit in flight, or outputs uploaded before their ack.
//!
//! How a collector applies it (the order matters): take [`referenced`]; for each blob record
//! that [`is_garbage`], [`forget`] it first (a compare-and-swap on the record's version: a
//! record changed meanwhile stays), and only then delete its bytes. A request that reads the
//! record after that sees the blob missing (and uploads it again) instead of naming bytes about
//! to go. Left open: a submit that checked its blobs before the record went and commits its job
//! after the collector read the jobs; its node then meets a 404 and fails the task. The age makes
//! that need a re-submit of a shot unused for that long racing the collector.

use super::inputs::PAGE_ENTRIES;
use super::{BlobRecord, FileEntry};
use crate::core::error::Result;
use crate::core::job_list;
use crate::core::model::{JobRecord, Segment, SEGMENT_TASKS};
use crate::core::records::load;
use crate::core::scheduler::task_ref::task_id;
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use std::collections::BTreeSet;

/// Every blob some job on the farm references: the files of its input manifest and the
/// outputs acked by any attempt of any of its tasks. Reads every job (collectors run rarely).
pub async fn referenced<S: Store>(ctx: &Ctx<'_, S>) -> Result<BTreeSet<String>> {
    let mut jobs = Vec::new();
    job_list::walk(ctx, None, usize::MAX, async |l: &job_list::Listed| {
        jobs.push(l.id.clone());
        Ok(true)
    })
    .await?;
    jobs.sort();
    jobs.dedup();
    let mut out = BTreeSet::new();
    for id in jobs {
        let Some(job) = load::<JobRecord, _>(ctx.store, &keys::job(&id)).await? else {
            continue;
        };
        let job = job.value;
        if let Some(inputs) = &job.spec.inputs {
            let pages = (inputs.files as usize).div_ceil(PAGE_ENTRIES) as u64;
            for page in 0..pages {
                let key = keys::manifest_page(&inputs.sha256, page);
                if let Some(p) = load::<Vec<FileEntry>, _>(ctx.store, &key).await? {
                    out.extend(p.value.into_iter().map(|e| e.sha256));
                }
            }
        }
        for s in 0..job.segments() {
            let key = keys::segment(&job.spec.id, &job.gen, s);
            let Some(seg) = load::<Segment, _>(ctx.store, &key).await? else {
                continue;
            };
            for (i, task) in seg.value.tasks.iter().enumerate() {
                let id = task_id(&job.spec.id, s * SEGMENT_TASKS + i as u32);
                for attempt in 1..=task.attempts {
                    let key = keys::task_outputs(&id, attempt);
                    if let Some(o) = load::<Vec<FileEntry>, _>(ctx.store, &key).await? {
                        out.extend(o.value.into_iter().map(|e| e.sha256));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The rule: a blob no job references whose record is older than `older_than_ms` at `now_ms`.
pub fn is_garbage(
    sha256: &str,
    record: &BlobRecord,
    referenced: &BTreeSet<String>,
    now_ms: u64,
    older_than_ms: u64,
) -> bool {
    !referenced.contains(sha256) && record.created_ms.saturating_add(older_than_ms) <= now_ms
}

/// A blob's record and its version, for [`forget`].
pub async fn record_version<S: Store>(
    ctx: &Ctx<'_, S>,
    sha256: &str,
) -> Result<Option<(BlobRecord, u64)>> {
    Ok(load::<BlobRecord, _>(ctx.store, &keys::blob(sha256))
        .await?
        .map(|r| (r.value, r.version)))
}

/// Deletes a garbage blob's record if it is still at `version`; `true` when it went. Delete the
/// bytes only after this returned `true`.
pub async fn forget<S: Store>(ctx: &Ctx<'_, S>, sha256: &str, version: u64) -> Result<bool> {
    let w = ctx
        .store
        .delete(&keys::blob(sha256), Cond::Version(version))
        .await?;
    Ok(matches!(w, crate::store::Write::Done(_)))
}
