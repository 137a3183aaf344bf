//! `/v1/jobs`: submit, read, list, steer and delete jobs.

use crate::core::auth::sha256_hex;
use crate::core::error::{Error, Result};
use crate::core::frames;
use crate::core::http::{body, body_or_default, json, query, query_u64};
use crate::core::job_list::{self, Cursor, Listed};
use crate::core::model::{JobRecord, Segment, Task, TaskState, SEGMENT_TASKS};
use crate::core::reach;
use crate::core::records::{load, save, CAS_RETRIES};
use crate::core::rollup::{self, JobState, JobView};
use crate::core::scheduler::ack::cancel_remaining;
use crate::core::scheduler::index::{self, Entry};
use crate::core::scheduler::task_ref::load_job;
use crate::core::validate::{self, JobSubmit};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;

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
        v.waiting = reach::waiting(&v.spec, &nodes, ctx.config, ctx.now_ms);
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

/// Appends index entries for every segment of `job` that still has queued or leased tasks
/// (`all`: every segment, for a fresh job).
pub async fn index_segments<S: Store>(
    ctx: &Ctx<'_, S>,
    job: &JobRecord,
    live: Option<&[u32]>,
) -> Result<()> {
    let segs: Vec<u32> = match live {
        Some(l) => l.to_vec(),
        None => (0..job.segments()).collect(),
    };
    let entries: Vec<Entry> = segs
        .into_iter()
        .map(|seg| Entry {
            job: job.spec.id.clone(),
            gen: job.gen.clone(),
            seg,
            t: ctx.now_ms,
            n: ctx.ids.random() as u64,
        })
        .collect();
    for part in index::parts_of(&job.spec) {
        let entries = entries.clone();
        index::append(ctx, &job.spec.queue, &part, job.spec.priority, entries).await?;
    }
    Ok(())
}

/// Writes a new job: list entry, segments and index entries first, the job record last (the
/// commit point). Returns the record, or the existing one when the id was taken meanwhile.
pub async fn create<S: Store>(
    ctx: &Ctx<'_, S>,
    mut job: JobRecord,
    tasks: Vec<Task>,
) -> Result<std::result::Result<JobRecord, JobRecord>> {
    let id = job.spec.id.clone();
    job.list_page = job_list::append(
        ctx,
        Listed {
            id: id.clone(),
            gen: job.gen.clone(),
        },
    )
    .await?;
    for (k, chunk) in tasks.chunks(SEGMENT_TASKS as usize).enumerate() {
        let seg = Segment {
            tasks: chunk.to_vec(),
        };
        save(
            ctx.store,
            &keys::segment(&id, &job.gen, k as u32),
            &seg,
            Cond::Any,
        )
        .await?;
    }
    index_segments(ctx, &job, None).await?;
    if save(ctx.store, &keys::job(&id), &job, Cond::Absent)
        .await?
        .is_some()
    {
        return Ok(Ok(job));
    }
    // Another submit of the same id won the race; our writes are orphans the readers skip.
    let existing = load_job(ctx, &id).await?.value;
    Ok(Err(existing))
}

