//! The only place that knows how records are laid out in the store.
//!
//! Ids that appear in keys are validated before they get here (`[A-Za-z0-9_-]`, uuids), so `/`
//! can separate the parts. Segments carry a generation (`gen`) chosen at submit time: two racing
//! submits of one client-chosen id write disjoint segment keys, and the loser's leftovers can
//! never be mistaken for the winner's tasks.

/// A job record: spec, flags and pointers to its segments.
pub fn job(id: &str) -> String {
    format!("job/{id}")
}

/// One segment of a job's tasks (up to `SEGMENT_TASKS` tasks), the unit of compare-and-swap.
pub fn segment(job: &str, gen: &str, seg: u32) -> String {
    format!("seg/{job}/{gen}/{seg}")
}

/// The newest page number of the job list.
pub fn job_list_meta() -> String {
    "jobs/meta".to_string()
}

/// One page of the job list (ids in submission order).
pub fn job_list_page(page: u64) -> String {
    format!("jobs/page/{page}")
}

/// The partitions of one queue's claim index that exist.
pub fn queue_dir(queue: &str) -> String {
    format!("q/{queue}/dir")
}

/// The priority buckets of one partition (queue, task type, tag set).
pub fn queue_part(queue: &str, part: &str) -> String {
    format!("q/{queue}/part/{part}")
}

/// One page of one priority bucket of a partition.
pub fn queue_page(queue: &str, part: &str, priority: i64, page: u64) -> String {
    format!("q/{queue}/page/{part}/{priority}/{page}")
}

/// A node record.
pub fn node(id: &str) -> String {
    format!("node/{id}")
}

/// A personal token's record (its hash, role and limits).
pub fn token(id: &str) -> String {
    format!("token/{id}")
}

/// Failed authentications of one client address in the current window.
pub fn auth_failures(address: &str) -> String {
    format!("authfail/{address}")
}

/// The ids of the personal tokens.
pub fn token_list() -> String {
    "tokens".to_string()
}

/// The list of enrolled nodes.
pub fn node_list() -> String {
    "nodes".to_string()
}

/// Nodes removed within the last lease length (their leases are released by claims).
pub fn revoked_nodes() -> String {
    "nodes/revoked".to_string()
}

/// The record of a stored blob (size, age), by the SHA-256 of its bytes.
pub fn blob(sha256: &str) -> String {
    format!("blob/{sha256}")
}

/// One page of an input manifest, named by the manifest's digest.
pub fn manifest_page(manifest_sha256: &str, page: u64) -> String {
    format!("manifest/{manifest_sha256}/{page}")
}

/// The outputs acked by one attempt of a task.
pub fn task_outputs(task: &str, attempt: u32) -> String {
    format!("outputs/{task}/{attempt}")
}

/// A result written by one attempt of a task.
pub fn result(task: &str, attempt: u32) -> String {
    format!("result/{task}/{attempt}")
}

/// One chunk of one attempt's log.
pub fn log_chunk(task: &str, attempt: u32, chunk: u32) -> String {
    format!("log/{task}/{attempt}/{chunk}")
}

/// One shard of the farm's event counters (claims, acks, failures, expiries).
pub fn counter_shard(shard: u32) -> String {
    format!("counters/{shard}")
}

/// The jobs that wait for a job (`after_jobs`): who to tell when it ends.
pub fn dependents(job: &str) -> String {
    format!("deps/{job}")
}

/// The latest preview image of one job.
pub fn job_preview(job: &str) -> String {
    format!("preview/job/{job}")
}

/// The latest preview image of the whole farm.
pub fn farm_preview() -> String {
    "preview/farm".to_string()
}

/// One event of one job's end, for its webhooks: the delivery record, written once
/// (create-if-absent), which makes the event exactly-once. `round` counts the job's requeues,
/// so a job that ends again after a requeue has new events.
pub fn webhook_event(job: &str, gen: &str, round: u32, event: &str) -> String {
    format!("hook/{job}/{gen}/{round}/{event}")
}

/// The deliveries not finished yet (keys of [`webhook_event`] records and when each is due).
pub fn webhook_outbox() -> String {
    "hooks/outbox".to_string()
}

/// The latest finished deliveries, for `GET /v1/webhooks/deliveries`.
pub fn webhook_finished() -> String {
    "hooks/finished".to_string()
}
