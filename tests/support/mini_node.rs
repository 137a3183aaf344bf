//! The API client of the browser test and a render node in miniature, so the page has a
//! farm that moves: a node that claims, heartbeats with progress, sends previews and acks.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The farm secret of the test server.
pub const SECRET: &str = "dashboard-secret";

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("the server answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn submit(&self, spec: Value) -> String {
        let (status, job) = self.call("POST", "/v1/jobs", SECRET, Some(spec)).await;
        assert_eq!(status, 202, "submit: {job}");
        job["id"].as_str().unwrap_or("").to_string()
    }
}

/// A render node in miniature: claims from `default`, reports progress, sends a preview of each
/// "rendered" frame, uploads each frame as a blob and acks it as the task's outputs
/// (`frames/f_NNNN.png`). (The real agent is `edgefarm node`.)
pub async fn node_loop(api: Arc<Api>, stop: Arc<AtomicBool>) {
    let (_, enrol) = api
        .call(
            "POST",
            "/v1/nodes",
            SECRET,
            Some(json!({"name": "render-01", "tags": ["gpu", "cycles"], "slots": 2})),
        )
        .await;
    let token = enrol["token"].as_str().unwrap_or("").to_string();
    let mut frame = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let (status, got) = api
            .call("POST", "/v1/queue/default", &token, Some(json!({"max": 1})))
            .await;
        let Some(task) = got["tasks"].get(0).filter(|_| status == 200).cloned() else {
            tokio::time::sleep(Duration::from_millis(150)).await;
            continue;
        };
        let id = task["_id"].as_str().unwrap_or("").to_string();
        let lease = task["lease"].as_str().unwrap_or("").to_string();
        let (from, to) = (
            task["frames"]["from"].as_i64().unwrap_or(0),
            task["frames"]["to"].as_i64().unwrap_or(0),
        );
        let total = (to - from + 1).max(1);
        for done in 0..total {
            frame += 1;
            let beat = json!({"lease": lease, "progress": {"done": done, "total": total}, "activity": format!("Fra:{} Sample 64/128", from + done)});
            api.call(
                "POST",
                &format!("/v1/tasks/{id}/heartbeat"),
                &token,
                Some(beat),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        // 224×126 stays under the 120 KiB preview limit even uncompressed.
        let image = crate::png::frame(frame, 224, 126);
        let _ = api
            .http
            .post(format!("{}/v1/tasks/{id}/preview", api.base))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .header("x-edgefarm-lease", &lease)
            .body(image)
            .send()
            .await;
        let mut outputs = Vec::new();
        for f in from..=to {
            let png = crate::png::frame(u32::try_from(f).unwrap_or(0), 64, 36);
            let sha256 = sha256_hex(&png);
            let size = png.len();
            let _ = api
                .http
                .put(format!("{}/v1/blobs/{sha256}", api.base))
                .bearer_auth(&token)
                .body(png)
                .send()
                .await;
            outputs.push(
                json!({"path": format!("frames/f_{f:04}.png"), "sha256": sha256, "size": size}),
            );
        }
        let ack = json!({"lease": lease, "status": "done", "result": {"exit_code": 0}, "outputs": outputs});
        api.call("POST", &format!("/v1/tasks/{id}/ack"), &token, Some(ack))
            .await;
    }
}

/// SHA-256 of `bytes`, lowercase hex: a blob's name.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
