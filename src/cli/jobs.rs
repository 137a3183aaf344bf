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
    #[arg(long)]
    queue: Option<String>,
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
        job["counts"]
    );
    println!();
    println!(
        "{:<44} {:<10} {:>9} {:>8} {:<24} ERROR",
        "TASK", "STATE", "FRAMES", "ATTEMPTS", "NODES"
    );
    for t in &tasks {
        let frames = match t.get("frames") {
            Some(f) if f.is_object() => format!("{}-{}", n(f, "from"), n(f, "to")),
            _ => "-".to_string(),
        };
        let nodes: Vec<&str> = t["history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| s(h, "node"))
            .collect();
        let error = t
            .get("error")
            .and_then(Value::as_str)
            .and_then(|e| e.lines().next())
            .unwrap_or("");
        println!(
            "{:<44} {:<10} {:>9} {:>8} {:<24} {}",
            s(t, "id"),
            s(t, "state"),
            frames,
            n(t, "attempts"),
            nodes.join(","),
            error
        );
    }
    for (task, log) in &logs {
        println!("\n--- log tail of {task} ---\n{log}");
    }
    Ok(ExitCode::SUCCESS)
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
