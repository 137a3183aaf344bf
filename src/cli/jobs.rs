//! `edgefarm jobs`, `edgefarm job ID`, and the job actions (cancel, pause, resume, requeue).

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::api::{self, n, s};
use super::settings::ClientArgs;
use crate::node::client::enc;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this state (queued, active, completed, failed, canceled, paused).
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
    let page = api::get(&client, &query).await?;
    if args.client.json {
        api::print_json(&page);
        return Ok(());
    }
    println!(
        "{:<38} {:<9} {:<10} {:>4} {:>12}  NAME",
        "ID", "TYPE", "STATE", "PRIO", "PROGRESS"
    );
    for job in page["jobs"].as_array().into_iter().flatten() {
        println!(
            "{:<38} {:<9} {:<10} {:>4} {:>12}  {}",
            s(job, "id"),
            s(job, "type"),
            state_of(job),
            n(job, "priority"),
            progress_of(job),
            s(job, "name")
        );
    }
    Ok(())
}

/// `edgefarm job ID`.
pub async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let id = enc(&args.id);
    let job = api::get(&client, &format!("/v1/jobs/{id}")).await?;
    let tasks = all_tasks(&client, &id).await?;
    let mut logs = Vec::new();
    for task in tasks
        .iter()
        .filter(|t| s(t, "state") == "failed" || n(t, "failures") > 0)
    {
        let log = api::get_text(&client, &format!("/v1/tasks/{}/log", enc(s(task, "id")))).await;
        let log = log.unwrap_or_else(|e| format!("(log unavailable: {e})"));
        logs.push((s(task, "id").to_string(), tail(&log, args.log_lines)));
    }
    if args.client.json {
        let logs: Value = logs
            .iter()
            .map(|(id, log)| (id.clone(), json!(log)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        api::print_json(&json!({"job": job, "tasks": tasks, "logs": logs}));
        return Ok(ExitCode::SUCCESS);
    }
    // Node names instead of ids; an id the server no longer knows shows as its first 8 chars.
    let names = node_names(&client).await;
    let node_name = |id: &str| -> String {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.chars().take(8).collect())
    };
    println!(
        "job {}  {}  type {}  queue {}  priority {}",
        s(&job, "id"),
        s(&job, "name"),
        s(&job, "type"),
        s(&job, "queue"),
        n(&job, "priority")
    );
    println!(
        "state {}  progress {}  tasks {}",
        state_of(&job),
        progress_of(&job),
        counts_of(&job)
    );
    println!("{}", times_of(&job));
    for key in ["waiting", "error"] {
        if let Some(text) = job
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            println!("{key}: {text}");
        }
    }
    println!();
    println!(
        "{:<44} {:<10} {:>9} {:>8} {:>8} {:<20} OUTPUT / ERROR",
        "TASK", "STATE", "FRAMES", "ATTEMPTS", "TIME", "NODES"
    );
    for t in &tasks {
        let frames = match t.get("frames") {
            Some(f) if f.is_object() && n(f, "from") == n(f, "to") => n(f, "from").to_string(),
            Some(f) if f.is_object() => format!("{}-{}", n(f, "from"), n(f, "to")),
            _ => "-".to_string(),
        };
        let mut nodes: Vec<String> = Vec::new();
        for h in t["history"].as_array().into_iter().flatten() {
            let name = node_name(s(h, "node"));
            if !nodes.contains(&name) {
                nodes.push(name);
            }
        }
        let error = t
            .get("error")
            .and_then(Value::as_str)
            .and_then(|e| e.lines().next());
        println!(
            "{:<44} {:<10} {:>9} {:>8} {:>8} {:<20} {}",
            s(t, "id"),
            s(t, "state"),
            frames,
            n(t, "attempts"),
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

/// `edgefarm log TASK`: the whole log of a task's attempt.
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

/// Node id → name, from `GET /v1/nodes` (empty if it cannot be read: ids are shown then).
async fn node_names(
    client: &crate::node::client::Client,
) -> std::collections::HashMap<String, String> {
    let Ok(page) = api::get(client, "/v1/nodes").await else {
        return Default::default();
    };
    page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| !s(n, "name").is_empty())
        .map(|n| (s(n, "id").to_string(), s(n, "name").to_string()))
        .collect()
}

/// `3 completed, 1 leased, 2 queued` (states with no task left out).
fn counts_of(job: &Value) -> String {
    let order = ["completed", "leased", "queued", "failed", "canceled"];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|k| {
            let c = job["counts"][k].as_u64().unwrap_or(0);
            (c > 0).then(|| format!("{c} {k}"))
        })
        .collect();
    let total = job["counts"]["total"].as_u64().unwrap_or(0);
    if parts.is_empty() {
        format!("{total}")
    } else {
        format!("{total}: {}", parts.join(", "))
    }
}

/// `submitted 3m 05s ago, took 2m 40s` or `submitted 40s ago, running for 40s`.
fn times_of(job: &Value) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let created = job["created_ms"].as_u64().unwrap_or(now_ms);
    let ago = |ms: u64| {
        super::follow::duration(std::time::Duration::from_millis(now_ms.saturating_sub(ms)))
    };
    match job["finished_ms"].as_u64() {
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

/// The run time of a task's last attempt: from its result, else its history.
fn task_time(t: &Value) -> String {
    let ms = t["result"]["duration_ms"].as_u64().or_else(|| {
        let last = t["history"].as_array()?.last()?;
        Some(
            last["ended_ms"]
                .as_u64()?
                .saturating_sub(last["started_ms"].as_u64()?),
        )
    });
    ms.map_or_else(
        || "-".to_string(),
        |ms| super::follow::duration(std::time::Duration::from_millis(ms)),
    )
}

/// `shot/frame_0001.png` or `shot/frame_0001.png … frame_0003.png (3 files)`.
fn outputs_of(t: &Value) -> String {
    let outputs: Vec<&str> = t["result"]["outputs"]
        .as_array()
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
    let job = api::post(
        &client,
        &format!("/v1/jobs/{}/{verb}", enc(&args.id)),
        &json!({}),
    )
    .await?;
    if args.client.json {
        api::print_json(&job);
    } else {
        println!("job {} is now {}", s(&job, "id"), state_of(&job));
    }
    Ok(ExitCode::SUCCESS)
}

async fn all_tasks(client: &crate::node::client::Client, id: &str) -> anyhow::Result<Vec<Value>> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/jobs/{id}/tasks?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let page = api::get(client, &path).await?;
        tasks.extend(page["tasks"].as_array().into_iter().flatten().cloned());
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(c) if !c.is_empty() && tasks.len() < 100_000 => cursor = Some(c.to_string()),
            _ => return Ok(tasks),
        }
    }
}

fn state_of(job: &Value) -> String {
    let paused = job.get("paused").and_then(Value::as_bool).unwrap_or(false);
    format!(
        "{}{}",
        s(job, "state"),
        if paused { " (paused)" } else { "" }
    )
}

fn progress_of(job: &Value) -> String {
    let total = n(job, "frames_total");
    if total > 0 {
        format!("{}/{} fr", n(job, "frames_done"), total)
    } else {
        format!(
            "{}/{} tasks",
            job["counts"]["completed"].as_i64().unwrap_or(0),
            job["counts"]["total"].as_i64().unwrap_or(0)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
