//! A nexrender job: the defaults nexrender fills, tag handling, who is calling, ISO times, the
//! edgefarm spec it is stored under, and the view clients get (`present`), which derives
//! `state`, `executor` and `renderProgress` from the task rather than trusting the stored JSON.

use super::{Ordering, Settings};
use crate::core::model::{JobRecord, JobSpec, JobType, OnFailure, Outcome, Task, TaskState};
use crate::core::scheduler::expiry::lease_expired;
use crate::core::Ctx;
use crate::store::Store;
use serde_json::{json, Map, Value};

/// The claim-index queue of jobs picked in age order (oldest-first, newest-first, random).
pub const QUEUE_BY_AGE: &str = "nexrender";
/// The claim-index queue of jobs picked by priority. Separate, because the index orders by
/// priority first: a job's bucket must be 0 in the age queue and its priority here.
pub const QUEUE_BY_PRIORITY: &str = "nexrender-priority";

/// States a worker reports while it holds the job.
pub fn in_progress(state: &str) -> bool {
    matches!(state, "picked" | "started") || state.starts_with("render:")
}

/// `ms` since the epoch as JavaScript's `toISOString()` writes it: `2024-05-01T12:00:00.000Z`.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), era by era of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A fresh uid in nanoid's shape (21 characters of `A-Za-z0-9_-`), from the core's randomness.
pub fn new_uid<S: Store>(ctx: &Ctx<'_, S>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut bits = ctx.ids.random();
    (0..21)
        .map(|_| {
            let c = ALPHABET[(bits & 63) as usize] as char;
            bits >>= 6;
            c
        })
        .collect()
}

/// nexrender's tag rule (`/[^a-z0-9, ]/gi`): only ASCII letters of either case, digits, `,`
/// and space survive in a tags string. Case is kept, and tags match case-sensitively, as
/// nexrender-server compares them: `Gpu` is not `gpu`.
pub fn sanitize_tags(tags: &str) -> String {
    tags.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ',' || *c == ' ')
        .collect()
}

