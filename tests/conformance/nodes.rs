//! Node enrolment, node tokens and drain.

use crate::harness::Farm;
use serde_json::{json, Value};

async fn enrol(f: &Farm, name: &str, tags: Value) -> (String, String) {
    let r = f
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"name": name, "tags": tags, "types": ["command"], "slots": 2})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let b = r.json();
    (
        b["node"]["id"].as_str().unwrap_or_default().to_string(),
        b["token"].as_str().unwrap_or_default().to_string(),
    )
}

async fn an_enrolled_node_polls_with_its_own_token(f: &Farm) {
    let (id, token) = enrol(f, "box-1", json!(["gpu"])).await;
    f.submit(json!({"frames": "1", "tags": ["gpu"]})).await;
    let q = format!("/v1/queue/{}", f.queue());
    let r = f.call_as(&token, "POST", &q, Some(json!({}))).await;
    assert_eq!(
        r.status,
        200,
        "the token polls, with the enrolled types and tags: {:?}",
        r.json()
    );
    let task = r.json()["tasks"][0].clone();
    let view = f
        .call(
            "GET",
            &format!("/v1/tasks/{}", task["_id"].as_str().unwrap_or_default()),
            None,
        )
        .await
        .json();
    assert_eq!(view["lease"]["node"], id.as_str());
    let hb = f
        .call_as(
            &token,
            "POST",
            &format!(
                "/v1/tasks/{}/heartbeat",
                task["_id"].as_str().unwrap_or_default()
            ),
            Some(json!({"lease": task["lease"]})),
        )
        .await;
    assert_eq!(hb.status, 200);
    let nodes = f.call("GET", "/v1/nodes", None).await.json();
    let me = nodes["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == id.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(
        (me["name"].as_str(), me["slots"].as_u64()),
        (Some("box-1"), Some(2))
    );
    assert!(
        me.get("token_sha256").is_none() && !nodes.to_string().contains(&token),
        "tokens and hashes are never shown"
    );
}

async fn a_node_token_cannot_do_admin_things_or_use_another_nodes_lease(f: &Farm) {
    let (_, a) = enrol(f, "a", json!([])).await;
    let (_, b) = enrol(f, "b", json!([])).await;
    let job = f.submit(json!({"frames": "1"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    let q = format!("/v1/queue/{}", f.queue());
    let spec = json!({"type": "command", "queue": f.queue(), "params": {"program": "p"}});
    assert_eq!(
        f.call_as(&a, "POST", "/v1/jobs", Some(spec)).await.status,
        403,
        "a node cannot submit"
    );
    assert_eq!(
        f.call_as(&a, "DELETE", &format!("/v1/jobs/{id}"), None)
            .await
            .status,
        403,
        "a node cannot delete"
    );
    assert_eq!(
        f.call_as(&a, "POST", "/v1/nodes", Some(json!({})))
            .await
            .status,
        403,
        "a node cannot enrol nodes"
    );
    let task = f.call_as(&a, "POST", &q, Some(json!({}))).await.json()["tasks"][0].clone();
    let tid = task["_id"].as_str().unwrap_or_default();
    let stolen = f
        .call_as(
            &b,
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": task["lease"], "status": "done"})),
        )
        .await;
    assert_eq!(
        stolen.status, 403,
        "node b cannot ack node a's lease even with its token"
    );
    assert_eq!(
        f.job(id).await["counts"]["leased"],
        1,
        "and the task is still a's"
    );
    let own = f
        .call_as(
            &a,
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": task["lease"], "status": "done"})),
        )
        .await;
    assert_eq!(own.status, 200);
}

async fn drain_stops_new_claims_until_resume(f: &Farm) {
    let (id, token) = enrol(f, "d", json!([])).await;
    f.submit(json!({"frames": "1-2"})).await;
    let q = format!("/v1/queue/{}", f.queue());
    let r = f.call("POST", &format!("/v1/nodes/{id}/drain"), None).await;
    assert_eq!(r.json()["state"], "draining");
    let p = f.call_as(&token, "POST", &q, Some(json!({}))).await;
    assert_eq!(p.status, 204, "a draining node is handed nothing");
    f.call("POST", &format!("/v1/nodes/{id}/resume"), None)
        .await;
    let p = f.call_as(&token, "POST", &q, Some(json!({}))).await;
    assert_eq!(
        (p.status, p.json()["node_state"].as_str()),
        (200, Some("awake"))
    );
}

async fn a_revoked_token_stops_working(f: &Farm) {
    let (id, token) = enrol(f, "gone", json!([])).await;
    assert_eq!(
        f.call("DELETE", &format!("/v1/nodes/{id}"), None)
            .await
            .status,
        200
    );
    let q = format!("/v1/queue/{}", f.queue());
    assert_eq!(
        f.call_as(&token, "POST", &q, Some(json!({}))).await.status,
        403
    );
}

crate::cases!(
    an_enrolled_node_polls_with_its_own_token,
    a_node_token_cannot_do_admin_things_or_use_another_nodes_lease,
    drain_stops_new_claims_until_resume,
    a_revoked_token_stops_working,
);
