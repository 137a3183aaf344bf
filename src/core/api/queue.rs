//! `/v1/queue/{queue}`: the poll-and-ack protocol of render nodes (after katar's queue route).

use super::tasks::apply_ack;
use crate::core::auth::Caller;
use crate::core::error::{Error, Result};
use crate::core::http::{body_or_default, empty, json};
use crate::core::model::{JobType, NodeState};
use crate::core::scheduler::claim::{claim, claimed_id, Claimer};
use crate::core::validate;
use crate::core::wake::{LongPoll, Wake};
use crate::core::Ctx;
use crate::store::Store;
use crate::wire::queue::{AckAnswer, ClaimedTask, Poll, PollAnswer, QueueSettings};
use bytes::Bytes;
use http::{Response, StatusCode};

/// `GET /v1/queue/{queue}`: what the server wants nodes to do.
pub fn settings<S: Store>(ctx: &Ctx<'_, S>, queue: &str) -> Result<Response<Bytes>> {
    validate::ident("queue", queue)?;
    let c = ctx.config;
    let settings = QueueSettings {
        queue: queue.to_string(),
        interval: c.poll_ms,
        lease_ms: c.lease_ms,
        heartbeat_ms: c.heartbeat_ms,
        max_tasks: c.limits.claim_max,
    };
    Ok(json(StatusCode::OK, &settings))
}

/// The longest long poll (`?wait=`, seconds) a shell holds; a node is not counted offline
/// while a poll of that length may still be held for it.
pub const MAX_WAIT_S: u64 = 30;

/// The long-poll time a poll asks for, in ms (bounded by [`MAX_WAIT_S`]). Lenient like the
/// shells that hold the request: a value that is not a number is no long poll.
fn wait_ms(q: Option<&str>) -> u64 {
    crate::core::http::query(q)
        .get("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_WAIT_S)
        * 1000
}

/// `POST /v1/queue/{queue}`: acks first, then claims up to `max` tasks.
pub async fn poll<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    queue: &str,
    q: Option<&str>,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    validate::ident("queue", queue)?;
    let p: Poll = body_or_default(bytes)?;
    let limits = &ctx.config.limits;
    if p.tasks.len() > limits.acks_per_request {
        return Err(Error::TooLarge(format!(
            "tasks: at most {} acks per request",
            limits.acks_per_request
        )));
    }
    let max = p.max.unwrap_or(1);
    if max > limits.claim_max {
        return Err(Error::field(
            "max",
            format!("max must be from 0 to {}", limits.claim_max),
        ));
    }
    let tags = p
        .tags
        .map(|t| validate::tags("tags", t, limits))
        .transpose()?;
    let slots = p.slots.map(validate::slots).transpose()?;
    // Who claims: the node of a node token, or (an admin credential: the router let no other
    // through) the node named in the body.
    let (node_id, node_state, default_types, default_tags) = match caller {
        Caller::Node(rec) => {
            if p.node.as_ref().is_some_and(|n| *n != rec.value.id) {
                return Err(Error::Forbidden(
                    "a node token can only poll for its own node".into(),
                ));
            }
            (
                rec.value.id.clone(),
                rec.value.state,
                rec.value.types.clone(),
                rec.value.tags.clone(),
            )
        }
        Caller::Admin | Caller::Token(_) => {
            let id = p.node.clone().unwrap_or_else(|| "anonymous".into());
            validate::ident("node", &id)?;
            (
                id,
                NodeState::Awake,
                vec![JobType::Blender, JobType::Command],
                Vec::new(),
            )
        }
    };
    let claimer = Claimer {
        node: node_id.clone(),
        types: p.types.clone().unwrap_or(default_types),
        tags: tags.clone().unwrap_or(default_tags),
    };
    if let Caller::Node(rec) = caller {
        if p.types.as_ref().is_some_and(|t| *t != rec.value.types)
            || tags.as_ref().is_some_and(|t| *t != rec.value.tags)
            || slots.is_some_and(|s| s != rec.value.slots)
        {
            let (types, tags) = (claimer.types.clone(), claimer.tags.clone());
            let slots = slots.unwrap_or(rec.value.slots);
            super::nodes::update_node(ctx, &node_id, |n| {
                n.types.clone_from(&types);
                n.tags.clone_from(&tags);
                n.slots = slots;
            })
            .await?;
        }
    }
    let had_acks = !p.tasks.is_empty();
    let mut acks = Vec::new();
    for ack in p.tasks {
        let id = ack.id.clone();
        acks.push(match apply_ack(ctx, caller, ack).await {
            Ok(_) => AckAnswer {
                id,
                ok: true,
                error: None,
            },
            // Not this ack's fault: the whole poll is answered 500/503 and sent again.
            Err(e @ (Error::Store(_) | Error::Busy(_))) => return Err(e),
            Err(e) => AckAnswer {
                id,
                ok: false,
                error: Some(e.detail()),
            },
        });
    }
    let seen = super::nodes::Seen {
        queue: Some(queue),
        wait_ms: Some(wait_ms(q)),
    };
    let node_state = super::nodes::touch(ctx, caller, seen)
        .await
        .unwrap_or(node_state);
    let claimed = if node_state == NodeState::Draining {
        Vec::new()
    } else {
        claim(ctx, queue, &claimer, max as usize).await?
    };
    if claimed.is_empty() && !had_acks {
        // Nothing done but noting the node as seen: the shell may hold this request and send
        // it again whole (the re-run rule, `core::wake::LongPoll`). Keep it so: an answer that
        // acked or claimed must never be a 204.
        let mut resp = empty(StatusCode::NO_CONTENT);
        resp.extensions_mut().insert(Wake::default());
        resp.extensions_mut().insert(LongPoll {
            wait_ms: wait_ms(q),
        });
        return Ok(resp);
    }
    // Acks can queue failed tasks again; the claimed tasks' leases lapse at their expiry.
    let wake = Wake {
        store_changed: true,
        claimable: had_acks,
        lease_expires_ms: claimed
            .iter()
            .filter_map(|c| c.task.lease.as_ref().map(|l| l.expires_ms))
            .min(),
        // Filled in by `handle()` from what the acks noted.
        webhook_due_ms: None,
    };
    // A claim always grants a lease (`scheduler::claim`); a claimed task is never without one.
    let tasks: Vec<ClaimedTask> = claimed
        .iter()
        .filter_map(|c| {
            let lease = c.task.lease.as_ref()?;
            Some(ClaimedTask {
                id: claimed_id(c),
                job: c.job.spec.id.clone(),
                job_name: c.job.spec.name.clone(),
                kind: c.job.spec.kind,
                queue: c.job.spec.queue.clone(),
                lease: lease.token.clone(),
                attempt: lease.attempt,
                lease_expires_ms: lease.expires_ms,
                lease_ms: ctx.config.lease_ms,
                heartbeat_ms: ctx.config.heartbeat_ms,
                frames: c.task.frames,
                params: c.job.spec.params.clone(),
                task_timeout_s: c.job.spec.task_timeout_s,
                inputs: c.job.spec.inputs.clone(),
            })
        })
        .collect();
    let answer = PollAnswer {
        tasks,
        acks,
        node_state,
        interval: ctx.config.poll_ms,
    };
    let mut resp = json(StatusCode::OK, &answer);
    resp.extensions_mut().insert(wake);
    Ok(resp)
}
