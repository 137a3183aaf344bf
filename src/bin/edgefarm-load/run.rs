//! One benchmark run against one server: for each queue depth N, fill the queue to N tasks
//! (submit phase: jobs/s), then claim and finish tasks with concurrent pickers while refillers
//! keep N tasks queued (claim phase: claims/s, latencies, server CPU per cycle); then status
//! reads, and the server's memory and idle CPU.
//!
//! Steady state rather than drain-and-refill rounds: every claim is measured with N tasks
//! queued (less the few claimed since the last refill), and the load has the same shape at
//! every depth — P pickers, each claim followed by one refill submit — so that the numbers of
//! two depths differ only by the depth. (Rounds that stop to refill were tried first: at small
//! depths the pickers spent much of each round starting and stopping, which made shallow queues
//! look slower than deep ones.) The generator assumes it is the only client of an empty server
//! and counts queued tasks itself. Every loop is bounded by a count and by a deadline.

use crate::proto::{Client, Cycle, Protocol, Target};
use crate::stats::{cpu_ticks, rss_kib, ticks_per_second, Latencies, RssSampler, Summary};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub label: String,
    pub pid: Option<u32>,
    pub sizes: Vec<u64>,
    pub clients: usize,
    pub pickers: usize,
    pub refillers: usize,
    /// Alternating slot pairs of the paired comparison (0: none).
    pub pairs: u64,
    pub slot_seconds: u64,
    pub cycles: u64,
    pub seconds_per_size: u64,
    pub reads: u64,
    pub idle_seconds: u64,
    pub deadline: Instant,
}

/// Results at one queue depth.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SizeResult {
    pub queued: u64,
    /// Jobs submitted to fill the queue to this depth (without claims running).
    pub submitted_jobs: u64,
    pub submit_jobs_per_s: f64,
    pub submit: Summary,
    pub cycles: u64,
    pub claims_per_s: f64,
    /// The claim request (`/v1` queue poll, or nexrender pickup).
    pub claim: Summary,
    /// nexrender's `PUT state: finished` (the `/v1` ack rides on the claim request).
    pub finish: Summary,
    /// Submits made during the claim phase to hold the depth.
    #[serde(default)]
    pub refills: u64,
    /// Claim requests that found nothing (the refillers fell behind).
    #[serde(default)]
    pub empty_claims: u64,
    /// CPU time the server process spent per claim cycle (user + system, all its threads),
    /// refill included: the cost of a cycle, far less sensitive than claims/s to other load on
    /// the machine.
    #[serde(default)]
    pub server_cpu_ms_per_claim: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub protocol: String,
    pub base: String,
    pub clients: usize,
    pub pickers: usize,
    pub tasks_per_job: u64,
    pub sizes: Vec<SizeResult>,
    pub reads: Summary,
    pub reads_per_s: f64,
    pub jobs_stored: u64,
    pub rss_end_mib: f64,
    pub rss_peak_mib: f64,
    pub idle_cpu_percent: f64,
    /// The alternating small-queue / deep-queue comparison (`--pairs`).
    #[serde(default)]
    pub paired: Option<crate::paired::Paired>,
}

pub(crate) struct Fill {
    pub ids: Vec<String>,
    pub lat: Latencies,
    pub wall: Duration,
}

/// Submits `jobs` jobs with every client at once.
pub(crate) async fn submit(
    clients: &[Arc<Client>],
    jobs: u64,
    first: u64,
    deadline: Instant,
) -> anyhow::Result<Fill> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in clients {
        let (c, next) = (c.clone(), next.clone());
        set.spawn(async move {
            let (mut ids, mut lat) = (Vec::new(), Latencies::default());
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= jobs || Instant::now() > deadline {
                    return anyhow::Ok((ids, lat));
                }
                let (id, took) = c.submit(first + n).await?;
                ids.push(id);
                lat.push(took);
            }
        });
    }
    let mut fill = Fill {
        ids: Vec::new(),
        lat: Latencies::default(),
        wall: Duration::ZERO,
    };
    while let Some(done) = set.join_next().await {
        let (ids, lat) = done??;
        fill.ids.extend(ids);
        fill.lat.extend(lat);
    }
    fill.wall = start.elapsed();
    Ok(fill)
}

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

/// Reads random jobs' status with every client at once.
async fn reads(
    clients: &[Arc<Client>],
    ids: Arc<Vec<String>>,
    count: u64,
    deadline: Instant,
) -> anyhow::Result<(Latencies, Duration)> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in clients {
        let (c, next, ids) = (c.clone(), next.clone(), ids.clone());
        set.spawn(async move {
            let mut lat = Latencies::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count || ids.is_empty() || Instant::now() > deadline {
                    return anyhow::Ok(lat);
                }
                // A fixed multiplicative hash spreads the reads over every stored job,
                // reproducibly from run to run.
                let i = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % ids.len();
                lat.push(c.read(&ids[i]).await?);
            }
        });
    }
    let mut all = Latencies::default();
    while let Some(done) = set.join_next().await {
        all.extend(done??);
    }
    Ok((all, start.elapsed()))
}

