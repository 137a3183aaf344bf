//! The delivery records and the outbox: what [`emit`] writes when a job ends, what [`due`]
//! hands a shell to send, what [`report`] records, what [`list`] shows.
//!
//! Records (layouts in `store::keys`):
//! - one **event record** per (job, generation, round, event) — `keys::webhook_event` —
//!   created with `Cond::Absent`: of any number of requests that see the same end, exactly one
//!   creates it; the others find it. It holds the signed body's bytes and, per receiver, the
//!   attempts and what happened.
//! - the **outbox**: the keys of the events not finished yet and when each is due next. A shell
//!   asks for what is due; each request handed out is leased to it for [`IN_FLIGHT_MS`] (its
//!   receiver's `next_ms` moves that far ahead), so a second shell does not send it at the same
//!   time, and a shell that died mid-send is replaced when the lease lapses.
//! - the **finished log**: the keys of the latest finished events, for the deliveries list.
//!
//! Order of writes: the event record first, then its outbox entry. A request cut short between
//! the two leaves a record no shell knows of; the next [`emit`] of the same end (any later ack
//! or read of the job) finds the record pending and puts it in the outbox. On the native server
//! the two writes commit together anyway (one SQLite transaction per batch of requests).

use super::{sign, Settings};
use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::model::JobRecord;
use crate::core::records::{load, save, Rec};
use crate::core::rollup::{JobState, JobView};
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use crate::wire::webhooks::{
    Delivery, DeliveryState, Due, Event, EventJob, Outgoing, Report, Webhook,
};
use serde::{Deserialize, Serialize};

/// How long a request handed to a shell is its own before another shell may send it again.
pub const IN_FLIGHT_MS: u64 = 60_000;
/// Most unfinished events; an event beyond it is recorded as failed at once (its receivers
/// have been failing for hours: that many events are queued behind them).
pub const MAX_PENDING: usize = 500;
/// Finished events kept for the deliveries list.
pub const FINISHED_KEPT: usize = 100;
/// Most requests one `due` call hands out.
pub const MAX_DUE: usize = 32;
/// Longest error text kept per attempt.
const ERROR_KEPT: usize = 300;

/// One event of one job's end, and its delivery to each receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EventRecord {
    /// The `webhook-id` every attempt carries.
    id: String,
    /// `job.completed`, `job.failed`, `job.canceled`.
    event: String,
    /// The job.
    job: String,
    /// When the event was recorded.
    created_ms: u64,
    /// The body, byte for byte (emptied once every receiver is done with it).
    body: String,
    /// One per receiver.
    targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Target {
    url: String,
    /// Emptied once this receiver is done.
    #[serde(default)]
    secret: String,
    state: DeliveryState,
    attempts: u32,
    /// When it may be sent (again): the next retry, or the end of a shell's lease on it.
    next_ms: u64,
    #[serde(default)]
    last_attempt_ms: Option<u64>,
    #[serde(default)]
    last_status: Option<u16>,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    delivered_ms: Option<u64>,
}

