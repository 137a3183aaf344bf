//! The core thread: every request waiting is run against the store inside one transaction,
//! committed once (group commit), and only then answered.

use super::block::Blocking;
use super::wakes::Wakes;
use super::{now_ms, OsIds};
use crate::core::{handle, Config, Ctx, Wake};
use crate::store::{Memory, Sqlite, Store};
use bytes::Bytes;
use http::{Request, Response};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most requests committed together.
const MAX_BATCH: usize = 256;

/// A request for the core thread and where its answer goes.
pub type Job = (Request<Bytes>, oneshot::Sender<Response<Bytes>>);

/// A store the core thread can wrap a batch of requests in.
pub trait Batching: Store {
    /// Starts a batch.
    fn begin(&self) -> anyhow::Result<()>;
    /// Makes the batch durable.
    fn commit(&self) -> anyhow::Result<()>;
    /// Drops the batch.
    fn rollback(&self);
}

impl Batching for Memory {
    fn begin(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn commit(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn rollback(&self) {}
}

impl Batching for Sqlite {
    fn begin(&self) -> anyhow::Result<()> {
        Ok(Sqlite::begin(self)?)
    }
    fn commit(&self) -> anyhow::Result<()> {
        Ok(Sqlite::commit(self)?)
    }
    fn rollback(&self) {
        if let Err(e) = Sqlite::rollback(self) {
            tracing::error!(error = %e, "rollback failed");
        }
    }
}

/// Runs requests from `rx` against `store` until the channel closes.
pub fn core_loop<S: Batching>(
    store: S,
    config: Config,
    mut rx: mpsc::Receiver<Job>,
    wakes: Arc<Wakes>,
) {
    let ids = OsIds;
    let exec = Blocking::for_this_thread();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = store.begin() {
            tracing::error!(error = %e, "cannot begin a batch");
        }
        let batch_len = batch.len();
        let mut answers = Vec::with_capacity(batch.len());
        for (req, reply) in batch {
            let ctx = Ctx {
                store: &store,
                config: &config,
                now_ms: now_ms(),
                ids: &ids,
                notes: Default::default(),
            };
            answers.push((exec.run(handle(req, &ctx)), reply));
        }
        let committed = store.commit();
        if let Err(e) = &committed {
            tracing::error!(error = %e, "commit failed; answering 500 to the batch");
            store.rollback();
        }
        // What the committed answers say happened (`core::wake`); nothing when the commit failed.
        let mut signals = Vec::new();
        for (resp, reply) in answers {
            let resp = match &committed {
                Ok(()) => {
                    signals.extend(resp.extensions().get::<Wake>().copied());
                    resp
                }
                Err(_) => crate::core::Error::Store(crate::store::StoreError::Unavailable(
                    "commit failed".into(),
                ))
                .into_response(),
            };
            let _ = reply.send(resp);
        }
        // Tests read this line to know several requests shared a batch (tests/native.rs).
        tracing::debug!(requests = batch_len, "batch answered");
        wakes.after_batch(signals);
    }
}
