//! `GET /v1/metrics`: Prometheus text (or the same numbers as JSON for the dashboard).
//!
//! Design decision: jobs and tasks by state are computed on each scrape from a bounded scan of
//! the newest jobs (at most [`SCAN_JOBS`] jobs and [`SCAN_SEGMENTS`] task segments, i.e. about
//! 32,000 tasks), and the HELP text and `edgefarm_scan_complete` say so. "No operation reads
//! every key": a farm with a long history is only partly counted, but the jobs a studio watches
//! are the newest ones. Event counters (claims, acks, failures, lease expiries) come from the
//! sharded counter records (`core::counters`), summed here.
//!
//! Rejected alternative: gauges kept up to date on every task transition. They would be exact,
//! but every claim, heartbeat and ack would write one more shared record (the write hot spot
//! the segment design avoids), and a gauge that missed one transition would stay wrong forever.
//!
//! Auth: the farm secret, like every admin route (Prometheus sends it with
//! `authorization: {type: Bearer, credentials: ...}` in its scrape config). The latency histogram
//! is added by the native shell, which is the only place that sees whole requests.

use crate::core::counters;
use crate::core::error::Result;
use crate::core::http::{json, query, text};
use crate::core::job_list::{self, Listed};
use crate::core::model::{JobRecord, NodeRecord, NodeState, TaskState};
use crate::core::records::load;
use crate::core::rollup;
use crate::core::Ctx;
use crate::store::{keys, Store};
use crate::wire::metrics::{Metrics, ScanLimits};
use http::{header, HeaderMap, Response, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most jobs one scrape looks at.
pub const SCAN_JOBS: usize = 500;
/// Most task segments one scrape reads (64 tasks each).
pub const SCAN_SEGMENTS: u32 = 512;
const JOB_STATES: [&str; 6] = [
    "queued",
    "active",
    "paused",
    "completed",
    "failed",
    "canceled",
];

pub use crate::wire::metrics::{Render, Snapshot};

/// Renders listed per node.
pub const RENDERS_PER_NODE: usize = 16;

/// The node list record, as `api::nodes` writes it (only the ids are needed here).
#[derive(Debug, Default, Deserialize)]
struct NodeList {
    ids: Vec<String>,
}

/// Reads the counters, the newest jobs and the nodes.
pub async fn snapshot<S: Store>(ctx: &Ctx<'_, S>) -> Result<Snapshot> {
    let mut s = Snapshot {
        counters: counters::total(ctx.store).await?,
        jobs: JOB_STATES.iter().map(|st| (st.to_string(), 0)).collect(),
        ..Snapshot::default()
    };
    let (mut segments_read, mut cut) = (0u32, false);
    let next = job_list::walk(ctx, None, SCAN_JOBS, async |entry: &Listed| {
        let Some(rec) = load::<JobRecord, _>(ctx.store, &keys::job(&entry.id)).await? else {
            return Ok(true);
        };
        let job = rec.value;
        if job.gen != entry.gen {
            return Ok(true);
        }
        if segments_read + job.segments() > SCAN_SEGMENTS {
            cut = true;
            return Ok(false);
        }
        segments_read += job.segments();
        let segs = rollup::segments(ctx.store, &job).await?;
        let tasks = || segs.iter().flat_map(|seg| seg.value.tasks.iter());
        let view = rollup::view(&job, tasks());
        for t in tasks().filter(|t| t.state == TaskState::Leased) {
            if let Some(l) = t.lease.as_ref().filter(|l| l.expires_ms > ctx.now_ms) {
                *s.leases_by_node.entry(l.node.clone()).or_default() += 1;
                let renders = s.renders_by_node.entry(l.node.clone()).or_default();
                if renders.len() < RENDERS_PER_NODE {
                    renders.push(Render {
                        task: crate::core::scheduler::task_ref::task_id(&job.spec.id, t.index),
                        job: job.spec.id.clone(),
                        job_name: job.spec.name.clone(),
                        frames: t.frames,
                        progress: t.progress,
                    });
                }
            }
        }
        *s.jobs.entry(view.state.as_str().to_string()).or_default() += 1;
        let c = &mut s.tasks;
        c.total += view.counts.total;
        c.queued += view.counts.queued;
        c.leased += view.counts.leased;
        c.completed += view.counts.completed;
        c.failed += view.counts.failed;
        c.canceled += view.counts.canceled;
        s.scanned_jobs += 1;
        Ok(true)
    })
    .await?;
    s.scan_complete = !cut && next.is_none();
    let ids = load::<NodeList, _>(ctx.store, &keys::node_list())
        .await?
        .map(|r| r.value.ids)
        .unwrap_or_default();
    s.nodes = [("awake".to_string(), 0), ("draining".to_string(), 0)]
        .into_iter()
        .collect();
    for id in ids {
        if let Some(n) = load::<NodeRecord, _>(ctx.store, &keys::node(&id)).await? {
            let state = match n.value.state {
                NodeState::Awake => "awake",
                NodeState::Draining => "draining",
            };
            *s.nodes.entry(state.to_string()).or_default() += 1;
            if crate::core::reach::is_online(&n.value, ctx.config, ctx.now_ms) {
                s.nodes_seen_recently += 1;
            }
        }
    }
    Ok(s)
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// The Prometheus text exposition of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut o = String::new();
    let one = |v: u64| vec![(String::new(), v)];
    let by = |key: &str, m: &BTreeMap<String, u64>| -> Vec<(String, u64)> {
        m.iter()
            .map(|(k, v)| (format!("{{{key}=\"{k}\"}}"), *v))
            .collect()
    };
    let c = &s.counters;
    let sharded = "summed over the sharded counter records in the store";
    family(
        &mut o,
        "edgefarm_claims_total",
        "counter",
        &format!("Leases granted by claims, {sharded}."),
        &one(c.claims),
    );
    family(
        &mut o,
        "edgefarm_acks_total",
        "counter",
        &format!("Acks that completed a task, {sharded}."),
        &one(c.acks),
    );
    family(
        &mut o,
        "edgefarm_task_failures_total",
        "counter",
        &format!("Acks that reported a failed attempt, {sharded}."),
        &one(c.failures),
    );
    family(
        &mut o,
        "edgefarm_lease_expiries_total",
        "counter",
        &format!("Leases that lapsed and were settled by a claim, {sharded}."),
        &one(c.expiries),
    );
    let scan = format!("Counted over the newest jobs only: at most {SCAN_JOBS} jobs and {SCAN_SEGMENTS} task segments per scrape (see edgefarm_scan_complete).");
    family(
        &mut o,
        "edgefarm_jobs",
        "gauge",
        &format!("Jobs by state. {scan}"),
        &by("state", &s.jobs),
    );
    let t = &s.tasks;
    let tasks: BTreeMap<String, u64> = [
        ("queued", t.queued),
        ("leased", t.leased),
        ("completed", t.completed),
        ("failed", t.failed),
        ("canceled", t.canceled),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    family(
        &mut o,
        "edgefarm_tasks",
        "gauge",
        &format!("Tasks by state. {scan}"),
        &by("state", &tasks),
    );
    family(
        &mut o,
        "edgefarm_scan_jobs",
        "gauge",
        "Jobs this scrape counted in edgefarm_jobs and edgefarm_tasks.",
        &one(s.scanned_jobs),
    );
    family(&mut o, "edgefarm_scan_complete", "gauge", "1 when edgefarm_jobs and edgefarm_tasks cover every job, 0 when the scan stopped at its bound.", &one(u64::from(s.scan_complete)));
    family(
        &mut o,
        "edgefarm_nodes",
        "gauge",
        "Enrolled nodes by state.",
        &by("state", &s.nodes),
    );
    family(
        &mut o,
        "edgefarm_nodes_seen_recently",
        "gauge",
        "Nodes online: heard from within a few poll or heartbeat intervals and not left.",
        &one(s.nodes_seen_recently),
    );
    let leases: Vec<(String, u64)> = s
        .leases_by_node
        .iter()
        .map(|(n, v)| (format!("{{node=\"{}\"}}", label(n)), *v))
        .collect();
    family(
        &mut o,
        "edgefarm_node_leases",
        "gauge",
        &format!("Unexpired leases per node. {scan}"),
        &leases,
    );
    o
}

/// `GET /v1/metrics` (`Accept: application/json` or `?format=json` for JSON).
pub async fn get<S: Store>(
    ctx: &Ctx<'_, S>,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<Response<bytes::Bytes>> {
    let s = snapshot(ctx).await?;
    let wants_json = query(q).get("format").is_some_and(|f| f == "json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
    if wants_json {
        let body = Metrics {
            snapshot: s,
            scan_limits: ScanLimits {
                jobs: SCAN_JOBS as u64,
                segments: SCAN_SEGMENTS as u64,
            },
        };
        return Ok(json(StatusCode::OK, &body));
    }
    Ok(text(
        StatusCode::OK,
        render(&s),
        "text/plain; version=0.0.4; charset=utf-8",
    ))
}
