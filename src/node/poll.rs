//! One round trip of the queue protocol, run off the supervisor's loop, and what its answer
//! changes: acks answered, tasks handed to slots, the interval and the server's drain state.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::backoff::Backoff;
use super::config::NodeConfig;
use super::error::NodeError;
use super::outbox::Outbox;
use super::shared::Shared;
use super::slot::Pool;
use crate::core::model::NodeState;
use crate::wire::nodes::{Node as NodeInfo, ShownState};
use crate::wire::queue::{ClaimedTask, Poll, PollAnswer};
use crate::wire::tasks::Ack;

/// The result of an in-flight request.
#[derive(Debug)]
pub enum Answer {
    /// A queue poll: the acks it carried and the server's answer (`None` = 204).
    Poll(Vec<Ack>, Result<Option<PollAnswer>, NodeError>),
    /// `GET /v1/nodes/{id}` while the server has this node draining.
    Node(Result<NodeInfo, NodeError>),
    /// The request task itself failed (panicked); treated like an outage.
    Lost(String),
}

/// Seconds a fully idle node lets the server hold its poll (well under the client's 20 s
/// request timeout).
pub const LONG_POLL_S: u64 = 10;

/// Starts `POST /v1/queue/{queue}` with the pending acks, claiming up to `want` tasks. `wait_s`
/// is the long-poll time: only a node with nothing running and nothing to ack should wait, so
/// no ack is ever held back behind a long poll.
pub fn spawn_poll(
    shared: &Arc<Shared>,
    config: &NodeConfig,
    node: Option<&str>,
    want: usize,
    acks: Vec<Ack>,
    wait_s: u64,
) -> JoinHandle<Answer> {
    let shared = shared.clone();
    let (queue, types, tags, slots, node) = (
        config.queue.clone(),
        config.types(),
        config.tags.clone(),
        config.slots,
        node.map(str::to_string),
    );
    tokio::spawn(async move {
        let body = Poll {
            node,
            max: Some(want as u32),
            types: Some(types),
            tags: Some(tags),
            slots: Some(slots),
            tasks: acks.clone(),
        };
        let result = shared.client.poll(&queue, &body, wait_s).await;
        Answer::Poll(acks, result)
    })
}

/// Starts a check of this node's state (to notice the end of a server-side drain).
pub fn spawn_node_check(shared: &Arc<Shared>, id: &str) -> JoinHandle<Answer> {
    let shared = shared.clone();
    let id = id.to_string();
    tokio::spawn(async move { Answer::Node(shared.client.node(&id).await) })
}

/// Applies an answer that took `took` to arrive; returns the delay before the next poll.
///
/// Polls start at most once per interval unless one claimed something: an empty answer
/// waits out what is left of the interval after the request itself. So a node whose long
/// poll was held 10 s asks again at once (it is not idle 2 s more with work waiting), while a
/// server that answers 204 at once (no long polls) is still asked only once per interval.
pub async fn apply(
    answer: Answer,
    took: Duration,
    shared: &Shared,
    pool: &mut Pool,
    outbox: &mut Outbox,
    backoff: &mut Backoff,
    interval: &mut Duration,
) -> Duration {
    match answer {
        Answer::Poll(_, Ok(None)) => {
            backoff.reset();
            pause_after_empty(*interval, took)
        }
        Answer::Poll(sent, Ok(Some(answer))) => {
            backoff.reset();
            outbox.answered(&sent, &answer.acks);
            *interval = Duration::from_millis(answer.interval.max(50));
            set_server_drain(shared, answer.node_state == NodeState::Draining);
            let claimed = answer.tasks.len();
            for task in answer.tasks {
                tracing::info!(task = %task.id, job = %task.job, kind = task.kind.as_str(), attempt = task.attempt, "claimed");
                if let Err(task) = pool.assign(task) {
                    // Only possible if the pool shrank while the poll was in flight.
                    release(shared, &task).await;
                }
            }
            if claimed > 0 && pool.idle() > 0 {
                Duration::ZERO
            } else {
                *interval
            }
        }
        Answer::Node(Ok(node)) => {
            backoff.reset();
            set_server_drain(shared, node.state == ShownState::Draining);
            *interval
        }
        Answer::Poll(_, Err(e)) | Answer::Node(Err(e)) => failure(backoff, &e.report()),
        Answer::Lost(msg) => failure(backoff, &msg),
    }
}

/// What is left of the interval after an empty answer that took `took` (see [`apply`]).
fn pause_after_empty(interval: Duration, took: Duration) -> Duration {
    interval.saturating_sub(took)
}

fn failure(backoff: &mut Backoff, error: &str) -> Duration {
    let delay = backoff.next_delay();
    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "poll failed; results are kept and re-sent");
    delay
}

fn set_server_drain(shared: &Shared, draining: bool) {
    let was = shared
        .server_draining
        .swap(draining, std::sync::atomic::Ordering::Relaxed);
    if was != draining {
        tracing::info!(draining, "server changed this node's state");
    }
}

/// Hands a task back at once (shutdown); a failure only costs the lease's expiry.
pub async fn release(shared: &Shared, task: &ClaimedTask) {
    let call = shared.client.release(&task.id, &task.lease);
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(())) => tracing::info!(task = %task.id, "released"),
        Ok(Err(e)) => {
            tracing::warn!(task = %task.id, error = %e.report(), "release failed; the lease will expire")
        }
        Err(_) => tracing::warn!(task = %task.id, "release timed out; the lease will expire"),
    }
}

/// Last try to deliver pending acks before exiting; returns how many stay unsent.
pub async fn last_flush(shared: &Shared, outbox: &Outbox) -> usize {
    if outbox.is_empty() {
        return 0;
    }
    let config = shared.config();
    let acks = outbox.snapshot();
    let body = Poll {
        node: None,
        max: Some(0),
        types: Some(config.types()),
        tags: Some(config.tags.clone()),
        slots: Some(config.slots),
        tasks: acks.clone(),
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        shared.client.poll(&config.queue, &body, 0),
    )
    .await
    {
        Ok(Ok(_)) => 0,
        _ => {
            tracing::error!(
                unsent = acks.len(),
                "could not deliver finished results before exiting"
            );
            acks.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pause_after_empty;
    use std::time::Duration;

    #[test]
    fn a_held_poll_is_followed_at_once_and_a_quick_empty_one_after_the_interval() {
        let interval = Duration::from_secs(2);
        // A long poll the server held for its 10 s: no extra idle pause.
        assert_eq!(
            pause_after_empty(interval, Duration::from_secs(10)),
            Duration::ZERO
        );
        // An immediate 204 (a server without long polls): the whole interval.
        assert_eq!(pause_after_empty(interval, Duration::ZERO), interval);
        // Woken early by an unrelated change after 0.5 s: polls still start once per interval.
        assert_eq!(
            pause_after_empty(interval, Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
    }
}
