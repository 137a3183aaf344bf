//! A fresh work directory per task attempt for jobs that carry their files:
//! `<state dir>/work/<task>-<attempt>/in` holds the input manifest's layout (hard links into
//! the cache, so Blender's `//textures/wood.png` resolves next to the .blend), `out` receives
//! what the program writes. Removed after the task (and its outputs' upload).
//!
//! Hard links rather than copies: a 1 GiB input costs nothing to materialise. They are safe
//! because cache files are read-only; where a hard link is impossible (another file system)
//! the file is copied.

use std::path::{Component, Path, PathBuf};

use super::error::NodeError;
use crate::core::blobs::FileEntry;

/// One task's work directory; removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// Creates an empty work dir for attempt `attempt` of task `task` under `base`.
    pub fn create(base: &Path, task: &str, attempt: u32) -> Result<WorkDir, NodeError> {
        let root = base.join(format!("{task}-{attempt}"));
        let io = |e| NodeError::io(format!("creating the work dir {}", root.display()), e);
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io)?;
        }
        std::fs::create_dir_all(root.join("in")).map_err(io)?;
        std::fs::create_dir_all(root.join("out")).map_err(io)?;
        let root = root.canonicalize().map_err(io)?;
        Ok(WorkDir { root })
    }

    /// A work dir a killed run left with finished outputs (see `node::carried::recover`).
    pub fn adopt(root: PathBuf) -> WorkDir {
        WorkDir { root }
    }

    /// The work dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps the work dir on disk (its outputs could not be uploaded yet).
    pub fn keep(mut self) {
        self.root = PathBuf::new();
    }

    /// Where the inputs are (the project root of the task).
    pub fn input(&self) -> PathBuf {
        self.root.join("in")
    }

    /// Where the program writes (the output root of the task).
    pub fn output(&self) -> PathBuf {
        self.root.join("out")
    }

    /// Puts each cached file at its manifest path under [`WorkDir::input`].
    pub fn materialise(&self, files: &[(FileEntry, PathBuf)]) -> Result<(), NodeError> {
        let input = self.input();
        for (entry, cached) in files {
            let rel = Path::new(&entry.path);
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(NodeError::Rejected(format!(
                    "inputs path {:?} is not a plain relative path",
                    entry.path
                )));
            }
            let dest = input.join(rel);
            let io = |e| NodeError::io(format!("placing {}", dest.display()), e);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            if std::fs::hard_link(cached, &dest).is_err() {
                std::fs::copy(cached, &dest).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Every regular file under [`WorkDir::output`], as (relative `/` path, full path), sorted.
    /// Symlinks are not followed: a program cannot make the node upload files from elsewhere.
    pub fn outputs(&self) -> Result<Vec<(String, PathBuf)>, NodeError> {
        let mut out = Vec::new();
        let mut stack = vec![self.output()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| NodeError::io(format!("listing {}", dir.display()), e))?;
            for e in entries.flatten() {
                let Ok(kind) = e.file_type() else { continue };
                let path = e.path();
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    if let Some(rel) = super::paths::relative_to(&self.output(), &path) {
                        out.push((rel.replace('\\', "/"), path));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The name of the record of a finished task whose outputs still wait for upload and ack.
pub const PENDING: &str = "pending.json";

/// Removes the work dirs under `base` but those holding finished outputs ([`PENDING`], left
/// for `node::carried::recover`): the dirs of tasks an earlier run did not finish (killed
/// mid-render, they can hold gigabytes of partial frames; the farm leases the tasks again).
/// The agent calls it once at start, before its first lease: later it would remove the dirs of
/// running tasks. (The state dir's lock keeps other node processes out.)
pub fn sweep_unfinished(base: &Path) {
    let mut removed = 0;
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let dir = e.path();
        if dir.is_dir() && !dir.join(PENDING).is_file() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the work dir of an unfinished task");
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "removed the work dirs of tasks an earlier run did not finish"
        );
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.root.as_os_str().is_empty() {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(dir = %self.root.display(), error = %e, "cannot remove the work dir");
        }
    }
}
