//! Who may PUT what (issue 16): the holder re-sending any state, late reports after the end,
//! other clients' reports and the override header, tags that keep their case, and the façade's
//! own body limit.
use super::{create, fetch, own_tag, pickup, put};
use crate::harness::Farm;
use serde_json::{json, Value};

fn error_text(job: &Value) -> String {
    match &job["error"] {
        Value::Array(parts) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.as_str().unwrap_or_default().to_string(),
    }
}

async fn nexrender_holder_resending_any_state_is_never_refused(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    let next = create(f, json!({})).await;
    assert_eq!(pickup(f, &t, "a").await["uid"], job["uid"]);
    for state in ["started", "started", "render:dorender", "started"] {
        let r = put(f, &job["uid"], json!({"state": state}), "a").await;
        assert_eq!(r.status, 200, "{state} re-sent by the holder: {:?}", r.body);
        assert_eq!(r.json()["state"], state);
    }
    // The 1.6x worker on a failed render: `started` + error (un-awaited), then `error`.
    let resent =
        json!({"state": "started", "error": "aerender: layer missing", "renderProgress": 0});
    assert_eq!(put(f, &job["uid"], resent, "a").await.status, 200);
    let failed = json!({"state": "error", "error": "aerender: layer missing\n\nrender failed"});
    let r = put(f, &job["uid"], failed, "a").await;
    assert_eq!(r.status, 200);
    let ended = fetch(f, &job["uid"]).await;
    assert_eq!(ended["state"], "error", "the job ends in error");
    assert!(
        error_text(&ended).contains("layer missing"),
        "with the error text: {ended}"
    );
    assert_eq!(
        pickup(f, &t, "a").await["uid"],
        next["uid"],
        "the same executor picks up the next job"
    );
    assert_eq!(
        put(f, &next["uid"], json!({"state": "started"}), "a")
            .await
            .status,
        200
    );
}

async fn nexrender_late_report_after_the_end_changes_nothing(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    pickup(f, &t, "a").await;
    let failed =
        json!({"state": "error", "error": "render failed", "errorAt": "2026-01-01T00:00:00.000Z"});
    assert_eq!(put(f, &job["uid"], failed, "a").await.status, 200);
    // What an un-awaited status projection carries when it loses the race.
    for state in ["started", "render:dorender"] {
        let late = json!({"state": state, "error": null, "errorAt": null, "renderProgress": 30});
        let r = put(f, &job["uid"], late, "a").await;
        assert_eq!(
            r.status, 200,
            "a late {state} from the last holder is accepted"
        );
        assert_eq!(r.json()["state"], "error");
    }
    let ended = fetch(f, &job["uid"]).await;
    assert_eq!(ended["state"], "error");
    assert_eq!(
        ended["error"], "render failed",
        "the late PUT erased nothing"
    );
    assert_eq!(ended["errorAt"], "2026-01-01T00:00:00.000Z");
    assert_eq!(
        put(f, &job["uid"], json!({"state": "started"}), "b")
            .await
            .status,
        409,
        "anyone else's start of an ended job is still refused"
    );
}

async fn nexrender_other_clients_report_without_taking_the_lease(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    pickup(f, &t, "worker").await;
    put(f, &job["uid"], json!({"state": "started"}), "worker").await;
    let r = put(
        f,
        &job["uid"],
        json!({"state": "render:dorender", "renderProgress": 42}),
        "dashboard",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let shown = r.json();
    assert_eq!(
        (
            &shown["state"],
            &shown["renderProgress"],
            &shown["executor"]
        ),
        (&json!("render:dorender"), &json!(42), &json!("worker")),
        "the report is shown, the lease stays"
    );
    for state in ["started", "queued", "finished", "error"] {
        assert_eq!(
            put(f, &job["uid"], json!({"state": state}), "dashboard")
                .await
                .status,
            409,
            "{state} from a non-holder while the executor holds the job"
        );
    }
    let r = put(
        f,
        &job["uid"],
        json!({"state": "render:dorender", "renderProgress": 50}),
        "worker",
    )
    .await;
    assert_eq!(
        r.json()["renderProgress"],
        50,
        "the executor still holds it"
    );
    assert_eq!(
        pickup(f, &t, "dashboard").await,
        json!({}),
        "and nobody can pick it up"
    );
}

async fn nexrender_override_header_ends_a_lease(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    pickup(f, &t, "worker").await;
    let uid = job["uid"].as_str().unwrap_or_default().to_string();
    let secret = f.secret();
    let admin = |state: &str| {
        let body = json!({"state": state}).to_string().into_bytes();
        let headers = [
            ("nexrender-secret", secret.as_str()),
            ("content-type", "application/json"),
            ("x-edgefarm-override", "1"),
        ];
        let path = format!("/api/v1/jobs/{uid}");
        async move { f.raw("PUT", &path, None, body, &headers).await }
    };
    let r = admin("queued").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["state"], "queued");
    assert_eq!(
        put(
            f,
            &job["uid"],
            json!({"state": "render:dorender"}),
            "worker"
        )
        .await
        .status,
        409,
        "the old executor lost it"
    );
    assert_eq!(pickup(f, &t, "other").await["uid"], job["uid"]);
    let r = admin("started").await;
    assert_eq!(r.status, 200, "an override start takes the job over");
    assert_ne!(r.json()["executor"], "other");
    assert_eq!(
        put(f, &job["uid"], json!({"state": "render:dorender"}), "other")
            .await
            .status,
        409
    );
}

