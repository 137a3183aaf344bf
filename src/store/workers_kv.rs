//! Workers KV adapter: eventually consistent, *no* atomic compare-and-swap.
//!
//! KV has no conditional writes and no transactions: a "CAS" here is a read, a comparison and a
//! blind write, and another isolate (or another request in this one — requests interleave at
//! every await) can write between the two. KV also serves reads from edge caches for up to a
//! minute after a write elsewhere, and allows about one write per second to the same key. So the
//! adapter says `atomic_cas = false` and `consistency = eventual`, and the core degrades to
//! optimistic claims (write, then read back and keep only leases that are still ours; see
//! `core::scheduler::claim`): at-least-once delivery, where the Durable Object store gives
//! exactly-one lease holder. docs/CLOUDFLARE.md lists what a user gives up.
//!
//! The version travels with the value in one envelope (`store::envelope`), so a reader never
//! sees a value with another write's version. Rejected alternative: the version in KV metadata,
//! which the API reads separately from the value in some paths and cannot make any more atomic.

use super::envelope::{self, Versions};
use super::{cond_holds, Capabilities, Cond, Consistency, Store, StoreError, Versioned, Write};

/// One KV namespace.
pub struct WorkersKv<'a> {
    kv: worker::KvStore,
    versions: &'a Versions,
    now_ms: u64,
}

impl<'a> WorkersKv<'a> {
    /// The adapter over `kv`; `versions` lives as long as the isolate, `now_ms` is the
    /// request's time.
    pub fn new(kv: worker::KvStore, versions: &'a Versions, now_ms: u64) -> Self {
        Self {
            kv,
            versions,
            now_ms,
        }
    }

    fn decode(key: &str, raw: &[u8]) -> Result<Versioned, StoreError> {
        let (version, value) = envelope::decode(raw).ok_or_else(|| StoreError::Corrupt {
            key: key.to_string(),
        })?;
        Ok(Versioned {
            value: value.to_vec(),
            version,
        })
    }

    async fn version(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(key).await?.map(|v| v.version))
    }
}

impl Store for WorkersKv<'_> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let raw = self.kv.get(key).bytes().await.map_err(kv_err)?;
        raw.map(|r| Self::decode(key, &r)).transpose()
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        // Not atomic (module docs): another writer may land between this read and the write.
        let current = self.version(key).await?;
        if !cond_holds(cond, current) {
            return Ok(Write::Lost);
        }
        let version = self.versions.next(current, self.now_ms);
        self.kv
            .put_bytes(key, &envelope::encode(version, value))
            .map_err(kv_err)?
            .execute()
            .await
            .map_err(kv_err)?;
        Ok(Write::Done(version))
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        if cond == Cond::Absent {
            return Ok(Write::Lost);
        }
        if cond != Cond::Any && !cond_holds(cond, self.version(key).await?) {
            return Ok(Write::Lost);
        }
        self.kv.delete(key).await.map_err(kv_err)?;
        Ok(Write::Done(0))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: "workers_kv",
            atomic_cas: false,
            consistency: Consistency::Eventual,
            durable: true,
        }
    }
}

/// KV failures (including 429 "too many writes to this key") are worth a retry by the client.
fn kv_err(e: worker::KvError) -> StoreError {
    StoreError::Unavailable(format!("workers kv: {e}"))
}
