//! Turning what a client sent into a [`JobSpec`], with every rule and default in one place.
//! Nothing is written before this has accepted the whole request.

use super::error::{Error, Result};
use super::frames;
use super::model::{JobSpec, JobType};
use super::Limits;
use serde_json::Value;

pub use crate::wire::jobs::JobSubmit;

/// Default queue name.
pub const DEFAULT_QUEUE: &str = "default";

/// Whether `s` is a usable id, queue or node name: `[A-Za-z0-9_-]{1,max}`.
pub fn is_ident(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks an id-like field.
pub fn ident(field: &str, s: &str) -> Result<()> {
    if is_ident(s, 64) {
        Ok(())
    } else {
        Err(Error::field(
            field,
            format!("{field} must be 1-64 characters of A-Z, a-z, 0-9, `_` or `-` (got {s:?})"),
        ))
    }
}

/// Normalises a tag list: each tag `[a-z0-9_-]{1,32}`, sorted, without duplicates.
pub fn tags(field: &str, tags: Vec<String>, limits: &Limits) -> Result<Vec<String>> {
    if tags.len() > limits.tags {
        return Err(Error::TooLarge(format!(
            "{field}: at most {} tags",
            limits.tags
        )));
    }
    let mut out = Vec::with_capacity(tags.len());
    for t in tags {
        let ok = !t.is_empty()
            && t.len() <= 32
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::field(
                field,
                format!("{field}: tag {t:?} must be 1-32 characters of a-z, 0-9, `_` or `-`"),
            ));
        }
        out.push(t);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Most tasks a node says it runs at once.
pub const MAX_SLOTS: u32 = 256;

/// A node's slot count (enrolment, and each poll of a node token): 1 to [`MAX_SLOTS`].
pub fn slots(n: u32) -> Result<u32> {
    if (1..=MAX_SLOTS).contains(&n) {
        Ok(n)
    } else {
        Err(Error::field(
            "slots",
            format!("slots: {n}: must be from 1 to {MAX_SLOTS}"),
        ))
    }
}

/// A priority: 0..=100, higher first.
pub fn priority(p: i64) -> Result<i64> {
    if (0..=100).contains(&p) {
        Ok(p)
    } else {
        Err(Error::field("priority", "priority must be from 0 to 100"))
    }
}

/// A path inside a node's root: the portable rule of [`crate::core::job_path`].
pub fn relative_path(field: &str, v: &Value, limits: &Limits) -> Result<String> {
    let Some(s) = v.as_str() else {
        return Err(Error::field(field, format!("{field} must be a string")));
    };
    let checked = if s.len() > limits.string_len * 4 {
        Err("is too long")
    } else {
        crate::core::job_path::check(s)
    };
    if let Err(why) = checked {
        return Err(Error::field(
            field,
            format!("{field} must be a relative path inside the node's root with '/' between its parts (no leading `/` or `-`, no `..`, `\\`, `:` or Windows device names): {s:?} {why}"),
        ));
    }
    Ok(s.to_string())
}

fn optional_word(field: &str, v: Option<&Value>) -> Result<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 64 && !s.starts_with('-') && !s.contains('\0') =>
        {
            Ok(())
        }
        Some(_) => Err(Error::field(
            field,
            format!("{field} must be a short string not starting with `-`"),
        )),
    }
}

