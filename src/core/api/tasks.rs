//! `/v1/tasks/{id}`: read a task and its log; heartbeat, ack and release by the lease holder.

use crate::core::auth::Caller;
use crate::core::error::{Error, Result};
use crate::core::http::{body, json, query, query_u64, text};
use crate::core::model::{JobRecord, Task};
use crate::core::scheduler::ack::{complete_if_lease, fail_if_lease};
use crate::core::scheduler::lease::{extend_if_lease, release_if_lease, Beat};
use crate::core::scheduler::task_ref::{read_task, task_id, TaskRef};
use crate::core::Ctx;
use crate::store::{keys, Store};
use crate::wire::tasks as wire;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;

/// A task as the API shows it (the lease token is never shown).
pub fn view(job: &JobRecord, t: &Task) -> wire::Task {
    wire::Task {
        id: task_id(&job.spec.id, t.index),
        job: job.spec.id.clone(),
        index: t.index,
        frames: t.frames,
        state: t.state,
        attempts: t.attempts,
        failures: t.failures,
        failed_nodes: t.failed_nodes.clone(),
        lease: t.lease.as_ref().map(|l| wire::TaskLease {
            node: l.node.clone(),
            expires_ms: l.expires_ms,
            attempt: l.attempt,
        }),
        progress: t.progress,
        activity: t.activity.clone(),
        result: t.result.clone(),
        error: t.error.clone(),
        history: t.history.clone(),
        updated_ms: t.updated_ms,
        held: t.held,
    }
}

/// A node may read only the tasks it holds or held; the admin reads all.
fn may_read(caller: &Caller, t: &Task) -> Result<()> {
    match caller.node_id() {
        None => Ok(()),
        Some(n) if t.history.iter().any(|a| a.node == n) => Ok(()),
        Some(_) => Err(Error::Forbidden(
            "a node may only read its own tasks".into(),
        )),
    }
}

/// `GET /v1/tasks/{id}`.
pub async fn get<S: Store>(ctx: &Ctx<'_, S>, caller: &Caller, id: &str) -> Result<Response<Bytes>> {
    let (job, t) = read_task(ctx, &TaskRef::parse(id)?).await?;
    may_read(caller, &t)?;
    Ok(json(StatusCode::OK, &view(&job, &t)))
}

/// `GET /v1/tasks/{id}/log?attempt=N`: the attempt's log chunks in order, as text.
pub async fn log<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    q: Option<&str>,
) -> Result<Response<Bytes>> {
    let task = TaskRef::parse(id)?;
    let (_, t) = read_task(ctx, &task).await?;
    may_read(caller, &t)?;
    let q = query(q);
    let latest = t.history.last().map_or(0, |a| a.attempt);
    let attempt = query_u64(&q, "attempt", latest as u64, u32::MAX as u64)? as u32;
    let Some(a) = t.history.iter().find(|a| a.attempt == attempt) else {
        return Err(Error::NotFound(format!("attempt {attempt} of task {id}")));
    };
    let mut out = Vec::new();
    for chunk in 0..a.log_chunks {
        if let Some(raw) = ctx.store.get(&keys::log_chunk(id, attempt, chunk)).await? {
            out.extend_from_slice(&raw.value);
        }
    }
    Ok(text(StatusCode::OK, out, "text/plain; charset=utf-8"))
}

/// Deleted job or task while a node still runs it: tell the node to stop.
fn gone_is_stale(e: Error) -> Error {
    match e {
        Error::NotFound(what) => Error::StaleLease(format!("{what} no longer exists; stop")),
        e => e,
    }
}

/// `POST /v1/tasks/{id}/heartbeat`.
pub async fn heartbeat<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let task = TaskRef::parse(id)?;
    let b: wire::Heartbeat = body(bytes)?;
    let limits = &ctx.config.limits;
    if b.log
        .as_ref()
        .is_some_and(|l| l.len() > limits.log_chunk_bytes)
    {
        return Err(Error::TooLarge(format!(
            "log: at most {} bytes per heartbeat",
            limits.log_chunk_bytes
        )));
    }
    if b.activity.as_ref().is_some_and(|a| a.len() > 1024) {
        return Err(Error::field("activity", "activity: at most 1024 bytes"));
    }
    let beat = Beat {
        token: b.lease,
        progress: b.progress,
        activity: b.activity,
        log: b.log,
    };
    let (_, t) = extend_if_lease(ctx, &task, beat, caller.node_id())
        .await
        .map_err(gone_is_stale)?;
    let node_state = super::nodes::touch(ctx, caller, super::nodes::Seen::default()).await?;
    let answer = wire::HeartbeatAnswer {
        keep_running: true,
        lease_expires_ms: t.lease.map(|l| l.expires_ms),
        node_state,
    };
    Ok(json(StatusCode::OK, &answer))
}

pub use crate::wire::tasks::{Ack, AckStatus};

/// Applies one ack.
pub async fn apply_ack<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    ack: Ack,
) -> Result<(JobRecord, Task)> {
    let task = TaskRef::parse(&ack.id)?;
    let node = caller.node_id();
    match ack.status {
        AckStatus::Done => {
            let result = ack.result.unwrap_or(Value::Null);
            if serde_json::to_vec(&result).map_or(0, |v| v.len()) > ctx.config.limits.result_bytes {
                return Err(Error::TooLarge(format!(
                    "result: at most {} bytes of JSON",
                    ctx.config.limits.result_bytes
                )));
            }
            if !ack.outputs.is_empty() {
                crate::core::blobs::outputs::record(ctx, &task, &ack.lease, node, &ack.outputs)
                    .await?;
            }
            complete_if_lease(ctx, &task, &ack.lease, node, result).await
        }
        AckStatus::Failed => {
            let error = match ack.error {
                Some(Value::String(s)) => s,
                Some(Value::Null) | None => "failed (no error given)".to_string(),
                Some(other) => other.to_string(),
            };
            let error: String = error.chars().take(8192).collect();
            fail_if_lease(ctx, &task, &ack.lease, node, error).await
        }
    }
}

/// `POST /v1/tasks/{id}/ack`.
pub async fn ack<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let mut value: Value = body(bytes)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("_id".into(), Value::String(id.to_string()));
        obj.remove("id");
    }
    let ack: Ack = body(&serde_json::to_vec(&value).unwrap_or_default())?;
    let (job, t) = apply_ack(ctx, caller, ack).await?;
    Ok(json(StatusCode::OK, &view(&job, &t)))
}

/// `POST /v1/tasks/{id}/release`.
pub async fn release<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let b: wire::Release = body(bytes)?;
    let (job, t) = release_if_lease(ctx, &TaskRef::parse(id)?, &b.lease, caller.node_id()).await?;
    Ok(json(StatusCode::OK, &view(&job, &t)))
}
