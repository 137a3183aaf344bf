//! `edgefarm submit`: build a job spec from flags (or read one from a file), send it, and
//! optionally follow it to the end.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::core::model::JobType;
use crate::wire::jobs::{Job, JobSubmit};

use super::api;
use super::follow;
use super::settings::ClientArgs;
use super::UsageError;

// Not `args_conflicts_with_subcommands`: that also refused `submit --secret S blender ...`
// (client options before the kind); `run` refuses a kind together with --file itself.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(subcommand)]
    kind: Option<Kind>,
    /// Submit the job spec in this JSON file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Show a live progress bar until the job ends; exit 1 if it fails.
    #[arg(long, global = true)]
    follow: bool,
    #[command(flatten)]
    upload: super::upload::UploadArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum Kind {
    /// Render a .blend file (path relative to the nodes' project root).
    Blender {
        /// The .blend file, relative to the project root.
        file: String,
        /// Output pattern relative to the nodes' output root (`#` = frame digits).
        #[arg(long, default_value = "out/frame_####")]
        output: String,
        /// Render engine (CYCLES, BLENDER_EEVEE_NEXT, ...).
        #[arg(long)]
        engine: Option<String>,
        /// Output format (PNG, OPEN_EXR, ...).
        #[arg(long)]
        format: Option<String>,
        /// Scene name.
        #[arg(long)]
        scene: Option<String>,
        /// Then encode the frames into an H.264 MP4 beside them (`out/frame_####` →
        /// `out/frame.mp4`): a second job, of type ffmpeg, that waits for the render (canceled
        /// if the render fails), on a node with [types.ffmpeg]. With --upload that node
        /// downloads the frames and the video is the encode job's output (`edgefarm fetch`).
        #[arg(long)]
        preview_video: bool,
        /// Frame rate of the preview video [default: 24].
        #[arg(long, requires = "preview_video")]
        fps: Option<f64>,
        #[command(flatten)]
        opts: JobOpts,
    },
    /// Encode rendered frames (under the nodes' output root) into an H.264 MP4, on a node with
    /// [types.ffmpeg]: one task over one range of consecutive frames.
    Ffmpeg {
        /// The frames, relative to the output root, `#` for the frame number
        /// (`shot12/frame_####.png`).
        input: String,
        /// The video, relative to the output root (`shot12/frame.mp4`).
        #[arg(long)]
        output: String,
        /// Frame rate [default: 24].
        #[arg(long)]
        fps: Option<f64>,
        #[command(flatten)]
        opts: JobOpts,
    },
    /// Run a program the nodes allow by name, once per task (or once per frame with {frame}).
    Command {
        /// Program name as the nodes' config lists it.
        program: String,
        /// Arguments; {from} {to} {step} {frame} {project_root} {output_root} are substituted.
        #[arg(last = true)]
        args: Vec<String>,
        #[command(flatten)]
        opts: JobOpts,
    },
}

