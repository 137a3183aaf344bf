//! The two protocols the load generator speaks: edgefarm's `/v1` (jobs, and the node queue
//! route with acks riding on the next claim, as `edgefarm node` does) and nexrender-server's
//! `/api/v1` (create, pickup, `PUT state: finished`), which edgefarm's façade also serves.
//! Every request goes through one keep-alive `reqwest::Client` per simulated client.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Which API to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// edgefarm's own API.
    V1,
    /// nexrender-server's API.
    Nexrender,
}

/// Where to send requests and how to authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: String,
    pub secret: String,
    pub protocol: Protocol,
    /// Tasks per `/v1` job (nexrender jobs always have one).
    pub tasks_per_job: u64,
    /// The `/v1` queue jobs go to and tasks are claimed from.
    pub queue: String,
}

/// One simulated client: its own connection and, for a `/v1` picker, the ack it still owes.
pub struct Client {
    http: reqwest::Client,
    target: Target,
    name: String,
    pending_ack: Option<Value>,
}

/// What one claim cycle did.
pub enum Cycle {
    /// A task (job) was claimed; the latencies of the requests it took.
    Claimed(Vec<Duration>),
    /// Nothing was claimable.
    Empty,
}

/// Time allowed for one request; a server slower than this is reported as failing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    pub fn new(target: &Target, name: String) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        Ok(Client {
            http,
            target: target.clone(),
            name,
            pending_ack: None,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.target.base);
        let req = self.http.request(method, url);
        match self.target.protocol {
            Protocol::V1 => req.bearer_auth(&self.target.secret),
            Protocol::Nexrender => req
                .header("nexrender-secret", &self.target.secret)
                .header("nexrender-name", &self.name),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value, Duration)> {
        let start = Instant::now();
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let took = start.elapsed();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, body, took))
    }

    /// Submits one job; returns its id and the request's latency.
    pub async fn submit(&self, n: u64) -> anyhow::Result<(String, Duration)> {
        let (path, body, id_field) = match self.target.protocol {
            Protocol::V1 => {
                let frames = match self.target.tasks_per_job {
                    0 | 1 => "1".to_string(),
                    k => format!("1-{k}"),
                };
                let body = json!({"name": format!("load {n}"), "type": "command", "frames": frames,
                    "queue": self.target.queue,
                    "chunk_size": 1, "params": {"program": "load", "args": ["{frame}"]}});
                ("/v1/jobs", body, "id")
            }
            Protocol::Nexrender => {
                let body = json!({"template": {"src": "file:///load/template.aep",
                    "composition": "main"}, "assets": [], "custom": {"n": n}});
                ("/api/v1/jobs", body, "uid")
            }
        };
        let (status, job, took) = self
            .send(self.request(reqwest::Method::POST, path).json(&body))
            .await?;
        if !(200..300).contains(&status) {
            bail!("submit answered {status}: {job}");
        }
        let id = job[id_field]
            .as_str()
            .context("the submitted job has no id")?
            .to_string();
        Ok((id, took))
    }

    /// Claims one task (one job) and finishes it: for `/v1` one queue request that also acks the
    /// previous claim; for nexrender a pickup and a `PUT state: finished`.
    pub async fn cycle(&mut self) -> anyhow::Result<Cycle> {
        match self.target.protocol {
            Protocol::V1 => self.cycle_v1().await,
            Protocol::Nexrender => self.cycle_nexrender().await,
        }
    }

    async fn cycle_v1(&mut self) -> anyhow::Result<Cycle> {
        let acks: Vec<Value> = self.pending_ack.take().into_iter().collect();
        let body = json!({"node": self.name, "max": 1, "types": ["command"], "tasks": acks});
        let (status, answer, took) = self
            .send(
                self.request(
                    reqwest::Method::POST,
                    &format!("/v1/queue/{}", self.target.queue),
                )
                .json(&body),
            )
            .await?;
        if status == 204 {
            return Ok(Cycle::Empty);
        }
        if status != 200 {
            bail!("claim answered {status}: {answer}");
        }
        if let Some(ack) = answer["acks"].as_array().and_then(|a| a.first()) {
            if ack["ok"] != json!(true) {
                bail!("an ack was refused: {ack}");
            }
        }
        let Some(task) = answer["tasks"].as_array().and_then(|t| t.first()) else {
            return Ok(Cycle::Empty);
        };
        self.pending_ack = Some(json!({"_id": task["_id"], "lease": task["lease"],
            "status": "done", "result": {"exit_code": 0}}));
        Ok(Cycle::Claimed(vec![took]))
    }

    async fn cycle_nexrender(&mut self) -> anyhow::Result<Cycle> {
        let (status, job, pickup) = self
            .send(self.request(reqwest::Method::GET, "/api/v1/jobs/pickup"))
            .await?;
        if status != 200 {
            bail!("pickup answered {status}: {job}");
        }
        let Some(uid) = job["uid"].as_str() else {
            return Ok(Cycle::Empty);
        };
        let path = format!("/api/v1/jobs/{uid}");
        let (status, answer, put) = self
            .send(
                self.request(reqwest::Method::PUT, &path)
                    .json(&json!({"state": "finished"})),
            )
            .await?;
        if status != 200 {
            bail!("PUT finished answered {status}: {answer}");
        }
        Ok(Cycle::Claimed(vec![pickup, put]))
    }

    /// Sends the ack this client still owes, if any (end of a run).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(ack) = self.pending_ack.take() {
            let id = ack["_id"].as_str().unwrap_or_default().to_string();
            let (status, answer, _) = self
                .send(
                    self.request(reqwest::Method::POST, &format!("/v1/tasks/{id}/ack"))
                        .json(&ack),
                )
                .await?;
            if status != 200 {
                bail!("ack answered {status}: {answer}");
            }
        }
        Ok(())
    }

    /// Claims one `/v1` task without acking anything: its id and lease, `None` when empty.
    pub async fn claim_one(&self) -> anyhow::Result<Option<(String, Value)>> {
        let body = json!({"node": self.name, "max": 1, "types": ["command"]});
        let path = format!("/v1/queue/{}", self.target.queue);
        let (status, answer, _) = self
            .send(self.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        match status {
            204 => Ok(None),
            200 => Ok(answer["tasks"]
                .as_array()
                .and_then(|t| t.first())
                .and_then(|t| Some((t["_id"].as_str()?.to_string(), t["lease"].clone())))),
            _ => bail!("claim answered {status}: {answer}"),
        }
    }

    /// Acks a `/v1` task done on its own request.
    pub async fn ack(&self, id: &str, lease: &Value) -> anyhow::Result<()> {
        let body = json!({"lease": lease, "status": "done", "result": {"exit_code": 0}});
        let path = format!("/v1/tasks/{id}/ack");
        let (status, answer, _) = self
            .send(self.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        if status != 200 {
            bail!("ack answered {status}: {answer}");
        }
        Ok(())
    }

    /// A `/v1` job as `GET /v1/jobs/{id}` shows it, `None` when it does not exist.
    pub async fn job(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let path = format!("/v1/jobs/{id}");
        let (status, body, _) = self.send(self.request(reqwest::Method::GET, &path)).await?;
        match status {
            200 | 202 => Ok(Some(body)),
            404 => Ok(None),
            _ => bail!("job read answered {status}: {body}"),
        }
    }

    /// Reads one job's status; returns the latency.
    pub async fn read(&self, id: &str) -> anyhow::Result<Duration> {
        let path = match self.target.protocol {
            Protocol::V1 => format!("/v1/jobs/{id}"),
            Protocol::Nexrender => format!("/api/v1/jobs/{id}/status"),
        };
        let (status, body, took) = self.send(self.request(reqwest::Method::GET, &path)).await?;
        if !(200..300).contains(&status) {
            bail!("status read answered {status}: {body}");
        }
        Ok(took)
    }
}
