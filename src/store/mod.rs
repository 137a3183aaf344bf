//! The storage contract every runtime provides: a key-value map with per-key versions and
//! conditional writes (compare-and-swap), nothing more.
//!
//! Design decision: the trait is this small on purpose (get, conditional put, conditional delete,
//! capabilities) so that Durable Objects, Workers KV, Spin key-value and SQLite can all implement
//! it. Listing, ordering and paging are the core's job, through records whose layout only
//! [`keys`] knows. The alternative — a query-capable trait (`claim_next`, `list_jobs`) — would move
//! scheduling into every adapter and let them drift apart.
//!
//! The futures are not `Send`: the JavaScript promises behind Workers' storage are not, so the
//! native shell runs the core on one thread instead (see `runtime::native`).
#![deny(missing_docs)]

#[cfg(any(test, feature = "native", feature = "store-suite"))]
pub mod conformance;
#[cfg(all(feature = "cloudflare", target_arch = "wasm32"))]
pub mod durable_object;
pub mod envelope;
#[cfg(any(test, feature = "native"))]
pub mod interleave;
pub mod keys;
pub mod memory;
pub mod spin_kv;
#[cfg(feature = "native")]
pub mod sqlite;
#[cfg(all(feature = "cloudflare", target_arch = "wasm32"))]
pub mod workers_kv;

pub use memory::Memory;
#[cfg(feature = "native")]
pub use sqlite::Sqlite;

/// A stored value and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes stored.
    pub value: Vec<u8>,
    /// Increases by at least one on every write of this key; never 0 for a present key.
    pub version: u64,
}

/// The condition a write is applied under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Write whatever is there.
    Any,
    /// Write only if the key is absent (create).
    Absent,
    /// Write only if the key is present at exactly this version (compare-and-swap).
    Version(u64),
}

/// What a conditional write did. A lost condition is an outcome, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Applied; for a put, the key's new version (0 after a delete).
    Done(u64),
    /// Not applied: the condition did not hold.
    Lost,
}

/// How consistent reads are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// A read sees every write acknowledged before it.
    Strong,
    /// A read may miss recent writes made elsewhere for a while.
    Eventual,
}

/// What an adapter guarantees; the core and the conformance suite read these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Store kind, for `GET /v1/health`.
    pub kind: &'static str,
    /// Conditional writes are atomic: of two writers holding the same version, one loses.
    pub atomic_cas: bool,
    /// Read consistency.
    pub consistency: Consistency,
    /// Writes survive a crash of the process once acknowledged.
    pub durable: bool,
}

/// Why a store operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached now; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded.
    #[error("corrupt record at {key}")]
    Corrupt {
        /// The key whose value is corrupt.
        key: String,
    },
    /// Any other backend failure.
    #[error("store backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A key-value store with versioned, conditional writes.
///
/// Every method acts on one key, atomically for that key when `capabilities().atomic_cas`.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The value at `key` and its version, or `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes `value` at `key` if `cond` holds.
    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError>;
    /// Deletes `key` if `cond` holds (`Cond::Absent` makes no sense here and always loses).
    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError>;
    /// What this adapter guarantees.
    fn capabilities(&self) -> Capabilities;
}

/// Whether `cond` holds for a key currently at `current` (its version, or `None` when absent).
/// Shared by the adapters that evaluate conditions themselves.
pub fn cond_holds(cond: Cond, current: Option<u64>) -> bool {
    match (cond, current) {
        (Cond::Any, _) => true,
        (Cond::Absent, None) => true,
        (Cond::Absent, Some(_)) => false,
        (Cond::Version(want), Some(have)) => want == have,
        (Cond::Version(_), None) => false,
    }
}
