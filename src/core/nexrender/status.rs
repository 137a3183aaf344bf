//! The status projection (`GET /jobs/:uid/status`, `GET /jobs/status`): the light view of a job
//! that `@nexrender/api`'s `addJob` emitter polls, field for field as `@nexrender/types`'
//! `getRenderingStatus` builds it, from the job as `job::present` derives it.

use serde_json::{json, Value};

fn or_null(job: &Value, key: &str) -> Value {
    match job.get(key) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

/// `error` as the projection shows it: an array is joined with blank lines; absent is null.
fn error_text(job: &Value) -> Value {
    match job.get("error") {
        Some(Value::Array(parts)) if !parts.is_empty() => Value::String(
            parts
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
        Some(Value::Array(_)) => Value::Null,
        _ => or_null(job, "error"),
    }
}

/// Projects a presented job.
pub fn project(job: &Value) -> Value {
    let progress = match job.get("renderProgress") {
        Some(v @ Value::Number(_)) => v.clone(),
        _ => json!(0),
    };
    json!({
        "uid": job.get("uid").cloned().unwrap_or(Value::Null),
        "state": job.get("state").cloned().unwrap_or(Value::Null),
        "type": job.get("type").cloned().unwrap_or(Value::Null),
        "tags": or_null(job, "tags"),
        "renderProgress": progress,
        "error": error_text(job),
        "createdAt": or_null(job, "createdAt"),
        "updatedAt": or_null(job, "updatedAt"),
        "startedAt": or_null(job, "startedAt"),
        "finishedAt": or_null(job, "finishedAt"),
        "errorAt": or_null(job, "errorAt"),
        "jobCreator": job.get("creator").cloned().unwrap_or(Value::Null),
        "jobExecutor": or_null(job, "executor"),
        "timings": or_null(job, "timings"),
    })
}
