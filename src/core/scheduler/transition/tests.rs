//! The table of `transition.rs`, pair by pair: every (state, event) either gives the state
//! the table says or is refused with the task unchanged.

use super::*;
use crate::core::model::TaskState::{self, Canceled, Completed, Failed, Leased, Queued};
use serde_json::json;

const NOW: u64 = 1_000_000;
const STATES: [TaskState; 5] = [Queued, Leased, Completed, Failed, Canceled];

/// A task in `state`, as the scheduler leaves it there: a queued one still keeps the lease
/// that lapsed on it (so `Revive` has something to revive), a leased one holds a live lease.
fn task_in(state: TaskState) -> Task {
    let mut t = Task::new(0, None, 0);
    let claim = Event::Claim {
        node: "n1",
        token: "tok".into(),
        expires_ms: NOW + 10,
    };
    assert_eq!(apply(&mut t, claim, 1), Ok(()));
    match state {
        Leased => {}
        Queued => {
            let lapse = Event::Expired {
                max_attempts: 3,
                counted: true,
            };
            assert_eq!(apply(&mut t, lapse, 2), Ok(()));
        }
        Completed => assert_eq!(apply(&mut t, Event::Done { result: json!(1) }, 2), Ok(())),
        Failed => {
            let fail = Event::Failed {
                error: "e".into(),
                max_attempts: 1,
            };
            assert_eq!(apply(&mut t, fail, 2), Ok(()));
        }
        Canceled => assert_eq!(apply(&mut t, Event::Canceled { why: "c" }, 2), Ok(())),
    }
    assert_eq!(t.state, state);
    t
}

fn event(kind: EventKind) -> Event<'static> {
    match kind {
        EventKind::Claim => Event::Claim {
            node: "n2",
            token: "tok2".into(),
            expires_ms: NOW + 60,
        },
        EventKind::Revive => Event::Revive {
            expires_ms: NOW + 60,
        },
        EventKind::Heartbeat => Event::Heartbeat {
            expires_ms: NOW + 60,
        },
        EventKind::Done => Event::Done { result: json!("r") },
        EventKind::Failed => Event::Failed {
            error: "boom".into(),
            max_attempts: 5,
        },
        EventKind::Expired => Event::Expired {
            max_attempts: 5,
            counted: true,
        },
        EventKind::Released => Event::Released,
        EventKind::Revoked => Event::Revoked,
        EventKind::DeadEnd => Event::DeadEnd { names: "n1" },
        EventKind::Canceled => Event::Canceled { why: "canceled" },
        EventKind::Requeued => Event::Requeued {
            completed_too: false,
        },
        EventKind::Rewait => Event::Rewait {
            hold: false,
            why: "again",
        },
        EventKind::Covered => Event::Covered,
        EventKind::Finished => Event::Finished,
        EventKind::Errored => Event::Errored { error: "ae".into() },
    }
}

/// The table of the module doc: for each event, the state it gives from queued, leased,
/// completed, failed and canceled (`None`: refused).
const TABLE: [(EventKind, [Option<TaskState>; 5]); 15] = [
    (EventKind::Claim, [Some(Leased), None, None, None, None]),
    (EventKind::Revive, [Some(Leased), None, None, None, None]),
    (EventKind::Heartbeat, [None, Some(Leased), None, None, None]),
    (EventKind::Done, [None, Some(Completed), None, None, None]),
    (EventKind::Failed, [None, Some(Queued), None, None, None]),
    (EventKind::Expired, [None, Some(Queued), None, None, None]),
    (EventKind::Released, [None, Some(Queued), None, None, None]),
    (EventKind::Revoked, [None, Some(Queued), None, None, None]),
    (EventKind::DeadEnd, [Some(Failed), None, None, None, None]),
    (
        EventKind::Canceled,
        [Some(Canceled), Some(Canceled), None, None, None],
    ),
    // `completed_too: false`; see below for `true`.
    (
        EventKind::Requeued,
        [Some(Queued), None, None, Some(Queued), Some(Queued)],
    ),
    (EventKind::Rewait, [Some(Queued); 5]),
    // A task not held; see below for a held one.
    (EventKind::Covered, [None; 5]),
    (EventKind::Finished, [Some(Completed); 5]),
    (EventKind::Errored, [Some(Failed); 5]),
];

