//! What `--upload` sends: the .blend and the files it needs, as an input manifest relative to
//! the pack root.
//!
//! The pack root is `--root`, else the current directory when FILE is under it, else FILE's
//! folder. When Blender is at hand, the pack is made by the same Python script the Blender
//! add-on runs (`blender/edgefarm/pack.py`, embedded here): Blender lists every file the scene
//! needs (linked libraries recursively, images, sounds, clips, fonts, caches, volumes), files
//! outside the root go under `_outside/...`, and what is sent as FILE is a copy of the .blend
//! whose paths all point inside the pack (the file itself is only read). The script hashes
//! through a (path, size, mtime) cache. Files under the root matching an `--include` glob
//! (`textures/**`, `*.png`; `**` spans folders, `*` and `?` stay within one) are added.
//! Without Blender, FILE as it is and the `--include` files are sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::UsageError;
use crate::core::blobs::FileEntry;
use crate::node::transfer::hash_file;

/// The pack script shared with the Blender add-on.
pub const SCRIPT: &str = include_str!("../../blender/edgefarm/pack.py");

/// A pack: the root, and each file with its manifest entry.
#[derive(Debug, Clone)]
pub struct Pack {
    /// The pack root.
    pub root: PathBuf,
    /// `params.file` (FILE relative to the root).
    pub file: String,
    /// Manifest entries with the local file each came from, in path order.
    pub files: Vec<(FileEntry, PathBuf)>,
    /// Files the scene needs that are not there (`image 'wood': /p/tex/wood.png`).
    pub missing: Vec<String>,
    /// What the pack script could not do (a path it could not rewrite, ...).
    pub warnings: Vec<String>,
    /// The hash cache's counters, when the script made the pack.
    pub cache: Option<CacheCounters>,
}

/// What the pack script's hash cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheCounters {
    /// Files read and hashed.
    pub hashed_files: u64,
    /// Bytes read and hashed.
    pub hashed_bytes: u64,
    /// Files answered from the cache without being read.
    pub cached_files: u64,
}

/// The pack script's answer (its `EDGEFARM_PACK` line).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScriptPack {
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The copy's place in the pack.
    #[serde(default)]
    pub file: String,
    /// Every file, the copy included.
    #[serde(default)]
    pub files: Vec<ScriptFile>,
    /// Files the scene needs that are not there.
    #[serde(default)]
    pub missing: Vec<ScriptMissing>,
    /// What it could not do.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Its hash cache's counters.
    #[serde(default)]
    pub cache: CacheCounters,
}

/// One file of [`ScriptPack`].
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptFile {
    /// Place in the pack.
    pub path: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The local file.
    pub local: PathBuf,
}

/// One missing file of [`ScriptPack`].
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptMissing {
    /// `image`, `library`, ...
    pub kind: String,
    /// The datablock's name.
    pub name: String,
    /// Where it was looked for.
    pub path: String,
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

fn not_under(file: &Path, root: &Path) -> UsageError {
    UsageError(format!(
        "{} is not under the pack root {} (use --root)",
        file.display(),
        root.display()
    ))
}

/// The pack root for FILE (both canonical).
pub fn root_for(file: &Path, root: Option<&Path>) -> anyhow::Result<PathBuf> {
    let canon = |p: &Path| {
        p.canonicalize()
            .map_err(|e| UsageError(format!("{}: {e}", p.display())))
    };
    if let Some(r) = root {
        // Said here, before Blender is started to pack: a wrong --root is a typo to fix first.
        let r = canon(r)?;
        if !file.starts_with(&r) {
            return Err(not_under(file, &r).into());
        }
        return Ok(r);
    }
    let cwd = std::env::current_dir()?.canonicalize()?;
    if file.starts_with(&cwd) {
        return Ok(cwd);
    }
    Ok(file.parent().map(Path::to_path_buf).unwrap_or(cwd))
}

/// Builds the pack of `file` with `includes` (globs relative to the root) and what the pack
/// script found (`None` without Blender: FILE itself is sent).
pub fn pack(
    file: &Path,
    root: Option<&Path>,
    includes: &[String],
    script: Option<ScriptPack>,
) -> anyhow::Result<Pack> {
    let file = file
        .canonicalize()
        .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let root = root_for(&file, root)?;
    let rel = rel_of(&root, &file).ok_or_else(|| not_under(&file, &root))?;
    let mut chosen: BTreeMap<String, (Option<FileEntry>, PathBuf)> = BTreeMap::new();
    if includes.iter().any(|g| !g.is_empty()) {
        for path in walk(&root) {
            if let Some(r) = rel_of(&root, &path) {
                if includes.iter().any(|g| glob_match(g, &r)) {
                    chosen.insert(r, (None, path));
                }
            }
        }
    }
    let (mut missing, mut warnings, mut cache) = (Vec::new(), Vec::new(), None);
    let mut rel = rel;
    match script {
        Some(s) => {
            rel = s.file;
            for f in s.files {
                let entry = FileEntry {
                    path: f.path.clone(),
                    sha256: f.sha256,
                    size: f.size,
                };
                chosen.insert(f.path, (Some(entry), f.local));
            }
            missing = s
                .missing
                .iter()
                .map(|m| format!("{} '{}': {}", m.kind, m.name, m.path))
                .collect();
            warnings = s.warnings;
            cache = Some(s.cache);
        }
        None => {
            chosen.insert(rel.clone(), (None, file.clone()));
        }
    }
    let mut files = Vec::with_capacity(chosen.len());
    for (rel, (entry, path)) in chosen {
        crate::core::blobs::manifest::path("inputs", &rel)
            .map_err(|e| UsageError(format!("cannot pack {}: {e}", path.display())))?;
        let entry = match entry {
            Some(e) => e,
            None => {
                let (sha256, size) = hash_file(&path)
                    .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
                FileEntry {
                    path: rel,
                    sha256,
                    size,
                }
            }
        };
        files.push((entry, path));
    }
    Ok(Pack {
        root,
        file: rel,
        files,
        missing,
        warnings,
        cache,
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

/// Runs the pack script in Blender on `blend` with the pack root `root`, or says why it could
/// not. The script goes to a temporary file for the run (`--python` reads a file).
pub fn pack_by_blender(blender: &Path, blend: &Path, root: &Path) -> Result<ScriptPack, String> {
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = std::env::temp_dir().join(format!("edgefarm-pack-{}-{n}.py", std::process::id()));
    std::fs::write(&script, SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
    let out = std::process::Command::new(blender)
        .args(["-b", "--factory-startup"])
        .arg(blend)
        .arg("--python")
        .arg(&script)
        .args(["--", "--root"])
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output();
    let _ = std::fs::remove_file(&script);
    let out = out.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answer = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("EDGEFARM_PACK "));
    let Some(answer) = answer else {
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        return Err(format!("{}: {}", out.status, tail.join(" / ")));
    };
    let pack: ScriptPack =
        serde_json::from_str(answer).map_err(|e| format!("the pack script's answer: {e}"))?;
    match pack.error {
        Some(e) => Err(e),
        None => Ok(pack),
    }
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
