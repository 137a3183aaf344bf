//! Claims, leases, heartbeats and acks: the scheduling rules.

use crate::harness::Farm;
use serde_json::{json, Value};

fn ids(tasks: &[Value]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| t["_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn claims_go_by_priority_then_age(f: &Farm) {
    let old_low = f.submit(json!({"frames": "1", "priority": 10})).await;
    let old_mid = f.submit(json!({"frames": "1", "priority": 50})).await;
    let new_mid = f.submit(json!({"frames": "1", "priority": 50})).await;
    let high = f.submit(json!({"frames": "1", "priority": 90})).await;
    let order: Vec<Value> = [
        f.claim("n", 1).await,
        f.claim("n", 1).await,
        f.claim("n", 1).await,
        f.claim("n", 1).await,
    ]
    .iter()
    .map(|c| c.first().map(|t| t["job"].clone()).unwrap_or(Value::Null))
    .collect();
    assert_eq!(
        order,
        vec![
            high["id"].clone(),
            old_mid["id"].clone(),
            new_mid["id"].clone(),
            old_low["id"].clone()
        ],
        "higher priority first, then oldest first"
    );
    assert_eq!(
        f.poll("n", 1, json!([])).await.status,
        204,
        "nothing left: 204"
    );
}

async fn claim_answers_the_task_with_lease_and_settings(f: &Farm) {
    let job = f.submit(json!({"frames": "1-4", "chunk_size": 2, "params": {"program": "touchframe", "args": ["{from}", "{to}"]}})).await;
    let t = &f.claim("n1", 1).await[0];
    assert_eq!(t["job"], job["id"]);
    assert_eq!(t["type"], "command");
    assert_eq!(t["frames"], json!({"from": 1, "to": 2, "step": 1}));
    assert_eq!(t["params"]["args"], json!(["{from}", "{to}"]));
    assert_eq!(t["attempt"], 1);
    assert_eq!(t["lease_ms"], f.lease_ms());
    assert!(
        t["lease"].as_str().is_some_and(|l| l.len() >= 16),
        "a lease token"
    );
    let s = f
        .call("GET", &format!("/v1/queue/{}", f.queue()), None)
        .await
        .json();
    assert_eq!(s["lease_ms"], f.lease_ms());
    assert!(s["interval"].as_u64().is_some() && s["heartbeat_ms"].as_u64().is_some());
    let view = f
        .call(
            "GET",
            &format!("/v1/tasks/{}", t["_id"].as_str().unwrap_or_default()),
            None,
        )
        .await
        .json();
    assert_eq!(view["state"], "leased");
    assert_eq!(view["lease"]["node"], "n1");
    assert!(
        view["lease"]["token"].is_null()
            && !view
                .to_string()
                .contains(t["lease"].as_str().unwrap_or("-")),
        "the lease token is never shown"
    );
}

async fn tasks_go_only_to_nodes_with_the_type_and_tags(f: &Farm) {
    let gpu = f.submit(json!({"frames": "1", "tags": ["gpu"]})).await;
    let blender = f.submit(json!({"type": "blender", "frames": "1", "params": {"file": "a.blend", "output": "o/f_#"}})).await;
    let q = format!("/v1/queue/{}", f.queue());
    let cpu_command = f
        .call(
            "POST",
            &q,
            Some(json!({"node": "cpu", "types": ["command"], "tags": []})),
        )
        .await;
    assert_eq!(
        cpu_command.status, 204,
        "an untagged command node takes neither the gpu job nor the blender job"
    );
    let r = f
        .call(
            "POST",
            &q,
            Some(json!({"node": "gpu", "types": ["command"], "tags": ["gpu", "linux"], "max": 5})),
        )
        .await
        .json();
    assert_eq!(ids(r["tasks"].as_array().map_or(&[][..], |v| v)).len(), 1);
    assert_eq!(
        r["tasks"][0]["job"], gpu["id"],
        "a node with the tag takes the tagged job"
    );
    let r = f
        .call(
            "POST",
            &q,
            Some(json!({"node": "b", "types": ["blender"], "max": 5})),
        )
        .await
        .json();
    assert_eq!(r["tasks"][0]["job"], blender["id"]);
}

async fn fifty_concurrent_claimers_never_share_a_task(f: &Farm) {
    // Exclusive leases under contention are exactly what a store without an atomic CAS cannot
    // promise (Workers KV: at-least-once, docs/CLOUDFLARE.md).
    if !f
        .needs_atomic_cas("fifty_concurrent_claimers_never_share_a_task")
        .await
    {
        return;
    }
    f.submit(json!({"frames": "1-20", "chunk_size": 1})).await;
    let claims = futures_util::future::join_all((0..50).map(|i| {
        let node = format!("node-{i}");
        async move { f.claim(&node, 1).await }
    }))
    .await;
    let mut all: Vec<String> = claims.iter().flat_map(|c| ids(c)).collect();
    assert_eq!(all.len(), 20, "all 20 tasks were claimed");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20, "no task went to two claimers");
}

