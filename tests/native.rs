//! What only the native shell does: long polls, job event streams, the generated secret and a
//! graceful shutdown.

#[path = "conformance/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::Serve;

use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn submit(base: &str, frames: &str) -> Value {
    client()
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(harness::SECRET)
        .json(&json!({"type": "command", "frames": frames, "chunk_size": 1, "params": {"program": "p"}}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_when_a_job_is_submitted() {
    let server = harness::start_server(harness::LEASE_MS).await;
    let base = server.base.clone();
    // The poll may wait the server's longest, 30 s; an answer well before that came from the
    // submission waking it, not from the end of the wait (which claims again). No
    // sleep decides the order: a poll that reaches the server after the submission gets the task
    // at once, and either way it is answered no earlier than the submission was sent.
    let start = Instant::now();
    let poller = {
        let base = base.clone();
        tokio::spawn(async move {
            let r = client()
                .post(format!("{base}/v1/queue/default?wait=30"))
                .bearer_auth(harness::SECRET)
                .json(&json!({"node": "n"}))
                .send()
                .await
                .expect("poll");
            (r.status().as_u16(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let submitted = Instant::now();
    submit(&base, "1").await;
    let acknowledged = Instant::now();
    let (status, answered) = poller.await.expect("poller");
    assert_eq!(status, 200, "the held poll gets the new task");
    assert!(
        answered >= submitted,
        "it was held until the submission ({:?} after the start, submitted after {:?})",
        answered - start,
        submitted - start
    );
    assert!(
        answered.saturating_duration_since(acknowledged) < Duration::from_secs(15),
        "and answered right after it, not at the end of the 30 s wait ({:?} after the start)",
        answered - start
    );
    let start = Instant::now();
    let r = client()
        .post(format!("{base}/v1/queue/default?wait=1"))
        .bearer_auth(harness::SECRET)
        .json(&json!({"node": "n"}))
        .send()
        .await
        .expect("poll");
    assert_eq!(r.status(), 204, "nothing to claim: 204 after the wait");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "held for the wait"
    );
}

/// The state of the next `data:` event of a job event stream (waits up to 60 s for it).
async fn next_event_state(stream: &mut reqwest::Response, buf: &mut String) -> String {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap_or_default();
                return v["state"].as_str().unwrap_or("").to_string();
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(60), stream.chunk())
            .await
            .expect("an event within 60 s")
            .expect("the stream reads");
        let chunk = chunk.expect("the stream goes on until the job finished");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_event_stream_follows_the_job_to_the_end() {
    let server = harness::start_server(harness::LEASE_MS).await;
    let base = server.base.clone();
    let job = submit(&base, "1-2").await;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    // Lockstep, no sleeps: each step waits for the event of the one before, since the stream
    // sends the job as it is when it reads it (changes between two reads make one event).
    let mut stream = client()
        .get(format!("{base}/v1/jobs/{id}"))
        .bearer_auth(harness::SECRET)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    let mut buf = String::new();
    let mut states = vec![next_event_state(&mut stream, &mut buf).await];
    for _ in 0..2 {
        let r: Value = client()
            .post(format!("{base}/v1/queue/default"))
            .bearer_auth(harness::SECRET)
            .json(&json!({"node": "n"}))
            .send()
            .await
            .expect("claim")
            .json()
            .await
            .expect("json");
        let t = &r["tasks"][0];
        let ack = client()
            .post(format!(
                "{base}/v1/tasks/{}/ack",
                t["_id"].as_str().unwrap_or_default()
            ))
            .bearer_auth(harness::SECRET)
            .json(&json!({"lease": t["lease"], "status": "done"}))
            .send()
            .await
            .expect("ack");
        assert_eq!(ack.status(), 200);
        // At least one event follows each step (one per read that saw a change).
        states.push(next_event_state(&mut stream, &mut buf).await);
    }
    // Then whatever was left, until the stream ends after the finished job.
    while states.last().map(String::as_str) != Some("completed") {
        states.push(next_event_state(&mut stream, &mut buf).await);
    }
    let rest = tokio::time::timeout(Duration::from_secs(60), stream.chunk())
        .await
        .expect("the stream ends once the job finished");
    assert!(matches!(rest, Ok(None)), "and sends nothing more: {rest:?}");
    assert_eq!(
        states.first().map(String::as_str),
        Some("queued"),
        "the first event is the job as it was: {states:?}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("completed"),
        "the last event is the finished job: {states:?}"
    );
    assert!(states.len() >= 3, "each change is an event: {states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_makes_a_secret_once_and_stops_cleanly_on_sigterm() {
    let mut server = Serve::build().generated_secret().start().await;
    let base = server.base.clone();
    let secret = std::fs::read_to_string(server.data().join("secret"))
        .expect("a generated secret is kept in the data dir");
    let r = client()
        .get(format!("{base}/v1/jobs"))
        .bearer_auth(secret.trim())
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200, "the generated secret works");
    let status = server.terminate().expect("serve exits");
    assert!(
        status.success(),
        "SIGTERM stops serve with exit code 0, got {status:?}"
    );
    let out = server.stdout();
    assert!(
        out.contains(secret.trim()),
        "the first start prints the new secret and how to use it"
    );
    server.restart().await;
    let again = std::fs::read_to_string(server.data().join("secret")).expect("secret");
    assert_eq!(again, secret, "a restart keeps the same secret");
}

/// The sizes of the batches the core thread answered, from its debug log after byte `from`.
fn batch_sizes(log: &str, from: usize) -> Vec<usize> {
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("batch answered"))
        .filter_map(|l| l.split("requests=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `serve` runs the requests of a batch one after another in one transaction: a claim later in
/// the batch must see the leases granted earlier in it (uncommitted until the batch ends). 50
/// claims at once over 20 tasks; the server's debug log shows they shared batches, and a round
/// where none did is sent again (a test that proved nothing must not pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_in_one_batch_never_share_a_task() {
    let server = Serve::build()
        .secret(harness::SECRET)
        .env(
            "EDGEFARM_LOG",
            "warn,edgefarm::runtime::native::batch=debug",
        )
        .start()
        .await;
    let http = reqwest::Client::new();
    for round in 0..10 {
        let queue = format!("burst-{round}");
        let r = http
            .post(server.url("/v1/jobs"))
            .bearer_auth(harness::SECRET)
            .json(&json!({"type": "command", "queue": queue, "frames": "1-20", "chunk_size": 1, "params": {"program": "p"}}))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status(), 202);
        let from = server.log().len();
        let claims = futures_util::future::join_all((0..50).map(|i| {
            let (http, url) = (http.clone(), server.url(&format!("/v1/queue/{queue}")));
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(harness::SECRET)
                    .json(&json!({"node": format!("node-{i}"), "max": 1}))
                    .send()
                    .await
                    .expect("claim");
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert!(
                    status == 200 || status == 204,
                    "claim answered {status}: {body}"
                );
                body["tasks"]
                    .as_array()
                    .map_or(vec![], |t| t.iter().map(|t| t["_id"].to_string()).collect())
            }
        }))
        .await;
        let mut all: Vec<String> = claims.into_iter().flatten().collect();
        assert_eq!(all.len(), 20, "all 20 tasks were claimed");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20, "no task went to two claimers");
        let sizes = batch_sizes(&server.log(), from);
        if sizes.iter().any(|&n| n >= 2) {
            eprintln!("round {round}: claims answered in batches of {sizes:?}");
            return;
        }
    }
    panic!(
        "in 10 rounds no batch held two claims: nothing was tested\n{}",
        server.log()
    );
}
