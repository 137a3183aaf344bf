//! `edgefarm serve` on SQLite keeps every acknowledged write through a `kill -9` and restart.

#[path = "conformance/harness.rs"]
#[allow(dead_code)]
mod harness;

use serde_json::json;

async fn call(
    port: u16,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(harness::SECRET)
        .json(&body)
        .send()
        .await
        .expect("server answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_and_restart() {
    let mut server = harness::start_server(harness::LEASE_MS).await;
    let port = server.port;

    // 40 submissions from 8 concurrent clients, a claim and an ack: all acknowledged.
    let submits = futures_util::future::join_all((0..40).map(|i| async move {
        call(port, reqwest::Method::POST, "/v1/jobs", json!({"id": format!("job-{i}"), "type": "command", "frames": "1-3", "chunk_size": 1, "params": {"program": "p"}})).await
    }))
    .await;
    assert!(
        submits.iter().all(|(s, _)| *s == 202),
        "every submission acknowledged"
    );
    let (s, claimed) = call(
        port,
        reqwest::Method::POST,
        "/v1/queue/default",
        json!({"node": "n", "max": 2}),
    )
    .await;
    assert_eq!(s, 200);
    let t = claimed["tasks"][0].clone();
    let (s, _) = call(
        port,
        reqwest::Method::POST,
        &format!("/v1/tasks/{}/ack", t["_id"].as_str().unwrap_or_default()),
        json!({"lease": t["lease"], "status": "done"}),
    )
    .await;
    assert_eq!(s, 200);

    // kill -9: no chance to flush anything.
    server.kill();
    server.restart().await;

    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = call(
            port,
            reqwest::Method::GET,
            &format!("/v1/jobs?limit=15&cursor={cursor}"),
            json!(null),
        )
        .await;
        ids.extend(
            page["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|j| j["id"].as_str().unwrap_or_default().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    ids.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("job-{i}")).collect();
    want.sort();
    assert_eq!(
        ids, want,
        "every acknowledged job is there after the restart"
    );
    let job = t["job"].as_str().unwrap_or_default();
    let (_, tasks) = call(
        port,
        reqwest::Method::GET,
        &format!("/v1/jobs/{job}/tasks"),
        json!(null),
    )
    .await;
    let states: Vec<_> = tasks["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        states.contains(&"completed".to_string()),
        "the acknowledged ack survived: {states:?}"
    );
    assert!(
        states.contains(&"leased".to_string()),
        "the second claim's lease survived: {states:?}"
    );
    let (s, again) = call(port, reqwest::Method::POST, "/v1/jobs", json!({"id": "job-3", "type": "command", "frames": "1-3", "chunk_size": 1, "params": {"program": "p"}})).await;
    assert_eq!(
        (s, again["id"].as_str()),
        (200, Some("job-3")),
        "a re-submit after the restart is recognised as the same job"
    );
}
