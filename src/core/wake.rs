//! Signals from the core to its shell, as typed values in the answer's extensions (never read
//! back from paths or body text):
//! - [`Wake`] (on every answer, put there by `handle()`): what the request means for requests
//!   waiting for work (long polls) or for changes (job event streams).
//! - [`LongPoll`] (on an empty queue poll): the shell may hold the request and send it again.
//! - [`JobEvent`] (on a job read as `text/event-stream`): the event's id and whether the job
//!   finished, so a follower knows when to stop.
//!
//! A shell that holds long polls (`POST /v1/queue/{q}?wait=`) re-runs them when a task may have
//! become claimable. Only the core knows when that is: after a submit, an ack (a failed task is
//! queued again), a release, a job's resume/requeue/priority change, a node's resume or
//! removal — and, with no request at all, when a lease lapses. So the core says so on each
//! answer, and a lease it grants or extends carries its expiry time, for the shell to wake its
//! long polls at that moment.
//!
//! Rejected alternative: waking every long poll after any batch containing a write. A long poll
//! is itself a POST (and writes the node's last-seen time), so each re-run woke every long poll
//! again, itself included: with one idle node connected the native server spun a core at 75 %.

use http::{Method, StatusCode};

/// The signal one answer carries (default: nothing a waiting request cares about happened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wake {
    /// Something happened that can make a task claimable now.
    pub claimable: bool,
    /// A lease this request granted or extended lapses at this time (ms since the epoch); its
    /// task may become claimable then, with no request to say so.
    pub lease_expires_ms: Option<u64>,
    /// The request wrote something a reader may see (a job's view may have changed): event
    /// streams read their job again. An empty queue poll (only the node's last-seen time) and
    /// every rejected request say `false`.
    pub store_changed: bool,
    /// A webhook delivery is due at this time (ms since the epoch): the shell asks
    /// `POST /v1/webhooks/due` then (`core::webhooks`).
    pub webhook_due_ms: Option<u64>,
}

impl Wake {
    /// Whether the signal says anything at all.
    pub fn is_some(&self) -> bool {
        self.claimable
            || self.lease_expires_ms.is_some()
            || self.store_changed
            || self.webhook_due_ms.is_some()
    }
}

/// What a request noted for its shell while it ran, deep in the core (`Ctx::notes`);
/// `handle()` copies it into the answer's [`Wake`].
#[derive(Debug, Default)]
pub struct Notes {
    webhook_due_ms: std::cell::Cell<Option<u64>>,
}

impl Notes {
    /// A webhook delivery is due at `at_ms` (the earliest noted wins).
    pub fn webhook_due(&self, at_ms: u64) {
        let earliest = self.webhook_due_ms.get().map_or(at_ms, |t| t.min(at_ms));
        self.webhook_due_ms.set(Some(earliest));
    }

    /// The earliest webhook delivery noted.
    pub fn webhook_due_ms(&self) -> Option<u64> {
        self.webhook_due_ms.get()
    }
}

/// "May long-poll": the answer of a queue poll that carried no ack and claimed nothing (a 204).
///
/// The re-run rule: a shell may hold such a request for up to `wait_ms` and send the *whole*
/// request to the core again (when a [`Wake`] says a task may be claimable), answering the
/// client with the first answer that is not a `LongPoll`, or with this one when the time is up.
/// Sending it again is safe because an answer is marked `LongPoll` only when the request did
/// nothing but note that its node was seen (last-seen time, queue, wait — the same values again
/// on a re-run): a poll with acks always gets a 200 with their answers, and a poll that claimed
/// is a 200 with the tasks (`api::queue::poll`). Shells that cannot hold requests answer at once
/// with `Retry-After` (`runtime::edge::run_core`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPoll {
    /// How long the client asked to be held (`?wait=`, bounded by `api::queue::MAX_WAIT_S`);
    /// 0 when it did not ask.
    pub wait_ms: u64,
}

/// The answer is one `job` event of a followed job (`GET /v1/jobs/{id}` with `Accept:
/// text/event-stream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// The event's `id:` (the job's last change time): an unchanged id is the same event.
    pub id: String,
    /// The job finished: the stream ends after this event.
    pub finished: bool,
}

