//! The Spin component on the wasmtime test host (tests/spin-host) as a [`Farm`]: what
//! scripts/spin-conformance built, named by `EDGEFARM_SPIN_HOST` (the host binary) and
//! `EDGEFARM_SPIN_COMPONENT` (build/spin/edgefarm.wasm). Tests that need it are `#[ignore]`d
//! (plain `cargo test` cannot build the component) and fail without them: nothing is skipped
//! and counted as a pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_until, Farm, SECRET};

/// A running test host serving the component, with the node tests' settings (3 s leases, 1 s
/// heartbeats, 200 ms polls); killed on drop.
pub struct SpinHost {
    pub url: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Farm for SpinHost {
    fn base_url(&self) -> &str {
        &self.url
    }

    fn work_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SpinHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SpinHost {
    /// The host binary and the component scripts/spin-conformance named (a failure without).
    fn built() -> (PathBuf, PathBuf) {
        let host = std::env::var_os("EDGEFARM_SPIN_HOST").map(PathBuf::from);
        let component = std::env::var_os("EDGEFARM_SPIN_COMPONENT").map(PathBuf::from);
        match (host, component) {
            (Some(h), Some(c)) => {
                assert!(h.is_file(), "EDGEFARM_SPIN_HOST: no file {}", h.display());
                assert!(
                    c.is_file(),
                    "EDGEFARM_SPIN_COMPONENT: no file {}",
                    c.display()
                );
                (h, c)
            }
            _ => panic!(
                "EDGEFARM_SPIN_HOST and EDGEFARM_SPIN_COMPONENT are unset: this test needs the \
                 Spin component and its test host (scripts/spin-conformance builds and names them)"
            ),
        }
    }

    /// Starts the host with the component's variables `vars` (beside the secret and the
    /// timings) on a fresh key-value file and waits until it answers.
    pub async fn start(vars: &[(&str, &str)]) -> SpinHost {
        let (host, component) = Self::built();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("host.log")).expect("host log");
        let mut cmd = Command::new(host);
        cmd.arg("--component")
            .arg(&component)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(dir.path().join("kv.db"));
        let timings = [
            ("EDGEFARM_SECRET", SECRET),
            ("EDGEFARM_LEASE_MS", "3000"),
            ("EDGEFARM_HEARTBEAT_MS", "1000"),
            ("EDGEFARM_POLL_MS", "200"),
        ];
        for (k, v) in timings.iter().chain(vars) {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start edgefarm-spin-host");
        let host = SpinHost {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        };
        let health = format!("{}/v1/health", host.url);
        let http = reqwest::Client::new();
        // Generous: the host compiles the component first, slowly on a loaded machine.
        wait_until(
            "the Spin host answers /v1/health",
            Duration::from_secs(300),
            || {
                let req = http.get(&health).send();
                async move { req.await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await;
        host
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }
}