fn params(kind: JobType, params: Option<Value>, limits: &Limits) -> Result<Value> {
    let params = params.unwrap_or(Value::Object(Default::default()));
    let Value::Object(map) = &params else {
        return Err(Error::field("params", "params must be an object"));
    };
    if serde_json::to_vec(&params).map_or(0, |b| b.len()) > limits.params_bytes {
        return Err(Error::TooLarge(format!(
            "params: at most {} bytes of JSON",
            limits.params_bytes
        )));
    }
    let allowed: &[&str] = match kind {
        JobType::Blender => &["file", "output", "engine", "scene", "format"],
        JobType::Command => &["program", "args"],
        JobType::Ffmpeg => &["input", "output", "fps", "from_job"],
        JobType::Nexrender => {
            return Err(Error::field(
                "type",
                "nexrender jobs are submitted through /api/v1 (the nexrender API)",
            ))
        }
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::field(
            &format!("params.{k}"),
            format!(
                "params.{k} is not a parameter of {} jobs (allowed: {})",
                kind.as_str(),
                allowed.join(", ")
            ),
        ));
    }
    match kind {
        JobType::Blender => {
            let file = map.get("file").ok_or_else(|| {
                Error::field("params.file", "params.file is required: the .blend file")
            })?;
            relative_path("params.file", file, limits)?;
            let output = map.get("output").ok_or_else(|| {
                Error::field(
                    "params.output",
                    "params.output is required: the output pattern, e.g. shot/frame_####",
                )
            })?;
            relative_path("params.output", output, limits)?;
            optional_word("params.engine", map.get("engine"))?;
            optional_word("params.scene", map.get("scene"))?;
            optional_word("params.format", map.get("format"))?;
        }
        JobType::Command => {
            match map.get("program") {
                Some(Value::String(p))
                    if is_ident(p.trim_end_matches(['.']), 64) && !p.contains('/') => {}
                _ => {
                    return Err(Error::field(
                        "params.program",
                        "params.program must be the name of a program the node's config allows",
                    ))
                }
            }
            match map.get("args") {
                None => {}
                Some(Value::Array(args)) if args.len() <= 256 => {
                    if let Some(i) = args.iter().position(|a| {
                        !a.as_str()
                            .is_some_and(|s| s.len() <= 4096 && !s.contains('\0'))
                    }) {
                        return Err(Error::field(
                            &format!("params.args[{i}]"),
                            "every argument must be a string of at most 4096 bytes",
                        ));
                    }
                }
                Some(_) => {
                    return Err(Error::field(
                        "params.args",
                        "params.args must be an array of at most 256 strings",
                    ))
                }
            }
        }
        JobType::Ffmpeg => ffmpeg_params(map, limits)?,
        JobType::Nexrender => {}
    }
    Ok(params)
}

/// Image formats an `ffmpeg` job reads (what Blender writes and FFmpeg decodes).
pub const FFMPEG_INPUTS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "exr"];

/// `ffmpeg` jobs encode frames into an H.264 MP4: `input` is the frames' pattern under the
/// node's output root with one run of `#` for the frame number (`shot/frame_####.png`, as
/// Blender names them), `output` the `.mp4` under the same root, `fps` the frame rate. With
/// `from_job` (one of `after_jobs`), the frames are that job's outputs instead: the node
/// downloads them, and uploads the video as this job's output (no shared disk needed).
fn ffmpeg_params(map: &serde_json::Map<String, Value>, limits: &Limits) -> Result<()> {
    let input = map.get("input").ok_or_else(|| {
        Error::field(
            "params.input",
            "params.input is required: the frames, e.g. shot/frame_####.png",
        )
    })?;
    let input = relative_path("params.input", input, limits)?;
    let name = input.rsplit('/').next().unwrap_or(&input);
    let hashes = name
        .split(|c| c != '#')
        .filter(|run| !run.is_empty())
        .count();
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if hashes != 1 || !ext.as_deref().is_some_and(|e| FFMPEG_INPUTS.contains(&e)) {
        return Err(Error::field(
            "params.input",
            format!(
                "params.input must name the frames with one run of `#` for the frame number and an image extension ({}), e.g. shot/frame_####.png: {input:?}",
                FFMPEG_INPUTS.join(", ")
            ),
        ));
    }
    let output = map.get("output").ok_or_else(|| {
        Error::field(
            "params.output",
            "params.output is required: the .mp4 to write",
        )
    })?;
    let output = relative_path("params.output", output, limits)?;
    if !output.to_ascii_lowercase().ends_with(".mp4") || output.contains('#') {
        return Err(Error::field(
            "params.output",
            format!("params.output must be an .mp4 file (no `#`): {output:?}"),
        ));
    }
    match map.get("from_job") {
        None => {}
        Some(Value::String(id)) => ident("params.from_job", id)?,
        Some(_) => {
            return Err(Error::field(
                "params.from_job",
                "params.from_job must be a job id",
            ))
        }
    }
    match map.get("fps") {
        None => Ok(()),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f > 0.0 && f <= 1000.0) => Ok(()),
        Some(_) => Err(Error::field(
            "params.fps",
            "params.fps must be a number above 0 and at most 1000 (e.g. 24 or 29.97)",
        )),
    }
}

