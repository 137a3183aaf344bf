//! What a small farm shows and does when things go wrong (issue 15): a task every node failed
//! fails instead of waiting for ever, a job says why it waits, nodes that stop are shown
//! offline, and a node's late ack is kept when nobody else took its task.

use crate::harness::Farm;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::{Duration, Instant};

// The OpenAPI checker of `openapi.rs` (private there), for the answers these cases add.
#[path = "openapi/check.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod check;

/// A node enrolled with its own token, that has polled this farm's queue once (nodes reach the
/// jobs of the queues they poll).
struct Node {
    id: String,
    name: String,
    token: String,
}

async fn enrol(f: &Farm, name: &str, types: Value, tags: Value) -> Node {
    // Names unique per farm: cases may share one server.
    let name = format!("{name}-{}", f.queue());
    let r = f
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"name": name, "tags": tags, "types": types, "slots": 1})),
        )
        .await;
    assert_eq!(r.status, 201, "enrol: {:?}", r.json());
    let b = r.json();
    let node = Node {
        id: b["node"]["id"].as_str().unwrap_or_default().to_string(),
        name,
        token: b["token"].as_str().unwrap_or_default().to_string(),
    };
    poll(f, &node, 0, json!([])).await;
    node
}

async fn poll(f: &Farm, n: &Node, max: u32, acks: Value) -> Vec<Value> {
    let path = format!("/v1/queue/{}", f.queue());
    let r = f
        .call_as(
            &n.token,
            "POST",
            &path,
            Some(json!({"max": max, "tasks": acks})),
        )
        .await;
    match r.status {
        204 => vec![],
        200 => r.json()["tasks"].as_array().cloned().unwrap_or_default(),
        other => panic!("poll answered {other}: {:?}", r.json()),
    }
}

