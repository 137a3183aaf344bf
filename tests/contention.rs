//! Lost compare-and-swaps, made to happen: every request here runs through `core::handle()` on a
//! store that puts a competing write between the core's read and its CAS at a chosen point
//! (`store::interleave::Contended`), so the retry paths of claims, acks, heartbeats and index
//! updates run, and each case checks the outcome the API promises (a task claimed once, an ack
//! applied once, nothing a competitor wrote lost, the counters right).
//!
//! The competitor is a whole request of another node, run on the same store between the read
//! and the CAS (what two requests of a Spin host or a KV Worker can do), or, for the cases
//! where retries run out, a bump of the key's version with nothing else changed.

use bytes::Bytes;
use edgefarm::core::{handle, Config, Ctx, Ids, SeqIds};
use edgefarm::store::conformance::block_on;
use edgefarm::store::interleave::Contended;
use edgefarm::store::{Memory, Store};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

const SECRET: &str = "contention-secret";
const START_MS: u64 = 1_800_000_000_000;

/// Ids for competing requests, far from the farm's own (`SeqIds` counts from 1): two requests
/// must never draw the same lease token.
struct OtherIds(Cell<u128>);

impl Ids for OtherIds {
    fn random(&self) -> u128 {
        self.0.set(self.0.get() + 1);
        (1 << 120) + self.0.get()
    }
}

fn config() -> Config {
    let mut c = Config::new(SECRET);
    c.lease_ms = 60_000;
    c
}

/// An answer: status, body, and whether it says when to retry.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: bool,
}

fn run<S: Store>(
    store: &S,
    ids: &dyn Ids,
    now_ms: u64,
    method: &str,
    path: &str,
    body: Value,
) -> Answer {
    let config = config();
    let ctx = Ctx {
        store,
        config: &config,
        now_ms,
        ids,
        notes: Default::default(),
    };
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let Ok(req) = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {SECRET}"))
        .body(bytes)
    else {
        panic!("a valid request: {method} {path}")
    };
    let resp = block_on(handle(req, &ctx));
    Answer {
        status: resp.status().as_u16(),
        retry_after: resp.headers().contains_key("retry-after"),
        body: serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
    }
}

/// One farm on a contended memory store, time moved by hand.
struct Farm {
    store: Contended<Memory>,
    ids: SeqIds,
    now: Cell<u64>,
}

/// A request another node sends between a read and its CAS; its answer lands in the cell.
type Competing = Rc<RefCell<Option<Answer>>>;

