//! `/v1/jobs`: submit, read, list, steer and delete jobs. This file parses requests and shapes
//! answers; what each change does to a job is `core::lifecycle`.

use crate::core::access;
use crate::core::auth::Caller;
use crate::core::error::{Error, Result};
use crate::core::http::{body, body_or_default, json, query, query_u64};
use crate::core::job_list::{self, Cursor, Listed};
use crate::core::lifecycle::{self, Action, Submitted};
use crate::core::model::{JobRecord, Segment, SEGMENT_TASKS};
use crate::core::reach;
use crate::core::records::load;
use crate::core::rollup::{self, JobState, JobView};
use crate::core::scheduler::task_ref::load_job;
use crate::core::validate::{self, JobSubmit};
use crate::core::wake::JobEvent;
use crate::core::Ctx;
use crate::store::{keys, Store};
use crate::wire::jobs::{Deleted, JobList, JobPatch, Requeue};
use crate::wire::tasks::TaskList;
use crate::wire::tokens::SubmittedBy;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

fn with_job_headers(mut resp: Response<Bytes>, id: &str, retry_after_s: u64) -> Response<Bytes> {
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    resp
}

/// Fills in `waiting` on the views of unfinished jobs with queued tasks, reading the nodes once
/// (and not at all when no view needs them).
async fn explain<S: Store>(ctx: &Ctx<'_, S>, views: &mut [JobView]) -> Result<()> {
    let needs =
        |v: &JobView| matches!(v.state, JobState::Queued | JobState::Active) && v.counts.queued > 0;
    if !views.iter().any(needs) {
        return Ok(());
    }
    let nodes = reach::load_nodes(ctx).await?;
    for v in views.iter_mut().filter(|v| needs(v)) {
        // A job waiting frame by frame keeps saying so, after what its nodes lack.
        let own = v.waiting.take().filter(|_| v.spec.after_frames);
        let reach = reach::waiting(&v.spec, &nodes, ctx.config, ctx.now_ms);
        v.waiting = match (reach, own) {
            (Some(r), Some(o)) => Some(format!("{r}; {o}")),
            (r, o) => r.or(o),
        };
    }
    Ok(())
}

/// A job's view, with why it waits.
async fn explained_view<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<JobView> {
    let mut view = rollup::load_view(ctx.store, job).await?;
    explain(ctx, std::slice::from_mut(&mut view)).await?;
    Ok(view)
}

fn retry_after<S: Store>(ctx: &Ctx<'_, S>) -> u64 {
    ctx.config.poll_ms.div_ceil(1000).max(1)
}

/// `POST /v1/jobs`.
pub async fn submit<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let mut sub: JobSubmit = body(bytes)?;
    let inputs = sub.inputs.take();
    let stages = sub.stages.take().unwrap_or_default();
    let (mut spec, runs) = validate::job_spec(sub, || ctx.uuid_v7(), &ctx.config.limits)?;
    crate::core::webhooks::target::check_job(&spec.webhooks, &ctx.config.webhooks)?;
    access::allow_submit(caller, &spec)?;
    // Every stage is checked before anything is stored.
    let stages = validate::stages(&spec, &runs, stages, &ctx.config.limits)?;
    for (i, (stage, _)) in stages.iter().enumerate() {
        crate::core::webhooks::target::check_job(&stage.webhooks, &ctx.config.webhooks)
            .map_err(|e| validate::within(e, &format!("stages[{i}]")))?;
        access::allow_submit(caller, stage)?;
    }
    spec.stages = stages.iter().map(|(s, _)| s.id.clone()).collect();
    let by = caller.token().map(|t| SubmittedBy {
        token_id: t.id.clone(),
        name: t.name.clone(),
    });
    if let Some(entries) = inputs {
        spec.inputs = Some(crate::core::blobs::inputs::accept(ctx, &spec, entries).await?);
    }
    let (job, status) = match lifecycle::submit(ctx, spec, &runs, by.clone()).await? {
        Submitted::Created(job) => (job, StatusCode::ACCEPTED),
        Submitted::Existing(job) => (job, StatusCode::OK),
    };
    // Each stage is a job of its own, waiting for the one before (created in order, so each
    // names a job that exists). A re-submit after a cut-short request creates what is missing.
    for (stage, stage_runs) in stages {
        Box::pin(lifecycle::submit(ctx, stage, &stage_runs, by.clone())).await?;
    }
    let view = explained_view(ctx, &job).await?;
    Ok(with_job_headers(
        json(status, &view),
        &job.spec.id,
        retry_after(ctx),
    ))
}

/// `GET /v1/jobs/{id}`: 202 while unfinished, 200 once finished. With `Accept:
/// text/event-stream`, one `job` event (the native shell repeats it as the job changes).
pub async fn get<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    headers: &http::HeaderMap,
) -> Result<Response<Bytes>> {
    let mut job = load_job(ctx, id).await?.value;
    if !job.waiting_on.is_empty() {
        // Finishes a release a crash cut short (`lifecycle::depend`); nothing when the jobs
        // it waits for are still running.
        Box::pin(lifecycle::depend::check_waiting(ctx, id)).await?;
        job = load_job(ctx, id).await?.value;
    }
    let view = explained_view(ctx, &job).await?;
    if view.state.is_finished() {
        // Records its webhook event if a request cut short did not (`core::webhooks`).
        crate::core::webhooks::emit(ctx, &job, &view).await?;
    }
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_events {
        let data = serde_json::to_string(&view).unwrap_or_default();
        let event = format!("id: {}\nevent: job\ndata: {data}\n\n", view.updated_ms);
        let mut resp = crate::core::http::text(StatusCode::OK, event, "text/event-stream");
        resp.extensions_mut().insert(JobEvent {
            id: view.updated_ms.to_string(),
            finished: view.state.is_finished(),
        });
        return Ok(resp);
    }
    let status = if view.state.is_finished() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut resp = json(status, &view);
    if !view.state.is_finished() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after(ctx)));
    }
    Ok(resp)
}

