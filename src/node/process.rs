//! Starting a task's program and killing all of it.
//!
//! The child runs as a group of its own ([`platform::Group`]: a process group on Unix, a Job
//! Object on Windows) so that a kill reaches everything it started (Blender's own helper
//! processes, a script's subprocesses): killing only the direct child would leave grandchildren
//! rendering and holding the pipes open. The group is killed on drop too, so a panicking slot
//! cannot leak a render. The environment is cleared to a short allowlist
//! ([`platform::env_kept`]): the node's own secret and token must never reach a job's program.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use super::error::NodeError;
use super::platform::{self, Group};

pub use super::platform::exit_code;
/// Longest line kept from the program's output; longer ones are cut (a binary blob on stdout
/// must not grow a slot's memory without bound).
const MAX_LINE: usize = 8 * 1024;

/// A running program, its output merged into one stream of lines.
pub struct Child {
    child: tokio::process::Child,
    group: Group,
}

/// The merged stdout+stderr lines of a [`Child`] (kept apart so both can be awaited at once).
pub type Lines = mpsc::Receiver<String>;

impl Child {
    /// Starts `program` with `args` (no shell) in `cwd`.
    pub fn spawn(program: &Path, args: &[String], cwd: &Path) -> Result<(Child, Lines), NodeError> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(
                platform::env_kept()
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        platform::prepare(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| NodeError::io(format!("starting {}", program.display()), e))?;
        let group = match Group::attach(&child) {
            Ok(group) => group,
            Err(e) => {
                let _ = child.start_kill();
                return Err(NodeError::io(
                    format!("confining {} to a job", program.display()),
                    e,
                ));
            }
        };
        let (tx, lines) = mpsc::channel(256);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, tx));
        }
        Ok((Child { child, group }, lines))
    }

    /// Waits for the program to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus, NodeError> {
        self.child
            .wait()
            .await
            .map_err(|e| NodeError::io("waiting for the program", e))
    }

    /// Kills the whole group (SIGKILL on Unix, the Job Object on Windows).
    pub fn kill_group(&mut self) {
        self.group.kill();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only kill the group if the leader has not been reaped: once reaped its pid (and
        // group id) could be reused by an unrelated process.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
        }
    }
}

async fn pump(stream: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                buf.truncate(MAX_LINE);
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_lines_and_exit_code_are_collected() {
        let args = vec![
            "-c".to_string(),
            "echo out; echo err >&2; exit 3".to_string(),
        ];
        let (mut child, mut rx) =
            Child::spawn(Path::new("/bin/sh"), &args, Path::new("/")).unwrap();
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l);
        }
        lines.sort();
        assert_eq!(lines, vec!["err", "out"]);
        assert_eq!(exit_code(&child.wait().await.unwrap()), 3);
    }

    #[tokio::test]
    async fn kill_group_reaches_grandchildren() {
        let tmp = tempfile::tempdir().unwrap();
        let pidfile = tmp.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let args = vec!["-c".to_string(), script];
        let (mut child, _lines) =
            Child::spawn(Path::new("/bin/sh"), &args, Path::new("/")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let grandchild: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the script never started its sleep"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        child.kill_group();
        let status = child.wait().await.unwrap();
        assert_eq!(exit_code(&status), platform::KILLED_EXIT_CODE);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // The grandchild is reparented and reaped by init; wait until it is gone.
        while std::path::Path::new(&format!("/proc/{grandchild}")).exists()
            && !std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .unwrap_or_default()
                .contains(" Z ")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild {grandchild} survived the kill"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
