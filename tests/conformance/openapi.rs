//! The OpenAPI description (`src/core/openapi.json`, served at `/v1/openapi.json`) against real
//! answers: a scripted tour of the API, and every answer of it must be documented (path, method,
//! status, content type) and match its JSON schema (JSON Schema 2020-12, the dialect of
//! OpenAPI 3.1, checked with the `jsonschema` crate).

mod check;

use crate::cases;
use crate::harness::Farm;
use crate::png;
use check::{schema_errors, Tour};
use serde_json::{json, Value};
use std::cell::RefCell;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

async fn every_answer_of_a_tour_matches_the_openapi_description(farm: &Farm) {
    let doc: Value =
        serde_json::from_str(edgefarm::core::dashboard::OPENAPI).expect("openapi.json is JSON");
    let t = Tour {
        farm,
        doc,
        problems: RefCell::new(Vec::new()),
        checked: RefCell::new(0),
    };
    let q = farm.queue().to_string();
    let secret = farm.secret();
    t.raw("GET", "/v1/health", None, vec![], &[]).await;
    t.raw("GET", "/v1/openapi.json", None, vec![], &[]).await;
    t.raw("GET", "/v1/jobs", None, vec![], &[]).await;
    t.raw("GET", "/v1/jobs", Some("wrong-secret"), vec![], &[])
        .await;
    let spec = json!({"name": "tour", "type": "command", "queue": q, "frames": "1-4", "chunk_size": 2,
                      "params": {"program": "touchframe", "args": ["{frame}"]}});
    let job = t.call("POST", "/v1/jobs", Some(spec.clone())).await.json();
    let id = s(&job["id"]);
    let mut again = spec.clone();
    again["id"] = json!(id);
    t.call("POST", "/v1/jobs", Some(again.clone())).await;
    again["name"] = json!("another");
    t.call("POST", "/v1/jobs", Some(again)).await;
    t.call(
        "POST",
        "/v1/jobs",
        Some(json!({"type": "command", "frames": "x"})),
    )
    .await;
    t.call("GET", "/v1/jobs?limit=2", None).await;
    t.call("GET", "/v1/jobs?limit=nope", None).await;
    t.call("GET", &format!("/v1/jobs/{id}"), None).await;
    t.call("GET", "/v1/jobs/nope", None).await;
    t.call("GET", &format!("/v1/jobs/{id}/tasks?limit=1"), None)
        .await;
    t.call("GET", &format!("/v1/jobs/{id}/preview"), None).await;
    t.call("GET", "/v1/preview", None).await;
    let enrol = t
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"name": "tour-node", "tags": [], "slots": 2})),
        )
        .await
        .json();
    let (node, token) = (s(&enrol["node"]["id"]), s(&enrol["token"]));
    t.call("GET", "/v1/nodes", None).await;
    t.call("GET", &format!("/v1/nodes/{node}"), None).await;
    t.raw("GET", &format!("/v1/queue/{q}"), Some(&token), vec![], &[])
        .await;
    let poll = format!("/v1/queue/{q}");
    let claimed = t
        .raw("POST", &poll, Some(&token), br#"{"max": 2}"#.to_vec(), &[])
        .await
        .json();
    let first = claimed["tasks"][0].clone();
    let (task, lease) = (s(&first["_id"]), s(&first["lease"]));
    let beat = json!({"lease": lease, "progress": {"done": 1, "total": 2}, "activity": "Fra:1", "log": "rendering\n"});
    t.raw(
        "POST",
        &format!("/v1/tasks/{task}/heartbeat"),
        Some(&token),
        serde_json::to_vec(&beat).unwrap_or_default(),
        &[],
    )
    .await;
    let stale = json!({"lease": "nope"});
    t.raw(
        "POST",
        &format!("/v1/tasks/{task}/heartbeat"),
        Some(&token),
        serde_json::to_vec(&stale).unwrap_or_default(),
        &[],
    )
    .await;
    let preview = format!("/v1/tasks/{task}/preview");
    let image = png::frame(3, 32, 18);
    let headers = [
        ("content-type", "image/png"),
        ("x-edgefarm-lease", lease.as_str()),
    ];
    t.raw("POST", &preview, Some(&token), image.clone(), &headers)
        .await;
    t.raw("POST", &preview, Some(&token), image, &headers).await;
    t.raw(
        "POST",
        &preview,
        Some(&token),
        b"not an image".to_vec(),
        &headers,
    )
    .await;
    t.raw(
        "POST",
        &preview,
        Some(&token),
        vec![0x89; 130_000],
        &headers,
    )
    .await;
    let got = t.call("GET", &format!("/v1/jobs/{id}/preview"), None).await;
    let etag = got.header("etag").unwrap_or_default();
    t.raw(
        "GET",
        "/v1/preview",
        Some(&secret),
        vec![],
        &[("if-none-match", &etag)],
    )
    .await;
    t.call("GET", &format!("/v1/tasks/{task}"), None).await;
    t.call("GET", &format!("/v1/tasks/{task}/log"), None).await;
    let ack = json!({"lease": lease, "status": "done", "result": {"exit_code": 0}});
    t.raw(
        "POST",
        &format!("/v1/tasks/{task}/ack"),
        Some(&token),
        serde_json::to_vec(&ack).unwrap_or_default(),
        &[],
    )
    .await;
    let second = claimed["tasks"][1].clone();
    let acks = json!({"tasks": [{"_id": second["_id"], "status": "failed", "lease": second["lease"], "error": "exit 1"},
                                {"_id": task, "status": "done", "lease": "stale"}]});
    t.raw(
        "POST",
        &poll,
        Some(&token),
        serde_json::to_vec(&acks).unwrap_or_default(),
        &[],
    )
    .await;
    t.raw("POST", &poll, Some(&token), br#"{"max": 0}"#.to_vec(), &[])
        .await;
    let more = t
        .call("POST", &poll, Some(json!({"node": "tour-admin", "max": 1})))
        .await
        .json();
    let third = more["tasks"][0].clone();
    let release = json!({"lease": third["lease"]});
    t.call(
        "POST",
        &format!("/v1/tasks/{}/release", s(&third["_id"])),
        Some(release),
    )
    .await;
    t.call(
        "PATCH",
        &format!("/v1/jobs/{id}"),
        Some(json!({"priority": 70})),
    )
    .await;
    for action in ["pause", "resume", "cancel", "cancel", "requeue", "explode"] {
        t.call("POST", &format!("/v1/jobs/{id}/{action}"), None)
            .await;
    }
    t.call("GET", &format!("/v1/jobs/{id}"), None).await;
    farm.advance(150).await;
    t.call("GET", "/v1/metrics", None).await;
    t.raw("GET", "/v1/metrics?format=json", Some(&secret), vec![], &[])
        .await;
    t.raw("GET", "/v1/metrics", Some(&token), vec![], &[]).await;
    t.call("POST", &format!("/v1/nodes/{node}/drain"), None)
        .await;
    t.call("POST", &format!("/v1/nodes/{node}/resume"), None)
        .await;
    // Personal tokens (issue 21): create, list, whoami, a submitter's job, refusals, revoke.
    let created = t
        .call(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "tour-anna", "role": "submitter", "queues": [q], "max_priority": 80, "expires": "1d"})),
        )
        .await
        .json();
    let (tid, personal) = (s(&created["id"]), s(&created["token"]));
    t.call(
        "POST",
        "/v1/tokens",
        Some(json!({"name": "tour-join", "role": "node-join"})),
    )
    .await;
    t.call("GET", "/v1/tokens", None).await;
    t.call("GET", "/v1/whoami", None).await;
    t.raw("GET", "/v1/whoami", Some(&personal), vec![], &[])
        .await;
    t.raw("GET", "/v1/whoami", Some(&token), vec![], &[]).await;
    let mine = serde_json::to_vec(&spec).unwrap_or_default();
    t.raw("POST", "/v1/jobs", Some(&personal), mine, &[]).await;
    t.raw("POST", "/v1/tokens", Some(&personal), b"{}".to_vec(), &[])
        .await;
    t.raw(
        "DELETE",
        &format!("/v1/jobs/{id}"),
        Some(&personal),
        vec![],
        &[],
    )
    .await;
    t.call("DELETE", &format!("/v1/tokens/{tid}"), None).await;
    t.call("DELETE", &format!("/v1/tokens/{tid}"), None).await;
    t.raw("GET", "/v1/whoami", Some(&personal), vec![], &[])
        .await;
    t.call("DELETE", &format!("/v1/jobs/{id}"), None).await;
    t.call("DELETE", &format!("/v1/nodes/{node}"), None).await;
    t.call("PUT", "/v1/jobs", None).await;
    let broken_job = json!({"id": 1, "state": "exploded"});
    let caught = schema_errors(&t.doc, "#/components/schemas/Job", &broken_job);
    assert!(
        caught.len() > 2,
        "the schemas should be strict enough to catch a broken job"
    );
    let problems = t.problems.into_inner();
    assert!(
        *t.checked.borrow() > 50,
        "the tour should check many answers"
    );
    assert!(
        problems.is_empty(),
        "answers that do not match the OpenAPI description:\n{}",
        problems.join("\n")
    );
}

cases!(every_answer_of_a_tour_matches_the_openapi_description);
