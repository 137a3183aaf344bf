//! `edgefarm drain|undrain NODE` and `edgefarm nodes remove NODE` take a node's name or the
//! start of its id (issue 15, item 6); an ambiguous name is refused with the candidates, and
//! `edgefarm nodes` shows names, states (offline included) and live leases.

use serde_json::{json, Value};
use std::process::Command;

#[path = "support/serve.rs"]
mod serve;

use serve::{Serve, BIN};
const SECRET: &str = "cli-nodes-secret";

struct Farm {
    _server: Serve,
    base: String,
}

impl Farm {
    async fn start() -> Farm {
        let server = Serve::build()
            .memory()
            .secret(SECRET)
            .poll_ms(200)
            .heartbeat_ms(500)
            .env("EDGEFARM_LOG", "warn")
            .start()
            .await;
        Farm {
            base: server.base.clone(),
            _server: server,
        }
    }

    async fn call(&self, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = reqwest::Client::new()
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Enrols a node; returns (id, token).
    async fn enrol(&self, name: &str) -> (String, String) {
        let (s, b) = self
            .call(
                SECRET,
                "POST",
                "/v1/nodes",
                json!({"name": name, "types": ["command"]}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        (
            b["node"]["id"].as_str().unwrap_or_default().to_string(),
            b["token"].as_str().unwrap_or_default().to_string(),
        )
    }

    async fn node(&self, id: &str) -> Value {
        self.call(SECRET, "GET", &format!("/v1/nodes/{id}"), Value::Null)
            .await
            .1
    }

    /// Runs the CLI against this farm: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("EDGEFARM_URL", &self.base)
            .env("EDGEFARM_SECRET", SECRET)
            .env("HOME", "/nonexistent")
            .output()
            .expect("run edgefarm");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_addressed_by_name_or_id_prefix() {
    let farm = Farm::start().await;
    let (a, _) = farm.enrol("nodeA").await;
    let (b, b_token) = farm.enrol("nodeB").await;
    let (t1, _) = farm.enrol("twin").await;
    let (t2, _) = farm.enrol("twin").await;

    let (code, out, err) = farm.cli(&["drain", "nodeB"]);
    assert_eq!(code, Some(0), "drain by name: {out}{err}");
    assert_eq!(farm.node(&b).await["draining"], true, "nodeB is drained");
    let (code, out, err) = farm.cli(&["undrain", "nodeB"]);
    assert_eq!(code, Some(0), "undrain by name: {out}{err}");
    assert_eq!(farm.node(&b).await["draining"], false);

    let prefix = &a[..a.len() - 3];
    let (code, out, err) = farm.cli(&["drain", prefix]);
    assert_eq!(code, Some(0), "drain by id prefix: {out}{err}");
    assert_eq!(farm.node(&a).await["draining"], true);

    let (code, _, err) = farm.cli(&["drain", "twin"]);
    assert_eq!(code, Some(2), "an ambiguous name is a usage error: {err}");
    assert!(
        err.contains(&t1) && err.contains(&t2),
        "the error lists the candidates: {err}"
    );
    let (code, _, err) = farm.cli(&["drain", "nobody"]);
    assert_ne!(code, Some(0), "an unknown node is an error: {err}");
    assert!(err.contains("nobody"), "{err}");

    // `edgefarm nodes`: names, offline state, and the live lease count of each node.
    farm.call(
        SECRET,
        "POST",
        "/v1/jobs",
        json!({"type": "command", "frames": "1", "params": {"program": "p"}}),
    )
    .await;
    let (s, got) = farm
        .call(&b_token, "POST", "/v1/queue/default", json!({"max": 1}))
        .await;
    assert_eq!(s, 200, "nodeB claims the task: {got}");
    let (s, _) = farm
        .call(
            SECRET,
            "POST",
            &format!("/v1/nodes/{t1}/leave"),
            Value::Null,
        )
        .await;
    assert_eq!(s, 200);
    let (code, out, err) = farm.cli(&["nodes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let row = |name: &str, id: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(name) && l.contains(id))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    let nb = row("nodeB", &b);
    assert_eq!(
        (nb.get(1).map(String::as_str), nb.get(3).map(String::as_str)),
        (Some("awake"), Some("1")),
        "nodeB is awake with one lease: {out}"
    );
    assert_eq!(
        row("twin", &t1).get(1).map(String::as_str),
        Some("offline"),
        "a node that left is offline: {out}"
    );

    let (code, out, err) = farm.cli(&["nodes", "remove", "nodeA"]);
    assert_eq!(code, Some(0), "remove by name: {out}{err}");
    let (s, _) = farm
        .call(SECRET, "GET", &format!("/v1/nodes/{a}"), Value::Null)
        .await;
    assert_eq!(s, 404, "nodeA is gone");
}

/// `edgefarm nodes | head -0`: a listing whose reader has gone ends quietly (killed by SIGPIPE,
/// as Unix tools are), never with a panic trace. The read end is closed before the command
/// starts, so its first write certainly finds no reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_reader_has_gone_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    let farm = Farm::start().await;
    farm.enrol("box-1").await;
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) into a local array; both ends are owned right after.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: fresh descriptors from pipe(2), owned once each.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    let out = Command::new(BIN)
        .args(["nodes", "--url", &farm.base, "--secret", SECRET])
        .env_remove("EDGEFARM_SECRET")
        .stdout(std::process::Stdio::from(write_end))
        .output()
        .expect("run edgefarm nodes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}
