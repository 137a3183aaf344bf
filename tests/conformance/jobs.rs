//! Submitting, reading, listing and steering jobs.

use crate::harness::Farm;
use serde_json::json;

async fn submit_answers_202_with_location_and_retry_after(f: &Farm) {
    let spec = json!({"type": "blender", "frames": "1-25", "chunk_size": 10, "queue": f.queue(),
                      "params": {"file": "shots/a.blend", "output": "out/a_####"}});
    let r = f.call("POST", "/v1/jobs", Some(spec)).await;
    assert_eq!(
        r.status, 202,
        "a new job is accepted with 202: {:?}",
        r.body
    );
    let job = r.json();
    let id = job["id"].as_str().unwrap_or_default();
    assert_eq!(id.len(), 36, "a job without an id gets a uuid");
    assert_eq!(r.header("location"), Some(format!("/v1/jobs/{id}")));
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some(),
        "Retry-After is a number of seconds"
    );
    assert_eq!(job["state"], "queued");
    assert_eq!(
        job["counts"]["total"], 3,
        "25 frames in chunks of 10 make 3 tasks"
    );
    assert_eq!(job["frames_total"], 25);
    assert_eq!(job["priority"], 50, "priority defaults to 50");
    assert_eq!(job["max_attempts"], 3, "max_attempts defaults to 3");
}

async fn frame_specs_split_into_runs_and_chunks(f: &Farm) {
    let job = f
        .submit(json!({"frames": "1,5,10-20", "chunk_size": 10}))
        .await;
    let tasks = f.tasks(job["id"].as_str().unwrap_or_default()).await;
    let frames: Vec<_> = tasks
        .iter()
        .map(|t| (t["frames"]["from"].as_i64(), t["frames"]["to"].as_i64()))
        .collect();
    assert_eq!(
        frames,
        vec![
            (Some(1), Some(1)),
            (Some(5), Some(5)),
            (Some(10), Some(19)),
            (Some(20), Some(20))
        ],
        "a task never spans two comma parts"
    );
    let stepped = f
        .submit(json!({"frames": "1-100x5", "chunk_size": 4}))
        .await;
    assert_eq!(
        stepped["frames_total"], 20,
        "every 5th frame of 1-100 is 20 frames"
    );
    assert_eq!(stepped["counts"]["total"], 5);
    let t = f.tasks(stepped["id"].as_str().unwrap_or_default()).await;
    assert_eq!(t[0]["frames"], json!({"from": 1, "to": 16, "step": 5}));
    let none = f.submit(json!({"frames": null})).await;
    assert_eq!(
        none["counts"]["total"], 1,
        "a job without frames is one task"
    );
}

async fn same_id_same_spec_is_idempotent_other_spec_conflicts(f: &Farm) {
    let id = format!("shot-{}", f.queue());
    let first = f.submit(json!({"id": id, "frames": "1-10"})).await;
    assert_eq!(first["id"], id.as_str());
    let again = f.call("POST", "/v1/jobs", Some(json!({"id": id, "type": "command", "frames": "1-10", "chunk_size": 1, "queue": f.queue(),
        "params": {"program": "touchframe", "args": ["{frame}"]}}))).await;
    assert_eq!(
        again.status, 200,
        "the same spec again answers 200 with the existing job"
    );
    assert_eq!(again.json()["created_ms"], first["created_ms"]);
    let other = f
        .call(
            "POST",
            "/v1/jobs",
            Some(
                json!({"id": id, "type": "command", "frames": "1-99", "queue": f.queue(),
        "params": {"program": "touchframe"}}),
            ),
        )
        .await;
    assert_eq!(
        other.status, 409,
        "the same id with another spec is a conflict"
    );
    assert_eq!(other.code(), "conflict");
    assert_eq!(
        f.tasks(&id).await.len(),
        10,
        "the conflicting submit changed nothing"
    );
}