/// `GET /v1/jobs?state=&queue=&tag=&type=&limit=&cursor=`, newest first.
pub async fn list<S: Store>(ctx: &Ctx<'_, S>, q: Option<&str>) -> Result<Response<Bytes>> {
    let q = query(q);
    let limit = query_u64(&q, "limit", 50, 500)?.max(1) as usize;
    let cursor = q
        .get("cursor")
        .filter(|c| !c.is_empty())
        .map(|c| Cursor::decode(c))
        .transpose()?;
    let state = q.get("state").map(String::as_str);
    if let Some(s) = state {
        // Every state a job can show (the wire type's own list: `waiting` was once missing
        // here, so the dashboard's and the CLI's "waiting" filter got a 400).
        let all = crate::wire::jobs::JobState::ALL.map(|st| st.as_str());
        if !all.contains(&s) {
            return Err(Error::field(
                "state",
                format!("state must be one of {}", all.join(", ")),
            ));
        }
    }
    let mut jobs: Vec<JobView> = Vec::new();
    let next = job_list::walk(ctx, cursor, 4 * limit + 1000, async |entry: &Listed| {
        let Some(rec) = load::<JobRecord, _>(ctx.store, &keys::job(&entry.id)).await? else {
            return Ok(true);
        };
        let job = rec.value;
        let spec = &job.spec;
        let keep = job.gen == entry.gen
            && q.get("queue").is_none_or(|v| *v == spec.queue)
            && q.get("tag").is_none_or(|v| spec.tags.contains(v))
            && q.get("type").is_none_or(|v| v == spec.kind.as_str());
        if keep {
            let view = rollup::load_view(ctx.store, &job).await?;
            if state.is_none_or(|s| s == view.state.as_str()) {
                jobs.push(view);
            }
        }
        Ok(jobs.len() < limit)
    })
    .await?;
    explain(ctx, &mut jobs).await?;
    let page = JobList {
        jobs,
        next_cursor: next.map(|c| c.encode()),
    };
    Ok(json(StatusCode::OK, &page))
}

/// `GET /v1/jobs/{id}/tasks?limit=&cursor=` (cursor = next task index).
pub async fn tasks<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    q: Option<&str>,
) -> Result<Response<Bytes>> {
    let q = query(q);
    let job = load_job(ctx, id).await?.value;
    let limit = query_u64(&q, "limit", 100, 1000)?.max(1) as u32;
    let from = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => c
            .parse::<u32>()
            .map_err(|_| Error::field("cursor", "cursor is not one this server gave out"))?,
        None => 0,
    };
    let mut out = Vec::new();
    let mut k = from / SEGMENT_TASKS;
    while out.len() < limit as usize && k < job.segments() {
        if let Some(seg) = load::<Segment, _>(ctx.store, &keys::segment(id, &job.gen, k)).await? {
            for t in seg.value.tasks.iter().filter(|t| t.index >= from) {
                if out.len() < limit as usize {
                    out.push(super::tasks::view(&job, t));
                }
            }
        }
        k += 1;
    }
    let next = from + out.len() as u32;
    let next_cursor = (next < job.tasks).then(|| next.to_string());
    let page = TaskList {
        tasks: out,
        next_cursor,
    };
    Ok(json(StatusCode::OK, &page))
}

/// `POST /v1/jobs/{id}/cancel|pause|resume|requeue` (the rules: `lifecycle::act`).
pub async fn action<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    action: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let job = load_job(ctx, id).await?.value;
    let action = match action {
        "cancel" => Action::Cancel,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "requeue" => {
            let opts: Requeue = body_or_default(bytes)?;
            Action::Requeue { all: opts.all }
        }
        other => {
            return Err(Error::NotFound(format!(
                "action {other:?} (use cancel, pause, resume or requeue)"
            )))
        }
    };
    let job = lifecycle::act(ctx, &job, action).await?;
    let view = explained_view(ctx, &job).await?;
    Ok(json(StatusCode::OK, &view))
}

/// `PATCH /v1/jobs/{id}` `{priority, tags}` (what it does to the index: `lifecycle::steer`).
pub async fn patch<S: Store>(
    ctx: &Ctx<'_, S>,
    caller: &Caller,
    id: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let p: JobPatch = body(bytes)?;
    let priority = p.priority.map(validate::priority).transpose()?;
    if let Some(p) = priority {
        access::allow_priority(caller, p)?;
    }
    let tags = p
        .tags
        .map(|t| validate::tags("tags", t, &ctx.config.limits))
        .transpose()?;
    let job = lifecycle::steer(ctx, id, priority, tags).await?;
    let view = explained_view(ctx, &job).await?;
    Ok(json(StatusCode::OK, &view))
}

/// `DELETE /v1/jobs/{id}` (the order of the deletes: `lifecycle::delete`).
pub async fn delete<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Response<Bytes>> {
    lifecycle::delete(ctx, id).await?;
    let deleted = Deleted {
        id: id.to_string(),
        deleted: true,
    };
    Ok(json(StatusCode::OK, &deleted))
}
