//! The FFmpeg command line of an `ffmpeg` task: rendered frames into an H.264 MP4.
//!
//! The node builds the whole argv; a job gives only the frames' pattern, the video's path (both
//! under the output root, where the frames were rendered) and the frame rate. FFmpeg reads a
//! numbered sequence and stops at the first gap, which would make a short video and exit 0, so
//! every frame is checked before FFmpeg starts and a missing one fails the task by name.
//!
//! With `params.from_job` the frames are another job's outputs (a render whose nodes shared no
//! disk): the task runs as a carried one (`carried`), whose inputs the server lists as that
//! job's outputs; they land under the work dir's project root, and the video, written to its
//! output root, is uploaded as this job's output.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::blender::{required_str, Launch, Roots};
use super::error::NodeError;
use super::paths;
use crate::core::frames::{frame_run, FrameRange as Frames};
use crate::core::model::JobType;

/// Frame rate when the job gives none.
pub const DEFAULT_FPS: f64 = 24.0;

/// Builds the one run of an `ffmpeg` task (the frames must all exist already).
pub fn argv(
    program: &Path,
    roots: &Roots,
    params: &Value,
    frames: Option<Frames>,
) -> Result<Launch, NodeError> {
    let frames = frames
        .filter(|f| f.step == 1 && f.count() > 0)
        .ok_or_else(|| {
            NodeError::Rejected("an ffmpeg task needs a range of consecutive frames".into())
        })?;
    let input = required_str(params, "input")?;
    let output = output_path(roots, params)?;
    // Downloaded frames are inputs (the work dir's project root); else they were rendered here.
    let downloaded = crate::core::blobs::inputs::from_job(JobType::Ffmpeg, params).is_some();
    let frames_root = if downloaded {
        &roots.project
    } else {
        &roots.output
    };
    let pattern = paths::confine_output("input", frames_root, input)?;
    let printf = printf_pattern(&pattern.to_string_lossy())
        .ok_or_else(|| NodeError::Rejected(format!("params.input {input:?} has no `#` run")))?;
    if let Some(missing) = (frames.from..=frames.to).find(|f| !frame_file(&pattern, *f).is_file()) {
        return Err(NodeError::Rejected(format!(
            "frame {missing} is missing: {} (FFmpeg would stop there)",
            frame_file(&pattern, missing).display()
        )));
    }
    // FFmpeg does not make the video's folder (Blender does make the frames').
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| NodeError::io(format!("creating {}", dir.display()), e))?;
    }
    let fps = match params.get("fps") {
        None | Some(Value::Null) => DEFAULT_FPS,
        Some(v) => v
            .as_f64()
            .filter(|f| *f > 0.0 && *f <= 1000.0)
            .ok_or_else(|| NodeError::Rejected("params.fps must be a number above 0".into()))?,
    };
    let fps = format_fps(fps);
    // Blender's OpenEXR frames are scene-linear: shown as stored they come out far too dark,
    // so the decoder applies the sRGB curve (measured: mean luma 32 as stored, 78 with the
    // curve, 83 for the same frames as PNG).
    let exr = printf.to_ascii_lowercase().ends_with(".exr");
    let mut args: Vec<String> = Vec::with_capacity(40);
    let mut add = |items: &[&str]| args.extend(items.iter().map(|a| a.to_string()));
    add(&["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]);
    // key=value lines on stdout: `frame=N` is the progress.
    add(&["-progress", "pipe:1", "-y"]);
    if exr {
        add(&["-apply_trc", "iec61966_2_1"]);
    }
    add(&["-f", "image2", "-framerate", &fps]);
    add(&["-start_number", &frames.from.to_string(), "-i", &printf]);
    add(&["-frames:v", &frames.count().to_string(), "-c:v", "libx264"]);
    // yuv420p plays everywhere; it needs even sizes, so odd ones get one black row/column.
    add(&[
        "-pix_fmt",
        "yuv420p",
        "-vf",
        "pad=ceil(iw/2)*2:ceil(ih/2)*2",
    ]);
    add(&["-r", &fps, "-movflags", "+faststart", "-f", "mp4"]);
    add(&[&partial_path(&output).to_string_lossy()]);
    Ok(Launch {
        program: program.to_path_buf(),
        runs: vec![args],
        frames_total: frames.count(),
        progress_by_runs: false,
    })
}

/// Where FFmpeg writes the video until it has finished: a hidden file beside it, renamed into
/// place by [`finish`], so nobody opens half a video (a killed encode leaves only this file,
/// which the next attempt overwrites).
pub fn partial_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map_or_else(|| "video".into(), |n| n.to_string_lossy().into_owned());
    output.with_file_name(format!(".{name}.partial"))
}

/// After FFmpeg exited 0: the finished video moves into place; its path.
pub fn finish(roots: &Roots, params: &Value) -> Result<PathBuf, NodeError> {
    let video = output_path(roots, params)?;
    let partial = partial_path(&video);
    std::fs::rename(&partial, &video).map_err(|e| {
        NodeError::io(
            format!("moving {} to {}", partial.display(), video.display()),
            e,
        )
    })?;
    Ok(video)
}

