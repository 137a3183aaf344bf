//! The node's content cache: blobs by SHA-256 under `<state dir>/cache`, bounded in size,
//! least recently used evicted first, kept across restarts.
//!
//! A file enters under its name only after its bytes were verified (downloaded into
//! `cache/tmp`, checked, made read-only, renamed), so the cache never holds a partial file; the
//! temp folder is emptied when the cache opens. An entry is hashed again the first time this
//! process uses it (a disk can rot, a person can edit), and its size at every use: a corrupt
//! one is dropped and fetched again. (A same-size change after a process verified the entry
//! goes unnoticed until the next start; hashing 1 GiB before every task was the alternative.) Use is recorded in the file's modification time, which eviction sorts by; files are
//! read-only because work dirs hard-link them, so a program cannot change a cached input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::error::NodeError;
use super::transfer::{hash_file, Transfer};
use crate::core::blobs::FileEntry;

/// Blobs the tasks running in this process use (counted): eviction spares them, whichever
/// slot evicts.
static PINNED: Mutex<Option<std::collections::HashMap<String, usize>>> = Mutex::new(None);

/// Keeps its blobs out of eviction while it lives (one per running task).
#[derive(Debug)]
pub struct Pin(Vec<String>);

impl Pin {
    /// Pins `hashes`.
    pub fn new(hashes: Vec<String>) -> Pin {
        if let Ok(mut p) = PINNED.lock() {
            let map = p.get_or_insert_with(Default::default);
            for h in &hashes {
                *map.entry(h.clone()).or_default() += 1;
            }
        }
        Pin(hashes)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut p) = PINNED.lock() {
            let map = p.get_or_insert_with(Default::default);
            for h in &self.0 {
                if let Some(n) = map.get_mut(h) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(h);
                    }
                }
            }
        }
    }
}

fn pinned(name: &str) -> bool {
    PINNED
        .lock()
        .map(|p| p.as_ref().is_some_and(|m| m.contains_key(name)))
        .unwrap_or(true)
}

/// Hashes this process has verified on disk.
static VERIFIED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
static CLEARED: AtomicBool = AtomicBool::new(false);

/// A content cache in a folder.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
}

/// Where one input came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files downloaded.
    pub files: u64,
    /// Files found in the cache.
    pub cached: u64,
}

fn verified(path: &Path) -> bool {
    VERIFIED
        .lock()
        .map(|v| v.as_ref().is_some_and(|s| s.contains(path)))
        .unwrap_or(false)
}

fn set_verified(path: &Path, yes: bool) {
    if let Ok(mut v) = VERIFIED.lock() {
        let set = v.get_or_insert_with(HashSet::new);
        if yes {
            set.insert(path.to_path_buf());
        } else {
            set.remove(path);
        }
    }
}