#[test]
fn rewait_queues_every_task_again_held_when_asked_and_withdraws_a_running_attempt() {
    for state in STATES {
        let mut t = task_in(state);
        let rewait = Event::Rewait {
            hold: true,
            why: "job r renders again",
        };
        assert_eq!(apply(&mut t, rewait, NOW), Ok(()), "from {state:?}");
        assert_eq!((t.state, t.held), (Queued, true), "from {state:?}");
        assert!(
            t.lease.is_none() && t.lapsed.is_none(),
            "from {state:?}: {t:?}"
        );
        assert!(t.result.is_none() && t.progress.is_none(), "from {state:?}");
        let revive = Event::Revive {
            expires_ms: NOW + 60,
        };
        assert!(
            apply(&mut t, revive, NOW).is_err(),
            "from {state:?}: a lapsed lease's holder cannot come back to stale work"
        );
    }
    let mut t = task_in(Leased);
    let rewait = Event::Rewait {
        hold: false,
        why: "job r renders again",
    };
    assert_eq!(apply(&mut t, rewait, NOW), Ok(()));
    assert!(!t.held, "a whole-job wait holds nothing");
    assert_eq!(t.error.as_deref(), Some("job r renders again"));
    let last = t.history.last().and_then(|a| a.outcome);
    assert_eq!(
        last,
        Some(Outcome::Released),
        "the attempt was withdrawn, not failed"
    );
    assert_eq!(t.failures, 0);
    // A queued task already waiting as asked is left alone (the caller then writes nothing).
    let fresh = Task::new(0, None, 0);
    let plain = Event::Rewait {
        hold: false,
        why: "w",
    };
    assert_eq!(
        apply(&mut fresh.clone(), plain, NOW).map_err(|r| r.event),
        Err(EventKind::Rewait)
    );
    let mut released = fresh.clone();
    let held = Event::Rewait {
        hold: true,
        why: "w",
    };
    assert_eq!(
        apply(&mut released, held.clone(), NOW),
        Ok(()),
        "held again"
    );
    assert!(released.held);
    assert_eq!(
        apply(&mut released, held, NOW).map_err(|r| r.event),
        Err(EventKind::Rewait),
        "holding twice changes nothing"
    );
}

#[test]
fn covered_releases_a_held_queued_task_only() {
    let held = Task {
        held: true,
        ..Task::new(0, None, 0)
    };
    let mut t = held.clone();
    assert_eq!(apply(&mut t, Event::Covered, NOW), Ok(()));
    assert!(!t.held, "released");
    assert_eq!(t.state, Queued, "still waiting for a node");
    assert_eq!(
        apply(&mut t, Event::Covered, NOW),
        Err(Refusal {
            state: Queued,
            event: EventKind::Covered
        }),
        "releasing twice changes nothing"
    );
    // A held task canceled with its job keeps its flag, and waits again once requeued.
    let mut t = held.clone();
    assert_eq!(apply(&mut t, Event::Canceled { why: "c" }, NOW), Ok(()));
    assert_eq!(
        apply(&mut t, Event::Covered, NOW).map_err(|r| r.state),
        Err(Canceled)
    );
    let requeue = Event::Requeued {
        completed_too: false,
    };
    assert_eq!(apply(&mut t, requeue, NOW), Ok(()));
    assert!(t.held && t.state == Queued, "{t:?}");
}