/// `POST /v1/jobs`.
pub async fn submit<S: Store>(ctx: &Ctx<'_, S>, bytes: &[u8]) -> Result<Response<Bytes>> {
    let mut sub: JobSubmit = body(bytes)?;
    let inputs = sub.inputs.take();
    let (mut spec, runs) = validate::job_spec(sub, || ctx.uuid_v7(), &ctx.config.limits)?;
    if let Some(entries) = inputs {
        spec.inputs = Some(crate::core::blobs::inputs::accept(ctx, &spec, entries).await?);
    }
    let digest = sha256_hex(&serde_json::to_string(&spec).unwrap_or_default());
    let same_or_conflict = |existing: JobRecord| -> Result<(JobRecord, StatusCode)> {
        if existing.digest == digest {
            Ok((existing, StatusCode::OK))
        } else {
            Err(Error::Conflict(format!(
                "job {} already exists with another spec",
                existing.spec.id
            )))
        }
    };
    let (job, status) =
        if let Some(existing) = load::<JobRecord, _>(ctx.store, &keys::job(&spec.id)).await? {
            same_or_conflict(existing.value)?
        } else {
            let chunks = frames::chunks(&runs, spec.chunk_size);
            let tasks: Vec<Task> = if chunks.is_empty() {
                vec![Task::new(0, None, ctx.now_ms)]
            } else {
                chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| Task::new(i as u32, Some(f), ctx.now_ms))
                    .collect()
            };
            let record = JobRecord {
                frames_total: frames::count(&runs),
                tasks: tasks.len() as u32,
                gen: ctx.token()[..16].to_string(),
                digest: digest.clone(),
                spec,
                canceled: false,
                failed: false,
                paused: false,
                created_ms: ctx.now_ms,
                updated_ms: ctx.now_ms,
                ended_ms: None,
                list_page: 0,
                nexrender: None,
            };
            match create(ctx, record, tasks).await? {
                Ok(job) => (job, StatusCode::ACCEPTED),
                Err(existing) => same_or_conflict(existing)?,
            }
        };
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
    let job = load_job(ctx, id).await?.value;
    let view = explained_view(ctx, &job).await?;
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_events {
        let data = serde_json::to_string(&view).unwrap_or_default();
        let event = format!("id: {}\nevent: job\ndata: {data}\n\n", view.updated_ms);
        return Ok(crate::core::http::text(
            StatusCode::OK,
            event,
            "text/event-stream",
        ));
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

/// Whether a `job` event (as [`get`] writes it) shows a finished job: the stream ends there.
pub fn event_is_final(event: &[u8]) -> bool {
    let text = String::from_utf8_lossy(event);
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or("");
    let state = serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["state"].as_str().map(String::from));
    matches!(state.as_deref(), Some("completed" | "failed" | "canceled"))
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
        const STATES: [&str; 6] = [
            "queued",
            "active",
            "paused",
            "completed",
            "failed",
            "canceled",
        ];
        if !STATES.contains(&s) {
            return Err(Error::field(
                "state",
                format!("state must be one of {}", STATES.join(", ")),
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
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"jobs": jobs, "next_cursor": next.map(|c| c.encode())}),
    ))
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
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"tasks": out, "next_cursor": next_cursor}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequeueBody {
    /// Re-render completed tasks too.
    all: Option<bool>,
}

