//! End to end with the real server binary and `command` jobs (no Blender needed): a failing
//! program is retried on another node and fails the job, and `edgefarm job` shows its log tail.

mod node_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use node_support::{Node, NodeSpec, Serve, Server, BIN, SECRET};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_command_is_retried_elsewhere_then_fails_the_job() {
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("out");
    std::fs::create_dir_all(&project).expect("project");
    let types = format!(
        "[types.command.programs]\nfail = {:?}\n",
        fixture("fail.sh")
    );
    let spec = |name| NodeSpec {
        name,
        slots: 1,
        project: &project,
        output: &output,
        types: &types,
    };
    let (a, b) = (
        Node::start(&server, spec("a")),
        Node::start(&server, spec("b")),
    );
    let (id_a, id_b) = (a.id().await, b.id().await);
    let job = server
        .submit(
            json!({"type": "command", "frames": "1-2", "chunk_size": 2, "max_attempts": 2,
            "params": {"program": "fail", "args": ["{from}", "{to}"]}}),
        )
        .await;
    server
        .wait_job(&job, "failed", Duration::from_secs(60))
        .await;
    let tasks = server.tasks(&job).await;
    let task = &tasks[0];
    assert_eq!(task["state"], "failed", "{task:#}");
    assert_eq!(task["attempts"], 2, "{task:#}");
    let mut nodes: Vec<String> = task["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["node"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    let mut expected = vec![id_a, id_b];
    expected.sort();
    assert_eq!(
        nodes, expected,
        "the second attempt should have run on the other node"
    );
    let error = task["error"].as_str().unwrap_or("");
    assert!(
        error.contains("exit code 3") && error.contains("about to fail"),
        "error should hold the exit code and log tail: {error}"
    );
    // The summary line (what `edgefarm jobs` and the dashboard show) names the program's own
    // error, not whichever progress line came last.
    assert_eq!(
        error.lines().next(),
        Some("exit code 3: Error: fixture cannot read shots/missing.blend; last log lines:"),
        "{error}"
    );

    let out = Command::new(BIN)
        .args(["job", &job, "--url", &server.url, "--secret", SECRET])
        .output()
        .expect("edgefarm job");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "edgefarm job failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("failed"), "{stdout}");
    assert!(
        stdout.contains("--- log tail of"),
        "the failed task's log tail should be printed: {stdout}"
    );
    assert!(
        stdout.contains("fixture: about to fail on purpose"),
        "the log tail should hold the program's output: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_exits_nonzero_when_the_job_fails() {
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("out");
    std::fs::create_dir_all(&project).expect("project");
    let types = format!(
        "[types.command.programs]\nfail = {:?}\n",
        fixture("fail.sh")
    );
    let _n = Node::start(
        &server,
        NodeSpec {
            name: "n",
            slots: 2,
            project: &project,
            output: &output,
            types: &types,
        },
    );
    let out = tokio::task::spawn_blocking({
        let url = server.url.clone();
        move || {
            Command::new(BIN)
                .args([
                    "submit",
                    "command",
                    "fail",
                    "--max-attempts",
                    "1",
                    "--follow",
                    "--url",
                    &url,
                    "--secret",
                    SECRET,
                    "--",
                    "{from}",
                ])
                .output()
                .expect("edgefarm submit")
        }
    })
    .await
    .expect("join");
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_finds_the_secret_a_local_server_generated() {
    // `--data edgefarm-data` in the server's working directory, where the CLI looks for it.
    let mut server = Serve::build()
        .generated_secret()
        .data_dir("edgefarm-data")
        .start()
        .await;
    let (dir, url) = (server.dir.path().to_path_buf(), server.base.clone());
    let jobs = || {
        Command::new(BIN)
            .args(["jobs", "--url", &url])
            .current_dir(&dir)
            .env("HOME", &dir)
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_DATA")
            .output()
            .expect("edgefarm jobs")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = jobs();
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.kill();
    assert!(
        out.status.success(),
        "jobs should authenticate with edgefarm-data/secret: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("STATE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_starts_a_new_job_well_within_one_poll_interval() {
    // Nodes poll every 60 s here; an idle node's long poll must still start a job at once. The
    // bound below is half the interval: generous for a busy machine, still failing a node that
    // only finds the job at its next regular poll.
    let server = Server::start_polling_every(60_000).await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("out");
    std::fs::create_dir_all(&project).expect("project");
    let types = "[types.command.programs]\nok = \"/bin/true\"\n";
    let node = Node::start(
        &server,
        NodeSpec {
            name: "idle",
            slots: 1,
            project: &project,
            output: &output,
            types,
        },
    );
    node.id().await;
    // Let the node finish its first (empty) poll and settle into the long poll.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let submitted = std::time::Instant::now();
    let job = server
        .submit(json!({"type": "command", "params": {"program": "ok"}}))
        .await;
    server
        .wait_job(&job, "completed", Duration::from_secs(45))
        .await;
    let took = submitted.elapsed();
    assert!(took < Duration::from_secs(30), "the job should start within moments of its submission, not at the next 60 s poll; took {took:?}");
}
