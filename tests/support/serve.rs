//! The one way the tests start `edgefarm serve`: the real binary on a free port (or one the test
//! chooses), its data and log in a directory of its own, waited for until `GET /v1/health`
//! answers 200, killed when dropped. Every suite that needs a server includes this file
//! (`#[path = "support/serve.rs"] mod serve;`), so flags, readiness and clean-up are written once.
//!
//! ```ignore
//! let server = Serve::build().lease_ms(1_500).start().await;
//! let secret = Serve::build().memory().secret("s3cret-for-tests").start().await;
//! ```
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_edgefarm");
/// The secret of a server started without [`Build::secret`].
pub const SECRET: &str = "secret-for-tests";
/// How long a server may take to answer its first health check (a loaded machine can take
/// seconds to start the binary).
const START_WITHIN: Duration = Duration::from_secs(60);

/// How to start a server; see [`Serve::build`].
#[derive(Clone)]
pub struct Build {
    secret: Option<String>,
    memory: bool,
    data: String,
    port: Option<u16>,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    scheme: &'static str,
    http: reqwest::Client,
}

impl Build {
    /// The farm secret (default [`SECRET`]).
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = Some(secret.to_string());
        self
    }

    /// No `--secret`: the server makes one and keeps it in its data directory.
    pub fn generated_secret(mut self) -> Self {
        self.secret = None;
        self
    }

    /// `--data NAME`, relative to the server's directory (and working directory; default
    /// `data`).
    pub fn data_dir(mut self, name: &str) -> Self {
        self.data = name.to_string();
        self
    }

    /// `--memory`: nothing survives a restart.
    pub fn memory(mut self) -> Self {
        self.memory = true;
        self
    }

    /// Listen on this port rather than a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--lease-ms`.
    pub fn lease_ms(self, ms: u64) -> Self {
        self.flag("--lease-ms", &ms.to_string())
    }

    /// `--heartbeat-ms`.
    pub fn heartbeat_ms(self, ms: u64) -> Self {
        self.flag("--heartbeat-ms", &ms.to_string())
    }

    /// `--poll-ms`.
    pub fn poll_ms(self, ms: u64) -> Self {
        self.flag("--poll-ms", &ms.to_string())
    }

    /// A flag and its value.
    pub fn flag(mut self, name: &str, value: &str) -> Self {
        self.flags.extend([name.to_string(), value.to_string()]);
        self
    }

    /// More arguments, as they are.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.flags.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable of the server (`EDGEFARM_LOG` is `info` unless set here).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Reached over https with `http` (which trusts the test CA); the TLS flags go in `args`.
    pub fn https(mut self, http: reqwest::Client) -> Self {
        self.scheme = "https";
        self.http = http;
        self
    }

    /// Starts the server in a new temporary directory and waits until it answers.
    pub async fn start(self) -> Serve {
        self.start_in(tempfile::tempdir().expect("tempdir")).await
    }

    /// Starts the server in `dir` (its data in `dir/data`, its log in `dir/server.log`),
    /// removed with the server.
    pub async fn start_in(self, dir: tempfile::TempDir) -> Serve {
        let path = dir.path().to_path_buf();
        self.start_dir(Dir {
            path,
            _temp: Some(dir),
        })
        .await
    }

    /// Starts the server in `dir`, which is kept after the server is gone.
    pub async fn start_at(self, dir: PathBuf) -> Serve {
        self.start_dir(Dir {
            path: dir,
            _temp: None,
        })
        .await
    }

    async fn start_dir(self, dir: Dir) -> Serve {
        let port = self.port.unwrap_or_else(free_port);
        let mut serve = Serve {
            base: format!("{}://127.0.0.1:{port}", self.scheme),
            port,
            dir,
            child: None,
            build: self,
        };
        serve.spawn();
        serve.wait_healthy().await;
        serve
    }
}

/// The directory a server runs in.
pub struct Dir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Dir {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// A running `edgefarm serve`; killed on drop.
pub struct Serve {
    /// `http://127.0.0.1:PORT` (or https).
    pub base: String,
    pub port: u16,
    /// The server's working directory: holds its data directory, `server.log` (stderr) and
    /// `server.out` (stdout).
    pub dir: Dir,
    child: Option<Child>,
    build: Build,
}

impl Serve {
    /// Settings for a server: SQLite in a temporary directory, secret [`SECRET`], the binary's
    /// defaults for everything else.
    pub fn build() -> Build {
        Build {
            secret: Some(SECRET.to_string()),
            memory: false,
            data: "data".to_string(),
            port: None,
            flags: Vec::new(),
            env: Vec::new(),
            scheme: "http",
            http: reqwest::Client::new(),
        }
    }

    fn spawn(&mut self) {
        let b = &self.build;
        let file = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .expect("server log file")
        };
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--data", &b.data])
            .current_dir(self.dir.path());
        if let Some(s) = &b.secret {
            cmd.args(["--secret", s]);
        }
        if b.memory {
            cmd.arg("--memory");
        }
        cmd.args(&b.flags)
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_URL")
            .env_remove("EDGEFARM_DATA")
            .env("EDGEFARM_LOG", "info")
            .envs(b.env.iter().map(|(k, v)| (k, v)))
            .stdout(file("server.out"))
            .stderr(file("server.log"));
        self.child = Some(cmd.spawn().expect("start edgefarm serve"));
    }

    /// Polls `GET /v1/health` until it answers 200; panics with the server's log if it does not
    /// within a minute or the process exits.
    pub async fn wait_healthy(&mut self) {
        let (url, http) = (self.url("/v1/health"), self.build.http.clone());
        let deadline = Instant::now() + START_WITHIN;
        loop {
            let answer = http.get(&url).timeout(Duration::from_secs(5)).send().await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "edgefarm serve did not answer on {} ({}); log:\n{}",
                self.base,
                exited.map_or("still running".to_string(), |s| s.to_string()),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILLs the server (an outage); [`Serve::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERMs the server and waits for it to exit; returns how it exited.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.child.take().and_then(|mut c| c.wait().ok())
    }

    /// Starts the server again on the same port and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_healthy().await;
    }

    /// The data directory (`--data`).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join(&self.build.data)
    }

    /// The secret the server was started with (`None` when it made its own).
    pub fn secret(&self) -> Option<&str> {
        self.build.secret.as_deref()
    }

    /// The client reaching the server (trusts the test CA when serving https).
    pub fn http(&self) -> &reqwest::Client {
        &self.build.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the server wrote to stderr so far (the log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Everything the server printed to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("the server is running");
        i32::try_from(child.id()).expect("pid")
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on the pid of our own child, not reaped yet.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// CPU time the server process has used, in clock ticks (utime + stime of /proc/PID/stat).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("/proc/PID/stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let num = |i: usize| fields[i].parse::<u64>().expect("ticks");
        num(11) + num(12)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