impl Farm {
    fn new() -> Farm {
        Farm {
            store: Contended::new(Memory::new()),
            ids: SeqIds::default(),
            now: Cell::new(START_MS),
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Answer {
        run(&self.store, &self.ids, self.now.get(), method, path, body)
    }

    /// Before the `nth` CAS on a key starting with `prefix`, another node's request runs.
    fn compete_before(
        &self,
        prefix: &str,
        nth: usize,
        method: &str,
        path: &str,
        body: Value,
    ) -> Competing {
        let out: Competing = Rc::default();
        let (slot, method, path, now) = (
            out.clone(),
            method.to_string(),
            path.to_string(),
            self.now.get(),
        );
        let ids = OtherIds(Cell::new(0));
        let mut body = Some(body);
        self.store
            .before_cas(prefix, nth, move |inner: &Memory, _key: &str| {
                let body = body.take().unwrap_or(Value::Null);
                *slot.borrow_mut() = Some(run(inner, &ids, now, &method, &path, body));
            });
        out
    }

    fn submit(&self, spec: Value) -> String {
        let a = self.call("POST", "/v1/jobs", spec);
        assert_eq!(a.status, 202, "submit: {}", a.body);
        a.body["id"].as_str().unwrap_or_default().to_string()
    }

    fn claim(&self, node: &str, max: u32) -> Answer {
        self.call("POST", "/v1/queue/q", claim_body(node, max))
    }

    fn tasks(&self, job: &str) -> Vec<Value> {
        let a = self.call(
            "GET",
            &format!("/v1/jobs/{job}/tasks?limit=100"),
            Value::Null,
        );
        a.body["tasks"].as_array().cloned().unwrap_or_default()
    }

    fn task(&self, id: &str) -> Value {
        self.call("GET", &format!("/v1/tasks/{id}"), Value::Null)
            .body
    }

    /// A counter of `GET /v1/metrics` (`edgefarm_claims_total`, ...).
    fn counter(&self, name: &str) -> u64 {
        let config = config();
        let ctx = Ctx {
            store: &self.store,
            config: &config,
            now_ms: self.now.get(),
            ids: &self.ids,
            notes: Default::default(),
        };
        let Ok(req) = http::Request::builder()
            .uri("/v1/metrics")
            .header("authorization", format!("Bearer {SECRET}"))
            .body(Bytes::new())
        else {
            panic!("a valid request")
        };
        let resp = block_on(handle(req, &ctx));
        let text = String::from_utf8_lossy(resp.body()).to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
    }

    /// The stored bytes of the keys starting with `prefix`.
    fn records(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let mut all = self.store.inner().snapshot();
        all.retain(|k, _| k.starts_with(prefix));
        all
    }
}

fn claim_body(node: &str, max: u32) -> Value {
    json!({"node": node, "max": max, "tasks": []})
}

fn job_spec(id: &str, frames: &str) -> Value {
    json!({"id": id, "type": "command", "queue": "q", "frames": frames, "chunk_size": 1,
           "params": {"program": "p"}})
}

fn claimed(a: &Answer) -> Vec<Value> {
    match a.status {
        204 => vec![],
        200 => a.body["tasks"].as_array().cloned().unwrap_or_default(),
        other => panic!("a claim answered {other}: {}", a.body),
    }
}

fn id_of(t: &Value) -> String {
    t["_id"].as_str().unwrap_or_default().to_string()
}

fn ack_body(t: &Value) -> Value {
    json!({"lease": t["lease"], "status": "done", "result": {"exit_code": 0}})
}

/// The answer of a request whose every CAS lost (docs/CORE.md, "Compare-and-swap, and when
/// retries run out"): a heartbeat or an ack answers 503 `busy` with `Retry-After` (nothing was
/// written; the node sends it again); a claim leaves the contended segment to the next claim and
/// answers 204 (nothing claimed).
fn gave_up(a: &Answer, status: u16) {
    let ok = match status {
        204 => a.status == 204,
        _ => a.status == 503 && a.retry_after && a.body["error"]["code"] == "busy",
    };
    assert!(
        ok,
        "every CAS lost: expected {}, got {} {} (retry-after: {})",
        if status == 204 {
            "204 (nothing claimed)"
        } else {
            "503 busy + Retry-After"
        },
        a.status,
        a.body,
        a.retry_after
    );
}

#[test]
fn a_claim_that_loses_its_cas_to_a_competing_claim_retries_and_takes_the_other_task() {
    let f = Farm::new();
    let job = f.submit(job_spec("two", "1-2"));
    let other = f.compete_before("seg/", 1, "POST", "/v1/queue/q", claim_body("b", 1));
    let mine = claimed(&f.claim("a", 1));
    assert_eq!(
        f.store.hits().len(),
        1,
        "the claim's CAS met the competitor once"
    );
    let theirs = claimed(other.borrow().as_ref().expect("the competing claim ran"));
    assert_eq!((mine.len(), theirs.len()), (1, 1), "each node got one task");
    assert_ne!(id_of(&mine[0]), id_of(&theirs[0]), "never the same task");
    for t in f.tasks(&job) {
        assert_eq!(
            (t["state"].as_str(), t["attempts"].as_u64()),
            (Some("leased"), Some(1)),
            "{t}"
        );
    }
    assert_eq!(
        f.counter("edgefarm_claims_total"),
        2,
        "two leases, two counted"
    );
}

#[test]
fn a_claim_whose_only_task_went_to_a_competing_claim_gets_nothing() {
    let f = Farm::new();
    let job = f.submit(job_spec("one", "1"));
    let other = f.compete_before("seg/", 1, "POST", "/v1/queue/q", claim_body("b", 1));
    let mine = f.claim("a", 1);
    assert_eq!(
        mine.status, 204,
        "the retry finds the task leased: {}",
        mine.body
    );
    let theirs = claimed(other.borrow().as_ref().expect("the competing claim ran"));
    assert_eq!(theirs.len(), 1);
    let t = &f.tasks(&job)[0];
    assert_eq!(t["lease"]["node"], "b", "the competitor holds it: {t}");
    assert_eq!(t["attempts"], 1, "one attempt, not two: {t}");
    assert_eq!(f.counter("edgefarm_claims_total"), 1);
}

#[test]
fn an_ack_that_loses_its_cas_to_a_heartbeat_of_the_same_segment_applies_once() {
    let f = Farm::new();
    let job = f.submit(job_spec("acked", "1-2"));
    let both = claimed(&f.claim("a", 2));
    assert_eq!(both.len(), 2);
    let (first, second) = (&both[0], &both[1]);
    // Both tasks live in one segment: the heartbeat of the second moves the segment's version
    // between the ack's read of it and its CAS.
    let beat = f.compete_before(
        "seg/",
        1,
        "POST",
        &format!("/v1/tasks/{}/heartbeat", id_of(second)),
        json!({"lease": second["lease"], "progress": {"done": 0, "total": 1}, "activity": "rendering"}),
    );
    let ack = f.call(
        "POST",
        &format!("/v1/tasks/{}/ack", id_of(first)),
        ack_body(first),
    );
    assert_eq!(ack.status, 200, "the ack retried and applied: {}", ack.body);
    assert_eq!(
        beat.borrow().as_ref().map(|a| a.status),
        Some(200),
        "the heartbeat applied"
    );
    assert_eq!(f.store.hits().len(), 1);
    let t1 = f.task(&id_of(first));
    assert_eq!(t1["state"], "completed", "{t1}");
    let outcomes: Vec<&Value> = t1["history"]
        .as_array()
        .map_or(vec![], |h| h.iter().map(|a| &a["outcome"]).collect());
    assert_eq!(
        outcomes,
        vec![&json!("completed")],
        "one attempt, completed once: {t1}"
    );
    let t2 = f.task(&id_of(second));
    assert_eq!(
        (t2["state"].as_str(), t2["activity"].as_str()),
        (Some("leased"), Some("rendering")),
        "the retried ack did not write over the heartbeat: {t2}"
    );
    assert_eq!(f.counter("edgefarm_acks_total"), 1, "one ack counted");
    let again = f.call(
        "POST",
        &format!("/v1/tasks/{}/ack", id_of(second)),
        ack_body(second),
    );
    assert_eq!(again.status, 200);
    let j = f.call("GET", &format!("/v1/jobs/{job}"), Value::Null).body;
    assert_eq!(j["state"], "completed", "{j}");
    assert_eq!(f.counter("edgefarm_acks_total"), 2);
}

#[test]
fn a_heartbeat_that_loses_its_cas_to_an_ack_keeps_the_ack() {
    let f = Farm::new();
    f.submit(job_spec("beats", "1-2"));
    let both = claimed(&f.claim("a", 2));
    assert_eq!(both.len(), 2);
    let (first, second) = (&both[0], &both[1]);
    let before = f.task(&id_of(first))["lease"]["expires_ms"]
        .as_u64()
        .unwrap_or(0);
    f.now.set(f.now.get() + 10_000);
    let ack = f.compete_before(
        "seg/",
        1,
        "POST",
        &format!("/v1/tasks/{}/ack", id_of(second)),
        ack_body(second),
    );
    let beat = f.call(
        "POST",
        &format!("/v1/tasks/{}/heartbeat", id_of(first)),
        json!({"lease": first["lease"], "progress": {"done": 1, "total": 1}}),
    );
    assert_eq!(beat.status, 200, "{}", beat.body);
    assert_eq!(
        ack.borrow().as_ref().map(|a| a.status),
        Some(200),
        "the competing ack applied"
    );
    let t2 = f.task(&id_of(second));
    assert_eq!(
        t2["state"], "completed",
        "the retried heartbeat did not undo the ack: {t2}"
    );
    let t1 = f.task(&id_of(first));
    assert_eq!(t1["progress"]["done"], 1, "{t1}");
    assert!(
        t1["lease"]["expires_ms"].as_u64().unwrap_or(0) > before,
        "the heartbeat extended the lease: {t1}"
    );
    assert_eq!(f.counter("edgefarm_acks_total"), 1);
}

#[test]
fn an_index_append_that_loses_its_cas_keeps_both_jobs_claimable() {
    let f = Farm::new();
    // A first job makes the queue's partition and its first page: the next submits append to
    // that page with a CAS.
    f.submit(job_spec("first", "1"));
    let other = f.compete_before("q/q/page/", 1, "POST", "/v1/jobs", job_spec("theirs", "1"));
    f.submit(job_spec("mine", "1"));
    assert_eq!(
        other.borrow().as_ref().map(|a| a.status),
        Some(202),
        "the competing submit ran"
    );
    assert!(
        f.store.hits().iter().all(|k| k.starts_with("q/q/page/")) && f.store.hits().len() == 1,
        "the append met the competitor: {:?}",
        f.store.hits()
    );
    let got = claimed(&f.claim("a", 16));
    let mut jobs: Vec<String> = got
        .iter()
        .map(|t| t["job"].as_str().unwrap_or_default().to_string())
        .collect();
    jobs.sort();
    assert_eq!(
        jobs,
        ["first", "mine", "theirs"],
        "every job kept its index entry"
    );
}

#[test]
fn a_job_list_append_that_loses_its_cas_keeps_both_jobs_listed() {
    let f = Farm::new();
    f.submit(job_spec("first", "1"));
    let other = f.compete_before("jobs/", 1, "POST", "/v1/jobs", job_spec("theirs", "1"));
    f.submit(job_spec("mine", "1"));
    assert_eq!(other.borrow().as_ref().map(|a| a.status), Some(202));
    assert_eq!(f.store.hits().len(), 1, "{:?}", f.store.hits());
    let list = f.call("GET", "/v1/jobs?limit=100", Value::Null).body;
    let mut ids: Vec<String> = list["jobs"].as_array().map_or(vec![], |a| {
        a.iter()
            .map(|j| j["id"].as_str().unwrap_or_default().to_string())
            .collect()
    });
    ids.sort();
    assert_eq!(ids, ["first", "mine", "theirs"], "{list}");
}

#[test]
fn an_index_drop_that_loses_its_cas_never_drops_a_newer_entry() {
    let f = Farm::new();
    f.submit(job_spec("done", "1"));
    let t = claimed(&f.claim("a", 1));
    assert_eq!(
        f.call(
            "POST",
            &format!("/v1/tasks/{}/ack", id_of(&t[0])),
            ack_body(&t[0])
        )
        .status,
        200
    );
    // The next claim finds the finished job's entry and drops it from the page; a submit lands
    // in that page between the claim's read and its CAS.
    let other = f.compete_before("q/q/page/", 1, "POST", "/v1/jobs", job_spec("new", "1"));
    let first = claimed(&f.claim("a", 1));
    assert_eq!(other.borrow().as_ref().map(|a| a.status), Some(202));
    assert_eq!(f.store.hits().len(), 1, "{:?}", f.store.hits());
    let got = if first.is_empty() {
        claimed(&f.claim("a", 1))
    } else {
        first
    };
    assert_eq!(got.len(), 1, "the new job's task is still claimable");
    assert_eq!(got[0]["job"], "new");
}

#[test]
fn a_claim_whose_every_cas_loses_gives_up_without_claiming() {
    let f = Farm::new();
    let job = f.submit(job_spec("busy", "1"));
    let before = f.records("seg/");
    f.store.bump_every_cas("seg/");
    let a = f.claim("a", 1);
    assert!(
        f.store.hits().len() > 1,
        "the claim retried: {:?}",
        f.store.hits()
    );
    gave_up(&a, 204);
    f.store.calm();
    assert_eq!(f.records("seg/"), before, "the segment is as it was");
    let t = &f.tasks(&job)[0];
    assert_eq!(
        (t["state"].as_str(), t["attempts"].as_u64()),
        (Some("queued"), Some(0)),
        "{t}"
    );
    assert_eq!(f.counter("edgefarm_claims_total"), 0);
    let again = claimed(&f.claim("a", 1));
    assert_eq!(
        again.len(),
        1,
        "once the contention is gone the claim works"
    );
    assert_eq!(again[0]["attempt"], 1);
}

#[test]
fn an_ack_whose_every_cas_loses_gives_up_and_can_be_sent_again() {
    let f = Farm::new();
    let job = f.submit(job_spec("busy", "1"));
    let t = claimed(&f.claim("a", 1));
    assert_eq!(t.len(), 1);
    let before = f.records("seg/");
    f.store.bump_every_cas("seg/");
    let path = format!("/v1/tasks/{}/ack", id_of(&t[0]));
    let a = f.call("POST", &path, ack_body(&t[0]));
    assert!(f.store.hits().len() > 1, "the ack retried");
    gave_up(&a, 503);
    f.store.calm();
    assert_eq!(
        f.records("seg/"),
        before,
        "the task is as it was: still leased to the node"
    );
    assert_eq!(f.counter("edgefarm_acks_total"), 0);
    let again = f.call("POST", &path, ack_body(&t[0]));
    assert_eq!(
        again.status, 200,
        "the same ack, sent again, applies: {}",
        again.body
    );
    let j = f.call("GET", &format!("/v1/jobs/{job}"), Value::Null).body;
    assert_eq!(j["state"], "completed", "{j}");
    assert_eq!(f.counter("edgefarm_acks_total"), 1);
}

#[test]
fn a_heartbeat_whose_every_cas_loses_gives_up_and_the_lease_holds() {
    let f = Farm::new();
    f.submit(job_spec("busy", "1"));
    let t = claimed(&f.claim("a", 1));
    let before = f.records("seg/");
    f.store.bump_every_cas("seg/");
    let path = format!("/v1/tasks/{}/heartbeat", id_of(&t[0]));
    let a = f.call("POST", &path, json!({"lease": t[0]["lease"]}));
    gave_up(&a, 503);
    f.store.calm();
    assert_eq!(f.records("seg/"), before);
    let again = f.call("POST", &path, json!({"lease": t[0]["lease"]}));
    assert_eq!(
        again.status, 200,
        "the lease is still the node's: {}",
        again.body
    );
}

#[test]
fn a_counter_update_that_loses_its_cas_still_counts_both_claims() {
    let f = Farm::new();
    f.submit(job_spec("counted", "1-2"));
    // Another claim of the same node (so the same counter shard) lands between this claim's
    // read of its shard and its CAS: the claim counts on another shard instead of dropping
    // its event.
    let other = f.compete_before("counters/", 1, "POST", "/v1/queue/q", claim_body("a", 1));
    let mine = claimed(&f.claim("a", 1));
    assert_eq!(mine.len(), 1);
    assert_eq!(other.borrow().as_ref().map(|a| a.status), Some(200));
    assert_eq!(f.store.hits().len(), 1, "{:?}", f.store.hits());
    assert_eq!(
        f.counter("edgefarm_claims_total"),
        2,
        "no claim went uncounted"
    );
}

#[test]
fn a_release_that_loses_its_cas_to_a_claim_of_the_same_segment_requeues_once() {
    let f = Farm::new();
    let job = f.submit(job_spec("released", "1-2"));
    let t = claimed(&f.claim("a", 1));
    assert_eq!(t.len(), 1);
    let other = f.compete_before("seg/", 1, "POST", "/v1/queue/q", claim_body("b", 1));
    let r = f.call(
        "POST",
        &format!("/v1/tasks/{}/release", id_of(&t[0])),
        json!({"lease": t[0]["lease"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let theirs = claimed(other.borrow().as_ref().expect("the competing claim ran"));
    assert_eq!(theirs.len(), 1, "b took the other task");
    assert_ne!(id_of(&theirs[0]), id_of(&t[0]));
    let mine = f.task(&id_of(&t[0]));
    assert_eq!(
        (mine["state"].as_str(), mine["attempts"].as_u64()),
        (Some("queued"), Some(1)),
        "released once: {mine}"
    );
    let states: Vec<String> = f
        .tasks(&job)
        .iter()
        .map(|t| t["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        states.iter().filter(|s| *s == "leased").count(),
        1,
        "b's lease survived the retried release: {states:?}"
    );
}
