//! Which enrolled nodes can reach a job: whether a node is online, why a job waits, and when a
//! task has run out of nodes to try.
//!
//! Design decision: computed when read, from the node records (at most [`NODES_READ`] of them),
//! never kept up to date by a background job or on every poll. A node is online while it is
//! heard from (polls and heartbeats move `last_seen_ms`) within [`offline_after_ms`] plus the
//! long-poll time it asked for, and until it says it leaves; the core cannot notice silence
//! by itself (no clock, no timers), so "offline" is derived from `ctx.now_ms` at each read.
//! Rejected alternative: a reaper marking nodes offline, which the core cannot run and the
//! Workers and Spin shells have no process for.
//!
//! A node reaches a job when it has the job's type and every one of its tags, and has polled
//! the job's queue (nodes record the queues they poll: a node that never polled reaches none).

use super::api::nodes::SEEN_EVERY_MS;
use super::error::Result;
use super::model::{JobSpec, JobType, NodeRecord, NodeState, Task};
use super::records::load;
use super::{Config, Ctx};
use crate::store::{keys, Store};
use crate::wire::nodes::ShownState;
use serde::Deserialize;

/// Most node records one request reads to answer these questions.
pub const NODES_READ: usize = 256;

/// The node list record, as `api::nodes` writes it.
#[derive(Debug, Default, Deserialize)]
struct NodeList {
    ids: Vec<String>,
}

/// The enrolled nodes, as one request read them.
#[derive(Debug, Clone, Default)]
pub struct Nodes {
    /// The records read.
    pub nodes: Vec<NodeRecord>,
    /// Whether every enrolled node was read (false past [`NODES_READ`]): answers that need
    /// every node ("none can", "all failed it") are then not given.
    pub complete: bool,
}

/// Reads the enrolled nodes (bounded).
pub async fn load_nodes<S: Store>(ctx: &Ctx<'_, S>) -> Result<Nodes> {
    let ids = load::<NodeList, _>(ctx.store, &keys::node_list())
        .await?
        .map(|r| r.value.ids)
        .unwrap_or_default();
    let mut out = Nodes {
        nodes: Vec::new(),
        complete: ids.len() <= NODES_READ,
    };
    for id in ids.iter().take(NODES_READ) {
        if let Some(n) = load::<NodeRecord, _>(ctx.store, &keys::node(id)).await? {
            out.nodes.push(n.value);
        }
    }
    Ok(out)
}

/// Silence after which a node counts as offline: three poll intervals, or two heartbeat
/// intervals for a node whose slots are all busy (it only heartbeats then), plus the time a
/// seen-time may lag behind (`SEEN_EVERY_MS`: it is written at most that often).
pub fn offline_after_ms(config: &Config) -> u64 {
    (3 * config.poll_ms).max(2 * config.heartbeat_ms) + SEEN_EVERY_MS
}

/// Whether `n` is online at `now_ms`: heard from recently, and it has not said it left.
pub fn is_online(n: &NodeRecord, config: &Config, now_ms: u64) -> bool {
    n.left_ms.is_none()
        && now_ms
            < n.last_seen_ms
                .saturating_add(n.poll_wait_ms)
                .saturating_add(offline_after_ms(config))
}

/// The state a node is shown in: `offline`, else `awake` or `draining`.
pub fn shown_state(n: &NodeRecord, config: &Config, now_ms: u64) -> ShownState {
    match (is_online(n, config, now_ms), n.state) {
        (false, _) => ShownState::Offline,
        (true, NodeState::Awake) => ShownState::Awake,
        (true, NodeState::Draining) => ShownState::Draining,
    }
}

/// Whether `n` can run the tasks of `spec`: its type, every tag, and a node of its queue.
pub fn serves(n: &NodeRecord, spec: &JobSpec) -> bool {
    n.types.contains(&spec.kind)
        && spec.tags.iter().all(|t| n.tags.contains(t))
        && n.queues.contains(&spec.queue)
}

/// "type blender and tag gpu on queue q2": what a node needs to take the job.
fn needs(spec: &JobSpec) -> String {
    let tags = match spec.tags.len() {
        0 => String::new(),
        1 => format!(" and tag {}", spec.tags[0]),
        _ => format!(" and tags {}", spec.tags.join(", ")),
    };
    format!("type {}{tags} on queue {}", spec.kind.as_str(), spec.queue)
}

fn names(nodes: &[&NodeRecord]) -> String {
    let mut v: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    v.sort_unstable();
    v.join(", ")
}

/// Why a job with queued tasks waits, when no online node could take them: no node with its
/// type, tags and queue, only offline ones, or only draining ones. `None` when some online,
/// awake node could (it may simply be busy), or when not every node was read.
pub fn waiting(spec: &JobSpec, nodes: &Nodes, config: &Config, now_ms: u64) -> Option<String> {
    if !nodes.complete || spec.kind == JobType::Nexrender {
        // nexrender jobs are taken by nexrender workers, which do not enrol.
        return None;
    }
    let able: Vec<&NodeRecord> = nodes.nodes.iter().filter(|n| serves(n, spec)).collect();
    if able.is_empty() {
        return Some(format!("no node with {}", needs(spec)));
    }
    let online: Vec<&NodeRecord> = able
        .iter()
        .copied()
        .filter(|n| is_online(n, config, now_ms))
        .collect();
    if online.is_empty() {
        return Some(format!(
            "no node with {} is online ({} offline)",
            needs(spec),
            names(&able)
        ));
    }
    if online.iter().all(|n| n.state == NodeState::Draining) {
        return Some(format!(
            "every node with {} is draining ({})",
            needs(spec),
            names(&online)
        ));
    }
    None
}

/// When every enrolled node that can run `task` (at least one) has failed it, the names of
/// those nodes: nobody is left to try it, so it must fail rather than wait for ever. A node
/// that is offline but has not failed it still counts as one to try. `None` otherwise, and
/// when not every node was read. The task is then failed with `transition::Event::DeadEnd`.
pub fn dead_end(spec: &JobSpec, task: &Task, nodes: &Nodes) -> Option<String> {
    if !nodes.complete || spec.kind == JobType::Nexrender {
        return None;
    }
    let able: Vec<&NodeRecord> = nodes.nodes.iter().filter(|n| serves(n, spec)).collect();
    let all_failed = !able.is_empty() && able.iter().all(|n| task.failed_nodes.contains(&n.id));
    all_failed.then(|| names(&able))
}
