//! The paired comparison behind the flat-claim-cost claim: after the depth sweep, the deepest
//! queue (`default`, still holding the largest depth) and a second, shallow queue on the same
//! server are measured in alternating slots of a few seconds (ABBA order), and the claims/s and
//! server CPU per cycle of each pair are compared.
//!
//! Why: on a machine shared with other work, the throughput of one phase and of the next
//! minute's phase can differ by more than the 20% being tested. Slots a few seconds apart see
//! the same background load, so the median of the per-pair ratios measures the depth alone.
//! Both queues live in the same database (all jobs stored), so this isolates the cost of queue
//! depth; the sweep before it shows the cost of depth and database size together.

use crate::proto::{Client, Target};
use crate::run::{per_second, steady, submit, Level, Plan};
use crate::stats::{cpu_ticks, ticks_per_second, Latencies, Summary};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The deep queue as the sweep left it.
pub struct Big<'a> {
    pub pickers: &'a mut Vec<Client>,
    pub refillers: &'a [Arc<Client>],
    pub queued: &'a mut u64,
    pub depth: u64,
}

/// What the alternating slots measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Paired {
    pub small_depth: u64,
    pub big_depth: u64,
    pub slot_seconds: u64,
    pub small_claims_per_s: Vec<f64>,
    pub big_claims_per_s: Vec<f64>,
    pub small_cpu_ms_per_claim: Vec<f64>,
    pub big_cpu_ms_per_claim: Vec<f64>,
    /// Median over pairs of big / small claims/s.
    pub claims_ratio_median: f64,
    /// Median over pairs of big / small server CPU per cycle.
    pub cpu_ratio_median: f64,
    pub small_claim: Summary,
    pub big_claim: Summary,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

struct Slot {
    claims_per_s: f64,
    cpu_ms: f64,
    claim: Latencies,
    ids: Vec<String>,
    queued: u64,
}

async fn slot(
    plan: &Plan,
    pickers: &mut Vec<Client>,
    refillers: &[Arc<Client>],
    (queued, depth): (u64, u64),
) -> anyhow::Result<Slot> {
    let level = Level::new(queued, depth, 1);
    let deadline = plan
        .deadline
        .min(Instant::now() + Duration::from_secs(plan.slot_seconds));
    let before = plan.pid.and_then(cpu_ticks);
    let s = steady(pickers, refillers, level.clone(), u64::MAX, deadline).await?;
    let after = plan.pid.and_then(cpu_ticks);
    for p in pickers.iter_mut() {
        p.flush().await?;
    }
    let cpu_ms = match (before, after) {
        (Some(b), Some(a)) if s.claimed > 0 => {
            a.saturating_sub(b) as f64 / ticks_per_second() * 1000.0 / s.claimed as f64
        }
        _ => 0.0,
    };
    Ok(Slot {
        claims_per_s: per_second(s.claimed, s.wall),
        cpu_ms,
        claim: s.claim,
        ids: s.refill_ids,
        queued: level.queued(),
    })
}

/// Fills the shallow queue, then runs `plan.pairs` pairs of slots; returns the result and the
/// ids of every job it submitted.
pub async fn run(plan: &Plan, big: Big<'_>) -> anyhow::Result<(Paired, Vec<String>)> {
    let small_depth = plan.sizes.first().copied().unwrap_or(100);
    let target = Target {
        queue: "load-shallow".into(),
        tasks_per_job: 1,
        ..plan.target.clone()
    };
    let make = |n: usize, what: &str| {
        (0..n)
            .map(|i| Client::new(&target, format!("load-shallow-{what}-{i}")))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let submitters: Vec<Arc<Client>> = make(plan.clients, "submit")?
        .into_iter()
        .map(Arc::new)
        .collect();
    let refillers: Vec<Arc<Client>> = make(plan.refillers, "refill")?
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut pickers = make(plan.pickers, "picker")?;
    let fill = submit(&submitters, small_depth, 0, plan.deadline).await?;
    let mut ids = fill.ids;
    let mut small_queued = ids.len() as u64;
    let mut out = Paired {
        small_depth,
        big_depth: big.depth,
        slot_seconds: plan.slot_seconds,
        ..Default::default()
    };
    let (mut small_lat, mut big_lat) = (Latencies::default(), Latencies::default());
    for pair in 0..plan.pairs {
        // ABBA: shallow first in even pairs, deep first in odd ones, so a drift in the
        // background load favours neither.
        for shallow in [pair % 2 == 0, pair % 2 == 1] {
            if shallow {
                let s = slot(plan, &mut pickers, &refillers, (small_queued, small_depth)).await?;
                small_queued = s.queued;
                ids.extend(s.ids);
                small_lat.extend(s.claim);
                out.small_claims_per_s.push(s.claims_per_s);
                out.small_cpu_ms_per_claim.push(s.cpu_ms);
            } else {
                let s = slot(plan, big.pickers, big.refillers, (*big.queued, big.depth)).await?;
                *big.queued = s.queued;
                ids.extend(s.ids);
                big_lat.extend(s.claim);
                out.big_claims_per_s.push(s.claims_per_s);
                out.big_cpu_ms_per_claim.push(s.cpu_ms);
            }
        }
    }
    let ratios = |big: &[f64], small: &[f64]| {
        median(
            big.iter()
                .zip(small)
                .filter(|(_, s)| **s > 0.0)
                .map(|(b, s)| b / s)
                .collect(),
        )
    };
    out.claims_ratio_median = ratios(&out.big_claims_per_s, &out.small_claims_per_s);
    out.cpu_ratio_median = ratios(&out.big_cpu_ms_per_claim, &out.small_cpu_ms_per_claim);
    out.small_claim = small_lat.summary();
    out.big_claim = big_lat.summary();
    eprintln!(
        "[{}] paired slots, {} vs {} queued: claims/s ratio (median of {} pairs) {:.2}, server CPU per cycle ratio {:.2}",
        plan.label, out.big_depth, out.small_depth, plan.pairs, out.claims_ratio_median, out.cpu_ratio_median
    );
    Ok((out, ids))
}
