//! Confining job-supplied paths to the node's roots.
//!
//! A job's params are written by whoever can submit jobs, not by the node's admin, so a path in
//! them must never reach outside the configured project and output roots. The lexical rule is
//! the core's [`crate::core::job_path`] (`..`, absolute paths, drives, `\`, streams, Windows
//! device names and a leading `-` are refused on every platform); for inputs, which exist, the
//! canonical path is also checked so a symlink inside the project cannot lead out.

use std::path::{Path, PathBuf};

use super::error::NodeError;

/// Checks `rel` with the job-path rule ([`crate::core::job_path`], the same one the server
/// applies at submit) and joins it to `root` part by part, so its `/` become the platform's
/// separator (a verbatim Windows root, `\\?\C:\x`, would take a `/` literally).
pub fn confine(field: &str, root: &Path, rel: &str) -> Result<PathBuf, NodeError> {
    crate::core::job_path::check(rel).map_err(|why| reject(field, rel, why))?;
    let mut path = root.to_path_buf();
    for part in rel.split('/').filter(|p| *p != ".") {
        path.push(part);
    }
    Ok(path)
}

/// Like [`confine`] for an input that must exist: the resolved file must still be under `root`
/// after following symlinks (`root` is canonical, see config validation).
pub fn confine_existing(field: &str, root: &Path, rel: &str) -> Result<PathBuf, NodeError> {
    let joined = confine(field, root, rel)?;
    let canonical = joined.canonicalize().map_err(|e| {
        // The first thing a farm whose nodes share no disk with the submitter meets: say the
        // way out. (A job that carries its files cannot get here: the server checks that
        // params.file is in its manifest, and the node lays the manifest out first.)
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            ": keep projects on a disk every node mounts at its project root, or submit with --upload so the job carries its files"
        } else {
            ""
        };
        reject(
            field,
            rel,
            &format!("cannot be opened under the project root ({e}){hint}"),
        )
    })?;
    if !canonical.starts_with(root) {
        return Err(reject(field, rel, "leads outside the project root"));
    }
    Ok(canonical)
}

/// Like [`confine`] for an output, which need not exist yet: the deepest part of it that exists
/// must still be under `root` after following symlinks, so a symlink left in the output root
/// (by an earlier program, or a person) cannot lead a render's files out of it.
pub fn confine_output(field: &str, root: &Path, rel: &str) -> Result<PathBuf, NodeError> {
    let joined = confine(field, root, rel)?;
    let mut existing = joined.as_path();
    // `symlink_metadata` sees a dangling symlink too: it is resolved (and refused) below.
    while existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    let canonical = existing.canonicalize().map_err(|e| {
        reject(
            field,
            rel,
            &format!("cannot be resolved under the root: {e}"),
        )
    })?;
    if !canonical.starts_with(root) {
        return Err(reject(field, rel, "leads outside the output root"));
    }
    Ok(joined)
}

fn reject(field: &str, value: &str, why: &str) -> NodeError {
    NodeError::Rejected(format!("params.{field} {value:?} {why}"))
}

/// A path under `root` as the server should see it: relative to the root with `/` between its
/// parts on every platform, or `None` outside it.
pub fn relative_to(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_dir_is_rejected() {
        let err = confine("file", Path::new("/p"), "shots/../../etc/passwd").unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
    }

    #[test]
    fn absolute_path_is_rejected() {
        let err = confine("output", Path::new("/p"), "/etc/cron.d/x").unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn leading_dash_is_rejected() {
        assert!(confine("file", Path::new("/p"), "--python-expr").is_err());
    }

    #[test]
    fn plain_relative_path_is_joined() {
        let p = confine("file", Path::new("/p"), "shots/a.blend").unwrap();
        assert_eq!(p, PathBuf::from("/p/shots/a.blend"));
    }

    #[test]
    fn windows_forms_are_rejected_on_every_platform() {
        for rel in [
            r"shots\a.blend",
            r"C:\Windows\x",
            "C:foo",
            r"\\server\share\x",
            "a.blend:secret",
            "shots/NUL",
            "con.png",
        ] {
            let err = confine("file", Path::new("/p"), rel).unwrap_err();
            assert!(err.to_string().contains("params.file"), "{rel}: {err}");
        }
    }

    #[test]
    fn parts_are_joined_with_the_platform_separator() {
        let root = Path::new("root");
        let p = confine("output", root, "./shot/new/f_####").unwrap();
        let want: PathBuf = ["root", "shot", "new", "f_####"].iter().collect();
        assert_eq!(p, want);
        assert_eq!(
            relative_to(root, &want).as_deref(),
            Some("shot/new/f_####"),
            "reported back with '/'"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlink_out_of_root_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        std::fs::write(tmp.path().join("secret.blend"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.blend"), root.join("link.blend"))
            .unwrap();
        let err = confine_existing("file", &root, "link.blend").unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn output_through_a_symlink_out_of_root_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("out");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let root = root.canonicalize().unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("link")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), root.join("dangling")).unwrap();
        for rel in ["link/f_####", "link/new/dir/f_####", "dangling/f_####"] {
            let err = confine_output("output", &root, rel).unwrap_err();
            assert!(
                err.to_string().contains("outside") || err.to_string().contains("resolved"),
                "{rel}: {err}"
            );
        }
        let ok = confine_output("output", &root, "shot/new/f_####").unwrap();
        assert_eq!(
            ok,
            root.join("shot/new/f_####"),
            "a path that does not exist yet is fine"
        );
    }
}
