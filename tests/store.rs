//! The store suite for every native adapter, and SQLite durability across a reopen.

use edgefarm::store::{
    Capabilities, Cond, Consistency, Memory, Sqlite, Store, StoreError, Versioned, Write,
};
use edgefarm::store_suite;

store_suite!(memory, Memory::new());
store_suite!(
    sqlite_in_memory,
    Sqlite::open_in_memory().expect("sqlite opens")
);
store_suite!(sqlite_file, {
    // Each case gets a file of its own that lives as long as the store.
    let dir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
    Sqlite::open(&dir.path().join("t.db")).expect("sqlite opens")
});

#[test]
fn sqlite_keeps_values_and_versions_across_a_reopen() {
    use edgefarm::store::conformance::block_on;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("farm.db");
    let v1 = {
        let s = Sqlite::open(&path).expect("open");
        s.begin().expect("begin");
        let Ok(Write::Done(v)) = block_on(s.put("a", b"batched", Cond::Absent)) else {
            panic!("put")
        };
        s.commit().expect("commit");
        assert!(matches!(
            block_on(s.put("b", b"single", Cond::Absent)),
            Ok(Write::Done(_))
        ));
        v
    };
    let s = Sqlite::open(&path).expect("reopen");
    let a = block_on(s.get("a"))
        .ok()
        .flatten()
        .expect("a committed batch survives a reopen");
    assert_eq!((a.value.as_slice(), a.version), (&b"batched"[..], v1));
    assert!(
        block_on(s.get("b")).ok().flatten().is_some(),
        "a write outside a batch survives too"
    );
    let Ok(Write::Done(v2)) = block_on(s.put("c", b"new", Cond::Absent)) else {
        panic!("put")
    };
    assert!(
        v2 > v1,
        "versions keep growing after a reopen, so none is reused"
    );
}

#[test]
fn sqlite_rollback_discards_the_batch() {
    use edgefarm::store::conformance::block_on;
    let s = Sqlite::open_in_memory().expect("open");
    s.begin().expect("begin");
    assert!(matches!(
        block_on(s.put("x", b"1", Cond::Absent)),
        Ok(Write::Done(_))
    ));
    s.rollback().expect("rollback");
    assert_eq!(block_on(s.get("x")).ok().flatten(), None);
}

/// A store that says it has no atomic compare-and-swap and ignores every condition: the suite
/// must fail it (before, the cases asserted nothing about conditions on such a store).
struct Blind(Memory);

impl Store for Blind {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, value: &[u8], _cond: Cond) -> Result<Write, StoreError> {
        self.0.put(key, value, Cond::Any).await
    }
    async fn delete(&self, key: &str, _cond: Cond) -> Result<Write, StoreError> {
        self.0.delete(key, Cond::Any).await
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_cas: false,
            consistency: Consistency::Eventual,
            ..self.0.capabilities()
        }
    }
}

#[test]
fn a_store_without_atomic_cas_must_still_check_conditions() {
    use edgefarm::store::conformance::{self as suite, block_on};
    for (case, verdict) in [
        (
            "create_twice_loses",
            block_on(suite::create_twice_loses(&Blind(Memory::new()))),
        ),
        (
            "cas_needs_current_version",
            block_on(suite::cas_needs_current_version(&Blind(Memory::new()))),
        ),
        (
            "delete_is_conditional",
            block_on(suite::delete_is_conditional(&Blind(Memory::new()))),
        ),
    ] {
        assert!(
            verdict.is_err(),
            "{case} passed a store that ignores conditions"
        );
    }
}

#[test]
fn the_suite_runs_every_case_by_name() {
    use edgefarm::store::conformance::{block_on, run_case, Prefixed, CASES};
    let store = Prefixed::new(Memory::new(), "run-1/");
    for case in CASES {
        let verdict = block_on(run_case(&store, case));
        assert_eq!(verdict, Some(Ok(())), "{case}");
    }
    assert_eq!(block_on(run_case(&store, "no_such_case")), None);
    let keys: Vec<String> = store.inner().snapshot().into_keys().collect();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("run-1/")),
        "every key under the prefix: {keys:?}"
    );
}
