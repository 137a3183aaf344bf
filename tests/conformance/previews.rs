//! Last-rendered previews, metrics and the static assets (`/`, `/v1/openapi.json`).

use crate::cases;
use crate::harness::Farm;
use serde_json::{json, Value};

use crate::png;

/// The preview throttle window.
const PREVIEW_EVERY_MS: u64 = edgefarm::core::api::previews::EVERY_MS;

/// A job of two one-frame tasks and a claim of its first task: (job id, claimed task).
async fn running_task(farm: &Farm) -> (String, Value) {
    let job = farm.submit(json!({"frames": "1-2"})).await;
    let id = job["id"].as_str().unwrap_or("").to_string();
    let task = farm.claim("node-a", 1).await.remove(0);
    (id, task)
}

async fn send(
    farm: &Farm,
    task: &Value,
    image: Vec<u8>,
    content_type: &str,
) -> crate::harness::Resp {
    let id = task["_id"].as_str().unwrap_or("");
    let lease = task["lease"].as_str().unwrap_or("");
    let path = format!("/v1/tasks/{id}/preview");
    let headers = [("content-type", content_type), ("x-edgefarm-lease", lease)];
    farm.raw("POST", &path, Some(&farm.secret()), image, &headers)
        .await
}

async fn latest_preview_is_served_per_job_and_for_the_farm(farm: &Farm) {
    let (job, task) = running_task(farm).await;
    let before = farm
        .call("GET", &format!("/v1/jobs/{job}/preview"), None)
        .await;
    assert_eq!(before.status, 404, "a job with no preview yet answers 404");
    let image = png::frame(1, 64, 36);
    let r = send(farm, &task, image.clone(), "image/png").await;
    assert_eq!(
        r.status, 200,
        "a preview under the current lease is accepted: {:?}",
        r.body
    );
    assert_eq!(r.json()["bytes"], image.len());
    for path in [format!("/v1/jobs/{job}/preview"), "/v1/preview".to_string()] {
        let got = farm.call("GET", &path, None).await;
        assert_eq!(got.status, 200, "{path} serves the latest preview");
        // On a shared server other cases send previews at the same time: the farm's latest may
        // be theirs.
        if path == "/v1/preview" && farm.is_shared() && got.body.as_ref() != image.as_slice() {
            continue;
        }
        assert_eq!(got.header("content-type").as_deref(), Some("image/png"));
        assert_eq!(
            got.body.as_ref(),
            image.as_slice(),
            "{path} serves the bytes sent"
        );
        let etag = got.header("etag").unwrap_or_default();
        let again = farm
            .raw(
                "GET",
                &path,
                Some(&farm.secret()),
                vec![],
                &[("if-none-match", &etag)],
            )
            .await;
        // (Unless, on a shared server, another case sent the farm a newer preview meanwhile.)
        let changed = path == "/v1/preview"
            && farm.is_shared()
            && again.status == 200
            && again.header("etag") != Some(etag.clone());
        assert!(
            again.status == 304 || changed,
            "an unchanged preview answers 304 to its ETag, got {}",
            again.status
        );
    }
}

async fn preview_needs_the_current_lease(farm: &Farm) {
    let (_, task) = running_task(farm).await;
    let image = png::frame(2, 16, 16);
    let mut stale = task.clone();
    stale["lease"] = json!("not-the-lease");
    assert_eq!(
        send(farm, &stale, image.clone(), "image/png").await.code(),
        "stale_lease"
    );
    let id = task["_id"].as_str().unwrap_or("");
    let path = format!("/v1/tasks/{id}/preview");
    let no_lease = farm
        .raw(
            "POST",
            &path,
            Some(&farm.secret()),
            image.clone(),
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(
        (no_lease.status, no_lease.json()["error"]["field"].clone()),
        (400, json!("lease"))
    );
    let lease = task["lease"].as_str().unwrap_or("");
    let by_query = farm
        .raw(
            "POST",
            &format!("{path}?lease={lease}"),
            Some(&farm.secret()),
            image.clone(),
            &[],
        )
        .await;
    assert_eq!(by_query.status, 200, "the lease may come as ?lease=");
    assert_eq!(farm.done(&task).await.status, 200);
    farm.advance(PREVIEW_EVERY_MS + 100).await;
    let after_ack = send(farm, &task, image, "image/png").await;
    assert_eq!(
        after_ack.code(),
        "stale_lease",
        "after its ack a task's lease is gone"
    );
}

async fn preview_must_be_a_small_png_or_jpeg(farm: &Farm) {
    let (_, task) = running_task(farm).await;
    let not_image = send(farm, &task, b"GIF89a......".to_vec(), "image/png").await;
    assert_eq!(
        not_image.status, 400,
        "bytes without a PNG/JPEG signature are refused"
    );
    let mismatch = send(farm, &task, vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0], "image/png").await;
    assert_eq!(
        (mismatch.status, mismatch.json()["error"]["field"].clone()),
        (400, json!("content-type"))
    );
    let gif = send(farm, &task, png::frame(1, 8, 8), "image/gif").await;
    assert_eq!(
        gif.status, 400,
        "only image/png and image/jpeg are accepted"
    );
    let big = png::png(210, 200, |x, y| [x as u8, y as u8, 7]);
    assert!(big.len() > 120 * 1024);
    assert_eq!(
        send(farm, &task, big, "image/png").await.status,
        413,
        "over 120 KiB is refused"
    );
    let jpeg = send(
        farm,
        &task,
        vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
        "image/jpeg",
    )
    .await;
    assert_eq!(jpeg.status, 200, "a JPEG is accepted");
}

