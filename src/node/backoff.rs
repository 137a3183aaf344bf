//! Exponential backoff with jitter, for polls and acks while the server is unreachable.
//! Jitter keeps a farm of nodes from hammering a server in lockstep when it comes back.

use std::time::Duration;

/// Doubling delay from `base` up to `cap`; each delay is drawn from [d/2, d].
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The delay before the next try after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(random_below(jitter_ms.saturating_add(1)))
    }

    /// A success: the next failure starts again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// True while the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

fn random_below(n: u64) -> u64 {
    // Falls back to no jitter if the OS has no randomness to give; the delay is still bounded.
    getrandom::u64().map(|r| r % n.max(1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_within_bounds_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert!(
            d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100),
            "{d:?}"
        );
        assert!(
            d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_secs(1),
            "{d:?}"
        );
        b.reset();
        assert!(!b.failing());
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