async fn an_expired_lease_goes_back_to_the_queue(f: &Farm) {
    let job = f.submit(json!({"frames": "1"})).await;
    let claimed = f.mark();
    let first = f.claim("dies", 1).await;
    assert_eq!(first.len(), 1);
    let early = f.claim("other", 1).await;
    // On a machine slow enough that the lease lapsed before that claim, it may take the task
    // (and then this case goes on with that second holder).
    if f.lease_live_since(claimed) {
        assert!(early.is_empty(), "a live lease is not claimable");
    }
    let second = if early.is_empty() {
        f.advance(f.lease_ms() + 300).await;
        f.claim("other", 1).await
    } else {
        early
    };
    assert_eq!(
        ids(&second),
        ids(&first),
        "after expiry another node gets the task"
    );
    assert_eq!(second[0]["attempt"], 2);
    let late = f.done(&first[0]).await;
    assert_eq!(
        (late.status, late.code().as_str()),
        (409, "stale_lease"),
        "the old holder's ack is refused"
    );
    assert!(
        late.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("taken over"),
        "and told why: {:?}",
        late.json()
    );
    assert_eq!(f.done(&second[0]).await.status, 200);
    let task = &f.tasks(job["id"].as_str().unwrap_or_default()).await[0];
    assert_eq!(task["state"], "completed");
    assert_eq!(task["history"][0]["outcome"], "expired");
    assert_eq!(task["history"][1]["outcome"], "completed");
    assert_eq!(
        task["history"][1]["node"], "other",
        "the winner's attempt is the one recorded completed"
    );
}

async fn heartbeats_extend_the_lease_and_carry_progress_and_logs(f: &Farm) {
    f.submit(json!({"frames": "1-4", "chunk_size": 4})).await;
    // Each heartbeat renews the lease from when the server handles it, so the lease is surely
    // live up to a lease length after the last heartbeat was sent (`beat`).
    let mut beat = f.mark();
    let t = &f.claim("n1", 1).await[0];
    let id = t["_id"].as_str().unwrap_or_default();
    for i in 0..3u64 {
        f.advance(f.lease_ms() / 2).await;
        let sent = f.mark();
        let hb = f.call("POST", &format!("/v1/tasks/{id}/heartbeat"),
            Some(json!({"lease": t["lease"], "progress": {"done": i + 1, "total": 4}, "activity": format!("Fra:{}", i + 1), "log": format!("line {i}\n")}))).await;
        // A heartbeat after the lease lapsed still holds it while nobody claimed the task.
        assert_eq!(hb.status, 200, "{:?}", hb.json());
        assert_eq!(hb.json()["keep_running"], true);
        beat = sent;
    }
    let taken = f.claim("n2", 1).await;
    assert!(
        taken.is_empty() || !f.lease_live_since(beat),
        "a heartbeating node keeps its lease past the first expiry time"
    );
    if !taken.is_empty() {
        // The machine was too slow for the lease to be surely live: nothing more to check.
        return;
    }
    let view = f.call("GET", &format!("/v1/tasks/{id}"), None).await.json();
    assert_eq!(view["progress"], json!({"done": 3, "total": 4}));
    assert_eq!(view["activity"], "Fra:3");
    let log = f.call("GET", &format!("/v1/tasks/{id}/log"), None).await;
    assert_eq!(
        String::from_utf8_lossy(&log.body),
        "line 0\nline 1\nline 2\n",
        "log chunks in order"
    );
    let job = f.job(view["job"].as_str().unwrap_or_default()).await;
    assert_eq!(
        job["frames_done"], 3,
        "job progress counts running tasks' frames"
    );
    let wrong = f
        .call(
            "POST",
            &format!("/v1/tasks/{id}/heartbeat"),
            Some(json!({"lease": "not-the-token"})),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.json()["keep_running"].as_bool()),
        (409, Some(false))
    );
}

