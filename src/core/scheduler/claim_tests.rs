//! Which records a claim reads: the tasks being rendered sit at the head of the claim index and
//! every claim walks past them, so walking past one must cost its segment only.

use crate::core::{handle, Config, Ctx, SeqIds};
use crate::store::conformance::block_on;
use crate::store::{Capabilities, Cond, Memory, Store, StoreError, Versioned, Write};
use serde_json::{json, Value};
use std::cell::RefCell;

/// The memory store, noting every key read.
#[derive(Default)]
struct Reads {
    inner: Memory,
    keys: RefCell<Vec<String>>,
}

impl Store for Reads {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.keys.borrow_mut().push(key.to_string());
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: &[u8], cond: Cond) -> Result<Write, StoreError> {
        self.inner.put(key, value, cond).await
    }
    async fn delete(&self, key: &str, cond: Cond) -> Result<Write, StoreError> {
        self.inner.delete(key, cond).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

fn call(store: &Reads, path: &str, body: Value) -> Value {
    let (config, ids) = (Config::new("claim-tests-secret"), SeqIds::default());
    let ctx = Ctx {
        store,
        config: &config,
        now_ms: 1_800_000_000_000,
        ids: &ids,
        notes: Default::default(),
    };
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", "Bearer claim-tests-secret")
        .body(bytes::Bytes::from(body.to_string()))
        .unwrap_or_default();
    let resp = block_on(handle(req, &ctx));
    serde_json::from_slice(resp.body()).unwrap_or(Value::Null)
}

fn submit(store: &Reads, name: &str) -> String {
    let job = call(
        store,
        "/v1/jobs",
        json!({"id": name, "type": "command", "params": {"program": "p"}}),
    );
    job["id"].as_str().unwrap_or_default().to_string()
}

fn claim(store: &Reads, node: &str) -> Value {
    call(store, "/v1/queue/default", json!({"node": node, "max": 1}))["tasks"][0]["job"].clone()
}

#[test]
fn claim_walks_past_tasks_in_flight_without_reading_their_jobs() {
    let store = Reads::default();
    let (first, second, third) = (
        submit(&store, "first"),
        submit(&store, "second"),
        submit(&store, "third"),
    );
    assert_eq!(claim(&store, "n1"), json!(first));
    assert_eq!(claim(&store, "n2"), json!(second));
    store.keys.borrow_mut().clear();
    assert_eq!(
        claim(&store, "n3"),
        json!(third),
        "the third job should be the one left"
    );
    let keys = store.keys.borrow();
    let read = |prefix: &str| keys.iter().any(|k| k.starts_with(prefix));
    assert!(
        read(&format!("seg/{first}/")) && read(&format!("seg/{second}/")),
        "the segments of the tasks in flight are read: {keys:?}"
    );
    assert!(
        !read(&format!("job/{first}")) && !read(&format!("job/{second}")),
        "their job records are not: {keys:?}"
    );
    assert!(
        read(&format!("job/{third}")),
        "the claimed job is: {keys:?}"
    );
}
