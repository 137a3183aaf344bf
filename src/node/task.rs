//! Running one claimed task: start the program(s), read their output, heartbeat, and decide the
//! outcome. A lost lease or the task timeout kills the whole process group; a lost lease is
//! never acked (another node may own the task now), a timeout is acked as a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, MissedTickBehavior};

use super::blender::{self, Launch, Roots};
use super::client::{Client, HeartbeatReply};
use super::command;
use super::config::NodeConfig;
use super::error::NodeError;
use super::logbuf::LogBuffer;
use super::paths;
use super::process::{exit_code, Child, Lines};
use super::progress::Tracker;
use super::wire::{ClaimedTask, Heartbeat};

/// Log text is sent at least this often while a program prints.
const LOG_FLUSH_EVERY: Duration = Duration::from_secs(3);

/// How a task ended, from this node's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit code 0: ack `done` with this result.
    Done(Value),
    /// Ack `failed` with this error.
    Failed(String),
    /// The server took the lease back (409 / `keep_running: false`): no ack.
    LeaseLost,
    /// Forced shutdown killed it: release the lease.
    Aborted,
}

/// What a task run needs besides the task.
pub struct TaskEnv<'a> {
    pub client: &'a Client,
    pub config: &'a NodeConfig,
    pub heartbeat_ms: u64,
    /// Becomes `true` on a forced shutdown (second signal).
    pub abort: watch::Receiver<bool>,
    /// Set when a heartbeat answer says the server is draining this node.
    pub server_draining: &'a AtomicBool,
}

/// The argv for a task, or why this node refuses it.
pub fn launch_for(config: &NodeConfig, task: &ClaimedTask) -> Result<Launch, NodeError> {
    let roots = Roots {
        project: config.project_root.clone(),
        output: config.output_root.clone(),
    };
    match (task.kind.as_str(), &config.blender) {
        ("blender", Some(b)) => blender::argv(b, &roots, &task.params, task.frames),
        ("command", _) if !config.programs.is_empty() => {
            command::argv(&config.programs, &roots, &task.params, task.frames)
        }
        (kind, _) => Err(NodeError::Rejected(format!(
            "job type {kind:?} is not enabled on this node"
        ))),
    }
}

/// Runs `task` to its end.
pub async fn run(env: TaskEnv<'_>, task: &ClaimedTask) -> Outcome {
    let launch = match launch_for(env.config, task) {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(e.report()),
    };
    let mut run = Run {
        tracker: Tracker::new(launch.frames_total),
        log: LogBuffer::default(),
        last_sent: Instant::now(),
        env,
        task,
    };
    let started = Instant::now();
    let timeout = task
        .task_timeout_s
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let deadline = timeout.map(|t| started + t);
    let mut last_code = 0;
    for argv in &launch.runs {
        tracing::info!(task = %task.id, program = %launch.program.display(), ?argv, "starting");
        let (child, lines) = match Child::spawn(&launch.program, argv, &run.env.config.project_root)
        {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(e.report()),
        };
        match run.watch(child, lines, deadline).await {
            Step::Exited(0) => {
                last_code = 0;
                if launch.runs.len() > 1 {
                    run.tracker.run_finished(1);
                }
            }
            Step::Exited(code) => {
                run.final_flush().await;
                return Outcome::Failed(format!(
                    "exit code {code}; last log lines:\n{}",
                    run.log.tail(15)
                ));
            }
            Step::TimedOut => {
                run.final_flush().await;
                let secs = timeout.map(|t| t.as_secs()).unwrap_or(0);
                return Outcome::Failed(format!(
                    "timed out after {secs} s (task_timeout_s); killed; last log lines:\n{}",
                    run.log.tail(15)
                ));
            }
            Step::Stop(outcome) => return outcome,
        }
    }
    run.final_flush().await;
    let output_root = &run.env.config.output_root;
    let outputs: Vec<String> = run
        .tracker
        .saved
        .iter()
        .filter_map(|p| paths::relative_to(output_root, p))
        .collect();
    Outcome::Done(json!({
        "exit_code": last_code,
        "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "outputs": outputs,
        "log_tail": run.log.tail(10),
    }))
}

