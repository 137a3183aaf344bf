//! The supervisor: one loop that polls the queue, hands tasks to slots, collects outcomes into
//! the outbox, and reacts to signals and to the server's drain.
//!
//! One poll for the whole node (not one per slot) carries every pending ack and claims up to the
//! number of idle slots, so an idle node costs one request per interval whatever its slot
//! count. The poll runs as its own tokio task so a slow server never delays a signal or a
//! slot's report.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use super::backoff::Backoff;
use super::config::NodeConfig;
use super::error::NodeError;
use super::identity::{self, Identity};
use super::outbox::Outbox;
use super::platform::{Request, Signals};
use super::poll::{self, Answer};
use super::shared::{self, Shared};
use super::slot::{Pool, SlotExit};
use super::state;
use super::task::Outcome;
use crate::wire::tasks::{Ack, AckStatus};

/// Builds the config (file + flags + env); called at start and on reload (SIGHUP on Unix, a
/// change of the config file on Windows: see [`super::platform`]).
pub type Loader = Arc<dyn Fn() -> Result<NodeConfig, NodeError> + Send + Sync>;

/// How the agent stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Drained: every task finished and every ack was answered.
    Drained,
    /// Second signal: running tasks were killed and released; `unsent` acks could not be sent.
    Forced { unsent: usize },
}

/// Runs the node until a signal stops it.
pub async fn run(loader: Loader) -> Result<Exit, NodeError> {
    run_watching(loader, None).await
}

/// Like [`run`]; on Windows a change of `config_file` reloads the config (Unix: SIGHUP).
pub async fn run_watching(
    loader: Loader,
    config_file: Option<std::path::PathBuf>,
) -> Result<Exit, NodeError> {
    let config = Arc::new(loader()?);
    // Held until the node exits: a second node on this state dir stops here (see `state`).
    // A node given its token directly keeps no identity there and takes no lock.
    let _lock = match config.token {
        None => Some(state::lock(&config.state_dir)?),
        Some(_) => None,
    };
    let mut signals =
        Signals::new(config_file).map_err(|e| NodeError::io("installing signal handlers", e))?;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let Identity {
        client,
        node_id,
        settings,
    } = loop {
        match identity::connect(&config).await {
            Ok(id) => break id,
            Err(e) if e.is_config() || e.is_auth() => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e.report(), url = %config.url, retry_in_ms = delay.as_millis() as u64, "server not reachable (is `edgefarm serve` running at this url? check --url / EDGEFARM_URL)");
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = signals.stop() => return Ok(Exit::Drained),
                }
            }
        }
    };
    backoff.reset();
    let (abort_tx, abort_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(
        client,
        config.clone(),
        settings.heartbeat_ms,
        abort_rx,
    ));
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut pool = Pool::new(
        shared::runner(shared.clone()),
        reports_tx,
        config.slots as usize,
        config.recycle_after,
    );
    tracing::info!(node = %node_id.as_deref().unwrap_or("(given token)"), name = %config.name, queue = %config.queue, slots = config.slots, types = ?config.types(), "node started");

    let mut outbox = Outbox::default();
    super::workdir::sweep_unfinished(&config.state_dir.join("work"));
    // Finished tasks of a run that stopped before their outputs were uploaded and acked.
    for ack in super::carried::recover(&shared.client, &config.state_dir).await {
        outbox.push(ack);
    }
    let mut interval = Duration::from_millis(settings.interval.max(50));
    let max_tasks = settings.max_tasks.max(1) as usize;
    let mut next_poll = Instant::now();
    let mut in_flight: Option<JoinHandle<Answer>> = None;
    // Whether the request in flight is a long poll of a fully idle node.
    let mut long_polling = false;
    // When the request in flight started: a poll the server held (long poll) already spent
    // that time waiting, so the pause before the next one is shortened by it.
    let mut sent_at = Instant::now();
    let mut draining = false;
    let mut forced_at: Option<Instant> = None;
    let exit = loop {
        if long_polling && (draining || forced_at.is_some()) {
            // Stop waiting for work at once. Should the server have leased a task in the
            // instant before the abort, that lease lapses and the task goes to another node.
            if let Some(handle) = in_flight.take() {
                handle.abort();
            }
            long_polling = false;
        }
        if in_flight.is_none() && pool.busy() == 0 {
            // A slot can be seen gone (supervise) before its last report is read: handle every
            // report still queued before deciding to exit, or its ack or release is lost.
            while let Ok(report) = reports.try_recv() {
                on_report(report, &shared, &mut pool, &mut outbox).await;
            }
        }
        if in_flight.is_none() && pool.busy() == 0 {
            if draining && forced_at.is_none() && outbox.is_empty() {
                tracing::info!("drained: every task finished and acked");
                break Exit::Drained;
            }
            if let Some(_at) = forced_at {
                break Exit::Forced {
                    unsent: poll::last_flush(&shared, &outbox).await,
                };
            }
        }
        if forced_at.is_some_and(|at| at.elapsed() > Duration::from_secs(10)) {
            // A slot stuck in a network call: release what is left and go.
            for task in pool.running() {
                poll::release(&shared, task).await;
            }
            break Exit::Forced {
                unsent: outbox.len(),
            };
        }
        if in_flight.is_none() && Instant::now() >= next_poll {
            let config = shared.config();
            let want = if draining || shared.draining() && node_id.is_some() {
                0
            } else {
                pool.idle().min(max_tasks)
            };
            if want > 0 || !outbox.is_empty() {
                let idle = pool.busy() == 0 && outbox.is_empty() && !draining;
                long_polling = idle;
                sent_at = Instant::now();
                in_flight = Some(poll::spawn_poll(
                    &shared,
                    &config,
                    node_id.as_deref(),
                    want,
                    outbox.snapshot(),
                    if idle { poll::LONG_POLL_S } else { 0 },
                ));
            } else if shared.draining() && !draining {
                in_flight = node_id
                    .as_deref()
                    .map(|id| poll::spawn_node_check(&shared, id));
                next_poll = Instant::now() + interval;
            } else {
                next_poll = Instant::now() + interval;
            }
        }
        tokio::select! {
            request = signals.next() => match request {
                Request::Stop => stop_signal(&mut draining, &mut forced_at, &mut pool, &abort_tx),
                Request::Reload => reload(&loader, &shared, &mut pool, draining),
            },
            Some(report) = reports.recv() => {
                on_report(report, &shared, &mut pool, &mut outbox).await;
                if !backoff.failing() {
                    next_poll = Instant::now();
                }
            }
            Some((exit, held)) = pool.supervise() => {
                if let (SlotExit::Crashed(msg), Some(task)) = (exit, held) {
                    outbox.push(Ack { id: task.id, status: AckStatus::Failed, lease: task.lease, result: None, error: Some(format!("node slot crashed: {msg}").into()), outputs: Vec::new() });
                }
                if draining { pool.close(); }
            }
            joined = async {
                match in_flight.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                long_polling = false;
                let answer = joined.unwrap_or_else(|e| Answer::Lost(e.to_string()));
                let delay = poll::apply(answer, sent_at.elapsed(), &shared, &mut pool, &mut outbox, &mut backoff, &mut interval).await;
                next_poll = Instant::now() + delay;
            }
            _ = sleep_until(next_poll), if in_flight.is_none() => {}
        }
    };
    if let Some(id) = &node_id {
        leave(&shared, id).await;
    }
    Ok(exit)
}

