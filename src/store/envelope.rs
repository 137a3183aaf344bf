//! The byte layout the Cloudflare adapters store: an 8-byte big-endian version, then the value.
//!
//! Durable Object storage and Workers KV keep plain values with no version, but the [`Store`]
//! contract needs one per key for its compare-and-swap, so each adapter stores the version
//! together with the value in one envelope and one write: the two can never disagree. Rejected
//! alternative: the version in a second key (or KV metadata), which doubles the operations and,
//! on KV, can be read torn.
//!
//! Versions come from [`Versions::next`]: above the key's previous version *and* above
//! `now_ms * 1024`, so they keep growing across a delete and re-create. A compare-and-swap
//! holding a version read before a delete therefore never matches the re-created key (the same
//! guarantee the memory store gets from its single counter). They stay below 2^53, so a
//! JavaScript number holds them exactly.
//!
//! Compiled on every target so the layout is unit-tested natively.
//!
//! [`Store`]: super::Store

use std::cell::Cell;

/// Bytes of the version prefix.
pub const HEADER: usize = 8;

/// One stored envelope: `version` then `value`.
pub fn encode(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// The version and value of an envelope, or `None` when it is too short to be one.
pub fn decode(raw: &[u8]) -> Option<(u64, &[u8])> {
    let (head, value) = raw.split_at_checked(HEADER)?;
    let version = u64::from_be_bytes(head.try_into().ok()?);
    (version != 0).then_some((version, value))
}

/// Hands out versions for one adapter instance (see the module docs for the rule).
#[derive(Debug, Default)]
pub struct Versions {
    last: Cell<u64>,
}

impl Versions {
    /// A version for a write at `now_ms` of a key currently at `previous` (`None` if absent).
    pub fn next(&self, previous: Option<u64>, now_ms: u64) -> u64 {
        let floor = now_ms.saturating_mul(1024);
        let v = floor
            .max(self.last.get() + 1)
            .max(previous.unwrap_or(0) + 1);
        self.last.set(v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_input() {
        let e = encode(42, b"{\"a\":1}");
        assert_eq!(decode(&e), Some((42, &b"{\"a\":1}"[..])));
        assert_eq!(decode(&encode(7, b"")), Some((7, &b""[..])));
        assert_eq!(decode(b"short"), None);
        assert_eq!(
            decode(&encode(0, b"x")),
            None,
            "0 is never a present key's version"
        );
    }

    #[test]
    fn versions_grow_across_delete_and_recreate() {
        let v = Versions::default();
        let a = v.next(None, 1_800_000_000_000);
        let b = v.next(Some(a), 1_800_000_000_000);
        assert!(b > a);
        // Deleted, then re-created within the same millisecond: still a new version.
        let c = v.next(None, 1_800_000_000_000);
        assert!(c > b);
        // A fresh instance (Durable Object restarted) later in time is above both.
        let d = Versions::default().next(None, 1_800_000_000_001);
        assert!(d > c);
        assert!(d < 1 << 53);
    }
}