enum Step {
    Exited(i32),
    TimedOut,
    Stop(Outcome),
}

struct Run<'a> {
    tracker: Tracker,
    log: LogBuffer,
    last_sent: Instant,
    env: TaskEnv<'a>,
    task: &'a ClaimedTask,
}

impl Run<'_> {
    /// Reads the program's output until it exits, heartbeating on the way.
    async fn watch(
        &mut self,
        mut child: Child,
        mut lines: Lines,
        deadline: Option<Instant>,
    ) -> Step {
        let every = Duration::from_millis(
            self.task
                .heartbeat_ms
                .unwrap_or(self.env.heartbeat_ms)
                .max(100),
        );
        let tick_every = every.min(Duration::from_secs(1));
        let mut tick = interval_at(tokio::time::Instant::now() + tick_every, tick_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A far-away instant stands in for "no timeout" so the select stays uniform.
        let deadline =
            deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        let mut pipes_open = true;
        let mut abort = self.env.abort.clone();
        loop {
            tokio::select! {
                line = lines.recv(), if pipes_open => match line {
                    Some(line) => {
                        self.tracker.blender_line(&line);
                        self.log.push(&line);
                        if self.log.should_flush() {
                            if let Some(stop) = self.heartbeat(&mut child).await { return stop; }
                        }
                    }
                    None => pipes_open = false,
                },
                status = child.wait(), if !pipes_open => {
                    return match status {
                        Ok(s) => Step::Exited(exit_code(&s)),
                        Err(e) => { self.log.push(&e.report()); Step::Exited(-1) }
                    };
                }
                _ = tick.tick() => {
                    let due = self.last_sent.elapsed() >= every
                        || (self.log.has_text() && self.last_sent.elapsed() >= LOG_FLUSH_EVERY);
                    if due {
                        if let Some(stop) = self.heartbeat(&mut child).await { return stop; }
                    }
                }
                _ = sleep_until(deadline.into()) => {
                    child.kill_group();
                    tracing::warn!(task = %self.task.id, "task timed out; process group killed");
                    return Step::TimedOut;
                }
                _ = abort.changed() => {
                    child.kill_group();
                    return Step::Stop(Outcome::Aborted);
                }
            }
        }
    }

    /// One heartbeat; `Some` when the lease is lost (the child has been killed).
    async fn heartbeat(&mut self, child: &mut Child) -> Option<Step> {
        match self.send_heartbeat().await {
            Some(HeartbeatReply::Stop) => {
                child.kill_group();
                tracing::warn!(task = %self.task.id, "lease lost; process group killed, no ack");
                Some(Step::Stop(Outcome::LeaseLost))
            }
            _ => None,
        }
    }

    async fn send_heartbeat(&mut self) -> Option<HeartbeatReply> {
        let chunk = self.log.take_chunk();
        let body = Heartbeat {
            lease: &self.task.lease,
            progress: self.tracker.progress,
            activity: self.tracker.activity.as_deref(),
            log: &chunk,
        };
        self.last_sent = Instant::now();
        match self.env.client.heartbeat(&self.task.id, &body).await {
            Ok(reply) => {
                if let HeartbeatReply::Keep {
                    node_state: Some(state),
                } = &reply
                {
                    self.env
                        .server_draining
                        .store(state == "draining", Ordering::Relaxed);
                }
                Some(reply)
            }
            Err(e) => {
                // Keep rendering through an outage; the text goes out with a later heartbeat.
                tracing::warn!(task = %self.task.id, error = %e.report(), "heartbeat failed");
                self.log.unsend(chunk);
                None
            }
        }
    }

    /// Sends the last log text before the ack (best effort: the ack matters more).
    async fn final_flush(&mut self) {
        if self.log.has_text() {
            self.send_heartbeat().await;
        }
    }
}
