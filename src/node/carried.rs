//! Running a task of a job that carries its files (`inputs` on the job): fetch what the cache
//! lacks, materialise a fresh work dir, run the task there as usual (the work dir is its
//! project and output root, so `params.file` and Blender's `//` paths are relative to it),
//! then upload every file it wrote and ack them as `outputs`. The work dir is removed after.
//! Transfers heartbeat like a running program does: a long download must not let the lease
//! lapse (another node would take the task), and a lost lease or a forced shutdown stops it.
//! See docs/ASSETS.md.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cache::{Cache, Fetched, Pin};
use super::client::HeartbeatReply;
use super::error::NodeError;
use super::task::{self, Outcome, TaskEnv};
use super::transfer::{hash_file, Transfer};
use super::workdir::{WorkDir, PENDING};
use crate::core::blobs::FileEntry;
use crate::wire::blobs::MissingBlob;
use crate::wire::queue::ClaimedTask;
use crate::wire::tasks::{Ack, AckStatus, Heartbeat};

/// Runs `task`, whose job carries its files.
pub async fn run(env: TaskEnv<'_>, task: &ClaimedTask) -> Outcome {
    match run_carried(env, task).await {
        Ok(outcome) => outcome,
        Err(Stop::Outcome(outcome)) => outcome,
        Err(Stop::Error(e)) => Outcome::Failed(e.report()),
    }
}

/// Why a carried task stopped before its ack.
enum Stop {
    Error(NodeError),
    /// The lease was lost or the node is shutting down: no ack (or a release).
    Outcome(Outcome),
}

impl From<NodeError> for Stop {
    fn from(e: NodeError) -> Self {
        Stop::Error(e)
    }
}

/// Runs `work` while heartbeating the task every heartbeat interval with `activity`.
async fn beating<T>(
    env: &TaskEnv<'_>,
    task: &ClaimedTask,
    activity: &str,
    work: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, Stop> {
    let every = Duration::from_millis(task.heartbeat_ms.max(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut abort = env.abort.clone();
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out.map_err(Stop::Error),
            _ = tick.tick() => {
                let beat = Heartbeat { lease: task.lease.clone(), progress: None, activity: Some(activity.to_string()), log: None };
                match env.client.heartbeat(&task.id, &beat).await {
                    Ok(HeartbeatReply::Stop { why }) => {
                        tracing::warn!(task = %task.id, reason = %why, "lease lost during a transfer; stopped, no ack");
                        return Err(Stop::Outcome(Outcome::LeaseLost));
                    }
                    Ok(HeartbeatReply::Keep { .. }) => {}
                    Err(e) => tracing::warn!(task = %task.id, error = %e.report(), "heartbeat failed"),
                }
            }
            _ = abort.changed() => return Err(Stop::Outcome(Outcome::Aborted)),
        }
    }
}

async fn run_carried(env: TaskEnv<'_>, task: &ClaimedTask) -> Result<Outcome, Stop> {
    let transfer = Transfer::new(env.client)?;
    let cache = Cache::open(&env.config.state_dir.join("cache"), env.config.cache_bytes)?;
    let mut fetched = Fetched::default();
    let fetch = async {
        let entries = transfer.inputs(&task.job).await?;
        // Pinned until the task ends: another slot's eviction must not take them meanwhile.
        let pin = Pin::new(entries.iter().map(|e| e.sha256.clone()).collect());
        let mut files = Vec::with_capacity(entries.len());
        for e in entries {
            let path = cache.ensure(&transfer, &e, &mut fetched).await?;
            files.push((e, path));
        }
        Ok((files, pin))
    };
    let (files, _pin) = beating(&env, task, "fetching inputs", fetch).await?;
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
    // From here the outputs are the task's result: kept on disk until uploaded and acked, also
    // across a restart of the node (`recover`).
    let pending = Pending {
        id: task.id.clone(),
        lease: task.lease.clone(),
        result: result.clone(),
    };
    write_pending(&work, &pending)?;
    let upload = upload_outputs(&transfer, &work);
    let (outputs, uploaded) = beating(&env, task, "uploading outputs", upload).await?;
    // The outputs stay on this node as cache entries (hard links): the encode of these frames,
    // or any task that needs them, downloads nothing here.
    let made: HashMap<&str, &FileEntry> = outputs.iter().map(|e| (e.path.as_str(), e)).collect();
    for (rel, path) in work.outputs().unwrap_or_default() {
        if let Some(entry) = made.get(rel.as_str()) {
            cache.keep_output(&path, entry);
        }
    }
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

/// A finished task whose outputs wait for upload and ack (`<work dir>/pending.json`).
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    id: String,
    lease: String,
    result: Value,
}

fn write_pending(work: &WorkDir, pending: &Pending) -> Result<(), NodeError> {
    let path = work.root().join(PENDING);
    let tmp = work.root().join("pending.tmp");
    let io = |e| NodeError::io(format!("writing {}", path.display()), e);
    let bytes = serde_json::to_vec(pending).map_err(|e| io(std::io::Error::other(e)))?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// At start: the finished tasks a killed or stopped run left with their outputs not yet
/// acked. Their outputs are uploaded now and their acks returned for the outbox (a lease that
/// lapsed meanwhile is still accepted while nobody else has claimed the task). A work dir
/// whose upload fails stays for the next start.
pub async fn recover(client: &super::client::Client, state_dir: &std::path::Path) -> Vec<Ack> {
    let mut acks = Vec::new();
    let Ok(transfer) = Transfer::new(client) else {
        return acks;
    };
    let dirs = std::fs::read_dir(state_dir.join("work"))
        .into_iter()
        .flatten()
        .flatten();
    for dir in dirs.map(|e| e.path()) {
        let Ok(text) = std::fs::read(dir.join(PENDING)) else {
            continue;
        };
        let Ok(pending) = serde_json::from_slice::<Pending>(&text) else {
            tracing::warn!(dir = %dir.display(), "unreadable pending.json; dropping the work dir");
            drop(WorkDir::adopt(dir));
            continue;
        };
        let work = WorkDir::adopt(dir);
        match upload_outputs(&transfer, &work).await {
            Ok((outputs, (files, bytes))) => {
                tracing::info!(task = %pending.id, files, bytes, "outputs of a task finished before the restart uploaded; acking it");
                acks.push(Ack {
                    id: pending.id,
                    status: AckStatus::Done,
                    lease: pending.lease,
                    result: Some(pending.result),
                    error: None,
                    outputs,
                });
            }
            Err(e) => {
                tracing::warn!(task = %pending.id, error = %e.report(), "cannot upload the outputs of a finished task yet; kept for the next start");
                work.keep();
            }
        }
    }
    acks
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
    let mut missing: HashMap<String, MissingBlob> = transfer
        .missing(&outputs)
        .await?
        .into_iter()
        .map(|m| (m.sha256.clone(), m))
        .collect();
    let (mut files, mut bytes) = (0, 0);
    for (e, path) in outputs.iter().zip(&paths) {
        // Each missing blob once (removed when sent).
        if let Some(blob) = missing.remove(&e.sha256) {
            transfer.upload(path, &blob).await?;
            files += 1;
            bytes += e.size;
        }
    }
    Ok((outputs, (files, bytes)))
}
