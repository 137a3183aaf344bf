//! Spin key-value adapter: atomic create and compare-and-swap on top of Spin's atomics, whose
//! create-if-absent is not atomic.
//!
//! Spin hosts offer `wasi:keyvalue/atomics@0.2.0-draft2`: a compare-and-swap that compares the
//! whole stored value with what the handle read, and an `increment` of a little-endian `i64`
//! counter. On a *present* key the swap is atomic on every backend (SQLite runs
//! `UPDATE … WHERE value = old`). On an *absent* key Spin's default SQLite backend turns the swap
//! into an unconditional upsert, so two racing creates would both "win" and the later one would
//! overwrite the first — even after the first had been updated further.
//!
//! Design decision: every logical key is a **cell** holding 8 bytes, the id of an immutable
//! **body** stored under a fresh random key (`~body/<id>`), which holds the envelope (version and
//! value, `store::envelope`).
//! - A cell is created only by `increment(cell, 0)`, which is atomic and creates the 8-byte
//!   zero counter if absent; after that it changes only by compare-and-swap of a present value.
//!   So no write ever goes through the non-atomic path, and of two racing creates exactly one
//!   wins.
//! - A body is written before the cell points to it and never changed, so a reader that follows
//!   a cell sees a whole value. The loser of a swap deletes its own body; the winner deletes the
//!   body it replaced. A crash between the two leaves an unreferenced body, never a wrong value.
//! - `increment` is called only on cells, which always hold 8 bytes: on Spin's SQLite backend
//!   it panics the host on a value of any other length.
//! - Versions are `now_ms << 20` plus 20 random bits (and above the previous version): Spin
//!   makes a fresh instance per request, so there is no shared counter, and a key deleted and
//!   re-created by two instances in the same millisecond must still get distinct versions.
//! - A deleted key keeps its cell, emptied: deleting the cell could remove a pointer that a
//!   concurrent create had just swapped in.
//!
//! Guarantee: `put` with `Cond::Absent` or `Cond::Version` is linearizable (of two writers
//! holding the same expectation, one loses) on every backend whose present-key swap and
//! `increment` are atomic: SQLite (one connection under a lock), and Redis as far as its
//! `WATCH`/`MULTI` implementation is. Cost: a read is two backend reads, a write about six
//! operations. Rejected alternatives: storing values in the cells directly (creates race, as
//! above); versions as body keys (two racers would pick the same version and overwrite each
//! other's body).

use super::envelope;
use super::{cond_holds, Capabilities, Cond, Consistency, Store, StoreError, Versioned, Write};

/// The key-value operations of a Spin host that the adapter needs, one bucket.
pub trait Cells {
    /// The value at `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes `value` at `key` unconditionally.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Adds `delta` to the counter at `key` (created as 0 when absent); the new value.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Writes `new` at `key` if it currently holds exactly `expected` (a fresh read, then the
    /// host's swap conditioned on that read); whether it applied.
    fn swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, StoreError>;
}

/// The Store over Spin key-value cells.
pub struct SpinKv<'a, C: Cells> {
    cells: C,
    now_ms: u64,
    random: &'a dyn Fn() -> u64,
}

/// Where a body lives.
fn body_key(id: u64) -> String {
    format!("~body/{id:016x}")
}

/// The body id a cell points to; `None` for an empty cell (the backend's zero counter: eight
/// zero bytes on SQLite, `"0"` on Redis).
fn cell_id(cell: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = cell.try_into().ok()?;
    let id = u64::from_be_bytes(bytes);
    (id & (1 << 63) != 0).then_some(id)
}

/// How many times a write retries when the cell moves under a `Cond::Any` write.
const RETRIES: usize = 16;

enum Read {
    /// The cell's bytes (`None` when the cell does not exist) and what it points at.
    Cell {
        raw: Option<Vec<u8>>,
        current: Option<(u64, Versioned)>,
    },
    /// The cell moved while it was read: try again.
    Moved,
}

impl<'a, C: Cells> SpinKv<'a, C> {
    /// The adapter over `cells`; `now_ms` is the request's time and `random` gives fresh
    /// random bits.
    pub fn new(cells: C, now_ms: u64, random: &'a dyn Fn() -> u64) -> Self {
        Self {
            cells,
            now_ms,
            random,
        }
    }

    /// The version of a write over `previous` (module docs).
    fn next_version(&self, previous: Option<u64>) -> u64 {
        let floor = (self.now_ms << 20) | ((self.random)() & 0xF_FFFF);
        floor.max(previous.unwrap_or(0) + 1)
    }

    /// A body id: random, top bit set, so a cell holding it is never a zero counter and never
    /// reads as a decimal number on backends that store counters as text.
    fn fresh_id(&self) -> u64 {
        (self.random)() | (1 << 63)
    }

