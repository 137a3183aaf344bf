//! `--follow`: a live progress bar (frames done of total, rate, ETA, failed tasks) until the job
//! ends. It polls `GET /v1/jobs/{id}` twice a second rather than holding an event stream open, so
//! it works the same against every runtime, including those that cannot stream.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::api;
use crate::node::client::{enc, Client};

/// Follows job `id` to its end; exit 0 only if it completed.
pub async fn follow(client: &Client, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/jobs/{}", enc(id));
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {prefix} {per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut failures = 0u32;
    let job = loop {
        let job = match api::get(client, &path).await {
            Ok(job) => {
                failures = 0;
                job
            }
            // Ride out a short outage of the server; give up after about a minute.
            Err(e) if failures < 120 => {
                failures += 1;
                bar.set_message(format!("server unreachable: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (done, total, unit) = done_of(&job);
        bar.set_length(total);
        bar.set_position(done);
        bar.set_prefix(unit);
        let failed = job["counts"]["failed"].as_u64().unwrap_or(0);
        let state = api::s(&job, "state");
        let failed_note = if failed > 0 {
            format!(", {failed} failed tasks")
        } else {
            String::new()
        };
        bar.set_message(format!("{state}{failed_note}"));
        if matches!(state, "completed" | "failed" | "canceled") {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.finish();
    let state = api::s(&job, "state");
    if json {
        api::print_json(&job);
    } else {
        let (done, total, unit) = done_of(&job);
        println!("job {id} {state}: {done}/{total} {unit}");
    }
    Ok(if state == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Frames done of total, or tasks when the job has no frame range.
fn done_of(job: &Value) -> (u64, u64, &'static str) {
    let frames_total = job["frames_total"].as_u64().unwrap_or(0);
    if frames_total > 0 {
        (
            job["frames_done"].as_u64().unwrap_or(0),
            frames_total,
            "frames",
        )
    } else {
        (
            job["counts"]["completed"].as_u64().unwrap_or(0),
            job["counts"]["total"].as_u64().unwrap_or(0),
            "tasks",
        )
    }
}