async fn failed_attempts_retry_elsewhere_until_max_attempts(f: &Farm) {
    let job = f.submit(json!({"frames": "1", "max_attempts": 2})).await;
    let a = f.claim("a", 1).await;
    assert_eq!(f.fail(&a[0], "exit code 1").await.status, 200);
    assert!(
        f.claim("a", 1).await.is_empty(),
        "the node that failed a task does not get it again"
    );
    let b = f.claim("b", 1).await;
    assert_eq!(b.len(), 1, "another node does");
    assert_eq!(f.fail(&b[0], "exit code 2").await.status, 200);
    let j = f.job(job["id"].as_str().unwrap_or_default()).await;
    assert_eq!(
        j["state"], "failed",
        "two failures with max_attempts 2 fail the task and the job"
    );
    let t = &f.tasks(job["id"].as_str().unwrap_or_default()).await[0];
    assert_eq!(t["error"], "exit code 2");
    assert_eq!(t["failed_nodes"], json!(["a", "b"]));
    assert!(f.claim("c", 1).await.is_empty());
}

async fn three_failing_nodes_fail_a_task_whatever_its_attempts(f: &Farm) {
    let job = f.submit(json!({"frames": "1", "max_attempts": 10})).await;
    for node in ["a", "b", "c"] {
        let t = f.claim(node, 1).await;
        assert_eq!(t.len(), 1, "{node} gets the task");
        assert_eq!(f.fail(&t[0], "crash").await.status, 200);
    }
    assert_eq!(
        f.job(job["id"].as_str().unwrap_or_default()).await["state"],
        "failed"
    );
    assert!(f.claim("d", 1).await.is_empty());
}

async fn on_failure_continue_lets_the_other_tasks_run(f: &Farm) {
    let job = f
        .submit(json!({"frames": "1-3", "max_attempts": 1, "on_failure": "continue"}))
        .await;
    let t = f.claim("a", 1).await;
    assert_eq!(f.fail(&t[0], "bad frame").await.status, 200);
    assert_eq!(
        f.job(job["id"].as_str().unwrap_or_default()).await["state"],
        "active"
    );
    for t in f.claim("b", 2).await {
        assert_eq!(f.done(&t).await.status, 200);
    }
    let j = f.job(job["id"].as_str().unwrap_or_default()).await;
    assert_eq!(
        (
            j["state"].as_str(),
            j["counts"]["completed"].as_u64(),
            j["counts"]["failed"].as_u64()
        ),
        (Some("failed"), Some(2), Some(1))
    );
}

