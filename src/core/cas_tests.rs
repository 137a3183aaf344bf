//! The helper's exhaustion policy, on its own and through `handle()`: a heartbeat or ack whose
//! segment never stops changing answers 503 `busy` (and leaves the task as it was), while a claim
//! leaves a contended segment to the next claim.

use super::*;
use crate::store::conformance::block_on;
use crate::store::{Capabilities, Cond, Memory, StoreError, Versioned, Write};
use std::cell::Cell;

/// The memory store, where every conditional write loses: a record changed by someone
/// else between each read and its write, for ever.
#[derive(Default)]
struct AlwaysLoses {
    inner: Memory,
    puts: Cell<usize>,
}

impl Store for AlwaysLoses {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        self.puts.set(self.puts.get() + 1);
        match cond {
            Cond::Any => self.inner.put(key, value, cond).await,
            Cond::Absent | Cond::Version(_) => Ok(Write::Lost),
        }
    }
    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        self.inner.delete(key, cond).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

fn bump(store: &AlwaysLoses) -> Result<u64> {
    block_on(update(
        store,
        "k",
        "the counter",
        async |rec: Option<Rec<u64>>| {
            let n = rec.map_or(0, |r| r.value) + 1;
            Ok(Step::Write(n, n))
        },
    ))
}

#[test]
fn exhausted_retries_answer_503_busy_with_retry_after() {
    let store = AlwaysLoses::default();
    let err = bump(&store).expect_err("every write lost");
    assert!(matches!(err, Error::Busy(_)), "{err:?}");
    assert_eq!(store.puts.get(), CAS_RETRIES, "one write per round");
    let resp = err.into_response();
    assert_eq!(resp.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(
        body["error"]["message"],
        "the counter is changing too often; try again"
    );
}

#[test]
fn exhausted_retries_write_nothing() {
    let store = AlwaysLoses::default();
    let _ = bump(&store);
    assert_eq!(block_on(store.inner.get("k")).ok().flatten(), None);
}

#[test]
fn a_lost_write_is_decided_again_on_a_fresh_read() {
    let store = Memory::default();
    let seen = Cell::new(0);
    let got = block_on(update(&store, "k", "k", async |rec: Option<Rec<u64>>| {
        seen.set(seen.get() + 1);
        if seen.get() == 1 {
            // Someone else writes between our read and our write.
            let _ = store.put("k", b"41", Cond::Any).await;
        }
        let n = rec.map_or(0, |r| r.value) + 1;
        Ok(Step::Write(n, n))
    }));
    assert_eq!(got.ok(), Some(42), "the second round saw the other write");
    assert_eq!(seen.get(), 2);
}

#[test]
fn stop_writes_nothing_and_errors_pass_through() {
    let store = AlwaysLoses::default();
    let got = block_on(update(&store, "k", "k", async |_: Option<Rec<u64>>| {
        Ok(Step::<u64, _>::Stop(7))
    }));
    assert_eq!(got.ok(), Some(7));
    assert_eq!(store.puts.get(), 0);
    let got = block_on(update(&store, "k", "k", async |_: Option<Rec<u64>>| {
        Err::<Step<u64, ()>, _>(Error::NotFound("k".into()))
    }));
    assert!(matches!(got, Err(Error::NotFound(_))));
}

#[test]
fn best_effort_turns_busy_into_later_and_nothing_else() {
    assert!(matches!(
        best_effort(Err::<(), _>(busy("x")), "t"),
        Ok(None)
    ));
    assert!(matches!(best_effort(Ok(3), "t"), Ok(Some(3))));
    let other = best_effort(Err::<(), _>(Error::NotFound("x".into())), "t");
    assert!(matches!(other, Err(Error::NotFound(_))));
}

/// The memory store; while `armed`, every conditional write of a task segment loses.
#[derive(Default)]
struct SegmentsBusy {
    inner: Memory,
    armed: Cell<bool>,
}

impl Store for SegmentsBusy {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        if self.armed.get() && key.starts_with("seg/") && cond != Cond::Any {
            return Ok(Write::Lost);
        }
        self.inner.put(key, value, cond).await
    }
    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        self.inner.delete(key, cond).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

fn call(
    store: &SegmentsBusy,
    path: &str,
    body: serde_json::Value,
) -> (http::StatusCode, serde_json::Value, bool) {
    use crate::core::{handle, Config, Ctx, SeqIds};
    let (config, ids) = (Config::new("cas-tests-secret"), SeqIds::default());
    let ctx = Ctx {
        store,
        config: &config,
        now_ms: 1_800_000_000_000,
        ids: &ids,
        notes: Default::default(),
    };
    let req = http::Request::builder()
        .method(if body.is_null() { "GET" } else { "POST" })
        .uri(path)
        .header("authorization", "Bearer cas-tests-secret")
        .body(bytes::Bytes::from(if body.is_null() {
            String::new()
        } else {
            body.to_string()
        }))
        .unwrap_or_default();
    let resp = block_on(handle(req, &ctx));
    let retry_after = resp.headers().contains_key(http::header::RETRY_AFTER);
    let value = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp.status(), value, retry_after)
}

