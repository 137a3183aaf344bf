//! Claiming tasks: which task a node may take, and taking it with one compare-and-swap.
//!
//! The claim walks the claim index (`index.rs`) from the highest priority and oldest entry, reads
//! the job and the segment an entry points at, and leases up to `max` tasks of that segment in
//! one CAS of the segment. `claimable()` is written once and is both the filter that picks tasks
//! and the guard of the write: the CAS only lands if the segment is still at the version the
//! predicate was evaluated on. Expired leases are settled by the claim that meets them (lazy
//! expiry: no reaper is needed). What may be claimed is `claimable.rs`; every change a claim
//! makes to a task is a `transition::apply` (claim, expiry, revoked node, dead end).
//!
//! On a store without an atomic compare-and-swap (`Capabilities::atomic_cas == false`, Workers
//! KV) the claim is optimistic: the same write, then a read-back that drops any task whose lease
//! is no longer ours (`still_ours`). Only there; everywhere else the CAS alone decides.

use super::claimable::{claimable, failed_here, is_live, job_open, job_waiting, nothing_to_do};
use super::expiry::{lapsed_while_down, lease_clock, lease_expired};
use super::index::{self, Entry, PageRead, Scan};
use super::revoked::{held_by_revoked, revoked_nodes, RevokedNode};
pub use super::select::{Order, Selection};
use super::task_ref::task_id;
use super::transition::{apply, Event};
use crate::core::cas::{self, Step};
use crate::core::error::Result;
use crate::core::model::{JobRecord, JobType, Segment, Task, TaskState};
use crate::core::reach::{self, Nodes};
use crate::core::records::{load, Rec};
use crate::core::Ctx;
use crate::store::{keys, Store};
use std::collections::HashMap;

/// How long an index entry may point at a job that does not exist yet (a submit in progress)
/// before a claim decides the submit died and drops it.
pub const ORPHAN_GRACE_MS: u64 = 60_000;
/// Index entries one claim may look at before it gives up (bounds a claim's cost when the head
/// of the index is full of segments whose tasks are all leased).
pub const SCAN_BUDGET: usize = 1024;

/// Who is claiming.
#[derive(Debug, Clone)]
pub struct Claimer {
    /// Node id.
    pub node: String,
    /// Job types it runs.
    pub types: Vec<JobType>,
    /// Tags it offers.
    pub tags: Vec<String>,
}

/// A task leased by a claim, with its job.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The job.
    pub job: JobRecord,
    /// The task as leased.
    pub task: Task,
}

/// What a claim did to one segment.
#[derive(Default)]
struct SegmentClaim {
    claimed: Vec<Task>,
    /// Something is still queued or leased: keep the index entry.
    live: bool,
    /// A task ran out of attempts here.
    newly_failed: bool,
    /// Expired leases settled here (for the metrics counters).
    expired: u64,
}

/// `(segment number, the segment as the scan already read it)`: the first attempt uses that
/// read, a retry after a lost CAS reads again.
type SegmentRead = (u32, Option<Rec<Segment>>);

async fn claim_in_segment<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    (seg, read): SegmentRead,
    claimer: &Claimer,
    want: usize,
    seen: &mut Seen,
) -> Result<SegmentClaim> {
    let key = keys::segment(&job.spec.id, &job.gen, seg);
    let lease_now = lease_clock(ctx.config, ctx.now_ms);
    let what = format!("segment {seg} of job {}", job.spec.id);
    let got = cas::update_from(
        ctx.store,
        &key,
        &what,
        Some(read),
        async |rec: Option<Rec<Segment>>| {
            let Some(Rec { mut value, .. }) = rec else {
                return Ok(Step::Stop(SegmentClaim::default()));
            };
            // nexrender executors do not enrol: their jobs never run out of nodes this way.
            if job.spec.kind != JobType::Nexrender
                && value.tasks.iter().any(|t| failed_here(t, &claimer.node))
            {
                seen.load_nodes(ctx).await?;
            }
            let (changed, out) =
                claim_tasks(ctx, job, &mut value.tasks, claimer, want, seen, lease_now);
            let out = SegmentClaim {
                live: is_live(&value),
                ..out
            };
            Ok(if changed {
                Step::Write(value, out)
            } else {
                Step::Stop(out)
            })
        },
    )
    .await;
    // Too much contention on this segment: leave it to the next claim. Not a 503: this claim
    // may already hold leases from other segments, which it must hand out (a failed request
    // would strand them until they lapse); the entry stays, so nothing is lost.
    let Some(mut got) = cas::best_effort(got, "claim of a contended segment")? else {
        return Ok(SegmentClaim {
            live: true,
            ..SegmentClaim::default()
        });
    };
    if !got.claimed.is_empty() && !ctx.store.capabilities().atomic_cas {
        got.claimed = still_ours(ctx, &key, got.claimed).await?;
    }
    Ok(got)
}

