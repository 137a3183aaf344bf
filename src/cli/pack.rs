//! What `--upload` sends: the .blend and the files it needs, as an input manifest relative to
//! the pack root. Kept apart from the commands so the Blender add-on (#19) can reuse it.
//!
//! The pack root is `--root`, else the current directory when FILE is under it, else FILE's
//! folder. Files come from FILE itself, every file under the root matching an `--include`
//! glob (`textures/**`, `*.png`; `**` spans folders, `*` and `?` stay within one), and, when
//! Blender is at hand, the files the .blend links (`bpy.utils.blend_paths`) that lie under the
//! root. Nothing outside the root is ever packed: a path in the manifest is relative to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::UsageError;
use crate::core::blobs::FileEntry;
use crate::node::transfer::hash_file;

/// A pack: the root, and each file with its manifest entry.
#[derive(Debug, Clone)]
pub struct Pack {
    /// The pack root.
    pub root: PathBuf,
    /// `params.file` (FILE relative to the root).
    pub file: String,
    /// Manifest entries with the local file each came from, in path order.
    pub files: Vec<(FileEntry, PathBuf)>,
}

impl Pack {
    /// The manifest alone.
    pub fn entries(&self) -> Vec<FileEntry> {
        self.files.iter().map(|(e, _)| e.clone()).collect()
    }
}

fn rel_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// The pack root for FILE (both canonical).
pub fn root_for(file: &Path, root: Option<&Path>) -> anyhow::Result<PathBuf> {
    let canon = |p: &Path| {
        p.canonicalize()
            .map_err(|e| UsageError(format!("{}: {e}", p.display())))
    };
    if let Some(r) = root {
        return Ok(canon(r)?);
    }
    let cwd = std::env::current_dir()?.canonicalize()?;
    if file.starts_with(&cwd) {
        return Ok(cwd);
    }
    Ok(file.parent().map(Path::to_path_buf).unwrap_or(cwd))
}

/// Builds the pack of `file` with `includes` (globs relative to the root) and `linked` (paths
/// the .blend references, absolute).
pub fn pack(
    file: &Path,
    root: Option<&Path>,
    includes: &[String],
    linked: &[PathBuf],
) -> anyhow::Result<Pack> {
    let file = file
        .canonicalize()
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let root = root_for(&file, root)?;
    let rel = rel_of(&root, &file).ok_or_else(|| {
        UsageError(format!(
            "{} is not under the pack root {} (use --root)",
            file.display(),
            root.display()
        ))
    })?;
    let mut chosen: BTreeMap<String, PathBuf> = BTreeMap::new();
    chosen.insert(rel.clone(), file.clone());
    if !includes.is_empty() {
        for path in walk(&root) {
            if let Some(r) = rel_of(&root, &path) {
                if includes.iter().any(|g| glob_match(g, &r)) {
                    chosen.insert(r, path);
                }
            }
        }
    }
    for l in linked {
        let Ok(path) = l.canonicalize() else {
            eprintln!(
                "warning: the .blend links {}, which does not exist",
                l.display()
            );
            continue;
        };
        match rel_of(&root, &path) {
            Some(r) if path.is_file() => {
                chosen.insert(r, path);
            }
            Some(_) => {}
            None => eprintln!(
                "warning: the .blend links {}, outside the pack root {}: not uploaded",
                path.display(),
                root.display()
            ),
        }
    }
    let mut files = Vec::with_capacity(chosen.len());
    for (rel, path) in chosen {
        crate::core::blobs::manifest::path("inputs", &rel)
            .map_err(|e| UsageError(format!("cannot pack {}: {e}", path.display())))?;
        let (sha256, size) = hash_file(&path)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
        files.push((
            FileEntry {
                path: rel,
                sha256,
                size,
            },
            path,
        ));
    }
    Ok(Pack {
        root,
        file: rel,
        files,
    })
}

/// Every regular file under `root` (symlinks not followed).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// Whether the `/`-separated `path` matches `glob`: `**` any number of folders, `*` any run
/// of characters within one part, `?` one character.
pub fn glob_match(glob: &str, path: &str) -> bool {
    let g: Vec<&str> = glob.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').collect();
    parts_match(&g, &p)
}

fn parts_match(g: &[&str], p: &[&str]) -> bool {
    match (g.first(), p.first()) {
        (None, None) => true,
        (Some(&"**"), _) => parts_match(&g[1..], p) || (!p.is_empty() && parts_match(g, &p[1..])),
        (Some(gp), Some(pp)) => {
            part_match(gp.as_bytes(), pp.as_bytes()) && parts_match(&g[1..], &p[1..])
        }
        _ => false,
    }
}

fn part_match(g: &[u8], p: &[u8]) -> bool {
    match (g.first(), p.first()) {
        (None, None) => true,
        (Some(b'*'), _) => part_match(&g[1..], p) || (!p.is_empty() && part_match(g, &p[1..])),
        (Some(b'?'), Some(_)) => part_match(&g[1..], &p[1..]),
        (Some(a), Some(b)) if a == b => part_match(&g[1..], &p[1..]),
        _ => false,
    }
}

/// The files `blend` links, as Blender lists them (`bpy.utils.blend_paths(absolute=True)`),
/// or why Blender could not tell.
pub fn linked_by_blender(blender: &Path, blend: &Path) -> Result<Vec<PathBuf>, String> {
    const SCRIPT: &str = "import bpy\nfor p in bpy.utils.blend_paths(absolute=True, packed=False, local=False):\n    print('EDGEFARM_PATH\\t' + bpy.path.abspath(p))\n";
    let out = std::process::Command::new(blender)
        .args(["-b", "--factory-startup"])
        .arg(blend)
        .args(["--python-expr", SCRIPT])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        return Err(format!("{}: {}", out.status, tail.join(" / ")));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("EDGEFARM_PATH\t"))
        .map(PathBuf::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_span_folders_only_with_double_star() {
        assert!(glob_match("textures/**", "textures/a/b.png"));
        assert!(glob_match("**/*.png", "a.png"));
        assert!(glob_match("**/*.png", "x/y/a.png"));
        assert!(glob_match("*.png", "a.png"));
        assert!(!glob_match("*.png", "x/a.png"));
        assert!(glob_match("tex/?.png", "tex/a.png"));
        assert!(!glob_match("tex/?.png", "tex/ab.png"));
    }
}