/// Tells the server this node is gone (`POST /v1/nodes/{id}/leave`), so it shows offline at
/// once rather than after its last poll ages out. Best effort and brief: an older server
/// without the route, or an unreachable one, only means the server notices later.
async fn leave(shared: &Shared, id: &str) {
    match tokio::time::timeout(Duration::from_secs(3), shared.client.leave(id)).await {
        Ok(Ok(true)) => tracing::info!("told the server this node is leaving"),
        Ok(Ok(false)) => {
            tracing::debug!("the server has no leave route; it will see this node go quiet")
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e.report(), "could not tell the server this node is leaving")
        }
        Err(_) => tracing::info!("the server did not answer the leave notice in time"),
    }
}

/// What a slot's report of a finished task turns into: an ack to send, or a release.
async fn on_report(
    report: super::slot::Report,
    shared: &Shared,
    pool: &mut Pool,
    outbox: &mut Outbox,
) {
    pool.finished(report.slot);
    let task = report.task;
    match report.outcome {
        Outcome::Done(result) => outbox.push(Ack {
            id: task.id,
            status: AckStatus::Done,
            lease: task.lease,
            result: Some(result),
            error: None,
            outputs: Vec::new(),
        }),
        Outcome::DoneWithFiles(result, outputs) => outbox.push(Ack {
            id: task.id,
            status: AckStatus::Done,
            lease: task.lease,
            result: Some(result),
            error: None,
            outputs,
        }),
        Outcome::Failed(error) => {
            tracing::warn!(task = %task.id, %error, "task failed");
            outbox.push(Ack {
                id: task.id,
                status: AckStatus::Failed,
                lease: task.lease,
                result: None,
                error: Some(error.into()),
                outputs: Vec::new(),
            });
        }
        // Both were logged with their reason where they happened; there is nothing to ack.
        Outcome::LeaseLost | Outcome::Canceled => {}
        Outcome::Aborted => poll::release(shared, &task).await,
    }
}

fn stop_signal(
    draining: &mut bool,
    forced_at: &mut Option<Instant>,
    pool: &mut Pool,
    abort: &watch::Sender<bool>,
) {
    if !*draining {
        *draining = true;
        pool.close();
        tracing::info!(
            running = pool.busy(),
            "draining: no new tasks; finishing running ones (signal again to stop now)"
        );
    } else if forced_at.is_none() {
        *forced_at = Some(Instant::now());
        tracing::warn!(
            running = pool.busy(),
            "stopping now: killing running tasks and releasing their leases"
        );
        abort.send_replace(true);
    }
}

fn reload(loader: &Loader, shared: &Shared, pool: &mut Pool, draining: bool) {
    let old = shared.config();
    match loader() {
        Ok(new) => {
            if (&new.url, &new.queue, &new.token, &new.state_dir)
                != (&old.url, &old.queue, &old.token, &old.state_dir)
            {
                tracing::warn!(
                    "url, queue, token and state_dir changes take effect only after a restart"
                );
            }
            let merged = NodeConfig {
                url: old.url.clone(),
                queue: old.queue.clone(),
                token: old.token.clone(),
                secret: old.secret.clone(),
                state_dir: old.state_dir.clone(),
                ..new
            };
            tracing::info!(slots = merged.slots, types = ?merged.types(), tags = ?merged.tags, "config reloaded");
            if !draining {
                pool.resize(merged.slots as usize, merged.recycle_after);
            }
            shared.set_config(Arc::new(merged));
        }
        Err(e) => {
            tracing::error!(error = %e.report(), "config reload failed; keeping the running config")
        }
    }
}