#[derive(Debug, Args)]
struct JobOpts {
    /// Frames: "1-250", "1,5,10-20", "1-100x5" [default: no frames: one task, run once].
    #[arg(long)]
    frames: Option<String>,
    /// Frames per task [default: 10].
    #[arg(long)]
    chunk: Option<u32>,
    /// Higher runs first, 0 to 100 [default: 50].
    #[arg(long)]
    priority: Option<i64>,
    /// Only nodes with this tag take it (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Queue to submit to; nodes take tasks from the queue they poll [default: default].
    #[arg(long)]
    queue: Option<String>,
    /// Client-chosen job id (submitting the same spec again is then harmless).
    #[arg(long)]
    id: Option<String>,
    /// Job name shown in lists [default: the .blend file's name, or the program's name].
    #[arg(long)]
    name: Option<String>,
    /// Attempts a task gets before it fails (a failed node never gets it again) [default: 3].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Seconds before a node kills a task [default: 3600].
    #[arg(long)]
    timeout: Option<u64>,
    /// Wait for this job to complete before any task runs (repeatable); if it fails or is
    /// canceled, this job fails.
    #[arg(long = "after", value_name = "JOB_ID")]
    after: Vec<String>,
    /// POST a signed event to this URL when the job completes, fails or is canceled
    /// (repeatable; docs/WEBHOOKS.md). Needs --webhook-secret.
    #[arg(long = "webhook", value_name = "URL", requires = "webhook_secret")]
    webhooks: Vec<String>,
    /// The signing secret of --webhook: whsec_ and the base64 of 24 to 64 bytes.
    #[arg(long, env = "EDGEFARM_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// With --after: wait frame by frame, not for the whole job: each task starts as soon as
    /// the tasks of the --after jobs that render its frames completed (a comp of frame 10
    /// starts once frame 10 is rendered).
    #[arg(long = "per-frame", requires = "after")]
    per_frame: bool,
    /// With --after, when a job it waits for fails or is canceled: fail (default) or cancel
    /// this job, or continue without it (frame by frame: skip only the frames it did not
    /// render).
    #[arg(long = "if-after-fails", value_name = "fail|cancel|continue", requires = "after", value_parser = parse_dependency_failure)]
    if_after_fails: Option<crate::core::model::DependencyFailure>,
}

/// Runs `edgefarm submit`.
pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let mut spec = match (&args.kind, &args.file) {
        (Some(kind), None) => serde_json::to_value(spec_of(kind))?,
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| UsageError(format!("{}: {e}", file.display())))?
        }
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "give either a job kind (`blender FILE`, `ffmpeg FRAMES`, `command PROGRAM`) or --file, not both"
                    .into(),
            )
            .into())
        }
        (None, None) => {
            return Err(UsageError(
                "say what to submit: `blender FILE`, `ffmpeg FRAMES --output VIDEO`, `command PROGRAM` or --file job.json".into(),
            )
            .into())
        }
    };
    let video = match &args.kind {
        Some(Kind::Blender {
            preview_video: true,
            output,
            format,
            fps,
            opts,
            ..
        }) => Some(video_params(
            output,
            format.as_deref(),
            fps.unwrap_or(crate::node::ffmpeg::DEFAULT_FPS),
            opts.frames.as_deref(),
        )?),
        _ => None,
    };
    let client = args.client.client()?;
    let mut moved = None;
    if args.upload.upload {
        let Some(Kind::Blender { file, .. }) = &args.kind else {
            return Err(UsageError(
                "--upload packs a .blend: use `submit blender FILE --upload`".into(),
            )
            .into());
        };
        let pack = super::upload::pack_of(&args.upload, file)?;
        spec["params"]["file"] = json!(pack.file);
        spec["inputs"] = serde_json::to_value(pack.entries())?;
        preflight(&spec)?;
        let m = super::upload::upload(&client, &pack).await?;
        if !args.client.json {
            println!("{}", m.summary("uploaded", "already on the farm"));
        }
        moved = Some(m);
    }
    let job: Job = api::post(&client, "/v1/jobs", &spec).await?;
    let id = job.spec.id.clone();
    if !args.client.json {
        let tasks = job.counts.total;
        let s = if tasks == 1 { "" } else { "s" };
        println!("submitted job {id} \"{}\" ({tasks} task{s})", job.spec.name);
    }
    // A server that can tell why no node could take the job says so (`waiting`); a job that
    // waits for others (`--after`) does so on purpose.
    if let Some(why) = job.waiting.as_deref().filter(|w| !w.is_empty()) {
        if job.state == crate::wire::jobs::JobState::Waiting {
            let when = if job.spec.after_frames {
                "each task starts once its frames are rendered"
            } else {
                "it starts when they complete"
            };
            eprintln!("job {id} {why}; {when}");
        } else {
            eprintln!("warning: job {id} is waiting: {why}");
        }
    }
    let mut video_job = None;
    if let (Some(mut params), Some(Kind::Blender { opts, .. })) = (video, &args.kind) {
        if args.upload.upload {
            // The nodes share no disk: the encoding node downloads the render's outputs.
            params["from_job"] = json!(id);
        }
        let mut encode = preview_job(&job, params);
        encode.id = opts.id.as_ref().map(|id| format!("{id}-video"));
        let video: Job = api::post(&client, "/v1/jobs", &encode).await?;
        if !args.client.json {
            let fetch = if args.upload.upload {
                format!(" (then: edgefarm fetch {})", video.spec.id)
            } else {
                String::new()
            };
            println!(
                "submitted job {} \"{}\": encodes {} when {id} completes{fetch}",
                video.spec.id,
                video.spec.name,
                video.spec.params["output"].as_str().unwrap_or("the video")
            );
        }
        video_job = Some(video);
    }
    // With --json: the job, with what --upload moved and the encode job of --preview-video.
    if args.client.json && !args.follow {
        let mut shown = serde_json::to_value(&job)?;
        if let Some(obj) = shown.as_object_mut() {
            if let Some(m) = moved {
                obj.insert("upload".into(), serde_json::to_value(m)?);
            }
            if let Some(video) = &video_job {
                obj.insert("video_job".into(), serde_json::to_value(video)?);
            }
        }
        api::print_json(&shown);
    }
    if args.follow {
        let code = follow::follow(&client, &id, args.client.json).await?;
        return match video_job {
            Some(video) if code == ExitCode::SUCCESS => {
                follow::follow(&client, &video.spec.id, args.client.json).await
            }
            _ => Ok(code),
        };
    }
    Ok(ExitCode::SUCCESS)
}

