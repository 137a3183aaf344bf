//! Blobs as files in a directory (`edgefarm serve`: `<data dir>/blobs`).
//!
//! Layout: `<root>/<first two hex digits>/<sha256>`. An upload is written to
//! `<root>/tmp/<sha256>.<unique>`, fsynced, renamed over its final name and the folder fsynced,
//! so a blob is either absent or whole — never half-visible, even after `kill -9` or a power
//! cut. Leftover temp files of a crash are removed when the directory is opened.
//!
//! An upload's bytes are written by a blocking thread of their own, fed through a short
//! channel, so hashing (in the request's task) and writing overlap; the channel's bound keeps
//! memory flat whatever the blob's size.

use super::{BlobError, Blobs, Download, Upload};
use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, oneshot};

/// Chunks in flight between an upload and its writer thread.
const IN_FLIGHT: usize = 16;

/// What an upload tells its writer thread.
enum Msg {
    Chunk(Bytes),
    /// Flush and fsync; the thread answers on the upload's `done`.
    Commit,
}

/// Read and write buffer size.
const BUF: usize = 1 << 20;

fn backend(e: std::io::Error) -> BlobError {
    BlobError::Backend(Box::new(e))
}

/// A directory of blobs.
#[derive(Debug)]
pub struct FsBlobs {
    root: PathBuf,
    next_tmp: AtomicU64,
}

impl FsBlobs {
    /// Opens (creating) the directory and clears temp files a crash left behind.
    pub fn at(root: &Path) -> std::io::Result<Self> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(FsBlobs {
            root: root.to_path_buf(),
            next_tmp: AtomicU64::new(0),
        })
    }

    /// The directory as it is, touching nothing: for a collector running beside the server
    /// (whose uploads in progress are in `tmp/`).
    pub fn existing(root: &Path) -> Self {
        FsBlobs {
            root: root.to_path_buf(),
            next_tmp: AtomicU64::new(0),
        }
    }

    /// The blob files in the directory: `(sha256, size, modified)`, temp files left out.
    pub fn list(&self) -> std::io::Result<Vec<(String, u64, std::time::SystemTime)>> {
        let mut out = Vec::new();
        let dirs = match std::fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for dir in dirs {
            let dir = dir?;
            let name = dir.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(dir.path())? {
                let f = f?;
                let sha = f.file_name().to_string_lossy().into_owned();
                let meta = f.metadata()?;
                if crate::core::blobs::is_sha256(&sha) && sha.starts_with(&name) && meta.is_file() {
                    out.push((sha, meta.len(), meta.modified()?));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the blob's file is (whether or not it exists). `sha256` must be checked first.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2.min(sha256.len())]).join(sha256)
    }
}

/// An upload to a temp file.
#[derive(Debug)]
pub struct FsUpload {
    tx: mpsc::Sender<Msg>,
    done: Option<oneshot::Receiver<std::io::Result<()>>>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Chunk(b) => write!(f, "Chunk({} bytes)", b.len()),
            Msg::Commit => write!(f, "Commit"),
        }
    }
}

/// The writer thread: appends chunks, and on `Commit` flushes and fsyncs. When the upload is
/// dropped without committing (a mismatch, a cut connection), it removes the temp file.
fn writer(
    file: std::fs::File,
    tmp: PathBuf,
    mut rx: mpsc::Receiver<Msg>,
    done: oneshot::Sender<std::io::Result<()>>,
) {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(BUF, file);
    let mut failed: Option<std::io::Error> = None;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Chunk(b) if failed.is_none() => {
                if let Err(e) = out.write_all(&b) {
                    failed = Some(e);
                }
            }
            Msg::Chunk(_) => {}
            Msg::Commit => {
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => out.flush().and_then(|()| out.get_ref().sync_all()),
                };
                let _ = done.send(result);
                return;
            }
        }
    }
    drop(out);
    let _ = std::fs::remove_file(&tmp);
}

impl Upload for FsUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError> {
        self.tx
            .send(Msg::Chunk(chunk))
            .await
            .map_err(|_| BlobError::Backend("the blob writer stopped".into()))
    }

    async fn commit(mut self) -> Result<(), BlobError> {
        let Some(done) = self.done.take() else {
            return Err(BlobError::Truncated("upload already ended".into()));
        };
        self.tx
            .send(Msg::Commit)
            .await
            .map_err(|_| BlobError::Backend("the blob writer stopped".into()))?;
        done.await
            .map_err(|_| BlobError::Backend("the blob writer stopped".into()))?
            .map_err(backend)?;
        let dir = self
            .dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        tokio::fs::create_dir_all(&dir).await.map_err(backend)?;
        tokio::fs::rename(&self.tmp, &self.dest)
            .await
            .map_err(backend)?;
        // The rename itself must survive a crash: fsync the folder.
        let d = tokio::fs::File::open(&dir).await.map_err(backend)?;
        d.sync_all().await.map_err(backend)?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        // Not renamed into place (a mismatch, a cut connection, a rename that failed): the temp
        // file goes now, before the refusal is answered, so a client that reads the answer
        // never finds it. The writer thread may still hold it open; its own removal once the
        // channel closes is then a no-op (writes to an unlinked file are harmless).
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A download from a file.
#[derive(Debug)]
pub struct FsDownload {
    file: tokio::fs::File,
    left: u64,
}

impl Download for FsDownload {
    async fn next(&mut self) -> Result<Option<Bytes>, BlobError> {
        if self.left == 0 {
            return Ok(None);
        }
        let want = (self.left as usize).min(BUF);
        let mut buf = BytesMut::zeroed(want);
        let n = self.file.read(&mut buf).await.map_err(backend)?;
        if n == 0 {
            return Err(BlobError::Truncated(
                "the blob file is shorter than recorded".into(),
            ));
        }
        buf.truncate(n);
        self.left -= n as u64;
        Ok(Some(buf.freeze()))
    }
}

impl Blobs for FsBlobs {
    type Upload = FsUpload;
    type Download = FsDownload;

    async fn begin(&self, sha256: &str) -> Result<FsUpload, BlobError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{sha256}.{}.{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(backend)?;
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let (done_tx, done) = oneshot::channel();
        let path = tmp.clone();
        std::thread::Builder::new()
            .name("edgefarm-blob-writer".into())
            .spawn(move || writer(file, path, rx, done_tx))
            .map_err(backend)?;
        Ok(FsUpload {
            tx,
            done: Some(done),
            tmp,
            dest: self.path(sha256),
        })
    }

    async fn open(
        &self,
        sha256: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<FsDownload>, BlobError> {
        let mut file = match tokio::fs::File::open(self.path(sha256)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let size = file.metadata().await.map_err(backend)?.len();
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(backend)?;
        }
        let left = if size == 0 {
            0
        } else {
            end.saturating_sub(start) + 1
        };
        Ok(Some(FsDownload { file, left }))
    }

    async fn stat(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path(sha256)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, sha256: &str) -> Result<bool, BlobError> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }
}