fn submit_and_claim(store: &SegmentsBusy) -> (String, String) {
    let job = serde_json::json!({"id": "j1", "type": "command", "params": {"program": "p"}});
    assert_eq!(call(store, "/v1/jobs", job).0, http::StatusCode::ACCEPTED);
    let poll = serde_json::json!({"node": "n1", "max": 1});
    let (_, got, _) = call(store, "/v1/queue/default", poll);
    let task = &got["tasks"][0];
    let field = |k: &str| task[k].as_str().unwrap_or_default().to_string();
    (field("_id"), field("lease"))
}

#[test]
fn a_heartbeat_whose_segment_never_stops_changing_answers_503_busy_and_changes_nothing() {
    let store = SegmentsBusy::default();
    let (task, lease) = submit_and_claim(&store);
    let before = call(
        &store,
        &format!("/v1/tasks/{task}"),
        serde_json::Value::Null,
    )
    .1;
    store.armed.set(true);
    let beat = serde_json::json!({"lease": lease, "activity": "rendering"});
    let (status, body, retry_after) = call(&store, &format!("/v1/tasks/{task}/heartbeat"), beat);
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert!(retry_after, "a 503 says when to try again");
    let ack = serde_json::json!({"status": "done", "lease": lease});
    let (status, body, _) = call(&store, &format!("/v1/tasks/{task}/ack"), ack.clone());
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let mut in_poll = ack;
    in_poll["_id"] = serde_json::json!(task);
    let poll = serde_json::json!({"node": "n1", "max": 0, "tasks": [in_poll]});
    let (status, body, _) = call(&store, "/v1/queue/default", poll);
    assert_eq!(
        status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "an ack in a poll that cannot land fails the whole poll, to be sent again: {body}"
    );
    store.armed.set(false);
    let after = call(
        &store,
        &format!("/v1/tasks/{task}"),
        serde_json::Value::Null,
    )
    .1;
    assert_eq!(after, before, "the task is as it was");
    let ack = serde_json::json!({"status": "done", "lease": lease});
    let (status, body, _) = call(&store, &format!("/v1/tasks/{task}/ack"), ack);
    assert_eq!(status, http::StatusCode::OK, "sent again, it lands: {body}");
}

#[test]
fn a_claim_leaves_a_segment_that_never_stops_changing_to_the_next_claim() {
    let store = SegmentsBusy::default();
    let job = serde_json::json!({"id": "j1", "type": "command", "params": {"program": "p"}});
    assert_eq!(call(&store, "/v1/jobs", job).0, http::StatusCode::ACCEPTED);
    store.armed.set(true);
    let poll = serde_json::json!({"node": "n1", "max": 1});
    let (status, body, _) = call(&store, "/v1/queue/default", poll.clone());
    assert_eq!(
        status,
        http::StatusCode::NO_CONTENT,
        "nothing claimed, no error: {body}"
    );
    store.armed.set(false);
    let (_, got, _) = call(&store, "/v1/queue/default", poll);
    assert_eq!(
        got["tasks"][0]["_id"], "j1.0",
        "the entry was kept for this claim"
    );
}