/// One pass of a claim over the tasks of a segment, as read: settles what has to be settled
/// (lapsed leases, removed nodes' leases, tasks nobody is left to run) and leases up to `want`
/// claimable tasks. Returns whether anything changed, and what was done.
fn claim_tasks<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    tasks: &mut [Task],
    claimer: &Claimer,
    want: usize,
    seen: &Seen,
    lease_now: u64,
) -> (bool, SegmentClaim) {
    let mut out = SegmentClaim::default();
    let mut changed = false;
    for task in tasks.iter_mut() {
        if lease_expired(task, lease_now) {
            let counted = !lapsed_while_down(task, ctx.config);
            let max_attempts = job.spec.max_attempts;
            changed |= apply(
                task,
                Event::Expired {
                    max_attempts,
                    counted,
                },
                ctx.now_ms,
            )
            .is_ok();
            out.newly_failed |= task.state == TaskState::Failed;
            out.expired += 1;
        } else if held_by_revoked(task, &seen.revoked) {
            // Its node was removed (it can never heartbeat or ack again) or left.
            changed |= apply(task, Event::Revoked, ctx.now_ms).is_ok();
        }
        if failed_here(task, &claimer.node) {
            // This node failed it; if every node that could run it did, nobody is left.
            if let Some(names) = seen
                .nodes
                .as_ref()
                .and_then(|n| reach::dead_end(&job.spec, task, n))
            {
                let dead_end = apply(task, Event::DeadEnd { names: &names }, ctx.now_ms);
                out.newly_failed |= dead_end.is_ok();
                changed |= dead_end.is_ok();
            }
        }
        if out.claimed.len() < want && claimable(task, &claimer.node, lease_now) {
            let grant = Event::Claim {
                node: &claimer.node,
                token: ctx.token(),
                expires_ms: ctx.now_ms + ctx.config.lease_ms,
            };
            if apply(task, grant, ctx.now_ms).is_ok() {
                out.claimed.push(task.clone());
                changed = true;
            }
        }
    }
    (changed, out)
}

/// The verify step of an optimistic claim, for stores without an atomic compare-and-swap
/// (Workers KV): our "CAS" may have raced another claimer's, the later blind write winning. Read
/// the segment back and keep only the tasks whose lease token is still ours; the others went to
/// the other claimer. This narrows the race but cannot close it (the other write may land after
/// this read, and an eventually consistent read may be stale), so such stores give at-least-once
/// delivery: the loser's heartbeats and ack answer "stale lease" and its node stops. Stores with
/// an atomic CAS never get here: their successful write *is* the proof.
async fn still_ours<S: Store>(
    ctx: &Ctx<'_, S>,
    key: &str,
    claimed: Vec<Task>,
) -> Result<Vec<Task>> {
    let Some(now) = load::<Segment, _>(ctx.store, key).await? else {
        return Ok(vec![]);
    };
    let token = |t: &Task| t.lease.as_ref().map(|l| l.token.clone());
    Ok(claimed
        .into_iter()
        .filter(|mine| {
            now.value
                .tasks
                .iter()
                .any(|t| t.index == mine.index && token(t).is_some() && token(t) == token(mine))
        })
        .collect())
}

/// What one claim request read once and shares across the segments it visits.
struct Seen {
    /// Nodes removed recently (their leases are released at once).
    revoked: Vec<RevokedNode>,
    /// The enrolled nodes, read only when a segment holds a task this claimer failed.
    nodes: Option<Nodes>,
}

impl Seen {
    async fn load_nodes<S: Store>(&mut self, ctx: &Ctx<'_, S>) -> Result<()> {
        if self.nodes.is_none() {
            self.nodes = Some(reach::load_nodes(ctx).await?);
        }
        Ok(())
    }
}

/// Claims up to `max` tasks of `queue` for `claimer`, oldest first, from the partitions the
/// claimer's types and tags may serve.
pub async fn claim<S: Store>(
    ctx: &Ctx<'_, S>,
    queue: &str,
    claimer: &Claimer,
    max: usize,
) -> Result<Vec<Claimed>> {
    let parts = |p: &str| index::part_matches(p, &claimer.types, &claimer.tags);
    claim_where(ctx, queue, claimer, max, &Selection::oldest_first(&parts)).await
}

