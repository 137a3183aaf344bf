//! The argv of a `command` task.
//!
//! The program always comes from the node's config (`[types.command.programs]`, looked up by the
//! name the job gives); only the argument template comes from the job. What a template may hold:
//! - plain strings (flags included: the admin chose a program that takes job arguments);
//! - the placeholders `{from}`, `{to}`, `{step}`, `{frame}`, `{project_root}`, `{output_root}`;
//!   any other `{name}` is refused, so a typo is not passed on literally;
//! - no absolute path written literally (an argument starting with `/` or `~`, or containing
//!   `=/`), and no `..` path segment: paths reach the filesystem only under the two roots;
//! - on every platform, nothing Windows reads as a path elsewhere: no `\` at all, and no drive
//!   (`C:` at the start of a word, after a separator, or glued to a short flag as in `-oC:x`;
//!   the drive-relative `C:x` reaches anywhere on that drive);
//! - at most 256 arguments of at most 4 KiB each, no control characters.
//!
//! If any argument uses `{frame}`, the program runs once per frame of the task, in order
//! (progress = runs finished); otherwise it runs once for the whole range.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::blender::{required_str, Launch, Roots};
use super::error::NodeError;
use crate::core::frames::FrameRange as Frames;

const PLACEHOLDERS: [&str; 6] = ["from", "to", "step", "frame", "project_root", "output_root"];

/// Builds the runs of a `command` task.
pub fn argv(
    programs: &BTreeMap<String, PathBuf>,
    roots: &Roots,
    params: &Value,
    frames: Option<Frames>,
) -> Result<Launch, NodeError> {
    let name = required_str(params, "program")?;
    let program = programs.get(name).ok_or_else(|| {
        NodeError::Rejected(format!(
            "params.program {name:?} is not allowed on this node"
        ))
    })?;
    let template = template(params)?;
    let per_frame = template.iter().any(|a| a.contains("{frame}"));
    let frames = match frames {
        Some(f) if f.count() == 0 => {
            return Err(NodeError::Rejected(format!("bad frame range {f:?}")))
        }
        other => other,
    };
    let fill = |frame: Option<i64>| -> Vec<String> {
        template
            .iter()
            .map(|arg| substitute(arg, roots, frames, frame))
            .collect()
    };
    let (runs, frames_total) = match frames {
        Some(f) if per_frame => {
            let runs: Vec<_> = (0..f.count())
                .map(|i| fill(Some(f.from + i as i64 * f.step)))
                .collect();
            (runs, f.count())
        }
        Some(f) => (vec![fill(Some(f.from))], f.count()),
        None => (vec![fill(None)], 1),
    };
    Ok(Launch {
        program: program.clone(),
        runs,
        frames_total,
        progress_by_runs: per_frame,
    })
}

fn template(params: &Value) -> Result<Vec<String>, NodeError> {
    let args = match params.get("args") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(args)) => args,
        Some(_) => return Err(NodeError::Rejected("params.args must be an array".into())),
    };
    if args.len() > 256 {
        return Err(NodeError::Rejected(
            "params.args has more than 256 items".into(),
        ));
    }
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            let arg = arg
                .as_str()
                .ok_or_else(|| NodeError::Rejected(format!("params.args.{i} must be a string")))?;
            check_arg(arg)
                .map_err(|why| NodeError::Rejected(format!("params.args.{i} {arg:?} {why}")))?;
            Ok(arg.to_string())
        })
        .collect()
}

fn check_arg(arg: &str) -> Result<(), &'static str> {
    if arg.len() > 4096 {
        return Err("is longer than 4 KiB");
    }
    if arg.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if arg.starts_with('/') || arg.starts_with('~') || arg.contains("=/") {
        return Err("holds an absolute path; use {project_root} or {output_root}");
    }
    if arg.contains('\\') {
        return Err(
            "contains '\\' (a Windows path); use '/' under {project_root} or {output_root}",
        );
    }
    if names_a_drive(arg) {
        return Err("names a Windows drive (C:...); use {project_root} or {output_root}");
    }
    if arg.split(['/', '=', ':']).any(|seg| seg == "..") {
        return Err("contains a '..' path segment");
    }
    if glued_absolute_path(arg) {
        return Err("holds an absolute path after a flag or separator (as in -o/etc/x or @/x); use {project_root} or {output_root}");
    }
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("has an unclosed '{'")? + open;
        if !PLACEHOLDERS.contains(&&rest[open + 1..close]) {
            return Err("uses an unknown placeholder");
        }
        rest = &rest[close + 1..];
    }
    Ok(())
}

/// Whether a `/` in `arg` starts an absolute path that is not one of the roots: right after a
/// separator programs split values on (`=`, `:`, `,`, `@`, `;`, space), or at the end of a word
/// that starts with `-` (a short flag with its value glued on, `-o/etc/x`, `-C/`). A `/` right
/// after `{project_root}` or `{output_root}` is the root itself and fine; a `/` inside a plain
/// relative word (`shots/a`) stays under the working directory, the project root.
fn glued_absolute_path(arg: &str) -> bool {
    const SEPARATORS: [char; 6] = ['=', ':', ',', '@', ';', ' '];
    arg.match_indices('/').any(|(i, _)| {
        let before = &arg[..i];
        if before.ends_with("{project_root}") || before.ends_with("{output_root}") {
            return false;
        }
        let word = before.rsplit(SEPARATORS).next().unwrap_or(before);
        word.is_empty() || word.starts_with('-') || word.starts_with('~')
    })
}

/// Whether `arg` holds a drive spec (`X:` for an ASCII letter X) where a program could take it
/// as a path: at the start of a word (after a separator) or glued to a single-dash flag.
fn names_a_drive(arg: &str) -> bool {
    const SEPARATORS: [char; 7] = ['=', ':', ',', '@', ';', ' ', '/'];
    let b = arg.as_bytes();
    arg.match_indices(':').any(|(i, _)| {
        if i == 0 || !b[i - 1].is_ascii_alphabetic() {
            return false;
        }
        if i == 1 {
            return true;
        }
        let before = &arg[..i - 1];
        if before.ends_with(SEPARATORS) {
            return true;
        }
        let word = before.rsplit(SEPARATORS).next().unwrap_or(before);
        word.starts_with('-') && !word.starts_with("--")
    })
}

fn substitute(arg: &str, roots: &Roots, frames: Option<Frames>, frame: Option<i64>) -> String {
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    arg.replace("{from}", &num(frames.map(|f| f.from)))
        .replace("{to}", &num(frames.map(|f| f.to)))
        .replace("{step}", &num(frames.map(|f| f.step)))
        .replace("{frame}", &num(frame))
        .replace("{project_root}", &roots.project.to_string_lossy())
        .replace("{output_root}", &roots.output.to_string_lossy())
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
