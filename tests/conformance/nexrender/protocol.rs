//! nexrender-server's protocol: defaults, validation, auth, 404s, merge, status, `/v1` view.
use super::{create, fetch, nx, own_tag, put};
use crate::harness::Farm;
use serde_json::{json, Value};

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
        format!("GPU, {} ", own_tag(f)),
        "only a-z0-9, and space survive, in either case"
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
    nexrender_put_merges_and_status_projects,
    nexrender_jobs_are_v1_jobs_and_can_be_removed,
);
