//! `GET /v1/metrics?format=json`: the numbers of the Prometheus answer, for the dashboard and
//! the CLI.

use super::jobs::Counts;
use crate::core::counters::Tally;
use crate::core::frames::FrameRange;
use crate::core::model::Progress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one scrape found (`core::api::metrics::snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Event counters, summed over the shards.
    pub counters: Tally,
    /// Jobs by state among those scanned.
    pub jobs: BTreeMap<String, u64>,
    /// Tasks by state among those scanned.
    pub tasks: Counts,
    /// Jobs scanned.
    pub scanned_jobs: u64,
    /// Whether the scan reached the oldest job.
    pub scan_complete: bool,
    /// Nodes by state.
    pub nodes: BTreeMap<String, u64>,
    /// Nodes online: heard from recently and not left (`core::reach::is_online`).
    pub nodes_seen_recently: u64,
    /// Unexpired leases held per node id, among the jobs scanned.
    pub leases_by_node: BTreeMap<String, u64>,
    /// What each node renders (unexpired leases, a bounded number per node), among the jobs
    /// scanned: for the dashboard's nodes panel.
    pub renders_by_node: BTreeMap<String, Vec<Render>>,
}

/// One task a node renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Render {
    /// Task id.
    pub task: String,
    /// Job id.
    pub job: String,
    /// Job name.
    pub job_name: String,
    /// Its frames, if any.
    pub frames: Option<FrameRange>,
    /// Its progress.
    pub progress: Option<Progress>,
}

/// The JSON answer: the snapshot and the bounds of its scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The numbers.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// How far one scrape looks.
    pub scan_limits: ScanLimits,
}

/// How far one scrape looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanLimits {
    /// Most jobs.
    pub jobs: u64,
    /// Most task segments.
    pub segments: u64,
}
