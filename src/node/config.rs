//! Node configuration: a TOML file, then flags and environment on top, then validation.
//!
//! Validation happens once, at start (and on SIGHUP), so a bad config is reported with its cause
//! before anything is claimed: a node must never lease a task it cannot run. Programs are stored
//! as absolute paths so that a later change of `PATH` cannot swap the program that runs.

use crate::core::model::JobType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::NodeError;
use super::platform;

/// The config file as written (every field optional; flags and env fill the gaps).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub token: Option<String>,
    pub queue: Option<String>,
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub slots: Option<u32>,
    pub project_root: Option<PathBuf>,
    pub output_root: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub recycle_after: Option<u32>,
    /// Bound of the content cache, MiB.
    pub cache_mib: Option<u64>,
    #[serde(default)]
    pub types: TypesFile,
}

/// `[types.*]`: the job types this node runs. Unknown keys are refused, so a typo such as
/// `[types.blendr]` fails at start instead of silently claiming nothing.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypesFile {
    pub blender: Option<BlenderFile>,
    pub command: Option<CommandFile>,
    pub ffmpeg: Option<FfmpegFile>,
}

/// `[types.ffmpeg]`: the FFmpeg that encodes `ffmpeg` jobs (preview videos).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FfmpegFile {
    /// The ffmpeg executable (a path, or a name looked up in PATH once at start).
    pub program: PathBuf,
}

