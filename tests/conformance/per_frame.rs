//! Jobs that wait for other jobs frame by frame (`after_frames`): each task is handed out as
//! soon as the tasks of the jobs it waits for that render its frames completed, never before.

use crate::errors::rejected;
use crate::harness::Farm;
use serde_json::{json, Value};

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap_or_default().to_string()
}

fn frames(t: &Value) -> (i64, i64) {
    (
        t["frames"]["from"].as_i64().unwrap_or(-1),
        t["frames"]["to"].as_i64().unwrap_or(-1),
    )
}

/// Render jobs carry the tag `render`, per-frame jobs `comp`: a node claims with one tag, so
/// it takes only that kind (the cases say which node takes what).
async fn render_job(f: &Farm, spec: Value) -> Value {
    with_tag(f, spec, "render").await
}

async fn comp_job(f: &Farm, after: &[&Value], spec: Value) -> Value {
    let after: Vec<String> = after.iter().map(|j| id(j)).collect();
    let mut spec = spec;
    spec["after_jobs"] = json!(after);
    spec["after_frames"] = json!(true);
    with_tag(f, spec, "comp").await
}

async fn with_tag(f: &Farm, mut spec: Value, tag: &str) -> Value {
    spec["tags"] = json!([tag]);
    f.submit(spec).await
}

/// Claims up to `max` tasks as `node` with the one tag `tag`.
async fn claim(f: &Farm, node: &str, tag: &str, max: u32) -> Vec<Value> {
    let r = f
        .call(
            "POST",
            &format!("/v1/queue/{}", f.queue()),
            Some(
                json!({"node": node, "types": ["command"], "tags": [tag], "max": max, "tasks": []}),
            ),
        )
        .await;
    match r.status {
        204 => vec![],
        200 => r.json()["tasks"].as_array().cloned().unwrap_or_default(),
        other => panic!(
            "claim answered {other}: {}",
            String::from_utf8_lossy(&r.body)
        ),
    }
}

/// The comp tasks a comp node can claim now, as `(from, to)` frames.
async fn comps(f: &Farm, node: &str) -> (Vec<(i64, i64)>, Vec<Value>) {
    let got = claim(f, node, "comp", 16).await;
    (got.iter().map(frames).collect(), got)
}

/// The task of `job` with `from` as its first frame, from the task list.
async fn task_at(f: &Farm, job: &Value, from: i64) -> Value {
    f.tasks(&id(job))
        .await
        .into_iter()
        .find(|t| frames(t).0 == from)
        .unwrap_or(Value::Null)
}

/// Acks done the claimed task of `job` rendering `from`.
async fn ack(f: &Farm, claimed: &[Value], job: &Value, from: i64) {
    let t = claimed
        .iter()
        .find(|t| t["job"].as_str() == Some(id(job).as_str()) && frames(t).0 == from)
        .unwrap_or_else(|| panic!("frame {from} of {} was claimed", id(job)));
    assert_eq!(f.done(t).await.status, 200, "ack of frame {from}");
}

