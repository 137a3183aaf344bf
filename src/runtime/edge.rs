//! What the serverless shells (Cloudflare, Spin) share: settings from the platform's variables,
//! the core call with the edge's long-poll rule, and following a job as a bounded event stream.
//! Pure, like the core: each shell brings its own clock, sleep and variables.

use bytes::Bytes;

use crate::core::blobs::{Stored, Transfer};
use crate::core::{handle, Config, Ctx, JobEvent, LongPoll};
use crate::store::Store;

/// How long one event stream lasts before the client reconnects with `Last-Event-ID`.
pub const STREAM_SECONDS: u64 = 25;

/// Settings from the platform's variables, under the names `edgefarm serve` reads from its
/// environment. `var` returns a variable's value; the error names the variable at fault.
pub fn config_from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let secret = var("EDGEFARM_SECRET")
        .filter(|s| s.len() >= 8)
        .ok_or("EDGEFARM_SECRET is not set (or under 8 characters)")?;
    let mut c = Config::new(secret);
    let ms = |name: &str, default: u64, min: u64| -> Result<u64, String> {
        match var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(|n| n.max(min))
                .map_err(|_| format!("{name}: not a whole number of milliseconds: {v:?}")),
        }
    };
    c.lease_ms = ms("EDGEFARM_LEASE_MS", c.lease_ms, 100)?;
    c.heartbeat_ms = ms("EDGEFARM_HEARTBEAT_MS", c.heartbeat_ms, 50)?;
    c.poll_ms = ms("EDGEFARM_POLL_MS", c.poll_ms, 50)?;
    if let Some(o) = var("EDGEFARM_NEXRENDER_ORDERING") {
        c.nexrender.ordering = o
            .trim()
            .parse()
            .map_err(|e| format!("EDGEFARM_NEXRENDER_ORDERING: {e}"))?;
    }
    c.nexrender.timeout_ms = ms("EDGEFARM_NEXRENDER_TIMEOUT_MS", c.nexrender.timeout_ms, 100)?;
    let attempts = ms(
        "EDGEFARM_NEXRENDER_MAX_ATTEMPTS",
        c.nexrender.max_attempts as u64,
        1,
    )?;
    c.nexrender.max_attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
    let body = ms(
        "EDGEFARM_NEXRENDER_BODY_BYTES",
        c.nexrender.body_bytes as u64,
        1,
    )?;
    c.nexrender.body_bytes = usize::try_from(body).unwrap_or(usize::MAX);
    let failures = ms(
        "EDGEFARM_AUTH_FAILURES_PER_MINUTE",
        c.auth_limit.failures as u64,
        0,
    )?;
    c.auth_limit.failures = u32::try_from(failures).unwrap_or(u32::MAX);
    // Blobs in an S3-compatible bucket by presigned URLs (the only blob store on Spin).
    c.bucket = crate::core::blobs::s3::S3Settings::from_vars(&var)?;
    c.webhooks = webhook_settings(&var)?;
    Ok(c)
}

/// Webhook settings from vars (the same names as `edgefarm serve`'s environment):
/// `EDGEFARM_WEBHOOKS` (comma-separated farm receivers) with `EDGEFARM_WEBHOOK_SECRET`,
/// `EDGEFARM_WEBHOOKS_ALLOW_PRIVATE`, `EDGEFARM_WEBHOOK_FIRST_RETRY_MS`,
/// `EDGEFARM_WEBHOOK_ATTEMPTS`.
fn webhook_settings(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<crate::core::webhooks::Settings, String> {
    use crate::core::webhooks::{target, Settings};
    let mut s = Settings {
        allow_private: var("EDGEFARM_WEBHOOKS_ALLOW_PRIVATE")
            .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes")),
        ..Settings::default()
    };
    if let Some(v) = var("EDGEFARM_WEBHOOK_FIRST_RETRY_MS") {
        s.first_retry_ms = v.trim().parse::<u64>().map_err(|_| {
            format!("EDGEFARM_WEBHOOK_FIRST_RETRY_MS: not a whole number of milliseconds: {v:?}")
        })?;
    }
    if let Some(v) = var("EDGEFARM_WEBHOOK_ATTEMPTS") {
        s.attempts = v
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("EDGEFARM_WEBHOOK_ATTEMPTS: not a whole number: {v:?}"))?
            .clamp(1, 100);
    }
    let urls = var("EDGEFARM_WEBHOOKS").unwrap_or_default();
    for (i, url) in urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .enumerate()
    {
        let secret = var("EDGEFARM_WEBHOOK_SECRET")
            .ok_or("EDGEFARM_WEBHOOKS needs EDGEFARM_WEBHOOK_SECRET")?;
        let hook = crate::wire::webhooks::Webhook {
            url: url.to_string(),
            secret,
        };
        target::check(&format!("EDGEFARM_WEBHOOKS[{i}]"), &hook, &s).map_err(|e| e.to_string())?;
        s.farm.push(hook);
    }
    Ok(s)
}