async fn nexrender_tags_keep_their_case_and_match_it(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({"tags": format!("Alpha!,{t}X")})).await;
    assert_eq!(job["tags"], format!("Alpha,{t}X"), "capitals survive");
    assert_eq!(
        pickup(f, &format!("{t}x"), "w").await,
        json!({}),
        "tags match case-sensitively"
    );
    assert_eq!(pickup(f, &format!("{t}X"), "w").await["uid"], job["uid"]);
}

async fn nexrender_bodies_over_one_mib_are_accepted(f: &Farm) {
    let inline = format!("data:image/png;base64,{}", "A".repeat(1_200_000));
    let asset = json!([{"type": "image", "src": inline, "layerName": "logo.png"}]);
    let job = create(f, json!({"assets": asset})).await;
    assert_eq!(
        fetch(f, &job["uid"]).await["assets"][0]["src"]
            .as_str()
            .map(str::len),
        Some(inline.len()),
        "over /v1's 1 MiB and under every runtime's nexrender limit"
    );
}

crate::cases!(
    nexrender_holder_resending_any_state_is_never_refused,
    nexrender_late_report_after_the_end_changes_nothing,
    nexrender_other_clients_report_without_taking_the_lease,
    nexrender_override_header_ends_a_lease,
    nexrender_tags_keep_their_case_and_match_it,
    nexrender_bodies_over_one_mib_are_accepted,
);

/// The limit itself, set by hand (in-process only; the Node suite checks it over HTTP).
mod limit {
    use super::super::{create, nx, own_tag, pickup};
    use crate::harness::Farm;
    use serde_json::json;

    #[tokio::test(flavor = "current_thread")]
    async fn nexrender_body_limit_is_a_413_naming_it() {
        let mut f = Farm::in_process();
        if let Farm::InProcess { config, .. } = &mut f {
            config.nexrender.body_bytes = 2_000_000;
        }
        let asset = |n: usize| json!([{"type": "image", "src": "A".repeat(n), "layerName": "l"}]);
        let job = create(&f, json!({"assets": asset(1_500_000)})).await;
        let over =
            json!({"template": {"src": "x", "composition": "c"}, "assets": asset(2_000_000)});
        let r = nx(&f, "POST", "/jobs", Some(over), None).await;
        assert_eq!(r.status, 413);
        let message = r.json()["error"]["message"].to_string();
        assert!(
            message.contains("2000000") && message.contains("EDGEFARM_NEXRENDER_BODY_BYTES"),
            "names the limit and its setting: {message}"
        );
        let uid = job["uid"].as_str().unwrap_or_default();
        let grow = json!({"extra": "B".repeat(600_000)});
        let r = nx(&f, "PUT", &format!("/jobs/{uid}"), Some(grow), Some("w")).await;
        assert_eq!(r.status, 413, "a merge cannot grow the job past it");
        let r = nx(&f, "GET", &format!("/jobs/{uid}"), None, None).await;
        assert!(
            r.json().get("extra").is_none(),
            "the refused PUT changed nothing"
        );
        assert_eq!(pickup(&f, &own_tag(&f), "w").await["uid"], job["uid"]);
        let v1 = f
            .raw("POST", "/v1/jobs", None, vec![b' '; 1_500_000], &[])
            .await;
        assert_eq!(v1.status, 413, "the /v1 routes keep their own 1 MiB");
        assert!(String::from_utf8_lossy(&v1.body).contains("1048576"));
    }
}
