//! A node that was frozen past its lease wakes up after another node took the task over, and
//! even after that node won: its heartbeat and ack are refused with a reason it can log, and its
//! result never replaces the winner's.

use crate::harness::Farm;
use serde_json::json;

async fn a_taken_over_nodes_late_ack_never_replaces_the_winner(f: &Farm) {
    let job = f.submit(json!({"frames": "1"})).await;
    let jid = job["id"].as_str().unwrap_or_default().to_string();
    let frozen = f.claim("frozen", 1).await.remove(0);
    let tid = frozen["_id"].as_str().unwrap_or_default().to_string();
    f.advance(f.lease_ms() + 300).await;
    let winner = f.claim("winner", 1).await.remove(0);
    assert_eq!(
        winner["_id"], frozen["_id"],
        "the expired task was taken over"
    );
    let done = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": winner["lease"], "status": "done", "result": {"by": "winner"}})),
        )
        .await;
    assert_eq!(done.status, 200);
    // The frozen node wakes up: first its heartbeat, then its ack, then a failure report.
    let beat = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/heartbeat"),
            Some(json!({"lease": frozen["lease"]})),
        )
        .await;
    assert_eq!(
        (beat.status, beat.json()["keep_running"].as_bool()),
        (409, Some(false)),
        "the late heartbeat tells the node to stop: {:?}",
        beat.json()
    );
    let late = f
        .call(
            "POST",
            &format!("/v1/tasks/{tid}/ack"),
            Some(json!({"lease": frozen["lease"], "status": "done", "result": {"by": "frozen"}})),
        )
        .await;
    assert_eq!((late.status, late.code().as_str()), (409, "stale_lease"));
    let message = late.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("completed") && message.contains(&tid),
        "the reason names the task and its state: {message}"
    );
    let late_fail = f.fail(&frozen, "late failure").await;
    assert_eq!(late_fail.status, 409);
    let task = &f.tasks(&jid).await[0];
    assert_eq!(
        (
            task["state"].as_str(),
            &task["result"],
            task["failures"].as_u64()
        ),
        (Some("completed"), &json!({"by": "winner"}), Some(1)),
        "the winner's result stays, and only the expiry counted as a failure: {task}"
    );
    let outcomes: Vec<&str> = task["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["expired", "completed"], "one winning attempt");
}

crate::cases!(; lapse: a_taken_over_nodes_late_ack_never_replaces_the_winner);