async fn a_task_runs_once_the_frames_it_waits_for_are_rendered(f: &Farm) {
    let render = render_job(f, json!({"frames": "1-6", "chunk_size": 1})).await;
    let comp = comp_job(f, &[&render], json!({"frames": "1-6", "chunk_size": 2})).await;
    assert_eq!(comp["state"], "waiting", "{comp:#}");
    assert_eq!(comp["after_frames"], true);
    assert!(
        comp["waiting"]
            .as_str()
            .unwrap_or("")
            .contains("frame by frame"),
        "{comp:#}"
    );
    assert!(
        f.tasks(&id(&comp))
            .await
            .iter()
            .all(|t| t["held"] == true && t["state"] == "queued"),
        "every task is held at first"
    );
    assert!(
        comps(f, "comp-1").await.1.is_empty(),
        "a held task is never handed out"
    );
    // Two render tasks leased, four still queued.
    let rendering = claim(f, "render-1", "render", 2).await;
    assert_eq!(rendering.len(), 2, "{rendering:?}");
    ack(f, &rendering, &render, 1).await;
    assert!(
        comps(f, "comp-1").await.1.is_empty(),
        "frame 2 is not rendered yet: frames 1-2 stay held"
    );
    assert_eq!(task_at(f, &comp, 1).await["held"], true);
    ack(f, &rendering, &render, 2).await;
    let r = f.job(&id(&render)).await;
    assert_eq!(r["counts"]["queued"], 4, "the render still has work: {r:#}");
    assert_eq!(task_at(f, &comp, 1).await["held"], false, "released");
    assert_eq!(task_at(f, &comp, 3).await["held"], true, "frames 3-4 wait");
    assert_eq!(
        f.job(&id(&comp)).await["state"],
        "waiting",
        "nothing ran yet"
    );
    let (mine, _) = comps(f, "comp-1").await;
    assert_eq!(
        mine,
        vec![(1, 2)],
        "the comp of frames 1-2, and nothing else of it"
    );
    let c = f.job(&id(&comp)).await;
    assert_eq!(c["state"], "active", "once a task runs: {c:#}");
    assert!(c["waiting"]
        .as_str()
        .unwrap_or("")
        .contains("frame by frame"));
    assert!(comps(f, "comp-2").await.1.is_empty(), "handed out once");
}

async fn a_task_waits_for_every_job_and_every_frame(f: &Farm) {
    // Chunks that differ: the render's 1-3 | 4-6, the other's single frames, the comp's pairs.
    let render = render_job(f, json!({"frames": "1-6", "chunk_size": 3})).await;
    let other = render_job(f, json!({"frames": "1-6", "chunk_size": 1})).await;
    let comp = comp_job(
        f,
        &[&render, &other],
        json!({"frames": "1-6", "chunk_size": 2}),
    )
    .await;
    let got = claim(f, "n1", "render", 16).await;
    assert_eq!(got.len(), 8, "{got:?}");
    ack(f, &got, &render, 1).await;
    ack(f, &got, &other, 1).await;
    assert!(
        comps(f, "n2").await.1.is_empty(),
        "frame 2 of the other job is not rendered"
    );
    for from in 2..=4 {
        ack(f, &got, &other, from).await;
    }
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(
        mine,
        vec![(1, 2)],
        "frames 1-2 are rendered by both; frame 4 of the render is not (its task renders 4-6)"
    );
    assert_eq!(task_at(f, &comp, 3).await["held"], true);
    ack(f, &got, &render, 4).await;
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(
        mine,
        vec![(3, 4)],
        "frames 3-4 now; 5-6 wait for the other job"
    );
    for from in [5, 6] {
        ack(f, &got, &other, from).await;
    }
    // The last ack completed both jobs: the whole-job release hands out the rest.
    assert_eq!(f.job(&id(&other)).await["state"], "completed");
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(mine, vec![(5, 6)]);
    let c = f.job(&id(&comp)).await;
    assert!(c["waiting"].is_null(), "it waits for nothing now: {c:#}");
}

async fn frames_no_task_renders_wait_for_the_whole_job(f: &Farm) {
    let render = render_job(f, json!({"frames": "1-2", "chunk_size": 1})).await;
    let comp = comp_job(f, &[&render], json!({"frames": "1-3", "chunk_size": 1})).await;
    let got = claim(f, "n1", "render", 2).await;
    ack(f, &got, &render, 1).await;
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(mine, vec![(1, 1)]);
    assert_eq!(
        task_at(f, &comp, 3).await["held"],
        true,
        "frame 3 is in no task of the render"
    );
    ack(f, &got, &render, 2).await;
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(
        mine,
        vec![(2, 2), (3, 3)],
        "the render completed: all of it runs"
    );
}

