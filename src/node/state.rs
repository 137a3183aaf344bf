//! The node's identity on disk (`<state dir>/node.json`): node id and token from enrolment.
//!
//! The token is shown once by the server, so losing it means enrolling again as a new node; the
//! file is written to a temporary name and renamed so a crash never leaves half a token, and it
//! is readable by its owner only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::NodeError;

/// What is kept between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Server the token belongs to.
    pub url: String,
    pub node_id: String,
    pub token: String,
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

/// Writes the state file atomically, mode 0600.
pub fn save(dir: &Path, state: &NodeState) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join("node.json.tmp");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| NodeError::io("encoding node.json", e.into()))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
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
