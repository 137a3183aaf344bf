//! The `/api/v1` handlers. `status` and `pickup` are matched before `:uid` (they are not uids).

use super::job::{self, executor, iso8601, peer};
use super::lease::{self, Ask};
use super::{ok, pickup, record, status, validate};
use crate::core::auth::sha256_hex;
use crate::core::error::{Error, Result};
use crate::core::job_list::{self, Listed};
use crate::core::lifecycle;
use crate::core::model::{JobRecord, Task, TaskState};
use crate::core::records::load;
use crate::core::Ctx;
use crate::store::{keys, Store};
use bytes::Bytes;
use http::{Method, Request, Response};
use serde_json::{json, Map, Value};

/// Routes one authenticated request.
pub async fn dispatch<S: Store>(
    req: &Request<Bytes>,
    ctx: &Ctx<'_, S>,
    parts: &[&str],
) -> Result<Response<Bytes>> {
    let h = req.headers();
    match (req.method(), parts) {
        (&Method::GET, ["jobs"]) => list(ctx, false).await,
        (&Method::POST, ["jobs"]) => create(ctx, h, req.body()).await,
        (&Method::GET, ["jobs", "status"]) => list(ctx, true).await,
        (&Method::GET, ["jobs", "pickup"]) => pick(ctx, h, "").await,
        (&Method::GET, ["jobs", "pickup", tags]) => pick(ctx, h, tags).await,
        (&Method::GET, ["jobs", uid]) => get(ctx, uid, false).await,
        (&Method::PUT, ["jobs", uid]) => update(ctx, h, uid, req.body()).await,
        (&Method::DELETE, ["jobs", uid]) => remove(ctx, uid).await,
        (&Method::GET, ["jobs", uid, "status"]) => get(ctx, uid, true).await,
        (m, ["jobs"] | ["jobs", _]) => Err(Error::MethodNotAllowed(m.to_string())),
        _ => Err(Error::NotFound(format!(
            "route /api/v1/{}",
            parts.join("/")
        ))),
    }
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>> {
    match crate::core::http::body::<Value>(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::bad(
            "the body must be a JSON object (a nexrender job)",
        )),
    }
}

/// nexrender strips characters other than `a-z0-9, ` (either case) from a tags string.
fn clean_tags(job: &mut Map<String, Value>) {
    if let Some(Value::String(t)) = job.get("tags") {
        let clean = job::sanitize_tags(t);
        job.insert("tags".into(), Value::String(clean));
    }
}

fn present(job: &JobRecord, task: &Task, now_ms: u64, status_only: bool) -> Value {
    let view = job::present(job, task, now_ms);
    if status_only {
        status::project(&view)
    } else {
        view
    }
}

/// `POST /jobs`: nexrender's defaults, `state: queued`, creator and times, validated; 409 when
/// the uid is taken (nexrender-server silently kept two jobs of one uid).
async fn create<S: Store>(
    ctx: &Ctx<'_, S>,
    headers: &http::HeaderMap,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let mut sent = object(bytes)?;
    let uid = match sent.get("uid") {
        Some(v) if !v.is_null() && v != "" => validate::uid(v)?,
        _ => job::new_uid(ctx),
    };
    sent.remove("uid");
    clean_tags(&mut sent);
    let mut body = job::with_defaults(sent, &uid);
    let now = iso8601(ctx.now_ms);
    body.insert("state".into(), json!("queued"));
    body.insert("creator".into(), json!(peer(headers)));
    body.insert("createdAt".into(), json!(now));
    body.insert("updatedAt".into(), json!(now));
    validate::job(&body)?;
    validate::size(&body, &ctx.config.nexrender)?;
    let taken = || Error::Conflict(format!("a job with uid {uid} already exists"));
    if load::<JobRecord, _>(ctx.store, &keys::job(&uid))
        .await?
        .is_some()
    {
        return Err(taken());
    }
    let record = JobRecord {
        spec: job::spec(&uid, &body, &ctx.config.nexrender),
        digest: sha256_hex(&uid),
        gen: ctx.token()[..16].to_string(),
        tasks: 1,
        frames_total: 0,
        canceled: false,
        failed: false,
        paused: false,
        created_ms: ctx.now_ms,
        updated_ms: ctx.now_ms,
        ended_ms: None,
        list_page: 0,
        nexrender: Some(Value::Object(body)),
        submitted_by: None,
        waiting_on: Vec::new(),
        dependency_error: None,
        round: 0,
    };
    let task = Task::new(0, None, ctx.now_ms);
    let job = lifecycle::create(ctx, record, vec![task.clone()])
        .await?
        .map_err(|_| taken())?;
    tracing::info!(uid = %uid, "nexrender job created");
    Ok(ok(&present(&job, &task, ctx.now_ms, false)))
}

/// `GET /jobs` and `GET /jobs/status`: every nexrender job, oldest first (nexrender's order).
/// O(jobs stored), like the API it copies; workers should use pickup instead.
async fn list<S: Store>(ctx: &Ctx<'_, S>, status_only: bool) -> Result<Response<Bytes>> {
    let mut out = Vec::new();
    job_list::walk(ctx, None, usize::MAX, async |entry: &Listed| {
        if let Ok((job, task)) = record::load(ctx, &entry.id).await {
            if job.gen == entry.gen {
                out.push(present(&job, &task, ctx.now_ms, status_only));
            }
        }
        Ok(true)
    })
    .await?;
    out.reverse();
    Ok(ok(&Value::Array(out)))
}

