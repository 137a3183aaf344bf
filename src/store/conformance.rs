//! The store suite: one set of rules every adapter must pass, each case its own `#[test]` per
//! adapter through [`store_suite!`](crate::store_suite). Adapters that cannot pass a rule (no
//! atomic CAS) say so in `capabilities()`, and the case asserts the weaker promise instead.

use super::{Cond, Store, Write};

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

/// Absent keys read as `None`; a create makes them present with a non-zero version.
pub async fn create_then_read<S: Store>(s: &S) {
    assert_eq!(
        s.get("a").await.ok().flatten(),
        None,
        "an absent key reads as None"
    );
    let Ok(Write::Done(v)) = s.put("a", b"one", Cond::Absent).await else {
        panic!("create of an absent key should apply")
    };
    assert!(v > 0, "versions are never 0 for a present key");
    let got = s
        .get("a")
        .await
        .ok()
        .flatten()
        .map(|r| (r.value, r.version));
    assert_eq!(
        got,
        Some((b"one".to_vec(), v)),
        "a read returns what was written and its version"
    );
}

/// A second create of the same key loses and leaves the first value.
pub async fn create_twice_loses<S: Store>(s: &S) {
    assert!(matches!(
        s.put("k", b"first", Cond::Absent).await,
        Ok(Write::Done(_))
    ));
    if s.capabilities().atomic_cas {
        assert_eq!(
            s.put("k", b"second", Cond::Absent).await.ok(),
            Some(Write::Lost),
            "create over a present key loses"
        );
        assert_eq!(
            s.get("k").await.ok().flatten().map(|r| r.value),
            Some(b"first".to_vec())
        );
    }
}

/// Compare-and-swap applies with the current version and loses with a stale one.
pub async fn cas_needs_current_version<S: Store>(s: &S) {
    let Ok(Write::Done(v1)) = s.put("c", b"1", Cond::Absent).await else {
        panic!("create failed")
    };
    let Ok(Write::Done(v2)) = s.put("c", b"2", Cond::Version(v1)).await else {
        panic!("CAS at the current version should apply")
    };
    assert!(v2 > v1, "a write raises the version");
    if s.capabilities().atomic_cas {
        assert_eq!(
            s.put("c", b"3", Cond::Version(v1)).await.ok(),
            Some(Write::Lost),
            "a stale version loses"
        );
        assert_eq!(
            s.get("c").await.ok().flatten().map(|r| r.value),
            Some(b"2".to_vec()),
            "a lost CAS writes nothing"
        );
    }
    assert_eq!(
        s.put("nope", b"x", Cond::Version(v2)).await.ok(),
        Some(Write::Lost),
        "CAS on an absent key loses"
    );
}

/// `Cond::Any` overwrites whatever is there.
pub async fn any_overwrites<S: Store>(s: &S) {
    assert!(matches!(
        s.put("o", b"1", Cond::Any).await,
        Ok(Write::Done(_))
    ));
    assert!(matches!(
        s.put("o", b"2", Cond::Any).await,
        Ok(Write::Done(_))
    ));
    assert_eq!(
        s.get("o").await.ok().flatten().map(|r| r.value),
        Some(b"2".to_vec())
    );
}

/// Conditional delete: a stale version keeps the key, the current one removes it.
pub async fn delete_is_conditional<S: Store>(s: &S) {
    let Ok(Write::Done(v1)) = s.put("d", b"1", Cond::Absent).await else {
        panic!("create failed")
    };
    let Ok(Write::Done(v2)) = s.put("d", b"2", Cond::Any).await else {
        panic!("overwrite failed")
    };
    assert_eq!(
        s.delete("d", Cond::Version(v1)).await.ok(),
        Some(Write::Lost),
        "a stale delete loses"
    );
    assert!(
        s.get("d").await.ok().flatten().is_some(),
        "a lost delete keeps the key"
    );
    assert!(matches!(
        s.delete("d", Cond::Version(v2)).await,
        Ok(Write::Done(_))
    ));
    assert_eq!(
        s.get("d").await.ok().flatten(),
        None,
        "a delete removes the key"
    );
}

/// A key deleted and created again never gets back a version a stale writer might hold.
pub async fn versions_not_reused_after_delete<S: Store>(s: &S) {
    let Ok(Write::Done(v1)) = s.put("r", b"1", Cond::Absent).await else {
        panic!("create failed")
    };
    assert!(matches!(s.delete("r", Cond::Any).await, Ok(Write::Done(_))));
    let Ok(Write::Done(v2)) = s.put("r", b"2", Cond::Absent).await else {
        panic!("re-create failed")
    };
    assert_ne!(v1, v2, "a re-created key has a new version");
    assert_eq!(
        s.put("r", b"stale", Cond::Version(v1)).await.ok(),
        Some(Write::Lost)
    );
}

/// Keys are independent and arbitrary UTF-8 with separators.
pub async fn keys_are_independent<S: Store>(s: &S) {
    assert!(matches!(
        s.put("job/a", b"A", Cond::Absent).await,
        Ok(Write::Done(_))
    ));
    assert!(matches!(
        s.put("job/a/b", b"B", Cond::Absent).await,
        Ok(Write::Done(_))
    ));
    assert!(matches!(
        s.put("jöb/ü", b"U", Cond::Absent).await,
        Ok(Write::Done(_))
    ));
    assert_eq!(
        s.get("job/a").await.ok().flatten().map(|r| r.value),
        Some(b"A".to_vec())
    );
    assert_eq!(
        s.get("job/a/b").await.ok().flatten().map(|r| r.value),
        Some(b"B".to_vec())
    );
    assert_eq!(
        s.get("jöb/ü").await.ok().flatten().map(|r| r.value),
        Some(b"U".to_vec())
    );
    assert_eq!(s.get("job").await.ok().flatten(), None);
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
        $( #[test] fn $case() { let store = $make; suite::block_on(suite::$case(&store)); } )*
    };
}
