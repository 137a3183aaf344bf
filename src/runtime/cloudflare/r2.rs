//! Blob bytes on Cloudflare: an R2 bucket binding (`[[r2_buckets]]` in wrangler.toml, binding
//! `EDGEFARM_BLOBS`), streamed through the Worker. The core decides as everywhere (credentials,
//! name, size, whether the farm has the blob) and answers with a `Transfer`; this file moves
//! the bytes between the client and R2 without holding a blob in the Worker's memory.
//!
//! Design decisions:
//! - The bytes go through the Worker, never through the farm's Durable Object: the object
//!   serves the whole farm one event at a time, so a 1 GiB upload through it would stall every
//!   claim. The Worker asks the object with a bodyless copy of the request (the upload's length
//!   in an internal header, `edge::LENGTH_HEADER`), gets the `Transfer` back in a header
//!   (`edge::TRANSFER_HEADER`), streams, and then tells the object the blob is stored
//!   (`edge::STORED_HEADER`). The Worker strips those headers from everything clients send, so
//!   only it can set them.
//! - Verification: R2's `put` is given the expected SHA-256 (`sha256` option), so R2 itself
//!   refuses bytes that do not hash to the blob's name and stores nothing (a put is atomic: the
//!   object is whole or absent). On top, the stored object's size and recorded SHA-256 are
//!   compared with the name, and the object is deleted on any difference. Rejected: hashing in
//!   the Worker while streaming (a JS transform stream per upload, and the bytes would be
//!   visible under their name before the check ended).
//! - Object keys are `blobs/{sha256}`.
//!
//! Large blobs: one request carries at most the plan's body limit (100 MB on Free and Pro), so
//! "which do you lack?" tells clients to send a blob over `EDGEFARM_BLOB_PART_BYTES` (64 MiB) in
//! parts ([`parts`]): an R2 multipart upload to `parts/{sha256}`, one request per part, then the
//! end, where the Worker completes it and copies it to `blobs/{sha256}` with one streamed put
//! that carries the expected SHA-256 — so R2 verifies the whole blob, and the Worker hashes
//! nothing, before it is visible under its name. The temporary object is deleted either way
//! (parts of an abandoned upload are removed by R2's default lifecycle after 7 days). Each step
//! asks the core as a `PUT` of the whole blob would (credentials, name, size, whether the farm
//! lacks it). A blob in parts is at most 5 GiB (one put); beyond that, presigned URLs to R2's S3
//! API (`EDGEFARM_S3_*`) move any size without the Worker.

use super::{
    config, error, from_http, head_of, kv_mode, kv_versions, WebIds, DO_BINDING, KV_BINDING,
};
use crate::blob::ByteRange;
use crate::core::blobs::{Stored, Transfer};
use crate::core::Ctx;
use crate::runtime::edge;
use crate::store::workers_kv::WorkersKv;
use bytes::Bytes;
use worker::{
    Bucket, Data, Date, Env, Headers, Method, Range, Request, RequestInit, Response, Result,
};

/// R2 bucket binding (wrangler.toml).
pub const R2_BINDING: &str = "EDGEFARM_BLOBS";

fn object_key(sha256: &str) -> String {
    format!("blobs/{sha256}")
}

/// Whether the request moves blob bytes (so the Worker serves it here).
pub fn is_transfer(req: &Request) -> bool {
    let method = http::Method::from_bytes(req.method().as_ref().as_bytes()).ok();
    method.is_some_and(|m| edge::is_blob_transfer(&m, &req.path()))
}

/// Default bytes per part of a blob uploaded in parts (`EDGEFARM_BLOB_PART_BYTES`).
pub const DEFAULT_PART_BYTES: u64 = 64 << 20;
/// R2's smallest part (all but the last).
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// Largest blob uploaded in parts: its verified copy is one R2 put.
const MAX_PARTS_BLOB: u64 = 5 << 30;

/// One step of an upload in parts.
enum PartsStep {
    Start,
    Part(u16),
    Done,
}

/// The blob and step of `/v1/blobs/{sha256}/parts[/{n}|/done]`, if the request is one.
fn parts_step(req: &Request) -> Option<(String, PartsStep)> {
    let path = req.path();
    let rest = path.strip_prefix("/v1/blobs/")?;
    let mut it = rest.split('/');
    let (sha, word) = (it.next()?, it.next()?);
    if word != "parts" {
        return None;
    }
    let step = match (req.method(), it.next(), it.next()) {
        (Method::Post, None, _) => PartsStep::Start,
        (Method::Post, Some("done"), None) => PartsStep::Done,
        (Method::Put, Some(n), None) => PartsStep::Part(n.parse().ok().filter(|n| *n >= 1)?),
        _ => return None,
    };
    Some((sha.to_string(), step))
}

