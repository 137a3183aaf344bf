//! Pickups and leases: exclusive claims, tag intersection, silent executors, claim by PUT.
use super::{create, fetch, nx, own_tag, pickup, put};
use crate::harness::Farm;
use serde_json::json;

async fn nexrender_pickups_are_exclusive(f: &Farm) {
    let tag = own_tag(f);
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create(f, json!({})).await["uid"].clone());
    }
    let names: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let got = futures_util::future::join_all(names.iter().map(|n| pickup(f, &tag, n))).await;
    for j in got.iter().filter(|j| j["uid"].is_string()) {
        assert!(created.contains(&j["uid"]), "only our jobs: {j}");
        assert_eq!(j["state"], "picked");
        assert!(j["executor"].as_str().is_some_and(|e| e.starts_with('w')));
    }
    assert!(got.iter().all(|j| j == &json!({}) || j["uid"].is_string()));
    let mut uids: Vec<String> = got
        .iter()
        .filter_map(|j| j["uid"].as_str().map(String::from))
        .collect();
    // Each picker starts what it got: only the job's one holder may.
    let mut started = std::collections::BTreeMap::<String, usize>::new();
    for (name, j) in names.iter().zip(&got) {
        if j["uid"].is_string() {
            let r = put(f, &j["uid"], json!({"state": "started"}), name).await;
            assert!(r.status == 200 || r.status == 409, "started: {}", r.status);
            *started.entry(j["uid"].to_string()).or_default() += usize::from(r.status == 200);
        }
    }
    if f.atomic_cas().await {
        assert_eq!(uids.len(), 5, "five jobs, five pickups win, three get {{}}");
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 5, "no job is picked up twice");
        assert!(got.iter().any(|j| j == &json!({})));
        assert!(
            started.values().all(|n| *n == 1),
            "each picker starts its job: {started:?}"
        );
    } else {
        // Without a compare-and-swap a pickup is at-least-once (docs/CLOUDFLARE.md): two
        // executors may get one job, but only one of them holds it, the other is told 409.
        assert!(!uids.is_empty(), "some pickup wins: {got:?}");
        assert!(
            started.values().all(|n| *n <= 1),
            "a job has at most one holder: {started:?}"
        );
    }
}

async fn nexrender_pickup_matches_tags_by_intersection(f: &Farm) {
    let t = own_tag(f);
    let ab = create(f, json!({"tags": format!("{t}a, {t}b")})).await;
    let c = create(f, json!({"tags": format!("{t}c")})).await;
    assert_eq!(
        pickup(f, &format!("{t}z"), "w").await,
        json!({}),
        "no shared tag: nothing"
    );
    assert_eq!(
        pickup(f, &format!("{t}x,{t}b"), "w").await["uid"],
        ab["uid"],
        "one shared tag is enough, after trimming"
    );
    assert_eq!(pickup(f, &format!("{t}c"), "w").await["uid"], c["uid"]);
}

async fn nexrender_silent_executor_loses_its_lease(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    let picked = f.mark();
    assert_eq!(pickup(f, &t, "dies").await["uid"], job["uid"]);
    let started = put(f, &job["uid"], json!({"state": "started"}), "dies").await;
    assert!(
        started.status == 200 || !f.lease_live_since(picked),
        "the picker starts its job: {}",
        started.status
    );
    f.advance(f.lease_ms() + 300).await;
    assert_eq!(
        fetch(f, &job["uid"]).await["state"],
        "queued",
        "a silent executor's job is queued again"
    );
    let picked = f.mark();
    let again = pickup(f, &t, "other").await;
    assert_eq!(
        (again["uid"].clone(), again["executor"].clone()),
        (job["uid"].clone(), json!("other"))
    );
    let late = put(
        f,
        &job["uid"],
        json!({"state": "render:dorender", "renderProgress": 50}),
        "dies",
    )
    .await;
    assert_eq!(late.status, 409, "the silent executor lost the job");
    let ok = put(
        f,
        &job["uid"],
        json!({"state": "render:dorender", "renderProgress": 40}),
        "other",
    )
    .await;
    let done = put(f, &job["uid"], json!({"state": "finished"}), "other").await;
    if !f.lease_live_since(picked) && (ok.status != 200 || done.status != 200) {
        // Too slow a machine: the new holder's lease lapsed too, nothing more to check.
        return;
    }
    assert_eq!(ok.json()["renderProgress"], 40);
    let done = done.json();
    assert_eq!(done["state"], "finished");
    assert!(done["finishedAt"].is_string(), "finishedAt is stamped");
}

async fn nexrender_attempts_run_out_into_error(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    for n in 0..3 {
        assert_eq!(
            pickup(f, &t, &format!("w{n}")).await["uid"],
            job["uid"],
            "attempt {n}"
        );
        f.advance(f.lease_ms() + 300).await;
    }
    assert_eq!(
        pickup(f, &t, "w9").await,
        json!({}),
        "three attempts, then no more"
    );
    let status = nx(
        f,
        "GET",
        &format!("/jobs/{}/status", job["uid"].as_str().unwrap_or("")),
        None,
        None,
    )
    .await
    .json();
    assert_eq!(status["state"], "error");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("went silent")),
        "says why: {status}"
    );
}

