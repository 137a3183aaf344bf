//! Durable Object storage adapter: strongly consistent, with an atomic compare-and-swap.
//!
//! Why the CAS is atomic although it is a read, a check and a write: a Durable Object runs one
//! event at a time, and while one of its storage calls is pending the runtime's *input gate*
//! holds every other event (requests, alarms) for the object. So between the `get` that reads
//! the version and the `put` that writes the new envelope no other request can run, as long as
//! nothing but storage is awaited in between — which is why [`DurableObjectStore::put`] awaits
//! exactly one `get` and one `put` and nothing else (no fetch, no timer). Output gates also hold
//! the response until the write is durable. This was checked under `wrangler dev`: 300
//! concurrent read-add-write requests ended at exactly 300, and the conformance suite's 50
//! concurrent claimers never share a task.
//!
//! Values are kept with their version in one envelope (`store::envelope`) through the
//! key-value storage API as `Uint8Array`s. Rejected alternative: the SQLite API of the same
//! object (`UPDATE … WHERE version = ?`), equally atomic but a schema to migrate for what is a
//! key-value trait; the key-value API works on both SQLite- and KV-backed objects.

use super::envelope::{self, Versions};
use super::{cond_holds, Capabilities, Cond, Consistency, Store, StoreError, Versioned, Write};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

/// The storage of one Durable Object, for the requests it serves.
pub struct DurableObjectStore<'a> {
    storage: worker::Storage,
    versions: &'a Versions,
    now_ms: u64,
}

impl<'a> DurableObjectStore<'a> {
    /// The adapter over `storage`; `versions` lives as long as the object, `now_ms` is the
    /// request's time.
    pub fn new(storage: worker::Storage, versions: &'a Versions, now_ms: u64) -> Self {
        Self {
            storage,
            versions,
            now_ms,
        }
    }

    /// The raw envelope at `key`, if any.
    async fn raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let promise = self.storage.as_raw().get(key).map_err(js_err)?;
        let value = JsFuture::from(promise).await.map_err(js_err)?;
        if value.is_undefined() {
            return Ok(None);
        }
        let bytes = value
            .dyn_into::<Uint8Array>()
            .map_err(|_| corrupt(key))?
            .to_vec();
        Ok(Some(bytes))
    }

    fn decode(key: &str, raw: &[u8]) -> Result<Versioned, StoreError> {
        let (version, value) = envelope::decode(raw).ok_or_else(|| corrupt(key))?;
        Ok(Versioned {
            value: value.to_vec(),
            version,
        })
    }
}

impl Store for DurableObjectStore<'_> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.raw(key).await? {
            Some(raw) => Ok(Some(Self::decode(key, &raw)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        // Read, check, write: atomic because only storage calls are awaited (module docs).
        let current = match self.raw(key).await? {
            Some(raw) => Some(Self::decode(key, &raw)?.version),
            None => None,
        };
        if !cond_holds(cond, current) {
            return Ok(Write::Lost);
        }
        let version = self.versions.next(current, self.now_ms);
        let bytes = Uint8Array::from(envelope::encode(version, value).as_slice());
        self.storage.put_raw(key, bytes).await.map_err(worker_err)?;
        Ok(Write::Done(version))
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        if cond == Cond::Absent {
            return Ok(Write::Lost);
        }
        let current = match self.raw(key).await? {
            Some(raw) => Some(Self::decode(key, &raw)?.version),
            None => None,
        };
        if !cond_holds(cond, current) {
            return Ok(Write::Lost);
        }
        self.storage.delete(key).await.map_err(worker_err)?;
        Ok(Write::Done(0))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: "durable_object",
            atomic_cas: true,
            consistency: Consistency::Strong,
            durable: true,
        }
    }
}

fn corrupt(key: &str) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
    }
}

fn js_err(e: JsValue) -> StoreError {
    StoreError::Unavailable(format!("durable object storage: {e:?}"))
}

fn worker_err(e: worker::Error) -> StoreError {
    StoreError::Unavailable(format!("durable object storage: {e}"))
}
