//! `GET /jobs/pickup[/:tags]`: a claim of one nexrender task from the claim index, so two
//! pickups never get the same job on any runtime (the claim is one CAS of the task's segment).
//!
//! Tags: a nexrender job is indexed in the any-job partition and once per tag
//! (`index::parts_of`), so an untagged pickup reads one partition and a pickup for `a,b` reads
//! the partitions of `a` and `b`, merged by age: the job's tags only have to intersect the
//! selector, and the claim never walks past jobs the selector cannot take.
//!
//! Ordering (per server, like `NEXRENDER_ORDERING`), each at the cost of a `/v1` claim:
//! - `oldest-first`: the index's own order (pages from the head).
//! - `priority`: jobs are indexed in their own queue, bucketed by priority (highest first,
//!   oldest first within one priority) — the index's native order too.
//! - `newest-first`: the same pages walked from the tail.
//! - `random`: a random one of the jobs on the oldest page of each partition read (up to 64
//!   per partition). Rejected alternative: a uniform draw over every queued job, which needs
//!   all of them read at each pickup — the O(jobs) cost the index exists to avoid. The window
//!   still spreads concurrent workers over different jobs, which is what `random` is used for.
//!
//! A job is indexed in the queue of the ordering the server ran with when the job was written;
//! a pickup reads that queue first and then the other, so jobs written before a change of
//! ordering are still picked up.

use super::job::{QUEUE_BY_AGE, QUEUE_BY_PRIORITY};
use super::Ordering;
use crate::core::error::Result;
use crate::core::model::{JobRecord, JobType, Task};
use crate::core::scheduler::claim::{claim_where, Claimer, Order, Selection};
use crate::core::scheduler::index::{part_key, NEXRENDER_ANY};
use crate::core::{Config, Ctx};
use crate::store::Store;

/// Claims one queued job whose tags intersect `selector` (any job without one) for `who`.
pub async fn pickup<S: Store>(
    ctx: &Ctx<'_, S>,
    selector: &[String],
    who: &str,
) -> Result<Option<(JobRecord, Task)>> {
    let settings = &ctx.config.nexrender;
    // The lease a pickup grants is the executor timeout, not the `/v1` node lease.
    let config = Config {
        lease_ms: settings.timeout_ms,
        ..ctx.config.clone()
    };
    let lease_ctx = Ctx {
        store: ctx.store,
        config: &config,
        now_ms: ctx.now_ms,
        ids: ctx.ids,
        notes: Default::default(),
    };
    let wanted: Vec<String> = if selector.is_empty() {
        vec![NEXRENDER_ANY.to_string()]
    } else {
        selector
            .iter()
            .map(|t| part_key(JobType::Nexrender, std::slice::from_ref(t)))
            .collect()
    };
    let parts = |p: &str| wanted.iter().any(|w| w == p);
    let (order, queues) = match settings.ordering {
        Ordering::OldestFirst => (Order::OldestFirst, [QUEUE_BY_AGE, QUEUE_BY_PRIORITY]),
        Ordering::NewestFirst => (Order::NewestFirst, [QUEUE_BY_AGE, QUEUE_BY_PRIORITY]),
        Ordering::Random => (Order::Random, [QUEUE_BY_AGE, QUEUE_BY_PRIORITY]),
        Ordering::Priority => (Order::OldestFirst, [QUEUE_BY_PRIORITY, QUEUE_BY_AGE]),
    };
    let claimer = Claimer {
        node: who.to_string(),
        types: vec![JobType::Nexrender],
        tags: Vec::new(),
    };
    let sel = Selection {
        parts: &parts,
        order,
    };
    for queue in queues {
        let mut got = claim_where(&lease_ctx, queue, &claimer, 1, &sel).await?;
        if let Some(c) = got.pop() {
            return Ok(Some((c.job, c.task)));
        }
    }
    Ok(None)
}
