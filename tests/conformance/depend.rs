//! Jobs that wait for other jobs (`after_jobs`): never handed out while they wait, released by
//! the ack that completes what they wait for, ended by its failure.

use crate::errors::rejected;
use crate::harness::Farm;
use serde_json::{json, Value};

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap_or_default().to_string()
}

/// Every task `node` can claim now, as `(job id, task)`.
async fn claim_all(f: &Farm, node: &str) -> Vec<(String, Value)> {
    f.claim(node, 16)
        .await
        .into_iter()
        .map(|t| (t["job"].as_str().unwrap_or_default().to_string(), t))
        .collect()
}

async fn a_job_waits_until_the_job_it_names_completes(f: &Farm) {
    let a = f.submit(json!({"frames": "1-2"})).await;
    let b = f
        .submit(json!({"frames": "1-3", "after_jobs": [id(&a)]}))
        .await;
    assert_eq!(b["state"], "waiting", "{b:#}");
    assert_eq!(b["after_jobs"], json!([id(&a)]));
    assert!(
        b["waiting"].as_str().unwrap_or("").contains(&id(&a)),
        "the job says what it waits for: {b:#}"
    );
    let got = claim_all(f, "n1").await;
    assert_eq!(got.len(), 2, "only the first job's tasks are handed out");
    assert!(got.iter().all(|(j, _)| *j == id(&a)), "{got:?}");
    assert!(
        claim_all(f, "n2").await.is_empty(),
        "the waiting job's tasks stay out"
    );
    assert_eq!(f.done(&got[0].1).await.status, 200);
    assert_eq!(
        f.job(&id(&b)).await["state"],
        "waiting",
        "one of two is not enough"
    );
    assert!(claim_all(f, "n2").await.is_empty());
    assert_eq!(f.done(&got[1].1).await.status, 200);
    assert_eq!(f.job(&id(&a)).await["state"], "completed");
    assert_eq!(
        f.job(&id(&b)).await["state"],
        "queued",
        "released by the last ack"
    );
    let got = claim_all(f, "n2").await;
    assert_eq!(got.len(), 3, "all of the released job's tasks: {got:?}");
    assert!(got.iter().all(|(j, _)| *j == id(&b)));
}

async fn a_chain_runs_in_order(f: &Farm) {
    let a = f.submit(json!({"frames": "1"})).await;
    let b = f
        .submit(json!({"frames": "1", "after_jobs": [id(&a)]}))
        .await;
    let c = f
        .submit(json!({"frames": "1", "after_jobs": [id(&b), id(&a)]}))
        .await;
    for (done, c_then) in [(&a, "waiting"), (&b, "queued")] {
        let got = claim_all(f, "n1").await;
        assert_eq!(got.len(), 1, "one job at a time: {got:?}");
        assert_eq!(got[0].0, id(done));
        assert_eq!(f.done(&got[0].1).await.status, 200);
        assert_eq!(f.job(&id(&c)).await["state"], c_then, "after {}", id(done));
    }
    let got = claim_all(f, "n1").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, id(&c));
}

async fn a_job_named_after_one_already_completed_is_queued_at_once(f: &Farm) {
    let a = f.submit(json!({"frames": "1"})).await;
    let got = claim_all(f, "n1").await;
    assert_eq!(f.done(&got[0].1).await.status, 200);
    let b = f
        .submit(json!({"frames": "1", "after_jobs": [id(&a)]}))
        .await;
    assert_eq!(b["state"], "queued", "{b:#}");
    assert_eq!(claim_all(f, "n1").await.len(), 1);
}

async fn a_failed_or_canceled_dependency_ends_the_waiting_jobs_by_policy(f: &Farm) {
    let a = f.submit(json!({"frames": "1", "max_attempts": 1})).await;
    let fails = f
        .submit(json!({"frames": "1-2", "after_jobs": [id(&a)]}))
        .await;
    let cancels = f
        .submit(json!({"frames": "1", "after_jobs": [id(&a)], "on_dependency_failure": "cancel"}))
        .await;
    let got = claim_all(f, "n1").await;
    assert_eq!(got.len(), 1);
    assert_eq!(f.fail(&got[0].1, "boom").await.status, 200);
    assert_eq!(f.job(&id(&a)).await["state"], "failed");
    let failed = f.job(&id(&fails)).await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        failed["error"].as_str().unwrap_or("").contains(&id(&a)),
        "the error names the failed dependency: {failed:#}"
    );
    assert_eq!(failed["counts"]["canceled"], 2, "its tasks never ran");
    assert_eq!(f.job(&id(&cancels)).await["state"], "canceled");
    assert!(
        claim_all(f, "n2").await.is_empty(),
        "nothing of them is handed out"
    );

    // Canceling a dependency ends its waiters the same way.
    let d = f.submit(json!({"frames": "1"})).await;
    let e = f
        .submit(json!({"frames": "1", "after_jobs": [id(&d)]}))
        .await;
    let r = f
        .call("POST", &format!("/v1/jobs/{}/cancel", id(&d)), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(f.job(&id(&e)).await["state"], "failed");
}