/// Frames per task: as asked (default 10, at most 100,000). An `ffmpeg` job is one task over
/// one range of consecutive frames (FFmpeg reads a numbered sequence), however long the film:
/// its default is the frame count and it may not be smaller.
fn chunk_size(kind: JobType, runs: &[frames::FrameRange], asked: Option<u64>) -> Result<u64> {
    let frame_total = frames::count(runs);
    let (default, min, max) = if kind == JobType::Ffmpeg {
        if !matches!(runs, [run] if run.step == 1) {
            return Err(Error::field(
                "frames",
                "frames: an ffmpeg job needs one range of consecutive frames, e.g. 1-250",
            ));
        }
        (frame_total, frame_total, frame_total.max(100_000))
    } else {
        (10, 1, 100_000)
    };
    let chunk_size = asked.unwrap_or(default);
    if kind == JobType::Ffmpeg && chunk_size < min {
        return Err(Error::field(
            "chunk_size",
            format!("chunk_size: an ffmpeg job encodes its {frame_total} frames in one task; leave chunk_size out"),
        ));
    }
    if !(1..=max).contains(&chunk_size) {
        return Err(Error::field(
            "chunk_size",
            format!("chunk_size must be from 1 to {max}"),
        ));
    }
    Ok(chunk_size)
}

/// Most jobs one job may wait for.
pub const MAX_AFTER_JOBS: usize = 32;