/// The tags of a comma list, trimmed (nexrender-server compares untrimmed, so `"a, b"` never
/// matched a selector `b`), without empties or duplicates, sorted.
pub fn tag_list(tags: &str) -> Vec<String> {
    let mut out: Vec<String> = tags
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The header a runtime shell sets to the TCP peer address (the core cannot see sockets), with
/// [`set_peer`].
pub const PEER_HEADER: &str = "x-edgefarm-peer";

/// Puts the peer address a shell observed (`None`: unknown) in [`PEER_HEADER`], dropping any
/// value a client sent under that name: the address is the shell's to give, never the client's.
pub fn set_peer(headers: &mut http::HeaderMap, ip: Option<std::net::IpAddr>) {
    headers.remove(PEER_HEADER);
    if let Some(v) = ip.and_then(|ip| http::HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert(PEER_HEADER, v);
    }
}

/// Where a request came from: the address the shell put in [`PEER_HEADER`]. Forwarded-address
/// headers (`x-forwarded-for`, `x-real-ip`) are the shell's to believe or not (the native
/// server believes them only from `--trusted-proxy` peers): read here, any client could name
/// itself any address.
pub fn peer(headers: &http::HeaderMap) -> Option<String> {
    header(headers, PEER_HEADER).map(|v| v.chars().take(256).collect())
}

/// Who is asking, as a lease holder: the `nexrender-name` header, else the peer address.
pub fn executor(headers: &http::HeaderMap) -> String {
    header(headers, "nexrender-name")
        .map(|v| v.chars().take(256).collect())
        .or_else(|| peer(headers))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The header an admin client sends to end whoever's lease a PUT's state needs (`lease.rs`).
pub const OVERRIDE_HEADER: &str = "x-edgefarm-override";

/// Whether the request carries [`OVERRIDE_HEADER`] set to `1` or `true`.
pub fn overrides(headers: &http::HeaderMap) -> bool {
    header(headers, OVERRIDE_HEADER).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// nexrender's `create()`: every default, then the client's fields over them (a shallow merge,
/// as nexrender's `Object.assign` does: a `template` sent replaces the default one whole).
pub fn with_defaults(sent: Map<String, Value>, uid: &str) -> Map<String, Value> {
    let priority = match sent.get("priority") {
        Some(p) if truthy(p) => p.clone(),
        _ => json!(0),
    };
    let defaults = json!({
        "uid": uid, "type": "default", "state": "created", "output": "", "tags": "",
        "priority": priority, "timings": {},
        "template": {"src": "", "composition": "", "continueOnMissing": false, "imageSequence": false},
        "assets": [], "actions": {"prerender": [], "postrender": []},
    });
    let mut out = match defaults {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.extend(sent);
    out
}

/// JavaScript truthiness, for the defaults nexrender writes as `x ? x : default`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A job's priority as the index orders it (nexrender treats anything not a number as 0).
pub fn priority(job: &Map<String, Value>) -> i64 {
    match job.get("priority") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.round() as i64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_or(0, |f| f.round() as i64),
        _ => 0,
    }
}

/// The edgefarm spec a nexrender job is stored under. The index queue depends on the ordering
/// the server runs with when the job is written (see `QUEUE_BY_PRIORITY`).
pub fn spec(uid: &str, job: &Map<String, Value>, settings: &Settings) -> JobSpec {
    let by_priority = settings.ordering == Ordering::Priority;
    let template = job.get("template");
    JobSpec {
        inputs: None,
        after_jobs: Vec::new(),
        on_dependency_failure: Default::default(),
        webhooks: Vec::new(),
        stages: Vec::new(),
        after_frames: false,
        id: uid.to_string(),
        name: uid.to_string(),
        kind: JobType::Nexrender,
        queue: if by_priority {
            QUEUE_BY_PRIORITY
        } else {
            QUEUE_BY_AGE
        }
        .to_string(),
        priority: if by_priority { priority(job) } else { 0 },
        tags: tag_list(job.get("tags").and_then(Value::as_str).unwrap_or("")),
        // A summary for `/v1` readers; the whole job is `JobRecord.nexrender`.
        params: json!({
            "src": template.and_then(|t| t.get("src")).cloned().unwrap_or(Value::Null),
            "composition": template.and_then(|t| t.get("composition")).cloned().unwrap_or(Value::Null),
        }),
        frames: None,
        chunk_size: 1,
        max_attempts: settings.max_attempts.max(1),
        task_timeout_s: settings.timeout_ms.div_ceil(1000),
        on_failure: OnFailure::Fail,
    }
}

/// What the task says about the job right now.
pub struct Derived {
    /// nexrender state.
    pub state: String,
    /// The lease holder (or the last one).
    pub executor: Option<String>,
    /// Render progress of the current lease, percent.
    pub progress: Option<u64>,
    /// Why the job ended in `error`, when the task (not a worker) ended it.
    pub error: Option<String>,
}

/// Derives the nexrender state from the task at `now_ms`.
pub fn derive(job: &JobRecord, task: &Task, now_ms: u64) -> Derived {
    let holder = task.lease.as_ref().map(|l| l.node.clone());
    let last_holder = task.history.last().map(|a| a.node.clone());
    let pct = task.progress.filter(|p| p.total == 100).map(|p| p.done);
    let gave_up = || {
        let last = task.history.last();
        let node = last.map_or("", |a| a.node.as_str());
        let expired =
            last.and_then(|a| a.outcome) == Some(Outcome::Expired) || task.lease.is_some();
        Some(if expired {
            format!(
                "edgefarm: the job was leased {} times and its executor went silent for more than {} s each time (last: {node}); no attempts left",
                task.attempts, job.spec.task_timeout_s
            )
        } else {
            task.error
                .clone()
                .unwrap_or_else(|| "the job failed".into())
        })
    };
    let d = |state: &str, executor, progress, error| Derived {
        state: state.to_string(),
        executor,
        progress,
        error,
    };
    match task.state {
        TaskState::Leased if lease_expired(task, now_ms) => {
            // What the next claim will settle it to (lazy expiry).
            if task.failures + 1 >= job.spec.max_attempts {
                d("error", holder, None, gave_up())
            } else {
                d("queued", None, Some(0), None)
            }
        }
        TaskState::Leased => {
            let state = task.activity.clone().unwrap_or_else(|| "picked".into());
            d(&state, holder, pct.or(Some(0)), None)
        }
        TaskState::Queued => d("queued", None, Some(0), None),
        // The last lease holder stays the executor, whatever a worker's final PUT carried.
        TaskState::Completed => d("finished", last_holder, Some(100), None),
        TaskState::Failed => d("error", last_holder, None, gave_up()),
        TaskState::Canceled => d("error", last_holder, None, task.error.clone()),
    }
}

/// The job as nexrender clients see it: the stored JSON with the derived fields over it.
pub fn present(job: &JobRecord, task: &Task, now_ms: u64) -> Value {
    let mut out = match &job.nexrender {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let d = derive(job, task, now_ms);
    out.insert("state".into(), json!(d.state));
    if let Some(e) = d.executor {
        out.insert("executor".into(), json!(e));
    }
    if let Some(p) = d.progress {
        out.insert("renderProgress".into(), json!(p));
    }
    if let Some(e) = d.error {
        let reported = out.get("error").is_some_and(truthy);
        if !reported {
            out.insert("error".into(), json!([e]));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_javascript() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_800_000_000_000), "2027-01-15T08:00:00.000Z");
    }

    #[test]
    fn tags_are_stripped_then_trimmed() {
        assert_eq!(sanitize_tags("gpu, Linux!,a b,É"), "gpu, Linux,a b,");
        assert_eq!(tag_list(" b ,a,, b"), vec!["a", "b"]);
    }
}
