//! Moving blobs between this machine and the farm (node and CLI): "which do you lack?",
//! streamed uploads of local files, and resumable downloads verified against the blob's name.
//! Nothing here holds a whole file in memory.
//!
//! A farm may keep its blobs in an S3-compatible bucket: then "which do you lack?" answers a
//! presigned upload URL per blob (sent to with its signed headers, then confirmed to the farm),
//! and a download is a `307` to a presigned URL. Requests to the bucket go through a client of
//! their own and never carry the farm's credential (the signature in the URL is the only
//! authority, and S3 refuses a request that has both).

use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::client::Client;
use super::error::NodeError;
use crate::blob::Verifier;
use crate::core::blobs::FileEntry;
use crate::wire::blobs::{
    BlobCheck, BlobStored, BlobWanted, InputsPage, Missing, MissingBlob, PartStored, Parts,
    PartsDone, PartsStarted,
};

/// Read buffer for hashing and uploading.
const BUF: usize = 1 << 20;

/// Blob transfers with one server and credential.
#[derive(Debug, Clone)]
pub struct Transfer {
    api: Client,
    http: reqwest::Client,
    bucket: reqwest::Client,
}

impl Transfer {
    /// Transfers through the server and credential of `api`.
    pub fn new(api: &Client) -> Result<Self, NodeError> {
        Ok(Transfer {
            http: crate::net::transfer_client(api.base())?,
            bucket: crate::net::bucket_client()?,
            api: api.clone(),
        })
    }

    fn url(&self, sha256: &str) -> String {
        format!("{}/v1/blobs/{sha256}", self.api.base())
    }

    /// The blobs among `entries` the farm lacks, each with how to upload it (one request per
    /// 10,000 entries).
    pub async fn missing(&self, entries: &[FileEntry]) -> Result<Vec<MissingBlob>, NodeError> {
        let mut out = Vec::new();
        for chunk in entries.chunks(10_000) {
            let check = BlobCheck {
                blobs: chunk
                    .iter()
                    .map(|e| BlobWanted {
                        sha256: e.sha256.clone(),
                        size: e.size,
                    })
                    .collect(),
            };
            let answer: Missing = self.api.post_json("/v1/blobs/missing", &check).await?;
            out.extend(answer.missing);
        }
        Ok(out)
    }

    /// A job's whole input manifest, page by page.
    pub async fn inputs(&self, job: &str) -> Result<Vec<FileEntry>, NodeError> {
        let mut files = Vec::new();
        let mut cursor = Some("0".to_string());
        while let Some(c) = cursor {
            let path = format!("/v1/jobs/{job}/inputs?cursor={c}");
            let page: InputsPage = self
                .api
                .send(self.api.request(reqwest::Method::GET, &path))
                .await?;
            files.extend(page.files);
            cursor = page.next;
        }
        Ok(files)
    }

