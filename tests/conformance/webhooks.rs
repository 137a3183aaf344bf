//! Webhooks: a job's end is recorded once, signed, handed to one deliverer at a time, retried
//! after a failure; bad receivers are refused by field; views never show a secret.
//!
//! One case: the outbox is the farm's, so a second case asking what is due at the same time on
//! a shared server would take this one's requests. Where the farm delivers by itself
//! (`edgefarm serve`; a Durable Object's alarm) its deliverer may take them first (tests/webhooks.rs
//! checks what `serve` sends); then the case checks the deliveries list.

use crate::harness::Farm;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hooks(url: &str) -> Value {
    json!([{"url": url, "secret": SECRET}])
}

/// The signature a receiver expects, computed here from the Standard Webhooks rule.
fn expected_signature(id: &str, ts: &str, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn header(req: &Value, name: &str) -> String {
    req["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn deliveries_of(f: &Farm, job: &str) -> Vec<Value> {
    let r = f.call("GET", "/v1/webhooks/deliveries", None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["job"] == job)
        .cloned()
        .collect()
}

/// The due requests of `job` (others' are reported back as not sent: status none).
async fn due_of(f: &Farm, job: &str) -> Vec<Value> {
    let r = f.call("POST", "/v1/webhooks/due", None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let all = r.json()["requests"].as_array().cloned().unwrap_or_default();
    let (mine, others): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|q| {
        serde_json::from_str::<Value>(q["body"].as_str().unwrap_or("{}"))
            .map(|b| b["data"]["id"] == job)
            .unwrap_or(false)
    });
    if !others.is_empty() {
        let reports: Vec<Value> = others
            .iter()
            .map(|o| json!({"delivery": o["delivery"], "target": o["target"], "error": "not this case's"}))
            .collect();
        f.call(
            "POST",
            "/v1/webhooks/report",
            Some(json!({"reports": reports})),
        )
        .await;
    }
    mine
}

/// Waits (bounded) until the farm's own deliverer has tried `job`'s event.
async fn attempted(f: &Farm, job: &str) -> Vec<Value> {
    for _ in 0..200 {
        let d = deliveries_of(f, job).await;
        if d.iter().any(|d| d["attempts"].as_u64() >= Some(1)) {
            return d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the server's deliverer never tried the event of {job}");
}

async fn ack_all(f: &Farm, job: &str) {
    for _ in 0..10 {
        let got = f.claim("hook-node", 16).await;
        if got.is_empty() {
            break;
        }
        for t in got.iter().filter(|t| t["job"] == job) {
            assert_eq!(f.done(t).await.status, 200);
        }
    }
}

async fn a_job_end_is_one_signed_delivery(f: &Farm) {
    // Bad receivers: refused by field, nothing stored.
    let refused = [
        (
            json!([{"url": "http://127.0.0.1:9/x", "secret": SECRET}]),
            "webhooks[0].url",
        ),
        (
            json!([{"url": "http://169.254.169.254/", "secret": SECRET}]),
            "webhooks[0].url",
        ),
        (
            json!([{"url": "ftp://example.com/", "secret": SECRET}]),
            "webhooks[0].url",
        ),
        (
            json!([{"url": "https://hooks.example.com/a", "secret": "hunter2"}]),
            "webhooks[0].secret",
        ),
        (
            json!([{"url": "https://hooks.example.com/a"}]),
            "webhooks[0].secret",
        ),
        (
            json!([{"url": "https://hooks.example.com/a", "secret": SECRET},
                   {"url": "https://hooks.example.com/a", "secret": SECRET}]),
            "webhooks",
        ),
        (
            json!((0..5)
                .map(|i| json!({"url": format!("https://h.example.com/{i}"), "secret": SECRET}))
                .collect::<Vec<_>>()),
            "webhooks",
        ),
    ];
    for (i, (bad, field)) in refused.iter().enumerate() {
        let id = format!("{}-badhook-{i}", f.queue());
        let spec = json!({"id": id, "type": "command", "queue": f.queue(), "frames": "1",
                          "params": {"program": "touchframe"}, "webhooks": bad});
        let r = f.call("POST", "/v1/jobs", Some(spec)).await;
        assert_eq!(r.status, 400, "{bad}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["error"]["field"], *field, "{bad}");
        assert_eq!(
            f.call("GET", &format!("/v1/jobs/{id}"), None).await.status,
            404
        );
    }

    let job = f
        .submit(
            json!({"frames": "1-2", "webhooks": hooks("https://hooks.example.com/edgefarm/T0KEN")}),
        )
        .await;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    for path in [format!("/v1/jobs/{id}"), "/v1/jobs".to_string()] {
        let text = String::from_utf8_lossy(&f.call("GET", &path, None).await.body).to_string();
        assert!(
            !text.contains(SECRET) && !text.contains("T0KEN"),
            "{path} shows the secret: {text}"
        );
    }
    assert_eq!(
        f.job(&id).await["webhooks"],
        json!([{"url": "https://hooks.example.com/…"}])
    );
    assert!(
        deliveries_of(f, &id).await.is_empty(),
        "nothing before the job ends"
    );
    ack_all(f, &id).await;
    assert_eq!(f.job(&id).await["state"], "completed");
    // Reads of the ended job repeat the emit: still one event.
    for _ in 0..3 {
        f.job(&id).await;
    }

    // On `edgefarm serve`, and in a Durable Object (its alarm), the farm delivers by itself and
    // may take the request first: then the deliveries list shows its attempt.
    let reqs = if f.is_native_server().await {
        Vec::new()
    } else {
        due_of(f, &id).await
    };
    if reqs.is_empty() {
        let d = attempted(f, &id).await;
        assert_eq!(d.len(), 1, "one event, one receiver: {d:#?}");
        assert_eq!(d[0]["event"], "job.completed");
        assert_eq!(d[0]["url"], "https://hooks.example.com/edgefarm/T0KEN");
    } else {
        assert_eq!(reqs.len(), 1, "one event, one receiver: {reqs:#?}");
        let q = &reqs[0];
        assert_eq!(q["url"], "https://hooks.example.com/edgefarm/T0KEN");
        let body = q["body"].as_str().unwrap_or_default();
        let (msg_id, ts) = (header(q, "webhook-id"), header(q, "webhook-timestamp"));
        assert!(msg_id.starts_with("msg_"), "{q:#}");
        assert_eq!(
            header(q, "webhook-signature"),
            expected_signature(&msg_id, &ts, body)
        );
        assert_ne!(
            header(q, "webhook-signature"),
            expected_signature(&msg_id, &ts, &body.replace("completed", "failed")),
            "the signature covers the body"
        );
        let event: Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(event["type"], "job.completed");
        assert_eq!(event["data"]["id"], id.as_str());
        assert_eq!(event["data"]["state"], "completed");
        assert_eq!(event["data"]["counts"]["completed"], 2);
        assert_eq!(event["data"]["round"], 0);
        assert!(
            due_of(f, &id).await.is_empty(),
            "handed out once, then leased"
        );

        // A failed attempt is retried later under the same webhook-id.
        let report = |status: u16| json!({"reports": [{"delivery": q["delivery"], "target": q["target"], "status": status}]});
        let r = f
            .call("POST", "/v1/webhooks/report", Some(report(500)))
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let d = deliveries_of(f, &id).await;
        assert_eq!(d[0]["state"], "pending", "{d:#?}");
        assert_eq!(d[0]["attempts"], 1);
        assert_eq!(d[0]["last_status"], 500);
        assert!(d[0]["next_attempt_ms"].as_u64() > d[0]["last_attempt_ms"].as_u64());
        if !f.is_http() {
            assert!(due_of(f, &id).await.is_empty(), "not before its retry time");
            f.advance(5_000).await;
            let again = due_of(f, &id).await;
            assert_eq!(again.len(), 1);
            assert_eq!(header(&again[0], "webhook-id"), msg_id, "the same event");
            let r = f.call("POST", "/v1/webhooks/report", Some(json!({"reports": [{"delivery": again[0]["delivery"], "target": 0, "status": 204}]}))).await;
            assert_eq!(r.status, 200);
            let d = deliveries_of(f, &id).await;
            assert_eq!(
                (d[0]["state"].clone(), d[0]["attempts"].clone()),
                (json!("delivered"), json!(2))
            );
            assert!(due_of(f, &id).await.is_empty(), "delivered: never again");
        }
        let bad = f
            .call(
                "POST",
                "/v1/webhooks/report",
                Some(json!({"reports": [{"delivery": "job/x", "target": 0, "status": 200}]})),
            )
            .await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.json()["error"]["field"], "reports[0].delivery");
    }

    // A cancel is an event; after a requeue the next end is another one.
    let k = f
        .submit(json!({"frames": "1-2", "webhooks": hooks("https://hooks.example.com/k")}))
        .await;
    let kid = k["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        f.call("POST", &format!("/v1/jobs/{kid}/cancel"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        f.call("POST", &format!("/v1/jobs/{kid}/requeue"), Some(json!({})))
            .await
            .status,
        200
    );
    assert_eq!(
        f.call("POST", &format!("/v1/jobs/{kid}/cancel"), None)
            .await
            .status,
        200
    );
    let d = deliveries_of(f, &kid).await;
    assert_eq!(d.len(), 2, "two ends, two events: {d:#?}");
    assert!(d.iter().all(|d| d["event"] == "job.canceled"));
    assert_ne!(d[0]["id"], d[1]["id"], "each end has its own webhook-id");
}

crate::cases!(a_job_end_is_one_signed_delivery);
