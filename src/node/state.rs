//! The node's identity on disk (`<state dir>/node.json`): node id and token from enrolment.
//!
//! The token is shown once by the server, so losing it means enrolling again as a new node; the
//! file is written to a temporary name and renamed so a crash never leaves half a token, and it
//! is readable by its owner only.
//!
//! While a node runs it holds an exclusive lock on `<state dir>/lock` (`flock` on Unix, an open
//! without write sharing on Windows: [`platform::try_lock`]): two nodes on one state
//! dir would share one id and token (the server could not tell them apart, and the second
//! node's name would be ignored), so the second one stops at start and says how to fix it. A
//! lock rather than a pid file: the kernel drops it when the process dies, even by SIGKILL, so
//! a crash never leaves a stale lock behind.

use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::NodeError;
use super::platform;

/// What is kept between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Server the token belongs to.
    pub url: String,
    pub node_id: String,
    pub token: String,
}

/// The held lock on a state dir; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Takes the exclusive lock on `dir` (creating it, private: mode 0700 on Unix), or says which
/// node holds it.
pub fn lock(dir: &Path) -> Result<StateLock, NodeError> {
    platform::create_private_dir(dir)
        .map_err(|e| NodeError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("lock");
    let taken = platform::try_lock(&path)
        .map_err(|e| NodeError::io(format!("locking {}", path.display()), e))?;
    let Some(mut file) = taken else {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        let by = if holder.is_empty() {
            String::new()
        } else {
            format!(" (pid {holder})")
        };
        return Err(NodeError::Config(format!(
            "another edgefarm node{by} is running with the state dir {}: two nodes there would share one identity; give this node its own --state-dir (or EDGEFARM_STATE_DIR, or `state_dir` in its config)",
            dir.display()
        )));
    };
    // The holder's pid, for the message above (informative only: the lock is the truth).
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(StateLock { _file: file })
}

/// `<dir>/node.json`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("node.json")
}

/// Reads the state file; `None` when there is none (or it is for another server).
pub fn load(dir: &Path, url: &str) -> Result<Option<NodeState>, NodeError> {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::io(format!("reading {}", file.display()), e)),
    };
    let state: NodeState = serde_json::from_str(&text)
        .map_err(|e| NodeError::Config(format!("{}: {e}", file.display())))?;
    Ok((state.url == url).then_some(state))
}

/// Writes the state file atomically, readable by its owner only (mode 0600 on Unix; on
/// Windows it inherits the state dir's ACL, see [`platform::create_private_dir`]).
pub fn save(dir: &Path, state: &NodeState) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join("node.json.tmp");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| NodeError::io("encoding node.json", e.into()))?;
    let write = || -> std::io::Result<()> {
        let mut f = platform::private(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
        )
        .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path(dir))
    };
    write().map_err(|e| NodeError::io(format!("writing {}", path(dir).display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_state_dir_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = lock(tmp.path()).unwrap();
        let err = lock(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("--state-dir") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        assert!(lock(tmp.path()).is_ok(), "a dropped lock is free again");
    }

    #[test]
    fn saved_state_loads_back_for_the_same_server_only() {
        let tmp = tempfile::tempdir().unwrap();
        let st = NodeState {
            url: "http://a".into(),
            node_id: "n1".into(),
            token: "efn_x".into(),
        };
        save(tmp.path(), &st).unwrap();
        assert_eq!(load(tmp.path(), "http://a").unwrap(), Some(st));
        assert_eq!(
            load(tmp.path(), "http://b").unwrap(),
            None,
            "a token is only good for its server"
        );
    }
}
