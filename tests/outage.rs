//! A server outage does not throw finished work away (issue 15, item 11): `edgefarm serve` is
//! killed with `kill -9` while nodes hold leases, stays down longer than a lease, and restarts.
//! The time it was down does not count against the leases: no other node is handed the tasks
//! at once, a node that finished meanwhile has its ack accepted, and a lease that ran out while
//! the server was down is not counted as a failed attempt.

#[path = "support/serve.rs"]
mod serve;

use serde_json::{json, Value};
use serve::Serve;
use std::time::{Duration, Instant};

const SECRET: &str = "outage-secret";
/// Long enough that the first claims after a restart land within the grace even on a busy
/// machine; the test waits about two of them.
const LEASE_MS: u64 = 8_000;

async fn start() -> Serve {
    Serve::build()
        .secret(SECRET)
        .lease_ms(LEASE_MS)
        .heartbeat_ms(500)
        .poll_ms(200)
        .start()
        .await
}

async fn call(port: u16, method: &str, path: &str, body: Value) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let r = reqwest::Client::new()
        .request(m, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn claim(port: u16, node: &str) -> Option<Value> {
    let (s, b) = call(
        port,
        "POST",
        "/v1/queue/default",
        json!({"node": node, "max": 1}),
    )
    .await;
    assert!(s == 200 || s == 204, "claim answered {s}: {b}");
    b["tasks"].get(0).cloned()
}

async fn submit(port: u16, id: &str) {
    let spec = json!({"id": id, "type": "command", "frames": "1", "max_attempts": 1,
                      "params": {"program": "touchframe", "args": ["{frame}"]}});
    let (s, b) = call(port, "POST", "/v1/jobs", spec).await;
    assert_eq!(s, 202, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outage_does_not_count_against_leases() {
    let mut server = start().await;
    let port = server.port;
    submit(port, "finished-while-down").await;
    let finished = claim(port, "node-a").await.expect("node-a gets a task");
    submit(port, "silent-node").await;
    let silent = claim(port, "node-b").await.expect("node-b gets a task");

    // kill -9, and stay down past the leases.
    server.kill();
    tokio::time::sleep(Duration::from_millis(LEASE_MS + 1_000)).await;
    server.restart().await;

    assert!(
        claim(port, "node-c").await.is_none(),
        "right after the restart no lease has lapsed: the nodes get a lease length to be heard from"
    );
    let fid = finished["_id"].as_str().unwrap_or_default();
    let (s, b) = call(
        port,
        "POST",
        &format!("/v1/tasks/{fid}/ack"),
        json!({"lease": finished["lease"], "status": "done", "result": {"exit_code": 0}}),
    )
    .await;
    assert_eq!(
        s, 200,
        "the ack of work finished while the server was down is kept: {b}"
    );
    assert_eq!(b["state"], "completed");

    // node-b never comes back: once the grace is over its task goes to another node, and its
    // lease, which ran out while the server was down, does not count as a failed attempt
    // (with max_attempts 1, a counted one would fail the job).
    let deadline = Instant::now() + Duration::from_secs(120);
    let taken = loop {
        if let Some(t) = claim(port, "node-c").await {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the silent node's task should go to another node after the grace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(taken["_id"], silent["_id"]);
    let sid = silent["_id"].as_str().unwrap_or_default();
    let (_, t) = call(port, "GET", &format!("/v1/tasks/{sid}"), Value::Null).await;
    assert_eq!(
        (t["failures"].as_u64(), t["state"].as_str()),
        (Some(0), Some("leased")),
        "the lapse during the outage is not a failure: {t}"
    );
    let (_, job) = call(port, "GET", "/v1/jobs/silent-node", Value::Null).await;
    assert_eq!(job["state"], "active", "{job}");
}