async fn nexrender_started_put_is_an_exclusive_claim(f: &Farm) {
    let t = own_tag(f);
    let picked = create(f, json!({})).await;
    assert_eq!(pickup(f, &t, "a").await["uid"], picked["uid"]);
    assert_eq!(
        put(f, &picked["uid"], json!({"state": "started"}), "b")
            .await
            .status,
        409,
        "leased to another executor"
    );
    assert_eq!(
        put(f, &picked["uid"], json!({"state": "started"}), "a")
            .await
            .status,
        200,
        "the picker starts it"
    );
    assert_eq!(
        put(f, &picked["uid"], json!({"state": "started"}), "a")
            .await
            .status,
        200,
        "the holder re-sending started renews its lease (nexrender 1.6x workers do)"
    );
    let listed = create(f, json!({})).await;
    let mut whole = listed.clone();
    whole["state"] = json!("started");
    let uid = &listed["uid"];
    let names: Vec<String> = (0..10).map(|i| format!("old{i}")).collect();
    let racers = futures_util::future::join_all(names.iter().map(|name| {
        let body = whole.clone();
        async move { put(f, uid, body, name).await.status }
    }))
    .await;
    assert!(racers.iter().all(|s| *s == 200 || *s == 409));
    let winners = racers.iter().filter(|s| **s == 200).count();
    // Whoever holds the job may start it again (a renewal); every other racer is told 409.
    // (A progress report would not tell them apart: any client may report render:* states.)
    let mut holders = Vec::new();
    for (name, status) in names.iter().zip(&racers) {
        let r = put(f, uid, json!({"state": "started"}), name).await;
        if r.status == 200 {
            holders.push((name.clone(), *status));
        }
    }
    if f.atomic_cas().await {
        assert_eq!(winners, 1, "exactly one winner: {racers:?}");
        assert_eq!(
            holders.iter().map(|h| h.1).collect::<Vec<_>>(),
            [200],
            "the winner holds the job: {holders:?}"
        );
    } else {
        // Without a compare-and-swap the claim is at-least-once (docs/CLOUDFLARE.md): more
        // than one racer may be told 200, but only one holds the job afterwards.
        assert!(winners >= 1, "some racer wins: {racers:?}");
        assert!(holders.len() <= 1, "at most one holder: {holders:?}");
    }
    assert_eq!(
        pickup(f, &t, "c").await,
        json!({}),
        "a job claimed by PUT is not picked up"
    );
}

async fn nexrender_queued_put_releases_at_once(f: &Farm) {
    let t = own_tag(f);
    let job = create(f, json!({})).await;
    pickup(f, &t, "a").await;
    let r = put(f, &job["uid"], json!({"state": "queued"}), "a").await;
    assert_eq!(r.json()["state"], "queued");
    assert_eq!(
        pickup(f, &t, "b").await["uid"],
        job["uid"],
        "free again at once"
    );
}

crate::cases!(
    nexrender_pickups_are_exclusive,
    nexrender_pickup_matches_tags_by_intersection,
    nexrender_started_put_is_an_exclusive_claim,
    nexrender_queued_put_releases_at_once;
    lapse: nexrender_silent_executor_loses_its_lease,
    nexrender_attempts_run_out_into_error,
);

/// Orderings need a server setting, so these run in-process only (the Node suite runs each
/// ordering over HTTP against `edgefarm serve --nexrender-ordering`).
mod ordering {
    use super::super::{create, own_tag, pickup};
    use crate::harness::Farm;
    use edgefarm::core::nexrender::Ordering;
    use serde_json::json;

    fn set(farm: &mut Farm, ordering: Ordering) {
        if let Farm::InProcess { config, .. } = farm {
            config.nexrender.ordering = ordering;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nexrender_newest_first_picks_the_newest() {
        let mut f = Farm::in_process();
        set(&mut f, Ordering::NewestFirst);
        let t = own_tag(&f);
        let mut uids = Vec::new();
        for _ in 0..3 {
            uids.push(create(&f, json!({})).await["uid"].clone());
            f.advance(10).await;
        }
        for want in uids.iter().rev() {
            assert_eq!(&pickup(&f, &t, "w").await["uid"], want);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nexrender_jobs_from_before_an_ordering_change_are_still_picked() {
        let mut f = Farm::in_process();
        let t = own_tag(&f);
        let old = create(&f, json!({"priority": 1})).await;
        set(&mut f, Ordering::Priority);
        let low = create(&f, json!({"priority": 2})).await;
        let high = create(&f, json!({"priority": 9})).await;
        let order: Vec<_> = [
            pickup(&f, &t, "w").await,
            pickup(&f, &t, "w").await,
            pickup(&f, &t, "w").await,
        ]
        .iter()
        .map(|j| j["uid"].clone())
        .collect();
        assert_eq!(
            order,
            vec![high["uid"].clone(), low["uid"].clone(), old["uid"].clone()],
            "by priority, then the jobs indexed under the old ordering"
        );
    }
}
