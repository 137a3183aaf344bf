//! Files that travel with a job: content-addressed blobs, the input manifest of a job and the
//! outputs a node acks. The design is in docs/ASSETS.md.
//!
//! Design decision: the core never touches blob bytes. It decides (who may, which blob, how
//! large, whether the farm already has it) and records (a `blob/{sha256}` record once the bytes
//! are stored and verified); moving the bytes is the shell's job, told by a typed [`Transfer`]
//! in the answer's extensions (like [`crate::core::Wake`]), through the backend trait in
//! [`crate::blob`]. The shell reports a verified upload back with a [`Stored`] in the request's
//! extensions, which no client can set. Rejected alternative: blob bytes through `handle()`
//! as `Bytes` — a 1 GiB render would sit in memory, and Workers and Spin could not take it at
//! all. Rejected too: asking the backend whether it has a blob on every "which do you lack?"
//! (the core would need the backend in `Ctx`, and S3 has no cheap batch stat); the records
//! answer 10,000 hashes in one store pass and carry the size and age that GC needs.
//!
//! With a bucket (`Config::bucket`, [`s3`]) no [`Transfer`] is ever asked for: the core signs
//! URLs and answers the download's `307` itself, so shells need nothing for it. Which blobs
//! are garbage is [`gc`]'s rule.

pub mod gc;
pub mod inputs;
pub mod manifest;
pub mod outputs;
pub mod s3;

use super::error::{Error, Result};
use super::records::{load, save};
use super::Ctx;
use crate::store::{keys, Cond, Store};
use serde::{Deserialize, Serialize};

/// One file of a manifest: where it goes (relative path), what it is (SHA-256 of its bytes,
/// lowercase hex) and how large it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative path (`/`-separated) inside the task's work dir or the job's output dir.
    pub path: String,
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What the farm knows of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Size in bytes.
    pub size: u64,
    /// When its bytes were first stored (for garbage collection by age).
    pub created_ms: u64,
}

/// What the shell must do with the bytes of a blob request the core has allowed. Put in the
/// answer's extensions; the answer itself is a 501 for shells that store no blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// Read exactly `size` bytes of the request body into the backend, verifying that they hash
    /// to `sha256`; only then make the blob visible and report it with [`Stored`].
    Receive {
        /// Expected SHA-256.
        sha256: String,
        /// Expected size (the request's `Content-Length`).
        size: u64,
    },
    /// Answer with the blob's bytes (honouring a `Range` header).
    Send {
        /// Which blob.
        sha256: String,
        /// Its recorded size.
        size: u64,
        /// `HEAD`: headers only.
        head: bool,
    },
}

/// Set by a shell on a repeat of a `PUT /v1/blobs/{sha256}` request once the bytes are stored
/// and verified: the core then records the blob. Request extensions come only from the shell,
/// never from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The verified SHA-256.
    pub sha256: String,
    /// The verified size.
    pub size: u64,
}

/// Whether `s` is a SHA-256 in the form blobs are named by: 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a SHA-256 field.
pub fn sha256_field(field: &str, s: &str) -> Result<()> {
    if is_sha256(s) {
        Ok(())
    } else {
        Err(Error::field(
            field,
            format!("{field} must be a SHA-256: 64 lowercase hex digits (got {s:?})"),
        ))
    }
}

/// The record of a stored blob, if the farm has it.
pub async fn record<S: Store>(ctx: &Ctx<'_, S>, sha256: &str) -> Result<Option<BlobRecord>> {
    Ok(load::<BlobRecord, _>(ctx.store, &keys::blob(sha256))
        .await?
        .map(|r| r.value))
}

/// Records a blob whose bytes a shell stored and verified. Idempotent: a second upload of the
/// same bytes keeps the first record (and its age).
pub async fn record_stored<S: Store>(ctx: &Ctx<'_, S>, stored: &Stored) -> Result<bool> {
    let rec = BlobRecord {
        size: stored.size,
        created_ms: ctx.now_ms,
    };
    Ok(
        save(ctx.store, &keys::blob(&stored.sha256), &rec, Cond::Absent)
            .await?
            .is_some(),
    )
}

/// Fails naming `{field}[i].sha256` for the first entry whose blob the farm does not have (or
/// has with another size): a job or an ack may only name bytes that are already stored.
pub async fn require_present<S: Store>(
    ctx: &Ctx<'_, S>,
    field: &str,
    entries: &[FileEntry],
) -> Result<()> {
    for (i, e) in entries.iter().enumerate() {
        match record(ctx, &e.sha256).await? {
            Some(r) if r.size == e.size => {}
            Some(r) => {
                return Err(Error::field(
                    &format!("{field}[{i}].size"),
                    format!(
                        "{field}[{i}].size is {} but the farm's blob {} has {} bytes",
                        e.size, e.sha256, r.size
                    ),
                ))
            }
            None => {
                return Err(Error::field(
                    &format!("{field}[{i}].sha256"),
                    format!(
                        "{field}[{i}]: blob {} ({}) is not on the farm; upload it first (POST /v1/blobs/missing, PUT /v1/blobs/{{sha256}})",
                        e.sha256, e.path
                    ),
                ))
            }
        }
    }
    Ok(())
}
