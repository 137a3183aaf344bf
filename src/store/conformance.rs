//! The store suite: one set of rules every adapter must pass, each case its own `#[test]` per
//! native adapter through [`store_suite!`](crate::store_suite), and one request per case for
//! the Cloudflare adapters (the Worker's `/_store_suite/` route, feature `store-suite`, run by
//! scripts/cloudflare-conformance under `wrangler dev`).
//!
//! Cases return `Err(what broke)` rather than panicking: on wasm a panic aborts the isolate, so
//! the Worker could not report which rule failed.
//!
//! Adapters without an atomic compare-and-swap (`atomic_cas = false`, Workers KV) still check
//! every condition, only not atomically: a read, a comparison and a blind write. So each case
//! asserts, for them, the weaker promise that follows: with no other writer in between, a
//! condition decides as it would on an atomic store, once the adapter's reads see the write
//! the condition is about (an eventually consistent store may take a while; the case waits for
//! a read to show it). What is never asserted for them is the atomic promise itself (of two
//! writers holding the same version, one loses): the HTTP suite's concurrent cases skip by name.

use super::{Cond, Consistency, Store, Write};

/// A case's verdict: `Err` names the rule that broke.
pub type Verdict = Result<(), String>;

/// Fails the case with a message unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs a future whose store calls complete without waiting (memory, SQLite).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Reads of an eventually consistent store tried before a case gives up waiting for a write.
const VISIBILITY_READS: usize = 200;

/// The value at `key`, once the adapter's reads show `want` (at once on a strongly consistent
/// store; an eventually consistent one gets [`VISIBILITY_READS`] reads).
async fn visible<S: Store>(s: &S, key: &str, want: &[u8]) -> Verdict {
    let tries = match s.capabilities().consistency {
        Consistency::Strong => 1,
        Consistency::Eventual => VISIBILITY_READS,
    };
    let mut last = None;
    for _ in 0..tries {
        last = s.get(key).await.ok().flatten().map(|r| r.value);
        if last.as_deref() == Some(want) {
            return Ok(());
        }
    }
    Err(format!(
        "{key}: a read shows {:?}, not the write {:?}",
        last.map(|v| String::from_utf8_lossy(&v).to_string()),
        String::from_utf8_lossy(want)
    ))
}

/// The bytes at `key`, for comparisons.
async fn value<S: Store>(s: &S, key: &str) -> Option<Vec<u8>> {
    s.get(key).await.ok().flatten().map(|r| r.value)
}

/// Absent keys read as `None`; a create makes them present with a non-zero version.
pub async fn create_then_read<S: Store>(s: &S) -> Verdict {
    check!(
        s.get("a").await.ok().flatten().is_none(),
        "an absent key reads as None"
    );
    let Ok(Write::Done(v)) = s.put("a", b"one", Cond::Absent).await else {
        return Err("create of an absent key should apply".into());
    };
    check!(v > 0, "versions are never 0 for a present key");
    visible(s, "a", b"one").await?;
    let got = s
        .get("a")
        .await
        .ok()
        .flatten()
        .map(|r| (r.value, r.version));
    check!(
        got == Some((b"one".to_vec(), v)),
        "a read returns what was written and its version: {got:?}, wrote version {v}"
    );
    Ok(())
}

/// A second create of the same key loses and leaves the first value (without atomic CAS: once
/// the first create is visible to the adapter's reads).
pub async fn create_twice_loses<S: Store>(s: &S) -> Verdict {
    check!(
        matches!(s.put("k", b"first", Cond::Absent).await, Ok(Write::Done(_))),
        "the first create applies"
    );
    visible(s, "k", b"first").await?;
    let second = s.put("k", b"second", Cond::Absent).await.ok();
    check!(
        second == Some(Write::Lost),
        "create over a present key loses, got {second:?}"
    );
    check!(
        value(s, "k").await == Some(b"first".to_vec()),
        "a lost create writes nothing"
    );
    Ok(())
}

/// Compare-and-swap applies with the current version and loses with a stale one (without atomic
/// CAS: once the newer write is visible to the adapter's reads).
pub async fn cas_needs_current_version<S: Store>(s: &S) -> Verdict {
    let Ok(Write::Done(v1)) = s.put("c", b"1", Cond::Absent).await else {
        return Err("create failed".into());
    };
    visible(s, "c", b"1").await?;
    let Ok(Write::Done(v2)) = s.put("c", b"2", Cond::Version(v1)).await else {
        return Err("CAS at the current version should apply".into());
    };
    check!(v2 > v1, "a write raises the version ({v1} then {v2})");
    visible(s, "c", b"2").await?;
    let stale = s.put("c", b"3", Cond::Version(v1)).await.ok();
    check!(
        stale == Some(Write::Lost),
        "a stale version loses, got {stale:?}"
    );
    check!(
        value(s, "c").await == Some(b"2".to_vec()),
        "a lost CAS writes nothing"
    );
    let absent = s.put("nope", b"x", Cond::Version(v2)).await.ok();
    check!(
        absent == Some(Write::Lost),
        "CAS on an absent key loses, got {absent:?}"
    );
    Ok(())
}

/// `Cond::Any` overwrites whatever is there.
pub async fn any_overwrites<S: Store>(s: &S) -> Verdict {
    check!(
        matches!(s.put("o", b"1", Cond::Any).await, Ok(Write::Done(_))),
        "a blind write to an absent key applies"
    );
    check!(
        matches!(s.put("o", b"2", Cond::Any).await, Ok(Write::Done(_))),
        "a blind write over a present key applies"
    );
    visible(s, "o", b"2").await
}

