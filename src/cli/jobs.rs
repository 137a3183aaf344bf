//! `edgefarm jobs`, `edgefarm job ID`, and the job actions (cancel, pause, resume, requeue).

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::api;
use super::settings::ClientArgs;
use crate::core::model::TaskState;
use crate::node::client::enc;
use crate::wire::jobs::{Job, JobList};
use crate::wire::nodes::NodeList;
use crate::wire::tasks::{Task, TaskList};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this state (waiting, queued, active, completed, failed, canceled, paused).
    #[arg(long)]
    state: Option<String>,
    /// Only jobs of this queue [default: every queue].
    #[arg(long)]
    queue: Option<String>,
    /// Most jobs to list, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Job id.
    id: String,
    /// Log lines to show per failed task.
    #[arg(long, default_value_t = 20)]
    log_lines: usize,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Task id (as `edgefarm job ID` lists them).
    task: String,
    /// Which attempt's log [default: the latest].
    #[arg(long)]
    attempt: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Job id.
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `edgefarm jobs`.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let mut query = format!("/v1/jobs?limit={}", args.limit);
    for (k, v) in [("state", &args.state), ("queue", &args.queue)] {
        if let Some(v) = v {
            query.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    let page: JobList = api::get(&client, &query).await?;
    if args.client.json {
        api::print_json(&page);
        return Ok(());
    }
    println!(
        "{:<38} {:<9} {:<10} {:>4} {:>12}  {:<16}  NAME",
        "ID", "TYPE", "STATE", "PRIO", "PROGRESS", "BY"
    );
    for job in &page.jobs {
        println!(
            "{:<38} {:<9} {:<10} {:>4} {:>12}  {:<16}  {}",
            job.spec.id,
            job.spec.kind.as_str(),
            state_of(job),
            job.spec.priority,
            progress_of(job),
            by_of(job),
            job.spec.name
        );
    }
    Ok(())
}

/// Who submitted a job: its personal token's name, or `farm secret`.
fn by_of(job: &Job) -> String {
    job.submitted_by
        .as_ref()
        .map_or_else(|| "farm secret".to_string(), |b| b.name.clone())
}

/// `edgefarm job ID`.
pub async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let id = enc(&args.id);
    let job: Job = api::get(&client, &format!("/v1/jobs/{id}")).await?;
    let tasks = all_tasks(&client, &id).await?;
    let mut logs = Vec::new();
    for task in tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed || t.failures > 0)
    {
        let log = api::get_text(&client, &format!("/v1/tasks/{}/log", enc(&task.id))).await;
        let log = log.unwrap_or_else(|e| format!("(log unavailable: {e})"));
        logs.push((task.id.clone(), tail(&log, args.log_lines)));
    }
    if args.client.json {
        let logs: serde_json::Map<String, Value> = logs
            .iter()
            .map(|(id, log)| (id.clone(), json!(log)))
            .collect();
        api::print_json(&json!({"job": job, "tasks": tasks, "logs": logs}));
        return Ok(ExitCode::SUCCESS);
    }
    let names = node_names(&client).await;
    let node_name = |id: &str| -> String {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.chars().take(8).collect())
    };
    let spec = &job.spec;
    println!(
        "job {}  {}  type {}  queue {}  priority {}",
        spec.id,
        spec.name,
        spec.kind.as_str(),
        spec.queue,
        spec.priority
    );
    println!(
        "state {}  progress {}  tasks {}",
        state_of(&job),
        progress_of(&job),
        counts_of(&job)
    );
    println!("{}", times_of(&job));
    println!("submitted by {}", by_of(&job));
    if !spec.after_jobs.is_empty() {
        let how = if spec.after_frames {
            " (frame by frame)"
        } else {
            ""
        };
        println!("after {}{how}", spec.after_jobs.join(", "));
    }
    if !spec.stages.is_empty() {
        println!("then {}", spec.stages.join(", "));
    }
    if !spec.webhooks.is_empty() {
        let urls: Vec<&str> = spec.webhooks.iter().map(|h| h.url.as_str()).collect();
        println!("webhooks {}", urls.join(", "));
    }
    for (key, text) in [("waiting", &job.waiting), ("error", &job.error)] {
        if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
            println!("{key}: {text}");
        }
    }
    println!();
    println!(
        "{:<44} {:<10} {:>9} {:>8} {:>8} {:<20} OUTPUT / ERROR",
        "TASK", "STATE", "FRAMES", "ATTEMPTS", "TIME", "NODES"
    );
    for t in &tasks {
        let frames = match t.frames {
            Some(f) if f.from == f.to => f.from.to_string(),
            Some(f) => format!("{}-{}", f.from, f.to),
            None => "-".to_string(),
        };
        let mut nodes: Vec<String> = Vec::new();
        for h in &t.history {
            let name = node_name(&h.node);
            if !nodes.contains(&name) {
                nodes.push(name);
            }
        }
        let error = t.error.as_deref().and_then(|e| e.lines().next());
        println!(
            "{:<44} {:<10} {:>9} {:>8} {:>8} {:<20} {}",
            t.id,
            task_state(t.state),
            frames,
            t.attempts,
            task_time(t),
            nodes.join(","),
            error.map_or_else(|| outputs_of(t), str::to_string)
        );
    }
    for (task, log) in &logs {
        println!("\n--- log tail of {task} ---\n{log}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `edgefarm log TASK`.
pub async fn log(args: LogArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let mut path = format!("/v1/tasks/{}/log", enc(&args.task));
    if let Some(a) = args.attempt {
        path.push_str(&format!("?attempt={a}"));
    }
    let text = api::get_text(&client, &path).await?;
    if args.client.json {
        api::print_json(&json!({"task": args.task, "attempt": args.attempt, "log": text}));
    } else {
        print!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Node id → name, for the NODES column (ids when the list cannot be read).
async fn node_names(
    client: &crate::node::client::Client,
) -> std::collections::HashMap<String, String> {
    let Ok(page) = api::get::<NodeList>(client, "/v1/nodes").await else {
        return Default::default();
    };
    page.nodes
        .into_iter()
        .filter(|n| !n.name.is_empty())
        .map(|n| (n.id, n.name))
        .collect()
}

/// "8: 5 completed, 2 leased, 1 queued".
fn counts_of(job: &Job) -> String {
    let c = &job.counts;
    let order = [
        ("completed", c.completed),
        ("leased", c.leased),
        ("queued", c.queued),
        ("failed", c.failed),
        ("canceled", c.canceled),
    ];
    let parts: Vec<String> = order
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    if parts.is_empty() {
        format!("{}", c.total)
    } else {
        format!("{}: {}", c.total, parts.join(", "))
    }
}

/// "submitted 3m 05s ago, took 2m 40s".
fn times_of(job: &Job) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let created = job.created_ms;
    let ago = |ms: u64| {
        super::follow::duration(std::time::Duration::from_millis(now_ms.saturating_sub(ms)))
    };
    match job.finished_ms {
        Some(end) => format!(
            "submitted {} ago, took {}",
            ago(created),
            super::follow::duration(std::time::Duration::from_millis(
                end.saturating_sub(created)
            ))
        ),
        None => format!("submitted {} ago, not finished", ago(created)),
    }
}

/// The task's name in the API (`queued`, `leased`, ...).
fn task_state(state: TaskState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How long the task ran: the node's `duration_ms` in its result, else its last attempt.
fn task_time(t: &Task) -> String {
    let reported = t
        .result
        .as_ref()
        .and_then(|r| r.get("duration_ms"))
        .and_then(Value::as_u64);
    let ms = reported.or_else(|| {
        let last = t.history.last()?;
        Some(last.ended_ms?.saturating_sub(last.started_ms))
    });
    ms.map_or_else(
        || "-".to_string(),
        |ms| super::follow::duration(std::time::Duration::from_millis(ms)),
    )
}

/// The output files the node reported (`outputs` in its result), shortened.
fn outputs_of(t: &Task) -> String {
    let outputs: Vec<&str> = t
        .result
        .as_ref()
        .and_then(|r| r.get("outputs"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match outputs.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, .., last] => {
            let last_name = std::path::Path::new(last)
                .file_name()
                .map_or(last.to_string(), |n| n.to_string_lossy().into_owned());
            format!("{first} … {last_name} ({} files)", outputs.len())
        }
    }
}

/// `edgefarm cancel|pause|resume|requeue ID`.
pub async fn action(args: ActionArgs, verb: &str) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let job: Job = api::post(
        &client,
        &format!("/v1/jobs/{}/{verb}", enc(&args.id)),
        &json!({}),
    )
    .await?;
    if args.client.json {
        api::print_json(&job);
    } else {
        println!("job {} is now {}", job.spec.id, state_of(&job));
        if verb == "requeue" {
            let waiting = waiting_for(&client, &job.spec.id).await;
            if !waiting.is_empty() {
                println!("jobs waiting for it: {}", waiting.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs that wait for job `id`, directly or down the chain (a requeue makes those that used
/// its frames wait again), from the newest 500 waiting and 500 active jobs. A hint only: a
/// failed look shows nothing.
async fn waiting_for(client: &crate::node::client::Client, id: &str) -> Vec<String> {
    let mut pool: Vec<Job> = Vec::new();
    for state in ["waiting", "active"] {
        let path = format!("/v1/jobs?state={state}&limit=500");
        if let Ok(page) = api::get::<JobList>(client, &path).await {
            pool.extend(page.jobs);
        }
    }
    let waits = |j: &Job| {
        j.waiting
            .as_deref()
            .is_some_and(|w| w.contains("waits for job"))
    };
    let mut found: Vec<String> = Vec::new();
    let mut upstream = vec![id.to_string()];
    while let Some(up) = upstream.pop() {
        for j in pool.iter().filter(|j| waits(j)) {
            if j.spec.after_jobs.contains(&up) && !found.contains(&j.spec.id) {
                found.push(j.spec.id.clone());
                upstream.push(j.spec.id.clone());
            }
        }
    }
    found
}

/// Every task of a job, page by page (bounded at 100,000).
async fn all_tasks(client: &crate::node::client::Client, id: &str) -> anyhow::Result<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/jobs/{id}/tasks?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let page: TaskList = api::get(client, &path).await?;
        tasks.extend(page.tasks);
        match page.next_cursor {
            Some(c) if !c.is_empty() && tasks.len() < 100_000 => cursor = Some(c),
            _ => return Ok(tasks),
        }
    }
}

/// "active (paused)".
fn state_of(job: &Job) -> String {
    format!(
        "{}{}",
        job.state.as_str(),
        if job.paused { " (paused)" } else { "" }
    )
}

/// "12/40 fr" or "3/8 tasks".
fn progress_of(job: &Job) -> String {
    if job.frames_total > 0 {
        format!("{}/{} fr", job.frames_done, job.frames_total)
    } else {
        format!("{}/{} tasks", job.counts.completed, job.counts.total)
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
