//! Which task of a job renders a given frame, worked out from its frame runs and chunk size
//! alone, with no store read: `frames::chunks` cuts each run into chunks in order, so the task
//! holding frame `f` of a run is the run's first task plus `((f - from) / step) / chunk`.
//!
//! The per-frame release (`lifecycle::per_frame`) asks it two things: which tasks of a waiting
//! job render frames an ack just completed (so an ack reads only the waiting job's segments
//! that can have changed), and which tasks of each job waited for render a waiting task's
//! frames (so it reads only those segments). Rejected alternative: reading every segment of
//! both jobs on every ack, O(tasks) per ack.
//!
//! Frame runs may overlap (`1-10,5-15`): a frame is then rendered by one task per run that
//! holds it, and a waiting frame counts as rendered only when *all* of them completed (the
//! later ones may still write it).

use crate::core::frames::{self, FrameRange};
use crate::core::model::JobSpec;
use std::collections::BTreeSet;

/// The tasks of one job, by the frames they render.
#[derive(Debug, Clone, Default)]
pub struct TaskMap {
    /// Each run with the index of its first task.
    runs: Vec<(FrameRange, u32)>,
    /// Frames per task.
    chunk: u64,
}

impl TaskMap {
    /// The map of frame runs cut into chunks of `chunk` frames (as `frames::chunks` does).
    pub fn new(runs: &[FrameRange], chunk: u64) -> TaskMap {
        let chunk = chunk.max(1);
        let mut first = 0u32;
        let runs = runs
            .iter()
            .map(|r| {
                let at = first;
                let tasks = u32::try_from(r.len().div_ceil(chunk)).unwrap_or(u32::MAX);
                first = first.saturating_add(tasks);
                (*r, at)
            })
            .collect();
        TaskMap { runs, chunk }
    }

    /// The map of a stored job's spec (empty for a job without frames, or with a frame spec
    /// that no longer parses, which a validated spec never has).
    pub fn of(spec: &JobSpec) -> TaskMap {
        let runs = spec
            .frames
            .as_deref()
            .and_then(|f| frames::parse(f).ok())
            .unwrap_or_default();
        TaskMap::new(&runs, spec.chunk_size)
    }

    /// The tasks rendering `frame`: one per run that holds it, none when no run does.
    pub fn tasks_with(&self, frame: i64) -> impl Iterator<Item = u32> + '_ {
        let chunk = self.chunk as i64;
        self.runs
            .iter()
            .filter(move |(r, _)| r.contains(frame))
            .map(move |(r, first)| {
                let nth = (frame - r.from) / r.step / chunk;
                first.saturating_add(u32::try_from(nth).unwrap_or(u32::MAX))
            })
    }

    /// The tasks rendering any frame of `range`.
    pub fn tasks_overlapping(&self, range: &FrameRange) -> BTreeSet<u32> {
        each_frame(range)
            .flat_map(|f| self.tasks_with(f).collect::<Vec<_>>())
            .collect()
    }

    /// The tasks rendering the frames of `range`, or `None` when some frame of it is rendered
    /// by no task of this job (such a frame waits for the whole job, `lifecycle::depend`).
    pub fn tasks_rendering(&self, range: &FrameRange) -> Option<BTreeSet<u32>> {
        let mut out = BTreeSet::new();
        for f in each_frame(range) {
            let mut any = false;
            for t in self.tasks_with(f) {
                any = true;
                out.insert(t);
            }
            if !any {
                return None;
            }
        }
        Some(out)
    }
}

/// Every frame of `range`, in order (none for a malformed range).
pub fn each_frame(range: &FrameRange) -> impl Iterator<Item = i64> {
    let step = usize::try_from(range.step.max(1)).unwrap_or(usize::MAX);
    let to = if range.step >= 1 {
        range.to
    } else {
        range.from - 1
    };
    (range.from..=to).step_by(step)
}

