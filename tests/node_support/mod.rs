//! Shared harness for the end-to-end node tests: the real `edgefarm serve` binary on a free
//! port, real `edgefarm node` processes, and polling helpers with deadlines (never fixed sleeps).
#![allow(dead_code)]

mod blender;
#[allow(unused_imports)]
pub use blender::{blender, blender_running_for, make_scene, make_textured_scene, png_size};
mod spin;
#[allow(unused_imports)]
pub use spin::SpinHost;
mod video;
#[allow(unused_imports)]
pub use video::{ffmpeg, probe};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgefarm::node::client::Client;
use serde_json::Value;

#[path = "../support/serve.rs"]
mod serve;
#[allow(unused_imports)]
pub use serve::{free_port, wait_until, Build, Serve, BIN, SECRET};

/// A running server with the node tests' settings (3 s leases, 1 s heartbeats); killed on drop.
/// Everything of [`Serve`] (`dir`, `kill`, `restart`, `log`) is reached through it.
pub struct Server {
    pub url: String,
    serve: Serve,
}

impl std::ops::Deref for Server {
    type Target = Serve;
    fn deref(&self) -> &Serve {
        &self.serve
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Serve {
        &mut self.serve
    }
}

/// What the end-to-end tests need of a farm, whichever runtime serves it: `edgefarm serve`
/// ([`Server`]) or the Spin component on the wasmtime test host ([`SpinHost`]). Its secret is
/// [`SECRET`].
#[allow(async_fn_in_trait)]
pub trait Farm {
    /// The farm's base URL.
    fn base_url(&self) -> &str;

    /// A directory of the test's own, removed with the farm: nodes' state, CLI caches.
    fn work_dir(&self) -> &Path;

    fn client(&self) -> Client {
        Client::new(self.base_url(), SECRET).expect("client")
    }

    async fn get(&self, path: &str) -> Value {
        let c = self.client();
        c.send(c.request(reqwest::Method::GET, path))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {}", e.report()))
    }

    async fn submit(&self, spec: Value) -> String {
        let c = self.client();
        let job: Value = c
            .post_json("/v1/jobs", &spec)
            .await
            .unwrap_or_else(|e| panic!("submit: {}", e.report()));
        job["id"].as_str().expect("job id").to_string()
    }

    async fn tasks(&self, job: &str) -> Vec<Value> {
        self.get(&format!("/v1/jobs/{job}/tasks?limit=200")).await["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the job reaches `state`, failing early if it ends in another one.
    async fn wait_job(&self, job: &str, state: &str, within: Duration) -> Value {
        self.wait_job_explained(job, state, within, String::new)
            .await
    }

    /// [`Farm::wait_job`], adding `explain()` (a node's log, say) to a failure's message.
    async fn wait_job_explained(
        &self,
        job: &str,
        state: &str,
        within: Duration,
        explain: impl Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let j = self.get(&format!("/v1/jobs/{job}")).await;
            let now = j["state"].as_str().unwrap_or("").to_string();
            if now == state {
                return j;
            }
            assert!(
                !matches!(now.as_str(), "completed" | "failed" | "canceled"),
                "job ended {now}, expected {state}: {j:#}\ntasks: {:#}\n{}",
                Value::from(self.tasks(job).await),
                explain()
            );
            assert!(
                Instant::now() < deadline,
                "job not {state} in time: {j:#}\ntasks: {:#}\n{}",
                Value::from(self.tasks(job).await),
                explain()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Farm for Server {
    fn base_url(&self) -> &str {
        &self.url
    }

    fn work_dir(&self) -> &Path {
        self.serve.dir.path()
    }
}

impl Server {
    pub async fn start() -> Server {
        Self::start_polling_every(200).await
    }

    /// A server with the node tests' settings and what else `build` says (flags, environment).
    pub async fn start_with(build: serve::Build) -> Server {
        let serve = build
            .lease_ms(3000)
            .heartbeat_ms(1000)
            .poll_ms(200)
            .start()
            .await;
        Server {
            url: serve.base.clone(),
            serve,
        }
    }

    /// A server that tells nodes to poll every `poll_ms`.
    pub async fn start_polling_every(poll_ms: u64) -> Server {
        let serve = Serve::build()
            .lease_ms(3000)
            .heartbeat_ms(1000)
            .poll_ms(poll_ms)
            .start()
            .await;
        Server {
            url: serve.base.clone(),
            serve,
        }
    }

    // The [`Farm`] helpers, callable without the trait in scope.

    pub fn client(&self) -> Client {
        Farm::client(self)
    }

    pub async fn get(&self, path: &str) -> Value {
        Farm::get(self, path).await
    }

    pub async fn submit(&self, spec: Value) -> String {
        Farm::submit(self, spec).await
    }

    pub async fn tasks(&self, job: &str) -> Vec<Value> {
        Farm::tasks(self, job).await
    }

    pub async fn wait_job(&self, job: &str, state: &str, within: Duration) -> Value {
        Farm::wait_job(self, job, state, within).await
    }

    pub async fn wait_job_explained(
        &self,
        job: &str,
        state: &str,
        within: Duration,
        explain: impl Fn() -> String,
    ) -> Value {
        Farm::wait_job_explained(self, job, state, within, explain).await
    }
}

/// Runs the CLI against `farm` in `cwd` with `args` and `--json` (and `env`; the pack cache in
/// the farm's work dir); fails the test unless it succeeds; returns its answer.
pub fn cli_json(farm: &impl Farm, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .arg("--json")
        .current_dir(cwd)
        .env("EDGEFARM_URL", farm.base_url())
        .env("EDGEFARM_SECRET", SECRET)
        .env("EDGEFARM_PACK_CACHE", farm.work_dir().join("pack-cache"))
        .envs(env.iter().copied())
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "edgefarm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "edgefarm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "edgefarm {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// True when `path` is a directory with nothing in it.
pub fn empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// A running node process; killed on drop.
pub struct Node {
    pub child: Child,
    pub dir: PathBuf,
    pub name: String,
}

/// Node settings for a test.
pub struct NodeSpec<'a> {
    pub name: &'a str,
    pub slots: u32,
    pub project: &'a Path,
    pub output: &'a Path,
    /// Extra TOML (the `[types.*]` sections).
    pub types: &'a str,
}

impl Node {
    pub fn start(farm: &impl Farm, spec: NodeSpec<'_>) -> Node {
        let dir = farm.work_dir().join(format!("node-{}", spec.name));
        std::fs::create_dir_all(&dir).expect("node dir");
        let config = format!(
            "url = {:?}\nsecret = {SECRET:?}\nname = {:?}\nslots = {}\nproject_root = {:?}\noutput_root = {:?}\nstate_dir = {:?}\n{}",
            farm.base_url(), spec.name, spec.slots, spec.project, spec.output, dir.join("state"), spec.types
        );
        let path = dir.join("node.toml");
        std::fs::write(&path, config).expect("write node.toml");
        let log = std::fs::File::create(dir.join("node.log")).expect("node log");
        let child = Command::new(BIN)
            .arg("node")
            .arg("--config")
            .arg(&path)
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_URL")
            .env("EDGEFARM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start edgefarm node");
        Node {
            child,
            dir,
            name: spec.name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not exit in time; log:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// The node id from its state file (after enrolment).
    pub async fn id(&self) -> String {
        let path = self.dir.join("state/node.json");
        wait_until("the node enrols", Duration::from_secs(20), || async {
            path.is_file()
        })
        .await;
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("node.json"))
                .expect("json");
        state["node_id"].as_str().expect("node_id").to_string()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
