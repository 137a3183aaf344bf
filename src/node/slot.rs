//! Slots: one supervised tokio task per concurrent render, in the spirit of a worker broker.
//!
//! A slot receives assignments over its own channel and reports outcomes on a shared one. The
//! [`Pool`] keeps the number of slots the config asks for: a slot that panics is replaced (its
//! task is reported failed, so the lease does not sit until expiry), a slot that has run
//! `recycle_after` tasks ends and a fresh one takes its place, and shrinking the pool retires
//! idle slots first and busy ones when they finish — running renders are never dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::task::Outcome;
use crate::wire::queue::ClaimedTask;

/// Runs one task; the real one is [`super::task::run`], tests pass their own.
pub type Runner =
    Arc<dyn Fn(ClaimedTask) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// A finished task, as a slot reports it.
#[derive(Debug)]
pub struct Report {
    pub slot: u64,
    pub task: ClaimedTask,
    pub outcome: Outcome,
}

/// Why a slot's task ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotExit {
    /// Its channel closed: retired or shutting down.
    Closed,
    /// It ran `recycle_after` tasks; the pool starts a fresh one.
    Recycled,
    /// It panicked (message).
    Crashed(String),
}

struct Handle {
    tx: mpsc::Sender<ClaimedTask>,
    busy: Option<ClaimedTask>,
}

/// The supervised set of slots.
pub struct Pool {
    runner: Runner,
    reports: mpsc::UnboundedSender<Report>,
    recycle_after: u32,
    desired: usize,
    next_id: u64,
    slots: BTreeMap<u64, Handle>,
    set: JoinSet<(u64, SlotExit)>,
}

impl Pool {
    /// A pool of `desired` slots running tasks with `runner`.
    pub fn new(
        runner: Runner,
        reports: mpsc::UnboundedSender<Report>,
        desired: usize,
        recycle_after: u32,
    ) -> Self {
        let mut pool = Pool {
            runner,
            reports,
            recycle_after,
            desired,
            next_id: 0,
            slots: BTreeMap::new(),
            set: JoinSet::new(),
        };
        pool.fill();
        pool
    }

    /// Slots free to take a task now.
    pub fn idle(&self) -> usize {
        self.slots.values().filter(|h| h.busy.is_none()).count()
    }

    /// Slots running a task.
    pub fn busy(&self) -> usize {
        self.slots.len() - self.idle()
    }

    /// Tasks being run now.
    pub fn running(&self) -> impl Iterator<Item = &ClaimedTask> {
        self.slots.values().filter_map(|h| h.busy.as_ref())
    }

    /// Gives `task` to an idle slot; hands it back if none is idle.
    pub fn assign(&mut self, task: ClaimedTask) -> Result<(), Box<ClaimedTask>> {
        let Some((_, handle)) = self.slots.iter_mut().find(|(_, h)| h.busy.is_none()) else {
            return Err(Box::new(task));
        };
        match handle.tx.try_send(task.clone()) {
            Ok(()) => {
                handle.busy = Some(task);
                Ok(())
            }
            Err(_) => Err(Box::new(task)),
        }
    }

    /// A slot reported; mark it idle (or retire it if the pool is too big).
    pub fn finished(&mut self, slot: u64) {
        if let Some(h) = self.slots.get_mut(&slot) {
            h.busy = None;
        }
        if self.slots.len() > self.desired {
            self.slots.remove(&slot);
        }
    }

    /// Changes the number of slots (SIGHUP): grows now, shrinks by retiring idle slots.
    pub fn resize(&mut self, desired: usize, recycle_after: u32) {
        self.desired = desired;
        self.recycle_after = recycle_after;
        let idle: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, h)| h.busy.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in idle
            .into_iter()
            .take(self.slots.len().saturating_sub(desired))
        {
            // Dropping the sender closes the channel; the slot ends with `Closed`.
            self.slots.remove(&id);
        }
        self.fill();
    }

    /// Waits for a slot to end and replaces it if needed. Returns the task a crashed slot held.
    pub async fn supervise(&mut self) -> Option<(SlotExit, Option<ClaimedTask>)> {
        let (id, exit) = match self.set.join_next().await? {
            Ok(done) => done,
            // Slots catch their own panics; a JoinError here means the runtime is shutting down.
            Err(e) => return Some((SlotExit::Crashed(e.to_string()), None)),
        };
        let held = match &exit {
            SlotExit::Crashed(msg) => {
                tracing::error!(slot = id, panic = %msg, "slot crashed; starting a new one");
                self.slots.remove(&id).and_then(|h| h.busy)
            }
            SlotExit::Recycled => {
                tracing::info!(
                    slot = id,
                    "slot recycled after {} tasks",
                    self.recycle_after
                );
                self.slots.remove(&id);
                None
            }
            SlotExit::Closed => {
                self.slots.remove(&id);
                None
            }
        };
        self.fill();
        Some((exit, held))
    }

    /// Closes every slot's channel (shutdown); running tasks go on until they finish or abort.
    pub fn close(&mut self) {
        self.desired = 0;
        self.slots.retain(|_, h| h.busy.is_some());
        for h in self.slots.values_mut() {
            let (tx, _) = mpsc::channel(1);
            h.tx = tx;
        }
    }

    fn fill(&mut self) {
        while self.slots.len() < self.desired {
            let id = self.next_id;
            self.next_id += 1;
            let (tx, rx) = mpsc::channel(1);
            let body = slot_loop(
                id,
                rx,
                self.runner.clone(),
                self.reports.clone(),
                self.recycle_after,
            );
            self.set.spawn(async move {
                match AssertUnwindSafe(body).catch_unwind().await {
                    Ok(exit) => (id, exit),
                    Err(panic) => (id, SlotExit::Crashed(panic_message(&panic))),
                }
            });
            self.slots.insert(id, Handle { tx, busy: None });
        }
    }
}

async fn slot_loop(
    id: u64,
    mut rx: mpsc::Receiver<ClaimedTask>,
    runner: Runner,
    reports: mpsc::UnboundedSender<Report>,
    recycle_after: u32,
) -> SlotExit {
    let mut ran = 0u32;
    while let Some(task) = rx.recv().await {
        let outcome = runner(task.clone()).await;
        ran += 1;
        if reports
            .send(Report {
                slot: id,
                task,
                outcome,
            })
            .is_err()
        {
            return SlotExit::Closed;
        }
        if recycle_after > 0 && ran >= recycle_after {
            return SlotExit::Recycled;
        }
    }
    SlotExit::Closed
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

#[cfg(test)]
#[path = "slot_tests.rs"]
mod tests;
