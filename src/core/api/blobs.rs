//! `/v1/blobs`: "which of these do you lack?", and the upload and download of one blob. The
//! core decides and records; the shell moves the bytes (see `core::blobs`).
//! Any credential may use them: the farm secret (submitters) or a node token (nodes fetch
//! inputs and upload outputs).

use crate::core::blobs::{self, Stored, Transfer};
use crate::core::error::{Error, Result};
use crate::core::http::{body, json};
use crate::core::Ctx;
use crate::store::Store;
use crate::wire::blobs::{BlobCheck, BlobStored, Missing, MissingBlob, Upload};
use crate::wire::errors::ErrorBody;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use std::collections::BTreeSet;

/// How a client uploads one blob to this farm.
fn upload_of(sha256: &str) -> Upload {
    Upload {
        method: "PUT".into(),
        url: format!("/v1/blobs/{sha256}"),
    }
}

/// `POST /v1/blobs/missing` `{blobs: [{sha256, size}]}`: which of these the farm lacks, and
/// how to upload each. One request for a whole manifest (one store read per distinct hash).
pub async fn missing<S: Store>(ctx: &Ctx<'_, S>, bytes: &[u8]) -> Result<Response<Bytes>> {
    let check: BlobCheck = body(bytes)?;
    let limits = &ctx.config.limits;
    if check.blobs.len() > limits.blobs_per_check {
        return Err(Error::TooLarge(format!(
            "blobs: {} entries; at most {} per request (limit blobs_per_check)",
            check.blobs.len(),
            limits.blobs_per_check
        )));
    }
    for (i, w) in check.blobs.iter().enumerate() {
        blobs::sha256_field(&format!("blobs[{i}].sha256"), &w.sha256)?;
        if w.size > limits.blob_bytes {
            return Err(Error::TooLarge(format!(
                "blobs[{i}].size: {} bytes; at most {} per blob (limit blob_bytes)",
                w.size, limits.blob_bytes
            )));
        }
    }
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    let mut present = 0u64;
    for w in &check.blobs {
        if !seen.insert(w.sha256.as_str()) {
            continue;
        }
        match blobs::record(ctx, &w.sha256).await? {
            Some(r) if r.size == w.size => present += 1,
            _ => missing.push(MissingBlob {
                sha256: w.sha256.clone(),
                size: w.size,
                upload: upload_of(&w.sha256),
            }),
        }
    }
    Ok(json(StatusCode::OK, &Missing { missing, present }))
}

/// The placeholder answer carrying a [`Transfer`]: a shell that moves blob bytes replaces it;
/// one that does not passes on this 501.
fn transfer(t: Transfer) -> Response<Bytes> {
    let mut resp = json(
        StatusCode::NOT_IMPLEMENTED,
        &ErrorBody::new(
            "not_implemented",
            "this runtime does not store blob bytes (see docs/ASSETS.md)",
        ),
    );
    resp.extensions_mut().insert(t);
    resp
}

fn content_length(headers: &http::HeaderMap) -> Result<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::field(
                "Content-Length",
                "an upload needs a Content-Length header: the blob's size in bytes",
            )
        })
}

/// `PUT /v1/blobs/{sha256}`: upload one blob. Answers 200 at once when the farm has it;
/// otherwise the shell streams and verifies the body, then repeats the request with
/// [`Stored`], and the blob is recorded (201).
pub async fn put<S: Store>(
    ctx: &Ctx<'_, S>,
    sha256: &str,
    req: &Request<Bytes>,
) -> Result<Response<Bytes>> {
    blobs::sha256_field("sha256", sha256)?;
    if let Some(stored) = req.extensions().get::<Stored>() {
        if stored.sha256 != sha256 {
            return Err(Error::bad(
                "the stored blob is not the one this request names",
            ));
        }
        blobs::record_stored(ctx, stored).await?;
        return Ok(json(
            StatusCode::CREATED,
            &BlobStored {
                sha256: sha256.to_string(),
                size: stored.size,
                stored: true,
            },
        ));
    }
    let size = content_length(req.headers())?;
    if size > ctx.config.limits.blob_bytes {
        return Err(Error::TooLarge(format!(
            "Content-Length: {size} bytes; at most {} per blob (limit blob_bytes)",
            ctx.config.limits.blob_bytes
        )));
    }
    match blobs::record(ctx, sha256).await? {
        Some(r) if r.size == size => Ok(json(
            StatusCode::OK,
            &BlobStored {
                sha256: sha256.to_string(),
                size,
                stored: false,
            },
        )),
        Some(r) => Err(Error::field(
            "Content-Length",
            format!("blob {sha256} has {} bytes, not {size}", r.size),
        )),
        None => Ok(transfer(Transfer::Receive {
            sha256: sha256.to_string(),
            size,
        })),
    }
}

/// `GET` / `HEAD /v1/blobs/{sha256}`: the blob's bytes (ranges honoured by the shell).
pub async fn get<S: Store>(ctx: &Ctx<'_, S>, sha256: &str, head: bool) -> Result<Response<Bytes>> {
    blobs::sha256_field("sha256", sha256)?;
    let rec = blobs::record(ctx, sha256)
        .await?
        .ok_or_else(|| Error::NotFound(format!("blob {sha256}")))?;
    Ok(transfer(Transfer::Send {
        sha256: sha256.to_string(),
        size: rec.size,
        head,
    }))
}
