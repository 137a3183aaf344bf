//! The rules of a manifest (a job's `inputs`, an ack's `outputs`): every path a plain relative
//! path, each at most once and never both a file and a folder, every hash a SHA-256, and counts
//! and sizes under the limits, each breach named in its 4xx. Nothing is stored before a whole
//! manifest has passed.

use super::FileEntry;
use crate::core::error::{Error, Result};
use crate::core::Limits;
use std::collections::BTreeSet;

/// Longest path in a manifest, bytes.
pub const PATH_MAX: usize = 1024;

/// Bounds on one manifest.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most entries.
    pub files: usize,
    /// Most bytes in all.
    pub bytes: u64,
    /// Largest single file.
    pub file_bytes: u64,
}

impl Bounds {
    /// A job's input manifest.
    pub fn inputs(limits: &Limits) -> Self {
        Bounds {
            files: limits.inputs_per_job,
            bytes: limits.input_bytes_per_job,
            file_bytes: limits.blob_bytes,
        }
    }

    /// The outputs of one ack.
    pub fn outputs(limits: &Limits) -> Self {
        Bounds {
            files: limits.outputs_per_task,
            bytes: u64::MAX,
            file_bytes: limits.blob_bytes,
        }
    }
}

/// Checks one path of a manifest: relative, `/`-separated, no empty, `.` or `..` parts, no
/// backslash, colon or control character, not starting with `-`.
pub fn path(field: &str, p: &str) -> Result<()> {
    let why = if p.is_empty() {
        Some("is empty")
    } else if p.len() > PATH_MAX {
        Some("is longer than 1024 bytes")
    } else if p.starts_with('/') {
        Some("is absolute; give a path relative to the pack root")
    } else if p.chars().any(char::is_control) {
        Some("contains a control character")
    } else if p.contains('\\') || p.contains(':') {
        Some("contains `\\` or `:` (use `/` between folders)")
    } else if p.starts_with('-') {
        Some("starts with `-`")
    } else if p.split('/').any(|part| part == "..") {
        Some("contains `..`")
    } else if p.split('/').any(|part| part.is_empty() || part == ".") {
        Some("has an empty or `.` part")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::field(field, format!("{field} {p:?} {why}"))),
    }
}

/// Checks a whole manifest named `name` (`inputs`, `outputs`) against `bounds`.
pub fn check(name: &str, entries: &[FileEntry], bounds: Bounds) -> Result<()> {
    if entries.len() > bounds.files {
        return Err(Error::TooLarge(format!(
            "{name}: {} files; at most {} (limit {name}_files)",
            entries.len(),
            bounds.files
        )));
    }
    let mut total: u64 = 0;
    let mut files = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        path(&format!("{name}[{i}].path"), &e.path)?;
        super::sha256_field(&format!("{name}[{i}].sha256"), &e.sha256)?;
        if e.size > bounds.file_bytes {
            return Err(Error::TooLarge(format!(
                "{name}[{i}].size: {} bytes; at most {} per file (limit blob_bytes)",
                e.size, bounds.file_bytes
            )));
        }
        total = total.saturating_add(e.size);
        if !files.insert(e.path.as_str()) {
            return Err(Error::field(
                &format!("{name}[{i}].path"),
                format!("{name}[{i}].path {:?} appears twice", e.path),
            ));
        }
    }
    if total > bounds.bytes {
        return Err(Error::TooLarge(format!(
            "{name}: {total} bytes in all; at most {} (limit {name}_bytes)",
            bounds.bytes
        )));
    }
    // A path may not be a folder of another (`a` and `a/b`): one of them could not be made.
    for (i, e) in entries.iter().enumerate() {
        let mut folder = e.path.as_str();
        while let Some((parent, _)) = folder.rsplit_once('/') {
            if files.contains(parent) {
                return Err(Error::field(
                    &format!("{name}[{i}].path"),
                    format!(
                        "{name}[{i}].path {:?} is inside {parent:?}, which is a file",
                        e.path
                    ),
                ));
            }
            folder = parent;
        }
    }
    Ok(())
}

/// The digest of a manifest: SHA-256 over its entries in path order, so the same files give
/// the same digest whatever order a client listed them in.
pub fn digest(entries: &[FileEntry]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&FileEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for e in sorted {
        h.update(e.path.as_bytes());
        h.update([0]);
        h.update(e.sha256.as_bytes());
        h.update(e.size.to_be_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn entry(path: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            sha256: H.into(),
            size: 1,
        }
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::BadInput { field, .. } => field.unwrap_or_default(),
            other => format!("not a bad input: {other}"),
        }
    }

    fn bounds() -> Bounds {
        Bounds::inputs(&Limits::default())
    }

    #[test]
    fn escaping_absolute_and_odd_paths_are_refused_naming_the_entry() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "c:/x",
            "-rf",
            "a\nb",
            "",
        ] {
            let err = check("inputs", &[entry("ok.blend"), entry(bad)], bounds()).unwrap_err();
            assert_eq!(field_of(err), "inputs[1].path", "{bad:?} must be refused");
        }
    }

    #[test]
    fn duplicate_paths_and_file_folder_clashes_are_refused() {
        let dup = check("inputs", &[entry("a.png"), entry("a.png")], bounds()).unwrap_err();
        assert_eq!(field_of(dup), "inputs[1].path");
        let clash = check("inputs", &[entry("tex"), entry("tex/a.png")], bounds()).unwrap_err();
        assert_eq!(field_of(clash), "inputs[1].path");
    }

    #[test]
    fn bad_hash_is_refused() {
        let mut e = entry("a.png");
        e.sha256 = H.to_uppercase();
        assert_eq!(
            field_of(check("inputs", &[e], bounds()).unwrap_err()),
            "inputs[0].sha256"
        );
    }

    #[test]
    fn limits_are_named() {
        let mut b = bounds();
        b.files = 1;
        let err = check("inputs", &[entry("a"), entry("b")], b).unwrap_err();
        assert!(
            matches!(&err, Error::TooLarge(m) if m.contains("inputs_files")),
            "{err}"
        );
        let mut b = bounds();
        b.bytes = 1;
        let err = check("inputs", &[entry("a"), entry("b")], b).unwrap_err();
        assert!(
            matches!(&err, Error::TooLarge(m) if m.contains("inputs_bytes")),
            "{err}"
        );
    }

    #[test]
    fn digest_ignores_order() {
        let a = [entry("a"), entry("b")];
        let b = [entry("b"), entry("a")];
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&a[..1]));
    }
}
