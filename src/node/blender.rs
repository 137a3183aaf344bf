//! The Blender command line for a task.
//!
//! Blender executes its arguments in order, so the order is part of correctness: the file first
//! (`-b FILE`), then scene, output and engine settings, then the frame range, and `-a` last —
//! an `-o` or `-s` given after `-a` would apply only after the render has already run.

use std::path::PathBuf;

use serde_json::Value;

use super::config::BlenderType;
use super::error::NodeError;
use super::paths;
use crate::core::frames::FrameRange as Frames;

/// What a slot starts: a program and its argv (never a shell line).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub program: PathBuf,
    /// One argv per run; `command` tasks with `{frame}` run once per frame.
    pub runs: Vec<Vec<String>>,
    /// Frames the task covers (progress total).
    pub frames_total: u32,
    /// Progress is counted per finished run (a per-frame `command`), not from `Saved:` lines.
    pub progress_by_runs: bool,
}

/// Roots the params are confined to.
#[derive(Debug, Clone)]
pub struct Roots {
    pub project: PathBuf,
    pub output: PathBuf,
}

impl Roots {
    /// The roots of a node's config.
    pub fn of(config: &super::config::NodeConfig) -> Roots {
        Roots {
            project: config.project_root.clone(),
            output: config.output_root.clone(),
        }
    }
}

/// Builds `blender -Y -b FILE [-S scene] -o OUT [-E engine] [-F format] -s A -e B -j S -t T -a`.
pub fn argv(
    cfg: &BlenderType,
    roots: &Roots,
    params: &Value,
    frames: Option<Frames>,
) -> Result<Launch, NodeError> {
    argv_for_ranges(cfg, roots, params, frames, frames.map(|f| vec![f]))
}

/// Like [`argv`], but one run per range of `ranges` (the frames of `frames` still to render;
/// see `rendered`): each run is the same command line with its own `-s -e -j`. An empty list
/// gives no run at all (every frame is already there).
pub fn argv_for_ranges(
    cfg: &BlenderType,
    roots: &Roots,
    params: &Value,
    frames: Option<Frames>,
    ranges: Option<Vec<Frames>>,
) -> Result<Launch, NodeError> {
    let file = required_str(params, "file")?;
    let file = paths::confine_existing("file", &roots.project, file)?;
    let output = output_path(roots, params)?;
    // `-Y` (no auto-run of Python scripts embedded in the .blend) must come before the file:
    // a scene from the project root is data, and a job must not turn it into code the node runs
    // (whatever the node user's Blender preferences say).
    let mut head = vec![
        "-Y".to_string(),
        "-b".to_string(),
        file.to_string_lossy().into_owned(),
    ];
    if let Some(scene) = optional_str(params, "scene")? {
        check_value("scene", scene, |c| !c.is_control())?;
        head.extend(["-S".to_string(), scene.to_string()]);
    }
    head.extend(["-o".to_string(), output.to_string_lossy().into_owned()]);
    let token = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(engine) = optional_str(params, "engine")? {
        check_value("engine", engine, token)?;
        head.extend(["-E".to_string(), engine.to_string()]);
    }
    if let Some(format) = optional_str(params, "format")? {
        check_value("format", format, token)?;
        head.extend(["-F".to_string(), format.to_string()]);
    }
    let frames_total = match frames {
        Some(f) if f.count() == 0 => {
            return Err(NodeError::Rejected(format!("bad frame range {f:?}")));
        }
        Some(f) => f.count(),
        None => 1,
    };
    let mut tail = vec!["-t".to_string(), cfg.threads.to_string()];
    tail.extend(cfg.args.iter().cloned());
    tail.push("-a".to_string());
    let runs = match ranges {
        None => vec![[head, tail].concat()],
        Some(ranges) => ranges
            .iter()
            .map(|r| {
                let range = [
                    "-s".to_string(),
                    r.from.to_string(),
                    "-e".to_string(),
                    r.to.to_string(),
                    "-j".to_string(),
                    r.step.to_string(),
                ];
                [head.clone(), range.to_vec(), tail.clone()].concat()
            })
            .collect(),
    };
    Ok(Launch {
        program: cfg.program.clone(),
        runs,
        frames_total,
        progress_by_runs: false,
    })
}

/// The `-o` path of a blender task: `params.output` under the output root.
pub fn output_path(roots: &Roots, params: &Value) -> Result<PathBuf, NodeError> {
    paths::confine_output("output", &roots.output, required_str(params, "output")?)
}

/// A string param that must be present.
pub fn required_str<'a>(params: &'a Value, field: &str) -> Result<&'a str, NodeError> {
    optional_str(params, field)?
        .ok_or_else(|| NodeError::Rejected(format!("params.{field} is required")))
}

/// A string param that may be absent or null.
pub fn optional_str<'a>(params: &'a Value, field: &str) -> Result<Option<&'a str>, NodeError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(NodeError::Rejected(format!(
            "params.{field} must be a string"
        ))),
    }
}

/// A value given after a flag: it must not look like a flag itself.
fn check_value(field: &str, value: &str, allowed: impl Fn(char) -> bool) -> Result<(), NodeError> {
    if value.is_empty() || value.len() > 64 || value.starts_with('-') || !value.chars().all(allowed)
    {
        return Err(NodeError::Rejected(format!(
            "params.{field} {value:?} is not allowed (no leading '-', at most 64 plain characters)"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "blender_tests.rs"]
mod tests;