/// The `.mp4` an `ffmpeg` task writes, for its outputs.
pub fn output_path(roots: &Roots, params: &Value) -> Result<PathBuf, NodeError> {
    paths::confine_output("output", &roots.output, required_str(params, "output")?)
}

/// `…/frame_####.png` → `…/frame_%04d.png`: FFmpeg's numbered-sequence pattern, with any `%`
/// of the path itself doubled. Only the file name's last `#` run is the frame number.
fn printf_pattern(path: &str) -> Option<String> {
    let (start, end) = frame_run(path)?;
    let escape = |s: &str| s.replace('%', "%%");
    let width = end - start;
    Some(format!(
        "{}%0{width}d{}",
        escape(&path[..start]),
        escape(&path[end..])
    ))
}

/// The file of frame `frame` for a `#` pattern (as Blender names it: zero-padded to the run).
fn frame_file(pattern: &Path, frame: i64) -> PathBuf {
    let s = pattern.to_string_lossy();
    match frame_run(&s) {
        Some((start, end)) => {
            let width = end - start;
            PathBuf::from(format!("{}{frame:0width$}{}", &s[..start], &s[end..]))
        }
        None => pattern.to_path_buf(),
    }
}

/// `24.0` → `24`, `29.97` → `29.97`.
fn format_fps(fps: f64) -> String {
    if fps.fract() == 0.0 {
        format!("{}", fps as u64)
    } else {
        format!("{fps}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_run_becomes_a_printf_pattern() {
        assert_eq!(
            printf_pattern("/out/shot 50%/f_####.png"),
            Some("/out/shot 50%%/f_%04d.png".into())
        );
        assert_eq!(
            printf_pattern("/o/a##b/x_##.exr"),
            Some("/o/a##b/x_%02d.exr".into())
        );
        assert_eq!(printf_pattern("/o/a##/x.png"), None);
    }

    #[test]
    fn frame_files_are_zero_padded_like_blender() {
        assert_eq!(
            frame_file(Path::new("/o/f_####.png"), 7),
            PathBuf::from("/o/f_0007.png")
        );
        assert_eq!(
            frame_file(Path::new("/o/f_##.png"), 123),
            PathBuf::from("/o/f_123.png")
        );
    }

    #[test]
    fn a_missing_frame_refuses_the_task_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(root.join("r")).expect("mkdir");
        for f in [1, 2, 4] {
            std::fs::write(root.join(format!("r/f_{f:04}.png")), b"x").expect("frame");
        }
        let roots = Roots {
            project: root.clone(),
            output: root.clone(),
        };
        let params = serde_json::json!({"input": "r/f_####.png", "output": "r/f.mp4", "fps": 25});
        let range = |from, to| Some(Frames { from, to, step: 1 });
        let err = argv(Path::new("/usr/bin/ffmpeg"), &roots, &params, range(1, 4))
            .expect_err("frame 3 is missing");
        assert!(
            err.report().contains("frame 3 is missing"),
            "{}",
            err.report()
        );
        let launch = argv(Path::new("/usr/bin/ffmpeg"), &roots, &params, range(1, 2)).expect("ok");
        let argv = &launch.runs[0];
        let at = |flag: &str| argv[argv.iter().position(|a| a == flag).expect(flag) + 1].clone();
        assert_eq!(at("-start_number"), "1");
        assert_eq!(at("-frames:v"), "2");
        assert_eq!(at("-framerate"), "25");
        assert_eq!(at("-i"), format!("{}/r/f_%04d.png", root.display()));
        // Written beside the video under a hidden name, moved into place when FFmpeg is done.
        assert_eq!(
            argv.last().cloned(),
            Some(format!("{}/r/.f.mp4.partial", root.display()))
        );
        assert!(!argv.iter().any(|a| a == "-apply_trc"), "PNG is not linear");
        for f in [1, 2] {
            std::fs::write(root.join(format!("r/f_{f:04}.exr")), b"x").expect("frame");
        }
        let exr = serde_json::json!({"input": "r/f_####.exr", "output": "r/f.mp4"});
        let exr_launch =
            super::argv(Path::new("/usr/bin/ffmpeg"), &roots, &exr, range(1, 2)).expect("ok");
        let exr_argv = &exr_launch.runs[0];
        let trc = exr_argv
            .iter()
            .position(|a| a == "-apply_trc")
            .expect("EXR gets the sRGB curve");
        assert_eq!(exr_argv[trc + 1], "iec61966_2_1");
        let input = exr_argv.iter().position(|a| a == "-i").expect("-i");
        assert!(trc < input, "a decoder option, before -i");
        let escape = serde_json::json!({"input": "../f_####.png", "output": "r/f.mp4"});
        assert!(argv_result_is_rejected(&roots, &escape));
    }

    fn argv_result_is_rejected(roots: &Roots, params: &Value) -> bool {
        argv(
            Path::new("/usr/bin/ffmpeg"),
            roots,
            params,
            Some(Frames {
                from: 1,
                to: 1,
                step: 1,
            }),
        )
        .is_err()
    }
}
