//! The store suite for every native adapter, and SQLite durability across a reopen.

use edgefarm::store::{Cond, Memory, Sqlite, Store, Write};
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
