//! The webhook deliverer: asks the core what is due (`POST /v1/webhooks/due`), sends it, and
//! reports (`POST /v1/webhooks/report`). The native server runs it as a background task that
//! reaches its core over the core thread's channel ([`run`]); `edgefarm webhooks deliver` runs
//! the same [`round`] over HTTP for runtimes without background work (Workers KV mode, Spin).
//!
//! It sleeps until the next delivery is due: the core says when on every answer that leaves
//! something due (`Wake::webhook_due_ms`) and in each due/report answer, so an idle farm does
//! nothing. At start it asks once, which picks up what was pending when the server stopped
//! (the outbox is in the store, so a kill -9 loses no event).
//!
//! Receivers' host names are resolved here and every address is checked like the URL was at
//! submit (`core::webhooks::target::is_public`), so a public name that points at a private
//! address is refused too; redirects are not followed.

use super::now_ms;
use super::requests::Shell;
use super::wakes::Wakes;
use crate::core::webhooks::target::is_public;
use crate::wire::webhooks::{Due, Outgoing, Report, Reported, Reports};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two rounds that found nothing to send (a guard, never a schedule).
const IDLE_GUARD: Duration = Duration::from_millis(500);

/// Resolves receivers' names, keeping only the addresses the farm may call.
struct Resolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if ok.is_empty() {
                let why = format!(
                    "{host} resolves only to loopback or private addresses, which this farm does not call"
                );
                return Err(why.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client receivers are called with: 10 s timeout, no redirects, names resolved only
/// to addresses the farm may call.
pub fn http_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(Resolver { allow_private }))
        .user_agent("edgefarm-webhooks")
        .build()
}

/// How a deliverer reaches the core: `POST path` with a JSON body, the answer decoded.
pub trait Core {
    /// Sends one request with the farm secret.
    fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Bytes,
    ) -> impl std::future::Future<Output = anyhow::Result<T>>;
}

impl Core for Shell {
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<T> {
        core_call(self, path, body).await
    }
}

/// Runs the server's deliverer for ever.
pub async fn run(shell: Shell, wakes: Arc<Wakes>) {
    let settings = &shell.config.webhooks;
    let client = match http_client(settings.allow_private) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot make an HTTP client; nothing will be delivered");
            return;
        }
    };
    // Ask once at start: whatever was pending before a restart.
    let mut next: Option<u64> = Some(0);
    loop {
        let noted = wakes.webhook.notified();
        if let Some(at) = wakes.take_webhook_due() {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        let now = now_ms();
        match next {
            None => {
                noted.await;
                continue;
            }
            Some(at) if at > now => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                    _ = noted => continue,
                }
            }
            Some(_) => {}
        }
        let (sent, after) = match round(&shell, &client).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "webhooks");
                (0, Some(now_ms() + 5_000))
            }
        };
        next = after;
        if sent == 0 && next.is_some_and(|n| n <= now_ms()) {
            // Due now yet nothing handed out (another shell holds it, or the store is busy).
            tokio::time::sleep(IDLE_GUARD).await;
        }
    }
}

/// One round: take what is due, send it, report. Returns how many were sent and when to come
/// back (`None`: nothing pending), or why the core could not be asked or told (then the
/// requests handed out are sent again once their minute is up).
pub async fn round(
    core: &impl Core,
    client: &reqwest::Client,
) -> anyhow::Result<(usize, Option<u64>)> {
    use anyhow::Context as _;
    let due: Due = core
        .post("/v1/webhooks/due", Bytes::new())
        .await
        .context("cannot read which webhooks are due")?;
    if due.requests.is_empty() {
        return Ok((0, due.next_due_ms));
    }
    let sends = due.requests.iter().map(|o| send(client, o));
    let reports = futures_util::future::join_all(sends).await;
    let body = serde_json::to_vec(&Reports { reports }).unwrap_or_default();
    let reported = core
        .post::<Reported>("/v1/webhooks/report", Bytes::from(body))
        .await
        .context("cannot record how the webhook deliveries went")?;
    Ok((due.requests.len(), reported.next_due_ms))
}

async fn send(client: &reqwest::Client, out: &Outgoing) -> Report {
    let mut req = client.post(&out.url).body(out.body.clone());
    for [k, v] in &out.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let (status, error) = match req.send().await {
        Ok(resp) => (Some(resp.status().as_u16()), None),
        Err(e) => {
            // The whole chain: "error sending request" alone says nothing.
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why.push_str(": ");
                why.push_str(&s.to_string());
                src = s.source();
            }
            (None, Some(why))
        }
    };
    match (status, &error) {
        (Some(s), _) if (200..300).contains(&s) => {
            tracing::info!(url = %out.url, status = s, "webhook delivered")
        }
        (Some(s), _) => tracing::warn!(url = %out.url, status = s, "webhook refused"),
        (None, Some(e)) => tracing::warn!(url = %out.url, error = %e, "webhook not delivered"),
        _ => {}
    }
    Report {
        delivery: out.delivery.clone(),
        target: out.target,
        status,
        error,
    }
}

/// A request of the farm's own to its core, with the farm secret.
async fn core_call<T: serde::de::DeserializeOwned>(
    shell: &Shell,
    path: &str,
    body: Bytes,
) -> anyhow::Result<T> {
    let mut req = Request::new(body);
    *req.method_mut() = Method::POST;
    *req.uri_mut() = path.parse()?;
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", shell.config.secret).parse()?,
    );
    let resp = shell.call(req).await;
    anyhow::ensure!(
        resp.status() == StatusCode::OK,
        "{path} answered {}: {}",
        resp.status(),
        String::from_utf8_lossy(resp.body())
    );
    Ok(serde_json::from_slice(resp.body())?)
}