#[test]
fn every_state_and_event_pair_follows_the_table() {
    for (kind, row) in TABLE {
        for (state, want) in STATES.into_iter().zip(row) {
            let before = task_in(state);
            let mut t = before.clone();
            let got = apply(&mut t, event(kind), NOW);
            match want {
                Some(after) => {
                    assert_eq!(got, Ok(()), "{state:?} + {kind:?}");
                    assert_eq!(t.state, after, "{state:?} + {kind:?}");
                    assert_eq!(t.updated_ms, NOW, "{state:?} + {kind:?} stamps the task");
                    assert_eq!(
                        t.lease.is_some(),
                        after == Leased,
                        "{state:?} + {kind:?}: a lease exactly when leased"
                    );
                }
                None => {
                    assert_eq!(
                        got,
                        Err(Refusal { state, event: kind }),
                        "{state:?} + {kind:?}"
                    );
                    assert_eq!(
                        t, before,
                        "{state:?} + {kind:?} refused leaves it unchanged"
                    );
                }
            }
            assert_eq!(
                next(&before, event(kind), NOW).map(|t| t.state),
                got.map(|()| t.state)
            );
        }
    }
}

#[test]
fn requeue_of_a_completed_task_only_with_completed_too() {
    let mut t = task_in(Completed);
    let again = Event::Requeued {
        completed_too: true,
    };
    assert_eq!(apply(&mut t, again, NOW), Ok(()));
    assert_eq!((t.state, t.result.clone(), t.failures), (Queued, None, 0));
    assert_eq!(t.attempts, 1, "attempt numbers keep counting");
}

#[test]
fn revive_needs_the_lapsed_lease_and_takes_its_failure_back() {
    let mut t = task_in(Queued);
    assert_eq!(t.failures, 1);
    assert_eq!(
        apply(
            &mut t,
            Event::Revive {
                expires_ms: NOW + 5
            },
            NOW
        ),
        Ok(())
    );
    assert_eq!((t.state, t.failures), (Leased, 0));
    assert_eq!(
        t.lease.as_ref().map(|l| (l.expires_ms, l.attempt)),
        Some((NOW + 5, 1))
    );
    assert_eq!(
        t.history.last().and_then(|a| a.outcome),
        None,
        "the attempt runs again"
    );
    let mut fresh = Task::new(0, None, 0);
    let refused = apply(&mut fresh, Event::Revive { expires_ms: NOW }, NOW);
    assert_eq!(refused.map_err(|r| r.event), Err(EventKind::Revive));
}

#[test]
fn a_claim_clears_the_lapsed_lease() {
    let mut t = task_in(Queued);
    assert!(t.lapsed.is_some());
    assert_eq!(apply(&mut t, event(EventKind::Claim), NOW), Ok(()));
    assert_eq!((t.lapsed.clone(), t.attempts), (None, 2));
}

#[test]
fn failures_run_out_by_attempts_or_by_nodes() {
    let fail = |max_attempts| Event::Failed {
        error: "e".into(),
        max_attempts,
    };
    let mut t = task_in(Leased);
    assert_eq!(apply(&mut t, fail(1), NOW), Ok(()));
    assert_eq!(
        (t.state, t.failed_nodes.clone()),
        (Failed, vec!["n1".to_string()])
    );
    let mut t = Task::new(0, None, 0);
    for node in ["a", "b", "c"] {
        let claim = Event::Claim {
            node,
            token: node.into(),
            expires_ms: NOW,
        };
        assert_eq!(apply(&mut t, claim, NOW), Ok(()));
        assert_eq!(apply(&mut t, fail(100), NOW), Ok(()));
    }
    assert_eq!(t.failed_nodes.len(), MAX_FAILED_NODES);
    assert_eq!(t.state, Failed, "three nodes failed it");
}

#[test]
fn an_expiry_counts_unless_the_server_was_down() {
    let expire = |counted| Event::Expired {
        max_attempts: 1,
        counted,
    };
    let mut t = task_in(Leased);
    assert_eq!(apply(&mut t, expire(false), NOW), Ok(()));
    assert_eq!((t.state, t.failures), (Queued, 0));
    let mut t = task_in(Leased);
    assert_eq!(apply(&mut t, expire(true), NOW), Ok(()));
    assert_eq!((t.state, t.failures), (Failed, 1));
    assert!(t.lapsed.is_some(), "kept for its holder's late ack");
}
