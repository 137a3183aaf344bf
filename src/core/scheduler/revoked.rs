//! Nodes removed by `DELETE /v1/nodes/{id}`, and nodes that left (`POST /v1/nodes/{id}/leave`),
//! so that claims hand their leases to other nodes at once instead of waiting for them to lapse.
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

/// One removed node, or one that left (`POST /v1/nodes/{id}/leave`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedNode {
    /// Node id (uuid v7: never reused).
    pub id: String,
    /// When it was removed, or left.
    pub at_ms: u64,
    /// It left rather than being removed: only the leases it was granted before it left are
    /// given back (a node that starts again under the same id claims anew, and keeps those).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left: bool,
}

/// The record: nodes removed within the last `lease_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Revoked {
    /// The nodes.
    pub nodes: Vec<RevokedNode>,
}

/// The nodes removed (or gone) recently enough to still hold leases.
pub async fn revoked_nodes<S: Store>(ctx: &Ctx<'_, S>) -> Result<Vec<RevokedNode>> {
    let rec: Option<Rec<Revoked>> = load(ctx.store, &keys::revoked_nodes()).await?;
    Ok(rec.map(|r| r.value.nodes).unwrap_or_default())
}

/// Adds removed node `id` to the set, dropping entries whose leases have all lapsed by now.
pub async fn revoke<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<()> {
    add(ctx, id, false).await
}

/// Adds node `id`, which just left, to the set: a lease it was granted before (one in a poll
/// answer it never read while draining, or one of a program it stopped) goes to another node at
/// the next claim instead of waiting out `lease_ms`.
pub async fn left<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<()> {
    add(ctx, id, true).await
}

async fn add<S: Store>(ctx: &Ctx<'_, S>, id: &str, left: bool) -> Result<()> {
    let key = keys::revoked_nodes();
    let what = "the set of removed nodes";
    cas::update(ctx.store, &key, what, async |rec: Option<Rec<Revoked>>| {
        let mut set = rec.map(|r| r.value).unwrap_or_default();
        set.nodes
            .retain(|n| n.id != id && n.at_ms + ctx.config.lease_ms > ctx.now_ms);
        set.nodes.push(RevokedNode {
            id: id.to_string(),
            at_ms: ctx.now_ms,
            left,
        });
        Ok(Step::Write(set, ()))
    })
    .await
}

/// Whether `task` is leased to one of the `revoked` nodes (for a node that left: by a lease
/// granted before it left).
pub fn held_by_revoked(task: &Task, revoked: &[RevokedNode]) -> bool {
    let Some(lease) = task
        .lease
        .as_ref()
        .filter(|_| task.state == TaskState::Leased)
    else {
        return false;
    };
    let granted = task
        .history
        .iter()
        .rev()
        .find(|a| a.attempt == lease.attempt)
        .map(|a| a.started_ms);
    revoked
        .iter()
        .any(|n| n.id == lease.node && (!n.left || granted.is_some_and(|g| g < n.at_ms)))
}
