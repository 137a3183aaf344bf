//! Webhooks on `edgefarm serve`, end to end: a real receiver on loopback gets each job end
//! once, signed so that it can tell a wrong secret; an event recorded while the receiver is
//! down survives a kill -9 of the server and arrives when both are back; private receivers
//! are refused unless the farm allows them; the farm's own `--webhook` hears of every job.

#[path = "support/serve.rs"]
mod serve;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use serve::Serve;
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_AfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver got: headers and body of each POST.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<(HeaderMap, String)>>>);

impl Inbox {
    fn all(&self) -> Vec<(HeaderMap, String)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn of_job(&self, job: &str) -> Vec<(HeaderMap, Value)> {
        self.all()
            .into_iter()
            .filter_map(|(h, b)| serde_json::from_str::<Value>(&b).ok().map(|v| (h, v)))
            .filter(|(_, v)| v["data"]["id"] == job)
            .collect()
    }

    /// Waits (bounded) until `n` events of `job` arrived.
    async fn wait_for(&self, job: &str, n: usize) -> Vec<(HeaderMap, Value)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.of_job(job);
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "no webhook for {job} after 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A receiver on `port` (0: any); returns its port and a handle that stops it.
async fn receiver(port: u16, inbox: Inbox) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the receiver");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let inbox = inbox.clone();
            async move {
                let body = String::from_utf8_lossy(&body).to_string();
                if let Ok(mut v) = inbox.0.lock() {
                    v.push((headers, body));
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, task)
}

/// What a receiver does: recompute the signature over the exact body it got.
fn signed_by(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{}.{}.{body}", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    h("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(want.as_str()))
}