async fn get<S: Store>(ctx: &Ctx<'_, S>, uid: &str, status_only: bool) -> Result<Response<Bytes>> {
    let (job, task) = record::load(ctx, uid).await?;
    Ok(ok(&present(&job, &task, ctx.now_ms, status_only)))
}

/// `GET /jobs/pickup[/:tags]`: the claimed job, now `picked` by the caller, or `{}`.
async fn pick<S: Store>(
    ctx: &Ctx<'_, S>,
    headers: &http::HeaderMap,
    selector: &str,
) -> Result<Response<Bytes>> {
    let who = executor(headers);
    let tags = job::tag_list(selector);
    let Some((job, task)) = pickup::pickup(ctx, &tags, &who).await? else {
        return Ok(ok(&json!({})));
    };
    let uid = job.spec.id.clone();
    let now = iso8601(ctx.now_ms);
    // The claim decided; the record only describes it (a crash here is corrected on read).
    let job = record::update(ctx, &uid, |j| {
        if let Some(Value::Object(m)) = j.nexrender.as_mut() {
            m.insert("state".into(), json!("picked"));
            m.insert("executor".into(), json!(who));
            m.insert("renderProgress".into(), json!(0));
            m.insert("updatedAt".into(), json!(now));
        }
    })
    .await?;
    tracing::info!(uid = %uid, executor = %who, "nexrender job picked up");
    Ok(ok(&present(&job, &task, ctx.now_ms, false)))
}

fn error_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| p.as_str().map_or_else(|| p.to_string(), String::from))
            .collect::<Vec<_>>()
            .join("\n\n"),
        None | Some(Value::Null) => "the worker reported an error".into(),
        Some(other) => other.to_string(),
    }
}

/// `PUT /jobs/:uid`: a shallow merge into the stored job, re-validated; the `state` it carries
/// is a task transition (`lease.rs`) that may be refused with 409.
async fn update<S: Store>(
    ctx: &Ctx<'_, S>,
    headers: &http::HeaderMap,
    uid: &str,
    bytes: &[u8],
) -> Result<Response<Bytes>> {
    let (stored, _) = record::load(ctx, uid).await?;
    let mut sent = object(bytes)?;
    // The uid names the record; a body cannot move the job to another one.
    sent.remove("uid");
    clean_tags(&mut sent);
    let now = iso8601(ctx.now_ms);
    let ask = Ask::of(
        sent.get("state").and_then(Value::as_str),
        error_text(sent.get("error")),
    );
    let stamp = match ask {
        Ask::Start => Some("startedAt"),
        Ask::Finish => Some("finishedAt"),
        Ask::Fail(_) => Some("errorAt"),
        _ => None,
    };
    if let Some(k) = stamp.filter(|k| !sent.contains_key(*k)) {
        sent.insert(k.into(), json!(now));
    }
    sent.insert("updatedAt".into(), json!(now));
    let merge = |base: &Option<Value>| {
        let mut m = match base {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        m.extend(sent.clone());
        m.insert("uid".into(), json!(uid));
        m
    };
    let merged = merge(&stored.nexrender);
    validate::job(&merged)?;
    validate::size(&merged, &ctx.config.nexrender)?;
    let who = executor(headers);
    let progress = sent
        .get("renderProgress")
        .and_then(Value::as_f64)
        .map(|p| p.clamp(0.0, 100.0).round() as u64);
    let put = lease::Put {
        job: uid,
        who: &who,
        ask,
        progress,
        overrides: job::overrides(headers),
    };
    let (_, task, effect) = lease::apply(ctx, &put).await?;
    if effect.late {
        return Ok(ok(&present(&stored, &task, ctx.now_ms, false)));
    }
    let settings = &ctx.config.nexrender;
    let mut reindex = effect.requeued;
    let job = record::update(ctx, uid, |j| {
        let mut m = merge(&j.nexrender);
        let derived = job::derive(j, &task, ctx.now_ms);
        m.insert("state".into(), json!(derived.state));
        if let Some(e) = derived.executor {
            m.insert("executor".into(), json!(e));
        }
        let spec = job::spec(uid, &m, settings);
        // Tags or priority moved the job in the index: new entries under the new ones.
        reindex |= spec.tags != j.spec.tags || spec.priority != j.spec.priority;
        j.spec.tags = spec.tags;
        j.spec.priority = spec.priority;
        j.spec.params = spec.params;
        if effect.requeued {
            lifecycle::reopen(j);
        }
        j.nexrender = Some(Value::Object(m));
    })
    .await?;
    if reindex && matches!(task.state, TaskState::Queued | TaskState::Leased) {
        lifecycle::index_segments(ctx, &job, Some(&[0])).await?;
    }
    Ok(ok(&present(&job, &task, ctx.now_ms, false)))
}

/// `DELETE /jobs/:uid` → `{"id": uid, "removed": true}` (404 for an unknown uid).
async fn remove<S: Store>(ctx: &Ctx<'_, S>, uid: &str) -> Result<Response<Bytes>> {
    record::load(ctx, uid).await?;
    lifecycle::delete(ctx, uid).await?;
    tracing::info!(uid = %uid, "nexrender job removed");
    Ok(ok(&json!({"id": uid, "removed": true})))
}