/// Claims up to `max` tasks of `queue` for `claimer` as `sel` says.
pub async fn claim_where<S: Store>(
    ctx: &Ctx<'_, S>,
    queue: &str,
    claimer: &Claimer,
    max: usize,
    sel: &Selection<'_>,
) -> Result<Vec<Claimed>> {
    let mut scan = Scan::open_parts(ctx, queue, sel.parts, sel.order == Order::NewestFirst).await?;
    let mut seen = Seen {
        revoked: revoked_nodes(ctx).await?,
        nodes: None,
    };
    let lease_now = lease_clock(ctx.config, ctx.now_ms);
    let mut jobs: HashMap<String, Option<JobRecord>> = HashMap::new();
    let mut out = Vec::new();
    let mut budget = SCAN_BUDGET;
    let mut failed_jobs = Vec::new();
    let mut expired = 0;
    while out.len() < max && budget > 0 {
        let Some(pages) = scan.next_pages(ctx).await? else {
            break;
        };
        // Merge the pages of one priority by age.
        let mut entries: Vec<(usize, &Entry)> = pages
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.rec
                    .iter()
                    .flat_map(move |r| r.value.entries.iter().map(move |e| (i, e)))
            })
            .collect();
        entries.sort_by(|a, b| (a.1.t, &a.1.job, a.1.seg).cmp(&(b.1.t, &b.1.job, b.1.seg)));
        match sel.order {
            Order::OldestFirst => {}
            Order::NewestFirst => entries.reverse(),
            // Cached: the key of each entry is drawn once, so the order is a consistent one.
            Order::Random => entries.sort_by_cached_key(|_| ctx.ids.random()),
        }
        let mut drops: Vec<Vec<u64>> = vec![Vec::new(); pages.len()];
        for (i, entry) in entries {
            if out.len() >= max || budget == 0 {
                break;
            }
            budget -= 1;
            let read: &PageRead = &pages[i];
            // The segment first, the job only if there is work in it. The head of the index
            // holds the entries of the tasks being rendered (leased, so kept in the index in
            // case their lease lapses), and every claim walks past them: settling those from
            // the segment alone saves a job record read and decode per in-flight task per
            // claim. Keeping or dropping an entry depends on its segment only (the rule in
            // `index.rs`), so the job is not needed for that; a stale entry whose tasks are
            // all leased is dropped by a later claim, once they are not.
            let seg =
                load::<Segment, _>(ctx.store, &keys::segment(&entry.job, &entry.gen, entry.seg))
                    .await?;
            if let Some(s) = seg
                .as_ref()
                .filter(|s| nothing_to_do(&s.value, &claimer.node, lease_now, &seen.revoked))
            {
                if !is_live(&s.value) {
                    drops[i].push(entry.n);
                }
                continue;
            }
            if !jobs.contains_key(&entry.job) {
                let rec = load::<JobRecord, _>(ctx.store, &keys::job(&entry.job)).await?;
                jobs.insert(entry.job.clone(), rec.map(|r| r.value));
            }
            let Some(job) = jobs.get(&entry.job).and_then(|j| j.as_ref()) else {
                if entry.t + ORPHAN_GRACE_MS <= ctx.now_ms {
                    drops[i].push(entry.n);
                }
                continue;
            };
            if job_waiting(job, entry) {
                continue;
            }
            if !job_open(job, entry, &read.part, read.priority) {
                drops[i].push(entry.n);
                continue;
            }
            // Not stale, so `job.gen == entry.gen`: the segment read above is the job's.
            let got = claim_in_segment(
                ctx,
                job,
                (entry.seg, seg),
                claimer,
                max - out.len(),
                &mut seen,
            )
            .await?;
            if !got.live {
                drops[i].push(entry.n);
            }
            expired += got.expired;
            if got.newly_failed {
                failed_jobs.push(job.spec.id.clone());
            }
            out.extend(got.claimed.into_iter().map(|task| Claimed {
                job: job.clone(),
                task,
            }));
        }
        for (read, drop) in pages.iter().zip(&drops) {
            let empty = read.rec.as_ref().is_none_or(|r| r.value.entries.is_empty());
            if !drop.is_empty() || empty {
                index::drop_entries(ctx, queue, read, drop).await?;
            }
        }
    }
    for job in failed_jobs {
        crate::core::lifecycle::fail_job(ctx, &job).await?;
    }
    // One counter write per claim request, however many tasks it moved (see `core::counters`).
    let tally = crate::core::counters::Tally {
        claims: out.len() as u64,
        expiries: expired,
        ..Default::default()
    };
    crate::core::counters::record(ctx, &claimer.node, tally).await;
    Ok(out)
}

/// The id of a claimed task.
pub fn claimed_id(c: &Claimed) -> String {
    task_id(&c.job.spec.id, c.task.index)
}

#[cfg(test)]
#[path = "claim_tests.rs"]
mod tests;