/// The farm's own check of a job, run here before `--upload` moves anything: a typo in
/// `--frames` should not cost the upload of a whole project first. Only bad input counts; the
/// limits are the farm's to set, so the farm alone judges them (and anything this cannot read).
fn preflight(spec: &serde_json::Value) -> Result<(), UsageError> {
    let Ok(sub) = serde_json::from_value::<JobSubmit>(spec.clone()) else {
        return Ok(());
    };
    let limits = crate::core::Limits::default();
    match crate::core::validate::job_spec(sub, || "preflight".into(), &limits) {
        Err(e @ crate::core::Error::BadInput { .. }) => Err(UsageError(format!(
            "{e}; nothing was uploaded or submitted"
        ))),
        _ => Ok(()),
    }
}

/// The encode job of `render` (its preview video, `params` from [`video_params`]): the same
/// frames, queue, priority, attempts and timeout; it waits for the render and is canceled if the
/// render fails. `submit --preview-video` and `demo` submit it.
pub(super) fn preview_job(render: &Job, params: serde_json::Value) -> JobSubmit {
    let spec = &render.spec;
    JobSubmit {
        id: None,
        name: Some(format!("{} (video)", spec.name)),
        kind: JobType::Ffmpeg,
        queue: Some(spec.queue.clone()),
        priority: Some(spec.priority),
        tags: None,
        params: Some(params),
        frames: spec.frames.clone(),
        chunk_size: None,
        max_attempts: Some(spec.max_attempts),
        task_timeout_s: Some(spec.task_timeout_s),
        on_failure: None,
        inputs: None,
        after_jobs: Some(vec![spec.id.clone()]),
        on_dependency_failure: Some(crate::core::model::DependencyFailure::Cancel),
        webhooks: None,
        after_frames: None,
        stages: None,
    }
}

