//! What a claim may take: the task rule ([`claimable`]), the job rules ([`job_open`]) and the
//! partition rule (`index::part_matches`, `index::parts_of`), each written once. The claim
//! (`claim.rs`) uses them both to pick tasks and, through the segment's compare-and-swap, as the
//! guard of its write; the state change itself is `transition::apply(Event::Claim)`.
//!
//! The three rules, in the order a claim checks them:
//! 1. **Partition**: a claim reads only the index partitions its node's types and tags may
//!    serve (`index::part_matches`: the job's type, and every one of its tags). An entry found in
//!    a partition the job is no longer indexed in (its tags changed) is stale.
//! 2. **Job** ([`job_open`]): not canceled, not failed fast, not paused; the entry is of the
//!    job's current generation and priority (a PATCH or requeue wrote new entries).
//! 3. **Task** ([`claimable`]): queued, or leased with a lapsed lease (settled as `Expired`
//!    first), not held back for its frames (`Task::held`, `after_frames`), and not failed by
//!    this node before.
//!
//! **A pause or cancel racing a claim.** Rules 1 and 2 are read from the job record, outside
//! the compare-and-swap of the segment that decides the claim: a claim that read the job just
//! before a pause was written may still lease tasks after the pause answered. What each store
//! and runtime makes of that window:
//! - native `serve` (SQLite or memory): requests run one at a time on the core thread, each to
//!   its end (`runtime::native::batch`), so no claim is between its job read and its write when
//!   a pause or cancel runs: after a pause or cancel answers, no claim grants a task of the job.
//! - Cloudflare, Durable Object: one request at a time per object, with input gates holding
//!   others while a storage call is pending (docs/CLOUDFLARE.md): the same as native.
//! - Spin: requests run in parallel, each with its own instance. A cancel is still exact: it
//!   rewrites every segment with a compare-and-swap after setting the job's flag, so a claim's
//!   write either lands first (and the cancel then cancels the leased task) or loses and the
//!   retry reads a canceled task. A pause does not rewrite segments: a claim in flight when the
//!   pause is written may lease up to its `max` tasks after the pause answered. Their nodes
//!   render them; nothing else is claimed once those claims end.
//! - Workers KV (`atomic_cas = false`, eventually consistent): as Spin, and worse. A claim's
//!   blind write can overwrite a cancel's, leaving a task leased in a canceled job (its node is
//!   told to stop at its next heartbeat: `lease::check_lease` refuses any lease of a canceled
//!   job); and a claim at another location may read the job unpaused or uncanceled for up to
//!   about 60 s (docs/CLOUDFLARE.md), claiming meanwhile.

use super::expiry::lease_expired;
use super::index::{self, Entry};
use super::revoked::held_by_revoked;
use crate::core::model::{JobRecord, Segment, Task, TaskState};

/// Whether `node` may take `task` at `now_ms` (the task rule; the job rules are [`job_open`]).
pub fn claimable(task: &Task, node: &str, now_ms: u64) -> bool {
    let free = match task.state {
        // Waiting for a node.
        TaskState::Queued => true,
        // Its node went silent past the lease (lazy expiry): settled as `Expired` first.
        TaskState::Leased => task.lease.as_ref().is_none_or(|l| l.expires_ms <= now_ms),
        TaskState::Completed | TaskState::Failed | TaskState::Canceled => false,
    };
    // Held back until its frames are rendered (`after_frames`; never set on a leased task).
    let released = !task.held;
    // Never hand a task back to a node that failed it.
    free && released && !failed_by(task, node)
}

fn failed_by(task: &Task, node: &str) -> bool {
    task.failed_nodes.iter().any(|n| n == node)
}

/// Whether the job an index entry points at still takes claims through that entry (the job
/// rules). An entry for which this is false is stale and dropped.
pub fn job_open(job: &JobRecord, entry: &Entry, part: &str, priority: i64) -> bool {
    // The entry is of the job's current generation (a requeue or PATCH wrote new ones).
    job.gen == entry.gen
        // Canceled, or failed fast (`on_failure = fail`): nothing more runs.
        && !job.canceled
        && !job.failed
        // Paused: resume writes new entries.
        && !job.paused
        // Re-prioritised: the entries under the new priority are the live ones.
        && job.spec.priority == priority
        // Tags changed: the job is indexed in other partitions now.
        && index::parts_of(&job.spec).iter().any(|p| p == part)
}

/// The job waits for others (`after_jobs`) and the claim must skip the entry without dropping
/// it. A job waiting for whole jobs is being released: its entries are written just before
/// `waiting_on` is cleared (`lifecycle::depend`), and it has no other entries. A job waiting
/// frame by frame (`after_frames`) is claimed from while it waits (its held tasks are guarded
/// by the task rule, and a segment with held tasks is live, so its entry stays); only while it
/// is paused are its entries kept rather than dropped, since a release may have written one
/// just before the resume read its segments (`lifecycle::per_frame`).
pub fn job_waiting(job: &JobRecord, entry: &Entry) -> bool {
    !job.waiting_on.is_empty()
        && job.gen == entry.gen
        && !job.canceled
        && !job.failed
        && (!job.spec.after_frames || job.paused)
}

/// Queued, and `node` failed it: the claim checks whether any node is left to try it.
pub fn failed_here(t: &Task, node: &str) -> bool {
    t.state == TaskState::Queued && failed_by(t, node)
}

/// Something in the segment is still queued or leased: its index entry must stay.
pub fn is_live(seg: &Segment) -> bool {
    seg.tasks
        .iter()
        .any(|t| matches!(t.state, TaskState::Queued | TaskState::Leased))
}

/// Nothing in the segment can be claimed by `node` or settled now: every live task is leased
/// to a node that is still within its lease and not removed (or was failed by `node`).
pub fn nothing_to_do(
    seg: &Segment,
    node: &str,
    lease_now: u64,
    revoked: &[super::revoked::RevokedNode],
) -> bool {
    !seg.tasks.iter().any(|t| {
        lease_expired(t, lease_now)
            || held_by_revoked(t, revoked)
            || claimable(t, node, lease_now)
            || failed_here(t, node)
    })
}
