use super::*;
use crate::wire::queue::ClaimedTask;

fn task(id: &str) -> ClaimedTask {
    ClaimedTask {
        id: id.into(),
        job: "j".into(),
        job_name: "j".into(),
        kind: crate::core::model::JobType::Command,
        queue: "default".into(),
        lease: "l".into(),
        attempt: 1,
        lease_expires_ms: 0,
        lease_ms: 60_000,
        heartbeat_ms: 15_000,
        frames: None,
        params: serde_json::Value::Null,
        task_timeout_s: 0,
        inputs: None,
    }
}

fn runner() -> Runner {
    Arc::new(|task: ClaimedTask| {
        Box::pin(async move {
            assert!(task.id != "boom", "runner exploded on purpose");
            Outcome::Done(serde_json::json!({"id": task.id}))
        })
    })
}

#[tokio::test]
async fn crashed_slot_is_replaced_and_its_task_handed_back() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut pool = Pool::new(runner(), tx, 2, 0);
    assert_eq!(pool.idle(), 2);
    pool.assign(task("boom")).unwrap();
    let (exit, held) = pool.supervise().await.unwrap();
    assert!(
        matches!(exit, SlotExit::Crashed(ref m) if m.contains("on purpose")),
        "{exit:?}"
    );
    assert_eq!(
        held.map(|t| t.id),
        Some("boom".to_string()),
        "the crashed slot's task must be reported"
    );
    assert_eq!(pool.idle(), 2, "a new slot should replace the crashed one");
    pool.assign(task("ok")).unwrap();
    let report = rx.recv().await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Done(serde_json::json!({"id": "ok"}))
    );
}

#[tokio::test]
async fn slot_is_recycled_after_n_tasks() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut pool = Pool::new(runner(), tx, 1, 2);
    for id in ["a", "b"] {
        pool.assign(task(id)).unwrap();
        let r = rx.recv().await.unwrap();
        pool.finished(r.slot);
    }
    let (exit, _) = pool.supervise().await.unwrap();
    assert_eq!(exit, SlotExit::Recycled);
    assert_eq!(
        pool.idle(),
        1,
        "a fresh slot should take the recycled one's place"
    );
}

#[tokio::test]
async fn shrinking_retires_idle_slots_only() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let slow: Runner = Arc::new(|_t| {
        Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            Outcome::Aborted
        })
    });
    let mut pool = Pool::new(slow, tx, 3, 0);
    pool.assign(task("a")).unwrap();
    pool.resize(1, 0);
    assert_eq!(
        (pool.busy(), pool.idle()),
        (1, 0),
        "the busy slot keeps its task"
    );
    pool.resize(2, 0);
    assert_eq!((pool.busy(), pool.idle()), (1, 1));
}

#[tokio::test]
async fn no_idle_slot_hands_the_task_back() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut pool = Pool::new(runner(), tx, 1, 0);
    pool.assign(task("a")).unwrap();
    assert_eq!(pool.assign(task("b")).unwrap_err().id, "b");
}