/// The params of the encode job for a render with output pattern `output` (Blender appends
/// `####` to a pattern without `#`) and image format `format`.
pub(super) fn video_params(
    output: &str,
    format: Option<&str>,
    fps: f64,
    frames: Option<&str>,
) -> Result<serde_json::Value, UsageError> {
    let consecutive = frames
        .and_then(|f| crate::core::frames::parse(f).ok())
        .is_some_and(|runs| matches!(runs.as_slice(), [run] if run.step == 1));
    if !consecutive {
        return Err(UsageError(
            "--preview-video needs --frames with one range of consecutive frames, e.g. 1-250"
                .into(),
        ));
    }
    if !(fps > 0.0 && fps <= 1000.0) {
        return Err(UsageError("--fps must be above 0 and at most 1000".into()));
    }
    let ext = match format.map(str::to_ascii_uppercase).as_deref() {
        None | Some("PNG") => "png",
        Some("JPEG") => "jpg",
        Some("TIFF") => "tif",
        Some("OPEN_EXR" | "OPEN_EXR_MULTILAYER") => "exr",
        Some(other) => {
            return Err(UsageError(format!(
                "--preview-video reads PNG, JPEG, TIFF or OPEN_EXR frames, not {other}"
            )))
        }
    };
    let (dir, name) = output
        .rsplit_once('/')
        .map_or(("", output), |(d, n)| (d, n));
    let name = if name.contains('#') {
        name.to_string()
    } else {
        format!("{name}####")
    };
    let stem = name
        .split('#')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("")
        .trim_end_matches(['_', '.', '-', ' '])
        .to_string();
    let stem = if stem.is_empty() {
        "video".to_string()
    } else {
        stem
    };
    let join = |file: &str| {
        if dir.is_empty() {
            file.to_string()
        } else {
            format!("{dir}/{file}")
        }
    };
    Ok(json!({
        "input": join(&format!("{name}.{ext}")),
        "output": join(&format!("{stem}.mp4")),
        "fps": fps,
    }))
}

fn spec_of(kind: &Kind) -> JobSubmit {
    let default_name;
    let (kind_name, params, opts) = match kind {
        Kind::Blender {
            file,
            output,
            engine,
            format,
            scene,
            opts,
            ..
        } => {
            let mut p = json!({"file": file, "output": output});
            default_name = file_name(file);
            for (k, v) in [("engine", engine), ("format", format), ("scene", scene)] {
                if let Some(v) = v {
                    p[k] = json!(v);
                }
            }
            (JobType::Blender, p, opts)
        }
        Kind::Ffmpeg {
            input,
            output,
            fps,
            opts,
        } => {
            default_name = file_name(output);
            let mut p = json!({"input": input, "output": output});
            if let Some(fps) = fps {
                p["fps"] = json!(fps);
            }
            (JobType::Ffmpeg, p, opts)
        }
        Kind::Command {
            program,
            args,
            opts,
        } => {
            default_name = program.clone();
            (
                JobType::Command,
                json!({"program": program, "args": args}),
                opts,
            )
        }
    };
    JobSubmit {
        id: opts.id.clone(),
        name: opts
            .name
            .clone()
            .or_else(|| (!default_name.is_empty()).then_some(default_name)),
        kind: kind_name,
        queue: opts.queue.clone(),
        priority: opts.priority,
        tags: (!opts.tags.is_empty()).then(|| opts.tags.clone()),
        params: Some(params),
        frames: opts.frames.clone(),
        chunk_size: opts.chunk.map(u64::from),
        max_attempts: opts.max_attempts,
        task_timeout_s: opts.timeout,
        on_failure: None,
        inputs: None,
        after_jobs: (!opts.after.is_empty()).then(|| opts.after.clone()),
        on_dependency_failure: opts.if_after_fails,
        webhooks: (!opts.webhooks.is_empty()).then(|| {
            let secret = opts.webhook_secret.clone().unwrap_or_default();
            opts.webhooks
                .iter()
                .map(|url| crate::wire::webhooks::Webhook {
                    url: url.clone(),
                    secret: secret.clone(),
                })
                .collect()
        }),
        after_frames: opts.per_frame.then_some(true),
        stages: None,
    }
}

/// `shots/12.blend` → `12.blend`: the job's name when none is given (rather than its id).
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

fn parse_dependency_failure(s: &str) -> Result<crate::core::model::DependencyFailure, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "one of fail, cancel, continue".to_string())
}