/// The signal of a request to `parts` (the path's segments) answered with `status`, at `now_ms`.
/// Rejected requests change nothing (the store is left as it was), so they never wake.
/// `leases` are the lease lengths a heartbeat and a nexrender pickup grant. A queue poll's
/// handler sets its own signal (only it knows whether the poll carried acks).
pub fn of_request(
    method: &Method,
    parts: &[&str],
    status: StatusCode,
    leases: (u64, u64),
    now_ms: u64,
) -> Wake {
    if !status.is_success() {
        return Wake::default();
    }
    let (lease_ms, nexrender_timeout_ms) = leases;
    // Every write but a nexrender pickup is a non-GET request.
    let mut store_changed = method != Method::GET;
    let (claimable, lease) = match (method, parts) {
        (&Method::POST, ["v1", "jobs"]) => (true, None),
        (&Method::PATCH, ["v1", "jobs", _]) => (true, None),
        (&Method::POST, ["v1", "jobs", _, _]) => (true, None),
        (&Method::POST, ["v1", "tasks", _, "ack" | "release"]) => (true, None),
        (&Method::POST, ["v1", "tasks", _, "heartbeat"]) => (false, Some(lease_ms)),
        (&Method::POST, ["v1", "nodes", _, _]) | (&Method::DELETE, ["v1", "nodes", _]) => {
            (true, None)
        }
        // nexrender: a pickup leases; any other change (create, state PUT) may queue a job.
        (&Method::GET, ["api", "v1", "jobs", "pickup", ..]) => {
            store_changed = true;
            (false, Some(nexrender_timeout_ms))
        }
        (m, ["api", "v1", ..]) if m != Method::GET => (true, None),
        _ => (false, None),
    };
    Wake {
        claimable,
        lease_expires_ms: lease.map(|ms| now_ms.saturating_add(ms)),
        store_changed,
        webhook_due_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake(method: Method, path: &str, status: u16) -> Wake {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        of_request(&method, &parts, status, (1000, 5000), 10)
    }

    #[test]
    fn heartbeats_and_pickups_carry_their_lease_expiry() {
        let beat = wake(Method::POST, "/v1/tasks/j.0/heartbeat", 200);
        assert_eq!(beat.lease_expires_ms, Some(1010));
        assert!(!beat.claimable, "a heartbeat makes nothing claimable");
        let pickup = wake(Method::GET, "/api/v1/jobs/pickup", 200);
        assert_eq!(pickup.lease_expires_ms, Some(5010));
    }

    #[test]
    fn writes_change_the_store_and_reads_do_not_except_a_pickup() {
        assert!(wake(Method::POST, "/v1/jobs", 201).store_changed);
        assert!(wake(Method::POST, "/v1/tasks/j.0/heartbeat", 200).store_changed);
        assert!(wake(Method::GET, "/api/v1/jobs/pickup", 200).store_changed);
        assert!(!wake(Method::GET, "/v1/jobs/j", 200).store_changed);
        assert!(!wake(Method::POST, "/v1/jobs", 409).store_changed);
    }

    /// The signals `handle()` puts on real answers: an empty poll may be held, a claim and a
    /// submit change the store, a followed job says when it finished.
    #[test]
    fn answers_carry_long_poll_job_event_and_wake_signals() {
        use crate::core::{handle, Config, Ctx, SeqIds};
        use crate::store::conformance::block_on;
        use crate::store::Memory;
        let (store, config, ids) = (Memory::new(), Config::new("s3cretvalue"), SeqIds::default());
        let ctx = Ctx {
            store: &store,
            config: &config,
            now_ms: 1_000,
            ids: &ids,
            notes: Default::default(),
        };
        let call = |method: Method, uri: &str, body: &str, accept: Option<&str>| {
            let mut req = http::Request::new(bytes::Bytes::from(body.to_string()));
            *req.method_mut() = method;
            *req.uri_mut() = uri.parse().unwrap_or_default();
            let h = req.headers_mut();
            h.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer s3cretvalue"),
            );
            if let Some(a) = accept.and_then(|a| http::HeaderValue::from_str(a).ok()) {
                h.insert(http::header::ACCEPT, a);
            }
            block_on(handle(req, &ctx))
        };
        let poll = r#"{"node": "n1", "max": 1}"#;
        let empty = call(Method::POST, "/v1/queue/default?wait=5", poll, None);
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            empty.extensions().get::<LongPoll>(),
            Some(&LongPoll { wait_ms: 5_000 })
        );
        assert!(!empty.extensions().get::<Wake>().is_some_and(Wake::is_some));
        let job = r#"{"id": "j", "type": "command", "params": {"program": "p"}}"#;
        let submitted = call(Method::POST, "/v1/jobs", job, None);
        let wake = submitted
            .extensions()
            .get::<Wake>()
            .copied()
            .unwrap_or_default();
        assert!(wake.claimable && wake.store_changed, "{wake:?}");
        let claimed = call(Method::POST, "/v1/queue/default?wait=5", poll, None);
        assert_eq!(claimed.status(), StatusCode::OK);
        assert_eq!(
            claimed.extensions().get::<LongPoll>(),
            None,
            "a claim is never held"
        );
        let wake = claimed
            .extensions()
            .get::<Wake>()
            .copied()
            .unwrap_or_default();
        assert!(
            wake.store_changed && wake.lease_expires_ms.is_some(),
            "{wake:?}"
        );
        let event = call(Method::GET, "/v1/jobs/j", "", Some("text/event-stream"));
        let signal = event.extensions().get::<JobEvent>().cloned();
        assert_eq!(signal.map(|e| e.finished), Some(false));
        let canceled = call(Method::POST, "/v1/jobs/j/cancel", "", None);
        assert_eq!(canceled.status(), StatusCode::OK);
        let event = call(Method::GET, "/v1/jobs/j", "", Some("text/event-stream"));
        let signal = event.extensions().get::<JobEvent>().cloned();
        assert_eq!(signal.map(|e| e.finished), Some(true));
    }

    #[test]
    fn submits_acks_and_releases_wake_but_rejections_do_not() {
        assert!(wake(Method::POST, "/v1/jobs", 201).claimable);
        assert!(wake(Method::POST, "/v1/tasks/j.0/ack", 200).claimable);
        assert!(wake(Method::POST, "/v1/tasks/j.0/release", 200).claimable);
        assert!(wake(Method::POST, "/v1/nodes/n1/resume", 200).claimable);
        assert!(!wake(Method::POST, "/v1/jobs", 400).is_some());
        assert!(!wake(Method::GET, "/v1/jobs", 200).is_some());
    }
}
