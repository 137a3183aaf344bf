//! Last-rendered previews (as Flamenco shows them): a node sends a small PNG or JPEG of the
//! last frame it saved, and the dashboard shows the latest one per job and for the whole farm.
//!
//! Design decision: a preview is stored as raw bytes behind a small JSON header in one record
//! per job and one for the farm (`keys::job_preview`, `keys::farm_preview`), at most
//! [`MAX_BYTES`] of image: Durable Object storage takes values up to 128 KiB, so 120 KiB of image
//! plus the header fits every store we run on, with no base64 (+33 %). The rate limit (one
//! preview per task per [`EVERY_MS`]) keeps the last accepted time of each recent task inside the
//! job's own preview record, so checking it costs no extra read and no new key.
//!
//! Rejected alternative: a preview record per task. It would keep a throttle time without a map,
//! but leave up to 100,000 images per job behind and still need a "latest" pointer per job.

use crate::core::auth::Caller;
use crate::core::cas::{self, CAS_RETRIES};
use crate::core::error::{Error, Result};
use crate::core::http::{json, query};
use crate::core::scheduler::lease::check_lease;
use crate::core::scheduler::task_ref::{load_job, read_task, TaskRef};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store, Write};
use crate::wire::previews::PreviewStored;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest preview image, bytes (fits a 128 KiB Durable Object value with its header).
pub const MAX_BYTES: usize = 120 * 1024;
/// Shortest time between two accepted previews of one task.
pub const EVERY_MS: u64 = 2_000;
/// Most tasks whose last preview time a job's record remembers (the busiest tasks win).
const RECENT_KEPT: usize = 256;
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];

/// What is stored in front of the image bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    job: String,
    /// Generation of the job the preview belongs to: a preview of a deleted job is never shown
    /// for a new job of the same id.
    gen: String,
    task: String,
    node: String,
    content_type: String,
    received_ms: u64,
    /// Task id → time its last preview was accepted (job records only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    recent: BTreeMap<String, u64>,
}

/// Record layout: 4 bytes of header length (big endian), the JSON header, the image.
fn encode(meta: &Meta, image: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(meta).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + head.len() + image.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(image);
    out
}

fn decode<'r>(key: &str, raw: &'r [u8]) -> Result<(Meta, &'r [u8])> {
    let corrupt = || crate::store::StoreError::Corrupt {
        key: key.to_string(),
    };
    let len = raw.get(..4).ok_or_else(corrupt)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let head = raw.get(4..4 + len).ok_or_else(corrupt)?;
    let meta = serde_json::from_slice(head).map_err(|_| corrupt())?;
    Ok((meta, &raw[4 + len..]))
}

/// The image type, from the magic bytes, checked against `Content-Type` when one is sent.
fn image_type(headers: &HeaderMap, body: &[u8]) -> Result<&'static str> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let sniffed = if body.starts_with(PNG_MAGIC) {
        Some("image/png")
    } else if body.starts_with(JPEG_MAGIC) {
        Some("image/jpeg")
    } else {
        None
    };
    match (declared.as_deref(), sniffed) {
        (Some(d), _) if d != "image/png" && d != "image/jpeg" => Err(Error::field(
            "content-type",
            format!("content-type {d} is not accepted; send image/png or image/jpeg"),
        )),
        (_, None) => Err(Error::bad(
            "the body is not a PNG or JPEG image (its first bytes are not a PNG or JPEG signature)",
        )),
        (Some(d), Some(s)) if d != s => Err(Error::field(
            "content-type",
            format!("content-type says {d} but the bytes are {s}"),
        )),
        (_, Some(s)) => Ok(s),
    }
}

/// The lease token, from the `x-edgefarm-lease` header or the `lease` query parameter.
fn lease_token(req: &Request<Bytes>) -> Result<String> {
    let from_header = req
        .headers()
        .get("x-edgefarm-lease")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());
    from_header
        .or_else(|| query(req.uri().query()).remove("lease"))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::field(
                "lease",
                "send the task's lease token in the x-edgefarm-lease header or ?lease=",
            )
        })
}

