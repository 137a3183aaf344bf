//! Idle nodes cost the server almost nothing: a held long poll is re-run only when the core
//! says a task may have become claimable (or a lease lapses), never by its own re-run.

use super::support::{start, SECRET};
use serde_json::json;
use std::time::Duration;

/// Seconds the idle long polls are watched.
const IDLE_WINDOW_S: u64 = 3;
/// Claim-and-ack cycles of the busy node (counted, so a loaded machine only slows it down).
const BUSY_CYCLES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_long_polls_cost_a_small_fraction_of_one_claiming_node() {
    let serve = start(&[]).await;
    let idle: Vec<_> = (0..3)
        .map(|i| {
            let (http, url) = (serve.http().clone(), serve.url("/v1/queue/default?wait=30"));
            tokio::spawn(async move {
                loop {
                    let r = http
                        .post(&url)
                        .bearer_auth(SECRET)
                        .json(&json!({"node": format!("idle-{i}")}))
                        .send()
                        .await;
                    assert!(
                        r.is_ok_and(|r| r.status() == 204),
                        "an idle long poll ends in 204"
                    );
                }
            })
        })
        .collect();
    // Let the three polls reach the server and be held before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = serve.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(IDLE_WINDOW_S)).await;
    let idle_ticks = serve.cpu_ticks() - before;
    for poll in &idle {
        poll.abort();
    }

    let job = serve.submit(&format!("1-{BUSY_CYCLES}"), "p").await;
    let before = serve.cpu_ticks();
    let mut held = None;
    for _ in 0..BUSY_CYCLES {
        held = serve.claim("busy", held.as_ref()).await;
        assert!(held.is_some(), "the busy node always finds a task");
    }
    let busy_ticks = serve.cpu_ticks() - before;
    eprintln!("server CPU ticks: idle {idle_ticks} over {IDLE_WINDOW_S} s, busy {busy_ticks} over {BUSY_CYCLES} cycles");
    assert!(!job.is_empty());
    assert!(
        busy_ticks >= 10,
        "the busy phase should use measurable CPU ({busy_ticks} ticks)"
    );
    assert!(
        idle_ticks * 10 <= busy_ticks,
        "3 idle long polls for {IDLE_WINDOW_S} s used {idle_ticks} ticks of server CPU; \
         {BUSY_CYCLES} claim+ack cycles of one node used {busy_ticks}: idle must be under a tenth"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_long_poll_gets_a_task_when_its_lease_lapses() {
    let serve = start(&["--lease-ms", "1500"]).await;
    serve.submit("1", "p").await;
    let held = serve.claim("silent", None).await;
    assert!(held.is_some(), "the silent node holds the only task");
    let start = std::time::Instant::now();
    let resp = serve
        .http()
        .post(serve.url("/v1/queue/default?wait=25"))
        .bearer_auth(SECRET)
        .json(&json!({"node": "waiting"}))
        .send()
        .await
        .expect("long poll");
    let waited = start.elapsed();
    assert_eq!(
        resp.status(),
        200,
        "the lapsed task is handed to the waiting node"
    );
    assert!(
        waited < Duration::from_secs(20),
        "at the lease's expiry, not at the end of the wait ({waited:?})"
    );
}
