//! A job's input manifest: checked and stored at submit, read back by nodes page by page.
//!
//! The manifest is not inlined in the job record: 10,000 entries are over a megabyte, and every
//! job view, list page and claim would carry them. The job keeps a small [`Inputs`] (count,
//! bytes, digest) and the entries live in pages named by the manifest's digest, so the same
//! files submitted again share pages and a racing submit can only write identical bytes.

use super::manifest::{self, Bounds};
use super::FileEntry;
use crate::core::error::{Error, Result};
use crate::core::http::{json, query, query_u64};
use crate::core::model::{JobSpec, JobType};
use crate::core::records::{load, save};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use crate::wire::blobs::InputsPage;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// Entries per stored page.
pub const PAGE_ENTRIES: usize = 1000;

/// What a job record says about its input manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Digest of the manifest ([`manifest::digest`]); names its pages.
    pub sha256: String,
    /// Number of files.
    pub files: u64,
    /// Bytes in all.
    pub bytes: u64,
}

/// Checks `entries` as the input manifest of `spec` (limits, paths, the blend file among
/// them, every blob already on the farm) and stores its pages. Store first, job after: pages
/// nobody references are harmless, a job without its pages would not be.
pub async fn accept<S: Store>(
    ctx: &Ctx<'_, S>,
    spec: &JobSpec,
    mut entries: Vec<FileEntry>,
) -> Result<Inputs> {
    manifest::check("inputs", &entries, Bounds::inputs(&ctx.config.limits))?;
    if spec.kind == JobType::Blender {
        let file = spec
            .params
            .get("file")
            .and_then(|f| f.as_str())
            .unwrap_or("");
        if !entries.iter().any(|e| e.path == file) {
            return Err(Error::field(
                "params.file",
                format!("params.file {file:?} is not among the inputs; with inputs, params.file is a path of the manifest"),
            ));
        }
    }
    super::require_present(ctx, "inputs", &entries).await?;
    let digest = manifest::digest(&entries);
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    for (page, chunk) in entries.chunks(PAGE_ENTRIES).enumerate() {
        let key = keys::manifest_page(&digest, page as u64);
        if ctx.store.get(&key).await?.is_none() {
            save(ctx.store, &key, &chunk, Cond::Any).await?;
        }
    }
    Ok(Inputs {
        sha256: digest,
        files: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size).sum(),
    })
}

/// The job whose outputs are the inputs of a job of `kind` with `params`: `params.from_job` of
/// an `ffmpeg` job. The one place for this rule (the server lists those outputs, the node runs
/// such a task in a work dir and reads its frames there).
pub fn from_job(kind: JobType, params: &serde_json::Value) -> Option<&str> {
    if kind != JobType::Ffmpeg {
        return None;
    }
    params.get("from_job").and_then(|v| v.as_str())
}

/// `GET /v1/jobs/{id}/inputs?cursor=N`: one page of the job's input manifest, with the cursor
/// of the next page (`null` after the last).
pub async fn list<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &str,
    q: Option<&str>,
) -> Result<Response<Bytes>> {
    let job = crate::core::scheduler::task_ref::load_job(ctx, job)
        .await?
        .value;
    if let (None, Some(source)) = (&job.spec.inputs, from_job(job.spec.kind, &job.spec.params)) {
        // An encode of a render that carried its files: its inputs are that render's outputs
        // (complete: the source is among `after_jobs`, so this job runs after it completed).
        let (files, next) =
            super::outputs::page(ctx, source, &query(q), super::outputs::PAGE_MAX as usize).await?;
        // Only the frames it encodes: a render's other outputs (passes written elsewhere,
        // frames outside the range) are not downloaded for nothing.
        let pattern = job.spec.params["input"].as_str().unwrap_or("");
        let runs = job
            .spec
            .frames
            .as_deref()
            .and_then(|f| crate::core::frames::parse(f).ok())
            .unwrap_or_default();
        let wanted = |path: &str| {
            crate::core::frames::frame_in_name(pattern, path)
                .is_some_and(|f| runs.iter().any(|r| r.contains(f)))
        };
        let files: Vec<_> = files.into_iter().filter(|(_, f)| wanted(&f.path)).collect();
        let page = InputsPage {
            total_files: files.len() as u64,
            total_bytes: files.iter().map(|(_, f)| f.size).sum(),
            files: files.into_iter().map(|(_, f)| f).collect(),
            next,
            sha256: None,
        };
        return Ok(json(StatusCode::OK, &page));
    }
    let Some(inputs) = job.spec.inputs else {
        let empty = InputsPage {
            files: Vec::new(),
            next: None,
            sha256: None,
            total_files: 0,
            total_bytes: 0,
        };
        return Ok(json(StatusCode::OK, &empty));
    };
    let pages = (inputs.files as usize).div_ceil(PAGE_ENTRIES) as u64;
    let page = query_u64(&query(q), "cursor", 0, pages)?;
    let files: Vec<FileEntry> = if page < pages {
        load::<Vec<FileEntry>, _>(ctx.store, &keys::manifest_page(&inputs.sha256, page))
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("page {page} of the inputs of job {}", job.spec.id))
            })?
            .value
    } else {
        Vec::new()
    };
    let next = (page + 1 < pages).then(|| (page + 1).to_string());
    let page = InputsPage {
        files,
        next,
        sha256: Some(inputs.sha256),
        total_files: inputs.files,
        total_bytes: inputs.bytes,
    };
    Ok(json(StatusCode::OK, &page))
}
