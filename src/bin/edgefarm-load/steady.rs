//! The claim phase at one depth: pickers claim and finish tasks while refillers submit one job
//! for each one claimed, so the queue stays at the depth being measured (see `run.rs` for why a
//! steady state rather than rounds).

use crate::proto::{Client, Cycle};
use crate::stats::Latencies;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The claim phase at one depth.
pub(crate) struct Steady {
    pub claimed: u64,
    pub empty: u64,
    pub claim: Latencies,
    pub finish: Latencies,
    pub wall: Duration,
    pub refill_ids: Vec<String>,
}

/// Shared between pickers and refillers: tasks queued as far as the generator knows.
pub(crate) struct Level {
    pub queued: AtomicI64,
    depth: i64,
    tasks_per_job: i64,
    claimed: Notify,
    stop: AtomicBool,
}

impl Level {
    pub fn new(queued: u64, depth: u64, tasks_per_job: u64) -> Arc<Level> {
        Arc::new(Level {
            queued: AtomicI64::new(i64::try_from(queued).unwrap_or(i64::MAX)),
            depth: i64::try_from(depth).unwrap_or(i64::MAX),
            tasks_per_job: i64::try_from(tasks_per_job).unwrap_or(1),
            claimed: Notify::new(),
            stop: AtomicBool::new(false),
        })
    }

    /// Tasks queued at the end of a phase.
    pub fn queued(&self) -> u64 {
        u64::try_from(self.queued.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

async fn picker(
    mut p: Client,
    level: Arc<Level>,
    left: Arc<AtomicI64>,
    deadline: Instant,
) -> (Client, Latencies, Latencies, u64, u64, anyhow::Result<()>) {
    let (mut claim, mut finish, mut claimed, mut empty) =
        (Latencies::default(), Latencies::default(), 0u64, 0u64);
    while left.fetch_sub(1, Ordering::Relaxed) > 0 && Instant::now() < deadline {
        match p.cycle().await {
            Ok(Cycle::Claimed(took)) => {
                claimed += 1;
                level.queued.fetch_sub(1, Ordering::Relaxed);
                level.claimed.notify_one();
                let mut it = took.into_iter();
                if let Some(t) = it.next() {
                    claim.push(t);
                }
                for t in it {
                    finish.push(t);
                }
            }
            Ok(Cycle::Empty) => {
                // The refillers fell behind (possible at tiny depths): count it, let them run.
                empty += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return (p, claim, finish, claimed, empty, Err(e)),
        }
    }
    (p, claim, finish, claimed, empty, Ok(()))
}

async fn refiller(c: Arc<Client>, level: Arc<Level>, first: u64) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    while !level.stop.load(Ordering::Relaxed) {
        // Reserve the tasks before submitting, so concurrent refillers do not overshoot.
        let before = level
            .queued
            .fetch_add(level.tasks_per_job, Ordering::Relaxed);
        if before + level.tasks_per_job > level.depth {
            level
                .queued
                .fetch_sub(level.tasks_per_job, Ordering::Relaxed);
            // Full: wait for a claim (or a moment, so a missed wake-up or the stop is seen).
            let _ = tokio::time::timeout(Duration::from_millis(5), level.claimed.notified()).await;
            continue;
        }
        let (id, _) = c.submit(first + ids.len() as u64).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Runs up to `budget` claim cycles over the pickers while the refillers hold the depth.
pub(crate) async fn steady(
    pickers: &mut Vec<Client>,
    refillers: &[Arc<Client>],
    level: Arc<Level>,
    budget: u64,
    deadline: Instant,
) -> anyhow::Result<Steady> {
    let left = Arc::new(AtomicI64::new(i64::try_from(budget).unwrap_or(i64::MAX)));
    let mut fill_set = JoinSet::new();
    for (i, c) in refillers.iter().enumerate() {
        // Distinct job names per refiller; names are informational only.
        let first = 1_000_000_000 * (i as u64 + 1);
        fill_set.spawn(refiller(c.clone(), level.clone(), first));
    }
    let start = Instant::now();
    let mut set = JoinSet::new();
    for p in pickers.drain(..) {
        set.spawn(picker(p, level.clone(), left.clone(), deadline));
    }
    let mut out = Steady {
        claimed: 0,
        empty: 0,
        claim: Latencies::default(),
        finish: Latencies::default(),
        wall: Duration::ZERO,
        refill_ids: Vec::new(),
    };
    let mut first_error = None;
    while let Some(done) = set.join_next().await {
        let (p, claim, finish, claimed, empty, outcome) = done?;
        pickers.push(p);
        out.claimed += claimed;
        out.empty += empty;
        out.claim.extend(claim);
        out.finish.extend(finish);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    out.wall = start.elapsed();
    level.stop.store(true, Ordering::Relaxed);
    while let Some(done) = fill_set.join_next().await {
        match done? {
            Ok(ids) => out.refill_ids.extend(ids),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
