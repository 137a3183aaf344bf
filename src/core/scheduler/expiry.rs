//! Lease expiry: when a lease has lapsed, whether its lapse counts as a failed attempt, and the
//! grace after a server restart. Expiry is lazy: a claim that meets a lapsed lease settles it
//! (`transition::Event::Expired`; no reaper). The attempt counts as a failure (a task that
//! kills every node it runs on must not loop forever), but the node is not blocklisted — it
//! died, the task may be fine. The lapsed lease is kept on the task until the next grant so
//! that its holder's late ack is still accepted (`lease::revive_lapsed`).

use crate::core::model::{Task, TaskState};
use crate::core::Config;

/// Whether the lease on `task` has lapsed.
pub fn lease_expired(task: &Task, now_ms: u64) -> bool {
    task.state == TaskState::Leased && task.lease.as_ref().is_none_or(|l| l.expires_ms <= now_ms)
}

/// The time leases are judged at: `now_ms`, except within one lease length of the server's
/// start (`Config::started_ms`), when it is 0 so that no lease lapses. A node cannot heartbeat
/// while the server is down, so after a restart every lease gets one whole lease length to be
/// heard from again; a lease granted since the start runs past that grace anyway, so only
/// leases from before the start are affected. Rejected alternative: measuring the downtime from
/// the store's last commit, which the core cannot see on every runtime.
pub fn lease_clock(config: &Config, now_ms: u64) -> u64 {
    let grace_end = config.started_ms.saturating_add(config.lease_ms);
    if config.started_ms > 0 && now_ms < grace_end {
        0
    } else {
        now_ms
    }
}

/// Whether the lease on `task` ran out while the server was not running: it expired before
/// the server's start. Such an expiry is not counted against the task.
pub fn lapsed_while_down(task: &Task, config: &Config) -> bool {
    task.lease
        .as_ref()
        .is_some_and(|l| config.started_ms > 0 && l.expires_ms < config.started_ms)
}
