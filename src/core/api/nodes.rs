//! `/v1/nodes`: enrolment (a token for each node), listing, drain and resume, revocation.

use crate::core::auth::{sha256_hex, Caller};
use crate::core::error::{Error, Result};
use crate::core::http::{body_or_default, json};
use crate::core::model::{JobType, NodeRecord, NodeState};
use crate::core::records::{cond_for, load, save, Rec, CAS_RETRIES};
use crate::core::validate;
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How stale `last_seen_ms` may get before a poll or heartbeat rewrites the node record.
pub const SEEN_EVERY_MS: u64 = 5_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct NodeList {
    ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrol {
    name: Option<String>,
    tags: Option<Vec<String>>,
    types: Option<Vec<JobType>>,
    slots: Option<u32>,
}

/// A node as the API shows it (no token hash).
pub fn view(n: &NodeRecord) -> Value {
    json!({"id": n.id, "name": n.name, "tags": n.tags, "types": n.types, "slots": n.slots,
           "state": n.state, "last_seen_ms": n.last_seen_ms, "created_ms": n.created_ms})
}

/// `POST /v1/nodes`: a new node and its token (shown once).
pub async fn enrol<S: Store>(ctx: &Ctx<'_, S>, bytes: &[u8]) -> Result<Response<Bytes>> {
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
    let slots = e.slots.unwrap_or(1);
    if !(1..=256).contains(&slots) {
        return Err(Error::field("slots", "slots must be from 1 to 256"));
    }
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
    };
    // The node record is the commit point of the enrolment; the list entry is a hint.
    update_list(ctx, |l| l.ids.push(id.clone())).await?;
    save(ctx.store, &keys::node(&id), &node, Cond::Absent).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"node": view(&node), "token": token}),
    ))
}

async fn update_list<S: Store>(
    ctx: &Ctx<'_, S>,
    mut change: impl FnMut(&mut NodeList),
) -> Result<()> {
    for _ in 0..CAS_RETRIES {
        let rec: Option<Rec<NodeList>> = load(ctx.store, &keys::node_list()).await?;
        let mut list = rec.as_ref().map(|r| r.value.clone()).unwrap_or_default();
        change(&mut list);
        if save(ctx.store, &keys::node_list(), &list, cond_for(&rec))
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    Err(Error::Conflict("the node list is busy; try again".into()))
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
            nodes.push(view(&n.value));
        }
    }
    Ok(json(StatusCode::OK, &json!({ "nodes": nodes })))
}

/// `GET /v1/nodes/{id}` (a node may read itself).
pub async fn get<S: Store>(ctx: &Ctx<'_, S>, caller: &Caller, id: &str) -> Result<Response<Bytes>> {
    if caller.node_id().is_some_and(|n| n != id) {
        return Err(Error::Forbidden("a node may only read itself".into()));
    }
    let n = load_node(ctx, id).await?;
    Ok(json(StatusCode::OK, &view(&n.value)))
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
    for _ in 0..CAS_RETRIES {
        let rec = load_node(ctx, id).await?;
        let mut n = rec.value;
        change(&mut n);
        if save(ctx.store, &keys::node(id), &n, Cond::Version(rec.version))
            .await?
            .is_some()
        {
            return Ok(n);
        }
    }
    Err(Error::Conflict(format!(
        "node {id} is changing too often; try again"
    )))
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
    Ok(json(StatusCode::OK, &view(&n)))
}

/// `DELETE /v1/nodes/{id}`: the token stops working at once, and the next claim that meets one
/// of its leases gives the task to another node (see `scheduler::revoked`).
pub async fn delete<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Response<Bytes>> {
    load_node(ctx, id).await?;
    crate::core::scheduler::revoked::revoke(ctx, id).await?;
    ctx.store.delete(&keys::node(id), Cond::Any).await?;
    update_list(ctx, |l| l.ids.retain(|n| n != id)).await?;
    Ok(json(StatusCode::OK, &json!({"id": id, "deleted": true})))
}

/// Notes that a node was seen (at most every [`SEEN_EVERY_MS`]); returns its state.
pub async fn touch<S: Store>(ctx: &Ctx<'_, S>, caller: &Caller) -> Result<NodeState> {
    let Caller::Node(rec) = caller else {
        return Ok(NodeState::Awake);
    };
    if rec.value.last_seen_ms + SEEN_EVERY_MS <= ctx.now_ms {
        let mut n = rec.value.clone();
        n.last_seen_ms = ctx.now_ms;
        // Losing this race only loses a last-seen time another request is writing anyway.
        save(
            ctx.store,
            &keys::node(&n.id),
            &n,
            Cond::Version(rec.version),
        )
        .await?;
    }
    Ok(rec.value.state)
}
