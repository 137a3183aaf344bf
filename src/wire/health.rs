//! `GET /v1/health`.

use crate::store::{Capabilities, Consistency};
use serde::{Deserialize, Serialize};

/// Alive, and what the store guarantees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `true`.
    pub ok: bool,
    /// The server's version.
    pub version: String,
    /// The store's guarantees.
    pub store: StoreInfo,
}

/// A store's capabilities, as `GET /v1/health` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Store kind.
    pub kind: String,
    /// Conditional writes are atomic.
    pub atomic_cas: bool,
    /// Read consistency.
    pub consistency: Consistency,
    /// Acknowledged writes survive a crash.
    pub durable: bool,
}

impl From<Capabilities> for StoreInfo {
    fn from(c: Capabilities) -> Self {
        StoreInfo {
            kind: c.kind.to_string(),
            atomic_cas: c.atomic_cas,
            consistency: c.consistency,
            durable: c.durable,
        }
    }
}
