//! HTTP client for the node routes of the API (reqwest with rustls).
//!
//! Every call has a timeout: a hung server must never stall a slot's heartbeat loop or the
//! supervisor. Error answers are turned into [`NodeError::Api`] carrying the server's code, so
//! callers can tell a stale lease (final) from an outage (retry).

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::NodeError;
use crate::core::model::NodeState;
use crate::wire::errors::{ErrorBody, ErrorDetail};
use crate::wire::jobs::Deleted;
use crate::wire::nodes::{Enrol, Enrolment, Node};
use crate::wire::previews::PreviewStored;
use crate::wire::queue::{Poll, PollAnswer, QueueSettings};
use crate::wire::tasks::{Heartbeat, HeartbeatAnswer, Release, Task};

/// What a heartbeat answer tells the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatReply {
    /// Keep rendering; `node_state` as the server sees this node.
    Keep { node_state: NodeState },
    /// The lease is no longer ours (409 / `keep_running: false`): kill the process, no ack.
    /// `why` is the server's message, when it sent one.
    Stop { why: String },
}

/// What became of a preview upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewReply {
    /// Stored as the job's (and the farm's) latest preview.
    Stored,
    /// 429: another preview of this task was accepted too recently; not an error.
    Throttled,
}

/// A client bound to one server and one credential (node token or farm secret).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) authenticating with `bearer`.
    pub fn new(base: &str, bearer: &str) -> Result<Self, NodeError> {
        // TLS policy, timeouts: one builder for node and CLI.
        let http = crate::net::http_client(base)?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            bearer: bearer.to_string(),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The credential this client sends.
    pub fn bearer(&self) -> &str {
        &self.bearer
    }

    /// `POST /v1/nodes` with the farm secret this client holds.
    pub async fn enrol(&self, body: &Enrol) -> Result<Enrolment, NodeError> {
        self.send(self.http.post(self.url("/v1/nodes")).json(body))
            .await
    }

    /// `GET /v1/queue/{queue}`.
    pub async fn queue_settings(&self, queue: &str) -> Result<QueueSettings, NodeError> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/queue/{}", enc(queue)))),
        )
        .await
    }

    /// `POST /v1/queue/{queue}`: acks and claims. `None` on 204 (nothing to say, nothing claimed).
    /// `wait_s` > 0 asks the server to hold the request until a task can be claimed (long poll),
    /// so an idle node starts a new job within moments instead of one poll interval later.
    pub async fn poll(
        &self,
        queue: &str,
        body: &Poll,
        wait_s: u64,
    ) -> Result<Option<PollAnswer>, NodeError> {
        let mut path = format!("/v1/queue/{}", enc(queue));
        if wait_s > 0 {
            path.push_str(&format!("?wait={wait_s}"));
        }
        let req = self.http.post(self.url(&path)).json(body);
        let resp = self.authed(req).send().await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        decode(resp).await.map(Some)
    }

    /// `POST /v1/tasks/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        task: &str,
        body: &Heartbeat,
    ) -> Result<HeartbeatReply, NodeError> {
        let url = self.url(&format!("/v1/tasks/{}/heartbeat", enc(task)));
        let resp = self.authed(self.http.post(url).json(body)).send().await?;
        if resp.status() == StatusCode::CONFLICT {
            let why = match decode::<serde_json::Value>(resp).await {
                Err(NodeError::Api { message, .. }) => message,
                _ => String::new(),
            };
            return Ok(HeartbeatReply::Stop { why });
        }
        let answer: HeartbeatAnswer = decode(resp).await?;
        Ok(if answer.keep_running {
            HeartbeatReply::Keep {
                node_state: answer.node_state,
            }
        } else {
            HeartbeatReply::Stop { why: String::new() }
        })
    }

    /// `POST /v1/tasks/{id}/preview`: a PNG or JPEG thumbnail, with the lease in a header.
    pub async fn preview(
        &self,
        task: &str,
        lease: &str,
        content_type: &'static str,
        image: Vec<u8>,
    ) -> Result<PreviewReply, NodeError> {
        let url = self.url(&format!("/v1/tasks/{}/preview", enc(task)));
        let req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("x-edgefarm-lease", lease)
            .body(image);
        let resp = self.authed(req).send().await?;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            return Ok(PreviewReply::Throttled);
        }
        decode::<PreviewStored>(resp).await?;
        Ok(PreviewReply::Stored)
    }

    /// `GET /v1/tasks/{id}` (a node may read the tasks it holds or held).
    pub async fn task(&self, id: &str) -> Result<Task, NodeError> {
        self.send(self.http.get(self.url(&format!("/v1/tasks/{}", enc(id)))))
            .await
    }

    /// `DELETE /v1/nodes/{id}` (farm secret).
    pub async fn delete_node(&self, id: &str) -> Result<(), NodeError> {
        self.send::<Deleted>(
            self.http
                .delete(self.url(&format!("/v1/nodes/{}", enc(id)))),
        )
        .await
        .map(drop)
    }

    /// `POST /v1/nodes/{id}/leave`: this node is stopping; the server shows it offline at once.
    /// `Ok(false)` from a server that does not have the route yet (404/405/403).
    pub async fn leave(&self, id: &str) -> Result<bool, NodeError> {
        let url = self.url(&format!("/v1/nodes/{}/leave", enc(id)));
        let resp = self.authed(self.http.post(url)).send().await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            // An older server: no such route (404/405), or the admin-only node actions (403).
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::FORBIDDEN => {
                Ok(false)
            }
            _ => decode::<Node>(resp).await.map(|_| true),
        }
    }

    /// `POST /v1/tasks/{id}/release`: hand the task back at once (shutdown).
    pub async fn release(&self, task: &str, lease: &str) -> Result<(), NodeError> {
        let url = self.url(&format!("/v1/tasks/{}/release", enc(task)));
        let body = Release {
            lease: lease.to_string(),
        };
        self.send::<Task>(self.http.post(url).json(&body))
            .await
            .map(drop)
    }

    /// `GET /v1/nodes/{id}`.
    pub async fn node(&self, id: &str) -> Result<Node, NodeError> {
        self.send(self.http.get(self.url(&format!("/v1/nodes/{}", enc(id)))))
            .await
    }

    /// Sends any request with the bearer and decodes a JSON answer (used by the CLI too).
    pub async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, NodeError> {
        decode(self.authed(req).send().await?).await
    }

    /// Sends any request with the bearer and returns the body text of a 2xx answer.
    pub async fn send_text(&self, req: reqwest::RequestBuilder) -> Result<String, NodeError> {
        let resp = self.authed(req).send().await?;
        if resp.status().is_success() {
            return Ok(resp.text().await?);
        }
        decode::<serde_json::Value>(resp)
            .await
            .map(|v| v.to_string())
    }

    /// Builds a request for `path` (starting with `/`).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// `POST` of a JSON body to `path`.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, NodeError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(&self.bearer)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Percent-encodes one path segment (ids and queue names are validated, this is belt and braces).
pub fn enc(segment: &str) -> String {
    utf8_percent_encode(segment, NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
}

async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, NodeError> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| NodeError::Api {
            status: status.as_u16(),
            code: "bad_answer".into(),
            message: format!("cannot read the server's answer: {e}"),
        });
    }
    let err = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.error)
        .unwrap_or_else(|_| ErrorDetail {
            code: status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            field: None,
        });
    Err(NodeError::Api {
        status: status.as_u16(),
        code: err.code,
        message: err.message,
    })
}