async fn a_job_submitted_late_runs_what_is_rendered_at_once(f: &Farm) {
    let render = render_job(f, json!({"frames": "1-3", "chunk_size": 1})).await;
    let got = claim(f, "n1", "render", 1).await;
    ack(f, &got, &render, 1).await;
    let comp = comp_job(f, &[&render], json!({"frames": "1-3", "chunk_size": 1})).await;
    assert_eq!(comp["state"], "waiting");
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(mine, vec![(1, 1)], "frame 1 was rendered before the submit");
}

async fn a_pause_keeps_a_release_for_the_resume(f: &Farm) {
    let render = render_job(f, json!({"frames": "1-2", "chunk_size": 1})).await;
    let comp = comp_job(f, &[&render], json!({"frames": "1-2", "chunk_size": 1})).await;
    let got = claim(f, "n1", "render", 2).await;
    let path = |a: &str| format!("/v1/jobs/{}/{a}", id(&comp));
    assert_eq!(f.call("POST", &path("pause"), None).await.status, 200);
    ack(f, &got, &render, 1).await;
    assert!(comps(f, "n2").await.1.is_empty(), "paused: nothing");
    assert_eq!(f.call("POST", &path("resume"), None).await.status, 200);
    let (mine, _) = comps(f, "n2").await;
    assert_eq!(
        mine,
        vec![(1, 1)],
        "released while paused, run once resumed"
    );
}

async fn bad_after_frames_specs_name_the_field_and_store_nothing(f: &Farm) {
    let render = f.submit(json!({"frames": "1-2"})).await;
    let no_frames = f.submit(json!({"frames": null})).await;
    assert_eq!(no_frames["frames_total"], 0, "{no_frames:#}");
    let s = f.secret();
    let spec = |extra: Value| {
        let mut j = json!({"type": "command", "queue": f.queue(), "frames": "1-2",
            "params": {"program": "touchframe", "args": ["{frame}"]}, "after_frames": true});
        if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&j).unwrap_or_default()
    };
    for (extra, why) in [
        (json!({}), "without after_jobs"),
        (json!({"after_jobs": []}), "with empty after_jobs"),
        (
            json!({"after_jobs": [id(&render)], "frames": null}),
            "without frames",
        ),
        (
            json!({"after_jobs": [id(&render), id(&no_frames)]}),
            "naming a job without frames",
        ),
    ] {
        eprintln!("case: {why}");
        rejected(
            f,
            "POST",
            "/v1/jobs",
            &spec(extra),
            Some(&s),
            400,
            Some("after_frames"),
        )
        .await;
    }
}

async fn a_failed_dependency_ends_the_held_rest_and_a_requeue_waits_again(f: &Farm) {
    let render = render_job(
        f,
        json!({"frames": "1-3", "chunk_size": 1, "max_attempts": 1}),
    )
    .await;
    let comp = comp_job(f, &[&render], json!({"frames": "1-3", "chunk_size": 1})).await;
    let cancels = comp_job(
        f,
        &[&render],
        json!({"frames": "1-3", "chunk_size": 1, "on_dependency_failure": "cancel"}),
    )
    .await;
    let got = claim(f, "n1", "render", 3).await;
    ack(f, &got, &render, 1).await;
    let (mine, released) = comps(f, "n2").await;
    assert_eq!(mine, vec![(1, 1), (1, 1)], "frame 1 of both per-frame jobs");
    for t in &released {
        assert_eq!(f.done(t).await.status, 200);
    }
    let t2 = got
        .iter()
        .find(|t| frames(t).0 == 2)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(f.fail(&t2, "boom").await.status, 200);
    assert_eq!(f.job(&id(&render)).await["state"], "failed");
    let c = f.job(&id(&comp)).await;
    assert_eq!(c["state"], "failed", "{c:#}");
    assert_eq!(c["counts"]["completed"], 1, "what ran stays done: {c:#}");
    assert_eq!(
        c["counts"]["canceled"], 2,
        "the held rest never runs: {c:#}"
    );
    assert!(c["error"].as_str().unwrap_or("").contains(&id(&render)));
    assert_eq!(f.job(&id(&cancels)).await["state"], "canceled");
    assert!(comps(f, "n3").await.1.is_empty());

    // The render runs again, and so does the comp: its frames 2-3 wait for their renders.
    let requeue = |j: &Value| format!("/v1/jobs/{}/requeue", id(j));
    assert_eq!(f.call("POST", &requeue(&render), None).await.status, 200);
    assert_eq!(f.call("POST", &requeue(&comp), None).await.status, 200);
    assert_eq!(f.job(&id(&comp)).await["state"], "active", "frame 1 ran");
    assert_eq!(task_at(f, &comp, 2).await["held"], true, "waits again");
    assert!(
        comps(f, "n4").await.1.is_empty(),
        "frames 2-3 are not rendered"
    );
    let got = claim(f, "n4", "render", 16).await;
    assert_eq!(got.len(), 2, "the render's frames 2-3: {got:?}");
    ack(f, &got, &render, 2).await;
    let (mine, _) = comps(f, "n4").await;
    assert_eq!(mine, vec![(2, 2)]);
}

