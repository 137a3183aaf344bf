//! When held requests run again: long polls when a task may have become claimable, event
//! streams when something was written.
//!
//! The core says, on each answer, what happened ([`crate::core::Wake`]): the core thread gathers
//! a committed batch's signals into [`Wakes::after_batch`]. Long polls are woken only by
//! "claimable" and at the expiry times of the leases granted or extended, never by their own
//! re-runs: an empty long poll is a POST that touches the node's last-seen time, and waking on
//! every write made each re-run wake every long poll again — a busy loop with one idle node.
//! A lease granted before a restart has no timer here; a node's long poll ends within its
//! `wait` (at most [`super::MAX_WAIT_S`]) and its next poll claims the lapsed task.

use super::now_ms;
use crate::core::Wake;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Lease expiries are kept rounded up to this (bounds the set to lease length / this).
const GRANULARITY_MS: u64 = 100;

/// The shell's wake-up signals.
#[derive(Default)]
pub struct Wakes {
    /// A task may be claimable: long polls run again.
    pub claimable: Notify,
    /// Something was written: event streams read their job again.
    pub written: Notify,
    /// Future lease expiries (ms since the epoch, rounded up).
    expiries: Mutex<BTreeSet<u64>>,
    /// An expiry earlier than every other was added.
    earlier: Notify,
    /// The earliest webhook delivery due that a committed answer noted (`webhooks.rs` takes it).
    webhook_due: Mutex<Option<u64>>,
    /// A webhook delivery was noted.
    pub webhook: Notify,
}

impl Wakes {
    /// Called by the core thread once a batch is committed and answered.
    pub fn after_batch(&self, signals: impl IntoIterator<Item = Wake>) {
        let (mut claimable, mut written) = (false, false);
        for w in signals {
            if let Some(at) = w.webhook_due_ms {
                let mut due = self.webhook_due.lock().unwrap_or_else(|e| e.into_inner());
                *due = Some(due.map_or(at, |d| d.min(at)));
                self.webhook.notify_one();
            }
            claimable |= w.claimable;
            written |= w.store_changed;
            if let Some(at) = w.lease_expires_ms {
                let at = at.div_ceil(GRANULARITY_MS).saturating_mul(GRANULARITY_MS);
                let mut set = self.expiries.lock().unwrap_or_else(|e| e.into_inner());
                let first = set.first().is_none_or(|f| at < *f);
                if set.insert(at) && first {
                    self.earlier.notify_one();
                }
            }
        }
        if claimable {
            self.claimable.notify_waiters();
        }
        if written {
            self.written.notify_waiters();
        }
    }

    /// Takes the earliest webhook delivery time noted since the last take.
    pub fn take_webhook_due(&self) -> Option<u64> {
        self.webhook_due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Wakes the long polls at each lease expiry, for ever.
    pub async fn expiry_timer(self: Arc<Self>) {
        loop {
            // Registered before reading the set: an expiry added in between is not missed
            // (`notify_one` keeps a permit for it).
            let earlier = self.earlier.notified();
            let next = self
                .expiries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first()
                .copied();
            let Some(at) = next else {
                earlier.await;
                continue;
            };
            let now = now_ms();
            if at > now {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                    _ = earlier => {}
                }
                continue;
            }
            self.expiries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|t| *t > now);
            self.claimable.notify_waiters();
        }
    }
}

/// Long polls and event streams held per client, capped (`--max-waits-per-client`).
pub struct Holds {
    max: usize,
    held: Mutex<std::collections::HashMap<u64, usize>>,
}

/// One held request; released when dropped.
pub struct Hold {
    holds: Arc<Holds>,
    key: u64,
}

impl Holds {
    /// At most `max` per client.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Holds {
            max: max.max(1),
            held: Mutex::default(),
        })
    }

    /// A hold for the client `key`, unless it already has the most allowed.
    pub fn try_hold(self: &Arc<Self>, key: u64) -> Option<Hold> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Hold {
            holds: self.clone(),
            key,
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = self.holds.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Who holds a request, for [`Holds`]: the credential it presents and the address it comes
/// from (a node token is one node; the farm secret is shared, so the address tells its users
/// apart). Hashed with a per-process key: the map never keeps a credential.
pub fn client_key(headers: &http::HeaderMap, client: std::net::IpAddr) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = STATE.get_or_init(Default::default).build_hasher();
    headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .hash(&mut h);
    client.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_capped_per_client_and_released_on_drop() {
        let holds = Holds::new(2);
        let a = holds.try_hold(1);
        let b = holds.try_hold(1);
        assert!(a.is_some() && b.is_some());
        assert!(holds.try_hold(1).is_none(), "a third is refused");
        assert!(
            holds.try_hold(2).is_some(),
            "another client has its own count"
        );
        drop(a);
        assert!(holds.try_hold(1).is_some(), "a released hold frees a place");
    }
}
