//! The Spin key-value adapter over a model of Spin's default (SQLite) backend, natively: the
//! store suite, and creates racing at the exact point where Spin's own compare-and-swap would
//! let both win. The component itself runs on the wasmtime test host in
//! `scripts/spin-conformance`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edgefarm::store::conformance::block_on;
use edgefarm::store::spin_kv::{Cells, SpinKv};
use edgefarm::store::{Cond, Store, StoreError, Write};
use edgefarm::store_suite;

type Hook = Box<dyn Fn() + Send>;

/// One bucket with the semantics of Spin's SQLite backend: `set` upserts, `swap` is
/// `UPDATE … WHERE value = old`, and `increment` reads a little-endian i64 and *panics* on a
/// value of another length, as Spin's does (so a test fails if the adapter ever does that).
#[derive(Default)]
struct SpinSqliteModel {
    map: Mutex<HashMap<String, Vec<u8>>>,
    /// Runs once, right before the next swap applies: another writer landing in between.
    before_swap: Mutex<Option<Hook>>,
}

impl SpinSqliteModel {
    fn keys(&self, prefix: &str) -> usize {
        let map = self.map.lock().expect("model lock");
        map.keys().filter(|k| k.starts_with(prefix)).count()
    }
}

impl Cells for &SpinSqliteModel {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().expect("model lock").get(key).cloned())
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut map = self.map.lock().expect("model lock");
        map.insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.map.lock().expect("model lock").remove(key);
        Ok(())
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut map = self.map.lock().expect("model lock");
        let now = match map.get(key) {
            None => 0,
            Some(v) => i64::from_le_bytes(v.as_slice().try_into().expect("incorrect length")),
        };
        map.insert(key.to_string(), (now + delta).to_le_bytes().to_vec());
        Ok(now + delta)
    }
    fn swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        let hook = self.before_swap.lock().expect("hook lock").take();
        if let Some(hook) = hook {
            hook();
        }
        let mut map = self.map.lock().expect("model lock");
        if map.get(key).map(Vec::as_slice) != Some(expected) {
            return Ok(false);
        }
        map.insert(key.to_string(), new.to_vec());
        Ok(true)
    }
}

/// Random bits for body ids and versions (splitmix64 over a shared counter).
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x1234_5678);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const NOW: u64 = 1_800_000_000_000;

fn adapter(model: &SpinSqliteModel) -> SpinKv<'_, &SpinSqliteModel> {
    SpinKv::new(model, NOW, &random)
}

store_suite!(spin_kv_over_sqlite_model, {
    let model: &'static SpinSqliteModel = Box::leak(Box::default());
    adapter(model)
});

#[test]
fn a_create_landing_between_read_and_swap_makes_the_other_lose() {
    let model: &'static SpinSqliteModel = Box::leak(Box::default());
    let won_b = Arc::new(Mutex::new(None));
    let won = won_b.clone();
    *model.before_swap.lock().expect("hook lock") = Some(Box::new(move || {
        let b = block_on(adapter(model).put("q/page/1", b"B", Cond::Absent));
        *won.lock().expect("lock") = Some(b.ok());
    }));
    let a = block_on(adapter(model).put("q/page/1", b"A", Cond::Absent)).ok();
    let b = won_b.lock().expect("lock").take().flatten();
    assert!(
        matches!(b, Some(Write::Done(_))),
        "the writer that landed first wins: {b:?}"
    );
    assert_eq!(a, Some(Write::Lost), "the other create loses");
    let got = block_on(adapter(model).get("q/page/1")).ok().flatten();
    assert_eq!(got.map(|v| v.value), Some(b"B".to_vec()));
    assert_eq!(model.keys("~body/"), 1, "the loser removed its body");
}

#[test]
fn an_update_landing_between_read_and_swap_makes_the_stale_one_lose() {
    let model: &'static SpinSqliteModel = Box::leak(Box::default());
    let Ok(Write::Done(v1)) = block_on(adapter(model).put("job/x", b"1", Cond::Absent)) else {
        panic!("create")
    };
    *model.before_swap.lock().expect("hook lock") = Some(Box::new(move || {
        let r = block_on(adapter(model).put("job/x", b"other", Cond::Version(v1)));
        assert!(matches!(r, Ok(Write::Done(_))), "{r:?}");
    }));
    let r = block_on(adapter(model).put("job/x", b"mine", Cond::Version(v1))).ok();
    assert_eq!(r, Some(Write::Lost));
    let got = block_on(adapter(model).get("job/x")).ok().flatten();
    assert_eq!(got.map(|v| v.value), Some(b"other".to_vec()));
    assert_eq!(
        model.keys("~body/"),
        1,
        "superseded and losing bodies are gone"
    );
}

#[test]
fn threads_racing_to_create_the_same_keys_get_one_winner_each() {
    let model: &'static SpinSqliteModel = Box::leak(Box::default());
    let keys = 200;
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            std::thread::spawn(move || {
                let store = adapter(model);
                (0..keys)
                    .filter(|k| {
                        let r = block_on(store.put(&format!("k/{k}"), &[t], Cond::Absent));
                        matches!(r, Ok(Write::Done(_)))
                    })
                    .map(|k| (k, t))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut winners: HashMap<usize, Vec<u8>> = HashMap::new();
    for t in threads {
        for (k, who) in t.join().expect("thread") {
            winners.entry(k).or_default().push(who);
        }
    }
    for k in 0..keys {
        let w = winners.get(&k).cloned().unwrap_or_default();
        assert_eq!(w.len(), 1, "key {k}: winners {w:?}");
        let got = block_on(adapter(model).get(&format!("k/{k}")))
            .ok()
            .flatten();
        assert_eq!(
            got.map(|v| v.value),
            Some(w),
            "key {k} holds its winner's value"
        );
    }
    assert_eq!(model.keys("~body/"), keys, "one body per key, no leftovers");
}

#[test]
fn a_deleted_key_reads_absent_and_can_be_created_again() {
    let model: &'static SpinSqliteModel = Box::leak(Box::default());
    let s = adapter(model);
    assert!(matches!(
        block_on(s.put("n", b"1", Cond::Absent)),
        Ok(Write::Done(_))
    ));
    assert!(matches!(
        block_on(s.delete("n", Cond::Any)),
        Ok(Write::Done(0))
    ));
    assert_eq!(block_on(s.get("n")).ok().flatten(), None);
    assert_eq!(model.keys("~body/"), 0, "the body went with the value");
    assert!(matches!(
        block_on(s.put("n", b"2", Cond::Absent)),
        Ok(Write::Done(_))
    ));
    assert_eq!(
        block_on(s.get("n")).ok().flatten().map(|v| v.value),
        Some(b"2".to_vec())
    );
}
