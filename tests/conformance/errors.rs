//! Bad input: every rejection is a precise 4xx JSON error, and the store is exactly as it was.

use crate::harness::Farm;
use serde_json::{json, Value};

/// What the API shows of the farm; compared before and after each rejected request (and the
/// raw store too, in-process).
pub(crate) async fn observable(
    f: &Farm,
) -> (
    Option<std::collections::BTreeMap<String, Vec<u8>>>,
    Value,
    Value,
) {
    let jobs = f
        .call(
            "GET",
            &format!("/v1/jobs?queue={}&limit=500", f.queue()),
            None,
        )
        .await
        .json();
    // On a server other cases share (`EDGEFARM_URL`), they enrol nodes at any time: the node
    // list is only this case's own elsewhere.
    let mut nodes = if f.is_shared() {
        serde_json::Value::Null
    } else {
        f.call("GET", "/v1/nodes", None).await.json()
    };
    // What is derived at read time from the clock, not stored, changes while a case runs: a
    // silent node turns `offline` (its stored drain state is `draining`), and a job's `waiting`
    // reason follows the nodes. Everything stored is kept.
    if let Some(a) = nodes["nodes"].as_array_mut() {
        for n in a.iter_mut().filter_map(Value::as_object_mut) {
            n.remove("state");
            n.remove("online");
        }
    }
    let mut jobs_only = jobs["jobs"].clone();
    if let Some(a) = jobs_only.as_array_mut() {
        a.sort_by_key(|j| j["id"].as_str().unwrap_or_default().to_string());
        for j in a.iter_mut().filter_map(Value::as_object_mut) {
            j.remove("waiting");
        }
    }
    (f.snapshot(), jobs_only, nodes)
}

pub(crate) async fn rejected(
    f: &Farm,
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
    status: u16,
    field: Option<&str>,
) {
    let before = observable(f).await;
    let r = f
        .raw(
            method,
            path,
            token,
            body.to_vec(),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(
        r.status,
        status,
        "{method} {path} {} should answer {status}, got {}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&r.body)
    );
    let err = r.json();
    assert!(
        err["error"]["code"].is_string() && err["error"]["message"].is_string(),
        "a JSON error body: {err}"
    );
    if let Some(field) = field {
        assert_eq!(
            err["error"]["field"].as_str(),
            Some(field),
            "the error names the field: {err}"
        );
    }
    assert!(
        observable(f).await == before,
        "{method} {path} was rejected but changed the store"
    );
}

async fn bad_job_specs_name_the_field_and_change_nothing(f: &Farm) {
    f.submit(json!({})).await; // something in the store to keep
    let s = f.secret();
    let t = Some(s.as_str());
    let q = f.queue().to_string();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"frames": "1-10"}), "type"),
        (json!({"type": "maya"}), "type"),
        (
            json!({"type": "command", "params": {"program": "p"}, "frames": "10-1"}),
            "frames",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "frames": "1-x"}),
            "frames",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "frames": 5}),
            "frames",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "chunk_size": 0}),
            "chunk_size",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "chunk_size": "ten"}),
            "chunk_size",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "priority": 500}),
            "priority",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "max_attempts": 0}),
            "max_attempts",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "tags": ["GPU!"]}),
            "tags",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "id": "has space"}),
            "id",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "queue": "a/b"}),
            "queue",
        ),
        (
            json!({"type": "command", "params": {"program": "p"}, "chunksize": 3}),
            "chunksize",
        ),
        (
            json!({"type": "command", "params": {"program": "../bin/sh"}}),
            "params.program",
        ),
        (
            json!({"type": "command", "params": {"program": "p", "args": [1, 2]}}),
            "params.args[0]",
        ),
        (
            json!({"type": "blender", "params": {"output": "o/#"}}),
            "params.file",
        ),
        (
            json!({"type": "blender", "params": {"file": "../../etc/passwd", "output": "o/#"}}),
            "params.file",
        ),
        (
            json!({"type": "blender", "params": {"file": "/abs.blend", "output": "o/#"}}),
            "params.file",
        ),
        (
            json!({"type": "blender", "params": {"file": "a.blend", "output": "o/#", "engine": "--python-expr"}}),
            "params.engine",
        ),
        (
            json!({"type": "blender", "params": {"file": "a.blend", "output": "o/#", "python": "x.py"}}),
            "params.python",
        ),
    ];
    for (mut spec, field) in cases {
        spec["queue"] = spec.get("queue").cloned().unwrap_or(json!(q));
        rejected(
            f,
            "POST",
            "/v1/jobs",
            &serde_json::to_vec(&spec).unwrap_or_default(),
            t,
            400,
            Some(field),
        )
        .await;
    }
    rejected(f, "POST", "/v1/jobs", b"{not json", t, 400, None).await;
    rejected(f, "POST", "/v1/jobs", b"", t, 400, None).await;
    rejected(f, "POST", "/v1/jobs", b"[1,2]", t, 400, None).await;
}

