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
use super::ffmpeg;
use super::logbuf::LogBuffer;
use super::paths;
use super::preview::Previews;
use super::process::{exit_code, Child, Lines};
use super::progress::Tracker;
use super::rendered;
use crate::core::model::{NodeState, TaskState};
use crate::wire::queue::ClaimedTask;
use crate::wire::tasks::Heartbeat;

/// Log text is sent at least this often while a program prints.
const LOG_FLUSH_EVERY: Duration = Duration::from_secs(3);

/// How a task ended, from this node's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit code 0: ack `done` with this result.
    Done(Value),
    /// Exit code 0 of a job that carries its files: ack `done` with this result and these
    /// outputs (uploaded already).
    DoneWithFiles(Value, Vec<crate::core::blobs::FileEntry>),
    /// Ack `failed` with this error.
    Failed(String),
    /// The server took the lease back (409 / `keep_running: false`): no ack.
    LeaseLost,
    /// The job was canceled while the task ran: no ack.
    Canceled,
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
    let roots = Roots::of(config);
    match (task.kind.as_str(), &config.blender) {
        ("blender", Some(b)) => blender::argv(b, &roots, &task.params, task.frames),
        ("command", _) if !config.programs.is_empty() => {
            command::argv(&config.programs, &roots, &task.params, task.frames)
        }
        ("ffmpeg", _) if config.ffmpeg.is_some() => {
            let program = config.ffmpeg.as_deref().unwrap_or(std::path::Path::new(""));
            ffmpeg::argv(program, &roots, &task.params, task.frames)
        }
        (kind, _) => Err(NodeError::Rejected(format!(
            "job type {kind:?} is not enabled on this node"
        ))),
    }
}

/// Frames an earlier attempt of this Blender task left complete (see `rendered`): asks the
/// server when those attempts began, then checks the files off the async runtime. Empty for a
/// first attempt, other task types, or when anything is unclear (then everything renders).
async fn already_rendered(env: &TaskEnv<'_>, task: &ClaimedTask) -> Vec<(i64, std::path::PathBuf)> {
    let (Some(frames), "blender", true) = (task.frames, task.kind.as_str(), task.attempt > 1)
    else {
        return Vec::new();
    };
    let roots = Roots::of(env.config);
    let Ok(output) = blender::output_path(&roots, &task.params) else {
        return Vec::new();
    };
    let format = blender::optional_str(&task.params, "format")
        .ok()
        .flatten()
        .map(str::to_string);
    let info = match env.client.task(&task.id).await {
        Ok(info) => info,
        Err(e) => {
            tracing::info!(task = %task.id, error = %e.report(), "cannot read the earlier attempts; rendering every frame");
            return Vec::new();
        }
    };
    let seen = std::time::SystemTime::now();
    let current = info.history.iter().find(|a| a.attempt == task.attempt);
    let (Some(current), Some(start)) = (
        current,
        rendered::window_start_ms(&info.history, task.attempt),
    ) else {
        return Vec::new();
    };
    let since = rendered::local_time(start, current.started_ms, seen);
    tokio::task::spawn_blocking(move || rendered::done(&output, frames, format.as_deref(), since))
        .await
        .unwrap_or_default()
}

