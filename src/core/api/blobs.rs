//! `/v1/blobs`: "which of these do you lack?", and the upload and download of one blob. The
//! core decides and records; the shell moves the bytes (see `core::blobs`).
//! Any credential may use them: the farm secret (submitters) or a node token (nodes fetch
//! inputs and upload outputs).
//!
//! With a bucket configured (`Config::bucket`) the bytes never reach the farm: "which do you
//! lack?" answers presigned upload URLs, an upload is confirmed by an empty `PUT`, and a
//! download is a `307` to a presigned URL, answered here, so every shell passes it on as it is.

use crate::core::blobs::{self, Stored, Transfer};
use crate::core::error::{Error, Result};
use crate::core::http::{body, empty, json, query};
use crate::core::Ctx;
use crate::store::Store;
use crate::wire::blobs::{BlobCheck, BlobStored, Missing, MissingBlob, Upload};
use crate::wire::errors::ErrorBody;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use std::collections::BTreeSet;

/// How a client uploads one blob to this farm: to the farm itself, or to its bucket by a
/// presigned URL that signs the blob's checksum, then confirmed.
fn upload_of<S: Store>(ctx: &Ctx<'_, S>, sha256: &str, size: u64) -> Upload {
    match &ctx.config.bucket {
        None => Upload {
            method: "PUT".into(),
            url: format!("/v1/blobs/{sha256}"),
            headers: Default::default(),
            confirm: None,
            // Over what one request may carry through this runtime: in parts.
            parts: ctx
                .config
                .blob_part_bytes
                .filter(|p| size > *p)
                .map(|part_bytes| crate::wire::blobs::Parts {
                    start: format!("/v1/blobs/{sha256}/parts?size={size}"),
                    part_bytes,
                }),
        },
        Some(bucket) => {
            let signed = bucket.put(sha256, ctx.now_ms);
            Upload {
                method: "PUT".into(),
                url: signed.url,
                headers: signed.headers,
                confirm: Some(format!("/v1/blobs/{sha256}?size={size}")),
                parts: None,
            }
        }
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
                upload: upload_of(ctx, &w.sha256, w.size),
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
    let size = match &ctx.config.bucket {
        None => content_length(req.headers())?,
        Some(_) => confirmed_size(req)?,
    };
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
        None if ctx.config.bucket.is_some() => {
            // The bucket checked the bytes against the signed checksum; a confirmation of an
            // upload that never happened can only make the blob 404 for nodes, not wrong.
            let stored = Stored {
                sha256: sha256.to_string(),
                size,
            };
            blobs::record_stored(ctx, &stored).await?;
            Ok(json(
                StatusCode::CREATED,
                &BlobStored {
                    sha256: sha256.to_string(),
                    size,
                    stored: true,
                },
            ))
        }
        None => Ok(transfer(Transfer::Receive {
            sha256: sha256.to_string(),
            size,
        })),
    }
}

/// The size a confirmation of a bucket upload names (`?size=N`). Its body must be empty: with
/// a bucket the farm takes no blob bytes.
fn confirmed_size(req: &Request<Bytes>) -> Result<u64> {
    let sent = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if sent > 0 || !req.body().is_empty() {
        return Err(Error::field(
            "body",
            "this farm keeps blobs in an S3 bucket: upload to the URL POST /v1/blobs/missing answers, then confirm with an empty PUT to its `confirm` path",
        ));
    }
    let q = query(req.uri().query());
    q.get("size")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::field(
                "size",
                "a confirmation needs ?size=N: the blob's size in bytes (the `confirm` path POST /v1/blobs/missing answers has it)",
            )
        })
}

/// `GET` / `HEAD /v1/blobs/{sha256}`: the blob's bytes (ranges honoured by the shell), or with
/// a bucket a `307` to a presigned URL of the same method (the client sends its `Range` there,
/// and no farm credential).
pub async fn get<S: Store>(ctx: &Ctx<'_, S>, sha256: &str, head: bool) -> Result<Response<Bytes>> {
    blobs::sha256_field("sha256", sha256)?;
    let rec = blobs::record(ctx, sha256)
        .await?
        .ok_or_else(|| Error::NotFound(format!("blob {sha256}")))?;
    if let Some(bucket) = &ctx.config.bucket {
        let url = bucket.get(sha256, ctx.now_ms, head);
        let mut resp = empty(StatusCode::TEMPORARY_REDIRECT);
        // A URL is ASCII without control characters: always a header value.
        let location = http::HeaderValue::from_str(&url)
            .map_err(|e| Error::Store(crate::store::StoreError::Backend(Box::new(e))))?;
        resp.headers_mut().insert(header::LOCATION, location);
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        return Ok(resp);
    }
    Ok(transfer(Transfer::Send {
        sha256: sha256.to_string(),
        size: rec.size,
        head,
    }))
}