async fn get_is_202_until_finished_then_200(f: &Farm) {
    let job = f.submit(json!({"frames": "1-2"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    let r = f.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(r.status, 202, "an unfinished job answers 202");
    assert!(r.header("retry-after").is_some());
    for t in f.claim("n1", 2).await {
        assert_eq!(f.done(&t).await.status, 200);
    }
    let r = f.call("GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(r.status, 200, "a finished job answers 200");
    let job = r.json();
    assert_eq!(job["state"], "completed");
    assert_eq!(job["progress"], 1.0);
    assert!(job["finished_ms"].as_u64().is_some());
    assert_eq!(
        f.call("GET", "/v1/jobs/no-such-job", None).await.status,
        404
    );
}

async fn list_pages_newest_first_with_filters(f: &Farm) {
    let tag = format!(
        "t{}",
        f.queue().len() + f.queue().bytes().map(u32::from).sum::<u32>() as usize
    );
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(
            f.submit(json!({"tags": [tag]})).await["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let r = f
            .call(
                "GET",
                &format!("/v1/jobs?tag={tag}&limit=3&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        let body = r.json();
        let page = body["jobs"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 3, "a page holds at most `limit` jobs");
        seen.extend(
            page.iter()
                .map(|j| j["id"].as_str().unwrap_or_default().to_string()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every job once, newest first");
    let queued = f
        .call(
            "GET",
            &format!("/v1/jobs?tag={tag}&state=queued&limit=100"),
            None,
        )
        .await
        .json();
    assert_eq!(queued["jobs"].as_array().map(Vec::len), Some(7));
    let none = f
        .call("GET", &format!("/v1/jobs?tag={tag}&state=completed"), None)
        .await
        .json();
    assert_eq!(none["jobs"].as_array().map(Vec::len), Some(0));
    // Every state a job shows can be asked for, `waiting` too (the dashboard's filter).
    let first = ids.last().cloned().unwrap_or_default();
    let waiter = f
        .submit(json!({"tags": [tag], "after_jobs": [first]}))
        .await;
    let waiting = f
        .call("GET", &format!("/v1/jobs?tag={tag}&state=waiting"), None)
        .await;
    assert_eq!(waiting.status, 200, "{:?}", waiting.json());
    let listed: Vec<serde_json::Value> = waiting.json()["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], waiter["id"]);
    let bad = f.call("GET", "/v1/jobs?state=bogus", None).await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("state"))
    );
    let bad = f.call("GET", "/v1/jobs?cursor=zzz", None).await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("cursor"))
    );
}

async fn cancel_stops_claims_and_tells_running_nodes(f: &Farm) {
    let job = f.submit(json!({"frames": "1-3"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    let running = f.claim("n1", 1).await;
    assert_eq!(running.len(), 1);
    let r = f.call("POST", &format!("/v1/jobs/{id}/cancel"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "canceled");
    assert_eq!(
        r.json()["counts"]["canceled"],
        3,
        "queued and leased tasks are canceled"
    );
    assert!(
        f.claim("n2", 5).await.is_empty(),
        "a canceled job hands out nothing"
    );
    let tid = running[0]["_id"].as_str().unwrap_or_default();
    let hb = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/heartbeat"),
            Some(json!({"lease": running[0]["lease"]})),
        )
        .await;
    assert_eq!(
        hb.status, 409,
        "the running node hears that its task was canceled"
    );
    assert_eq!(hb.json()["keep_running"], false);
    let again = f.call("POST", &format!("/v1/jobs/{id}/cancel"), None).await;
    assert_eq!(again.status, 409, "a finished job cannot be canceled again");
}

async fn pause_holds_new_claims_and_resume_releases_them(f: &Farm) {
    let job = f.submit(json!({"frames": "1-3"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    assert_eq!(
        f.call("POST", &format!("/v1/jobs/{id}/pause"), None)
            .await
            .json()["state"],
        "paused"
    );
    assert!(
        f.claim("n1", 3).await.is_empty(),
        "a paused job hands out nothing"
    );
    assert_eq!(
        f.call("POST", &format!("/v1/jobs/{id}/resume"), None)
            .await
            .json()["state"],
        "queued"
    );
    assert_eq!(
        f.claim("n1", 3).await.len(),
        3,
        "after resume every task is claimable again"
    );
}

async fn requeue_runs_failed_tasks_again(f: &Farm) {
    let job = f.submit(json!({"frames": "1-2", "max_attempts": 1})).await;
    let id = job["id"].as_str().unwrap_or_default();
    let tasks = f.claim("n1", 2).await;
    assert_eq!(f.done(&tasks[0]).await.status, 200);
    assert_eq!(f.fail(&tasks[1], "boom").await.status, 200);
    assert_eq!(
        f.job(id).await["state"],
        "failed",
        "a task out of attempts fails the job"
    );
    let r = f
        .call("POST", &format!("/v1/jobs/{id}/requeue"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["counts"]["queued"],
        1,
        "only the failed task runs again"
    );
    let again = f.claim("n1", 2).await;
    assert_eq!(
        again.len(),
        1,
        "even the node that failed it may take it after a requeue"
    );
    assert_eq!(f.done(&again[0]).await.status, 200);
    assert_eq!(f.job(id).await["state"], "completed");
    let all = f
        .call("POST", &format!("/v1/jobs/{id}/requeue"), None)
        .await
        .json();
    assert_eq!(
        all["counts"]["queued"], 2,
        "requeue of a completed job renders it all again"
    );
}

async fn patch_priority_reorders_claims(f: &Farm) {
    let low = f.submit(json!({"frames": "1", "priority": 10})).await;
    let high = f.submit(json!({"frames": "1", "priority": 20})).await;
    let lid = low["id"].as_str().unwrap_or_default();
    let r = f
        .call(
            "PATCH",
            &format!("/v1/jobs/{lid}"),
            Some(json!({"priority": 90})),
        )
        .await;
    assert_eq!((r.status, r.json()["priority"].as_i64()), (200, Some(90)));
    let first = f.claim("n1", 1).await;
    assert_eq!(
        first[0]["job"], low["id"],
        "the re-prioritised job goes first"
    );
    let second = f.claim("n1", 1).await;
    assert_eq!(second[0]["job"], high["id"]);
    let bad = f
        .call(
            "PATCH",
            &format!("/v1/jobs/{lid}"),
            Some(json!({"priority": 101})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].as_str()),
        (400, Some("priority"))
    );
}

async fn delete_removes_the_job_and_stops_its_nodes(f: &Farm) {
    let job = f.submit(json!({"frames": "1-2"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    let running = f.claim("n1", 1).await;
    let r = f.call("DELETE", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!((r.status, r.json()["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(
        f.call("GET", &format!("/v1/jobs/{id}"), None).await.status,
        404
    );
    assert!(
        f.claim("n1", 2).await.is_empty(),
        "a deleted job hands out nothing"
    );
    let tid = running[0]["_id"].as_str().unwrap_or_default();
    let hb = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/heartbeat"),
            Some(json!({"lease": running[0]["lease"]})),
        )
        .await;
    assert_eq!(
        (hb.status, hb.json()["keep_running"].as_bool()),
        (409, Some(false))
    );
    let listed = f
        .call("GET", &format!("/v1/jobs?queue={}", f.queue()), None)
        .await
        .json();
    assert_eq!(
        listed["jobs"].as_array().map(Vec::len),
        Some(0),
        "a deleted job is not listed"
    );
}

async fn job_events_stream_until_finished(f: &Farm) {
    let job = f.submit(json!({"frames": "1"})).await;
    let id = job["id"].as_str().unwrap_or_default();
    // An unfinished job: in-process the core answers one event; over HTTP the stream stays
    // open until the job finishes, so it is read after the job finished there.
    if !f.is_http() {
        let r = f
            .raw(
                "GET",
                &format!("/v1/jobs/{id}"),
                Some(&f.secret()),
                vec![],
                &[("accept", "text/event-stream")],
            )
            .await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(
            text.starts_with("id: ") && text.contains("event: job\ndata: {"),
            "an SSE job event: {text}"
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/event-stream")
        );
    }
    let t = f.claim("n1", 1).await;
    assert_eq!(f.done(&t[0]).await.status, 200);
    let r = f
        .raw(
            "GET",
            &format!("/v1/jobs/{id}"),
            Some(&f.secret()),
            vec![],
            &[("accept", "text/event-stream")],
        )
        .await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("\"state\":\"completed\""),
        "the stream shows the finished job and ends: {text}"
    );
}

crate::cases!(
    submit_answers_202_with_location_and_retry_after,
    frame_specs_split_into_runs_and_chunks,
    same_id_same_spec_is_idempotent_other_spec_conflicts,
    get_is_202_until_finished_then_200,
    list_pages_newest_first_with_filters,
    cancel_stops_claims_and_tells_running_nodes,
    pause_holds_new_claims_and_resume_releases_them,
    requeue_runs_failed_tasks_again,
    patch_priority_reorders_claims,
    delete_removes_the_job_and_stops_its_nodes,
    job_events_stream_until_finished,
);