async fn after_jobs_must_name_existing_jobs_once(f: &Farm) {
    let a = f.submit(json!({"frames": "1"})).await;
    let s = f.secret();
    let spec = |after: Value| {
        serde_json::to_vec(
            &json!({"type": "command", "queue": f.queue(), "frames": "1",
            "params": {"program": "touchframe", "args": ["{frame}"]}, "after_jobs": after}),
        )
        .unwrap_or_default()
    };
    for after in [
        json!([id(&a), "no-such-job"]),
        json!([id(&a), id(&a)]),
        json!(["../x"]),
        json!("not-a-list"),
    ] {
        rejected(f, "POST", "/v1/jobs", &spec(after), Some(&s), 400, None).await;
    }
    let r = f
        .call(
            "POST",
            "/v1/jobs",
            Some(json!({"type": "command", "queue": f.queue(), "frames": "1",
                "params": {"program": "touchframe", "args": ["{frame}"]},
                "after_jobs": [id(&a), "no-such-job"]})),
        )
        .await;
    let err = r.json();
    assert_eq!(err["error"]["field"], "after_jobs", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-job"),
        "the missing id is named: {err}"
    );
}

/// A job naming another, submitted while the other's last task is acked: whichever request's
/// store calls come first, the waiting job is released (the submit lists itself before its
/// commit and checks after; the ack writes before it reads the list). In-process the two
/// requests interleave at every store call (`Yielding`), shifted by `k` reads each round; over
/// HTTP they race for real.
async fn a_submit_racing_the_last_ack_is_always_released(f: &Farm) {
    if !f
        .needs_atomic_cas("a_submit_racing_the_last_ack_is_always_released")
        .await
    {
        return;
    }
    for k in 0..8 {
        let a = f.submit(json!({"frames": "1"})).await;
        let got = claim_all(f, "n1").await;
        assert_eq!(got.len(), 1, "round {k}: {got:?}");
        let spec = json!({"type": "command", "queue": f.queue(), "frames": "1-2", "chunk_size": 1,
            "params": {"program": "touchframe", "args": ["{frame}"]}, "after_jobs": [id(&a)]});
        let submit = async {
            for _ in 0..k {
                f.call("GET", &format!("/v1/jobs/{}", id(&a)), None).await;
            }
            f.call("POST", "/v1/jobs", Some(spec)).await
        };
        let (submitted, acked) = futures_util::future::join(submit, f.done(&got[0].1)).await;
        assert_eq!(acked.status, 200, "round {k}");
        assert_eq!(submitted.status, 202, "round {k}");
        let b = id(&submitted.json());
        let got = claim_all(f, "n2").await;
        assert_eq!(
            got.len(),
            2,
            "round {k}: the waiting job was released: {got:?}"
        );
        assert!(got.iter().all(|(j, _)| *j == b));
        for (_, t) in &got {
            assert_eq!(f.done(t).await.status, 200);
        }
    }
}

