//! The nexrender façade (`/api/v1`): nexrender-server's protocol, with exclusive pickups and
//! leases that lapse when an executor goes silent. Jobs carry a tag of their own per farm so
//! cases sharing one server (`EDGEFARM_URL`) never pick each other's jobs.

use crate::harness::{Farm, Resp, LEASE_MS};
use serde_json::{json, Value};

/// A tag only this farm's jobs carry (`a-z0-9` survive nexrender's tag rule).
fn own_tag(f: &Farm) -> String {
    f.queue()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .collect()
}

/// A request as `@nexrender/api` sends it: the secret in `nexrender-secret`, the executor name
/// in `nexrender-name`.
async fn nx(f: &Farm, method: &str, path: &str, body: Option<Value>, name: Option<&str>) -> Resp {
    let secret = f.secret();
    let mut headers = vec![("nexrender-secret", secret.as_str())];
    if let Some(n) = name {
        headers.push(("nexrender-name", n));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    f.raw(method, &format!("/api/v1{path}"), None, bytes, &headers)
        .await
}

/// Creates a valid job with this farm's tag plus `extra` fields; returns it.
async fn create(f: &Farm, extra: Value) -> Value {
    let mut job = json!({"template": {"src": "file:///p/project.aep", "composition": "main"},
                         "tags": own_tag(f)});
    if let (Some(j), Some(e)) = (job.as_object_mut(), extra.as_object()) {
        j.extend(e.clone());
    }
    let r = nx(f, "POST", "/jobs", Some(job), None).await;
    assert_eq!(
        r.status,
        200,
        "create: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

async fn pickup(f: &Farm, tags: &str, name: &str) -> Value {
    let r = nx(f, "GET", &format!("/jobs/pickup/{tags}"), None, Some(name)).await;
    assert_eq!(
        r.status, 200,
        "pickup answers 200 with a JSON body, even when empty"
    );
    r.json()
}

async fn put(f: &Farm, uid: &Value, body: Value, name: &str) -> Resp {
    let uid = uid.as_str().unwrap_or_default();
    nx(f, "PUT", &format!("/jobs/{uid}"), Some(body), Some(name)).await
}

async fn fetch(f: &Farm, uid: &Value) -> Value {
    let uid = uid.as_str().unwrap_or_default();
    nx(f, "GET", &format!("/jobs/{uid}"), None, None)
        .await
        .json()
}

async fn nexrender_create_fills_defaults(f: &Farm) {
    let job = create(
        f,
        json!({"tags": format!("GPU!, {} ", own_tag(f)), "custom": {"k": 1}}),
    )
    .await;
    let uid = job["uid"].as_str().unwrap_or_default();
    assert_eq!(uid.len(), 21, "a nanoid-shaped uid");
    assert_eq!(job["type"], "default");
    assert_eq!(job["state"], "queued", "create forces queued");
    assert_eq!(job["output"], "");
    assert_eq!(
        job["tags"],
        format!(", {} ", own_tag(f)),
        "only a-z0-9, and space survive"
    );
    assert_eq!(job["priority"], 0);
    assert_eq!(job["timings"], json!({}));
    assert_eq!(job["assets"], json!([]));
    assert_eq!(job["actions"], json!({"prerender": [], "postrender": []}));
    assert_eq!(job["custom"], json!({"k": 1}), "unknown fields are kept");
    let created = job["createdAt"].as_str().unwrap_or_default();
    assert!(
        created.len() == 24 && created.ends_with('Z'),
        "ISO 8601: {created}"
    );
    assert_eq!(fetch(f, &job["uid"]).await["uid"], job["uid"]);
    let again = nx(
        f,
        "POST",
        "/jobs",
        Some(json!({"uid": uid, "template": {"src": "x", "composition": "c"}})),
        None,
    )
    .await;
    assert_eq!(
        again.status, 409,
        "a taken uid is a conflict, not a second job"
    );
}

async fn nexrender_invalid_jobs_are_400(f: &Farm) {
    for (job, field) in [
        (json!({"template": {"composition": "c"}}), "template.src"),
        (json!({"template": {"src": "x"}}), "template.composition"),
        (
            json!({"template": {"src": "x", "composition": "c"}, "assets": [{"type": "image", "src": "y"}]}),
            "assets[0].layerName",
        ),
        (
            json!({"template": {"src": "x", "composition": "c"}, "actions": {"postrender": [{}]}}),
            "actions.postrender[0]",
        ),
        (
            json!({"uid": "a/b", "template": {"src": "x", "composition": "c"}}),
            "uid",
        ),
    ] {
        let r = nx(f, "POST", "/jobs", Some(job), None).await;
        assert_eq!(r.status, 400, "{field} is checked");
        assert!(
            r.json()["error"]["field"]
                .as_str()
                .is_some_and(|x| x.starts_with(field)),
            "names {field}: {:?}",
            r.json()
        );
    }
    let r = nx(f, "POST", "/jobs", None, None).await;
    assert_eq!(r.status, 400, "an empty body is refused");
}

async fn nexrender_secret_is_required(f: &Farm) {
    let wrong = f
        .raw(
            "GET",
            "/api/v1/jobs",
            None,
            vec![],
            &[("nexrender-secret", "nope")],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let missing = f.raw("GET", "/api/v1/jobs", None, vec![], &[]).await;
    assert_eq!(missing.status, 403);
    let health = f.raw("GET", "/api/v1/health", None, vec![], &[]).await;
    assert_eq!(
        (health.status, &health.body[..]),
        (200, &b"ok"[..]),
        "health needs no secret"
    );
    let cors = f.raw("OPTIONS", "/api/v1/jobs", None, vec![], &[]).await;
    assert!(cors.status < 300);
    let allowed = cors
        .header("access-control-allow-headers")
        .unwrap_or_default();
    assert!(allowed.contains("nexrender-secret") && allowed.contains("nexrender-name"));
}

async fn nexrender_unknown_things_are_404(f: &Farm) {
    for (m, p) in [
        ("GET", "/jobs/nope"),
        ("GET", "/jobs/nope/status"),
        ("DELETE", "/jobs/nope"),
        ("GET", "/nothing"),
    ] {
        let r = nx(f, m, p, None, None).await;
        assert_eq!(r.status, 404, "{m} {p}");
        assert_eq!(r.code(), "not_found", "a JSON error body");
    }
    let r = nx(
        f,
        "PUT",
        "/jobs/nope",
        Some(json!({"state": "started"})),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
}

async fn nexrender_pickups_are_exclusive(f: &Farm) {
    let tag = own_tag(f);
    for _ in 0..5 {
        create(f, json!({})).await;
    }
    let names: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let got = futures_util::future::join_all(names.iter().map(|n| pickup(f, &tag, n))).await;
    let mut uids: Vec<String> = got
        .iter()
        .filter_map(|j| j["uid"].as_str().map(String::from))
        .collect();
    assert_eq!(uids.len(), 5, "five jobs, five pickups win, three get {{}}");
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 5, "no job is picked up twice");
    assert!(got.iter().any(|j| j == &json!({})));
    for j in got.iter().filter(|j| j["uid"].is_string()) {
        assert_eq!(j["state"], "picked");
        assert!(j["executor"].as_str().is_some_and(|e| e.starts_with('w')));
    }
}

async fn nexrender_pickup_matches_tags_by_intersection(f: &Farm) {
    let t = own_tag(f);
    let ab = create(f, json!({"tags": format!("{t}a, {t}b")})).await;
    let c = create(f, json!({"tags": format!("{t}c")})).await;
    assert_eq!(
        pickup(f, &format!("{t}z"), "w").await,
        json!({}),
        "no shared tag: nothing"
    );
    assert_eq!(
        pickup(f, &format!("{t}x,{t}b"), "w").await["uid"],
        ab["uid"],
        "one shared tag is enough, after trimming"
    );
    assert_eq!(pickup(f, &format!("{t}c"), "w").await["uid"], c["uid"]);
}

async fn nexrender_silent_executor_loses_its_lease(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    assert_eq!(pickup(f, &t, "dies").await["uid"], job["uid"]);
    assert_eq!(
        put(f, &job["uid"], json!({"state": "started"}), "dies")
            .await
            .status,
        200
    );
    f.advance(LEASE_MS + 300).await;
    assert_eq!(
        fetch(f, &job["uid"]).await["state"],
        "queued",
        "a silent executor's job is queued again"
    );
    let again = pickup(f, &t, "other").await;
    assert_eq!(
        (again["uid"].clone(), again["executor"].clone()),
        (job["uid"].clone(), json!("other"))
    );
    let late = put(
        f,
        &job["uid"],
        json!({"state": "render:dorender", "renderProgress": 50}),
        "dies",
    )
    .await;
    assert_eq!(late.status, 409, "the silent executor lost the job");
    let ok = put(
        f,
        &job["uid"],
        json!({"state": "render:dorender", "renderProgress": 40}),
        "other",
    )
    .await;
    assert_eq!(ok.json()["renderProgress"], 40);
    let done = put(f, &job["uid"], json!({"state": "finished"}), "other")
        .await
        .json();
    assert_eq!(done["state"], "finished");
    assert!(done["finishedAt"].is_string(), "finishedAt is stamped");
}

async fn nexrender_attempts_run_out_into_error(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    for n in 0..3 {
        assert_eq!(
            pickup(f, &t, &format!("w{n}")).await["uid"],
            job["uid"],
            "attempt {n}"
        );
        f.advance(LEASE_MS + 300).await;
    }
    assert_eq!(
        pickup(f, &t, "w9").await,
        json!({}),
        "three attempts, then no more"
    );
    let status = nx(
        f,
        "GET",
        &format!("/jobs/{}/status", job["uid"].as_str().unwrap_or("")),
        None,
        None,
    )
    .await
    .json();
    assert_eq!(status["state"], "error");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("went silent")),
        "says why: {status}"
    );
}

async fn nexrender_started_put_is_an_exclusive_claim(f: &Farm) {
    let t = own_tag(f);
    let picked = create(f, json!({})).await;
    assert_eq!(pickup(f, &t, "a").await["uid"], picked["uid"]);
    assert_eq!(
        put(f, &picked["uid"], json!({"state": "started"}), "b")
            .await
            .status,
        409,
        "leased to another executor"
    );
    assert_eq!(
        put(f, &picked["uid"], json!({"state": "started"}), "a")
            .await
            .status,
        200,
        "the picker starts it"
    );
    assert_eq!(
        put(f, &picked["uid"], json!({"state": "started"}), "a")
            .await
            .status,
        409,
        "started once per lease"
    );
    let listed = create(f, json!({})).await;
    let mut whole = listed.clone();
    whole["state"] = json!("started");
    let uid = &listed["uid"];
    let racers = futures_util::future::join_all((0..10).map(|i| {
        let body = whole.clone();
        let name = format!("old{i}");
        async move { put(f, uid, body, &name).await.status }
    }))
    .await;
    assert_eq!(
        racers.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one winner: {racers:?}"
    );
    assert!(racers.iter().all(|s| *s == 200 || *s == 409));
    assert_eq!(
        pickup(f, &t, "c").await,
        json!({}),
        "a job claimed by PUT is not picked up"
    );
}

async fn nexrender_queued_put_releases_at_once(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    pickup(f, &t, "a").await;
    let r = put(f, &job["uid"], json!({"state": "queued"}), "a").await;
    assert_eq!(r.json()["state"], "queued");
    assert_eq!(
        pickup(f, &t, "b").await["uid"],
        job["uid"],
        "free again at once"
    );
}

async fn nexrender_put_merges_and_status_projects(f: &Farm) {
    let job = create(f, json!({"extra": 1})).await;
    let r = put(f, &job["uid"], json!({"note": "hi"}), "x").await.json();
    assert_eq!(
        (r["extra"].clone(), r["note"].clone()),
        (json!(1), json!("hi")),
        "a shallow merge"
    );
    let bad = put(f, &job["uid"], json!({"template": {"src": "x"}}), "x").await;
    assert_eq!(bad.status, 400, "re-validated");
    assert_eq!(
        fetch(f, &job["uid"]).await["template"]["composition"],
        "main",
        "nothing written"
    );
    let s = nx(f, "GET", "/jobs/status", None, None).await.json();
    let mine = s
        .as_array()
        .and_then(|a| a.iter().find(|j| j["uid"] == job["uid"]).cloned())
        .unwrap_or_default();
    for k in [
        "uid",
        "state",
        "type",
        "tags",
        "renderProgress",
        "error",
        "createdAt",
        "updatedAt",
        "startedAt",
        "finishedAt",
        "errorAt",
        "jobCreator",
        "jobExecutor",
        "timings",
    ] {
        assert!(mine.get(k).is_some(), "status has {k}: {mine}");
    }
    assert_eq!(
        (mine["renderProgress"].clone(), mine["error"].clone()),
        (json!(0), Value::Null)
    );
}

async fn nexrender_jobs_are_v1_jobs_and_can_be_removed(f: &Farm) {
    let job = create(f, json!({})).await;
    let uid = job["uid"].as_str().unwrap_or_default();
    let v1 = f.call("GET", &format!("/v1/jobs/{uid}"), None).await.json();
    assert_eq!(
        (v1["type"].clone(), v1["state"].clone()),
        (json!("nexrender"), json!("queued"))
    );
    let listed = f.call("GET", "/v1/jobs?type=nexrender", None).await.json();
    assert!(listed["jobs"]
        .as_array()
        .is_some_and(|a| a.iter().any(|j| j["id"] == uid)));
    let r = nx(f, "DELETE", &format!("/jobs/{uid}"), None, None).await;
    assert_eq!(r.json(), json!({"id": uid, "removed": true}));
    assert_eq!(
        nx(f, "GET", &format!("/jobs/{uid}"), None, None)
            .await
            .status,
        404
    );
}

crate::cases!(
    nexrender_create_fills_defaults,
    nexrender_invalid_jobs_are_400,
    nexrender_secret_is_required,
    nexrender_unknown_things_are_404,
    nexrender_pickups_are_exclusive,
    nexrender_pickup_matches_tags_by_intersection,
    nexrender_silent_executor_loses_its_lease,
    nexrender_attempts_run_out_into_error,
    nexrender_started_put_is_an_exclusive_claim,
    nexrender_queued_put_releases_at_once,
    nexrender_put_merges_and_status_projects,
    nexrender_jobs_are_v1_jobs_and_can_be_removed,
);
