//! `/v1/nodes`: enrolment (a token for each node), listing, drain and resume, leaving,
//! revocation. A node's shown state (`offline` once it is not heard from) is derived when read
//! (see `core::reach`).

use crate::core::auth::{sha256_hex, Caller};
use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::http::{body_or_default, json};
use crate::core::model::{JobType, NodeRecord, NodeState, NODE_QUEUES_KEPT};
use crate::core::reach;
use crate::core::records::{load, save, Rec};
use crate::core::validate;
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use crate::wire::jobs::Deleted;
use crate::wire::nodes::{self as wire, Enrol, Enrolment, Node, ShownState};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// How stale `last_seen_ms` may get before a poll or heartbeat rewrites the node record.
pub const SEEN_EVERY_MS: u64 = 5_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct NodeList {
    ids: Vec<String>,
}

/// A node as the API shows it (no token hash). `state` is `offline` when it is not heard from
/// (`reach::is_online`); `draining` still says whether it was drained.
pub fn view<S: Store>(ctx: &Ctx<'_, S>, n: &NodeRecord) -> Node {
    let state = reach::shown_state(n, ctx.config, ctx.now_ms);
    Node {
        id: n.id.clone(),
        name: n.name.clone(),
        tags: n.tags.clone(),
        types: n.types.clone(),
        slots: n.slots,
        state,
        online: state != ShownState::Offline,
        draining: n.state == NodeState::Draining,
        queues: n.queues.clone(),
        last_seen_ms: n.last_seen_ms,
        left_ms: n.left_ms,
        created_ms: n.created_ms,
    }
}

/// `POST /v1/nodes`: a new node and its token (shown once). With a node-join token, one of its
/// uses is spent first (after the body was found valid, so a refused body spends none).
pub async fn enrol<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let e: Enrol = body_or_default(bytes)?;
    let id = ctx.uuid_v7();
    let name = e.name.unwrap_or_else(|| id.clone());
    if name.is_empty() || name.len() > ctx.config.limits.string_len {
        return Err(Error::field(
            "name",
            format!("name: 1 to {} bytes", ctx.config.limits.string_len),
        ));
    }
    let tags = validate::tags("tags", e.tags.unwrap_or_default(), &ctx.config.limits)?;
    let slots = validate::slots(e.slots.unwrap_or(1))?;
    super::tokens::spend_join_use(ctx, caller).await?;
    let token = format!("efn_{id}_{}", ctx.token());
    let node = NodeRecord {
        id: id.clone(),
        name,
        tags,
        types: e
            .types
            .unwrap_or_else(|| vec![JobType::Blender, JobType::Command]),
        slots,
        state: NodeState::Awake,
        last_seen_ms: ctx.now_ms,
        created_ms: ctx.now_ms,
        token_sha256: sha256_hex(&token),
        queues: Vec::new(),
        poll_wait_ms: 0,
        left_ms: None,
    };
    // The node record is the commit point of the enrolment; the list entry is a hint.
    update_list(ctx, |l| l.ids.push(id.clone())).await?;
    save(ctx.store, &keys::node(&id), &node, Cond::Absent).await?;
    let enrolment = Enrolment {
        node: view(ctx, &node),
        token,
    };
    Ok(json(StatusCode::CREATED, &enrolment))
}

async fn update_list<S: Store>(
    ctx: &Ctx<'_, S>,
    mut change: impl FnMut(&mut NodeList),
) -> Result<()> {
    let key = keys::node_list();
    cas::update(
        ctx.store,
        &key,
        "the node list",
        async |rec: Option<Rec<NodeList>>| {
            let mut list = rec.map(|r| r.value).unwrap_or_default();
            change(&mut list);
            Ok(Step::Write(list, ()))
        },
    )
    .await
}

/// `GET /v1/nodes`.
pub async fn list<S: Store>(ctx: &Ctx<'_, S>) -> Result<Response<Bytes>> {
    let ids = load::<NodeList, _>(ctx.store, &keys::node_list())
        .await?
        .map(|r| r.value.ids)
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for id in ids {
        if let Some(n) = load::<NodeRecord, _>(ctx.store, &keys::node(&id)).await? {
            nodes.push(view(ctx, &n.value));
        }
    }
    Ok(json(StatusCode::OK, &wire::NodeList { nodes }))
}

/// `GET /v1/nodes/{id}` (a node may read itself).
pub async fn get<S: Store>(ctx: &Ctx<'_, S>, caller: &Caller, id: &str) -> Result<Response<Bytes>> {
    if caller.node_id().is_some_and(|n| n != id) {
        return Err(Error::Forbidden("a node may only read itself".into()));
    }
    let n = load_node(ctx, id).await?;
    Ok(json(StatusCode::OK, &view(ctx, &n.value)))
}