/// Runs the core. A request cannot be held open cheaply at the edge, so an answer the core
/// marks [`LongPoll`] (an empty poll; see its re-run rule) that asked to wait (`?wait=`) is
/// answered at once with `Retry-After` instead of being held.
pub async fn run_core<S: Store>(
    req: http::Request<Bytes>,
    ctx: &Ctx<'_, S>,
) -> http::Response<Bytes> {
    let mut resp = handle(req, ctx).await;
    let asked_to_wait = resp
        .extensions()
        .get::<LongPoll>()
        .is_some_and(|l| l.wait_ms > 0);
    if asked_to_wait {
        let secs = ctx.config.poll_ms.div_ceil(1000).max(1);
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

/// Declared lengths up to this are read whole and refused by the core (the body consumed, so the
/// client gets its 413): answering before the body is read makes workerd (`wrangler dev`) drop
/// the connection while the client is still sending ("Network connection lost", a 500 or a reset
/// instead of the 413). Above it, holding the body would threaten the isolate's memory (128 MB
/// on Workers), so the shell refuses at once and a client may see the connection cut.
pub const READ_BEFORE_REFUSING_BYTES: u64 = 16 << 20;

/// The 413 for a request whose declared length (`Content-Length`) is over its route's body limit
/// and over [`READ_BEFORE_REFUSING_BYTES`], answered before the body is read; smaller bodies and
/// bodies without a length (bounded by the platform) are checked by the core once read.
pub fn declared_too_large(
    config: &Config,
    path: &str,
    content_length: Option<&str>,
) -> Option<http::Response<Bytes>> {
    let declared = content_length?.trim().parse::<u64>().ok()?;
    let limit = crate::core::router::body_limit(config, path);
    (declared > limit as u64 && declared > READ_BEFORE_REFUSING_BYTES)
        .then(|| crate::core::router::too_large(config, path).into_response())
}

/// Whether a request asks to follow a job as server-sent events.
pub fn is_event_stream(is_get: bool, path: &str, accept: Option<&str>) -> bool {
    is_get
        && path.starts_with("/v1/jobs/")
        && accept.is_some_and(|a| a.contains("text/event-stream"))
}

/// Turns repeated reads of a job (each one `job` event from the core) into the chunks of one
/// bounded event stream: only changed events are sent, and the stream ends when the job
/// finishes or the read fails.
#[derive(Debug)]
pub struct Follow {
    last_id: Option<String>,
    first: bool,
    done: bool,
}

impl Follow {
    /// A follower resuming after `last_event_id` (the client's `Last-Event-ID`).
    pub fn new(last_event_id: Option<String>) -> Self {
        Follow {
            last_id: last_event_id,
            first: true,
            done: false,
        }
    }

    /// Whether the stream has ended.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The chunk to send for one read's answer (its status, body and the core's [`JobEvent`]
    /// signal), if anything changed. A 200 without the signal is no job event: the stream ends.
    pub fn chunk(&mut self, status: u16, body: &[u8], event: Option<&JobEvent>) -> Option<Vec<u8>> {
        let event = match event {
            Some(e) if status == 200 => {
                if self.last_id.as_deref() == Some(e.id.as_str()) {
                    return None;
                }
                self.last_id = Some(e.id.clone());
                self.done = e.finished;
                body.to_vec()
            }
            _ => {
                self.done = true;
                [b"event: error\ndata: ", body, b"\n\n"].concat()
            }
        };
        // `retry:` tells EventSource to reconnect a second after the stream ends.
        Some(if std::mem::take(&mut self.first) {
            [&b"retry: 1000\n\n"[..], &event].concat()
        } else {
            event
        })
    }
}

/// The header a [`JobEvent`] travels in where an answer crosses from one process to another
/// (a Durable Object's answer to its Worker), since extensions do not: `open <id>` or
/// `finished <id>`. Only the shell's own follower reads it; clients get the event stream.
pub const JOB_EVENT_HEADER: &str = "x-edgefarm-job-event";

/// Puts an answer's [`JobEvent`] signal into [`JOB_EVENT_HEADER`].
pub fn job_event_to_header(resp: &mut http::Response<Bytes>) {
    let Some(e) = resp.extensions().get::<JobEvent>() else {
        return;
    };
    let state = if e.finished { "finished" } else { "open" };
    if let Ok(v) = http::HeaderValue::from_str(&format!("{state} {}", e.id)) {
        resp.headers_mut().insert(JOB_EVENT_HEADER, v);
    }
}

/// Reads a [`JobEvent`] back from [`JOB_EVENT_HEADER`].
pub fn job_event_from_header(value: Option<&str>) -> Option<JobEvent> {
    let (state, id) = value?.split_once(' ')?;
    let finished = match state {
        "finished" => true,
        "open" => false,
        _ => return None,
    };
    Some(JobEvent {
        id: id.to_string(),
        finished,
    })
}

/// Whether a request moves blob bytes (`PUT`, `GET`, `HEAD /v1/blobs/{sha256}`): a shell with a
/// blob backend must not read its body before the core decided (docs/ASSETS.md).
pub fn is_blob_transfer(method: &http::Method, path: &str) -> bool {
    let blob = path.starts_with("/v1/blobs/") && path != "/v1/blobs/missing";
    blob && matches!(
        *method,
        http::Method::PUT | http::Method::GET | http::Method::HEAD
    )
}

/// Carries the core's [`Transfer`] from a Durable Object's answer to the Worker that streams the
/// bytes (extensions do not cross the object's boundary). Removed by the Worker.
pub const TRANSFER_HEADER: &str = "x-edgefarm-transfer";
/// Carries a [`Stored`] from the Worker to the farm's object. The Worker removes it from every
/// request it forwards ([`INTERNAL_HEADERS`]), so only the Worker itself can set it: a client
/// cannot claim a blob is stored without sending its bytes.
pub const STORED_HEADER: &str = "x-edgefarm-stored";
/// Carries a blob upload's `Content-Length` to the farm's object, which gets the request
/// without its body (the Worker streams the body into R2 itself).
pub const LENGTH_HEADER: &str = "x-edgefarm-blob-length";
/// Headers only the Worker may send to the farm's object.
pub const INTERNAL_HEADERS: [&str; 2] = [STORED_HEADER, LENGTH_HEADER];

/// Puts an answer's [`Transfer`] into [`TRANSFER_HEADER`].
pub fn transfer_to_header(resp: &mut http::Response<Bytes>) {
    let value = if let Some(Transfer::Receive { sha256, size }) = resp.extensions().get() {
        format!("receive {sha256} {size}")
    } else if let Some(Transfer::Send { sha256, size, head }) = resp.extensions().get() {
        let how = if *head { "head" } else { "get" };
        format!("send {sha256} {size} {how}")
    } else {
        return;
    };
    if let Ok(v) = http::HeaderValue::from_str(&value) {
        resp.headers_mut().insert(TRANSFER_HEADER, v);
    }
}

/// Takes [`TRANSFER_HEADER`] off an answer and puts the [`Transfer`] it names back into the
/// answer's extensions.
pub fn transfer_from_header(resp: &mut http::Response<Bytes>) {
    let Some(value) = resp.headers_mut().remove(TRANSFER_HEADER) else {
        return;
    };
    let text = value.to_str().unwrap_or("");
    let parts: Vec<&str> = text.split(' ').collect();
    let transfer = match parts.as_slice() {
        ["receive", sha, size] => size.parse().ok().map(|size| Transfer::Receive {
            sha256: sha.to_string(),
            size,
        }),
        ["send", sha, size, how] => size.parse().ok().map(|size| Transfer::Send {
            sha256: sha.to_string(),
            size,
            head: *how == "head",
        }),
        _ => None,
    };
    if let Some(t) = transfer {
        resp.extensions_mut().insert(t);
    }
}

/// Before a bodyless blob request goes to the farm's object: its `Content-Length` and any
/// [`Stored`] move into the internal headers.
pub fn blob_request_to_object(req: &mut http::Request<Bytes>) {
    let stored = req
        .extensions()
        .get::<Stored>()
        .map(|s| format!("{} {}", s.sha256, s.size));
    let headers = req.headers_mut();
    if let Some(length) = headers.remove(http::header::CONTENT_LENGTH) {
        headers.insert(LENGTH_HEADER, length);
    }
    if let Some(v) = stored.and_then(|s| http::HeaderValue::from_str(&s).ok()) {
        headers.insert(STORED_HEADER, v);
    }
}

/// In the farm's object (reached only through the Worker, which strips [`INTERNAL_HEADERS`]
/// from what clients send): the internal headers back into `Content-Length` and a [`Stored`].
pub fn blob_request_from_worker(req: &mut http::Request<Bytes>) {
    let headers = req.headers_mut();
    if let Some(length) = headers.remove(LENGTH_HEADER) {
        headers.insert(http::header::CONTENT_LENGTH, length);
    }
    let Some(stored) = headers.remove(STORED_HEADER) else {
        return;
    };
    let stored = stored.to_str().ok().and_then(|s| {
        let (sha256, size) = s.split_once(' ')?;
        Some(Stored {
            sha256: sha256.to_string(),
            size: size.parse().ok()?,
        })
    });
    if let Some(s) = stored {
        req.extensions_mut().insert(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_signals_cross_the_object_boundary_unchanged() {
        let sha = "ab".repeat(32);
        for t in [
            Transfer::Receive {
                sha256: sha.clone(),
                size: 12,
            },
            Transfer::Send {
                sha256: sha.clone(),
                size: 1 << 40,
                head: true,
            },
            Transfer::Send {
                sha256: sha.clone(),
                size: 0,
                head: false,
            },
        ] {
            let mut resp = http::Response::new(Bytes::new());
            resp.extensions_mut().insert(t.clone());
            transfer_to_header(&mut resp);
            let (parts, body) = resp.into_parts();
            let mut back = http::Response::new(body);
            *back.headers_mut() = parts.headers;
            transfer_from_header(&mut back);
            assert_eq!(back.extensions().get::<Transfer>(), Some(&t));
            assert!(back.headers().get(TRANSFER_HEADER).is_none());
        }
        let mut req = http::Request::builder()
            .method("PUT")
            .uri(format!("/v1/blobs/{sha}"))
            .header("content-length", "12")
            .body(Bytes::new())
            .expect("request");
        req.extensions_mut().insert(Stored {
            sha256: sha.clone(),
            size: 12,
        });
        blob_request_to_object(&mut req);
        assert!(req.headers().get("content-length").is_none());
        let (parts, body) = req.into_parts();
        let mut back = http::Request::new(body);
        *back.headers_mut() = parts.headers;
        blob_request_from_worker(&mut back);
        assert_eq!(back.headers()["content-length"], "12");
        assert_eq!(
            back.extensions().get::<Stored>(),
            Some(&Stored {
                sha256: sha,
                size: 12
            })
        );
        assert!(INTERNAL_HEADERS
            .iter()
            .all(|h| back.headers().get(*h).is_none()));
    }

    #[test]
    fn blob_transfers_are_the_byte_moving_blob_routes() {
        let sha = format!("/v1/blobs/{}", "0".repeat(64));
        assert!(is_blob_transfer(&http::Method::PUT, &sha));
        assert!(is_blob_transfer(&http::Method::HEAD, &sha));
        assert!(!is_blob_transfer(&http::Method::POST, "/v1/blobs/missing"));
        assert!(!is_blob_transfer(&http::Method::GET, "/v1/blobs/missing"));
        assert!(!is_blob_transfer(&http::Method::GET, "/v1/jobs"));
    }

    #[test]
    fn variables_become_settings_and_bad_ones_are_named() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = config_from_vars(vars(&[
            ("EDGEFARM_SECRET", "0123456789"),
            ("EDGEFARM_LEASE_MS", "1500"),
            ("EDGEFARM_POLL_MS", "1"),
            ("EDGEFARM_AUTH_FAILURES_PER_MINUTE", "0"),
        ]))
        .expect("config");
        assert_eq!((c.lease_ms, c.poll_ms), (1500, 50));
        assert_eq!(c.auth_limit.failures, 0, "the limit can be turned off");
        let e = config_from_vars(vars(&[("EDGEFARM_SECRET", "short")])).unwrap_err();
        assert!(e.contains("EDGEFARM_SECRET"), "{e}");
        let e = config_from_vars(vars(&[
            ("EDGEFARM_SECRET", "0123456789"),
            ("EDGEFARM_HEARTBEAT_MS", "soon"),
        ]))
        .unwrap_err();
        assert!(e.contains("EDGEFARM_HEARTBEAT_MS"), "{e}");
    }

    #[test]
    fn nexrender_body_limit_is_a_variable_and_declared_lengths_over_it_are_413() {
        let vars = |n: &str| match n {
            "EDGEFARM_SECRET" => Some("0123456789".to_string()),
            "EDGEFARM_NEXRENDER_BODY_BYTES" => Some("2000000".to_string()),
            _ => None,
        };
        let c = config_from_vars(vars).expect("config");
        assert_eq!(c.nexrender.body_bytes, 2_000_000);
        let big = (READ_BEFORE_REFUSING_BYTES + 1).to_string();
        let over = declared_too_large(&c, "/api/v1/jobs", Some(&big)).expect("413");
        assert_eq!(over.status(), 413);
        assert!(String::from_utf8_lossy(over.body()).contains("2000000"));
        assert!(
            declared_too_large(&c, "/api/v1/jobs", Some("2000001")).is_none(),
            "read whole, then refused by the core"
        );
        let mut roomy = c.clone();
        roomy.nexrender.body_bytes = 64 << 20;
        assert!(declared_too_large(&roomy, "/api/v1/jobs", Some(&big)).is_none());
        assert!(declared_too_large(&c, "/v1/jobs", None).is_none());
    }

    #[test]
    fn follow_sends_changes_once_and_ends_on_a_finished_job() {
        let signal = |id: &str, finished| JobEvent {
            id: id.into(),
            finished,
        };
        let mut f = Follow::new(None);
        let running = b"id: 1\nevent: job\ndata: {\"state\":\"active\"}\n\n";
        let open = signal("1", false);
        let first = f.chunk(200, running, Some(&open)).expect("first event");
        assert!(first.starts_with(b"retry: 1000\n\nid: 1"));
        assert_eq!(
            f.chunk(200, running, Some(&open)),
            None,
            "an unchanged job sends nothing"
        );
        assert!(!f.done());
        let done = b"id: 2\nevent: job\ndata: {\"state\":\"completed\"}\n\n";
        let finished = signal("2", true);
        assert_eq!(
            f.chunk(200, done, Some(&finished)).as_deref(),
            Some(&done[..])
        );
        assert!(f.done());
        let mut resumed = Follow::new(Some("2".into()));
        assert_eq!(
            resumed.chunk(200, done, Some(&finished)),
            None,
            "Last-Event-ID is honoured"
        );
        let mut failing = Follow::new(None);
        assert!(failing
            .chunk(404, b"{}", None)
            .is_some_and(|c| c.ends_with(b"data: {}\n\n")));
        assert!(failing.done());
    }

    #[test]
    fn a_job_event_survives_the_trip_through_a_header() {
        for finished in [false, true] {
            let mut resp = http::Response::new(Bytes::new());
            let e = JobEvent {
                id: "1700000000000".into(),
                finished,
            };
            resp.extensions_mut().insert(e.clone());
            job_event_to_header(&mut resp);
            let value = resp
                .headers()
                .get(JOB_EVENT_HEADER)
                .and_then(|v| v.to_str().ok());
            assert_eq!(job_event_from_header(value), Some(e));
        }
        assert_eq!(job_event_from_header(Some("garbage")), None);
    }
}
