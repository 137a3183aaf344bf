//! One benchmark run against one server: for each queue depth, top the queue up to that many
//! tasks (submit phase), then claim and finish tasks with concurrent pickers (claim phase);
//! then status reads, and the server's memory and idle CPU.
//!
//! The queue is refilled between rounds rather than drained: a round claims at most half of
//! the tasks queued, so every claim is measured with between N/2 and N tasks waiting. The
//! generator assumes it is the only client of an empty server and counts queued tasks itself.
//! Every loop is bounded by a count and by a deadline.

use crate::proto::{Client, Cycle, Protocol, Target};
use crate::stats::{cpu_ticks, rss_kib, ticks_per_second, Latencies, RssSampler, Summary};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    pub submitted_jobs: u64,
    pub submit_jobs_per_s: f64,
    pub submit: Summary,
    pub cycles: u64,
    pub claims_per_s: f64,
    /// The claim request (`/v1` queue poll, or nexrender pickup).
    pub claim: Summary,
    /// nexrender's `PUT state: finished` (the `/v1` ack rides on the claim request).
    pub finish: Summary,
    pub rounds: u64,
    /// CPU time the server process spent per claim cycle (user + system, all its threads):
    /// the cost of a claim, far less sensitive than claims/s to other load on the machine.
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
}

struct Fill {
    ids: Vec<String>,
    lat: Latencies,
    wall: Duration,
}

/// Submits `jobs` jobs with every client at once.
async fn submit(
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

struct Round {
    claimed: u64,
    claim: Latencies,
    finish: Latencies,
    wall: Duration,
}

/// Runs `budget` claim cycles spread over the pickers; the pickers come back for the next round.
async fn claim_round(
    pickers: &mut Vec<Client>,
    budget: u64,
    deadline: Instant,
) -> anyhow::Result<Round> {
    let left = Arc::new(AtomicI64::new(i64::try_from(budget).unwrap_or(i64::MAX)));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for mut p in pickers.drain(..) {
        let left = left.clone();
        set.spawn(async move {
            let (mut claim, mut finish, mut claimed) =
                (Latencies::default(), Latencies::default(), 0u64);
            let mut outcome = Ok(());
            while left.fetch_sub(1, Ordering::Relaxed) > 0 && Instant::now() < deadline {
                match p.cycle().await {
                    Ok(Cycle::Claimed(took)) => {
                        claimed += 1;
                        let mut it = took.into_iter();
                        if let Some(t) = it.next() {
                            claim.push(t);
                        }
                        for t in it {
                            finish.push(t);
                        }
                    }
                    // The queue ran dry earlier than counted: end the round.
                    Ok(Cycle::Empty) => break,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            (p, claim, finish, claimed, outcome)
        });
    }
    let mut round = Round {
        claimed: 0,
        claim: Latencies::default(),
        finish: Latencies::default(),
        wall: Duration::ZERO,
    };
    let mut first_error = None;
    while let Some(done) = set.join_next().await {
        let (p, claim, finish, claimed, outcome) = done?;
        pickers.push(p);
        round.claimed += claimed;
        round.claim.extend(claim);
        round.finish.extend(finish);
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    round.wall = start.elapsed();
    match first_error {
        Some(e) => Err(e),
        None => Ok(round),
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

fn per_second(count: u64, wall: Duration) -> f64 {
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
    let submitters = (0..plan.clients)
        .map(|i| Client::new(&plan.target, format!("load-submit-{i}")).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
        // Claiming time at this depth; filling is bounded by the run's deadline only, since
        // the claims must be measured at the depth asked for.
        let claim_time = Duration::from_secs(plan.seconds_per_size);
        let mut r = SizeResult {
            queued: n,
            ..Default::default()
        };
        let (mut submit_lat, mut submit_wall) = (Latencies::default(), Duration::ZERO);
        let (mut claim, mut finish, mut claim_wall) =
            (Latencies::default(), Latencies::default(), Duration::ZERO);
        let mut claim_ticks = 0u64;
        while r.cycles < plan.cycles && claim_wall < claim_time && Instant::now() < plan.deadline {
            let jobs = n.saturating_sub(queued).div_ceil(tpj);
            if jobs > 0 {
                let fill = submit(&submitters, jobs, ids.len() as u64, plan.deadline).await?;
                r.submitted_jobs += fill.ids.len() as u64;
                queued += fill.ids.len() as u64 * tpj;
                ids.extend(fill.ids);
                submit_lat.extend(fill.lat);
                submit_wall += fill.wall;
            }
            if queued < n {
                anyhow::bail!("the deadline passed while filling the queue to {n}");
            }
            let budget = (plan.cycles - r.cycles).min(n.div_ceil(2)).max(1);
            let round_deadline = plan
                .deadline
                .min(Instant::now() + (claim_time - claim_wall));
            let cpu_before = plan.pid.and_then(cpu_ticks);
            let round = claim_round(&mut pickers, budget, round_deadline).await?;
            if let (Some(b), Some(a)) = (cpu_before, plan.pid.and_then(cpu_ticks)) {
                claim_ticks += a.saturating_sub(b);
            }
            // Acks still owed are sent now, untimed: a lease must not lapse while the next
            // fill runs (a fill to 100,000 can take longer than the 60 s lease).
            for p in pickers.iter_mut() {
                p.flush().await?;
            }
            queued = queued.saturating_sub(round.claimed);
            r.cycles += round.claimed;
            r.rounds += 1;
            claim.extend(round.claim);
            finish.extend(round.finish);
            claim_wall += round.wall;
            if round.claimed == 0 {
                break;
            }
        }
        r.submit_jobs_per_s = per_second(submit_lat.0.len() as u64, submit_wall);
        r.submit = submit_lat.summary();
        r.claims_per_s = per_second(r.cycles, claim_wall);
        r.claim = claim.summary();
        if plan.pid.is_some() && r.cycles > 0 {
            r.server_cpu_ms_per_claim =
                claim_ticks as f64 / ticks_per_second() * 1000.0 / r.cycles as f64;
        }
        r.finish = finish.summary();
        eprintln!(
            "[{}] {n} queued: {} jobs submitted at {:.0}/s; {} claims at {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, server CPU {:.3} ms/claim",
            plan.label, r.submitted_jobs, r.submit_jobs_per_s, r.cycles, r.claims_per_s, r.claim.p50_ms, r.claim.p99_ms, r.server_cpu_ms_per_claim
        );
        report.sizes.push(r);
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
