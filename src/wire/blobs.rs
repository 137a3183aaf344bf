//! `/v1/blobs` and a job's files: "which of these do you lack?", an upload's answer, a job's
//! input manifest page and its outputs page. The file entry itself is stored too, so it is the
//! core's own (`core::blobs::FileEntry`).

use crate::core::blobs::FileEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One blob a client asks about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobWanted {
    /// SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `POST /v1/blobs/missing` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobCheck {
    /// The blobs asked about.
    pub blobs: Vec<BlobWanted>,
}

/// How to upload one blob: to the farm itself (`url` is `/v1/blobs/{sha256}`, send the
/// farm's credential), or to an S3-compatible bucket by a presigned URL (`url` is absolute:
/// send no farm credential, send `headers` exactly, then `PUT` the `confirm` path of the farm
/// with no body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Always `PUT`.
    pub method: String,
    /// Where: a path of this farm, or a presigned bucket URL (minutes; one blob).
    pub url: String,
    /// Headers the upload must carry as given (they are signed: `x-amz-checksum-sha256`, the
    /// base64 of the blob's SHA-256, so the bucket refuses other bytes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// After an upload to a bucket: the farm path to `PUT` (no body) so the farm records the
    /// blob (`/v1/blobs/{sha256}?size=N`). Absent when `url` is the farm's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Upload in parts instead (a blob over what one request may carry through this runtime:
    /// Cloudflare's request body limit): `POST` the `start` path, `PUT` each part, then `POST`
    /// the list of parts (docs/ASSETS.md, "Large blobs through a Worker").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Parts>,
}

/// How to upload a blob in parts (`Upload::parts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    /// The farm path to `POST` (no body) to start: answers [`PartsStarted`].
    pub start: String,
    /// Bytes per part (the last one may be shorter).
    pub part_bytes: u64,
}

/// The answer to starting an upload in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsStarted {
    /// The upload's id: every part and the end name it.
    pub upload: String,
    /// Bytes per part (the last one may be shorter).
    pub part_bytes: u64,
}

/// One part stored (the answer to its `PUT`); the end lists them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartStored {
    /// Part number, from 1.
    pub part: u32,
    /// The storage's tag of the part.
    pub etag: String,
}

/// The body of the end of an upload in parts: every part, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsDone {
    /// The parts.
    pub parts: Vec<PartStored>,
}

/// A blob the farm lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingBlob {
    /// SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// How to upload it.
    pub upload: Upload,
}

/// The answer of `POST /v1/blobs/missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// The blobs the farm lacks (each distinct hash once).
    pub missing: Vec<MissingBlob>,
    /// How many distinct blobs it has already.
    pub present: u64,
}

/// The answer of `PUT /v1/blobs/{sha256}`: 201 when stored now, 200 when the farm had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    /// SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether this request stored the bytes.
    pub stored: bool,
}

/// `GET /v1/jobs/{id}/inputs`: one page of a job's input manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputsPage {
    /// This page's files, in path order.
    pub files: Vec<FileEntry>,
    /// The next page's cursor (`null` after the last).
    pub next: Option<String>,
    /// The manifest's digest (absent for a job without inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Files in the whole manifest.
    pub total_files: u64,
    /// Bytes in the whole manifest.
    pub total_bytes: u64,
}

/// One output of a job, as its listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The task that made it.
    pub task: String,
    /// Path, hash and size.
    #[serde(flatten)]
    pub file: FileEntry,
    /// Where to download it (`/v1/blobs/{sha256}`).
    pub url: String,
}

/// `GET /v1/jobs/{id}/outputs`: the outputs of the job's completed tasks, in task order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputsPage {
    /// This page.
    pub outputs: Vec<OutputFile>,
    /// The next page's cursor (`null` after the last task).
    pub next: Option<String>,
}
