//! A job with later stages (`stages`): each stage is a job `{id}-{name}` waiting for the one
//! before it, as a whole or frame by frame; a bad stage is refused by its field with nothing
//! stored, the job itself included; a re-submit of the same body is the same jobs.

use crate::errors::rejected;
use crate::harness::Farm;
use serde_json::{json, Value};

fn spec(f: &Farm, id: &str, stages: Value) -> Value {
    json!({"id": id, "type": "command", "queue": f.queue(), "frames": "1-4", "chunk_size": 1,
           "params": {"program": "render"}, "stages": stages})
}

async fn a_job_with_stages_runs_them_in_order(f: &Farm) {
    let id = format!("{}-shot", f.queue());
    let body = spec(
        f,
        &id,
        json!([
            {"name": "comp", "type": "command", "params": {"program": "comp"}, "per_frame": true},
            {"name": "pack", "type": "command", "params": {"program": "pack"}, "frames": "1"}
        ]),
    );
    let r = f.call("POST", "/v1/jobs", Some(body.clone())).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let job = r.json();
    let (comp, pack) = (format!("{id}-comp"), format!("{id}-pack"));
    assert_eq!(job["stages"], json!([comp, pack]));
    let c = f.job(&comp).await;
    assert_eq!(c["after_jobs"], json!([id]));
    assert_eq!(c["after_frames"], true);
    assert_eq!(
        c["frames_total"], 4,
        "a stage's frames are the job's unless it says"
    );
    assert_eq!(c["queue"], f.queue());
    let p = f.job(&pack).await;
    assert_eq!(
        (p["after_jobs"].clone(), p["state"].clone()),
        (json!([comp]), json!("waiting"))
    );

    // Frame 1 rendered: its comp runs, nothing of the pack.
    let got = f.claim("n1", 16).await;
    let mine = |j: &str| -> Vec<Value> { got.iter().filter(|t| t["job"] == j).cloned().collect() };
    assert_eq!(mine(&id).len(), 4, "only the first stage is handed out");
    assert_eq!(f.done(&mine(&id)[0]).await.status, 200);
    let next = f.claim("n1", 16).await;
    assert_eq!(next.len(), 1, "{next:#?}");
    assert_eq!(next[0]["job"], comp.as_str());
    assert_eq!(next[0]["frames"]["from"], 1);
    for t in mine(&id).iter().skip(1).chain(next.iter()) {
        assert_eq!(f.done(t).await.status, 200);
    }
    for _ in 0..4 {
        let more = f.claim("n1", 16).await;
        if more.is_empty() {
            break;
        }
        for t in &more {
            assert_eq!(f.done(t).await.status, 200);
        }
    }
    for j in [&id, &comp, &pack] {
        assert_eq!(f.job(j).await["state"], "completed", "{j}");
    }
    // The same body again: the same three jobs.
    let again = f.call("POST", "/v1/jobs", Some(body)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["stages"], json!([comp, pack]));
}

async fn a_bad_stage_is_refused_by_field_and_stores_nothing(f: &Farm) {
    let cases = [
        (
            json!([{"name": "comp", "type": "command", "params": {"program": "c"}, "frames": "9-1"}]),
            "stages[0].frames",
        ),
        (
            json!([{"name": "a b", "type": "command", "params": {"program": "c"}}]),
            "stages[0].name",
        ),
        (
            json!([{"name": "comp", "type": "command", "params": {"program": "c"}},
                   {"name": "comp", "type": "command", "params": {"program": "c"}}]),
            "stages[1].name",
        ),
        (
            json!([{"name": "x", "type": "command", "params": {"program": "c"}},
                   {"name": "y", "type": "command", "params": {"program": "c"}, "per_frame": true, "frames": "1"},
                   {"name": "z", "type": "nope"}]),
            "",
        ),
        (
            json!([{"name": "comp", "type": "command", "params": {"program": "c"}, "chunk_size": 0}]),
            "stages[0].chunk_size",
        ),
        (
            json!([{"name": "v", "type": "ffmpeg", "params": {"input": "f_####.png", "output": "v.mp4", "fps": 0}}]),
            "stages[0].params.fps",
        ),
    ];
    for (i, (stages, field)) in cases.into_iter().enumerate() {
        let id = format!("{}-bad-{i}", f.queue());
        let body = serde_json::to_vec(&spec(f, &id, stages)).unwrap_or_default();
        let field = (!field.is_empty()).then_some(field);
        rejected(f, "POST", "/v1/jobs", &body, Some(&f.secret()), 400, field).await;
    }
    // Per frame after a stage without frames.
    let id = format!("{}-bad-pf", f.queue());
    let body = json!({"id": id, "type": "command", "queue": f.queue(), "params": {"program": "p"},
                      "stages": [{"name": "c", "type": "command", "params": {"program": "c"}, "frames": "1", "per_frame": true}]});
    let body = serde_json::to_vec(&body).unwrap_or_default();
    rejected(
        f,
        "POST",
        "/v1/jobs",
        &body,
        Some(&f.secret()),
        400,
        Some("stages[0].per_frame"),
    )
    .await;
}

crate::cases!(
    a_job_with_stages_runs_them_in_order,
    a_bad_stage_is_refused_by_field_and_stores_nothing,
);