/// `POST /v1/tasks/{id}/preview`: stores the image as the latest of its job and of the farm.
pub async fn upload<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>> {
    let task = TaskRef::parse(id)?;
    let image = req.body();
    if image.len() > MAX_BYTES {
        return Err(Error::TooLarge(format!(
            "a preview may be at most {MAX_BYTES} bytes; send a smaller thumbnail"
        )));
    }
    let content_type = image_type(req.headers(), image)?;
    let token = lease_token(req)?;
    let (job, t) = read_task(ctx, &task).await?;
    let node = check_lease(&job, &t, &token, caller.node_id())?
        .node
        .clone();
    let key = keys::job_preview(&job.spec.id);
    let task_id = task.id();
    let what = format!("the preview of job {}", job.spec.id);
    cas::retry(&what, CAS_RETRIES, async || {
        let current = ctx.store.get(&key).await?;
        let mut recent = match &current {
            Some(raw) => decode(&key, &raw.value)?.0.recent,
            None => BTreeMap::new(),
        };
        recent.retain(|_, at| *at + EVERY_MS > ctx.now_ms);
        if let Some(at) = recent.get(&task_id) {
            let wait_ms = at + EVERY_MS - ctx.now_ms;
            let e = Error::Throttled(format!(
                "task {task_id} sent a preview {} ms ago; at most one every {EVERY_MS} ms",
                ctx.now_ms - at
            ));
            let mut resp = e.into_response();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait_ms.div_ceil(1000).max(1)),
            );
            return Ok(Some(resp));
        }
        recent.insert(task_id.clone(), ctx.now_ms);
        if recent.len() > RECENT_KEPT {
            // Keep the newest: an old entry is past its window anyway at these rates.
            let mut times: Vec<u64> = recent.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() - RECENT_KEPT];
            recent.retain(|_, at| *at >= cut);
        }
        let mut meta = Meta {
            job: job.spec.id.clone(),
            gen: job.gen.clone(),
            task: task_id.clone(),
            node: node.clone(),
            content_type: content_type.to_string(),
            received_ms: ctx.now_ms,
            recent,
        };
        let cond = current
            .as_ref()
            .map_or(Cond::Absent, |r| Cond::Version(r.version));
        if ctx.store.put(&key, &encode(&meta, image), cond).await? == Write::Lost {
            return Ok(None);
        }
        // The farm's preview is last-writer-wins: nothing is checked against it.
        meta.recent.clear();
        let farm = encode(&meta, image);
        ctx.store
            .put(&keys::farm_preview(), &farm, Cond::Any)
            .await?;
        let stored = PreviewStored {
            job: meta.job,
            task: meta.task,
            node: meta.node,
            content_type: content_type.to_string(),
            bytes: image.len() as u64,
            received_ms: ctx.now_ms,
        };
        Ok(Some(json(StatusCode::OK, &stored)))
    })
    .await
}

/// The image answer, or 304 when the client already has this version (`If-None-Match`).
fn image_answer(meta: &Meta, image: &[u8], version: u64, headers: &HeaderMap) -> Response<Bytes> {
    let etag = format!("\"p{version}\"");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = Response::new(if fresh {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(image)
    });
    *resp.status_mut() = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    let pairs = [
        (header::CONTENT_TYPE.as_str(), meta.content_type.clone()),
        (header::ETAG.as_str(), etag),
        (header::CACHE_CONTROL.as_str(), "private, no-cache".into()),
        ("x-edgefarm-job", meta.job.clone()),
        ("x-edgefarm-task", meta.task.clone()),
        ("x-edgefarm-node", meta.node.clone()),
        ("x-edgefarm-preview-ms", meta.received_ms.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

/// `GET /v1/jobs/{id}/preview`: the latest preview of a job.
pub async fn of_job<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>> {
    let job = load_job(ctx, id).await?.value;
    let key = keys::job_preview(id);
    let none = || Error::NotFound(format!("preview of job {id}"));
    let raw = ctx.store.get(&key).await?.ok_or_else(none)?;
    let (meta, image) = decode(&key, &raw.value)?;
    if meta.gen != job.gen {
        return Err(none());
    }
    Ok(image_answer(&meta, image, raw.version, headers))
}

/// `GET /v1/preview`: the latest preview of the whole farm.
pub async fn of_farm<S: Store>(ctx: &Ctx<'_, S>, headers: &HeaderMap) -> Result<Response<Bytes>> {
    let key = keys::farm_preview();
    let raw = ctx
        .store
        .get(&key)
        .await?
        .ok_or_else(|| Error::NotFound("preview of the farm".into()))?;
    let (meta, image) = decode(&key, &raw.value)?;
    Ok(image_answer(&meta, image, raw.version, headers))
}
