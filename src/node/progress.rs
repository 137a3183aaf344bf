//! Progress from a program's output lines.
//!
//! Blender prints one status line per step, `Fra:N Mem:… | Time:… | Scene, ViewLayer | Sample a/b`,
//! and `Saved: 'path'` once a frame's file is written. A frame counts as done only on `Saved:`,
//! because a frame can reach `Sample 4/4` and still fail while writing its file.

use std::path::PathBuf;

use crate::core::model::Progress;

/// Running state of one task's progress.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    pub progress: Progress,
    /// Short "what is it doing" line for the dashboard, e.g. `Fra:3 Sample 2/4`.
    pub activity: Option<String>,
    /// Files the program reported as written (absolute, as printed).
    pub saved: Vec<PathBuf>,
    /// The program is FFmpeg run with `-progress pipe:1` (see [`Tracker::ffmpeg_line`]).
    pub ffmpeg: bool,
}

impl Tracker {
    /// A tracker for a task covering `total` frames.
    pub fn new(total: u32) -> Self {
        Tracker {
            progress: Progress {
                done: 0,
                total: total.into(),
            },
            ..Tracker::default()
        }
    }

    /// Reads one Blender output line.
    pub fn blender_line(&mut self, line: &str) {
        if let Some(path) = saved_path(line) {
            self.saved.push(PathBuf::from(path));
            self.progress.done = (self.progress.done + 1).min(self.progress.total);
            return;
        }
        if let Some(activity) = frame_activity(line) {
            self.activity = Some(activity);
        }
    }

    /// Reads one line of FFmpeg's `-progress` output (`key=value`): `frame=N` is the progress.
    /// `true` when the line was such a line (it is then kept out of the task log: FFmpeg
    /// prints a dozen of them twice a second); always `false` for other programs.
    pub fn ffmpeg_line(&mut self, line: &str) -> bool {
        if !self.ffmpeg {
            return false;
        }
        let Some((key, value)) = line.trim().split_once('=') else {
            return false;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return false;
        }
        if key == "frame" {
            if let Ok(n) = value.trim().parse::<u64>() {
                self.progress.done = n.min(self.progress.total);
                self.activity = Some(format!("encoding frame {n}"));
            }
        }
        true
    }

    /// Marks one more run of a per-frame `command` task as finished.
    pub fn run_finished(&mut self, frames: u32) {
        self.progress.done = (self.progress.done + u64::from(frames)).min(self.progress.total);
    }
}

/// `Saved: '/out/f_0001.png'` → `/out/f_0001.png`.
pub fn saved_path(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("Saved:")?.trim();
    let unquoted = rest
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
        .unwrap_or(rest);
    (!unquoted.is_empty()).then_some(unquoted)
}

/// `Fra:3 Mem:… | … | Sample 2/4` → `Fra:3 Sample 2/4` (the frame and the last status field).
pub fn frame_activity(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Fra:")?;
    let frame: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if frame.is_empty() {
        return None;
    }
    let fields: Vec<&str> = line.split(" | ").map(str::trim).collect();
    // The layout is `Fra… | Time… | Mem… | Scene, ViewLayer | status [| detail]`; the status is
    // the first field after the one naming the scene and view layer.
    let status = fields
        .iter()
        .position(|f| f.contains(", ") && !f.starts_with("Mem:"))
        .and_then(|i| fields.get(i + 1))
        .or_else(|| fields.last().filter(|_| fields.len() > 1));
    Some(match status {
        Some(s) => format!("Fra:{frame} {s}"),
        None => format!("Fra:{frame}"),
    })
}

/// Parses `a/b` after `Sample ` in an activity line (used by the CLI to show samples).
pub fn sample_of(activity: &str) -> Option<(u32, u32)> {
    let rest = activity.split("Sample ").nth(1)?;
    let (a, b) = rest.split_once('/')?;
    let b: String = b.chars().take_while(char::is_ascii_digit).collect();
    Some((a.trim().parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines copied from Blender 3.4.1 (Debian) rendering tests/fixtures/make_scene.py.
    const SAMPLE: &str = "Fra:1 Mem:10.02M (Peak 10.83M) | Time:00:00.08 | Remaining:00:00.01 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/4";
    const SYNC: &str = "Fra:2 Mem:9.30M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube";
    const SAVED: &str = "Saved: '/tmp/bl/out/f_0001.png'";
    const TIME: &str = " Time: 00:00.28 (Saving: 00:00.20)";

    #[test]
    fn sample_line_gives_frame_and_sample() {
        assert_eq!(frame_activity(SAMPLE).as_deref(), Some("Fra:1 Sample 1/4"));
        assert_eq!(sample_of("Fra:1 Sample 1/4"), Some((1, 4)));
    }

    #[test]
    fn status_line_keeps_its_first_status_field() {
        assert_eq!(
            frame_activity(SYNC).as_deref(),
            Some("Fra:2 Synchronizing object")
        );
    }

    #[test]
    fn saved_line_counts_a_frame_and_its_file() {
        let mut t = Tracker::new(3);
        for line in [SYNC, SAMPLE, SAVED, TIME] {
            t.blender_line(line);
        }
        assert_eq!(t.progress, Progress { done: 1, total: 3 });
        assert_eq!(t.saved, vec![PathBuf::from("/tmp/bl/out/f_0001.png")]);
        assert_eq!(t.activity.as_deref(), Some("Fra:1 Sample 1/4"));
    }

    #[test]
    fn sample_four_of_four_is_not_a_finished_frame() {
        let mut t = Tracker::new(1);
        t.blender_line("Fra:1 Mem:10.07M (Peak 10.83M) | Time:00:00.08 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 4/4");
        assert_eq!(t.progress.done, 0, "only Saved: finishes a frame");
    }

    #[test]
    fn done_never_exceeds_total() {
        let mut t = Tracker::new(1);
        t.blender_line(SAVED);
        t.blender_line(SAVED);
        assert_eq!(t.progress.done, 1);
    }

    #[test]
    fn unrelated_lines_are_ignored() {
        let mut t = Tracker::new(2);
        for line in [
            "Blender 3.4.1",
            "Read blend: /tmp/bl/s.blend",
            "Fra:",
            "Saved:",
        ] {
            t.blender_line(line);
        }
        assert_eq!((t.progress.done, t.activity.clone()), (0, None));
    }
}
