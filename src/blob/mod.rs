//! Where blob bytes live: one trait every backend implements (files in `serve`'s data dir; an
//! R2 binding or an S3 bucket later), and the rules every backend shares — a blob's bytes are
//! verified while they stream in ([`Verifier`]) and become visible only when they hash to the
//! blob's name ([`receive`]); downloads honour one byte range ([`ByteRange`]).
//!
//! Design decision: the trait is as small as the Store trait — begin an upload (committed or
//! dropped), open a download, stat, delete — and async in the core's style (no `Send` bound:
//! the Workers runtime's futures are not). It compiles for wasm32: no file system here; the
//! native backend is [`fs`]. Verification is not the backend's job, so no backend can forget
//! it. Rejected alternative: trusting a client-sent hash, or hashing after the file is visible
//! (a reader could see wrong bytes under a right name in between).
#![deny(missing_docs)]

#[cfg(feature = "native")]
pub mod fs;
mod range;

pub use range::ByteRange;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes do not hash to the name, or there are more or fewer than announced.
    #[error("{0}")]
    Mismatch(String),
    /// The body ended early or could not be read (the client went away).
    #[error("the upload was cut off: {0}")]
    Truncated(String),
    /// The backend failed.
    #[error("blob backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An upload in progress: nothing is visible under the blob's name until [`Upload::commit`].
/// Dropping it without committing discards what was written.
#[allow(async_fn_in_trait)]
pub trait Upload {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError>;
    /// Makes the bytes durable and visible under the blob's name, atomically.
    async fn commit(self) -> Result<(), BlobError>;
}

/// A download in progress.
#[allow(async_fn_in_trait)]
pub trait Download {
    /// The next bytes, or `None` at the end of the requested range.
    async fn next(&mut self) -> Result<Option<Bytes>, BlobError>;
}

/// A place to keep blobs.
#[allow(async_fn_in_trait)]
pub trait Blobs {
    /// An upload of this backend.
    type Upload: Upload;
    /// A download of this backend.
    type Download: Download;
    /// Starts an upload of the blob named `sha256`.
    async fn begin(&self, sha256: &str) -> Result<Self::Upload, BlobError>;
    /// Opens `range` of the blob (its whole when `None`); `None` when it is absent.
    async fn open(
        &self,
        sha256: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Self::Download>, BlobError>;
    /// The size of the blob, or `None` when absent.
    async fn stat(&self, sha256: &str) -> Result<Option<u64>, BlobError>;
    /// Deletes the blob; `false` when it was absent.
    async fn delete(&self, sha256: &str) -> Result<bool, BlobError>;
}

/// Something that yields a request body chunk by chunk.
#[allow(async_fn_in_trait)]
pub trait Chunks {
    /// The next chunk, `None` at the end, an error when the body broke off.
    async fn next(&mut self) -> Option<Result<Bytes, String>>;
}

/// Checks bytes against the name and size they were announced with, as they pass.
#[derive(Debug, Clone)]
pub struct Verifier {
    want_sha256: String,
    want_size: u64,
    seen: u64,
    hash: Sha256,
}

impl Verifier {
    /// Expects `size` bytes hashing to `sha256` (lowercase hex).
    pub fn new(sha256: &str, size: u64) -> Self {
        Verifier {
            want_sha256: sha256.to_string(),
            want_size: size,
            seen: 0,
            hash: Sha256::new(),
        }
    }

    /// Takes the next bytes; fails as soon as there are more than announced.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if self.seen > self.want_size {
            return Err(BlobError::Mismatch(format!(
                "more than the announced {} bytes",
                self.want_size
            )));
        }
        self.hash.update(chunk);
        Ok(())
    }

    /// Bytes taken so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether all the bytes were there and hash to the name.
    pub fn finish(self) -> Result<(), BlobError> {
        if self.seen != self.want_size {
            return Err(BlobError::Truncated(format!(
                "{} of {} bytes arrived",
                self.seen, self.want_size
            )));
        }
        let got = hex(&self.hash.finalize());
        if got != self.want_sha256 {
            return Err(BlobError::Mismatch(format!(
                "the bytes hash to {got}, not {}",
                self.want_sha256
            )));
        }
        Ok(())
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams `body` into `blobs` as the blob `sha256` of `size` bytes, verifying as it goes; the
/// blob becomes visible only if every byte arrived and they hash to its name. On any failure
/// the partial upload is dropped and nothing is visible.
pub async fn receive<B: Blobs, C: Chunks>(
    blobs: &B,
    sha256: &str,
    size: u64,
    body: &mut C,
) -> Result<(), BlobError> {
    let mut verifier = Verifier::new(sha256, size);
    let mut upload = blobs.begin(sha256).await?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(BlobError::Truncated)?;
        verifier.update(&chunk)?;
        upload.write(chunk).await?;
    }
    verifier.finish()?;
    upload.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn verifier_accepts_right_bytes_and_refuses_wrong_ones() {
        let mut v = Verifier::new(EMPTY, 0);
        v.update(b"").unwrap();
        v.finish().unwrap();
        let mut v = Verifier::new(EMPTY, 3);
        v.update(b"abc").unwrap();
        assert!(matches!(v.finish(), Err(BlobError::Mismatch(_))));
        let mut v = Verifier::new(EMPTY, 2);
        assert!(matches!(v.update(b"abc"), Err(BlobError::Mismatch(_))));
        let mut v = Verifier::new(EMPTY, 5);
        v.update(b"ab").unwrap();
        assert!(matches!(v.finish(), Err(BlobError::Truncated(_))));
    }
}