/// Whether every frame of `range` is rendered: for each job waited for (its map and which of
/// its tasks completed), some task renders the frame and every task that renders it
/// completed.
pub fn covered<'a>(
    range: &FrameRange,
    deps: impl IntoIterator<Item = (&'a TaskMap, &'a dyn Fn(u32) -> bool)>,
) -> bool {
    deps.into_iter().all(|(map, done)| {
        map.tasks_rendering(range)
            .is_some_and(|tasks| tasks.into_iter().all(done))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runs(spec: &str) -> Vec<FrameRange> {
        frames::parse(spec).unwrap_or_default()
    }

    fn r(from: i64, to: i64) -> FrameRange {
        FrameRange { from, to, step: 1 }
    }

    #[test]
    fn finds_the_task_of_a_frame_across_runs() {
        let map = TaskMap::new(&runs("1-10,20-30"), 4);
        // Run 1-10: tasks 0 (1-4), 1 (5-8), 2 (9-10); run 20-30: 3 (20-23), 4, 5 (28-30).
        let t = |f| map.tasks_with(f).collect::<Vec<_>>();
        assert_eq!(t(1), vec![0]);
        assert_eq!(t(8), vec![1]);
        assert_eq!(t(10), vec![2]);
        assert_eq!(t(15), Vec::<u32>::new(), "frame 15 is in no run");
        assert_eq!(t(20), vec![3]);
        assert_eq!(t(30), vec![5]);
    }

    #[test]
    fn a_waiting_range_needs_every_frame_rendered_by_each_dependency() {
        let d = TaskMap::new(&runs("1-10,20-30"), 4);
        let all_done: &dyn Fn(u32) -> bool = &|_| true;
        let only_0: &dyn Fn(u32) -> bool = &|t| t == 0;
        assert!(covered(&r(1, 4), [(&d, only_0)]), "frames 1-4 are task 0's");
        assert!(
            !covered(&r(1, 5), [(&d, only_0)]),
            "frame 5 is task 1's, not done"
        );
        assert!(
            !covered(&r(9, 20), [(&d, all_done)]),
            "frames 11-19 are rendered by no task: they wait for the whole job"
        );
        assert!(covered(&r(20, 30), [(&d, all_done)]));
        let e = TaskMap::new(&runs("1-30"), 1);
        let e_done: &dyn Fn(u32) -> bool = &|t| t < 3;
        assert!(covered(&r(1, 3), [(&d, only_0), (&e, e_done)]));
        assert!(
            !covered(&r(1, 4), [(&d, only_0), (&e, e_done)]),
            "frame 4 of the second job is not done"
        );
    }

    #[test]
    fn overlapping_runs_need_every_task_that_renders_the_frame() {
        let d = TaskMap::new(&runs("1-10,5-15"), 10);
        assert_eq!(d.tasks_with(7).collect::<Vec<_>>(), vec![0, 1]);
        let first: &dyn Fn(u32) -> bool = &|t| t == 0;
        assert!(covered(&r(1, 4), [(&d, first)]));
        assert!(!covered(&r(5, 5), [(&d, first)]), "task 1 renders it too");
    }

    #[test]
    fn steps_count_only_their_frames() {
        let d = TaskMap::new(&runs("1-100x5"), 2);
        // Frames 1, 6 | 11, 16 | ...
        assert_eq!(d.tasks_with(11).collect::<Vec<_>>(), vec![1]);
        assert_eq!(d.tasks_with(12).count(), 0);
        let done: &dyn Fn(u32) -> bool = &|_| true;
        assert!(!covered(&r(1, 2), [(&d, done)]), "frame 2 is not rendered");
        let w = FrameRange {
            from: 1,
            to: 16,
            step: 5,
        };
        assert_eq!(d.tasks_overlapping(&w), BTreeSet::from([0, 1]));
    }

    /// The brute-force rule: a range is covered when each of its frames is in at least one
    /// chunk of the dependency and every chunk holding it is done.
    fn brute(dep_runs: &[FrameRange], chunk: u64, done: &[bool], range: &FrameRange) -> bool {
        let chunks = frames::chunks(dep_runs, chunk);
        each_frame(range).all(|f| {
            let holders: Vec<usize> = (0..chunks.len())
                .filter(|&i| chunks[i].contains(f))
                .collect();
            !holders.is_empty() && holders.iter().all(|&i| done[i])
        })
    }

    fn run_strategy() -> impl Strategy<Value = FrameRange> {
        (0i64..60, 0i64..40, 1i64..4).prop_map(|(from, len, step)| FrameRange {
            from,
            to: from + len / step * step,
            step,
        })
    }

    proptest! {
        /// The map agrees with `frames::chunks` on which task renders each frame, and the
        /// coverage rule with the brute-force one, for any runs and chunk sizes (the waiting
        /// job's chunks differing from its dependency's).
        #[test]
        fn the_map_agrees_with_the_chunks(
            dep_runs in proptest::collection::vec(run_strategy(), 1..4),
            dep_chunk in 1u64..7,
            w_runs in proptest::collection::vec(run_strategy(), 1..3),
            w_chunk in 1u64..9,
            done_bits in proptest::collection::vec(any::<bool>(), 200),
        ) {
            let d = TaskMap::new(&dep_runs, dep_chunk);
            let chunks = frames::chunks(&dep_runs, dep_chunk);
            for (i, c) in chunks.iter().enumerate() {
                for f in each_frame(c) {
                    prop_assert!(d.tasks_with(f).any(|t| t as usize == i), "frame {f} of task {i}");
                }
            }
            let done: Vec<bool> = (0..chunks.len()).map(|i| done_bits[i % 200]).collect();
            let is_done = |t: u32| done.get(t as usize).copied().unwrap_or(false);
            let is_done: &dyn Fn(u32) -> bool = &is_done;
            for w in frames::chunks(&w_runs, w_chunk) {
                prop_assert_eq!(covered(&w, [(&d, is_done)]), brute(&dep_runs, dep_chunk, &done, &w));
                let over = d.tasks_overlapping(&w);
                let want: BTreeSet<u32> = (0..chunks.len() as u32)
                    .filter(|&i| each_frame(&w).any(|f| chunks[i as usize].contains(f)))
                    .collect();
                prop_assert_eq!(over, want);
            }
        }
    }
}