async fn previews_are_throttled_per_task(farm: &Farm) {
    let (_, task) = running_task(farm).await;
    let other = farm.claim("node-b", 1).await.remove(0);
    // The server accepts a preview no earlier than the mark taken before sending it, and handles
    // the next one no later than its answer arrives: a preview answered less than the window
    // after the last accepted one was sent must be refused. On a machine slow enough to take
    // longer, it may be accepted, and the pair is tried again.
    let mut accepted = farm.mark();
    assert_eq!(
        send(farm, &task, png::frame(1, 8, 8), "image/png")
            .await
            .status,
        200
    );
    let mut refused = None;
    for n in 2..12 {
        let sent = farm.mark();
        let soon = send(farm, &task, png::frame(n, 8, 8), "image/png").await;
        if soon.status != 200 {
            refused = Some(soon);
            break;
        }
        assert!(
            farm.since(accepted) >= PREVIEW_EVERY_MS,
            "a second preview within 2 s is refused"
        );
        accepted = sent;
    }
    let soon = refused.expect("a preview sent right after another is refused (10 tries)");
    assert_eq!(
        (soon.status, soon.code().as_str()),
        (429, "throttled"),
        "a second preview within 2 s"
    );
    assert!(
        soon.header("retry-after").is_some(),
        "429 says when to try again"
    );
    let other_task = send(farm, &other, png::frame(13, 8, 8), "image/png").await;
    assert_eq!(
        other_task.status, 200,
        "the throttle is per task, not per job"
    );
    farm.advance(PREVIEW_EVERY_MS + 100).await;
    assert_eq!(
        send(farm, &task, png::frame(14, 8, 8), "image/png")
            .await
            .status,
        200
    );
}

async fn metric(farm: &Farm, name: &str) -> f64 {
    let r = farm.call("GET", "/v1/metrics", None).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

async fn metrics_count_claims_acks_failures_and_expiries(farm: &Farm) {
    let names = [
        "edgefarm_claims_total",
        "edgefarm_acks_total",
        "edgefarm_task_failures_total",
        "edgefarm_lease_expiries_total",
    ];
    let mut before = Vec::new();
    for n in names {
        before.push(metric(farm, n).await);
    }
    farm.submit(json!({"frames": "1-3"})).await;
    let tasks = farm.claim("node-m", 3).await;
    assert_eq!(tasks.len(), 3);
    assert_eq!(farm.done(&tasks[0]).await.status, 200);
    assert_eq!(farm.fail(&tasks[1], "boom").await.status, 200);
    farm.advance(farm.lease_ms() + 200).await;
    farm.claim("node-n", 3).await;
    let atomic_cas = farm.atomic_cas().await;
    let expect = [5.0, 1.0, 1.0, 1.0];
    for ((n, b), e) in names.iter().zip(before).zip(expect) {
        let delta = metric(farm, n).await - b;
        if atomic_cas {
            // A shared server (EDGEFARM_URL) counts other cases' events too.
            assert!(
                delta >= e && (farm.is_shared() || delta == e),
                "{n} grew by {delta}, expected {e}"
            );
        } else {
            // Without a compare-and-swap a counter update can be lost (docs/CLOUDFLARE.md), so
            // the counters may lag: they never go back, and (one case at a time, as the KV suite
            // runs) never count more than happened.
            assert!(
                (0.0..=e).contains(&delta),
                "{n} grew by {delta}, expected at most {e}"
            );
        }
    }
    let r = farm.call("GET", "/v1/metrics", None).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("edgefarm_tasks{state=\"leased\"}"),
        "tasks by state are exposed"
    );
    assert!(text.contains("# HELP edgefarm_jobs Jobs by state. Counted over the newest jobs only"));
    if farm.is_native_server().await {
        assert!(
            text.contains("edgefarm_http_request_duration_seconds_bucket"),
            "the native server adds its latency histogram"
        );
    }
    let j = farm
        .raw(
            "GET",
            "/v1/metrics?format=json",
            Some(&farm.secret()),
            vec![],
            &[],
        )
        .await;
    assert!(
        j.json()["leases_by_node"]["node-n"].as_u64().unwrap_or(0) >= 1,
        "leases per node: {}",
        j.json()
    );
}

async fn metrics_need_the_farm_secret(farm: &Farm) {
    assert_eq!(
        farm.raw("GET", "/v1/metrics", None, vec![], &[])
            .await
            .status,
        401
    );
    let node = farm
        .call("POST", "/v1/nodes", Some(json!({"name": "m"})))
        .await
        .json();
    let token = node["token"].as_str().unwrap_or("");
    assert_eq!(
        farm.call_as(token, "GET", "/v1/metrics", None).await.status,
        403
    );
    assert_eq!(
        farm.call_as(token, "GET", "/v1/preview", None).await.status,
        403
    );
}

async fn dashboard_and_openapi_need_no_credentials(farm: &Farm) {
    let page = farm.raw("GET", "/", None, vec![], &[]).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    let html = String::from_utf8_lossy(&page.body).to_string();
    for outside in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !html.contains(outside),
            "the page loads nothing from elsewhere ({outside})"
        );
    }
    let api = farm.raw("GET", "/v1/openapi.json", None, vec![], &[]).await;
    assert_eq!(
        (api.status, api.json()["openapi"].clone()),
        (200, json!("3.1.0"))
    );
}

cases!(
    latest_preview_is_served_per_job_and_for_the_farm,
    preview_needs_the_current_lease,
    preview_must_be_a_small_png_or_jpeg,
    previews_are_throttled_per_task,
    metrics_need_the_farm_secret,
    dashboard_and_openapi_need_no_credentials;
    lapse: metrics_count_claims_acks_failures_and_expiries,
);