/// 50 jobs finishing at once (50 nodes acking their last tasks together): the job waiting for
/// all of them is released, and each of its tasks is handed out exactly once.
async fn fifty_acks_at_once_release_the_waiting_job_once(f: &Farm) {
    if !f
        .needs_atomic_cas("fifty_acks_at_once_release_the_waiting_job_once")
        .await
    {
        return;
    }
    let mut deps = Vec::new();
    for _ in 0..50 {
        deps.push(id(&f.submit(json!({"frames": "1"})).await));
    }
    // Over the 32 a job may name: two waiting jobs of 25 each, and a third after those two.
    let w1 = f
        .submit(json!({"frames": "1-3", "after_jobs": deps[..25]}))
        .await;
    let w2 = f
        .submit(json!({"frames": "1-3", "after_jobs": deps[25..]}))
        .await;
    let last = f
        .submit(json!({"frames": "1-5", "after_jobs": [id(&w1), id(&w2)]}))
        .await;
    let mut leased = Vec::new();
    for n in 0..50 {
        let got = claim_all(f, &format!("node-{n}")).await;
        leased.extend(got);
        if leased.len() >= 50 {
            break;
        }
    }
    assert_eq!(leased.len(), 50, "the 50 first jobs' tasks, nothing else");
    assert!(leased.iter().all(|(j, _)| deps.contains(j)));
    let acks = leased.iter().map(|(_, t)| f.done(t));
    for r in futures_util::future::join_all(acks).await {
        assert_eq!(r.status, 200);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut rounds = 0;
    loop {
        let got = claim_all(f, "taker").await;
        if got.is_empty() {
            break;
        }
        for (j, t) in got {
            let tid = t["_id"].as_str().unwrap_or_default().to_string();
            assert!(seen.insert(tid.clone()), "task {tid} handed out twice");
            assert_eq!(f.done(&t).await.status, 200);
            assert!(j == id(&w1) || j == id(&w2) || j == id(&last), "{j}");
        }
        rounds += 1;
        assert!(rounds < 20, "claims keep finding work");
    }
    assert_eq!(seen.len(), 11, "3 + 3 + 5 tasks, each once: {seen:?}");
    assert_eq!(f.job(&id(&last)).await["state"], "completed");
}

/// A render requeued after its video completed: the video (and what waits for it) waits for the
/// new frames and runs again; a video running meanwhile is withdrawn; a canceled one stays so.
async fn a_requeued_job_makes_what_used_it_wait_and_run_again(f: &Farm) {
    let render = f.submit(json!({"frames": "1-2"})).await;
    let video = f
        .submit(json!({"frames": "1", "after_jobs": [id(&render)]}))
        .await;
    let upload = f
        .submit(json!({"frames": "1", "after_jobs": [id(&video)]}))
        .await;
    // The render's two frames, then the video.
    for _ in 0..2 {
        for (_, t) in claim_all(f, "n1").await {
            assert_eq!(f.done(&t).await.status, 200);
        }
    }
    let dropped = f
        .submit(json!({"frames": "1", "after_jobs": [id(&render)]}))
        .await;
    let r = f
        .call("POST", &format!("/v1/jobs/{}/cancel", id(&dropped)), None)
        .await;
    assert_eq!(r.status, 200);
    let got = claim_all(f, "n1").await;
    assert_eq!(got.len(), 1, "the upload: {got:?}");
    assert_eq!(got[0].0, id(&upload));
    let running = got[0].1.clone();
    for j in [&render, &video] {
        assert_eq!(f.job(&id(j)).await["state"], "completed");
    }

    let r = f
        .call("POST", &format!("/v1/jobs/{}/requeue", id(&render)), None)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for j in [&video, &upload] {
        let view = f.job(&id(j)).await;
        assert_eq!(view["state"], "waiting", "{view:#}");
        assert_eq!(view["counts"]["completed"], 0, "{view:#}");
    }
    assert_eq!(
        f.job(&id(&dropped)).await["state"],
        "canceled",
        "a canceled job stays canceled"
    );
    let late = f.done(&running).await;
    assert_eq!(
        (late.status, late.code().as_str()),
        (409, "stale_lease"),
        "the upload that was running on the old video was withdrawn"
    );
    let why = late.json()["error"]["message"].clone();
    assert!(
        why.as_str()
            .unwrap_or_default()
            .contains("renders its frames again"),
        "its node is told why: {why}"
    );
    let again = claim_all(f, "n2").await;
    assert_eq!(again.len(), 2, "only the render's frames: {again:?}");
    assert!(again.iter().all(|(j, _)| *j == id(&render)), "{again:?}");
    for (j, next) in [(&render, &video), (&video, &upload)] {
        let got = if *j == render {
            again.clone()
        } else {
            claim_all(f, "n2").await
        };
        assert_eq!(
            f.job(&id(next)).await["state"],
            "waiting",
            "before {} completes again",
            id(j)
        );
        for (jid, t) in &got {
            assert_eq!(*jid, id(j));
            assert_eq!(f.done(t).await.status, 200);
        }
        // Queued, or active for the upload whose running attempt was withdrawn.
        let state = f.job(&id(next)).await["state"].clone();
        assert!(
            state == "queued" || state == "active",
            "released again: {state}"
        );
    }
    let got = claim_all(f, "n2").await;
    assert_eq!(got.len(), 1);
    assert_eq!(f.done(&got[0].1).await.status, 200);
    assert_eq!(f.job(&id(&upload)).await["state"], "completed");
    // Sent again, a requeue of a job still rendering changes nothing for those waiting.
    let r = f
        .call("POST", &format!("/v1/jobs/{}/requeue", id(&video)), None)
        .await;
    assert_eq!(r.status, 200);
    let r = f
        .call("POST", &format!("/v1/jobs/{}/requeue", id(&video)), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(f.job(&id(&upload)).await["state"], "waiting");
    assert_eq!(
        f.job(&id(&render)).await["state"],
        "completed",
        "upstream untouched"
    );
}

crate::cases!(
    a_requeued_job_makes_what_used_it_wait_and_run_again,
    a_job_waits_until_the_job_it_names_completes,
    a_chain_runs_in_order,
    a_job_named_after_one_already_completed_is_queued_at_once,
    a_failed_or_canceled_dependency_ends_the_waiting_jobs_by_policy,
    after_jobs_must_name_existing_jobs_once,
    a_submit_racing_the_last_ack_is_always_released,
    fifty_acks_at_once_release_the_waiting_job_once,
);
