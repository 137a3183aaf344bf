//! The real `edgefarm serve` binary on a free port, with its log, CPU time and polling helpers.

use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "secret-for-serve-tests";
pub const BIN: &str = env!("CARGO_BIN_EXE_edgefarm");

/// A running server; killed on drop.
pub struct Serve {
    pub base: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub child: Child,
    /// The client used to talk to it (trusts the test CA when serving https).
    pub http: reqwest::Client,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Serve {
    /// `edgefarm serve` over http with `extra` flags.
    pub async fn start(extra: &[&str]) -> Serve {
        Self::start_with("http", reqwest::Client::new(), extra, None).await
    }

    /// `edgefarm serve` with `extra` flags, reached as `scheme` with `http`, in `dir` if given.
    pub async fn start_with(
        scheme: &str,
        http: reqwest::Client,
        extra: &[&str],
        dir: Option<tempfile::TempDir>,
    ) -> Serve {
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let child = Command::new(BIN)
            .args(["serve", "--secret", SECRET, "--poll-ms", "200"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.path().join("data"))
            .args(extra)
            .env_remove("EDGEFARM_SECRET")
            .env("EDGEFARM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start edgefarm serve");
        let serve = Serve {
            base: format!("{scheme}://127.0.0.1:{port}"),
            port,
            dir,
            child,
            http,
        };
        let health = format!("{}/v1/health", serve.base);
        wait_until(
            "the server answers /v1/health",
            Duration::from_secs(30),
            || {
                let req = serve.http.get(&health).send();
                async move { req.await.is_ok_and(|r| r.status() == 200) }
            },
        )
        .await;
        serve
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// CPU time the server process has used, in clock ticks (utime + stime of /proc/PID/stat).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let num = |i: usize| fields[i].parse::<u64>().expect("ticks");
        num(11) + num(12)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Submits a `command` job of `frames` one-frame tasks running `program`; returns its id.
    pub async fn submit(&self, frames: &str, program: &str) -> String {
        let job: Value = self
            .http
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
            .http
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
            .http
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

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
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