async fn load_node<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Rec<NodeRecord>> {
    if !validate::is_ident(id, 64) {
        return Err(Error::NotFound(format!("node {id}")));
    }
    load(ctx.store, &keys::node(id))
        .await?
        .ok_or_else(|| Error::NotFound(format!("node {id}")))
}

/// Read-modify-CAS of a node record.
pub async fn update_node<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    mut change: impl FnMut(&mut NodeRecord),
) -> Result<NodeRecord> {
    if !validate::is_ident(id, 64) {
        return Err(Error::NotFound(format!("node {id}")));
    }
    let what = format!("node {id}");
    cas::update(
        ctx.store,
        &keys::node(id),
        &what,
        async |rec: Option<Rec<NodeRecord>>| {
            let mut n = rec
                .ok_or_else(|| Error::NotFound(format!("node {id}")))?
                .value;
            change(&mut n);
            Ok(Step::Write(n.clone(), n))
        },
    )
    .await
}

/// `POST /v1/nodes/{id}/drain|resume`.
pub async fn action<S: Store>(ctx: &Ctx<'_, S>, id: &str, action: &str) -> Result<Response<Bytes>> {
    let state = match action {
        "drain" => NodeState::Draining,
        "resume" => NodeState::Awake,
        other => {
            return Err(Error::NotFound(format!(
                "action {other:?} (use drain or resume)"
            )))
        }
    };
    let n = update_node(ctx, id, |n| n.state = state).await?;
    Ok(json(StatusCode::OK, &view(ctx, &n)))
}

/// `POST /v1/nodes/{id}/leave`: the node stops (a clean exit), so it is shown offline at once
/// rather than after its silence. The node's own token or the farm secret. Its next poll or
/// heartbeat brings it back online.
pub async fn leave<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
) -> Result<Response<Bytes>> {
    if caller.node_id().is_some_and(|n| n != id) {
        return Err(Error::Forbidden(
            "a node token can only leave for its own node".into(),
        ));
    }
    let n = update_node(ctx, id, |n| n.left_ms = Some(ctx.now_ms)).await?;
    // Whatever it still holds goes to other nodes at the next claim.
    crate::core::scheduler::revoked::left(ctx, id).await?;
    Ok(json(StatusCode::OK, &view(ctx, &n)))
}

/// `DELETE /v1/nodes/{id}`: the token stops working at once, and the next claim that meets one
/// of its leases gives the task to another node (see `scheduler::revoked`).
pub async fn delete<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Response<Bytes>> {
    load_node(ctx, id).await?;
    crate::core::scheduler::revoked::revoke(ctx, id).await?;
    ctx.store.delete(&keys::node(id), Cond::Any).await?;
    update_list(ctx, |l| l.ids.retain(|n| n != id)).await?;
    let deleted = Deleted {
        id: id.to_string(),
        deleted: true,
    };
    Ok(json(StatusCode::OK, &deleted))
}

/// What a request tells about its node besides "seen now".
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    /// The queue it polls (a poll), if any.
    pub queue: Option<&'a str>,
    /// How long its poll may be held (`?wait=`, ms); `None` for a heartbeat.
    pub wait_ms: Option<u64>,
}

/// Notes that a node was seen: its last-seen time (written at most every [`SEEN_EVERY_MS`]),
/// and at once when it comes back after leaving, polls a queue it never polled, or changes its
/// long-poll time. Returns its state.
pub async fn touch<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    seen: Seen<'_>,
) -> Result<NodeState> {
    let Caller::Node(rec) = caller else {
        return Ok(NodeState::Awake);
    };
    let old = &rec.value;
    let new_queue = seen.queue.filter(|q| !old.queues.iter().any(|k| k == q));
    let new_wait = seen.wait_ms.filter(|w| *w != old.poll_wait_ms);
    let due = old.last_seen_ms + SEEN_EVERY_MS <= ctx.now_ms;
    if due || old.left_ms.is_some() || new_queue.is_some() || new_wait.is_some() {
        let mut n = old.clone();
        n.last_seen_ms = ctx.now_ms;
        n.left_ms = None;
        if let Some(q) = new_queue {
            n.queues.push(q.to_string());
            if n.queues.len() > NODE_QUEUES_KEPT {
                n.queues.remove(0);
            }
        }
        if let Some(w) = new_wait {
            n.poll_wait_ms = w;
        }
        // Losing this race only loses a last-seen time another request is writing anyway.
        save(
            ctx.store,
            &keys::node(&n.id),
            &n,
            Cond::Version(rec.version),
        )
        .await?;
    }
    Ok(old.state)
}