impl EventRecord {
    fn next_due(&self) -> Option<u64> {
        self.targets
            .iter()
            .filter(|t| t.state == DeliveryState::Pending)
            .map(|t| t.next_ms)
            .min()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Outbox {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: String,
    /// Never later than the earliest `next_ms` of the record's pending receivers.
    next_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Finished {
    /// Oldest first.
    keys: Vec<String>,
}

/// The event a job's end is, if it ended.
pub fn event_of(state: JobState) -> Option<&'static str> {
    match state {
        JobState::Completed => Some("job.completed"),
        JobState::Failed => Some("job.failed"),
        JobState::Canceled => Some("job.canceled"),
        _ => None,
    }
}

/// Everyone told about `job`: its own webhooks, then the farm's (a URL once).
pub fn receivers<'a>(settings: &'a Settings, job: &'a JobRecord) -> Vec<&'a Webhook> {
    let mut out: Vec<&Webhook> = Vec::new();
    for h in job.spec.webhooks.iter().chain(settings.farm.iter()) {
        if !out.iter().any(|o| o.url == h.url) {
            out.push(h);
        }
    }
    out
}

fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Records the event of `job`'s end (`view`: the job rolled up now) for each of its
/// receivers, once; nothing when it has none or has not ended. Called wherever a job may have
/// ended (`lifecycle::ended`), and on reads of an ended job (repair).
pub async fn emit<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord, view: &JobView) -> Result<()> {
    let hooks = receivers(&ctx.config.webhooks, job);
    let Some(event) = event_of(view.state) else {
        return Ok(());
    };
    if hooks.is_empty() {
        return Ok(());
    }
    let key = keys::webhook_event(&job.spec.id, &job.gen, job.round, event);
    if let Some(rec) = load::<EventRecord, _>(ctx.store, &key).await? {
        // Recorded before; make sure a shell knows of it (a request cut short in between).
        if let Some(next) = rec.value.next_due() {
            enqueue(ctx, &key, next).await?;
        }
        return Ok(());
    }
    let at = view.finished_ms.unwrap_or(ctx.now_ms);
    let body = Event {
        kind: event.to_string(),
        timestamp: rfc3339(at),
        data: EventJob {
            id: job.spec.id.clone(),
            name: job.spec.name.clone(),
            kind: job.spec.kind,
            queue: job.spec.queue.clone(),
            state: view.state,
            counts: view.counts,
            frames_total: view.frames_total,
            frames_done: view.frames_done,
            created_ms: job.created_ms,
            finished_ms: view.finished_ms,
            error: view.error.clone(),
            submitted_by: job.submitted_by.clone(),
            round: job.round,
        },
    };
    let record = EventRecord {
        id: format!("msg_{}", &crate::core::auth::sha256_hex(&key)[..32]),
        event: event.to_string(),
        job: job.spec.id.clone(),
        created_ms: ctx.now_ms,
        body: serde_json::to_string(&body).unwrap_or_default(),
        targets: hooks
            .iter()
            .map(|h| Target {
                url: h.url.clone(),
                secret: h.secret.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_ms: ctx.now_ms,
                last_attempt_ms: None,
                last_status: None,
                last_error: None,
                delivered_ms: None,
            })
            .collect(),
    };
    if save(ctx.store, &key, &record, Cond::Absent)
        .await?
        .is_none()
    {
        // Another request recorded this end first: it enqueues it.
        return Ok(());
    }
    tracing::info!(job = %job.spec.id, event, receivers = hooks.len(), "webhook event recorded");
    enqueue(ctx, &key, ctx.now_ms).await
}

/// Puts `key` in the outbox (due at `next_ms`), once. When the outbox is full the event is
/// recorded as failed instead.
async fn enqueue<S: Store>(ctx: &Ctx<'_, S>, key: &str, next_ms: u64) -> Result<()> {
    let full = cas::update(
        ctx.store,
        &keys::webhook_outbox(),
        "the webhook outbox",
        async |rec: Option<Rec<Outbox>>| {
            let mut out = rec.map(|r| r.value).unwrap_or_default();
            if out.entries.iter().any(|e| e.key == key) {
                return Ok(Step::Stop(false));
            }
            if out.entries.len() >= MAX_PENDING {
                return Ok(Step::Stop(true));
            }
            out.entries.push(Entry {
                key: key.to_string(),
                next_ms,
            });
            Ok(Step::Write(out, false))
        },
    )
    .await?;
    if full {
        let why = format!("not sent: {MAX_PENDING} webhook events were already waiting");
        tracing::warn!(key, "{why}");
        update_event(ctx, key, |rec| {
            for t in rec.targets.iter_mut() {
                if t.state == DeliveryState::Pending {
                    finish(t, DeliveryState::Failed);
                    t.last_error = Some(why.clone());
                }
            }
        })
        .await?;
        return Ok(());
    }
    ctx.notes.webhook_due(next_ms);
    Ok(())
}

fn finish(t: &mut Target, state: DeliveryState) {
    t.state = state;
    t.secret.clear();
}

/// CAS of one event record; `None` when it is gone (its job was deleted).
async fn update_event<S: Store>(
    ctx: &Ctx<'_, S>,
    key: &str,
    mut change: impl FnMut(&mut EventRecord),
) -> Result<Option<EventRecord>> {
    cas::update(
        ctx.store,
        key,
        "a webhook event",
        async |rec: Option<Rec<EventRecord>>| {
            let Some(Rec { mut value, .. }) = rec else {
                return Ok(Step::Stop(None));
            };
            change(&mut value);
            if value.next_due().is_none() {
                value.body.clear();
            }
            Ok(Step::Write(value.clone(), Some(value)))
        },
    )
    .await
}

/// What is due now, signed at `ctx.now_ms`; each request is leased to the caller for
/// [`IN_FLIGHT_MS`]. The outbox is only read when nothing is due.
pub async fn due<S: Store>(ctx: &Ctx<'_, S>) -> Result<Due> {
    let now = ctx.now_ms;
    let outbox = load::<Outbox, _>(ctx.store, &keys::webhook_outbox())
        .await?
        .map(|r| r.value)
        .unwrap_or_default();
    let mut requests = Vec::new();
    let mut changed: Vec<(String, Option<u64>)> = Vec::new();
    for entry in outbox.entries.iter().filter(|e| e.next_ms <= now) {
        if requests.len() >= MAX_DUE {
            break;
        }
        let room = MAX_DUE - requests.len();
        let mut sent = Vec::new();
        let ts = now / 1000;
        let rec = update_event(ctx, &entry.key, |rec| {
            sent.clear();
            let (id, body) = (rec.id.clone(), rec.body.clone());
            for (i, t) in rec.targets.iter_mut().enumerate() {
                if t.state != DeliveryState::Pending || t.next_ms > now || sent.len() >= room {
                    continue;
                }
                if t.attempts >= ctx.config.webhooks.attempts {
                    // Its last attempt was handed out and never reported.
                    finish(t, DeliveryState::Failed);
                    t.last_error
                        .get_or_insert_with(|| "no report of the last attempt".into());
                    continue;
                }
                let Some(sig) = sign::signature(&t.secret, &id, ts, &body) else {
                    // Cannot happen (secrets are checked when given); never retried for ever.
                    finish(t, DeliveryState::Failed);
                    t.last_error = Some("the signing secret is not a whsec_ secret".into());
                    continue;
                };
                t.attempts += 1;
                t.next_ms = now + IN_FLIGHT_MS;
                sent.push((i, t.url.clone(), sig));
            }
        })
        .await?;
        let Some(rec) = rec else {
            changed.push((entry.key.clone(), None));
            continue;
        };
        for (i, url, sig) in sent {
            let h = |k: &str, v: String| [k.to_string(), v];
            requests.push(Outgoing {
                delivery: entry.key.clone(),
                target: i as u32,
                url,
                headers: vec![
                    h("content-type", "application/json".into()),
                    h("user-agent", "edgefarm-webhooks".into()),
                    h("webhook-id", rec.id.clone()),
                    h("webhook-timestamp", ts.to_string()),
                    h("webhook-signature", sig),
                ],
                body: rec.body.clone(),
            });
        }
        changed.push((entry.key.clone(), rec.next_due()));
    }
    let next_due_ms = settle(ctx, &changed).await?;
    Ok(Due {
        requests,
        next_due_ms,
    })
}

/// Brings the outbox in line with records just changed (`None`: the record has nothing
/// pending, or is gone): moves finished ones to the finished log. Returns when the next
/// pending event is due.
async fn settle<S: Store>(
    ctx: &Ctx<'_, S>,
    changed: &[(String, Option<u64>)],
) -> Result<Option<u64>> {
    let (next, done) = cas::update(
        ctx.store,
        &keys::webhook_outbox(),
        "the webhook outbox",
        async |rec: Option<Rec<Outbox>>| {
            let mut out = rec.map(|r| r.value).unwrap_or_default();
            let mut done = Vec::new();
            for (key, next) in changed {
                match next {
                    Some(n) => {
                        if let Some(e) = out.entries.iter_mut().find(|e| &e.key == key) {
                            e.next_ms = *n;
                        }
                    }
                    None => {
                        if out.entries.iter().any(|e| &e.key == key) {
                            done.push(key.clone());
                        }
                        out.entries.retain(|e| &e.key != key);
                    }
                }
            }
            let next = out.entries.iter().map(|e| e.next_ms).min();
            Ok(if changed.is_empty() {
                Step::Stop((next, done))
            } else {
                Step::Write(out, (next, done))
            })
        },
    )
    .await?;
    if !done.is_empty() {
        cas::update(
            ctx.store,
            &keys::webhook_finished(),
            "the finished webhook log",
            async |rec: Option<Rec<Finished>>| {
                let mut log = rec.map(|r| r.value).unwrap_or_default();
                log.keys.retain(|k| !done.contains(k));
                log.keys.extend(done.iter().cloned());
                let extra = log.keys.len().saturating_sub(FINISHED_KEPT);
                log.keys.drain(..extra);
                Ok(Step::Write(log, ()))
            },
        )
        .await?;
    }
    if let Some(n) = next {
        ctx.notes.webhook_due(n);
    }
    Ok(next)
}

/// The delay before retry `n` (after `n` failed attempts): `first`, then four times longer
/// each time, at most 720 × `first` (an hour for the default 5 s).
pub fn backoff_ms(first: u64, n: u32) -> u64 {
    let grown = first.saturating_mul(4u64.saturating_pow(n.saturating_sub(1)));
    grown.min(first.saturating_mul(720))
}

/// Records how the requests of a [`due`] went. A report for a receiver that is not pending
/// (a duplicate, or after another shell's report) changes nothing.
pub async fn report<S: Store>(ctx: &Ctx<'_, S>, reports: &[Report]) -> Result<Option<u64>> {
    for (i, r) in reports.iter().enumerate() {
        if !r.delivery.starts_with("hook/") {
            return Err(Error::field(
                &format!("reports[{i}].delivery"),
                format!("reports[{i}].delivery: not a delivery of POST /v1/webhooks/due"),
            ));
        }
    }
    let settings = &ctx.config.webhooks;
    let mut changed = Vec::new();
    for r in reports {
        let rec = update_event(ctx, &r.delivery, |rec| {
            let Some(t) = rec.targets.get_mut(r.target as usize) else {
                return;
            };
            if t.state != DeliveryState::Pending {
                return;
            }
            t.last_attempt_ms = Some(ctx.now_ms);
            t.last_status = r.status;
            match r.status {
                Some(s) if (200..300).contains(&s) => {
                    finish(t, DeliveryState::Delivered);
                    t.delivered_ms = Some(ctx.now_ms);
                    t.last_error = None;
                    return;
                }
                Some(s) => t.last_error = Some(format!("the receiver answered {s}")),
                None => {
                    let why = r.error.as_deref().unwrap_or("no answer");
                    t.last_error = Some(why.chars().take(ERROR_KEPT).collect());
                }
            }
            if r.status == Some(410) || t.attempts >= settings.attempts {
                finish(t, DeliveryState::Failed);
            } else {
                t.next_ms = ctx.now_ms + backoff_ms(settings.first_retry_ms, t.attempts);
            }
        })
        .await?;
        changed.push((r.delivery.clone(), rec.and_then(|r| r.next_due())));
    }
    settle(ctx, &changed).await
}

fn deliveries(rec: &EventRecord) -> impl Iterator<Item = Delivery> + '_ {
    rec.targets.iter().map(|t| Delivery {
        id: rec.id.clone(),
        event: rec.event.clone(),
        job: rec.job.clone(),
        url: t.url.clone(),
        state: t.state,
        attempts: t.attempts,
        created_ms: rec.created_ms,
        last_attempt_ms: t.last_attempt_ms,
        last_status: t.last_status,
        last_error: t.last_error.clone(),
        next_attempt_ms: (t.state == DeliveryState::Pending).then_some(t.next_ms),
        delivered_ms: t.delivered_ms,
    })
}