async fn first_success_wins_and_late_acks_change_nothing(f: &Farm) {
    let job = f.submit(json!({"frames": "1"})).await;
    let t = f.claim("a", 1).await;
    let ok = f
        .call(
            "POST",
            &format!("/v1/tasks/{}/ack", t[0]["_id"].as_str().unwrap_or_default()),
            Some(json!({"lease": t[0]["lease"], "status": "done", "result": {"winner": "a"}})),
        )
        .await;
    assert_eq!(ok.status, 200);
    let dup = f
        .call(
            "POST",
            &format!("/v1/tasks/{}/ack", t[0]["_id"].as_str().unwrap_or_default()),
            Some(json!({"lease": t[0]["lease"], "status": "done", "result": {"winner": "dup"}})),
        )
        .await;
    assert_eq!(
        (dup.status, dup.code().as_str()),
        (409, "stale_lease"),
        "a second ack is refused"
    );
    let fail = f.fail(&t[0], "late failure").await;
    assert_eq!(fail.status, 409);
    let task = &f.tasks(job["id"].as_str().unwrap_or_default()).await[0];
    assert_eq!(
        (task["state"].as_str(), &task["result"]),
        (Some("completed"), &json!({"winner": "a"})),
        "the first result stays"
    );
}

async fn acks_ride_on_the_next_poll(f: &Farm) {
    f.submit(json!({"frames": "1-3"})).await;
    let t = f.claim("n", 1).await;
    let r = f.poll("n", 1, json!([{"_id": t[0]["_id"], "status": "done", "lease": t[0]["lease"], "result": {"exit_code": 0}},
                                  {"_id": t[0]["_id"], "status": "done", "lease": t[0]["lease"]}])).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["acks"][0]["ok"], true);
    assert_eq!(
        body["acks"][1]["ok"], false,
        "a duplicate ack in the same poll is refused"
    );
    assert_eq!(body["acks"][1]["error"]["code"], "stale_lease");
    assert_eq!(
        body["tasks"].as_array().map(Vec::len),
        Some(1),
        "and the next task is claimed in the same request"
    );
    let last = body["tasks"][0].clone();
    let r = f
        .poll(
            "n",
            1,
            json!([{"_id": last["_id"], "status": "done", "lease": last["lease"]}]),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "a poll with acks answers 200 even when nothing more is claimable"
    );
}