    fn read(&self, key: &str) -> Result<Read, StoreError> {
        let raw = self.cells.get(key)?;
        let Some(id) = raw.as_deref().and_then(cell_id) else {
            return Ok(Read::Cell { raw, current: None });
        };
        let Some(body) = self.cells.get(&body_key(id))? else {
            // A body is deleted only after its cell moved on; one that is missing while the
            // cell still points at it is damage, not a race.
            if self.cells.get(key)? == raw {
                return Err(StoreError::Corrupt {
                    key: key.to_string(),
                });
            }
            return Ok(Read::Moved);
        };
        let (version, value) = envelope::decode(&body).ok_or_else(|| StoreError::Corrupt {
            key: key.to_string(),
        })?;
        let value = Versioned {
            value: value.to_vec(),
            version,
        };
        Ok(Read::Cell {
            raw,
            current: Some((id, value)),
        })
    }

    /// Points the cell at `new_body` (or empties it) if the cell still holds `raw`.
    fn swap_cell(&self, key: &str, raw: Option<&[u8]>, new: &[u8]) -> Result<bool, StoreError> {
        let expected = match raw {
            Some(r) => r.to_vec(),
            None => {
                // Create the cell as the backend's zero counter; atomic on every backend. A cell
                // that appeared meanwhile is left as it is (an 8-byte value increments by 0 to
                // itself; Redis refuses a non-number, which is as good).
                let _ = self.cells.increment(key, 0);
                match self.cells.get(key)? {
                    Some(now) if cell_id(&now).is_none() => now,
                    _ => return Ok(false),
                }
            }
        };
        self.cells.swap(key, &expected, new)
    }

    fn write(&self, key: &str, value: Option<&[u8]>, cond: Cond) -> Result<Write, StoreError> {
        for _ in 0..RETRIES {
            let (raw, current) = match self.read(key)? {
                Read::Cell { raw, current } => (raw, current),
                Read::Moved => continue,
            };
            if !cond_holds(cond, current.as_ref().map(|(_, v)| v.version)) {
                return Ok(Write::Lost);
            }
            let old_body = current.as_ref().map(|(id, _)| *id);
            let (new_cell, new_body, version) = match value {
                Some(v) => {
                    let version = self.next_version(current.as_ref().map(|(_, c)| c.version));
                    let id = self.fresh_id();
                    self.cells
                        .set(&body_key(id), &envelope::encode(version, v))?;
                    (id.to_be_bytes(), Some(id), version)
                }
                None if old_body.is_none() => return Ok(Write::Done(0)),
                None => ([0; 8], None, 0),
            };
            if self.swap_cell(key, raw.as_deref(), &new_cell)? {
                if let Some(old) = old_body {
                    self.cells.delete(&body_key(old))?;
                }
                return Ok(Write::Done(version));
            }
            if let Some(id) = new_body {
                self.cells.delete(&body_key(id))?;
            }
            if cond != Cond::Any {
                return Ok(Write::Lost);
            }
        }
        Err(StoreError::Unavailable(format!(
            "spin key-value: {key} kept changing during a write"
        )))
    }
}

impl<C: Cells> Store for SpinKv<'_, C> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        for _ in 0..RETRIES {
            if let Read::Cell { current, .. } = self.read(key)? {
                return Ok(current.map(|(_, v)| v));
            }
        }
        Err(StoreError::Unavailable(format!(
            "spin key-value: {key} kept changing during a read"
        )))
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        self.write(key, Some(value), cond)
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        if cond == Cond::Absent {
            return Ok(Write::Lost);
        }
        self.write(key, None, cond)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: "spin_kv",
            atomic_cas: true,
            consistency: Consistency::Strong,
            durable: true,
        }
    }
}

/// The cells of a Spin host's bucket, through `wasi:keyvalue@0.2.0-draft2` (spin-sdk's hidden
/// `experimental` bindings: the public key-value API has no compare-and-swap).
#[cfg(all(feature = "spin", target_arch = "wasm32", target_os = "wasi"))]
pub mod host {
    use super::Cells;
    use crate::store::StoreError;
    use spin_sdk::experimental::wasi::keyvalue::{atomics, store};

    /// One open bucket.
    pub struct SpinCells {
        bucket: store::Bucket,
    }

    impl SpinCells {
        /// Opens the bucket `label` (`default` in spin.toml).
        pub fn open(label: &str) -> Result<Self, StoreError> {
            Ok(Self {
                bucket: store::open(label).map_err(err)?,
            })
        }
    }

    fn err(e: store::Error) -> StoreError {
        match e {
            store::Error::NoSuchStore => {
                StoreError::Unavailable("spin key-value: no such store".into())
            }
            store::Error::AccessDenied => StoreError::Unavailable(
                "spin key-value: access denied (key_value_stores in spin.toml)".into(),
            ),
            store::Error::Other(m) => StoreError::Unavailable(format!("spin key-value: {m}")),
        }
    }

    impl Cells for SpinCells {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.bucket.get(key).map_err(err)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.bucket.set(key, value).map_err(err)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.bucket.delete(key).map_err(err)
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
            atomics::increment(&self.bucket, key, delta).map_err(err)
        }
        fn swap(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<bool, StoreError> {
            let cas = atomics::Cas::new(&self.bucket, key).map_err(err)?;
            if cas.current().map_err(err)?.as_deref() != Some(expected) {
                return Ok(false);
            }
            match atomics::swap(cas, new) {
                Ok(()) => Ok(true),
                Err(atomics::CasError::CasFailed(_)) => Ok(false),
                Err(atomics::CasError::StoreError(e)) => Err(err(e)),
            }
        }
    }
}
