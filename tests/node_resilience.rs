//! The node under stress, end to end with the real server binary and `command` jobs: a second
//! SIGTERM releases at once, a server outage loses no finished result, SIGHUP reloads tags and
//! slots, and a server-side drain holds new work until resumed.

mod node_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use node_support::{wait_until, Node, NodeSpec, Server};
use serde_json::{json, Value};

struct Farm {
    server: Server,
    project: PathBuf,
    output: PathBuf,
}

async fn setup() -> Farm {
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("out");
    std::fs::create_dir_all(&project).expect("project");
    Farm {
        server,
        project,
        output,
    }
}

fn slow_types() -> String {
    let slow = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slow.sh");
    format!("[types.command.programs]\nslow = {slow:?}\n")
}

impl Farm {
    fn node(&self, name: &str, slots: u32, types: &str) -> Node {
        Node::start(
            &self.server,
            NodeSpec {
                name,
                slots,
                project: &self.project,
                output: &self.output,
                types,
            },
        )
    }

    /// A one-task job running slow.sh for `secs`, writing `<output>/<name>`.
    async fn slow_job(&self, name: &str, secs: u32, extra: Value) -> String {
        let mut spec = json!({"type": "command", "max_attempts": 1,
            "params": {"program": "slow", "args": [format!("{{output_root}}/{name}"), secs.to_string()]}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        self.server.submit(spec).await
    }

    async fn task(&self, job: &str) -> Value {
        self.server
            .tasks(job)
            .await
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    async fn wait_task_state(&self, job: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.task(job).await;
            if t["state"] == state {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "task never {state}: {t:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn alive(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_releases_the_lease_and_kills_the_program() {
    let farm = setup().await;
    let mut node = farm.node("n", 1, &slow_types());
    let job = farm.slow_job("held", 60, json!({})).await;
    farm.wait_task_state(&job, "leased").await;
    let pid_file = farm.output.join("held.pid");
    wait_until("the program starts", Duration::from_secs(20), || async {
        alive(&pid_file)
    })
    .await;
    node.signal(libc::SIGTERM);
    wait_until(
        "the node logs that it drains",
        Duration::from_secs(10),
        || async { node.log().contains("draining") },
    )
    .await;
    node.signal(libc::SIGTERM);
    assert_eq!(
        node.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "log:\n{}",
        node.log()
    );
    let t = farm.task(&job).await;
    assert_eq!(
        t["state"], "queued",
        "a released task is queued again at once: {t:#}"
    );
    assert!(
        !alive(&pid_file),
        "the program should have been killed with its process group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_finished_during_an_outage_is_delivered_when_the_server_returns() {
    let mut farm = setup().await;
    let node = farm.node("n", 1, &slow_types());
    let job = farm.slow_job("outage", 2, json!({})).await;
    farm.wait_task_state(&job, "leased").await;
    farm.server.kill();
    let out = farm.output.join("outage");
    wait_until(
        "the program finishes while the server is down",
        Duration::from_secs(30),
        || async { out.is_file() },
    )
    .await;
    farm.server.restart().await;
    let done = farm
        .server
        .wait_job(&job, "completed", Duration::from_secs(60))
        .await;
    let t = farm.task(&job).await;
    assert_eq!(
        t["attempts"],
        1,
        "the buffered result should have been accepted, not re-run: {t:#}\nnode log:\n{}",
        node.log()
    );
    assert_eq!(done["counts"]["completed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_tags_without_dropping_the_running_task() {
    let farm = setup().await;
    let mut node = farm.node("n", 1, &slow_types());
    let running = farm.slow_job("running", 3, json!({})).await;
    farm.wait_task_state(&running, "leased").await;
    let tagged = farm.slow_job("tagged", 0, json!({"tags": ["gpu"]})).await;
    // Rewrite the config with the tag and a second slot, then ask for a reload.
    let path = node.dir.join("node.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace("slots = 1", "slots = 2\ntags = [\"gpu\"]"),
    )
    .expect("rewrite");
    node.signal(libc::SIGHUP);
    farm.server
        .wait_job(&tagged, "completed", Duration::from_secs(30))
        .await;
    farm.server
        .wait_job(&running, "completed", Duration::from_secs(30))
        .await;
    let t = farm.task(&running).await;
    assert_eq!(
        t["attempts"], 1,
        "the running task must survive the reload: {t:#}"
    );
    assert!(
        node.child.try_wait().expect("try_wait").is_none(),
        "the node keeps running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_drain_holds_new_work_until_resumed() {
    let farm = setup().await;
    let node = farm.node("n", 1, &slow_types());
    let id = node.id().await;
    let c = farm.server.client();
    let _: Value = c
        .post_json(&format!("/v1/nodes/{id}/drain"), &json!({}))
        .await
        .expect("drain");
    let job = farm.slow_job("after-drain", 0, json!({})).await;
    // Absence can only be checked over a window: ten poll intervals of the test server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        farm.task(&job).await["state"],
        "queued",
        "a drained node must not claim"
    );
    let _: Value = c
        .post_json(&format!("/v1/nodes/{id}/resume"), &json!({}))
        .await
        .expect("resume");
    farm.server
        .wait_job(&job, "completed", Duration::from_secs(30))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceled_job_kills_the_running_program_at_the_next_heartbeat() {
    let farm = setup().await;
    let node = farm.node("n", 1, &slow_types());
    let job = farm.slow_job("canceled", 60, json!({})).await;
    farm.wait_task_state(&job, "leased").await;
    let pid_file = farm.output.join("canceled.pid");
    wait_until("the program starts", Duration::from_secs(20), || async {
        alive(&pid_file)
    })
    .await;
    let c = farm.server.client();
    let _: Value = c
        .post_json(&format!("/v1/jobs/{job}/cancel"), &json!({}))
        .await
        .expect("cancel");
    // Heartbeats come every second on the test server; the 409 must kill the process group.
    wait_until("the program is killed", Duration::from_secs(10), || async {
        !alive(&pid_file)
    })
    .await;
    wait_until(
        "the node logs the cancel (an INFO, not a lost lease)",
        Duration::from_secs(10),
        || async { node.log().contains("task canceled") },
    )
    .await;
    assert!(
        !farm.output.join("canceled").exists(),
        "the program must not have finished"
    );
}
