//! The embedded default store of `edgefarm serve`: one SQLite file in WAL mode.
//!
//! Durability: `synchronous = FULL`, so a write acknowledged to a client is on disk even after a
//! power cut, not only after a `kill -9` (which `NORMAL` would already survive in WAL mode). The
//! cost of an fsync per commit is paid once per batch: the native shell opens a transaction with
//! [`Sqlite::begin`], runs every request that is waiting, commits, and only then answers them
//! (group commit). Rejected alternative: `synchronous = NORMAL`, faster but can lose the last
//! acknowledged submissions on power loss.
//!
//! Versions come from one counter for the whole file, so a key deleted and created again never
//! reuses a version a stale compare-and-swap could still hold.

use super::{cond_holds, Capabilities, Cond, Consistency, Store, StoreError, Versioned, Write};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::{Cell, RefCell};
use std::path::Path;

/// A SQLite-backed store. Used from one thread (see `runtime::native`).
pub struct Sqlite {
    conn: RefCell<Connection>,
    seq: Cell<u64>,
    ops: Cell<u64>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl Sqlite {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS seq (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);
             INSERT OR IGNORE INTO seq (id, value) VALUES (0, 0);",
        )
        .map_err(backend)?;
        // The counter row is written with each commit; take the larger of it and the highest
        // stored version in case a write outside a batch landed without its counter update.
        let seq: u64 = conn
            .query_row("SELECT max((SELECT value FROM seq WHERE id = 0), (SELECT coalesce(max(version), 0) FROM kv))", [], |r| r.get(0))
            .map_err(backend)?;
        Ok(Self {
            conn: RefCell::new(conn),
            seq: Cell::new(seq),
            ops: Cell::new(0),
        })
    }

    /// Starts a batch: every write until [`Sqlite::commit`] becomes durable at once.
    pub fn begin(&self) -> Result<(), StoreError> {
        self.conn
            .borrow()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(backend)
    }

    /// Makes the batch durable (one fsync).
    pub fn commit(&self) -> Result<(), StoreError> {
        let conn = self.conn.borrow();
        conn.execute(
            "UPDATE seq SET value = ?1 WHERE id = 0",
            params![self.seq.get()],
        )
        .map_err(backend)?;
        conn.execute_batch("COMMIT").map_err(backend)
    }

    /// Abandons the batch.
    pub fn rollback(&self) -> Result<(), StoreError> {
        self.conn
            .borrow()
            .execute_batch("ROLLBACK")
            .map_err(backend)
    }

    /// The keys starting with `prefix`, in order. Not part of [`Store`] (no other adapter can
    /// list cheaply): for native maintenance such as `edgefarm gc`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.borrow();
        let mut stmt = conn
            .prepare("SELECT key FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![prefix], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    /// Number of get/put/delete calls so far.
    pub fn ops(&self) -> u64 {
        self.ops.get()
    }

    fn current_version(conn: &Connection, key: &str) -> Result<Option<u64>, StoreError> {
        let mut stmt = conn
            .prepare_cached("SELECT version FROM kv WHERE key = ?1")
            .map_err(backend)?;
        stmt.query_row(params![key], |r| r.get(0))
            .optional()
            .map_err(backend)
    }

    fn autocommit(&self, conn: &Connection) -> Result<(), StoreError> {
        // Outside a batch every write is its own transaction; keep the counter row current too.
        if conn.is_autocommit() {
            conn.execute(
                "UPDATE seq SET value = ?1 WHERE id = 0",
                params![self.seq.get()],
            )
            .map_err(backend)?;
        }
        Ok(())
    }
}

impl Store for Sqlite {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.ops.set(self.ops.get() + 1);
        let conn = self.conn.borrow();
        let mut stmt = conn
            .prepare_cached("SELECT value, version FROM kv WHERE key = ?1")
            .map_err(backend)?;
        stmt.query_row(params![key], |r| {
            Ok(Versioned {
                value: r.get(0)?,
                version: r.get(1)?,
            })
        })
        .optional()
        .map_err(backend)
    }

    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        self.ops.set(self.ops.get() + 1);
        let conn = self.conn.borrow();
        // One statement per write, its condition in its WHERE / ON CONFLICT clause, rather than
        // a SELECT of the version followed by an upsert: the same compare-and-swap (one
        // connection, one statement, nothing runs in between) with one B-tree search instead
        // of two. A write is the most frequent store call of a claim and of a submit.
        let version = self.seq.get() + 1;
        let want = match cond {
            Cond::Version(v) => v,
            Cond::Any | Cond::Absent => 0,
        };
        let (sql, args) = match cond {
            Cond::Any => (
                "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version",
                params![key, value, version],
            ),
            Cond::Absent => (
                "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO NOTHING",
                params![key, value, version],
            ),
            Cond::Version(_) => (
                "UPDATE kv SET value = ?2, version = ?3 WHERE key = ?1 AND version = ?4",
                params![key, value, version, want],
            ),
        };
        let changed = conn
            .prepare_cached(sql)
            .map_err(backend)?
            .execute(args)
            .map_err(backend)?;
        if changed == 0 {
            return Ok(Write::Lost);
        }
        self.seq.set(version);
        self.autocommit(&conn)?;
        Ok(Write::Done(version))
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        self.ops.set(self.ops.get() + 1);
        let conn = self.conn.borrow();
        let current = Self::current_version(&conn, key)?;
        if cond == Cond::Absent || !cond_holds(cond, current) {
            return Ok(Write::Lost);
        }
        let mut stmt = conn
            .prepare_cached("DELETE FROM kv WHERE key = ?1")
            .map_err(backend)?;
        stmt.execute(params![key]).map_err(backend)?;
        Ok(Write::Done(0))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: "sqlite",
            atomic_cas: true,
            consistency: Consistency::Strong,
            durable: true,
        }
    }
}