async fn fail_as(f: &Farm, n: &Node, task: &Value, error: &str) {
    let id = task["_id"].as_str().unwrap_or_default();
    let r = f
        .call_as(
            &n.token,
            "POST",
            &format!("/v1/tasks/{id}/ack"),
            Some(json!({"lease": task["lease"], "status": "failed", "error": error})),
        )
        .await;
    assert_eq!(r.status, 200, "the failure ack is accepted: {:?}", r.json());
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

async fn node_view(f: &Farm, id: &str) -> Value {
    let r = f.call("GET", &format!("/v1/nodes/{id}"), None).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()
}

async fn a_task_every_node_failed_fails_its_job_with_the_error(f: &Farm) {
    let a = enrol(f, "node-a", json!(["command"]), json!([])).await;
    let b = enrol(f, "node-b", json!(["command"]), json!([])).await;
    let job = f.submit(json!({"frames": "1", "max_attempts": 3})).await;
    let jid = id_of(&job);
    let t = poll(f, &a, 1, json!([])).await.remove(0);
    fail_as(f, &a, &t, "missing file shots/12.blend").await;
    assert_eq!(
        f.tasks(&jid).await[0]["state"],
        "queued",
        "one node failed it, the other may still take it"
    );
    let t = poll(f, &b, 1, json!([])).await.remove(0);
    fail_as(f, &b, &t, "missing file shots/12.blend").await;
    let view = f.job(&jid).await;
    assert_eq!(
        view["state"], "failed",
        "both nodes that can run it failed it, with attempts left: nobody is left to try, so \
         the job fails instead of waiting for ever: {view}"
    );
    let error = view["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("missing file shots/12.blend")
            && error.contains(&a.name)
            && error.contains(&b.name),
        "the job's error says what failed and on which nodes: {error:?}"
    );
    let tasks = f.tasks(&jid).await;
    assert_eq!(tasks[0]["state"], "failed");

    // Requeue: the nodes that failed it get it again (the user fixed the file).
    let r = f
        .call("POST", &format!("/v1/jobs/{jid}/requeue"), Some(json!({})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let again = poll(f, &a, 1, json!([])).await;
    assert_eq!(
        again.len(),
        1,
        "after a requeue a node that failed the task may take it again"
    );
}

async fn requeue_forgets_which_nodes_failed_a_waiting_task(f: &Farm) {
    let a = enrol(f, "node-a", json!(["command"]), json!([])).await;
    // A second node that could take it, so the task waits for it after `a` fails it.
    let _b = enrol(f, "node-b", json!(["command"]), json!([])).await;
    let job = f.submit(json!({"frames": "1", "max_attempts": 5})).await;
    let jid = id_of(&job);
    let t = poll(f, &a, 1, json!([])).await.remove(0);
    fail_as(f, &a, &t, "out of memory").await;
    assert!(
        poll(f, &a, 1, json!([])).await.is_empty(),
        "a node is not handed a task it failed"
    );
    let r = f
        .call("POST", &format!("/v1/jobs/{jid}/requeue"), Some(json!({})))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let tasks = f.tasks(&jid).await;
    assert_eq!(
        (
            tasks[0]["failures"].as_u64(),
            tasks[0]["failed_nodes"].clone()
        ),
        (Some(0), json!([])),
        "requeue clears the failed-node memory of a task still waiting"
    );
    assert_eq!(
        poll(f, &a, 1, json!([])).await.len(),
        1,
        "after the requeue the node that failed it runs it again"
    );
}

async fn a_job_no_node_can_take_says_why_it_waits(f: &Farm) {
    let q = f.queue().to_string();
    let spec = json!({"type": "blender", "tags": ["gpu"], "frames": "1-2", "chunk_size": 1,
                      "queue": q, "params": {"file": "shots/12.blend", "output": "o/f_####"}});
    let r = f.call("POST", "/v1/jobs", Some(spec)).await;
    assert_eq!(r.status, 202, "{:?}", r.json());
    let want = format!("no node with type blender and tag gpu on queue {q}");
    assert_eq!(
        r.json()["waiting"],
        want.as_str(),
        "the submit answer says why the job will wait"
    );
    let jid = id_of(&r.json());
    assert_eq!(f.job(&jid).await["waiting"], want.as_str());
    let list = f
        .call("GET", &format!("/v1/jobs?queue={q}"), None)
        .await
        .json();
    let row = list["jobs"]
        .as_array()
        .and_then(|j| j.iter().find(|j| j["id"] == jid.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(row["waiting"], want.as_str(), "list rows say it too");

    // A node with the type but not the tag does not help; one with both does.
    enrol(f, "cpu-box", json!(["blender"]), json!([])).await;
    assert_eq!(f.job(&jid).await["waiting"], want.as_str());
    let gpu = enrol(f, "gpu-box", json!(["blender"]), json!(["gpu"])).await;
    assert_eq!(
        f.job(&jid).await["waiting"],
        Value::Null,
        "an online node could take it: no waiting reason"
    );
    let r = f
        .call("POST", &format!("/v1/nodes/{}/drain", gpu.id), None)
        .await;
    assert_eq!(r.status, 200);
    let why = f.job(&jid).await["waiting"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("draining") && why.contains(&gpu.name),
        "the only node that could take it is drained: {why:?}"
    );
    f.call("POST", &format!("/v1/nodes/{}/resume", gpu.id), None)
        .await;
    let r = f
        .call_as(
            &gpu.token,
            "POST",
            &format!("/v1/nodes/{}/leave", gpu.id),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let why = f.job(&jid).await["waiting"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("online") && why.contains(&gpu.name),
        "the only node that could take it left: {why:?}"
    );
}

async fn a_node_that_leaves_is_offline_at_once_until_it_polls_again(f: &Farm) {
    let n = enrol(f, "leaver", json!(["command"]), json!([])).await;
    let v = node_view(f, &n.id).await;
    assert_eq!(
        (v["state"].as_str(), v["online"].as_bool()),
        (Some("awake"), Some(true))
    );
    let other = enrol(f, "other", json!(["command"]), json!([])).await;
    let r = f
        .call_as(
            &other.token,
            "POST",
            &format!("/v1/nodes/{}/leave", n.id),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "a node may only leave for itself");
    let r = f
        .call_as(&n.token, "POST", &format!("/v1/nodes/{}/leave", n.id), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["online"].as_bool()),
        (Some("offline"), Some(false)),
        "the answer is the node, now offline"
    );
    let list = f.call("GET", "/v1/nodes", None).await.json();
    let listed = list["nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == n.id.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(listed["state"], "offline", "the node list shows it offline");
    let r = f.call("POST", "/v1/nodes/no-such-node/leave", None).await;
    assert_eq!(r.status, 404);
    poll(f, &n, 0, json!([])).await;
    assert_eq!(
        node_view(f, &n.id).await["state"],
        "awake",
        "a poll brings it back"
    );
}

async fn a_silent_node_is_shown_offline(f: &Farm) {
    let n = enrol(f, "silent", json!(["command"]), json!([])).await;
    assert_eq!(node_view(f, &n.id).await["state"], "awake");
    // No poll or heartbeat from now on: after a few poll/heartbeat intervals it is offline.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        f.advance(500).await;
        if node_view(f, &n.id).await["state"] == "offline" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a node silent for a minute should be shown offline"
        );
    }
}

async fn a_late_ack_for_a_lapsed_lease_nobody_took_is_accepted(f: &Farm) {
    let job = f
        .submit(json!({"frames": "1-3", "chunk_size": 1, "max_attempts": 2}))
        .await;
    let jid = id_of(&job);
    let held = f.claim("slow", 2).await;
    assert_eq!(held.len(), 2);
    // Give task 0 back, so that a later claim takes it and only settles task 1's lapsed lease.
    let r = f
        .call(
            "POST",
            &format!(
                "/v1/tasks/{}/release",
                held[0]["_id"].as_str().unwrap_or_default()
            ),
            Some(json!({"lease": held[0]["lease"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    f.advance(f.lease_ms() + 300).await;
    let other = f.claim("other", 1).await;
    assert_eq!(other.len(), 1);
    assert_ne!(
        other[0]["_id"], held[1]["_id"],
        "the other node took task 0"
    );
    let tid = held[1]["_id"].as_str().unwrap_or_default().to_string();
    let before = f
        .call("GET", &format!("/v1/tasks/{tid}"), None)
        .await
        .json();
    assert_eq!(
        before["state"], "queued",
        "the claim settled the lapsed lease: {before}"
    );
    // The slow node's result arrives: nobody took the task since, so it is kept.
    let late = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": held[1]["lease"], "status": "done", "result": {"by": "slow"}})),
        )
        .await;
    assert_eq!(
        late.status,
        200,
        "the late ack is accepted: {:?}",
        late.json()
    );
    let t = late.json();
    assert_eq!(
        (
            t["state"].as_str(),
            t["failures"].as_u64(),
            t["result"]["by"].as_str()
        ),
        (Some("completed"), Some(0), Some("slow")),
        "completed with the late result, and the lapse is not counted as a failure: {t}"
    );
    let again = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": held[1]["lease"], "status": "done", "result": {"by": "again"}})),
        )
        .await;
    assert_eq!(
        again.status, 409,
        "first success wins: a second ack is refused"
    );
    let view = f.job(&jid).await;
    assert_eq!(view["counts"]["completed"], 1);
}

async fn a_late_ack_is_refused_once_another_node_took_the_lapsed_task(f: &Farm) {
    f.submit(json!({"frames": "1"})).await;
    let slow = f.claim("slow", 1).await.remove(0);
    f.advance(f.lease_ms() + 300).await;
    let taker = f.claim("taker", 1).await;
    assert_eq!(taker.len(), 1, "the lapsed task went to another node");
    let tid = slow["_id"].as_str().unwrap_or_default();
    let late = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": slow["lease"], "status": "done", "result": {}})),
        )
        .await;
    assert_eq!((late.status, late.code().as_str()), (409, "stale_lease"));
}

async fn a_heartbeat_revives_a_lapsed_lease_nobody_took(f: &Farm) {
    f.submit(json!({"frames": "1-2", "chunk_size": 1})).await;
    let held = f.claim("slow", 2).await;
    let r = f
        .call(
            "POST",
            &format!(
                "/v1/tasks/{}/release",
                held[0]["_id"].as_str().unwrap_or_default()
            ),
            Some(json!({"lease": held[0]["lease"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    f.advance(f.lease_ms() + 300).await;
    assert_eq!(f.claim("other", 1).await.len(), 1);
    let tid = held[1]["_id"].as_str().unwrap_or_default();
    let beat = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/heartbeat"),
            Some(json!({"lease": held[1]["lease"]})),
        )
        .await;
    assert_eq!(
        (beat.status, beat.json()["keep_running"].as_bool()),
        (200, Some(true)),
        "the node keeps rendering: {:?}",
        beat.json()
    );
    let t = f
        .call("GET", &format!("/v1/tasks/{tid}"), None)
        .await
        .json();
    assert_eq!(
        (t["state"].as_str(), t["lease"]["node"].as_str()),
        (Some("leased"), Some("slow"))
    );
}

async fn the_new_answers_match_the_openapi_description(f: &Farm) {
    let doc: Value =
        serde_json::from_str(edgefarm::core::dashboard::OPENAPI).expect("openapi.json is JSON");
    let t = check::Tour {
        farm: f,
        doc,
        problems: RefCell::new(Vec::new()),
        checked: RefCell::new(0),
    };
    let n = enrol(f, "described", json!(["command"]), json!([])).await;
    let job = f.submit(json!({"frames": "1", "tags": ["nowhere"]})).await;
    let jid = id_of(&job);
    t.call("GET", &format!("/v1/jobs/{jid}"), None).await;
    t.call("GET", &format!("/v1/jobs?queue={}", f.queue()), None)
        .await;
    t.raw(
        "POST",
        &format!("/v1/nodes/{}/leave", n.id),
        Some(&n.token),
        vec![],
        &[],
    )
    .await;
    t.call("POST", "/v1/nodes/no-such-node/leave", None).await;
    t.call("GET", "/v1/nodes", None).await;
    t.call("GET", &format!("/v1/nodes/{}", n.id), None).await;
    f.submit(json!({"frames": "1-2", "chunk_size": 2})).await;
    assert_eq!(f.claim("renders", 1).await.len(), 1);
    let m = t.call("GET", "/v1/metrics?format=json", None).await.json();
    if m["scan_complete"] == true {
        // (A server shared with many other cases may scan only the newest jobs.)
        assert_eq!(
            m["renders_by_node"]["renders"][0]["frames"]["to"], 2,
            "the metrics say what each node renders: {m}"
        );
    }
    let problems = t.problems.borrow();
    assert!(
        problems.is_empty(),
        "answers the description does not match:\n{}",
        problems.join("\n")
    );
    assert_eq!(*t.checked.borrow(), 7);
}

crate::cases!(
    the_new_answers_match_the_openapi_description,
    a_task_every_node_failed_fails_its_job_with_the_error,
    requeue_forgets_which_nodes_failed_a_waiting_task,
    a_job_no_node_can_take_says_why_it_waits,
    a_node_that_leaves_is_offline_at_once_until_it_polls_again,
    a_silent_node_is_shown_offline;
    lapse: a_late_ack_for_a_lapsed_lease_nobody_took_is_accepted,
    a_late_ack_is_refused_once_another_node_took_the_lapsed_task,
    a_heartbeat_revives_a_lapsed_lease_nobody_took,
);
