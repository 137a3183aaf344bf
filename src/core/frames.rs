//! Frame specs (`"1-250"`, `"1,5,10-20"`, `"1-100x5"`) and their split into task chunks.
//!
//! Each comma part is a run (`from-to` with a step); a task never spans two runs, so every task
//! is one `from..=to` range with one step and maps straight onto Blender's `-s -e -j`.

use serde::{Deserialize, Serialize};

/// The frames one task renders: `from..=to` every `step` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRange {
    /// First frame.
    pub from: i64,
    /// Last frame (inclusive; a frame of the run).
    pub to: i64,
    /// Distance between frames, at least 1.
    pub step: i64,
}

impl FrameRange {
    /// Number of frames in the range.
    pub fn len(&self) -> u64 {
        ((self.to - self.from) / self.step + 1) as u64
    }

    /// Number of frames, 0 when the range is malformed (a reversed range or a step under 1,
    /// which a parsed range never has): for readers of a range from elsewhere, such as a node.
    pub fn count(&self) -> u32 {
        if self.step < 1 || self.to < self.from {
            return 0;
        }
        u32::try_from((self.to - self.from) / self.step + 1).unwrap_or(u32::MAX)
    }

    /// Whether `frame` is one of the range's frames.
    pub fn contains(&self, frame: i64) -> bool {
        self.step >= 1
            && (self.from..=self.to).contains(&frame)
            && (frame - self.from) % self.step == 0
    }

    /// Whether the range holds no frame (never true for a parsed range).
    pub fn is_empty(&self) -> bool {
        self.to < self.from
    }
}

/// Why a frame spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub String);

const FRAME_LIMIT: i64 = 1_000_000_000;

fn number(s: &str, whole: &str) -> Result<i64, FrameError> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| FrameError(format!("`{whole}`: `{}` is not a frame number", s.trim())))?;
    if n.abs() > FRAME_LIMIT {
        return Err(FrameError(format!("`{whole}`: frame {n} is out of range")));
    }
    Ok(n)
}

/// Parses a frame spec into runs, rejecting empty parts, reversed ranges and zero steps.
pub fn parse(spec: &str) -> Result<Vec<FrameRange>, FrameError> {
    if spec.trim().is_empty() {
        return Err(FrameError("the frame spec is empty".into()));
    }
    spec.split(',')
        .map(|part| {
            let part = part.trim();
            if part.is_empty() {
                return Err(FrameError(format!("`{spec}` has an empty part")));
            }
            let (range, step) = match part.split_once(['x', 'X']) {
                Some((r, s)) => (r, number(s, part)?),
                None => (part, 1),
            };
            if step < 1 {
                return Err(FrameError(format!("`{part}`: the step must be at least 1")));
            }
            // A leading '-' is a negative frame, not a range separator.
            let split = range
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '-')
                .map(|(i, _)| i);
            let (from, to) = match split {
                Some(i) => (number(&range[..i], part)?, number(&range[i + 1..], part)?),
                None => {
                    let n = number(range, part)?;
                    (n, n)
                }
            };
            if to < from {
                return Err(FrameError(format!(
                    "`{part}`: the range ends before it starts"
                )));
            }
            // Normalise `to` onto the last frame the step reaches.
            Ok(FrameRange {
                from,
                to: from + (to - from) / step * step,
                step,
            })
        })
        .collect()
}

/// Total number of frames in the runs.
pub fn count(runs: &[FrameRange]) -> u64 {
    runs.iter().map(FrameRange::len).sum()
}

/// Where the frame number goes in a frame pattern: the byte range of the last run of `#` in its
/// file name (after the last `/`, or `\` in a Windows path a node built from it), as Blender
/// reads `-o` patterns. `None` without one.
pub fn frame_run(pattern: &str) -> Option<(usize, usize)> {
    let name_at = pattern.rfind(['/', '\\']).map_or(0, |i| i + 1);
    let end = name_at + pattern[name_at..].rfind('#')? + 1;
    let start = pattern[..end].trim_end_matches('#').len();
    Some((start, end))
}