pub(crate) fn per_second(count: u64, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        count as f64 / wall.as_secs_f64()
    }
}

/// Runs the whole plan.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let sampler = RssSampler::start(plan.pid);
    let tpj = match plan.target.protocol {
        Protocol::V1 => plan.target.tasks_per_job.max(1),
        Protocol::Nexrender => 1,
    };
    let clients = |n: usize, what: &str| {
        (0..n)
            .map(|i| Client::new(&plan.target, format!("load-{what}-{i}")).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let submitters = clients(plan.clients, "submit")?;
    let refillers = clients(plan.refillers, "refill")?;
    let mut pickers = (0..plan.pickers)
        .map(|i| Client::new(&plan.target, format!("load-picker-{i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut report = Report {
        label: plan.label.clone(),
        protocol: format!("{:?}", plan.target.protocol).to_lowercase(),
        base: plan.target.base.clone(),
        clients: plan.clients,
        pickers: plan.pickers,
        tasks_per_job: tpj,
        ..Default::default()
    };
    let (mut queued, mut ids) = (0u64, Vec::<String>::new());
    for &n in &plan.sizes {
        let mut r = SizeResult {
            queued: n,
            ..Default::default()
        };
        let jobs = n.saturating_sub(queued).div_ceil(tpj);
        let fill = submit(&submitters, jobs, ids.len() as u64, plan.deadline).await?;
        r.submitted_jobs = fill.ids.len() as u64;
        r.submit_jobs_per_s = per_second(r.submitted_jobs, fill.wall);
        r.submit = fill.lat.summary();
        queued += r.submitted_jobs * tpj;
        ids.extend(fill.ids);
        if queued < n {
            anyhow::bail!("the deadline passed while filling the queue to {n}");
        }
        let level = Level::new(queued, n, tpj);
        let deadline = plan
            .deadline
            .min(Instant::now() + Duration::from_secs(plan.seconds_per_size));
        let cpu_before = plan.pid.and_then(cpu_ticks);
        let s = steady(
            &mut pickers,
            &refillers,
            level.clone(),
            plan.cycles,
            deadline,
        )
        .await?;
        let cpu_after = plan.pid.and_then(cpu_ticks);
        // Acks still owed are sent now, untimed: a lease must not lapse while the next fill
        // runs (a fill to 100,000 can take longer than the 60 s lease).
        for p in pickers.iter_mut() {
            p.flush().await?;
        }
        queued = level.queued();
        r.cycles = s.claimed;
        r.empty_claims = s.empty;
        r.refills = s.refill_ids.len() as u64;
        ids.extend(s.refill_ids);
        r.claims_per_s = per_second(s.claimed, s.wall);
        r.claim = s.claim.summary();
        r.finish = s.finish.summary();
        if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
            if r.cycles > 0 {
                r.server_cpu_ms_per_claim =
                    a.saturating_sub(b) as f64 / ticks_per_second() * 1000.0 / r.cycles as f64;
            }
        }
        eprintln!(
            "[{}] {n} queued: {} jobs submitted at {:.0}/s; {} claims at {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, server CPU {:.3} ms/cycle ({} refills, {} empty claims)",
            plan.label, r.submitted_jobs, r.submit_jobs_per_s, r.cycles, r.claims_per_s, r.claim.p50_ms, r.claim.p99_ms, r.server_cpu_ms_per_claim, r.refills, r.empty_claims
        );
        report.sizes.push(r);
    }
    if plan.pairs > 0 && plan.target.protocol == Protocol::V1 {
        let big = crate::paired::Big {
            pickers: &mut pickers,
            refillers: &refillers,
            queued: &mut queued,
            depth: plan.sizes.last().copied().unwrap_or(0),
        };
        let (result, new_ids) = crate::paired::run(plan, big).await?;
        ids.extend(new_ids);
        report.paired = Some(result);
    }
    let ids = Arc::new(ids);
    let (lat, wall) = reads(&submitters, ids.clone(), plan.reads, plan.deadline).await?;
    report.reads = lat.summary();
    report.reads_per_s = per_second(report.reads.count, wall);
    report.jobs_stored = ids.len() as u64;
    if let Some(pid) = plan.pid {
        // Idle: no request in flight; what the server burns on its own (timers, sweeps).
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(plan.idle_seconds)).await;
        if let (Some(b), Some(a)) = (before, cpu_ticks(pid)) {
            report.idle_cpu_percent =
                (a.saturating_sub(b)) as f64 / ticks_per_second() / plan.idle_seconds.max(1) as f64
                    * 100.0;
        }
        report.rss_end_mib = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    }
    report.rss_peak_mib = sampler.peak_mib().max(report.rss_end_mib);
    Ok(report)
}
