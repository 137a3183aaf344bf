//! What differs between the operating systems a node runs on, in one place.
//!
//! | need | Linux | macOS | Windows |
//! |---|---|---|---|
//! | run a program as one killable tree | own process group | own process group | a Job Object per task |
//! | kill the whole tree | `SIGKILL` to the group | `SIGKILL` to the group | `TerminateJobObject` |
//! | program outlives a dead node? | no: `PR_SET_PDEATHSIG` | **yes**, until it ends (see below) | no: the job is kill-on-close and only the node holds its handle |
//! | graceful stop (drain; twice: stop now) | `SIGTERM`, `SIGINT` | `SIGTERM`, `SIGINT` | Ctrl-C, Ctrl-Break, console close, shutdown; as a service (`--service`): a service stop |
//! | reload the config | `SIGHUP` | `SIGHUP` | the `--config` file changes (checked every 2 s) |
//! | private state files | mode 0600 (dirs 0700) | mode 0600 (dirs 0700) | the folder's inherited ACL: the default state dir is under `%LOCALAPPDATA%`, which only its user (and administrators) can read |
//! | one node per state dir | `flock` | `flock` | the lock file is opened without write sharing |
//!
//! macOS has no parent-death signal: when a node is killed (SIGKILL, a crash) its running
//! program keeps going until it ends, while the task's lease lapses and another node may render
//! the same frames; a node stopped with SIGTERM/SIGINT kills its programs itself. macOS is
//! compile-checked here, never run (see docs/NODE.md).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
#[cfg(windows)]
mod service;
#[cfg(windows)]
pub use service::run_as_service;

/// Unix has no service manager API to hand the process to: systemd and launchd run `edgefarm
/// node` as is and stop it with SIGTERM (docs/NODE.md has a unit file).
#[cfg(unix)]
pub fn run_as_service(_body: Box<dyn FnOnce() -> u32 + Send>) -> std::io::Result<u32> {
    Err(std::io::Error::other(
        "--service is for the Windows service manager; under systemd or launchd run `edgefarm node` without it (SIGTERM drains)",
    ))
}

use std::path::{Path, PathBuf};

/// What the operator asked the node for (see [`Signals::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Drain (the first time), stop now (the second).
    Stop,
    /// Read the config again.
    Reload,
}

/// A program's path as the roots and the allow-list keep it: the canonical form without the
/// Windows verbatim prefix (`\\?\C:\x` -> `C:\x`, `\\?\UNC\srv\share` -> `\\srv\share`) where
/// that is the same path, since many programs (Blender among them) do not accept `\\?\`.
pub fn canonical(path: &Path) -> std::io::Result<PathBuf> {
    let canonical = path.canonicalize()?;
    Ok(without_verbatim(&canonical.to_string_lossy())
        .map(PathBuf::from)
        .unwrap_or(canonical))
}

/// The plain form of a verbatim Windows path, when it has one (pure string logic, so it is
/// tested on every platform). `None`: not verbatim, or only valid verbatim (too long, or a
/// component Win32 would alter, such as a trailing dot or a reserved name).
pub fn without_verbatim(path: &str) -> Option<String> {
    let plain = if let Some(rest) = path.strip_prefix(r"\\?\UNC\") {
        format!(r"\\{rest}")
    } else {
        let rest = path.strip_prefix(r"\\?\")?;
        let b = rest.as_bytes();
        if !(b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\') {
            return None;
        }
        rest.to_string()
    };
    let parts_ok = plain
        .split('\\')
        .skip(if plain.starts_with(r"\\") { 4 } else { 1 })
        .all(|c| crate::core::job_path::check_component(c).is_ok());
    (plain.len() < 260 && parts_ok).then_some(plain)
}

/// Environment variables a job's program keeps (everything else is cleared: the node's own
/// secret and token must never reach it).
pub fn env_kept() -> &'static [&'static str] {
    ENV_KEPT
}

/// Folder names such as `Blender 4.2` (as Blender's Windows installer makes them), newest
/// version first; other names are left out.
pub fn newest_first(names: Vec<String>) -> Vec<String> {
    let version = |name: &str| -> Option<Vec<u32>> {
        let v = name.strip_prefix("Blender ")?;
        v.split('.').map(|n| n.parse().ok()).collect()
    };
    let mut found: Vec<(Vec<u32>, String)> = names
        .into_iter()
        .filter_map(|n| version(&n).map(|v| (v, n)))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blender_folders_are_tried_newest_first() {
        let names = [
            "Blender 3.6",
            "Blender 4.10",
            "Blender 4.2",
            "Blender",
            "Other 9.9",
        ];
        assert_eq!(
            newest_first(names.iter().map(|s| s.to_string()).collect()),
            vec!["Blender 4.10", "Blender 4.2", "Blender 3.6"]
        );
    }

    #[test]
    fn verbatim_drive_and_unc_paths_lose_their_prefix() {
        assert_eq!(
            without_verbatim(r"\\?\C:\Renders\shot").as_deref(),
            Some(r"C:\Renders\shot")
        );
        assert_eq!(
            without_verbatim(r"\\?\UNC\nas\farm\proj").as_deref(),
            Some(r"\\nas\farm\proj")
        );
        assert_eq!(without_verbatim(r"C:\x"), None, "not verbatim");
        assert_eq!(without_verbatim("/home/x"), None);
        assert_eq!(
            without_verbatim(r"\\?\C:\x\CON"),
            None,
            "a reserved name is only reachable verbatim"
        );
        assert_eq!(without_verbatim(r"\\?\Volume{0}\x"), None);
        let long = format!(r"\\?\C:\{}", "a".repeat(300));
        assert_eq!(without_verbatim(&long), None, "too long for the plain form");
    }

    #[test]
    fn secrets_do_not_reach_the_program() {
        assert!(!env_kept().iter().any(|k| k.starts_with("EDGEFARM")));
    }
}