impl Cache {
    /// Opens (creating) the cache in `dir`, holding at most `max_bytes` between tasks.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Cache, NodeError> {
        let tmp = dir.join("tmp");
        // Partial downloads of an earlier run (killed mid-download) go, once per process: a
        // later open must not delete what another slot is downloading now.
        if !CLEARED.swap(true, Ordering::SeqCst) && tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| NodeError::io(format!("clearing {}", tmp.display()), e))?;
        }
        std::fs::create_dir_all(&tmp)
            .map_err(|e| NodeError::io(format!("creating {}", tmp.display()), e))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    /// Where the blob lives in the cache.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2.min(sha256.len())]).join(sha256)
    }

    /// The cached file of `entry`, downloading it when absent or corrupt.
    pub async fn ensure(
        &self,
        transfer: &Transfer,
        entry: &FileEntry,
        fetched: &mut Fetched,
    ) -> Result<PathBuf, NodeError> {
        let path = self.path(&entry.sha256);
        if path.is_file() {
            let size = std::fs::metadata(&path).map(|m| m.len()).ok();
            let ok = (verified(&path) && size == Some(entry.size)) || {
                let p = path.clone();
                let sum = tokio::task::spawn_blocking(move || hash_file(&p))
                    .await
                    .ok()
                    .and_then(Result::ok);
                sum == Some((entry.sha256.clone(), entry.size))
            };
            if ok {
                set_verified(&path, true);
                touch(&path);
                fetched.cached += 1;
                return Ok(path);
            }
            tracing::warn!(blob = %entry.sha256, path = %path.display(), "corrupt cache entry dropped; fetching it again");
            set_verified(&path, false);
            let _ = std::fs::remove_file(&path);
        }
        let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
        let part =
            self.dir
                .join("tmp")
                .join(format!("{}.{}.{n}", entry.sha256, std::process::id()));
        let got = transfer.download(&entry.sha256, entry.size, &part).await;
        let bytes = match got {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        let io = |e| NodeError::io(format!("caching {}", path.display()), e);
        let mut perms = std::fs::metadata(&part).map_err(io)?.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&part, perms).map_err(io)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::rename(&part, &path).map_err(io)?;
        set_verified(&path, true);
        fetched.bytes += bytes;
        fetched.files += 1;
        Ok(path)
    }

    /// Keeps a file this node made (an output it just uploaded as `entry`) as a cache entry too:
    /// a later task on this node that needs it, such as the encode of the frames it rendered,
    /// then downloads nothing. A hard link where the file system allows (no copy), read-only
    /// like every entry; nothing when the entry is there already. Best effort: a failure only
    /// means a download later.
    pub fn keep_output(&self, file: &Path, entry: &FileEntry) {
        let path = self.path(&entry.sha256);
        if path.is_file() {
            return;
        }
        let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
        let part =
            self.dir
                .join("tmp")
                .join(format!("{}.{}.{n}", entry.sha256, std::process::id()));
        let kept = (|| -> std::io::Result<()> {
            if std::fs::hard_link(file, &part).is_err() {
                std::fs::copy(file, &part)?;
            }
            let mut perms = std::fs::metadata(&part)?.permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&part, perms)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&part, &path)
        })();
        match kept {
            Ok(()) => set_verified(&path, true),
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                tracing::debug!(blob = %entry.sha256, error = %e, "output not kept in the cache");
            }
        }
    }

    /// Evicts least recently used entries until the cache holds at most its bound, sparing
    /// `keep` and every blob a running task has pinned ([`Pin`]).
    pub fn evict(&self, keep: &HashSet<String>) {
        let mut entries: Vec<(SystemTime, u64, PathBuf, String)> = Vec::new();
        for sub in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if sub.file_name() == "tmp" {
                continue;
            }
            for f in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let Ok(meta) = f.metadata() else { continue };
                let name = f.file_name().to_string_lossy().into_owned();
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                entries.push((used, meta.len(), f.path(), name));
            }
        }
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, size, path, name) in entries {
            if total <= self.max_bytes {
                break;
            }
            if keep.contains(&name) || pinned(&name) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                set_verified(&path, false);
                total -= size;
                tracing::info!(blob = %name, bytes = size, "evicted from the cache");
            }
        }
    }
}

/// Records a use (the modification time is the LRU clock).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().read(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn put(cache: &Cache, name: &str, bytes: usize, age_s: u64) {
        let path = cache.path(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, vec![0u8; bytes]).expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .expect("mtime");
    }

    #[test]
    fn eviction_drops_least_recently_used_first_and_spares_running_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), 30).expect("cache");
        put(&cache, "aa01", 10, 300);
        put(&cache, "bb02", 10, 200);
        put(&cache, "cc03", 10, 100);
        put(&cache, "dd04", 10, 50);
        put(&cache, "ee05", 10, 0);
        let keep: HashSet<String> = ["aa01".to_string()].into();
        let pin = Pin::new(vec!["bb02".to_string()]);
        cache.evict(&keep);
        assert!(cache.path("aa01").is_file(), "an input of this task stays");
        assert!(
            cache.path("bb02").is_file(),
            "an input another slot pinned stays"
        );
        assert!(
            !cache.path("cc03").is_file(),
            "the least recently used goes first"
        );
        assert!(
            !cache.path("dd04").is_file(),
            "then the next, until under the bound"
        );
        assert!(cache.path("ee05").is_file(), "the most recently used stays");
        drop(pin);
        let smaller = Cache::open(dir.path(), 10).expect("cache");
        smaller.evict(&HashSet::new());
        assert!(
            !cache.path("aa01").is_file() && !cache.path("bb02").is_file(),
            "unpinned, they go"
        );
    }
}
