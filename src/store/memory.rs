//! In-memory store for tests and `edgefarm serve --memory`.
//!
//! A `RefCell<BTreeMap>` rather than a `Mutex`: the core runs on one thread in every runtime, and
//! every operation completes without awaiting, so each one is trivially atomic.

use super::{cond_holds, Capabilities, Cond, Consistency, Store, StoreError, Versioned, Write};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// A store that lives in this process only.
#[derive(Debug, Default)]
pub struct Memory {
    map: RefCell<BTreeMap<String, Versioned>>,
    clock: Cell<u64>,
    ops: Cell<u64>,
}

impl Memory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of get/put/delete calls so far (for benchmarks counting store work per claim).
    pub fn ops(&self) -> u64 {
        self.ops.get()
    }

    /// A copy of every key and value, to assert that a rejected request changed nothing.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.map
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }

    fn next_version(&self) -> u64 {
        // One counter for the whole map keeps versions unique even across delete + re-create,
        // so a CAS holding a version from before a delete can never succeed afterwards.
        self.clock.set(self.clock.get() + 1);
        self.clock.get()
    }
}

impl Store for Memory {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.ops.set(self.ops.get() + 1);
        Ok(self.map.borrow().get(key).cloned())
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        self.ops.set(self.ops.get() + 1);
        let current = self.map.borrow().get(key).map(|v| v.version);
        if !cond_holds(cond, current) {
            return Ok(Write::Lost);
        }
        let version = self.next_version();
        let record = Versioned {
            value: value.to_vec(),
            version,
        };
        self.map.borrow_mut().insert(key.to_string(), record);
        Ok(Write::Done(version))
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        self.ops.set(self.ops.get() + 1);
        let current = self.map.borrow().get(key).map(|v| v.version);
        if cond == Cond::Absent || !cond_holds(cond, current) {
            return Ok(Write::Lost);
        }
        self.map.borrow_mut().remove(key);
        Ok(Write::Done(0))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: "memory",
            atomic_cas: true,
            consistency: Consistency::Strong,
            durable: false,
        }
    }
}
