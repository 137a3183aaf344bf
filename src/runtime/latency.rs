//! The request latency histogram of the native server, appended to `GET /v1/metrics`.
//!
//! It lives in the shell because only the shell sees a request from its first byte to its
//! answer (including the wait for the core thread); the core cannot read a clock. Plain atomics,
//! no lock: every request adds to a bucket from whichever tokio thread serves it. Routes are
//! grouped into a fixed set of labels so a path full of ids cannot grow the series without
//! bound. Long polls (`?wait=`) and event streams are left out: their duration is the client's
//! choice, not the server's speed.

use axum::extract::Request;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the buckets, seconds.
const BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Route groups, the `route` label.
const ROUTES: [&str; 8] = [
    "/",
    "/v1/jobs",
    "/v1/tasks",
    "/v1/queue",
    "/v1/nodes",
    "/v1/metrics",
    "/v1/preview",
    "other",
];

struct Series {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// Latency per route group.
pub struct Latency {
    series: [Series; ROUTES.len()],
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            series: std::array::from_fn(|_| Series {
                buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                count: AtomicU64::new(0),
                sum_us: AtomicU64::new(0),
            }),
        }
    }
}

fn route_group(path: &str) -> usize {
    let mut parts = path.trim_matches('/').split('/');
    let group = match (parts.next(), parts.next()) {
        (Some(""), None) => "/",
        (Some("v1"), Some("jobs")) if path.ends_with("/preview") => "/v1/preview",
        (Some("v1"), Some("tasks")) if path.ends_with("/preview") => "/v1/preview",
        (Some("v1"), Some(r)) => match r {
            "jobs" => "/v1/jobs",
            "tasks" => "/v1/tasks",
            "queue" => "/v1/queue",
            "nodes" => "/v1/nodes",
            "metrics" => "/v1/metrics",
            "preview" => "/v1/preview",
            _ => "other",
        },
        _ => "other",
    };
    ROUTES
        .iter()
        .position(|r| *r == group)
        .unwrap_or(ROUTES.len() - 1)
}

impl Latency {
    /// Counts one request to `path` that took `took`.
    pub fn observe(&self, path: &str, took: Duration) {
        let s = &self.series[route_group(path)];
        let secs = took.as_secs_f64();
        // Cumulative buckets are summed when rendering; store each request in its first bucket.
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            s.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The histogram in the Prometheus text format.
    pub fn render(&self) -> String {
        let name = "edgefarm_http_request_duration_seconds";
        let mut out = format!(
            "# HELP {name} Time from request to answer in the native server, by route group (long polls and event streams excluded).\n# TYPE {name} histogram\n"
        );
        for (route, s) in ROUTES.iter().zip(&self.series) {
            let mut cumulative = 0;
            for (bound, b) in BOUNDS.iter().zip(&s.buckets) {
                cumulative += b.load(Ordering::Relaxed);
                out += &format!("{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}\n");
            }
            let count = s.count.load(Ordering::Relaxed);
            let sum = s.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            out += &format!("{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}\n");
            out += &format!("{name}_sum{{route=\"{route}\"}} {sum}\n{name}_count{{route=\"{route}\"}} {count}\n");
        }
        out
    }
}

/// Serves `req` with `serve`, timing it, and appends the histogram to the core's
/// `GET /v1/metrics` answer.
pub async fn timed<F, Fut>(latency: Arc<Latency>, req: Request, serve: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let (start, timed) = (std::time::Instant::now(), is_timed(&req));
    let path = req.uri().path().to_string();
    let resp = serve(req).await;
    if timed {
        latency.observe(&path, start.elapsed());
    }
    if path == "/v1/metrics" {
        return append_to_metrics(resp, &latency).await;
    }
    resp
}

/// Whether a request's duration says something about the server (see the module doc).
fn is_timed(req: &axum::extract::Request) -> bool {
    let waits = crate::core::http::query(req.uri().query()).contains_key("wait");
    let streams = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    !waits && !streams
}

/// Appends the histogram to a successful Prometheus answer of the core; other answers pass.
async fn append_to_metrics(resp: Response, latency: &Latency) -> Response {
    let is_text = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if resp.status() != http::StatusCode::OK || !is_text {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let mut text = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    text.extend_from_slice(latency.render().as_bytes());
    Response::from_parts(parts, axum::body::Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_routes_grouped() {
        let l = Latency::default();
        l.observe("/v1/jobs/abc/tasks", Duration::from_micros(800));
        l.observe("/v1/jobs", Duration::from_millis(30));
        l.observe("/v1/tasks/j.1/preview", Duration::from_millis(2));
        let text = l.render();
        let line = |s: &str| text.lines().any(|l| l == s);
        assert!(line(
            "edgefarm_http_request_duration_seconds_bucket{route=\"/v1/jobs\",le=\"0.001\"} 1"
        ));
        assert!(line(
            "edgefarm_http_request_duration_seconds_bucket{route=\"/v1/jobs\",le=\"0.05\"} 2"
        ));
        assert!(line(
            "edgefarm_http_request_duration_seconds_count{route=\"/v1/preview\"} 1"
        ));
    }
}
