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

    // Restarted with more slots, the node says so in its polls; a bad count is refused by
    // name and changes nothing.
    let bad = f
        .call_as(&token, "POST", &q, Some(json!({"max": 0, "slots": 0})))
        .await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("slots"))
    );
    let slots = || async {
        let me = f.call("GET", &format!("/v1/nodes/{id}"), None).await.json();
        me["slots"].as_u64()
    };
    assert_eq!(slots().await, Some(2), "unchanged by the refused poll");
    let r = f
        .call_as(&token, "POST", &q, Some(json!({"max": 0, "slots": 6})))
        .await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.json());
    assert_eq!(slots().await, Some(6), "remembered like its types and tags");
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

/// A node that leaves (the end of a drain) gives back what it still holds at once — a lease
/// granted in a poll answer it never read, say — instead of leaving the task to wait out the
/// lease. Started again under the same id, it claims anew and keeps what it claims then.
async fn a_node_that_leaves_gives_back_its_leases_at_once(f: &Farm) {
    let tag = format!("t{}", f.queue().len());
    let (a, token_a) = enrol(f, "leaver", json!([tag])).await;
    let (_b, token_b) = enrol(f, "stayer", json!([tag])).await;
    f.submit(json!({"frames": "1-2", "tags": [tag]})).await;
    let q = format!("/v1/queue/{}", f.queue());
    let r = f
        .call_as(&token_a, "POST", &q, Some(json!({"max": 1})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let lost = r.json()["tasks"][0].clone();
    let lost_id = lost["_id"].as_str().unwrap_or_default().to_string();
    // Leases granted strictly before the leave are given back (the clock's unit is the ms).
    f.advance(1).await;
    let left = f
        .call_as(&token_a, "POST", &format!("/v1/nodes/{a}/leave"), None)
        .await;
    assert_eq!(left.status, 200, "{:?}", left.json());
    // The other node gets both tasks now, the left node's one included (well within the lease).
    let r = f
        .call_as(&token_b, "POST", &q, Some(json!({"max": 2})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let ids: Vec<String> = r.json()["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        ids.contains(&lost_id),
        "the left node's lease was given back: {ids:?}"
    );
    let hb = f
        .call_as(
            &token_a,
            "POST",
            &format!("/v1/tasks/{lost_id}/heartbeat"),
            Some(json!({"lease": lost["lease"]})),
        )
        .await;
    assert_eq!(
        hb.json()["keep_running"],
        false,
        "the old holder is told to stop: {:?}",
        hb.json()
    );
    // Back under the same id: a new lease is its own and stays.
    f.advance(1).await;
    f.submit(json!({"frames": "1", "tags": [tag]})).await;
    let r = f.call_as(&token_a, "POST", &q, Some(json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let kept = r.json()["tasks"][0].clone();
    let _ = f.call_as(&token_b, "POST", &q, Some(json!({}))).await;
    let view = f
        .call(
            "GET",
            &format!("/v1/tasks/{}", kept["_id"].as_str().unwrap_or_default()),
            None,
        )
        .await
        .json();
    assert_eq!(view["lease"]["node"], a.as_str(), "{view:#}");
}

crate::cases!(
    a_node_that_leaves_gives_back_its_leases_at_once,
    an_enrolled_node_polls_with_its_own_token,
    a_node_token_cannot_do_admin_things_or_use_another_nodes_lease,
    drain_stops_new_claims_until_resume,
    a_revoked_token_stops_working,
);