/// Conditional delete: a stale version keeps the key, the current one removes it.
pub async fn delete_is_conditional<S: Store>(s: &S) -> Verdict {
    let Ok(Write::Done(v1)) = s.put("d", b"1", Cond::Absent).await else {
        return Err("create failed".into());
    };
    visible(s, "d", b"1").await?;
    let Ok(Write::Done(v2)) = s.put("d", b"2", Cond::Any).await else {
        return Err("overwrite failed".into());
    };
    visible(s, "d", b"2").await?;
    let stale = s.delete("d", Cond::Version(v1)).await.ok();
    check!(
        stale == Some(Write::Lost),
        "a stale delete loses, got {stale:?}"
    );
    check!(value(s, "d").await.is_some(), "a lost delete keeps the key");
    check!(
        matches!(s.delete("d", Cond::Version(v2)).await, Ok(Write::Done(_))),
        "a delete at the current version applies"
    );
    gone(s, "d").await
}

/// A key deleted and created again never gets back a version a stale writer might hold.
pub async fn versions_not_reused_after_delete<S: Store>(s: &S) -> Verdict {
    let Ok(Write::Done(v1)) = s.put("r", b"1", Cond::Absent).await else {
        return Err("create failed".into());
    };
    check!(
        matches!(s.delete("r", Cond::Any).await, Ok(Write::Done(_))),
        "a blind delete applies"
    );
    gone(s, "r").await?;
    let Ok(Write::Done(v2)) = s.put("r", b"2", Cond::Absent).await else {
        return Err("re-create failed".into());
    };
    check!(
        v1 != v2,
        "a re-created key has a new version ({v1} both times)"
    );
    visible(s, "r", b"2").await?;
    let stale = s.put("r", b"stale", Cond::Version(v1)).await.ok();
    check!(
        stale == Some(Write::Lost),
        "a version from before the delete loses, got {stale:?}"
    );
    Ok(())
}

/// Keys are independent and arbitrary UTF-8 with separators.
pub async fn keys_are_independent<S: Store>(s: &S) -> Verdict {
    for (k, v) in [("job/a", "A"), ("job/a/b", "B"), ("jöb/ü", "U")] {
        check!(
            matches!(
                s.put(k, v.as_bytes(), Cond::Absent).await,
                Ok(Write::Done(_))
            ),
            "create {k}"
        );
    }
    for (k, v) in [("job/a", "A"), ("job/a/b", "B"), ("jöb/ü", "U")] {
        visible(s, k, v.as_bytes()).await?;
    }
    check!(
        s.get("job").await.ok().flatten().is_none(),
        "a prefix of a key is another (absent) key"
    );
    Ok(())
}

/// `key` reads as absent (an eventually consistent store gets [`VISIBILITY_READS`] reads).
async fn gone<S: Store>(s: &S, key: &str) -> Verdict {
    let tries = match s.capabilities().consistency {
        Consistency::Strong => 1,
        Consistency::Eventual => VISIBILITY_READS,
    };
    for _ in 0..tries {
        if s.get(key).await.ok().flatten().is_none() {
            return Ok(());
        }
    }
    Err(format!("{key}: still present after its delete"))
}

/// The names of the cases, in order (the Worker's route lists and runs them by name).
pub const CASES: &[&str] = &[
    "create_then_read",
    "create_twice_loses",
    "cas_needs_current_version",
    "any_overwrites",
    "delete_is_conditional",
    "versions_not_reused_after_delete",
    "keys_are_independent",
];

/// Runs the case named `name`; `None` when there is no such case.
pub async fn run_case<S: Store>(s: &S, name: &str) -> Option<Verdict> {
    Some(match name {
        "create_then_read" => create_then_read(s).await,
        "create_twice_loses" => create_twice_loses(s).await,
        "cas_needs_current_version" => cas_needs_current_version(s).await,
        "any_overwrites" => any_overwrites(s).await,
        "delete_is_conditional" => delete_is_conditional(s).await,
        "versions_not_reused_after_delete" => versions_not_reused_after_delete(s).await,
        "keys_are_independent" => keys_are_independent(s).await,
        _ => return None,
    })
}

/// A store whose keys all live under `prefix`: each run of the suite over a store that outlives
/// it (a Durable Object, a KV namespace) starts from empty keys.
pub struct Prefixed<S> {
    inner: S,
    prefix: String,
}

impl<S: Store> Prefixed<S> {
    /// `inner`, with every key put under `prefix`.
    pub fn new(inner: S, prefix: impl Into<String>) -> Self {
        Prefixed {
            inner,
            prefix: prefix.into(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl<S: Store> Store for Prefixed<S> {
    async fn get(&self, key: &str) -> Result<Option<super::Versioned>, super::StoreError> {
        self.inner.get(&self.key(key)).await
    }
    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, super::StoreError> {
        self.inner.put(&self.key(key), value, cond).await
    }
    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, super::StoreError> {
        self.inner.delete(&self.key(key), cond).await
    }
    fn capabilities(&self) -> super::Capabilities {
        self.inner.capabilities()
    }
}

/// Declares every case of the store suite as a `#[test]` for one adapter:
/// `store_suite!(memory, Memory::new());`
#[macro_export]
macro_rules! store_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::store::conformance as suite;
            $crate::store_suite!(@case $make; create_then_read, create_twice_loses, cas_needs_current_version,
                any_overwrites, delete_is_conditional, versions_not_reused_after_delete, keys_are_independent);
        }
    };
    (@case $make:expr; $($case:ident),*) => {
        $( #[test] fn $case() {
            let store = $make;
            if let Err(broke) = suite::block_on(suite::$case(&store)) {
                panic!("{}", broke);
            }
        } )*
    };
}
