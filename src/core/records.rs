//! Typed access to stored records: JSON in, JSON out, with the version kept for the CAS.

use super::error::Result;
use crate::store::{Cond, Store, StoreError, Write};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A decoded record and the version it was read at.
#[derive(Debug, Clone)]
pub struct Rec<T> {
    /// The record.
    pub value: T,
    /// Its version.
    pub version: u64,
}

/// Reads and decodes `key`.
pub async fn load<T: DeserializeOwned, S: Store>(store: &S, key: &str) -> Result<Option<Rec<T>>> {
    let Some(raw) = store.get(key).await? else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&raw.value).map_err(|_| StoreError::Corrupt {
        key: key.to_string(),
    })?;
    Ok(Some(Rec {
        value,
        version: raw.version,
    }))
}

/// Encodes and writes `value` at `key` under `cond`; `Ok(None)` when the condition lost.
pub async fn save<T: Serialize, S: Store>(
    store: &S,
    key: &str,
    value: &T,
    cond: Cond,
) -> Result<Option<u64>> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(match store.put(key, &bytes, cond).await? {
        Write::Done(v) => Some(v),
        Write::Lost => None,
    })
}

/// The condition that replaces exactly the version read (or creates when nothing was read).
pub fn cond_for<T>(rec: &Option<Rec<T>>) -> Cond {
    match rec {
        Some(r) => Cond::Version(r.version),
        None => Cond::Absent,
    }
}
