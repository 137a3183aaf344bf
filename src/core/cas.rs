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
#[path = "cas_tests.rs"]
mod tests;
