//! Test support: store wrappers that make the interleavings of a real deployment happen
//! in-process, and deterministically, so the retry paths of the core can be tested at all.
//!
//! - [`Contended`] runs a competing write between a read and its compare-and-swap, at the CAS a
//!   test chooses ("the 1st conditional write on a key starting with `seg/`"): the competing
//!   write goes to the wrapped store directly, so the CAS that follows finds the key at a new
//!   version and loses, exactly as when another request wrote in between. The competitor is
//!   either a plain bump (the same bytes written again: only the version moves) or any code,
//!   typically a whole competing request run through `core::handle()` on the wrapped store.
//! - [`Yielding`] returns `Pending` once before every store call, so requests joined on one
//!   thread interleave at every store call (between a read and its CAS), as requests do on a
//!   Spin host or a KV Worker. Over the plain memory store they never interleave: every call
//!   completes without waiting, so a request runs to its end before the next one starts.
//!
//! Rejected alternative: a store that fails CASes at random. A failure that depends on a seed
//! cannot name the path it tested, and a lost CAS with no competing write behind it is a state
//! no real store produces (the retry would read the same version again).

use super::conformance::block_on;
use super::{Capabilities, Cond, Store, StoreError, Versioned, Write};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What runs between a read and its CAS: given the wrapped store and the key of the CAS.
type Competitor<S> = Box<dyn FnMut(&S, &str)>;

struct Rule<S> {
    prefix: String,
    /// The first matching CAS interfered with (1-based).
    from: usize,
    /// How many matching CASes in a row, from `from`.
    times: usize,
    /// Matching CASes seen so far.
    seen: usize,
    competitor: Competitor<S>,
}

/// A store whose chosen compare-and-swaps first meet a competing write (module docs).
pub struct Contended<S> {
    inner: S,
    rules: RefCell<Vec<Rule<S>>>,
    hits: RefCell<Vec<String>>,
}

impl<S: Store + 'static> Contended<S> {
    /// Wraps `inner`; no CAS is interfered with until a rule is added.
    pub fn new(inner: S) -> Self {
        Contended {
            inner,
            rules: RefCell::new(Vec::new()),
            hits: RefCell::new(Vec::new()),
        }
    }

    /// The wrapped store: what competing requests run on (their writes are not interfered with).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Before the `nth` (1-based) conditional write on a key starting with `prefix`, runs
    /// `competitor` with the wrapped store and that key.
    pub fn before_cas(&self, prefix: &str, nth: usize, competitor: impl FnMut(&S, &str) + 'static) {
        self.add(prefix, nth, 1, Box::new(competitor));
    }

    /// The `nth` conditional write on a key starting with `prefix` loses once: the key is
    /// rewritten with its own bytes first (a competing write that changes nothing but the
    /// version).
    pub fn bump_cas(&self, prefix: &str, nth: usize) {
        self.add(prefix, nth, 1, Box::new(bump));
    }

    /// Every conditional write on a key starting with `prefix` loses (retries run out).
    pub fn bump_every_cas(&self, prefix: &str) {
        self.add(prefix, 1, usize::MAX, Box::new(bump));
    }

    /// Drops every rule: from now on no CAS is interfered with.
    pub fn calm(&self) {
        self.rules.borrow_mut().clear();
    }

    /// The keys of the CASes interfered with so far, in order: a test asserts it hit the path it
    /// meant to.
    pub fn hits(&self) -> Vec<String> {
        self.hits.borrow().clone()
    }

    fn add(&self, prefix: &str, from: usize, times: usize, competitor: Competitor<S>) {
        self.rules.borrow_mut().push(Rule {
            prefix: prefix.to_string(),
            from: from.max(1),
            times,
            seen: 0,
            competitor,
        });
    }

    /// Runs the competitors due before this CAS of `key`.
    fn before(&self, key: &str) {
        let mut rules = self.rules.borrow_mut();
        for rule in rules.iter_mut().filter(|r| key.starts_with(&r.prefix)) {
            rule.seen += 1;
            let due = rule.seen >= rule.from && rule.seen - rule.from < rule.times;
            if due {
                (rule.competitor)(&self.inner, key);
                self.hits.borrow_mut().push(key.to_string());
            }
        }
    }
}