    /// Uploads the file at `path` as `blob`, streamed, the way the farm said: to the farm
    /// (which verifies the bytes), or to its bucket by the presigned URL with the signed
    /// checksum header (the bucket verifies them), then confirmed to the farm. A file that
    /// changed since it was hashed is refused either way.
    pub async fn upload(&self, path: &Path, blob: &MissingBlob) -> Result<(), NodeError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| NodeError::io(format!("opening {}", path.display()), e))?;
        let body = reqwest::Body::wrap_stream(read_stream(file));
        let up = &blob.upload;
        if up.method != "PUT" {
            return Err(NodeError::Api {
                status: 0,
                code: "bad_answer".into(),
                message: format!(
                    "the farm asks for an upload by {:?}; only PUT is known",
                    up.method
                ),
            });
        }
        if let (true, Some(parts)) = (up.url.starts_with('/'), &up.parts) {
            return self.upload_in_parts(path, blob, parts).await;
        }
        if up.url.starts_with('/') {
            let req = self
                .http
                .put(format!("{}{}", self.api.base(), up.url))
                .header(reqwest::header::CONTENT_LENGTH, blob.size)
                .body(body);
            return self.api.send::<serde_json::Value>(req).await.map(|_| ());
        }
        // A presigned bucket URL: its own client, no farm credential, the signed headers as
        // given.
        let mut req = self
            .bucket
            .put(&up.url)
            .header(reqwest::header::CONTENT_LENGTH, blob.size)
            .body(body);
        for (name, value) in &up.headers {
            req = req.header(name, value);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            return Err(bucket_error("PUT", &blob.sha256, resp).await);
        }
        if let Some(confirm) = &up.confirm {
            let req = self
                .http
                .put(format!("{}{confirm}", self.api.base()))
                .header(reqwest::header::CONTENT_LENGTH, 0);
            self.api.send::<BlobStored>(req).await?;
        }
        Ok(())
    }

    /// Uploads a blob in parts (a farm behind a bounded request size: Cloudflare's Worker with
    /// R2 multipart): start, each part streamed from its offset of the file, then the list of
    /// parts, after which the farm verifies the whole blob against its name before anyone can
    /// read it.
    async fn upload_in_parts(
        &self,
        path: &Path,
        blob: &MissingBlob,
        parts: &Parts,
    ) -> Result<(), NodeError> {
        use tokio::io::AsyncSeekExt;
        let base = self.api.base();
        let start = self
            .http
            .post(format!("{base}{}", parts.start))
            .header(reqwest::header::CONTENT_LENGTH, 0);
        let started: PartsStarted = self.api.send(start).await?;
        let part_bytes = started.part_bytes.max(1);
        let count = blob.size.div_ceil(part_bytes).max(1);
        let upload = percent_encoding::utf8_percent_encode(
            &started.upload,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        let (sha, size) = (&blob.sha256, blob.size);
        let mut stored = Vec::new();
        for i in 0..count {
            let offset = i * part_bytes;
            let len = part_bytes.min(size - offset);
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| NodeError::io(format!("opening {}", path.display()), e))?;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| NodeError::io(format!("reading {}", path.display()), e))?;
            let body = reqwest::Body::wrap_stream(read_stream(file.take(len)));
            let n = i + 1;
            let req = self
                .http
                .put(format!(
                    "{base}/v1/blobs/{sha}/parts/{n}?upload={upload}&size={size}"
                ))
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body);
            let part: PartStored = self.api.send(req).await?;
            stored.push(part);
        }
        let done = self
            .http
            .post(format!(
                "{base}/v1/blobs/{sha}/parts/done?upload={upload}&size={size}"
            ))
            .json(&PartsDone { parts: stored });
        self.api.send::<BlobStored>(done).await?;
        Ok(())
    }

    /// Downloads the blob `sha256` of `size` bytes into `part`, resuming after what `part`
    /// already holds (a `Range` request), and checks the whole file against the name. On a
    /// mismatch `part` is removed. Returns the bytes fetched over the network.
    pub async fn download(&self, sha256: &str, size: u64, part: &Path) -> Result<u64, NodeError> {
        let io = |what: &str, e| NodeError::io(format!("{what} {}", part.display()), e);
        let mut verifier = Verifier::new(sha256, size);
        let mut have = 0u64;
        if let Ok(mut f) = tokio::fs::File::open(part).await {
            let mut buf = vec![0u8; BUF];
            loop {
                let n = f.read(&mut buf).await.map_err(|e| io("reading", e))?;
                if n == 0 || have + n as u64 > size {
                    break;
                }
                verifier
                    .update(&buf[..n])
                    .map_err(|e| io("checking", std::io::Error::other(e)))?;
                have += n as u64;
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(part)
            .map_err(|e| io("opening", e))?;
        file.set_len(have).map_err(|e| io("truncating", e))?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(have))
            .map_err(|e| io("seeking", e))?;
        // Written by a blocking thread fed through a short channel: hashing (here) and disk
        // writes overlap, and memory stays flat.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut out = std::io::BufWriter::with_capacity(BUF, file);
            while let Some(b) = rx.blocking_recv() {
                out.write_all(&b)?;
            }
            out.flush()?;
            out.get_ref().sync_all()
        });
        let mut fetched = 0u64;
        let streamed: Result<(), NodeError> = async {
            if have >= size {
                return Ok(());
            }
            let range = (have > 0).then(|| format!("bytes={have}-"));
            let mut req = self
                .http
                .get(self.url(sha256))
                .bearer_auth(self.api.bearer());
            if let Some(r) = &range {
                req = req.header(reqwest::header::RANGE, r);
            }
            let mut resp = req.send().await?;
            if resp.status().is_redirection() {
                // The farm's blobs are in a bucket: a fresh request to the presigned URL,
                // without the farm's credential.
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| NodeError::Api {
                        status: resp.status().as_u16(),
                        code: "bad_answer".into(),
                        message: format!("GET blob {sha256}: a redirect without a Location"),
                    })?
                    .to_string();
                let mut req = self.bucket.get(&to);
                if let Some(r) = &range {
                    req = req.header(reqwest::header::RANGE, r);
                }
                resp = req.send().await?;
                if !matches!(resp.status().as_u16(), 200 | 206) {
                    return Err(bucket_error("GET", sha256, resp).await);
                }
            }
            let status = resp.status();
            if !(status == 200 && have == 0 || status == 206) {
                let text = resp.text().await.unwrap_or_default();
                return Err(NodeError::Api {
                    status: status.as_u16(),
                    code: "download_failed".into(),
                    message: format!("GET blob {sha256}: {text}"),
                });
            }
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                verifier
                    .update(&chunk)
                    .map_err(|e| io("downloading", std::io::Error::other(e)))?;
                fetched += chunk.len() as u64;
                tx.send(chunk)
                    .await
                    .map_err(|_| io("writing", std::io::Error::other("the writer stopped")))?;
            }
            Ok(())
        }
        .await;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| io("writing", std::io::Error::other(e)))
            .and_then(|r| r.map_err(|e| io("writing", e)));
        if let Err(e) = streamed {
            if matches!(e, NodeError::Io { .. }) {
                let _ = tokio::fs::remove_file(part).await;
            }
            return Err(e);
        }
        written?;
        if let Err(e) = verifier.finish() {
            let _ = tokio::fs::remove_file(part).await;
            return Err(io("verifying", std::io::Error::other(e)));
        }
        Ok(fetched)
    }
}

/// A bucket's refusal as an error: its status and S3 error code (`BadDigest`,
/// `AccessDenied`, `SignatureDoesNotMatch`...).
async fn bucket_error(method: &str, sha256: &str, resp: reqwest::Response) -> NodeError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| "bucket_error".into());
    NodeError::Api {
        status,
        message: format!(
            "{method} blob {sha256} in the bucket: {status} {code}: {}",
            text.chars().take(300).collect::<String>()
        ),
        code,
    }
}

/// SHA-256 (hex) and size of the file at `path`, streamed (blocking: call off the runtime).
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((crate::blob::hex(&h.finalize()), size))
}

/// The bytes of `reader` as a stream of chunks of at most [`BUF`] bytes.
fn read_stream<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; BUF];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    })
}
