//! Running a task of a job that carries its files (`inputs` on the job): fetch what the cache
//! lacks, materialise a fresh work dir, run the task there as usual (the work dir is its
//! project and output root, so `params.file` and Blender's `//` paths are relative to it),
//! then upload every file it wrote and ack them as `outputs`. The work dir is removed after.
//! See docs/ASSETS.md.

use std::collections::HashSet;

use serde_json::json;

use super::cache::{Cache, Fetched};
use super::error::NodeError;
use super::task::{self, Outcome, TaskEnv};
use super::transfer::{hash_file, Transfer};
use super::wire::ClaimedTask;
use super::workdir::WorkDir;
use crate::core::blobs::FileEntry;

/// Runs `task`, whose job carries its files.
pub async fn run(env: TaskEnv<'_>, task: &ClaimedTask) -> Outcome {
    match run_carried(env, task).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(e.report()),
    }
}

async fn run_carried(env: TaskEnv<'_>, task: &ClaimedTask) -> Result<Outcome, NodeError> {
    let transfer = Transfer::new(env.client)?;
    let cache = Cache::open(&env.config.state_dir.join("cache"), env.config.cache_bytes)?;
    let entries = transfer.inputs(&task.job).await?;
    let mut fetched = Fetched::default();
    let mut files = Vec::with_capacity(entries.len());
    for e in entries {
        let path = cache.ensure(&transfer, &e, &mut fetched).await?;
        files.push((e, path));
    }
    tracing::info!(task = %task.id, downloaded_files = fetched.files, downloaded_bytes = fetched.bytes, cached_files = fetched.cached, "inputs ready");
    let work = WorkDir::create(&env.config.state_dir.join("work"), &task.id, task.attempt)?;
    work.materialise(&files)?;
    let mut config = env.config.clone();
    config.project_root = work.input();
    config.output_root = work.output();
    let inner = TaskEnv {
        client: env.client,
        config: &config,
        heartbeat_ms: env.heartbeat_ms,
        abort: env.abort.clone(),
        server_draining: env.server_draining,
    };
    let outcome = task::run(inner, task).await;
    let keep: HashSet<String> = files.iter().map(|(e, _)| e.sha256.clone()).collect();
    let Outcome::Done(mut result) = outcome else {
        cache.evict(&keep);
        return Ok(outcome);
    };
    let (outputs, uploaded) = upload_outputs(&transfer, &work).await?;
    cache.evict(&keep);
    if let Some(obj) = result.as_object_mut() {
        obj.insert(
            "transfer".into(),
            json!({"downloaded_files": fetched.files, "downloaded_bytes": fetched.bytes,
                   "cached_files": fetched.cached, "uploaded_files": uploaded.0, "uploaded_bytes": uploaded.1}),
        );
    }
    Ok(Outcome::DoneWithFiles(result, outputs))
}

/// Hashes every file under the work dir's output folder and uploads those the farm lacks.
/// Returns the outputs and (files, bytes) uploaded.
async fn upload_outputs(
    transfer: &Transfer,
    work: &WorkDir,
) -> Result<(Vec<FileEntry>, (u64, u64)), NodeError> {
    let mut outputs = Vec::new();
    let mut paths = Vec::new();
    for (rel, path) in work.outputs()? {
        let p = path.clone();
        let (sha256, size) = tokio::task::spawn_blocking(move || hash_file(&p))
            .await
            .map_err(|e| NodeError::io("hashing outputs", std::io::Error::other(e)))?
            .map_err(|e| NodeError::io(format!("hashing {}", path.display()), e))?;
        outputs.push(FileEntry {
            path: rel,
            sha256,
            size,
        });
        paths.push(path);
    }
    let missing: HashSet<String> = transfer.missing(&outputs).await?.into_iter().collect();
    let mut sent = HashSet::new();
    let (mut files, mut bytes) = (0, 0);
    for (e, path) in outputs.iter().zip(&paths) {
        if missing.contains(&e.sha256) && sent.insert(e.sha256.clone()) {
            transfer.upload(path, &e.sha256, e.size).await?;
            files += 1;
            bytes += e.size;
        }
    }
    Ok((outputs, (files, bytes)))
}