/// `after_jobs`: job ids, no repeats, at most [`MAX_AFTER_JOBS`] (whether they exist is checked
/// against the store when the job is created).
fn after_jobs(ids: Vec<String>) -> Result<Vec<String>> {
    if ids.len() > MAX_AFTER_JOBS {
        return Err(Error::field(
            "after_jobs",
            format!("after_jobs: at most {MAX_AFTER_JOBS} jobs"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        ident(&format!("after_jobs[{i}]"), id)?;
        if ids[..i].contains(id) {
            return Err(Error::field(
                "after_jobs",
                format!("after_jobs[{i}]: {id} is named twice"),
            ));
        }
    }
    Ok(ids)
}

/// Validates a submission and fills defaults; `new_id` supplies an id when the client gave none.
pub fn job_spec(
    sub: JobSubmit,
    new_id: impl FnOnce() -> String,
    limits: &Limits,
) -> Result<(JobSpec, Vec<frames::FrameRange>)> {
    let id = match sub.id {
        Some(id) => {
            ident("id", &id)?;
            id
        }
        None => new_id(),
    };
    let name = sub.name.unwrap_or_else(|| id.clone());
    if name.len() > limits.string_len || name.contains('\0') {
        return Err(Error::field(
            "name",
            format!("name: at most {} bytes", limits.string_len),
        ));
    }
    let queue = sub.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string());
    ident("queue", &queue)?;
    let priority = priority(sub.priority.unwrap_or(50))?;
    let tags = tags("tags", sub.tags.unwrap_or_default(), limits)?;
    let params = params(sub.kind, sub.params, limits)?;
    let runs = match &sub.frames {
        None => Vec::new(),
        Some(spec) => {
            if spec.len() > limits.string_len * 16 {
                return Err(Error::TooLarge("frames: the frame spec is too long".into()));
            }
            frames::parse(spec).map_err(|e| Error::field("frames", format!("frames: {e}")))?
        }
    };
    let frame_total = frames::count(&runs);
    let chunk_size = chunk_size(sub.kind, &runs, sub.chunk_size)?;
    let max_attempts = sub.max_attempts.unwrap_or(3);
    if !(1..=100).contains(&max_attempts) {
        return Err(Error::field(
            "max_attempts",
            "max_attempts must be from 1 to 100",
        ));
    }
    let task_timeout_s = sub.task_timeout_s.unwrap_or(3600);
    if !(1..=7 * 86_400).contains(&task_timeout_s) {
        return Err(Error::field(
            "task_timeout_s",
            "task_timeout_s must be from 1 to 604800",
        ));
    }
    if frame_total > limits.frames_per_job {
        return Err(Error::TooLarge(format!(
            "frames: {frame_total} frames; at most {} per job",
            limits.frames_per_job
        )));
    }
    let tasks = frames::chunk_count(&runs, chunk_size).max(1);
    if tasks > limits.tasks_per_job {
        return Err(Error::TooLarge(format!(
            "frames: {tasks} tasks; at most {} per job (raise chunk_size)",
            limits.tasks_per_job
        )));
    }
    let after_jobs = after_jobs(sub.after_jobs.unwrap_or_default())?;
    if let Some(source) = params.get("from_job").and_then(Value::as_str) {
        if !after_jobs.iter().any(|a| a == source) {
            return Err(Error::field(
                "params.from_job",
                format!("params.from_job {source:?} must also be in after_jobs: its outputs are complete only once it has completed"),
            ));
        }
    }
    let after_frames = sub.after_frames.unwrap_or(false);
    if after_frames && after_jobs.is_empty() {
        return Err(Error::field(
            "after_frames",
            "after_frames needs after_jobs: the jobs whose frames this one waits for",
        ));
    }
    if after_frames && runs.is_empty() {
        return Err(Error::field(
            "after_frames",
            "after_frames needs frames: a job without frames can only wait for whole jobs",
        ));
    }
    let spec = JobSpec {
        id,
        name,
        kind: sub.kind,
        queue,
        priority,
        tags,
        params,
        frames: sub.frames.map(|f| f.trim().to_string()),
        chunk_size,
        max_attempts,
        task_timeout_s,
        on_failure: sub.on_failure.unwrap_or_default(),
        inputs: None,
        after_jobs,
        on_dependency_failure: sub.on_dependency_failure.unwrap_or_default(),
        webhooks: sub.webhooks.unwrap_or_default(),
        stages: Vec::new(),
        after_frames,
    };
    Ok((spec, runs))
}

/// Most later stages one job may have.
pub const MAX_STAGES: usize = 8;

/// An error about a field of `stages[i]`, named as such (`stages[1].frames`).
pub fn within(e: Error, prefix: &str) -> Error {
    match e {
        Error::BadInput { field, message } => Error::BadInput {
            field: Some(field.map_or_else(|| prefix.to_string(), |f| format!("{prefix}.{f}"))),
            message: format!("{prefix}: {message}"),
        },
        Error::TooLarge(m) => Error::TooLarge(format!("{prefix}: {m}")),
        other => other,
    }
}

/// The jobs of a submitted job's later stages (`JobSubmit::stages`), each validated like a job
/// of its own: `{id}-{name}`, on the job's queue and priority, with its frames, frames per
/// task and tags unless the stage gives its own, waiting for the stage before it (the first for the job itself).
/// Errors name the stage's field (`stages[1].frames`).
pub fn stages(
    parent: &JobSpec,
    parent_runs: &[frames::FrameRange],
    subs: Vec<crate::wire::jobs::StageSubmit>,
    limits: &Limits,
) -> Result<Vec<(JobSpec, Vec<frames::FrameRange>)>> {
    if subs.len() > MAX_STAGES {
        return Err(Error::field(
            "stages",
            format!("stages: at most {MAX_STAGES}"),
        ));
    }
    let mut out: Vec<(JobSpec, Vec<frames::FrameRange>)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, st) in subs.into_iter().enumerate() {
        let at = format!("stages[{i}]");
        ident(&format!("{at}.name"), &st.name)?;
        if names.contains(&st.name) {
            return Err(Error::field(
                &format!("{at}.name"),
                format!("{at}.name: {} is named twice", st.name),
            ));
        }
        names.push(st.name.clone());
        let id = format!("{}-{}", parent.id, st.name);
        if !is_ident(&id, 64) {
            return Err(Error::field(
                &format!("{at}.name"),
                format!("{at}.name: the stage's job id {id} would be over 64 characters"),
            ));
        }
        let (prev_id, prev_has_frames) = match out.last() {
            Some((s, runs)) => (s.id.clone(), !runs.is_empty()),
            None => (parent.id.clone(), !parent_runs.is_empty()),
        };
        let per_frame = st.per_frame.unwrap_or(false);
        if per_frame && !prev_has_frames {
            return Err(Error::field(
                &format!("{at}.per_frame"),
                format!("{at}.per_frame: the stage before it has no frames to wait for one by one"),
            ));
        }
        let sub = JobSubmit {
            id: Some(id),
            name: Some(format!("{} · {}", parent.name, st.name)),
            kind: st.kind,
            queue: Some(parent.queue.clone()),
            priority: Some(parent.priority),
            tags: Some(st.tags.unwrap_or_else(|| parent.tags.clone())),
            params: st.params,
            frames: st.frames.or_else(|| parent.frames.clone()),
            // Frames per task as the job's, so a per-frame stage follows it chunk by chunk
            // (an encode is one task whatever the job's chunks).
            chunk_size: st
                .chunk_size
                .or((st.kind != JobType::Ffmpeg).then_some(parent.chunk_size)),
            max_attempts: st.max_attempts,
            task_timeout_s: st.task_timeout_s,
            on_failure: st.on_failure,
            inputs: None,
            after_jobs: Some(vec![prev_id]),
            on_dependency_failure: st.on_dependency_failure,
            webhooks: st.webhooks,
            after_frames: per_frame.then_some(true),
            stages: None,
        };
        out.push(job_spec(sub, String::new, limits).map_err(|e| within(e, &at))?);
    }
    Ok(out)
}