async fn limits_answer_413(f: &Farm) {
    let s = f.secret();
    let t = Some(s.as_str());
    let q = f.queue().to_string();
    let huge = vec![b' '; (1 << 20) + 10];
    rejected(f, "POST", "/v1/jobs", &huge, t, 413, None).await;
    let many = json!({"type": "command", "queue": q, "params": {"program": "p"}, "frames": "1-1000000", "chunk_size": 1});
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &serde_json::to_vec(&many).unwrap_or_default(),
        t,
        413,
        None,
    )
    .await;
    let frames = json!({"type": "command", "queue": q, "params": {"program": "p"}, "frames": "1-2000000", "chunk_size": 1000});
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &serde_json::to_vec(&frames).unwrap_or_default(),
        t,
        413,
        None,
    )
    .await;
    let tags: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let tagged = json!({"type": "command", "queue": q, "params": {"program": "p"}, "tags": tags});
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &serde_json::to_vec(&tagged).unwrap_or_default(),
        t,
        413,
        None,
    )
    .await;
    let long_name = json!({"type": "command", "queue": q, "params": {"program": "p"}, "name": "x".repeat(5000)});
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &serde_json::to_vec(&long_name).unwrap_or_default(),
        t,
        400,
        Some("name"),
    )
    .await;
    f.submit(json!({"frames": "1"})).await;
    let task = f.claim("n", 1).await.remove(0);
    let id = task["_id"].as_str().unwrap_or_default().to_string();
    let big_log = json!({"lease": task["lease"], "log": "x".repeat(70 * 1024)});
    rejected(
        f,
        "POST",
        &format!("/v1/tasks/{id}/heartbeat"),
        &serde_json::to_vec(&big_log).unwrap_or_default(),
        t,
        413,
        None,
    )
    .await;
    let acks: Vec<Value> = (0..70)
        .map(|_| json!({"_id": id, "status": "done", "lease": task["lease"]}))
        .collect();
    let poll = json!({"node": "n", "tasks": acks});
    rejected(
        f,
        "POST",
        &format!("/v1/queue/{q}"),
        &serde_json::to_vec(&poll).unwrap_or_default(),
        t,
        413,
        None,
    )
    .await;
}

