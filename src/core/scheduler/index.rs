//! The claim index: for each queue, which job segments may hold claimable tasks, ordered by
//! priority (higher first) and then age (older first), kept in pages so a claim reads O(1)
//! records whatever the number of jobs.
//!
//! Layout (keys in `store::keys`): a queue has partitions, one per (task type, tag set), listed
//! in `q/{queue}/dir`; a node reads only the partitions it can serve, so a claim never walks
//! past work it may not take. Each partition has priority buckets (`q/{queue}/part/{part}`),
//! and each bucket is a FIFO of pages of entries (`.../page/{part}/{priority}/{n}`), live from
//! `head` to `tail`.
//!
//! The index is a hint, the segments are the truth. An entry may be stale (the job was paused,
//! canceled, re-prioritised, or its segment is finished); a claim that meets one checks the
//! segment and drops the entry. What must never happen is a claimable segment without an entry:
//! entries are written *before* the job record that makes them valid, and they are only dropped
//! when the segment has nothing queued or leased (leased tasks stay indexed, since their lease
//! may expire). Pause/cancel drop entries lazily; resume, requeue and PATCH append new ones.
//!
//! Pages are never reopened: an emptied page is *sealed* (so no append can land in it after a
//! claim decided it was empty) and only then is the bucket's head moved past it. An append that
//! finds a sealed or full tail page moves the tail on first. Rejected alternative: deleting
//! empty pages, which races with an append into the page being deleted.

use crate::core::cas::{self, Step, CAS_RETRIES};
use crate::core::error::Result;
use crate::core::model::{JobSpec, JobType};
use crate::core::records::{cond_for, load, save, Rec};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entries per page.
pub const PAGE_ENTRIES: usize = 64;