async fn release_requeues_at_once_without_counting_a_failure(f: &Farm) {
    f.submit(json!({"frames": "1", "max_attempts": 1})).await;
    let t = f.claim("a", 1).await;
    let id = t[0]["_id"].as_str().unwrap_or_default();
    let r = f
        .call(
            "POST",
            &format!("/v1/tasks/{id}/release"),
            Some(json!({"lease": t[0]["lease"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "queued");
    let again = f.claim("a", 1).await;
    assert_eq!(
        ids(&again),
        vec![id.to_string()],
        "released at once, even to the same node, and not counted as a failure"
    );
    let stale = f
        .call(
            "POST",
            &format!("/v1/tasks/{id}/release"),
            Some(json!({"lease": t[0]["lease"]})),
        )
        .await;
    assert_eq!(stale.status, 409);
}

async fn a_lease_expired_max_attempts_times_fails_the_task(f: &Farm) {
    let job = f.submit(json!({"frames": "1", "max_attempts": 2})).await;
    assert_eq!(f.claim("a", 1).await.len(), 1);
    f.advance(f.lease_ms() + 300).await;
    assert_eq!(
        f.claim("a", 1).await.len(),
        1,
        "an expiry does not blocklist the node"
    );
    f.advance(f.lease_ms() + 300).await;
    assert!(
        f.claim("b", 1).await.is_empty(),
        "the second expiry used the last attempt"
    );
    let j = f.job(job["id"].as_str().unwrap_or_default()).await;
    assert_eq!(j["state"], "failed");
    let t = &f.tasks(job["id"].as_str().unwrap_or_default()).await[0];
    assert!(t["error"].as_str().unwrap_or("").contains("lease expired"));
}

/// An `ffmpeg` job (a preview video) is one task over its frames, waits for the render it
/// names, and goes only to nodes that run FFmpeg; malformed ones are refused by field with the
/// store unchanged.
async fn an_encode_job_is_one_task_for_ffmpeg_nodes_after_its_render(f: &Farm) {
    let render = f.submit(json!({"frames": "1-3"})).await;
    let encode = f
        .submit(
            json!({"type": "ffmpeg", "frames": "1-3", "chunk_size": null,
            "after_jobs": [render["id"]], "on_dependency_failure": "cancel",
            "params": {"input": "shot/f_####.png", "output": "shot/f.mp4", "fps": 24,
                       "from_job": render["id"]}}),
        )
        .await;
    assert_eq!(encode["counts"]["total"], 1, "{encode:#}");
    assert_eq!(encode["state"], "waiting", "{encode:#}");
    let q = format!("/v1/queue/{}", f.queue());
    let as_ffmpeg = || Some(json!({"node": "enc", "types": ["ffmpeg"], "max": 5}));
    assert_eq!(
        f.call("POST", &q, as_ffmpeg()).await.status,
        204,
        "it waits"
    );
    for t in f.claim("n1", 5).await {
        assert_eq!(
            t["job"], render["id"],
            "a command node never gets the encode"
        );
        assert_eq!(f.done(&t).await.status, 200);
    }
    assert!(
        f.claim("n1", 5).await.is_empty(),
        "a command node takes no ffmpeg task"
    );
    let r = f.call("POST", &q, as_ffmpeg()).await.json();
    let tasks = r["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{r:#}");
    assert_eq!(tasks[0]["job"], encode["id"]);
    assert_eq!(
        tasks[0]["frames"],
        json!({"from": 1, "to": 3, "step": 1}),
        "{r:#}"
    );
    // Its inputs are the render's outputs that are frames of `input` (none were uploaded here).
    let inputs = f
        .call(
            "GET",
            &format!("/v1/jobs/{}/inputs", encode["id"].as_str().unwrap_or("")),
            None,
        )
        .await;
    assert_eq!(inputs.status, 200);
    assert_eq!(inputs.json()["files"], json!([]));

    let s = f.secret();
    let spec = |frames: &str, params: Value, after: Value| {
        serde_json::to_vec(
            &json!({"type": "ffmpeg", "queue": f.queue(), "frames": frames,
            "params": params, "after_jobs": after}),
        )
        .unwrap_or_default()
    };
    let good = json!({"input": "s/f_####.png", "output": "s/f.mp4"});
    let with = |k: &str, v: Value| {
        let mut p = good.clone();
        p[k] = v;
        p
    };
    for (body, field) in [
        (spec("1-9x2", good.clone(), json!([])), "frames"),
        (
            spec("1-3", with("output", json!("s/f.mov")), json!([])),
            "params.output",
        ),
        (
            spec("1-3", with("input", json!("s/f.png")), json!([])),
            "params.input",
        ),
        (spec("1-3", with("fps", json!(-1)), json!([])), "params.fps"),
        (
            spec("1-3", with("from_job", render["id"].clone()), json!([])),
            "params.from_job",
        ),
    ] {
        crate::errors::rejected(f, "POST", "/v1/jobs", &body, Some(&s), 400, Some(field)).await;
    }
}

crate::cases!(
    an_encode_job_is_one_task_for_ffmpeg_nodes_after_its_render,
    claims_go_by_priority_then_age,
    claim_answers_the_task_with_lease_and_settings,
    tasks_go_only_to_nodes_with_the_type_and_tags,
    fifty_concurrent_claimers_never_share_a_task,
    failed_attempts_retry_elsewhere_until_max_attempts,
    three_failing_nodes_fail_a_task_whatever_its_attempts,
    on_failure_continue_lets_the_other_tasks_run,
    first_success_wins_and_late_acks_change_nothing,
    acks_ride_on_the_next_poll,
    release_requeues_at_once_without_counting_a_failure;
    lapse: an_expired_lease_goes_back_to_the_queue,
    heartbeats_extend_the_lease_and_carry_progress_and_logs,
    a_lease_expired_max_attempts_times_fails_the_task,
);