/// Runs `task` to its end.
pub async fn run(env: TaskEnv<'_>, task: &ClaimedTask) -> Outcome {
    let mut launch = match launch_for(env.config, task) {
        Ok(l) => l,
        Err(e) => return Outcome::Failed(e.report()),
    };
    let skipped = already_rendered(&env, task).await;
    let mut log = LogBuffer::default();
    if let (Some(frames), Some(b), false) = (task.frames, &env.config.blender, skipped.is_empty()) {
        let done: Vec<i64> = skipped.iter().map(|(f, _)| *f).collect();
        let ranges = rendered::missing_ranges(frames, &done);
        let todo: Vec<i64> = rendered::all(frames)
            .filter(|f| !done.contains(f))
            .collect();
        let roots = Roots::of(env.config);
        launch = match blender::argv_for_ranges(b, &roots, &task.params, Some(frames), Some(ranges))
        {
            Ok(l) => l,
            Err(e) => return Outcome::Failed(e.report()),
        };
        tracing::info!(task = %task.id, skipped = %rendered::describe(&done), "resuming: frames an earlier attempt rendered are kept");
        log.push(&format!(
            "edgefarm: frames {} are already rendered (complete files from an earlier attempt); rendering {}",
            rendered::describe(&done),
            if todo.is_empty() { "nothing".to_string() } else { rendered::describe(&todo) }
        ));
    }
    let mut tracker = Tracker::new(launch.frames_total);
    tracker.ffmpeg = task.kind == crate::core::model::JobType::Ffmpeg;
    for (_, path) in &skipped {
        tracker.saved.push(path.clone());
    }
    tracker.progress.done = (skipped.len() as u64).min(tracker.progress.total);
    let previews = Previews::new(
        env.client.clone(),
        &task.id,
        &task.lease,
        &env.config.output_root,
    );
    let mut run = Run {
        tracker,
        log,
        last_sent: Instant::now(),
        previews,
        env,
        task,
    };
    let started = Instant::now();
    let timeout = Some(task.task_timeout_s)
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
                if launch.progress_by_runs {
                    run.tracker.run_finished(1);
                }
            }
            Step::Exited(code) => {
                run.final_flush().await;
                // The first line is the summary the CLI and dashboard show: the program's own
                // error when it printed one.
                let cause = run
                    .log
                    .first_error()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Outcome::Failed(format!(
                    "exit code {code}{cause}; last log lines:\n{}",
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
    run.previews.finish().await;
    if run.tracker.ffmpeg {
        let roots = Roots::of(run.env.config);
        match ffmpeg::finish(&roots, &task.params) {
            Ok(video) => run.tracker.saved.push(video),
            Err(e) => return Outcome::Failed(e.report()),
        }
    }
    let output_root = &run.env.config.output_root;
    let mut outputs: Vec<String> = run
        .tracker
        .saved
        .iter()
        .filter_map(|p| paths::relative_to(output_root, p))
        .collect();
    outputs.sort();
    outputs.dedup();
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
    previews: Previews,
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
            Some(self.task.heartbeat_ms)
                .filter(|ms| *ms > 0)
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
                        let saved = self.tracker.saved.len();
                        if self.tracker.ffmpeg_line(&line) {
                            continue;
                        }
                        self.tracker.blender_line(&line);
                        if self.tracker.saved.len() > saved {
                            if let Some(path) = self.tracker.saved.last() {
                                self.previews.saved(path);
                            }
                        }
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
                    self.previews.tick();
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
            Some(HeartbeatReply::Stop { why }) => {
                child.kill_group();
                // The server says 409 both for a canceled job and for a lease taken over; the
                // task's state tells them apart (a canceled job's tasks are `canceled`).
                let canceled = match self.env.client.task(&self.task.id).await {
                    Ok(info) => info.state == TaskState::Canceled,
                    Err(_) => false,
                };
                if canceled {
                    tracing::info!(task = %self.task.id, "task canceled; its program was stopped");
                    Some(Step::Stop(Outcome::Canceled))
                } else {
                    tracing::warn!(task = %self.task.id, reason = %why, "lease lost; program stopped, no ack");
                    Some(Step::Stop(Outcome::LeaseLost))
                }
            }
            _ => None,
        }
    }

    async fn send_heartbeat(&mut self) -> Option<HeartbeatReply> {
        let chunk = self.log.take_chunk();
        let body = Heartbeat {
            lease: self.task.lease.clone(),
            progress: Some(self.tracker.progress),
            activity: self.tracker.activity.clone(),
            log: (!chunk.is_empty()).then(|| chunk.clone()),
        };
        self.last_sent = Instant::now();
        match self.env.client.heartbeat(&self.task.id, &body).await {
            Ok(reply) => {
                if let HeartbeatReply::Keep { node_state } = &reply {
                    self.env
                        .server_draining
                        .store(*node_state == NodeState::Draining, Ordering::Relaxed);
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