/// Whether the request is a step of an upload in parts (the Worker serves it: [`parts`]).
pub fn is_parts(req: &Request) -> bool {
    parts_step(req).is_some()
}

fn query_value(req: &Request, name: &str) -> Option<String> {
    let url = req.url().ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

fn json_answer<T: serde::Serialize>(status: u16, value: &T) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(
        Response::from_bytes(serde_json::to_vec(value).unwrap_or_default())?
            .with_status(status)
            .with_headers(headers),
    )
}

/// Serves a step of an upload in parts (see the module doc).
pub async fn parts(env: &Env, mut req: Request) -> Result<Response> {
    use crate::wire::blobs::{PartStored, PartsDone, PartsStarted};
    let Some((sha256, step)) = parts_step(&req) else {
        return error(404, "not_found", "not a step of an upload in parts");
    };
    let Some(size) = query_value(&req, "size").and_then(|s| s.parse::<u64>().ok()) else {
        drain(&mut req).await;
        return field_error(
            400,
            "bad_request",
            "size",
            "size: the blob's size in bytes is needed",
        );
    };
    // Asked as the `PUT` of the whole blob: credentials, name, size, whether the farm lacks it.
    let asked = head_of(&req, |k| {
        let k = k.to_ascii_lowercase();
        !edge::INTERNAL_HEADERS.contains(&k.as_str()) && k != "content-length"
    })?
    .method("PUT")
    .uri(format!("/v1/blobs/{sha256}"))
    .header("content-length", size.to_string())
    .body(Bytes::new());
    let asked = match asked {
        Ok(r) => r,
        Err(e) => return error(400, "bad_request", &e.to_string()),
    };
    let resp = core(env, asked.clone()).await?;
    let allowed = matches!(
        resp.extensions().get::<Transfer>(),
        Some(Transfer::Receive { .. })
    );
    let bucket = env.bucket(R2_BINDING).ok();
    let Some(bucket) = bucket.filter(|_| allowed) else {
        drain(&mut req).await;
        return from_http(resp);
    };
    if size > MAX_PARTS_BLOB {
        drain(&mut req).await;
        return field_error(
            413,
            "too_large",
            "size",
            "a blob uploaded in parts through the Worker is at most 5 GiB; use an S3 bucket (EDGEFARM_S3_*) for larger ones",
        );
    }
    let key = format!("parts/{sha256}");
    let upload_id = query_value(&req, "upload").unwrap_or_default();
    match step {
        PartsStep::Start => {
            let up = bucket.create_multipart_upload(&key).execute().await?;
            let part_bytes = config(env)
                .ok()
                .and_then(|c| c.blob_part_bytes)
                .unwrap_or(DEFAULT_PART_BYTES);
            let upload = up.upload_id().await;
            json_answer(201, &PartsStarted { upload, part_bytes })
        }
        PartsStep::Part(n) => {
            if upload_id.is_empty() {
                drain(&mut req).await;
                return field_error(
                    400,
                    "bad_request",
                    "upload",
                    "upload: the id the start answered",
                );
            }
            let up = bucket.resume_multipart_upload(&key, &upload_id)?;
            let body = match req.inner().body() {
                Some(stream) => Data::ReadableStream(stream),
                None => Data::Bytes(Vec::new()),
            };
            match up.upload_part(n, body).await {
                Ok(part) => json_answer(
                    200,
                    &PartStored {
                        part: u32::from(n),
                        etag: part.etag(),
                    },
                ),
                Err(e) => field_error(
                    400,
                    "bad_request",
                    "upload",
                    &format!("part {n} was not stored: {e}"),
                ),
            }
        }
        PartsStep::Done => {
            let done: PartsDone = match req.json().await {
                Ok(d) => d,
                Err(e) => return field_error(400, "bad_request", "parts", &format!("parts: {e}")),
            };
            let Some(digest) = unhex(&sha256) else {
                return field_error(400, "bad_request", "sha256", "not a SHA-256");
            };
            let up = bucket.resume_multipart_upload(&key, &upload_id)?;
            let parts = done
                .parts
                .iter()
                .map(|p| worker::UploadedPart::new(p.part as u16, p.etag.clone()));
            if let Err(e) = up.complete(parts).await {
                return field_error(
                    400,
                    "bad_request",
                    "parts",
                    &format!("the upload could not be completed: {e}"),
                );
            }
            let copied = copy_verified(&bucket, &key, &sha256, digest, size).await;
            let _ = bucket.delete(&key).await;
            if let Err(message) = copied {
                return field_error(400, "bad_request", "parts", &message);
            }
            let mut again = asked;
            again.extensions_mut().insert(Stored {
                sha256: sha256.clone(),
                size,
            });
            from_http(core(env, again).await?)
        }
    }
}

