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

use crate::proto::{Client, Protocol, Target};
use crate::stats::{cpu_ticks, rss_kib, ticks_per_second, Latencies, RssSampler, Summary};
pub(crate) use crate::steady::{steady, Level};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
