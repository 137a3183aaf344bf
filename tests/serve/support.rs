//! Helpers of the `serve` suite on top of the shared server starter (tests/support/serve.rs):
//! its requests, and a real `edgefarm node` with the `ok` command program.

pub use crate::serve::{wait_until, Serve, BIN, SECRET};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `edgefarm serve` over http with `extra` flags and a 200 ms poll interval.
pub async fn start(extra: &[&str]) -> Serve {
    Serve::build().poll_ms(200).args(extra).start().await
}

impl Serve {
    /// Submits a `command` job of `frames` one-frame tasks running `program`; returns its id.
    pub async fn submit(&self, frames: &str, program: &str) -> String {
        let job: Value = self
            .http()
            .post(self.url("/v1/jobs"))
            .bearer_auth(SECRET)
            .json(
                &json!({"type": "command", "frames": frames, "chunk_size": 1,
                "params": {"program": program, "args": ["{frame}"]}}),
            )
            .send()
            .await
            .expect("submit")
            .json()
            .await
            .expect("job json");
        job["id"].as_str().expect("job id").to_string()
    }

    pub async fn job_state(&self, id: &str) -> String {
        let job: Value = self
            .http()
            .get(self.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(SECRET)
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("job json");
        job["state"].as_str().unwrap_or("").to_string()
    }

    /// One queue request as node `node`: acks `ack` (a claimed task's JSON) as done, claims one.
    /// Returns the claimed task, if any.
    pub async fn claim(&self, node: &str, ack: Option<&Value>) -> Option<Value> {
        let tasks: Vec<Value> = ack
            .map(|t| vec![json!({"_id": t["_id"], "lease": t["lease"], "status": "done"})])
            .unwrap_or_default();
        let resp = self
            .http()
            .post(self.url("/v1/queue/default"))
            .bearer_auth(SECRET)
            .json(&json!({"node": node, "max": 1, "tasks": tasks}))
            .send()
            .await
            .expect("claim");
        if resp.status() == 204 {
            return None;
        }
        assert_eq!(resp.status(), 200, "a claim is answered 200 or 204");
        let body: Value = resp.json().await.expect("claim json");
        body["tasks"].get(0).cloned()
    }
}

/// A program for `command` jobs that succeeds.
pub fn true_program() -> PathBuf {
    ["/bin/true", "/usr/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("a `true` program")
}

/// A real `edgefarm node` with the `ok` command program, started with `extra` flags.
pub fn start_node(dir: &Path, url: &str, name: &str, extra: &[&str]) -> Child {
    let node_dir = dir.join(format!("node-{name}"));
    std::fs::create_dir_all(node_dir.join("out")).expect("node dir");
    let config = format!(
        "url = {url:?}\nsecret = {SECRET:?}\nname = {name:?}\nslots = 1\nproject_root = {:?}\noutput_root = {:?}\nstate_dir = {:?}\n[types.command.programs]\nok = {:?}\n",
        node_dir, node_dir.join("out"), node_dir.join("state"), true_program()
    );
    let path = node_dir.join("node.toml");
    std::fs::write(&path, config).expect("node.toml");
    let log = std::fs::File::create(node_dir.join("node.log")).expect("node log");
    Command::new(BIN)
        .arg("node")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .env_remove("EDGEFARM_SECRET")
        .env_remove("EDGEFARM_URL")
        .env_remove("EDGEFARM_CA_CERT")
        .env("EDGEFARM_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start edgefarm node")
}

pub fn node_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("node-{name}/node.log"))).unwrap_or_default()
}