/// Copies the completed upload at `from` to `blobs/{sha256}` with one streamed put that carries
/// the expected digest, so R2 refuses bytes that do not hash to the name; then checks the size.
async fn copy_verified(
    bucket: &Bucket,
    from: &str,
    sha256: &str,
    digest: Vec<u8>,
    size: u64,
) -> std::result::Result<(), String> {
    let object = bucket
        .get(from)
        .execute()
        .await
        .map_err(|e| format!("the uploaded parts cannot be read back: {e}"))?
        .ok_or("the completed upload is not in the bucket")?;
    if object.size() != size {
        return Err(format!(
            "the parts hold {} bytes, not the blob's {size}",
            object.size()
        ));
    }
    let body = object.body().ok_or("the completed upload has no body")?;
    let stream = match body.response_body().map_err(|e| e.to_string())? {
        worker::ResponseBody::Stream(s) => Data::ReadableStream(s),
        worker::ResponseBody::Body(b) => Data::Bytes(b),
        worker::ResponseBody::Empty => Data::Bytes(Vec::new()),
    };
    let key = object_key(sha256);
    match bucket
        .put(&key, stream)
        .sha256(digest.clone())
        .execute()
        .await
    {
        Ok(Some(stored))
            if stored.size() == size
                && stored
                    .checksum()
                    .sha256
                    .as_ref()
                    .is_none_or(|r| *r == digest) =>
        {
            Ok(())
        }
        Ok(_) => {
            let _ = bucket.delete(&key).await;
            Err(format!("the stored blob is not {sha256} of {size} bytes"))
        }
        Err(e) => Err(format!("the bytes do not hash to {sha256} (R2: {e})")),
    }
}

/// The request without its body, as the core sees it.
fn bare(req: &Request) -> Result<std::result::Result<http::Request<Bytes>, String>> {
    let b = head_of(req, |k| {
        !edge::INTERNAL_HEADERS.contains(&k.to_ascii_lowercase().as_str())
    })?;
    Ok(b.body(Bytes::new()).map_err(|e| e.to_string()))
}

