//! Timeouts and limits: slow clients are cut off after the header timeout while a node keeps
//! claiming, a body that trickles in is answered 408, the connection cap refuses (and logs)
//! connections beyond it, and long polls are capped per client.

use super::support::{start, wait_until, SECRET};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slow connections opened at once (well under the default connection cap).
const SLOW: usize = 60;
const HEADER_TIMEOUT_S: u64 = 2;

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_closed_after_the_header_timeout_while_a_node_keeps_claiming() {
    let timeout = HEADER_TIMEOUT_S.to_string();
    let serve = start(&["--header-timeout-s", &timeout]).await;
    serve.submit("1-5000", "p").await;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(("127.0.0.1", serve.port))
            .await
            .expect("connect");
        // A request line and one header, then nothing more.
        s.write_all(b"POST /v1/queue/default HTTP/1.1\r\nHost: farm\r\n")
            .await
            .expect("write");
        slow.push(tokio::spawn(async move {
            read_until_closed(s).await;
            Instant::now()
        }));
    }
    // A node claims and acks the whole time the slow clients hang.
    let mut claims = 0;
    let mut held = None;
    while slow.iter().any(|s| !s.is_finished()) {
        held = serve.claim("steady", held.as_ref()).await;
        assert!(held.is_some(), "the node is served while slow clients wait");
        claims += 1;
        assert!(
            opened.elapsed() < Duration::from_secs(60),
            "slow connections still open after 60 s"
        );
    }
    for s in slow {
        let closed = s.await.expect("slow client") - opened;
        assert!(
            closed >= Duration::from_millis(HEADER_TIMEOUT_S * 1000 - 200),
            "a slow client was closed after the header timeout, not before ({closed:?})"
        );
    }
    assert!(
        claims >= 5,
        "the node kept claiming while the slow clients hung ({claims} claims)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_answered_408() {
    // Body timeout: header timeout + 1 MiB at 10 MB/s, about 2.1 s.
    let serve = start(&["--header-timeout-s", "2", "--min-body-rate", "10000000"]).await;
    let mut s = TcpStream::connect(("127.0.0.1", serve.port))
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: farm\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\""
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let answer = tokio::time::timeout(Duration::from_secs(30), read_until_closed(s))
        .await
        .expect("the server answers and closes within 30 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_and_logged() {
    let serve = start(&["--max-connections", "4", "--header-timeout-s", "120"]).await;
    // Four idle connections take every place (accepted in the order they were opened).
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(
            TcpStream::connect(("127.0.0.1", serve.port))
                .await
                .expect("connect"),
        );
    }
    let mut extra = TcpStream::connect(("127.0.0.1", serve.port))
        .await
        .expect("the kernel still completes the handshake");
    extra
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: farm\r\n\r\n")
        .await
        .ok();
    let answer = tokio::time::timeout(Duration::from_secs(20), read_until_closed(extra))
        .await
        .expect("a connection beyond the cap is closed at once");
    assert!(answer.is_empty(), "it gets no answer");
    wait_until("the refusal is logged", Duration::from_secs(10), || async {
        serve.log().contains("connection limit reached")
    })
    .await;
    // Places freed (the test client's own pooled connection may hold one): requests get
    // through again.
    open.clear();
    let health = serve.url("/v1/health");
    wait_until("a freed place is usable", Duration::from_secs(20), || {
        let req = reqwest::Client::new().get(&health).send();
        async move { req.await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_beyond_the_per_client_cap_are_answered_at_once() {
    let serve = start(&["--max-waits-per-client", "2"]).await;
    let poll = |node: &'static str| {
        let (http, url) = (serve.http().clone(), serve.url("/v1/queue/default?wait=20"));
        async move {
            let start = Instant::now();
            let r = http
                .post(&url)
                .bearer_auth(SECRET)
                .json(&json!({ "node": node }))
                .send()
                .await
                .expect("poll");
            (
                r.status().as_u16(),
                r.headers().contains_key("retry-after"),
                start.elapsed(),
            )
        }
    };
    // Three at once from one client: two are held, whichever comes third is answered at once.
    let mut polls: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|n| tokio::spawn(poll(n)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while polls.iter().all(|p| !p.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "no long poll was answered at once"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = polls
        .iter()
        .position(|p| p.is_finished())
        .expect("one finished");
    let (status, retry_after, took) = polls.remove(done).await.expect("poll");
    assert_eq!(status, 204, "nothing to claim");
    assert!(retry_after, "the poll over the cap carries Retry-After");
    assert!(took < Duration::from_secs(10), "and is not held ({took:?})");
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "the other two are still held"
    );
    for p in polls {
        p.abort();
    }
}
