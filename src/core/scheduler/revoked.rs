//! Nodes removed by `DELETE /v1/nodes/{id}`, so that claims hand their leases to other nodes at
//! once instead of waiting for them to lapse.
//!
//! Design decision: one small record of recently removed nodes, read once per claim, rather than
//! a list of current leases kept on each node record. The per-node list would cost a write of the
//! node record on every claim, ack, release and expiry (and contention between the slots of one
//! node), and could drift from the segments, which are the truth; the set costs one read per
//! claim and a write only when a node is removed. A removed node cannot heartbeat (its token is
//! gone), so its leases end by themselves within `lease_ms`: an entry older than that has done
//! its job and is pruned, which keeps the record small. The claim gives such a lease back with
//! `transition::Event::Revoked` (not a failure: the task did nothing wrong).

use crate::core::cas::{self, Step};
use crate::core::error::Result;
use crate::core::model::{Task, TaskState};
use crate::core::records::{load, Rec};
use crate::core::Ctx;
use crate::store::{keys, Store};
use serde::{Deserialize, Serialize};

/// One removed node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedNode {
    /// Node id (uuid v7: never reused).
    pub id: String,
    /// When it was removed.
    pub at_ms: u64,
}

/// The record: nodes removed within the last `lease_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Revoked {
    /// The nodes.
    pub nodes: Vec<RevokedNode>,
}

/// Ids of the nodes removed recently enough to still hold leases.
pub async fn revoked_ids<S: Store>(ctx: &Ctx<'_, S>) -> Result<Vec<String>> {
    let rec: Option<Rec<Revoked>> = load(ctx.store, &keys::revoked_nodes()).await?;
    Ok(rec
        .map(|r| r.value.nodes.into_iter().map(|n| n.id).collect())
        .unwrap_or_default())
}

/// Adds `id` to the set, dropping entries whose leases have all lapsed by now.
pub async fn revoke<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<()> {
    let key = keys::revoked_nodes();
    let what = "the set of removed nodes";
    cas::update(ctx.store, &key, what, async |rec: Option<Rec<Revoked>>| {
        let mut set = rec.map(|r| r.value).unwrap_or_default();
        set.nodes
            .retain(|n| n.id != id && n.at_ms + ctx.config.lease_ms > ctx.now_ms);
        set.nodes.push(RevokedNode {
            id: id.to_string(),
            at_ms: ctx.now_ms,
        });
        Ok(Step::Write(set, ()))
    })
    .await
}

/// Whether `task` is leased to one of the `revoked` nodes.
pub fn held_by_revoked(task: &Task, revoked: &[String]) -> bool {
    task.state == TaskState::Leased
        && task
            .lease
            .as_ref()
            .is_some_and(|l| revoked.contains(&l.node))
}
