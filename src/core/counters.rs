//! Farm-wide event counters (claims, acks, failures, lease expiries) for `GET /v1/metrics`.
//!
//! Design decision: the counters live in [`SHARDS`] small records in the store, and an event
//! adds to the shard its node hashes to with one read and one conditional write. A claim or ack
//! request makes at most one such write whatever number of tasks it moved, so its cost stays
//! O(1); nodes are spread over the shards, so two nodes rarely race on one record, and a lost
//! race retries on the next shard instead of waiting. Reading the metrics sums the shards.
//!
//! Rejected alternatives:
//! - One counter record: every claim of every node would CAS the same key, the write hot spot
//!   the claim index was designed to avoid.
//! - Counters in the native shell's memory: cheap, but the core would have to report events to
//!   its shell through a new channel, and on Cloudflare or Spin there is no process that lives
//!   long enough to hold them (each isolate would count its own share and forget it).
//!
//! Counting is best effort: a store failure while counting is logged and swallowed, because the
//! event it counts (a lease granted, a result stored) has already happened and must be answered.
//! Prometheus treats the values as counters, so a reset (store wiped) is handled by `rate()`.

use super::records::{load, save, Rec};
use super::Ctx;
use crate::store::{keys, Store};
use serde::{Deserialize, Serialize};

/// Number of counter records.
pub const SHARDS: u32 = 8;

/// Event counts, as stored in each shard and as summed for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Leases granted by claims.
    #[serde(default)]
    pub claims: u64,
    /// Acks that completed a task.
    #[serde(default)]
    pub acks: u64,
    /// Acks that reported a failed attempt.
    #[serde(default)]
    pub failures: u64,
    /// Leases that lapsed and were settled by a claim.
    #[serde(default)]
    pub expiries: u64,
}

impl Tally {
    fn is_zero(&self) -> bool {
        *self == Tally::default()
    }

    fn add(&mut self, o: &Tally) {
        self.claims += o.claims;
        self.acks += o.acks;
        self.failures += o.failures;
        self.expiries += o.expiries;
    }
}

/// The shard a node's events go to (FNV-1a of its id: stable, no randomness consumed).
fn shard_of(node: &str) -> u32 {
    let h = node.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    h % SHARDS
}

/// Adds `tally` to the counters on behalf of `node`. Never fails the request (see the module
/// doc); a tally of zero writes nothing, so idle polls stay read-only.
pub async fn record<S: Store>(ctx: &Ctx<'_, S>, node: &str, tally: Tally) {
    if tally.is_zero() {
        return;
    }
    let first = shard_of(node);
    for i in 0..SHARDS {
        let key = keys::counter_shard((first + i) % SHARDS);
        match add_once(ctx, &key, &tally).await {
            Ok(true) => return,
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, key, "could not count an event");
                return;
            }
        }
    }
    tracing::warn!("every counter shard was contended; an event went uncounted");
}

async fn add_once<S: Store>(ctx: &Ctx<'_, S>, key: &str, tally: &Tally) -> super::Result<bool> {
    let rec: Option<Rec<Tally>> = load(ctx.store, key).await?;
    let mut value = rec.as_ref().map(|r| r.value).unwrap_or_default();
    value.add(tally);
    let cond = super::records::cond_for(&rec);
    Ok(save(ctx.store, key, &value, cond).await?.is_some())
}

/// The sum of every shard.
pub async fn total<S: Store>(store: &S) -> super::Result<Tally> {
    let mut sum = Tally::default();
    for shard in 0..SHARDS {
        if let Some(rec) = load::<Tally, _>(store, &keys::counter_shard(shard)).await? {
            sum.add(&rec.value);
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Config, SeqIds};
    use crate::store::conformance::block_on;
    use crate::store::Memory;

    #[test]
    fn events_of_many_nodes_add_up_across_shards() {
        let (store, config, ids) = (Memory::new(), Config::new("s3cretvalue"), SeqIds::default());
        let ctx = Ctx {
            store: &store,
            config: &config,
            now_ms: 1,
            ids: &ids,
            notes: Default::default(),
        };
        for n in 0..40 {
            let one = Tally {
                claims: 2,
                acks: 1,
                ..Tally::default()
            };
            block_on(record(&ctx, &format!("node-{n}"), one));
        }
        block_on(record(&ctx, "idle", Tally::default()));
        let sum = block_on(total(&store)).ok();
        assert_eq!(sum.map(|s| (s.claims, s.acks)), Some((80, 40)));
        let used = (0..SHARDS)
            .filter(|s| store.snapshot().contains_key(&keys::counter_shard(*s)))
            .count();
        assert!(used > 1, "the events of 40 nodes should spread over shards");
    }
}