async fn call(s: &Serve, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = s.http().request(m, s.url(path)).bearer_auth(serve::SECRET);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("the server answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Submits a 2-task command job and runs it to its end as a node would (claim, ack).
async fn run_job(s: &Serve, id: &str, hooks: Value) {
    let spec = json!({"id": id, "type": "command", "frames": "1-2", "chunk_size": 1,
                      "params": {"program": "touchframe"}, "webhooks": hooks});
    let (status, job) = call(s, "POST", "/v1/jobs", Some(spec)).await;
    assert_eq!(status, 202, "{job}");
    for _ in 0..10 {
        let (status, got) = call(
            s,
            "POST",
            "/v1/queue/default",
            Some(json!({"node": "n1", "max": 4})),
        )
        .await;
        if status == 204 {
            break;
        }
        for t in got["tasks"].as_array().into_iter().flatten() {
            let ack = json!({"lease": t["lease"], "status": "done", "result": {"exit_code": 0}});
            let path = format!("/v1/tasks/{}/ack", t["_id"].as_str().unwrap_or_default());
            assert_eq!(call(s, "POST", &path, Some(ack)).await.0, 200);
        }
    }
    assert_eq!(
        call(s, "GET", &format!("/v1/jobs/{id}"), None).await.1["state"],
        "completed"
    );
}

async fn deliveries_of(s: &Serve, job: &str) -> Vec<Value> {
    let (status, list) = call(s, "GET", "/v1/webhooks/deliveries", None).await;
    assert_eq!(status, 200, "{list}");
    list["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["job"] == job)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_end_arrives_once_signed_and_survives_a_receiver_outage_and_a_kill() {
    let inbox = Inbox::default();
    let (port, up) = receiver(0, inbox.clone()).await;
    let mut server = Serve::build()
        .args(&[
            "--webhooks-allow-private",
            "--webhook-first-retry-ms",
            "300",
        ])
        .start()
        .await;
    let hooks = json!([{"url": format!("http://127.0.0.1:{port}/hooks/a"), "secret": HOOK_SECRET}]);

    run_job(&server, "shot-a", hooks.clone()).await;
    let got = inbox.wait_for("shot-a", 1).await;
    let (headers, event) = &got[0];
    let raw = inbox
        .all()
        .into_iter()
        .find(|(h, _)| h.get("webhook-id") == headers.get("webhook-id"))
        .map(|(_, b)| b)
        .unwrap_or_default();
    assert!(
        signed_by(HOOK_SECRET, headers, &raw),
        "a valid signature: {headers:?}"
    );
    assert!(
        !signed_by(OTHER_SECRET, headers, &raw),
        "another secret does not verify"
    );
    assert!(
        !signed_by(HOOK_SECRET, headers, &raw.replace("shot-a", "shot-x")),
        "nor another body"
    );
    assert_eq!(event["type"], "job.completed");
    assert_eq!(event["data"]["state"], "completed");
    assert_eq!(event["data"]["counts"]["completed"], 2);
    let d = deliveries_of(&server, "shot-a").await;
    assert_eq!(
        (d[0]["state"].clone(), d[0]["attempts"].clone()),
        (json!("delivered"), json!(1))
    );

    // The receiver goes down; a job ends; the attempts fail; the server is killed.
    up.abort();
    let _ = up.await;
    run_job(&server, "shot-b", hooks.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deliveries_of(&server, "shot-b").await;
        if d.first().is_some_and(|d| d["attempts"].as_u64() >= Some(2)) {
            assert_eq!(d[0]["state"], "pending", "{d:#?}");
            assert!(
                d[0]["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                "{d:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempts recorded: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let (_, _up_again) = receiver(port, inbox.clone()).await;
    server.restart().await;
    let got = inbox.wait_for("shot-b", 1).await;
    assert_eq!(got[0].1["type"], "job.completed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while deliveries_of(&server, "shot-b").await[0]["state"] != "delivered" {
        assert!(
            Instant::now() < deadline,
            "shot-b's delivery is never marked delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Exactly once each: the receiver saw one event per job, with distinct ids.
    assert_eq!(inbox.of_job("shot-a").len(), 1);
    assert_eq!(inbox.of_job("shot-b").len(), 1);
    let ids: std::collections::BTreeSet<String> = inbox
        .all()
        .iter()
        .filter_map(|(h, _)| {
            h.get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_receivers_are_refused_unless_allowed_and_farm_receivers_hear_every_job() {
    let inbox = Inbox::default();
    let (port, _up) = receiver(0, inbox.clone()).await;
    let strict = Serve::build().start().await;
    let spec = json!({"id": "lan", "type": "command", "frames": "1", "params": {"program": "touchframe"},
                      "webhooks": [{"url": format!("http://127.0.0.1:{port}/x"), "secret": HOOK_SECRET}]});
    let (status, err) = call(&strict, "POST", "/v1/jobs", Some(spec)).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "webhooks[0].url");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("private"),
        "{err}"
    );
    assert_eq!(
        call(&strict, "GET", "/v1/jobs/lan", None).await.0,
        404,
        "nothing stored"
    );

    // A farm receiver on a private address needs the farm's permission to start at all.
    let refused = std::process::Command::new(serve::BIN)
        .args([
            "serve",
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--secret",
            serve::SECRET,
        ])
        .args([
            "--webhook",
            &format!("http://127.0.0.1:{port}/farm"),
            "--webhook-secret",
            HOOK_SECRET,
        ])
        .env_remove("EDGEFARM_SECRET")
        .output()
        .expect("run edgefarm serve");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("private"), "{stderr}");

    let farm = Serve::build()
        .args(&[
            "--webhooks-allow-private",
            "--webhook",
            &format!("http://127.0.0.1:{port}/farm"),
        ])
        .env("EDGEFARM_WEBHOOK_SECRET", HOOK_SECRET)
        .start()
        .await;
    let spec = json!({"id": "plain", "type": "command", "frames": "1-3", "chunk_size": 1, "params": {"program": "touchframe"}});
    assert_eq!(call(&farm, "POST", "/v1/jobs", Some(spec)).await.0, 202);
    assert_eq!(
        call(&farm, "POST", "/v1/jobs/plain/cancel", None).await.0,
        200
    );
    let got = inbox.wait_for("plain", 1).await;
    assert_eq!(got[0].1["type"], "job.canceled");
    assert_eq!(got[0].1["data"]["counts"]["canceled"], 3);

    // The CLI: the deliveries as a table; a deliverer with a wrong credential stops and says so.
    let cli = |args: &[&str], secret: &str| {
        std::process::Command::new(serve::BIN)
            .args(args)
            .args(["--url", &farm.base, "--secret", secret])
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_URL")
            .output()
            .expect("run edgefarm")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cli(&["webhooks"], serve::SECRET);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}");
        let row = text
            .lines()
            .find(|l| l.contains("plain"))
            .unwrap_or_default()
            .to_string();
        if row.starts_with("delivered") {
            assert!(
                row.contains("job.canceled") && row.contains("/farm"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never listed as delivered: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli(&["webhooks", "deliver"], "not-the-farm-secret");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403") && err.contains("due"), "{err}");
}
