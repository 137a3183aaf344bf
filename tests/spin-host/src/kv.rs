//! Spin's key-value store as its default backend keeps it: one SQLite table
//! `spin_key_value(store, key, value)` behind one connection and a lock, with the same rules
//! for the operations whose atomicity matters:
//! - compare-and-swap of a present key is `UPDATE … WHERE value = <what current() read>`;
//! - compare-and-swap of a key that was absent when read is an unconditional upsert (Spin's
//!   behaviour, kept on purpose: the component must be correct in spite of it);
//! - `increment` reads an 8-byte little-endian i64 (absent = 0) and writes the sum, in one
//!   transaction. Spin panics on a value of another length; this host answers an error and
//!   logs it loudly instead, so a run shows the mistake without killing the host.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

/// Why an operation failed, as text for the guest's `error::other`.
pub type KvResult<T> = Result<T, String>;

/// The database shared by every request.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        // WAL with full sync: every acknowledged write survives a crash of the host.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> KvResult<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| "store lock poisoned".to_string())
    }

    pub fn get(&self, store: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.lock()?
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row(params![store, key], |r| r.get(0)).optional())
            .map_err(|e| e.to_string())
    }

    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> KvResult<()> {
        upsert(&*self.lock()?, store, key, value)
    }

    pub fn delete(&self, store: &str, key: &str) -> KvResult<()> {
        self.lock()?
            .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")
            .and_then(|mut s| s.execute(params![store, key]))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub fn keys(&self, store: &str) -> KvResult<Vec<String>> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![store], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }

    pub fn increment(&self, store: &str, key: &str, delta: i64) -> KvResult<i64> {
        let mut conn = self.lock()?;
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        let current: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                params![store, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        let now = match current {
            None => 0,
            Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(b) => i64::from_le_bytes(b),
                Err(_) => {
                    eprintln!(
                        "spin-host: increment of {key:?} holding {} bytes: Spin would panic here",
                        v.len()
                    );
                    return Err("incorrect length".into());
                }
            },
        };
        let new = now.wrapping_add(delta);
        upsert(&tx, store, key, &new.to_le_bytes())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok(new)
    }

    /// Spin's swap: conditional on the value `current()` saw, an upsert when it saw nothing.
    pub fn swap(&self, store: &str, key: &str, seen: Option<&[u8]>, new: &[u8]) -> KvResult<bool> {
        let conn = self.lock()?;
        let changed = match seen {
            Some(old) => conn
                .prepare_cached(
                    "UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3",
                )
                .and_then(|mut s| s.execute(params![store, key, old, new]))
                .map_err(|e| e.to_string())?,
            None => {
                upsert(&conn, store, key, new)?;
                1
            }
        };
        Ok(changed == 1)
    }
}

fn upsert(conn: &Connection, store: &str, key: &str, value: &[u8]) -> KvResult<()> {
    conn.prepare_cached(
        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute(params![store, key, value]))
    .map(drop)
    .map_err(|e| e.to_string())
}