/// `[types.blender]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlenderFile {
    /// The Blender executable, or `auto`: `blender` in PATH, else where the platform's installer
    /// puts it ([`find_blender`]), looked up once at start.
    pub program: PathBuf,
    /// `-t`: render threads, 0 = all cores.
    #[serde(default)]
    pub threads: u32,
    /// Extra arguments the admin allows, placed before `-a` (never from a job).
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[types.command]` with `[types.command.programs]`: name → program path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    pub programs: BTreeMap<String, PathBuf>,
}

/// Validated settings for the blender type.
#[derive(Debug, Clone, PartialEq)]
pub struct BlenderType {
    pub program: PathBuf,
    pub threads: u32,
    pub args: Vec<String>,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub url: String,
    pub secret: Option<String>,
    pub token: Option<String>,
    pub queue: String,
    pub name: String,
    /// Whether `name` was set (file, flag or env) rather than defaulted to the host name: only
    /// a chosen name renames an enrolled node.
    pub name_chosen: bool,
    pub tags: Vec<String>,
    pub slots: u32,
    pub project_root: PathBuf,
    pub output_root: PathBuf,
    pub state_dir: PathBuf,
    pub recycle_after: u32,
    /// Most bytes the content cache keeps between tasks (`<state dir>/cache`).
    pub cache_bytes: u64,
    pub blender: Option<BlenderType>,
    /// Program name (as a `command` job says it) → absolute path.
    pub programs: BTreeMap<String, PathBuf>,
    /// FFmpeg for `ffmpeg` jobs, absolute.
    pub ffmpeg: Option<PathBuf>,
}

impl NodeConfig {
    /// The job types to send in each poll: only what this config can run.
    pub fn types(&self) -> Vec<JobType> {
        let mut types = Vec::new();
        if self.blender.is_some() {
            types.push(JobType::Blender);
        }
        if !self.programs.is_empty() {
            types.push(JobType::Command);
        }
        if self.ffmpeg.is_some() {
            types.push(JobType::Ffmpeg);
        }
        types
    }
}

/// Reads and parses a config file (no validation yet: flags may still fill the gaps).
pub fn read_file(path: &Path) -> Result<FileConfig, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::ConfigRead {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
}

/// Turns the merged file+flags into a validated [`NodeConfig`].
pub fn validate(file: FileConfig) -> Result<NodeConfig, NodeError> {
    let url = file
        .url
        .ok_or_else(|| bad("no server url (set `url`, --url or EDGEFARM_URL)"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(format!(
            "url {url:?} must start with http:// or https://"
        )));
    }
    let token = file.token.filter(|t| !t.is_empty());
    let secret = file.secret.filter(|s| !s.is_empty());
    let state_dir = match file.state_dir {
        Some(dir) => dir,
        None => default_state_dir()?,
    };
    if token.is_none() && secret.is_none() && !state_dir.join("node.json").is_file() {
        return Err(bad(
            "neither a node token nor the farm secret or a node-join token to enrol with (set `token`/EDGEFARM_NODE_TOKEN or `secret`/EDGEFARM_SECRET)",
        ));
    }
    let queue = file.queue.unwrap_or_else(|| "default".to_string());
    if !is_name(&queue) {
        return Err(bad(format!(
            "queue {queue:?}: use letters, digits, '-' or '_'"
        )));
    }
    let slots = file.slots.unwrap_or(1);
    if !(1..=64).contains(&slots) {
        return Err(bad(format!("slots = {slots}: must be between 1 and 64")));
    }
    let project_root = existing_dir("project_root", file.project_root)?;
    let output_root = file
        .output_root
        .ok_or_else(|| bad("no output_root (set it in the file or --output-root)"))?;
    std::fs::create_dir_all(&output_root)
        .map_err(|e| bad(format!("output_root {}: {e}", output_root.display())))?;
    let output_root = existing_dir("output_root", Some(output_root))?;
    let blender = match file.types.blender {
        None => None,
        Some(b) => Some(BlenderType {
            program: blender_program(&b.program)?,
            threads: b.threads,
            args: b.args,
        }),
    };
    let mut programs = BTreeMap::new();
    for (name, path) in file.types.command.map(|c| c.programs).unwrap_or_default() {
        if !is_name(&name) {
            return Err(bad(format!("types.command.programs: bad name {name:?}")));
        }
        let field = format!("types.command.programs.{name}");
        programs.insert(name, program_path(&field, &path)?);
    }
    let ffmpeg = match file.types.ffmpeg {
        None => None,
        Some(f) => Some(ffmpeg_program(&f.program)?),
    };
    if blender.is_none() && programs.is_empty() && ffmpeg.is_none() {
        return Err(bad(
            "no job types: add [types.blender], [types.command.programs] or [types.ffmpeg]",
        ));
    }
    let name_chosen = file.name.is_some();
    let name = file.name.unwrap_or_else(default_name);
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(bad(format!(
            "name {name:?}: 1 to 256 bytes, no control characters"
        )));
    }
    let tags = file.tags.unwrap_or_default();
    if let Some(t) = tags.iter().find(|t| !is_name(t)) {
        return Err(bad(format!("tag {t:?}: use letters, digits, '-' or '_'")));
    }
    Ok(NodeConfig {
        url: url.trim_end_matches('/').to_string(),
        secret,
        token,
        queue,
        name,
        name_chosen,
        tags,
        slots,
        project_root,
        output_root,
        state_dir,
        recycle_after: file.recycle_after.unwrap_or(0),
        cache_bytes: file.cache_mib.unwrap_or(10 * 1024).saturating_mul(1 << 20),
        blender,
        programs,
        ffmpeg,
    })
}

fn bad(msg: impl Into<String>) -> NodeError {
    NodeError::Config(msg.into())
}

/// Names used in URLs and in the type/program maps: kept to a safe alphabet.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn existing_dir(field: &str, dir: Option<PathBuf>) -> Result<PathBuf, NodeError> {
    let dir = dir.ok_or_else(|| bad(format!("no {field} (set it in the file or with a flag)")))?;
    let canonical =
        platform::canonical(&dir).map_err(|e| bad(format!("{field} {}: {e}", dir.display())))?;
    if !canonical.is_dir() {
        return Err(bad(format!("{field} {} is not a directory", dir.display())));
    }
    Ok(canonical)
}

/// `program` for `[types.ffmpeg]`: an executable whose encoders include libx264 (asked once,
/// `ffmpeg -hide_banner -encoders`), so a node never claims an encode it cannot make (some
/// distributions ship an FFmpeg without it).
fn ffmpeg_program(program: &Path) -> Result<PathBuf, NodeError> {
    const FIELD: &str = "types.ffmpeg.program";
    let path = program_path(FIELD, program)?;
    let out = std::process::Command::new(&path)
        .args(["-hide_banner", "-encoders"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| bad(format!("{FIELD}: {} does not run: {e}", path.display())))?;
    let listed = String::from_utf8_lossy(&out.stdout);
    if !listed.split_whitespace().any(|w| w == "libx264") {
        return Err(bad(format!(
            "{FIELD}: {} has no libx264 encoder (`ffmpeg -encoders`); preview videos are H.264: install an FFmpeg built with it (Debian's is)",
            path.display()
        )));
    }
    Ok(path)
}

/// `program` for `[types.blender]`: a path (or a name in PATH), or `auto` for [`find_blender`].
fn blender_program(program: &Path) -> Result<PathBuf, NodeError> {
    const FIELD: &str = "types.blender.program";
    if program != Path::new(AUTO) {
        return program_path(FIELD, program);
    }
    find_blender().ok_or_else(|| {
        let places: Vec<String> = platform::blender_defaults()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        bad(format!(
            "{FIELD} = \"auto\": Blender is neither in PATH nor at {}; give its path",
            if places.is_empty() {
                "the usual install places".to_string()
            } else {
                places.join(", ")
            }
        ))
    })
}

/// The word that asks for Blender to be found rather than named.
pub const AUTO: &str = "auto";

/// Where Blender is found when none is named: `blender` in PATH, then the platform's install
/// places (Windows: `%ProgramFiles%\Blender Foundation\Blender X.Y\blender.exe`, newest first;
/// macOS: `/Applications/Blender.app/Contents/MacOS/Blender`; Linux: `/usr/bin`,
/// `/usr/local/bin`, `/snap/bin`). What is found becomes the one Blender this node runs.
pub fn find_blender() -> Option<PathBuf> {
    in_path(Path::new("blender")).or_else(|| {
        platform::blender_defaults()
            .into_iter()
            .find(|p| platform::is_executable(p))
    })
}

fn in_path(program: &Path) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| {
            platform::executable_names(program)
                .into_iter()
                .map(move |name| dir.join(name))
        })
        .find(|p| platform::is_executable(p))
}

/// Resolves a program to an absolute, executable file (a bare name is looked up in PATH once).
fn program_path(field: &str, program: &Path) -> Result<PathBuf, NodeError> {
    let found = if program.components().count() == 1 && !program.is_absolute() {
        in_path(program)
            .ok_or_else(|| bad(format!("{field}: program {:?} not found in PATH", program)))?
    } else {
        program.to_path_buf()
    };
    if !found.is_absolute() {
        return Err(bad(format!(
            "{field}: {} must be an absolute path",
            found.display()
        )));
    }
    if !platform::is_executable(&found) {
        return Err(bad(format!(
            "{field}: {} is missing or not an executable file{}",
            found.display(),
            if cfg!(windows) {
                " (.exe or .com; batch files would run through a shell)"
            } else {
                ""
            }
        )));
    }
    Ok(found)
}

/// The per-user place for node.json when none is configured: `$XDG_STATE_HOME/edgefarm/node`,
/// else `~/.local/state/edgefarm/node` (macOS: `~/Library/Application Support/edgefarm/node`;
/// Windows: `%LOCALAPPDATA%\edgefarm\node`).
///
/// Not the current directory (the default before): two nodes started from one folder then
/// shared one identity. Per user, not per host: two nodes of one user still need their own
/// `--state-dir`, and the lock on it (see `state::lock`) says so at start.
pub fn default_state_dir() -> Result<PathBuf, NodeError> {
    platform::state_base()
        .map(|b| b.join("edgefarm").join("node"))
        .ok_or_else(|| {
            bad(format!(
                "no state directory: {}; set `state_dir`, --state-dir or EDGEFARM_STATE_DIR",
                platform::STATE_BASE_HINT
            ))
        })
}

fn default_name() -> String {
    platform::host_name().unwrap_or_else(|| "node".to_string())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