/// The frame number in `path` when it is a file of `pattern` (`shot/f_####.png`: the last run
/// of `#` in the file name stands for the frame, zero-padded to at least its width, as Blender
/// writes it): `shot/f_0012.png` → 12.
pub fn frame_in_name(pattern: &str, path: &str) -> Option<i64> {
    let (start, end) = frame_run(pattern)?;
    let (prefix, width, suffix) = (&pattern[..start], end - start, &pattern[end..]);
    let digits = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() < width || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Splits runs into chunks of at most `chunk` frames each.
pub fn chunks(runs: &[FrameRange], chunk: u64) -> Vec<FrameRange> {
    let chunk = chunk.max(1) as i64;
    let mut out = Vec::new();
    for run in runs {
        let mut from = run.from;
        while from <= run.to {
            let to = (from + (chunk - 1) * run.step).min(run.to);
            out.push(FrameRange {
                from,
                to,
                step: run.step,
            });
            from = to + run.step;
        }
    }
    out
}

/// Number of chunks `chunks` would make, without making them (to check limits first).
pub fn chunk_count(runs: &[FrameRange], chunk: u64) -> u64 {
    runs.iter().map(|r| r.len().div_ceil(chunk.max(1))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(from: i64, to: i64, step: i64) -> FrameRange {
        FrameRange { from, to, step }
    }

    #[test]
    fn parses_ranges_lists_and_steps() {
        assert_eq!(parse("1-250"), Ok(vec![r(1, 250, 1)]));
        assert_eq!(
            parse("1,5,10-20"),
            Ok(vec![r(1, 1, 1), r(5, 5, 1), r(10, 20, 1)])
        );
        assert_eq!(
            parse("1-100x5"),
            Ok(vec![r(1, 96, 5)]),
            "`to` is normalised onto the last stepped frame"
        );
        assert_eq!(
            parse("-5--1"),
            Ok(vec![r(-5, -1, 1)]),
            "negative frames are frames"
        );
        assert_eq!(parse(" 3 , 7 "), Ok(vec![r(3, 3, 1), r(7, 7, 1)]));
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "",
            "a",
            "1-",
            "5-1",
            "1,,2",
            "1-10x0",
            "1-10x-2",
            "1-2-3",
            "99999999999",
        ] {
            assert!(parse(bad).is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn chunks_never_span_runs() {
        let runs = parse("1,5,10-20").unwrap_or_default();
        assert_eq!(
            chunks(&runs, 10),
            vec![r(1, 1, 1), r(5, 5, 1), r(10, 19, 1), r(20, 20, 1)]
        );
        assert_eq!(chunk_count(&runs, 10), 4);
        let stepped = parse("1-100x5").unwrap_or_default();
        assert_eq!(chunks(&stepped, 3)[0], r(1, 11, 5));
        assert_eq!(count(&stepped), 20);
        assert_eq!(
            chunks(&stepped, 3).iter().map(FrameRange::len).sum::<u64>(),
            20,
            "chunks cover every frame once"
        );
    }

    #[test]
    fn frame_numbers_are_read_from_names_of_a_pattern() {
        let p = "shot/f_####.png";
        assert_eq!(frame_in_name(p, "shot/f_0012.png"), Some(12));
        assert_eq!(
            frame_in_name(p, "shot/f_12345.png"),
            Some(12345),
            "past the padding"
        );
        for other in [
            "shot/f_012.png",
            "shot/f_0012.exr",
            "shot/g_0012.png",
            "other/f_0012.png",
            "shot/f_00a2.png",
            "shot/f_.png",
            "shot/sub/f_0012.png",
        ] {
            assert_eq!(frame_in_name(p, other), None, "{other}");
        }
        assert_eq!(frame_in_name("a##b/x_##.exr", "a##b/x_07.exr"), Some(7));
        assert_eq!(frame_in_name("no-hashes.png", "no-hashes.png"), None);
    }

    #[test]
    fn ranges_know_their_frames() {
        let run = r(1, 11, 5);
        assert!(run.contains(1) && run.contains(6) && run.contains(11));
        assert!(!run.contains(2) && !run.contains(0) && !run.contains(16));
    }
}