async fn unknown_ids_and_routes_are_404(f: &Farm) {
    let s = f.secret();
    let t = Some(s.as_str());
    rejected(f, "GET", "/v1/jobs/nope", b"", t, 404, None).await;
    rejected(f, "POST", "/v1/jobs/nope/cancel", b"", t, 404, None).await;
    rejected(
        f,
        "PATCH",
        "/v1/jobs/nope",
        br#"{"priority": 1}"#,
        t,
        404,
        None,
    )
    .await;
    rejected(f, "DELETE", "/v1/jobs/nope", b"", t, 404, None).await;
    rejected(f, "GET", "/v1/tasks/nope.0", b"", t, 404, None).await;
    rejected(
        f,
        "POST",
        "/v1/tasks/nope.0/heartbeat",
        br#"{"lease": "x"}"#,
        t,
        409,
        None,
    )
    .await;
    rejected(f, "POST", "/v1/nodes/nope/drain", b"", t, 404, None).await;
    rejected(f, "GET", "/v1/nothing-here", b"", t, 404, None).await;
    rejected(f, "PUT", "/v1/jobs", b"{}", t, 405, None).await;
    let job = f.submit(json!({"frames": "1"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    rejected(
        f,
        "POST",
        &format!("/v1/jobs/{id}/explode"),
        b"",
        t,
        404,
        None,
    )
    .await;
    rejected(f, "GET", &format!("/v1/tasks/{id}.7"), b"", t, 404, None).await;
}

async fn bad_credentials_are_401_or_403(f: &Farm) {
    f.submit(json!({"frames": "1"})).await;
    let q = f.queue().to_string();
    let spec =
        serde_json::to_vec(&json!({"type": "command", "queue": q, "params": {"program": "p"}}))
            .unwrap_or_default();
    rejected(f, "POST", "/v1/jobs", &spec, None, 401, None).await;
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &spec,
        Some("wrong-secret"),
        403,
        None,
    )
    .await;
    rejected(
        f,
        "POST",
        &format!("/v1/queue/{q}"),
        b"{}",
        Some("efn_x_y"),
        403,
        None,
    )
    .await;
    rejected(f, "GET", "/v1/jobs", b"", None, 401, None).await;
    rejected(f, "POST", "/v1/nodes", b"{}", Some("nope"), 403, None).await;
    let health = f.raw("GET", "/v1/health", None, vec![], &[]).await;
    assert_eq!(health.status, 200, "health needs no credentials");
    assert!(
        health.json()["store"]["atomic_cas"].is_boolean(),
        "health tells the store's capabilities"
    );
}

/// The limits `limits_answer_413` does not reach: params, result, activity, frame spec, argv,
/// ids, node enrolment, PATCH and claim sizes. Each is refused with 413 or a 400 naming the
/// field, and the store is unchanged.
async fn every_other_limit_is_refused_and_changes_nothing(f: &Farm) {
    let s = f.secret();
    let t = Some(s.as_str());
    let q = f.queue().to_string();
    let to_vec = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let job = |extra: Value| {
        let mut spec = json!({"type": "command", "queue": q, "params": {"program": "p"}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        to_vec(&spec)
    };
    // params: at most 64 KiB of JSON (the body limit is 1 MiB, so this one is the params limit).
    let big_params = job(
        json!({"params": {"program": "p", "args": ["{frame}"], "note": "x".repeat(70 * 1024)}}),
    );
    rejected(f, "POST", "/v1/jobs", &big_params, t, 413, None).await;
    // The frame spec string.
    let long_frames = job(json!({"frames": vec!["1"; 3000].join(",")}));
    rejected(f, "POST", "/v1/jobs", &long_frames, t, 413, None).await;
    // argv: at most 256 arguments of at most 4 KiB each.
    let many_args = job(json!({"params": {"program": "p", "args": vec!["a"; 300]}}));
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &many_args,
        t,
        400,
        Some("params.args"),
    )
    .await;
    let long_arg = job(json!({"params": {"program": "p", "args": ["a", "b".repeat(5000)]}}));
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &long_arg,
        t,
        400,
        Some("params.args[1]"),
    )
    .await;
    // Ids and queue names: 64 characters.
    let long_id = job(json!({"id": "i".repeat(65)}));
    rejected(f, "POST", "/v1/jobs", &long_id, t, 400, Some("id")).await;
    let long_queue = job(json!({"queue": "q".repeat(65)}));
    rejected(f, "POST", "/v1/jobs", &long_queue, t, 400, Some("queue")).await;
    let long_tag = job(json!({"tags": ["t".repeat(33)]}));
    rejected(f, "POST", "/v1/jobs", &long_tag, t, 400, Some("tags")).await;
    // Node enrolment: name length, tag count, slots.
    let long_node = to_vec(&json!({"name": "n".repeat(300)}));
    rejected(f, "POST", "/v1/nodes", &long_node, t, 400, Some("name")).await;
    let tags: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    rejected(
        f,
        "POST",
        "/v1/nodes",
        &to_vec(&json!({"tags": tags})),
        t,
        413,
        None,
    )
    .await;
    rejected(
        f,
        "POST",
        "/v1/nodes",
        &to_vec(&json!({"slots": 10_000})),
        t,
        400,
        Some("slots"),
    )
    .await;

    let submitted = f.submit(json!({"frames": "1"})).await;
    let jid = submitted["id"].as_str().unwrap_or_default().to_string();
    // PATCH: the same tag limit as a submit.
    rejected(
        f,
        "PATCH",
        &format!("/v1/jobs/{jid}"),
        &to_vec(&json!({"tags": tags})),
        t,
        413,
        None,
    )
    .await;
    // A claim: at most `max_tasks` (16) at once.
    let greedy = to_vec(&json!({"node": "n", "max": 1000}));
    rejected(
        f,
        "POST",
        &format!("/v1/queue/{q}"),
        &greedy,
        t,
        400,
        Some("max"),
    )
    .await;

    let task = f.claim("n", 1).await.remove(0);
    let id = task["_id"].as_str().unwrap_or_default().to_string();
    // A result: at most 64 KiB of JSON.
    let big_result = json!({"lease": task["lease"], "status": "done", "result": {"log_tail": "x".repeat(70 * 1024)}});
    rejected(
        f,
        "POST",
        &format!("/v1/tasks/{id}/ack"),
        &to_vec(&big_result),
        t,
        413,
        None,
    )
    .await;
    // An activity line: at most 1 KiB.
    let long_activity = json!({"lease": task["lease"], "activity": "x".repeat(2000)});
    rejected(
        f,
        "POST",
        &format!("/v1/tasks/{id}/heartbeat"),
        &to_vec(&long_activity),
        t,
        400,
        Some("activity"),
    )
    .await;
    // The limits did not break the lease: the same lease still acks.
    assert_eq!(
        f.done(&task).await.status,
        200,
        "the task is still the node's after refused requests"
    );
}

crate::cases!(
    bad_job_specs_name_the_field_and_change_nothing,
    limits_answer_413,
    unknown_ids_and_routes_are_404,
    bad_credentials_are_401_or_403,
    every_other_limit_is_refused_and_changes_nothing,
);
