//! Frames an earlier attempt of a task already rendered, so a rerun renders only the rest.
//!
//! A Blender task interrupted after 5 of its 10 frames (a node killed, a lease lost in an
//! outage) would otherwise render all 10 again. Before a retry (attempt 2 or later) the node
//! looks for each frame's file at the path Blender writes it to, and skips a frame when its
//! file is both
//! - **complete**: it decodes as an image, and for PNG and JPEG it ends with the format's end
//!   marker. Blender writes a frame straight to its final path and prints `Saved:` after, so a
//!   node killed mid-write leaves a truncated file: decoding it fails, and the frame is
//!   rendered again. (Blender's own `use_overwrite = False` would skip that truncated file,
//!   and so would an existence or size check: that is why neither is used.)
//! - **fresh**: modified after this task's earliest attempt since it last completed began
//!   (server time, turned into local time with the offset seen at this claim, minus a small
//!   margin). A file from an older job that wrote to the same path (a shot rendered again
//!   after a fix) is older than that and is rendered over; a first attempt never skips, and a
//!   requeue of a completed job renders everything again.
//!
//! Formats other than PNG, JPEG and OpenEXR are never skipped (they cannot be checked here).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::core::frames::FrameRange as Frames;
use crate::core::model::{Attempt as AttemptInfo, Outcome};

/// Files written this long before the window's start still count (clock differences between
/// the server, this node and a shared file system).
const MARGIN: Duration = Duration::from_secs(2);

/// Extensions Blender gives the formats this module can check.
const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "exr"];

/// The server time (ms) since which a complete frame file counts as this task's work: the start
/// of the earliest attempt after the last completed one, not counting the current attempt.
/// `None` when there was no earlier attempt (nothing to skip).
pub fn window_start_ms(history: &[AttemptInfo], current_attempt: u32) -> Option<u64> {
    let earlier: Vec<&AttemptInfo> = history
        .iter()
        .filter(|a| a.attempt < current_attempt)
        .collect();
    let after_completed = match earlier
        .iter()
        .rposition(|a| a.outcome == Some(Outcome::Completed))
    {
        Some(i) => &earlier[i + 1..],
        None => &earlier[..],
    };
    after_completed.iter().map(|a| a.started_ms).min()
}

/// The local time matching server time `server_ms`, given that the current attempt started at
/// server time `current_start_ms` and the node saw it at local time `seen`.
pub fn local_time(server_ms: u64, current_start_ms: u64, seen: SystemTime) -> SystemTime {
    let back = Duration::from_millis(current_start_ms.saturating_sub(server_ms));
    seen.checked_sub(back + MARGIN)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The path of `frame` for Blender's `-o` pattern, before any extension: the last run of `#`
/// in the file name becomes the zero-padded frame, or four digits are appended if there is
/// none. `None` for negative frames (never skipped).
pub fn frame_base(output: &Path, frame: i64) -> Option<PathBuf> {
    if frame < 0 {
        return None;
    }
    let name = output.file_name()?.to_str()?;
    let name = match name.rfind('#') {
        Some(end) => {
            let start = name[..=end].trim_end_matches('#').len();
            let width = end + 1 - start;
            format!("{}{frame:0width$}{}", &name[..start], &name[end + 1..])
        }
        None => format!("{name}{frame:04}"),
    };
    Some(output.with_file_name(name))
}

/// Where Blender may have written `frame`: the base as it is, or with the extension of the
/// job's format (any checkable one when the job does not say), added or in place of another.
pub fn candidates(output: &Path, frame: i64, format: Option<&str>) -> Vec<PathBuf> {
    let Some(base) = frame_base(output, frame) else {
        return Vec::new();
    };
    let exts: &[&str] = match format.map(str::to_ascii_uppercase).as_deref() {
        None => &EXTENSIONS,
        Some("PNG") => &["png"],
        Some("JPEG") => &["jpg"],
        Some("OPEN_EXR" | "OPEN_EXR_MULTILAYER") => &["exr"],
        Some(_) => return Vec::new(),
    };
    let mut out = vec![base.clone()];
    for ext in exts {
        let mut added = base.clone().into_os_string();
        added.push(".");
        added.push(ext);
        out.push(PathBuf::from(added));
        out.push(base.with_extension(ext));
    }
    out.dedup();
    out
}

/// Whether `path` holds a whole image of a format this module can check.
pub fn is_complete(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let Ok(format) = image::guess_format(&bytes) else {
        return false;
    };
    let ends_right = match format {
        image::ImageFormat::Png => bytes.ends_with(b"IEND\xAE\x42\x60\x82"),
        image::ImageFormat::Jpeg => bytes.ends_with(&[0xFF, 0xD9]),
        image::ImageFormat::OpenExr => true,
        _ => return false,
    };
    ends_right && image::load_from_memory_with_format(&bytes, format).is_ok()
}

/// The frames of `frames` with a complete file modified at or after `since`, with that file.
pub fn done(
    output: &Path,
    frames: Frames,
    format: Option<&str>,
    since: SystemTime,
) -> Vec<(i64, PathBuf)> {
    let mut found = Vec::new();
    for frame in all(frames) {
        let hit = candidates(output, frame, format).into_iter().find(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
                && is_complete(p)
        });
        if let Some(p) = hit {
            found.push((frame, p));
        }
    }
    found
}