/// 39 nodes ack 39 of the 40 frames of a render at once: every per-frame task whose frames
/// are rendered is released and handed out exactly once; those needing the 40th are not.
async fn many_acks_at_once_release_each_task_once(f: &Farm) {
    if !f
        .needs_atomic_cas("many_acks_at_once_release_each_task_once")
        .await
    {
        return;
    }
    let render = render_job(f, json!({"frames": "1-40", "chunk_size": 1})).await;
    let comp = comp_job(f, &[&render], json!({"frames": "1-40", "chunk_size": 4})).await;
    // Frames 2, 5, ..., 38: 13 tasks; the held-back frame 38 is one of them.
    let other = comp_job(f, &[&render], json!({"frames": "2-39x3", "chunk_size": 1})).await;
    let mut leased = Vec::new();
    for n in 0..40 {
        leased.extend(claim(f, &format!("node-{n}"), "render", 1).await);
    }
    assert_eq!(leased.len(), 40);
    // All but frame 38 at once (the last ack would complete the render, whose whole-job
    // release would hide a lost per-frame one).
    let Some(at) = leased.iter().position(|t| frames(t).0 == 38) else {
        panic!("frame 38 was leased");
    };
    let last = leased.remove(at);
    let acks = leased.iter().map(|t| f.done(t));
    for r in futures_util::future::join_all(acks).await {
        assert_eq!(r.status, 200);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut rounds = 0;
    loop {
        let (_, got) = comps(f, "taker").await;
        if got.is_empty() {
            break;
        }
        for t in got {
            let tid = t["_id"].as_str().unwrap_or_default().to_string();
            assert!(seen.insert(tid.clone()), "task {tid} handed out twice");
            let (from, to) = frames(&t);
            assert!(
                !(from..=to).contains(&38),
                "{tid} ({from}-{to}) needs frame 38"
            );
            assert_eq!(f.done(&t).await.status, 200);
        }
        rounds += 1;
        assert!(rounds < 20, "claims keep finding work");
    }
    assert_eq!(
        seen.len(),
        9 + 12,
        "every task not waiting for frame 38: {seen:?}"
    );
    assert!(f.tasks(&id(&other)).await.iter().any(|t| t["held"] == true));
    assert_eq!(f.done(&last).await.status, 200);
    let (mut mine, _) = comps(f, "taker").await;
    mine.sort();
    assert_eq!(mine, vec![(37, 40), (38, 38)], "the rest, once");
    assert!(comps(f, "taker").await.1.is_empty());
    let _ = comp;
}

/// `on_dependency_failure: continue`, frame by frame: a render frame that fails skips only the
/// comp task of that frame; the others run; the comp ends failed, saying why. After the render
/// is requeued and completes, a requeue of the comp runs the skipped frame.
/// A render of frames 1-4 (one per task, one attempt, going on past a failure) and a comp of
/// them frame by frame that goes on without the frames it lacks.
async fn render_and_continuing_comp(f: &Farm) -> (Value, Value) {
    let render = render_job(
        f,
        json!({"frames": "1-4", "chunk_size": 1, "on_failure": "continue", "max_attempts": 1}),
    )
    .await;
    let comp = comp_job(
        f,
        &[&render],
        json!({"frames": "1-4", "chunk_size": 1, "on_dependency_failure": "continue"}),
    )
    .await;
    (render, comp)
}

async fn continue_skips_only_the_frames_that_failed_to_render(f: &Farm) {
    let (render, comp) = render_and_continuing_comp(f).await;
    let got = claim(f, "r1", "render", 4).await;
    assert_eq!(got.len(), 4);
    ack(f, &got, &render, 1).await;
    ack(f, &got, &render, 2).await;
    let three = got
        .iter()
        .find(|t| frames(t).0 == 3)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(f.fail(&three, "out of memory").await.status, 200);
    let (ready, first) = comps(f, "c0").await;
    assert_eq!(
        ready,
        vec![(1, 1), (2, 2)],
        "rendered frames run before the render ends"
    );
    ack(f, &got, &render, 4).await;
    assert_eq!(f.job(&id(&render)).await["state"], "failed");
    let (ready, last) = comps(f, "c1").await;
    assert_eq!(ready, vec![(4, 4)], "frame 4 runs; frame 3 is skipped");
    assert_eq!(task_at(f, &comp, 3).await["state"], "canceled");
    assert_eq!(
        f.job(&id(&comp)).await["state"],
        "active",
        "frames 1, 2 and 4 still run"
    );
    ack(f, &first, &comp, 1).await;
    ack(f, &first, &comp, 2).await;
    ack(f, &last, &comp, 4).await;
    let view = f.job(&id(&comp)).await;
    assert_eq!(view["state"], "failed", "{view:#}");
    assert_eq!(view["counts"]["completed"], 3);
    assert_eq!(view["counts"]["canceled"], 1);
    let error = view["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&id(&render)) && error.contains("skipped"),
        "{view:#}"
    );

    // The render again, then the comp again: the skipped frame runs.
    let path = |j: &Value| format!("/v1/jobs/{}/requeue", id(j));
    assert_eq!(
        f.call("POST", &path(&render), Some(json!({}))).await.status,
        200
    );
    let again = claim(f, "r2", "render", 4).await;
    assert_eq!(again.iter().map(frames).collect::<Vec<_>>(), vec![(3, 3)]);
    ack(f, &again, &render, 3).await;
    assert_eq!(f.job(&id(&render)).await["state"], "completed");
    let r = f.call("POST", &path(&comp), Some(json!({}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (ready, claimed) = comps(f, "c2").await;
    assert_eq!(ready, vec![(3, 3)]);
    ack(f, &claimed, &comp, 3).await;
    assert_eq!(f.job(&id(&comp)).await["state"], "completed");
}

/// `on_dependency_failure: continue`, waiting as a whole: the job runs anyway once the job it
/// waits for failed.
async fn continue_runs_a_whole_job_wait_anyway(f: &Farm) {
    let first = render_job(f, json!({"frames": "1", "max_attempts": 1})).await;
    let after = with_tag(
        f,
        json!({"frames": "1-2", "chunk_size": 1, "after_jobs": [id(&first)],
               "on_dependency_failure": "continue"}),
        "comp",
    )
    .await;
    assert_eq!(after["state"], "waiting");
    assert!(
        claim(f, "c0", "comp", 4).await.is_empty(),
        "waits while the first runs"
    );
    let got = claim(f, "r0", "render", 1).await;
    assert_eq!(f.fail(&got[0], "crashed").await.status, 200);
    assert_eq!(f.job(&id(&first)).await["state"], "failed");
    let got = claim(f, "c0", "comp", 4).await;
    assert_eq!(got.len(), 2, "it runs anyway");
    for t in &got {
        assert_eq!(f.done(t).await.status, 200);
    }
    let view = f.job(&id(&after)).await;
    assert_eq!(view["state"], "completed", "{view:#}");
}

/// A render requeued after its comp ran: the comp's tasks using the frames rendered again wait
/// for them again, frame by frame; those using frames kept stay done.
async fn a_requeued_render_makes_the_comp_of_its_frames_wait_again(f: &Farm) {
    let (render, comp) = render_and_continuing_comp(f).await;
    let got = claim(f, "r1", "render", 4).await;
    for from in [1, 2, 4] {
        ack(f, &got, &render, from).await;
    }
    let three = got.iter().find(|t| frames(t).0 == 3).cloned();
    let three = three.unwrap_or(Value::Null);
    assert_eq!(f.fail(&three, "out of memory").await.status, 200);
    let (ready, done) = comps(f, "c1").await;
    assert_eq!(ready, vec![(1, 1), (2, 2), (4, 4)], "frame 3 is skipped");
    for from in [1, 2, 4] {
        ack(f, &done, &comp, from).await;
    }
    assert_eq!(task_at(f, &comp, 3).await["state"], "canceled");

    // Frame 3 is fixed and rendered again: the comp of frame 3 waits for it, and runs.
    let requeue = |j: &Value| format!("/v1/jobs/{}/requeue", id(j));
    assert_eq!(f.call("POST", &requeue(&render), None).await.status, 200);
    let view = f.job(&id(&comp)).await;
    assert_eq!(view["state"], "active", "frames 1, 2 and 4 ran: {view:#}");
    let waits = view["waiting"].as_str().unwrap_or_default();
    assert!(waits.contains(&id(&render)), "{view:#}");
    assert_eq!(
        view["counts"]["completed"], 3,
        "frames kept stay done: {view:#}"
    );
    assert_eq!(task_at(f, &comp, 3).await["held"], true);
    assert!(
        comps(f, "c2").await.1.is_empty(),
        "frame 3 is not rendered yet"
    );
    let got = claim(f, "r2", "render", 4).await;
    assert_eq!(got.iter().map(frames).collect::<Vec<_>>(), vec![(3, 3)]);
    ack(f, &got, &render, 3).await;
    let (ready, done) = comps(f, "c2").await;
    assert_eq!(ready, vec![(3, 3)]);
    ack(f, &done, &comp, 3).await;
    assert_eq!(f.job(&id(&comp)).await["state"], "completed");

    // The whole render again: every comp task waits for its frame.
    assert_eq!(f.call("POST", &requeue(&render), None).await.status, 200);
    let view = f.job(&id(&comp)).await;
    assert_eq!(view["counts"]["completed"], 0, "{view:#}");
    let got = claim(f, "r3", "render", 4).await;
    assert_eq!(got.len(), 4);
    ack(f, &got, &render, 2).await;
    let (ready, _) = comps(f, "c3").await;
    assert_eq!(ready, vec![(2, 2)], "only the frame rendered again");
}

crate::cases!(
    a_requeued_render_makes_the_comp_of_its_frames_wait_again,
    continue_skips_only_the_frames_that_failed_to_render,
    continue_runs_a_whole_job_wait_anyway,
    a_task_runs_once_the_frames_it_waits_for_are_rendered,
    a_task_waits_for_every_job_and_every_frame,
    frames_no_task_renders_wait_for_the_whole_job,
    a_job_submitted_late_runs_what_is_rendered_at_once,
    a_pause_keeps_a_release_for_the_resume,
    bad_after_frames_specs_name_the_field_and_store_nothing,
    a_failed_dependency_ends_the_held_rest_and_a_requeue_waits_again,
    many_acks_at_once_release_each_task_once,
);