/// The competing write of [`Contended::bump_cas`]: the same bytes again, so only the version
/// moves (nothing when the key is absent).
fn bump<S: Store>(store: &S, key: &str) {
    if let Ok(Some(current)) = block_on(store.get(key)) {
        let _ = block_on(store.put(key, &current.value, Cond::Any));
    }
}

fn is_cas(cond: Cond) -> bool {
    matches!(cond, Cond::Version(_) | Cond::Absent)
}

impl<S: Store + 'static> Store for Contended<S> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        if is_cas(cond) {
            self.before(key);
        }
        self.inner.put(key, value, cond).await
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        if is_cas(cond) {
            self.before(key);
        }
        self.inner.delete(key, cond).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// A store that yields to the executor once before every call (module docs).
#[derive(Debug, Default)]
pub struct Yielding<S> {
    inner: S,
}

impl<S: Store> Yielding<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Yielding { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// `Pending` once (waking itself at once), then ready: lets every other ready future run.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: Store> Store for Yielding<S> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        YieldOnce(false).await;
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        YieldOnce(false).await;
        self.inner.put(key, value, cond).await
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        YieldOnce(false).await;
        self.inner.delete(key, cond).await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Memory;

    #[test]
    fn only_the_chosen_cas_meets_the_competitor() {
        let s = Contended::new(Memory::new());
        s.bump_cas("seg/", 2);
        let Ok(Write::Done(v1)) = block_on(s.put("seg/a", b"1", Cond::Absent)) else {
            panic!("the 1st CAS on seg/ is left alone")
        };
        assert_eq!(
            block_on(s.put("job/a", b"x", Cond::Absent)).ok(),
            Some(Write::Done(v1 + 1))
        );
        assert_eq!(
            block_on(s.put("seg/a", b"2", Cond::Version(v1))).ok(),
            Some(Write::Lost),
            "the 2nd loses to the bump"
        );
        let now = block_on(s.get("seg/a")).ok().flatten();
        assert_eq!(
            now.map(|r| r.value),
            Some(b"1".to_vec()),
            "the bump changed no bytes"
        );
        assert!(matches!(
            block_on(s.put("seg/a", b"3", Cond::Any)),
            Ok(Write::Done(_))
        ));
        assert_eq!(s.hits(), ["seg/a"]);
    }

    #[test]
    fn every_cas_loses_until_calm() {
        let s = Contended::new(Memory::new());
        assert!(matches!(
            block_on(s.put("k", b"1", Cond::Absent)),
            Ok(Write::Done(_))
        ));
        s.bump_every_cas("k");
        for _ in 0..3 {
            let v = block_on(s.get("k")).ok().flatten().map_or(0, |r| r.version);
            assert_eq!(
                block_on(s.put("k", b"2", Cond::Version(v))).ok(),
                Some(Write::Lost)
            );
        }
        s.calm();
        let v = block_on(s.get("k")).ok().flatten().map_or(0, |r| r.version);
        assert!(matches!(
            block_on(s.put("k", b"2", Cond::Version(v))),
            Ok(Write::Done(_))
        ));
    }

    #[test]
    fn joined_requests_interleave_on_a_yielding_store() {
        let s = Yielding::new(Memory::new());
        let order = RefCell::new(Vec::new());
        let op = |name: &'static str| {
            let (s, order) = (&s, &order);
            async move {
                let _ = s.get("x").await;
                order.borrow_mut().push(name);
                let _ = s.get("x").await;
                order.borrow_mut().push(name);
            }
        };
        block_on(async {
            let (a, b) = (std::pin::pin!(op("a")), std::pin::pin!(op("b")));
            Join(Some(a), Some(b)).await
        });
        assert_eq!(*order.borrow(), ["a", "b", "a", "b"]);
    }

    /// Polls two futures in turn until both are done.
    struct Join<A, B>(Option<A>, Option<B>);

    impl<A: Future<Output = ()> + Unpin, B: Future<Output = ()> + Unpin> Future for Join<A, B> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if let Some(a) = self.0.as_mut() {
                if Pin::new(a).poll(cx).is_ready() {
                    self.0 = None;
                }
            }
            if let Some(b) = self.1.as_mut() {
                if Pin::new(b).poll(cx).is_ready() {
                    self.1 = None;
                }
            }
            if self.0.is_none() && self.1.is_none() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }
}