/// Every frame of a range.
pub fn all(frames: Frames) -> impl Iterator<Item = i64> {
    (0..i64::from(frames.count())).map(move |i| frames.from + i * frames.step)
}

/// The frames of `frames` not in `skip`, as few ranges as possible (same step).
pub fn missing_ranges(frames: Frames, skip: &[i64]) -> Vec<Frames> {
    let mut ranges: Vec<Frames> = Vec::new();
    for f in all(frames).filter(|f| !skip.contains(f)) {
        match ranges.last_mut() {
            Some(r) if r.to + frames.step == f => r.to = f,
            _ => ranges.push(Frames {
                from: f,
                to: f,
                step: frames.step,
            }),
        }
    }
    ranges
}

/// `1-3,7,9-10` for a log line.
pub fn describe(frames: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let mut j = i;
        while j + 1 < frames.len() && frames[j + 1] == frames[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            frames[i].to_string()
        } else {
            format!("{}-{}", frames[i], frames[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(attempt: u32, started_ms: u64, outcome: Option<&str>) -> AttemptInfo {
        AttemptInfo {
            attempt,
            node: "n1".into(),
            started_ms,
            ended_ms: None,
            outcome: outcome.and_then(|o| serde_json::from_value(serde_json::json!(o)).ok()),
            log_chunks: 0,
        }
    }

    #[test]
    fn frame_base_replaces_the_last_hash_run_or_appends_four_digits() {
        let b = |o: &str, f| frame_base(Path::new(o), f).map(|p| p.display().to_string());
        assert_eq!(b("/o/s/frame_####", 7).as_deref(), Some("/o/s/frame_0007"));
        assert_eq!(b("/o/a_##_x.png", 3).as_deref(), Some("/o/a_03_x.png"));
        assert_eq!(b("/o/##/b_###", 12).as_deref(), Some("/o/##/b_012"));
        assert_eq!(b("/o/plain", 5).as_deref(), Some("/o/plain0005"));
        assert_eq!(b("/o/f_#", 123).as_deref(), Some("/o/f_123"));
        assert_eq!(b("/o/f_#", -1), None);
    }

    #[test]
    fn candidates_follow_the_format_when_the_job_gives_one() {
        let c = candidates(Path::new("/o/f_####"), 1, Some("PNG"));
        assert!(c.contains(&PathBuf::from("/o/f_0001.png")), "{c:?}");
        assert!(!c.iter().any(|p| p.extension().is_some_and(|e| e == "exr")));
        assert!(candidates(Path::new("/o/f_####"), 1, Some("TIFF")).is_empty());
    }

    #[test]
    fn window_starts_after_the_last_completed_attempt() {
        let h = [
            attempt(1, 100, Some("completed")),
            attempt(2, 500, Some("expired")),
            attempt(3, 900, Some("failed")),
            attempt(4, 1_300, None),
        ];
        assert_eq!(window_start_ms(&h, 4), Some(500));
        assert_eq!(
            window_start_ms(&h[..1], 2),
            None,
            "a requeued completed task renders all"
        );
        assert_eq!(window_start_ms(&h[3..], 4), None, "no earlier attempt");
    }

    #[test]
    fn missing_frames_become_ranges_with_the_task_step() {
        let f = Frames {
            from: 1,
            to: 11,
            step: 2,
        };
        let r = missing_ranges(f, &[1, 3, 9]);
        let as_tuples: Vec<_> = r.iter().map(|r| (r.from, r.to, r.step)).collect();
        assert_eq!(as_tuples, vec![(5, 7, 2), (11, 11, 2)]);
        assert_eq!(describe(&[1, 2, 3, 7, 9, 10]), "1-3,7,9-10");
    }

    #[test]
    fn a_truncated_png_is_not_complete_and_a_whole_one_is() {
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("f_0001.png");
        image::RgbImage::from_pixel(16, 8, image::Rgb([200, 10, 10]))
            .save(&whole)
            .unwrap();
        assert!(is_complete(&whole));
        let bytes = std::fs::read(&whole).unwrap();
        let cut = tmp.path().join("f_0002.png");
        std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
        assert!(
            !is_complete(&cut),
            "a file cut short mid-write must be rendered again"
        );
        let frames = Frames {
            from: 1,
            to: 3,
            step: 1,
        };
        let found = done(
            &tmp.path().join("f_####"),
            frames,
            None,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(found, vec![(1, whole.clone())]);
        let later = SystemTime::now() + Duration::from_secs(3600);
        assert!(
            done(&tmp.path().join("f_####"), frames, None, later).is_empty(),
            "a file older than the window is not this task's work"
        );
    }
}
