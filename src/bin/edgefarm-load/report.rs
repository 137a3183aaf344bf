//! The tables `edgefarm-load` prints (Markdown, so they paste into BENCHMARKS.md as they are).

use crate::run::Report;
use std::fmt::Write as _;

/// One run: the scaling table and the run-wide numbers.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### {} ({} protocol, {} pickers, {} submitting clients, {} task(s) per job)\n",
        r.label, r.protocol, r.pickers, r.clients, r.tasks_per_job
    );
    let _ = writeln!(out, "| queued tasks | claims/s | vs first | server CPU ms/claim | claim p50 ms | claim p99 ms | finish p50 ms | finish p99 ms | submit jobs/s | submit p99 ms |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let first = r.sizes.first().map_or(0.0, |s| s.claims_per_s);
    for s in &r.sizes {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.3} | {:.2} | {:.2} | {} | {} | {:.0} | {:.2} |",
            s.queued,
            s.claims_per_s,
            ratio(s.claims_per_s, first),
            s.server_cpu_ms_per_claim,
            s.claim.p50_ms,
            s.claim.p99_ms,
            opt_ms(s.finish.count, s.finish.p50_ms),
            opt_ms(s.finish.count, s.finish.p99_ms),
            s.submit_jobs_per_s,
            s.submit.p99_ms,
        );
    }
    let _ = writeln!(
        out,
        "\nstatus reads: {} at {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; jobs stored: {}; server RSS at the end {:.1} MiB (peak {:.1} MiB); idle CPU {:.2}%",
        r.reads.count, r.reads_per_s, r.reads.p50_ms, r.reads.p99_ms, r.jobs_stored, r.rss_end_mib, r.rss_peak_mib, r.idle_cpu_percent
    );
    if let Some(p) = &r.paired {
        let _ = writeln!(
            out,
            "\npaired slots ({} s each, alternating, same server): {} queued vs {} queued\n\n| pair | claims/s at {} | claims/s at {} | ratio | CPU ms/cycle at {} | CPU ms/cycle at {} |\n|---:|---:|---:|---:|---:|---:|",
            p.slot_seconds, p.big_depth, p.small_depth, p.small_depth, p.big_depth, p.small_depth, p.big_depth
        );
        for (i, (s, b)) in p
            .small_claims_per_s
            .iter()
            .zip(&p.big_claims_per_s)
            .enumerate()
        {
            let (sc, bc) = (
                p.small_cpu_ms_per_claim.get(i).copied().unwrap_or(0.0),
                p.big_cpu_ms_per_claim.get(i).copied().unwrap_or(0.0),
            );
            let _ = writeln!(
                out,
                "| {} | {s:.0} | {b:.0} | {} | {sc:.3} | {bc:.3} |",
                i + 1,
                ratio(*b, *s)
            );
        }
        let _ = writeln!(
            out,
            "\nmedian of the pairs: claims/s at {} = {:.2}× claims/s at {}; server CPU per cycle {:.2}×; claim p50/p99 {:.2}/{:.2} ms at {} vs {:.2}/{:.2} ms at {}",
            p.big_depth, p.claims_ratio_median, p.small_depth, p.cpu_ratio_median,
            p.big_claim.p50_ms, p.big_claim.p99_ms, p.big_depth, p.small_claim.p50_ms, p.small_claim.p99_ms, p.small_depth
        );
    }
    out
}

fn opt_ms(count: u64, ms: f64) -> String {
    if count == 0 {
        "–".into()
    } else {
        format!("{ms:.2}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// Two runs side by side, for the queue depths both measured; ratios are `a / b`, or `b / a`
/// for latencies and memory, so that a ratio above 1 always means `a` did better.
pub fn compare(a: &Report, b: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| metric | {} | {} | {} better by |",
        a.label, b.label, a.label
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let mut row = |name: String, x: f64, y: f64, higher_better: bool| {
        let better = if higher_better {
            ratio(x, y)
        } else {
            ratio(y, x)
        };
        let _ = writeln!(out, "| {name} | {x:.2} | {y:.2} | {better} |");
    };
    for sa in &a.sizes {
        let Some(sb) = b.sizes.iter().find(|s| s.queued == sa.queued) else {
            continue;
        };
        let n = sa.queued;
        row(
            format!("submit jobs/s (filling to {n})"),
            sa.submit_jobs_per_s,
            sb.submit_jobs_per_s,
            true,
        );
        row(
            format!("pickups/s, {n} queued"),
            sa.claims_per_s,
            sb.claims_per_s,
            true,
        );
        row(
            format!("server CPU ms per pickup cycle, {n} queued"),
            sa.server_cpu_ms_per_claim,
            sb.server_cpu_ms_per_claim,
            false,
        );
        row(
            format!("pickup p50 ms, {n} queued"),
            sa.claim.p50_ms,
            sb.claim.p50_ms,
            false,
        );
        row(
            format!("pickup p99 ms, {n} queued"),
            sa.claim.p99_ms,
            sb.claim.p99_ms,
            false,
        );
        row(
            format!("PUT finished p50 ms, {n} queued"),
            sa.finish.p50_ms,
            sb.finish.p50_ms,
            false,
        );
        row(
            format!("PUT finished p99 ms, {n} queued"),
            sa.finish.p99_ms,
            sb.finish.p99_ms,
            false,
        );
    }
    row(
        "status read p50 ms".into(),
        a.reads.p50_ms,
        b.reads.p50_ms,
        false,
    );
    row(
        "status read p99 ms".into(),
        a.reads.p99_ms,
        b.reads.p99_ms,
        false,
    );
    row(
        "server RSS at the end, MiB".into(),
        a.rss_end_mib,
        b.rss_end_mib,
        false,
    );
    row(
        "server RSS peak, MiB".into(),
        a.rss_peak_mib,
        b.rss_peak_mib,
        false,
    );
    let _ = writeln!(
        out,
        "| idle CPU % | {:.2} | {:.2} | |",
        a.idle_cpu_percent, b.idle_cpu_percent
    );
    out
}
