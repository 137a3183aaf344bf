//! `submit --upload`: send what the farm lacks of a pack (one "which do you lack?" round, then
//! one streamed PUT per missing blob), and say what moved.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::pack::{self, Pack};
use crate::node::client::Client;
use crate::node::transfer::Transfer;
use crate::wire::blobs::MissingBlob;

/// The flags of `submit ... --upload`.
#[derive(Debug, Args, Default)]
pub struct UploadArgs {
    /// Send the .blend and the files it needs to the farm (nodes need no shared disk): FILE is
    /// then a path on this machine.
    #[arg(long, global = true)]
    pub upload: bool,
    /// The pack root: manifest paths are relative to it [default: the current directory when
    /// FILE is under it, else FILE's folder].
    #[arg(long, global = true, requires = "upload")]
    pub root: Option<PathBuf>,
    /// Also upload the files under the root matching this glob (`textures/**`; repeatable).
    #[arg(long = "include", global = true, requires = "upload")]
    pub includes: Vec<String>,
    /// Blender, to pack the .blend with the files it needs (the add-on's pack script) [default:
    /// `blender` on PATH; without it only FILE and --include files are sent].
    #[arg(long, env = "EDGEFARM_BLENDER", global = true)]
    pub blender: Option<PathBuf>,
    /// Submit even when files the scene needs are missing (they are listed either way).
    #[arg(long, global = true, requires = "upload")]
    pub allow_missing: bool,
}

/// What an upload moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// Files uploaded.
    pub files: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Files the farm had already.
    pub skipped_files: u64,
    /// Bytes the farm had already.
    pub skipped_bytes: u64,
    /// What the pack script's hash cache did (when Blender made the pack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<pack::CacheCounters>,
}

impl Moved {
    /// `uploaded 3 files, 2.1 MiB; 5 files already on the farm`.
    pub fn summary(&self, verb: &str, already: &str) -> String {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        format!(
            "{verb} {} file{}, {:.1} MiB; {} file{} {already}",
            self.files,
            s(self.files),
            self.bytes as f64 / (1 << 20) as f64,
            self.skipped_files,
            s(self.skipped_files)
        )
    }
}

/// The pack of `file` by these flags.
pub fn pack_of(args: &UploadArgs, file: &str) -> anyhow::Result<Pack> {
    // Absolute: Blender resolves a relative path against $PWD, which need not be the cwd.
    let path = PathBuf::from(file)
        .canonicalize()
        .map_err(|e| super::UsageError(format!("{file}: {e}")))?;
    let blender = args
        .blender
        .clone()
        .unwrap_or_else(|| PathBuf::from("blender"));
    let root = pack::root_for(&path, args.root.as_deref())?;
    let script = match pack::pack_by_blender(&blender, &path, &root) {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!(
                "note: cannot run {} to pack the .blend ({why}); sending {file} and --include files only",
                blender.display()
            );
            None
        }
    };
    let pack = pack::pack(&path, Some(&root), &args.includes, script)?;
    for w in &pack.warnings {
        eprintln!("warning: {w}");
    }
    if !pack.missing.is_empty() {
        for m in &pack.missing {
            eprintln!("missing: {m}");
        }
        if !args.allow_missing {
            return Err(super::UsageError(format!(
                "{} file{} the scene needs {} missing (listed above); nothing was uploaded or submitted (--allow-missing submits anyway)",
                pack.missing.len(),
                if pack.missing.len() == 1 { "" } else { "s" },
                if pack.missing.len() == 1 { "is" } else { "are" },
            ))
            .into());
        }
    }
    Ok(pack)
}

/// Uploads what the farm lacks of `pack`.
pub async fn upload(client: &Client, pack: &Pack) -> anyhow::Result<Moved> {
    let transfer = Transfer::new(client)?;
    let mut missing: HashMap<String, MissingBlob> = transfer
        .missing(&pack.entries())
        .await?
        .into_iter()
        .map(|m| (m.sha256.clone(), m))
        .collect();
    let mut moved = Moved {
        cache: pack.cache,
        ..Moved::default()
    };
    for (e, path) in &pack.files {
        // Each missing blob once (removed when sent).
        if let Some(blob) = missing.remove(&e.sha256) {
            transfer.upload(path, &blob).await?;
            moved.files += 1;
            moved.bytes += e.size;
        } else {
            moved.skipped_files += 1;
            moved.skipped_bytes += e.size;
        }
    }
    Ok(moved)
}