/// One indexed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Job id.
    pub job: String,
    /// Segment generation.
    pub gen: String,
    /// Segment number.
    pub seg: u32,
    /// When the entry was written (age order, orphan detection).
    pub t: u64,
    /// Nonce, so a drop removes exactly the entry that was judged.
    pub n: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Dir {
    parts: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Bucket {
    head: u64,
    tail: u64,
}

impl Bucket {
    fn is_empty(&self) -> bool {
        self.head > self.tail
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Part {
    buckets: BTreeMap<i64, Bucket>,
}

/// One page of a bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Page {
    /// Entries, oldest first.
    pub entries: Vec<Entry>,
    /// No entry may be added any more.
    pub sealed: bool,
}

/// The partition of a job: its type and tag set.
pub fn part_key(kind: JobType, tags: &[String]) -> String {
    format!("{}~{}", kind.as_str(), tags.join(","))
}

/// Every partition a job is indexed in; an entry in any other partition is stale.
///
/// A `/v1` job has one partition, its type and whole tag set (a node needs ALL of the tags). A
/// nexrender job is matched by tag *intersection* (nexrender's rule), so it is indexed once per
/// tag (`nexrender~{tag}`: a node with that one tag may take it) and once in the any-job
/// partition [`NEXRENDER_ANY`] that untagged pickups read. That name has no `~`, so
/// [`part_matches`] never offers it to a `/v1` node. Rejected alternative: one partition per
/// tag set plus a scan of every partition at each pickup, whose cost grows with the number of
/// tag combinations in use.
pub fn parts_of(spec: &JobSpec) -> Vec<String> {
    match spec.kind {
        JobType::Nexrender => std::iter::once(NEXRENDER_ANY.to_string())
            .chain(
                spec.tags
                    .iter()
                    .map(|t| part_key(spec.kind, std::slice::from_ref(t))),
            )
            .collect(),
        JobType::Blender | JobType::Command | JobType::Ffmpeg => {
            vec![part_key(spec.kind, &spec.tags)]
        }
    }
}

/// The partition holding every nexrender job, whatever its tags.
pub const NEXRENDER_ANY: &str = "nexrender*";

/// Whether a node with these types and tags may take work from partition `part`.
pub fn part_matches(part: &str, types: &[JobType], tags: &[String]) -> bool {
    let Some((kind, part_tags)) = part.split_once('~') else {
        return false;
    };
    types.iter().any(|t| t.as_str() == kind)
        && part_tags
            .split(',')
            .filter(|t| !t.is_empty())
            .all(|t| tags.iter().any(|n| n == t))
}

async fn ensure_part<S: Store>(ctx: &Ctx<'_, S>, queue: &str, part: &str) -> Result<()> {
    let what = format!("queue {queue}");
    cas::update(
        ctx.store,
        &keys::queue_dir(queue),
        &what,
        async |dir: Option<Rec<Dir>>| {
            let mut value = dir.map(|d| d.value).unwrap_or_default();
            if value.parts.iter().any(|p| p == part) {
                return Ok(Step::Stop(()));
            }
            value.parts.push(part.to_string());
            Ok(Step::Write(value, ()))
        },
    )
    .await
}

/// Appends entries for segments of one job to the bucket of `priority` in partition `part`.
pub async fn append<S: Store>(
    ctx: &Ctx<'_, S>,
    queue: &str,
    part: &str,
    priority: i64,
    mut entries: Vec<Entry>,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    ensure_part(ctx, queue, part).await?;
    let part_key = keys::queue_part(queue, part);
    // An attempt may only move the bucket's tail on (its own write): more rounds than one CAS.
    let what = format!("queue {queue}");
    cas::retry(&what, CAS_RETRIES * 4, async || {
        let meta: Option<Rec<Part>> = load(ctx.store, &part_key).await?;
        let mut value = meta.as_ref().map(|m| m.value.clone()).unwrap_or_default();
        let bucket = value.buckets.get(&priority).copied();
        // An absent or empty bucket first gets a live tail page, recorded before any entry.
        let bucket = match bucket {
            Some(b) if !b.is_empty() => b,
            other => {
                let head = other.map_or(0, |b| b.head);
                value.buckets.insert(priority, Bucket { head, tail: head });
                save(ctx.store, &part_key, &value, cond_for(&meta)).await?;
                return Ok(None);
            }
        };
        let page_key = keys::queue_page(queue, part, priority, bucket.tail);
        let page: Option<Rec<Page>> = load(ctx.store, &page_key).await?;
        let mut pv = page.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        if pv.sealed || pv.entries.len() >= PAGE_ENTRIES {
            value.buckets.insert(
                priority,
                Bucket {
                    head: bucket.head,
                    tail: bucket.tail + 1,
                },
            );
            save(ctx.store, &part_key, &value, cond_for(&meta)).await?;
            return Ok(None);
        }
        let room = PAGE_ENTRIES - pv.entries.len();
        let rest = entries.split_off(room.min(entries.len()));
        pv.entries.extend(entries.iter().cloned());
        if save(ctx.store, &page_key, &pv, cond_for(&page))
            .await?
            .is_some()
        {
            entries = rest;
        } else {
            entries.extend(rest);
        }
        Ok(entries.is_empty().then_some(()))
    })
    .await
}

/// A page read during a scan, with where it lives.
#[derive(Debug)]
pub struct PageRead {
    /// Partition.
    pub part: String,
    /// Bucket priority.
    pub priority: i64,
    /// Page number.
    pub page: u64,
    /// The page as read (`None`: absent, an append that stopped halfway).
    pub rec: Option<Rec<Page>>,
}

/// The pages of one bucket still to be read: `lo..=hi`.
struct Cursor {
    part: String,
    priority: i64,
    lo: u64,
    hi: u64,
}

/// Walks the pages of the partitions a node may serve, highest priority first; within one
/// priority, the head pages of all partitions are returned together so the caller can merge
/// them by age. `newest_first` walks each bucket from its tail instead (LIFO pickups), at the
/// same cost per page.
pub struct Scan {
    queue: String,
    cursors: Vec<Cursor>,
    newest_first: bool,
}

impl Scan {
    /// Reads the directory and the bucket tables of the matching partitions.
    pub async fn open<S: Store>(
        ctx: &Ctx<'_, S>,
        queue: &str,
        types: &[JobType],
        tags: &[String],
    ) -> Result<Scan> {
        Scan::open_parts(ctx, queue, &|p| part_matches(p, types, tags), false).await
    }

    /// Reads the directory and the bucket tables of the partitions `wanted` accepts.
    pub async fn open_parts<S: Store>(
        ctx: &Ctx<'_, S>,
        queue: &str,
        wanted: &dyn Fn(&str) -> bool,
        newest_first: bool,
    ) -> Result<Scan> {
        let dir: Option<Rec<Dir>> = load(ctx.store, &keys::queue_dir(queue)).await?;
        let mut cursors = Vec::new();
        for part in dir.map(|d| d.value.parts).unwrap_or_default() {
            if !wanted(&part) {
                continue;
            }
            let meta: Option<Rec<Part>> = load(ctx.store, &keys::queue_part(queue, &part)).await?;
            for (priority, b) in meta.map(|m| m.value.buckets).unwrap_or_default() {
                if !b.is_empty() {
                    cursors.push(Cursor {
                        part: part.clone(),
                        priority,
                        lo: b.head,
                        hi: b.tail,
                    });
                }
            }
        }
        cursors.sort_by_key(|c| std::cmp::Reverse(c.priority));
        Ok(Scan {
            queue: queue.to_string(),
            cursors,
            newest_first,
        })
    }

    /// The next pages to look at: one page from each partition of the highest priority that
    /// still has pages; `None` when every page was read.
    pub async fn next_pages<S: Store>(
        &mut self,
        ctx: &Ctx<'_, S>,
    ) -> Result<Option<Vec<PageRead>>> {
        self.cursors.retain(|c| c.lo <= c.hi);
        let Some(top) = self.cursors.first().map(|c| c.priority) else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for c in self.cursors.iter_mut().filter(|c| c.priority == top) {
            let page = if self.newest_first { c.hi } else { c.lo };
            let rec = load(
                ctx.store,
                &keys::queue_page(&self.queue, &c.part, c.priority, page),
            )
            .await?;
            out.push(PageRead {
                part: c.part.clone(),
                priority: c.priority,
                page,
                rec,
            });
            // `hi` may be 0: empty the range by raising `lo` rather than underflowing `hi`.
            match (self.newest_first, c.hi.checked_sub(1)) {
                (true, Some(h)) => c.hi = h,
                _ => c.lo = page + 1,
            }
        }
        Ok(Some(out))
    }
}

/// Removes the entries with nonces in `drop` from a page; an emptied page is sealed and, when it
/// is its bucket's head, the head moves past it. Best effort: a lost race leaves the entries for
/// the next claim to judge again.
pub async fn drop_entries<S: Store>(
    ctx: &Ctx<'_, S>,
    queue: &str,
    read: &PageRead,
    drop: &[u64],
) -> Result<()> {
    let page_key = keys::queue_page(queue, &read.part, read.priority, read.page);
    let mut page = match &read.rec {
        Some(r) => r.value.clone(),
        None => Page::default(),
    };
    let before = page.entries.len();
    page.entries.retain(|e| !drop.contains(&e.n));
    let empty = page.entries.is_empty();
    if page.entries.len() != before || (empty && !page.sealed) {
        page.sealed |= empty;
        if save(ctx.store, &page_key, &page, cond_for(&read.rec))
            .await?
            .is_none()
        {
            return Ok(());
        }
    }
    if page.sealed && empty {
        advance_head(ctx, queue, &read.part, read.priority, read.page).await?;
    }
    Ok(())
}

/// Moves the bucket's head past `sealed_page`. Best effort: it runs inside a claim that may
/// already hold leases it must answer with; an empty sealed page left at the head is dropped
/// again by the next claim that reads it.
async fn advance_head<S: Store>(
    ctx: &Ctx<'_, S>,
    queue: &str,
    part: &str,
    priority: i64,
    sealed_page: u64,
) -> Result<()> {
    let part_key = keys::queue_part(queue, part);
    let what = format!("queue {queue}");
    let moved = cas::update(
        ctx.store,
        &part_key,
        &what,
        async |meta: Option<Rec<Part>>| {
            let Some(meta) = meta else {
                return Ok(Step::Stop(false));
            };
            let mut value = meta.value;
            match value.buckets.get_mut(&priority) {
                Some(b) if b.head == sealed_page => b.head += 1,
                _ => return Ok(Step::Stop(false)),
            }
            Ok(Step::Write(value, true))
        },
    )
    .await;
    if cas::best_effort(moved, "index head")? == Some(true) {
        // No append can target a page below the head: the sealed page can go.
        ctx.store
            .delete(
                &keys::queue_page(queue, part, priority, sealed_page),
                Cond::Any,
            )
            .await?;
    }
    Ok(())
}