/// Read-modify-CAS of a job record.
async fn update_job<S, F>(ctx: &Ctx<'_, S>, id: &str, mut change: F) -> Result<JobRecord>
where
    S: Store,
    F: FnMut(&mut JobRecord) -> Result<()>,
{
    for _ in 0..CAS_RETRIES {
        let rec = load_job(ctx, id).await?;
        let mut job = rec.value;
        change(&mut job)?;
        job.updated_ms = ctx.now_ms;
        if save(ctx.store, &keys::job(id), &job, Cond::Version(rec.version))
            .await?
            .is_some()
        {
            return Ok(job);
        }
    }
    Err(Error::Conflict(format!(
        "job {id} is changing too often; try again"
    )))
}

/// Segments that still have queued or leased tasks.
async fn live_segments<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<Vec<u32>> {
    let segs = rollup::segments(ctx.store, job).await?;
    Ok((0..job.segments())
        .zip(segs.iter())
        .filter(|(_, s)| {
            s.value
                .tasks
                .iter()
                .any(|t| matches!(t.state, TaskState::Queued | TaskState::Leased))
        })
        .map(|(k, _)| k)
        .collect())
}

/// `POST /v1/jobs/{id}/cancel|pause|resume|requeue`.
pub async fn action<S: Store>(
    ctx: &Ctx<'_, S>,
    id: &str,
    action: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let job = load_job(ctx, id).await?.value;
    let state = rollup::load_view(ctx.store, &job).await?.state;
    let finished = |verb: &str| {
        Error::Conflict(format!(
            "job {id} is already {} and cannot be {verb}",
            state.as_str()
        ))
    };
    let job = match action {
        "cancel" => {
            if state.is_finished() {
                return Err(finished("canceled"));
            }
            let job = update_job(ctx, id, |j| {
                j.canceled = true;
                j.ended_ms = Some(ctx.now_ms);
                Ok(())
            })
            .await?;
            cancel_remaining(ctx, &job, "the job was canceled").await?;
            job
        }
        "pause" => {
            if state.is_finished() {
                return Err(finished("paused"));
            }
            update_job(ctx, id, |j| {
                j.paused = true;
                Ok(())
            })
            .await?
        }
        "resume" => {
            if state.is_finished() {
                return Err(finished("resumed"));
            }
            let job = update_job(ctx, id, |j| {
                j.paused = false;
                Ok(())
            })
            .await?;
            index_segments(ctx, &job, Some(&live_segments(ctx, &job).await?)).await?;
            job
        }
        "requeue" => {
            let opts: RequeueBody = body_or_default(bytes)?;
            requeue(ctx, id, opts.all.unwrap_or(state == JobState::Completed)).await?
        }
        other => {
            return Err(Error::NotFound(format!(
                "action {other:?} (use cancel, pause, resume or requeue)"
            )))
        }
    };
    let view = explained_view(ctx, &job).await?;
    Ok(json(StatusCode::OK, &view))
}

async fn requeue<S: Store>(ctx: &Ctx<'_, S>, id: &str, all: bool) -> Result<JobRecord> {
    let job = update_job(ctx, id, |j| {
        j.canceled = false;
        j.failed = false;
        j.paused = false;
        j.ended_ms = None;
        Ok(())
    })
    .await?;
    for k in 0..job.segments() {
        let key = keys::segment(id, &job.gen, k);
        for _ in 0..CAS_RETRIES {
            let Some(mut seg) = load::<Segment, _>(ctx.store, &key).await? else {
                break;
            };
            for t in seg.value.tasks.iter_mut() {
                let again = match t.state {
                    TaskState::Failed | TaskState::Canceled => true,
                    TaskState::Completed => all,
                    TaskState::Queued | TaskState::Leased => false,
                };
                if t.state == TaskState::Queued {
                    // A task still waiting gets a fresh start too: the nodes that failed it may
                    // take it again (the user fixed the file, or the node), else it never runs.
                    t.failures = 0;
                    t.failed_nodes.clear();
                    t.updated_ms = ctx.now_ms;
                }
                if again {
                    // `attempts` keeps counting so attempt-scoped keys are never reused.
                    t.state = TaskState::Queued;
                    t.failures = 0;
                    t.failed_nodes.clear();
                    t.lease = None;
                    t.lapsed = None;
                    t.progress = None;
                    t.result = None;
                    t.error = None;
                    t.updated_ms = ctx.now_ms;
                }
            }
            if save(ctx.store, &key, &seg.value, Cond::Version(seg.version))
                .await?
                .is_some()
            {
                break;
            }
        }
    }
    index_segments(ctx, &job, Some(&live_segments(ctx, &job).await?)).await?;
    Ok(job)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    priority: Option<i64>,
    tags: Option<Vec<String>>,
}

/// `PATCH /v1/jobs/{id}` `{priority, tags}`: new index entries under the new priority or tag
/// set; the old ones are dropped by the claims that meet them.
pub async fn patch<S: Store>(ctx: &Ctx<'_, S>, id: &str, bytes: &[u8]) -> Result<Response<Bytes>> {
    let p: Patch = body(bytes)?;
    let priority = p.priority.map(validate::priority).transpose()?;
    let tags = p
        .tags
        .map(|t| validate::tags("tags", t, &ctx.config.limits))
        .transpose()?;
    let job = update_job(ctx, id, |j| {
        if let Some(pr) = priority {
            j.spec.priority = pr;
        }
        if let Some(t) = &tags {
            j.spec.tags.clone_from(t);
        }
        Ok(())
    })
    .await?;
    index_segments(ctx, &job, Some(&live_segments(ctx, &job).await?)).await?;
    let view = explained_view(ctx, &job).await?;
    Ok(json(StatusCode::OK, &view))
}

/// `DELETE /v1/jobs/{id}`: the record goes first (from then on the job is gone for everyone),
/// then its list entry and segments. Nodes still running its tasks are told to stop.
pub async fn delete<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Response<Bytes>> {
    let rec = load_job(ctx, id).await?;
    if ctx
        .store
        .delete(&keys::job(id), Cond::Version(rec.version))
        .await?
        == crate::store::Write::Lost
    {
        return Err(Error::Conflict(format!(
            "job {id} changed while it was being deleted; try again"
        )));
    }
    job_list::remove(ctx, rec.value.list_page, id).await?;
    for k in 0..rec.value.segments() {
        ctx.store
            .delete(&keys::segment(id, &rec.value.gen, k), Cond::Any)
            .await?;
    }
    ctx.store.delete(&keys::job_preview(id), Cond::Any).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"id": id, "deleted": true}),
    ))
}