/// Runs a bodyless blob request through the core, where it runs: in the Worker (KV mode) or in
/// the farm's object (the signals crossing its boundary in internal headers).
async fn core(env: &Env, mut req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
    if kv_mode(env) {
        let config = match config(env) {
            Ok(c) => c,
            Err(m) => return Ok(plain_error(500, "not_configured", &m)),
        };
        let now_ms = Date::now().as_millis();
        let store = WorkersKv::new(env.kv(KV_BINDING)?, kv_versions(), now_ms);
        let ctx = Ctx {
            store: &store,
            config: &config,
            now_ms,
            ids: &WebIds,
            notes: Default::default(),
        };
        return Ok(edge::run_core(req, &ctx).await);
    }
    edge::blob_request_to_object(&mut req);
    let headers = Headers::new();
    for (k, v) in req.headers() {
        if let Ok(v) = v.to_str() {
            headers.append(k.as_str(), v)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(req.method().as_str().to_string()))
        .with_headers(headers);
    let farm = super::var(env, "EDGEFARM_FARM").unwrap_or_else(|| "default".into());
    let stub = env
        .durable_object(DO_BINDING)?
        .id_from_name(&farm)?
        .get_stub()?;
    let mut answer = stub
        .fetch_with_request(Request::new_with_init(
            &format!("https://farm{}", req.uri()),
            &init,
        )?)
        .await?;
    let mut b = http::Response::builder().status(answer.status_code());
    for (k, v) in answer.headers().entries() {
        b = b.header(k, v);
    }
    let body = answer.bytes().await?;
    let mut resp = b
        .body(Bytes::from(body))
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    edge::transfer_from_header(&mut resp);
    Ok(resp)
}

fn plain_error(status: u16, code: &str, message: &str) -> http::Response<Bytes> {
    let body =
        serde_json::to_vec(&crate::wire::errors::ErrorBody::new(code, message)).unwrap_or_default();
    let mut resp = http::Response::new(Bytes::from(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 4xx naming the field at fault, in the core's error shape.
fn field_error(status: u16, code: &str, field: &str, message: &str) -> Result<Response> {
    let body = serde_json::json!({"error": {"code": code, "message": message, "field": field}});
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(
        Response::from_bytes(serde_json::to_vec(&body).unwrap_or_default())?
            .with_status(status)
            .with_headers(headers),
    )
}

/// Serves one blob upload or download (`is_transfer`).
pub async fn serve(env: &Env, mut req: Request) -> Result<Response> {
    let bare = match bare(&req)? {
        Ok(r) => r,
        Err(m) => return error(400, "bad_request", &m),
    };
    let resp = core(env, bare.clone()).await?;
    let transfer = resp.extensions().get::<Transfer>().cloned();
    let bucket = env.bucket(R2_BINDING).ok();
    let (Some(transfer), Some(bucket)) = (transfer, bucket) else {
        // No bytes to move, or no bucket bound (then the core's 501 says so). An upload's body
        // is read before the answer, up to a bound: workerd drops the connection of a client
        // still sending when the answer comes first (`edge::READ_BEFORE_REFUSING_BYTES`).
        drain(&mut req).await;
        return from_http(resp);
    };
    if let Transfer::Receive { sha256, size } = &transfer {
        return receive(env, &bucket, &mut req, bare, sha256, *size).await;
    }
    if let Transfer::Send { sha256, size, head } = &transfer {
        let range = req.headers().get("range").ok().flatten();
        return send(
            &bucket,
            sha256,
            *size,
            ByteRange::parse(range.as_deref(), *size),
            *head,
        )
        .await;
    }
    from_http(resp)
}

async fn drain(req: &mut Request) {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if req.method() == Method::Put && declared > 0 && declared <= edge::READ_BEFORE_REFUSING_BYTES {
        if let Ok(mut stream) = req.stream() {
            use futures_util::StreamExt;
            while let Some(Ok(_)) = stream.next().await {}
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

async fn receive(
    env: &Env,
    bucket: &Bucket,
    req: &mut Request,
    bare: http::Request<Bytes>,
    sha256: &str,
    size: u64,
) -> Result<Response> {
    let Some(digest) = unhex(sha256) else {
        return field_error(400, "bad_request", "sha256", "not a SHA-256");
    };
    let key = object_key(sha256);
    // The request's body is a stream of known length (its Content-Length), as R2 needs.
    let body = match req.inner().body() {
        Some(stream) if size > 0 => Data::ReadableStream(stream),
        _ => Data::Bytes(Vec::new()),
    };
    match bucket
        .put(&key, body)
        .sha256(digest.clone())
        .execute()
        .await
    {
        Ok(Some(object)) => {
            let recorded = object.checksum().sha256;
            if object.size() != size || recorded.as_ref().is_some_and(|r| *r != digest) {
                let _ = bucket.delete(&key).await;
                return field_error(
                    400,
                    "bad_request",
                    "body",
                    &format!(
                        "the stored object ({} bytes) is not the blob {sha256} of {size} bytes",
                        object.size()
                    ),
                );
            }
        }
        Ok(None) => return error(500, "internal", "R2 stored nothing"),
        Err(e) => {
            let m = e.to_string();
            let lower = m.to_ascii_lowercase();
            if lower.contains("checksum") || lower.contains("digest") {
                return field_error(
                    400,
                    "bad_request",
                    "body",
                    &format!("the bytes do not hash to {sha256} (R2: {m})"),
                );
            }
            worker::console_error!("edgefarm: R2 put of {sha256} failed: {m}");
            return field_error(
                400,
                "truncated",
                "body",
                &format!("the upload did not complete: {m}"),
            );
        }
    }
    let mut again = bare;
    again.extensions_mut().insert(Stored {
        sha256: sha256.to_string(),
        size,
    });
    from_http(core(env, again).await?)
}

async fn send(
    bucket: &Bucket,
    sha256: &str,
    size: u64,
    range: ByteRange,
    head: bool,
) -> Result<Response> {
    let (status, span) = match range {
        ByteRange::Whole => (200, (size > 0).then(|| (0, size - 1))),
        ByteRange::Part { start, end } => (206, Some((start, end))),
        ByteRange::Unsatisfiable => {
            let resp = field_error(
                416,
                "range_not_satisfiable",
                "Range",
                &format!("the blob has {size} bytes"),
            )?;
            resp.headers()
                .set("content-range", &format!("bytes */{size}"))?;
            return Ok(resp);
        }
    };
    let len = span.map_or(0, |(s, e)| e - s + 1);
    let key = object_key(sha256);
    let missing = || {
        worker::console_error!("edgefarm: a recorded blob {sha256} has no object in R2");
        error(404, "not_found", &format!("blob {sha256} not found"))
    };
    let headers = Headers::new();
    headers.set("content-type", "application/octet-stream")?;
    headers.set("accept-ranges", "bytes")?;
    headers.set("etag", &format!("\"{sha256}\""))?;
    if let (206, Some((s, e))) = (status, span) {
        headers.set("content-range", &format!("bytes {s}-{e}/{size}"))?;
    }
    let resp = if head || len == 0 {
        if bucket.head(&key).await?.is_none() {
            return missing();
        }
        headers.set("content-length", &len.to_string())?;
        Response::empty()?
    } else {
        let (offset, _) = span.unwrap_or((0, 0));
        let object = bucket
            .get(&key)
            .range(Range::OffsetWithLength {
                offset,
                length: len,
            })
            .execute()
            .await?;
        let Some(body) = object.as_ref().and_then(|o| o.body()) else {
            return missing();
        };
        Response::from_body(body.response_body()?)?
    };
    Ok(resp.with_status(status).with_headers(headers))
}
