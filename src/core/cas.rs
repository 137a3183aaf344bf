//! The one read-modify-compare-and-swap loop, and its one policy when retries run out.
//!
//! Every change of a stored record is: read it (and its version), decide, write it back on
//! the condition that it is still at the version read (`Cond::Version`, or `Cond::Absent`
//! when nothing was read: create-if-absent). A lost condition means another request changed
//! the record in between: read again and decide again, on what is really there. The decision
//! is made by a closure that sees the fresh read every time, so its guard (a lease token, a
//! state) is always checked against what it writes over.
//!
//! **When retries run out** ([`CAS_RETRIES`] lost conditions in a row), the answer is
//! [`Error::Busy`]: `503 Service Unavailable` with `Retry-After`, code `busy`. Nothing was
//! written by the step that gave up, so the client may send the same request again. Rejected
//! alternatives: a `409 Conflict` (what most loops answered before): nodes treat a 409 on a
//! heartbeat or ack as final (`stale_lease` is a 409) and would kill a render that did nothing
//! wrong; and a silent `Ok`, which tells a client its change landed when it did not.
//!
//! A caller that gives up *after* its request already changed the store (a follow-up whose
//! commit point is behind it) may not want a 503 that invites a retry the store now refuses.
//! Those few callers turn `Busy` into "left for later" with [`best_effort`], which logs it, and
//! say at the call site why that is safe: the claim's contended segment (`claim.rs`), the
//! tidying of a canceled job's tasks and the fail-fast of a job (`lifecycle/end.rs`), an index
//! page's head (`index.rs`), a deleted job's list entry (`job_list.rs`).

use super::error::{Error, Result};
use super::records::{cond_for, load, save, Rec};
use crate::store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Lost compare-and-swaps in a row after which a change gives up with [`Error::Busy`].
pub const CAS_RETRIES: usize = 64;

/// What a change decided, for the record it was shown.
#[derive(Debug)]
pub enum Step<T, R> {
    /// Write this value over the version read (or create it when nothing was read), then
    /// return `R`. A lost condition reads again and asks again.
    Write(T, R),
    /// Write nothing and return `R` now.
    Stop(R),
}

/// The answer when retries run out on `what` ("job j1", "the job list").
pub fn busy(what: &str) -> Error {
    Error::Busy(format!("{what} is changing too often; try again"))
}

/// Runs `attempt` until it returns `Some`, at most `tries` times; then [`Error::Busy`] naming
/// `what`. For changes that span more than one key (the claim index, the job list), where an
/// attempt may write one record and still need another round.
pub async fn retry<R>(
    what: &str,
    tries: usize,
    mut attempt: impl AsyncFnMut() -> Result<Option<R>>,
) -> Result<R> {
    for _ in 0..tries {
        if let Some(r) = attempt().await? {
            return Ok(r);
        }
    }
    Err(busy(what))
}

/// Read-modify-CAS of the record at `key`: `change` sees the record as read now (`None` when
/// absent) and decides; a lost write reads again and asks again. [`Error::Busy`] naming
/// `what` after [`CAS_RETRIES`] lost writes.
pub async fn update<T, R, S>(
    store: &S,
    key: &str,
    what: &str,
    change: impl AsyncFnMut(Option<Rec<T>>) -> Result<Step<T, R>>,
) -> Result<R>
where
    T: Serialize + DeserializeOwned,
    S: Store,
{
    update_from(store, key, what, None, change).await
}

/// [`update`] whose first round uses a read the caller already made (`first`: `Some(read)`),
/// so a record read to decide whether to change it is not read twice.
pub async fn update_from<T, R, S>(
    store: &S,
    key: &str,
    what: &str,
    mut first: Option<Option<Rec<T>>>,
    mut change: impl AsyncFnMut(Option<Rec<T>>) -> Result<Step<T, R>>,
) -> Result<R>
where
    T: Serialize + DeserializeOwned,
    S: Store,
{
    retry(what, CAS_RETRIES, async || {
        let read = match first.take() {
            Some(read) => read,
            None => load::<T, S>(store, key).await?,
        };
        let cond = cond_for(&read);
        match change(read).await? {
            Step::Stop(r) => Ok(Some(r)),
            Step::Write(value, r) => Ok(save(store, key, &value, cond).await?.map(|_| r)),
        }
    })
    .await
}