/// Pending deliveries (oldest first), then the latest finished ones (newest first).
pub async fn list<S: Store>(ctx: &Ctx<'_, S>) -> Result<Vec<Delivery>> {
    let outbox = load::<Outbox, _>(ctx.store, &keys::webhook_outbox())
        .await?
        .map(|r| r.value)
        .unwrap_or_default();
    let finished = load::<Finished, _>(ctx.store, &keys::webhook_finished())
        .await?
        .map(|r| r.value)
        .unwrap_or_default();
    let mut out = Vec::new();
    let keys = outbox
        .entries
        .iter()
        .map(|e| &e.key)
        .chain(finished.keys.iter().rev());
    for key in keys {
        if let Some(rec) = load::<EventRecord, _>(ctx.store, key).await? {
            out.extend(deliveries(&rec.value));
        }
    }
    Ok(out)
}

/// Deletes the event records of a job being deleted (every round it went through).
pub async fn forget<S: Store>(ctx: &Ctx<'_, S>, job: &JobRecord) -> Result<()> {
    for round in 0..=job.round {
        for state in [JobState::Completed, JobState::Failed, JobState::Canceled] {
            if let Some(event) = event_of(state) {
                let key = keys::webhook_event(&job.spec.id, &job.gen, round, event);
                ctx.store.delete(&key, Cond::Any).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn retries_back_off_to_an_hour_and_span_hours() {
        let delays: Vec<u64> = (1..12).map(|n| backoff_ms(5_000, n)).collect();
        assert_eq!(&delays[..5], &[5_000, 20_000, 80_000, 320_000, 1_280_000]);
        assert!(delays[5..].iter().all(|d| *d == 3_600_000), "{delays:?}");
        let total: u64 = delays.iter().sum();
        assert!(total > 3_600_000 * 6, "12 attempts span {total} ms");
    }
}