/// Turns [`Error::Busy`] into `Ok(None)` (logged) for a step that may be left for later; any
/// other outcome is passed on. Each caller says why leaving it is safe.
pub fn best_effort<R>(result: Result<R>, step: &str) -> Result<Option<R>> {
    match result {
        Ok(r) => Ok(Some(r)),
        Err(Error::Busy(why)) => {
            tracing::warn!(step, why, "left for later: too much contention");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::block_on;
    use crate::store::{Capabilities, Cond, Memory, StoreError, Versioned, Write};
    use std::cell::Cell;

    /// The memory store, where every conditional write loses: a record changed by someone
    /// else between each read and its write, for ever.
    #[derive(Default)]
    struct AlwaysLoses {
        inner: Memory,
        puts: Cell<usize>,
    }

    impl Store for AlwaysLoses {
        async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
            self.puts.set(self.puts.get() + 1);
            match cond {
                Cond::Any => self.inner.put(key, value, cond).await,
                Cond::Absent | Cond::Version(_) => Ok(Write::Lost),
            }
        }
        async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
            self.inner.delete(key, cond).await
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
    }

    fn bump(store: &AlwaysLoses) -> Result<u64> {
        block_on(update(
            store,
            "k",
            "the counter",
            async |rec: Option<Rec<u64>>| {
                let n = rec.map_or(0, |r| r.value) + 1;
                Ok(Step::Write(n, n))
            },
        ))
    }

    #[test]
    fn exhausted_retries_answer_503_busy_with_retry_after() {
        let store = AlwaysLoses::default();
        let err = bump(&store).expect_err("every write lost");
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        assert_eq!(store.puts.get(), CAS_RETRIES, "one write per round");
        let resp = err.into_response();
        assert_eq!(resp.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
        assert_eq!(body["error"]["code"], "busy");
        assert_eq!(
            body["error"]["message"],
            "the counter is changing too often; try again"
        );
    }

    #[test]
    fn exhausted_retries_write_nothing() {
        let store = AlwaysLoses::default();
        let _ = bump(&store);
        assert_eq!(block_on(store.inner.get("k")).ok().flatten(), None);
    }

    #[test]
    fn a_lost_write_is_decided_again_on_a_fresh_read() {
        let store = Memory::default();
        let seen = Cell::new(0);
        let got = block_on(update(&store, "k", "k", async |rec: Option<Rec<u64>>| {
            seen.set(seen.get() + 1);
            if seen.get() == 1 {
                // Someone else writes between our read and our write.
                let _ = store.put("k", b"41", Cond::Any).await;
            }
            let n = rec.map_or(0, |r| r.value) + 1;
            Ok(Step::Write(n, n))
        }));
        assert_eq!(got.ok(), Some(42), "the second round saw the other write");
        assert_eq!(seen.get(), 2);
    }

    #[test]
    fn stop_writes_nothing_and_errors_pass_through() {
        let store = AlwaysLoses::default();
        let got = block_on(update(&store, "k", "k", async |_: Option<Rec<u64>>| {
            Ok(Step::<u64, _>::Stop(7))
        }));
        assert_eq!(got.ok(), Some(7));
        assert_eq!(store.puts.get(), 0);
        let got = block_on(update(&store, "k", "k", async |_: Option<Rec<u64>>| {
            Err::<Step<u64, ()>, _>(Error::NotFound("k".into()))
        }));
        assert!(matches!(got, Err(Error::NotFound(_))));
    }

    #[test]
    fn best_effort_turns_busy_into_later_and_nothing_else() {
        assert!(matches!(
            best_effort(Err::<(), _>(busy("x")), "t"),
            Ok(None)
        ));
        assert!(matches!(best_effort(Ok(3), "t"), Ok(Some(3))));
        let other = best_effort(Err::<(), _>(Error::NotFound("x".into())), "t");
        assert!(matches!(other, Err(Error::NotFound(_))));
    }
}
