//! End to end with the real server binary and the real Blender: frames rendered across nodes,
//! a node killed mid-render, and a drained node. A missing Blender fails these tests unless
//! EDGEFARM_SKIP_BLENDER=1 is set (which prints that they were skipped).

mod node_support;

use std::path::Path;
use std::time::Duration;

use node_support::{blender, blender_running_for, make_scene, png_size, Node, NodeSpec, Server};
use serde_json::{json, Value};

struct Farm {
    server: Server,
    project: std::path::PathBuf,
    output: std::path::PathBuf,
    types: String,
}

async fn setup() -> Option<Farm> {
    let blender = blender()?;
    let server = Server::start().await;
    let project = server.dir.path().join("project");
    let output = server.dir.path().join("renders");
    std::fs::create_dir_all(&project).expect("project dir");
    make_scene(&blender, &project);
    // One render thread per Blender: the test machines have two cores and run slots side by side.
    let types = format!("[types.blender]\nprogram = {:?}\nthreads = 1\n", blender);
    Some(Farm {
        server,
        project,
        output,
        types,
    })
}

impl Farm {
    fn node(&self, name: &str, slots: u32) -> Node {
        Node::start(
            &self.server,
            NodeSpec {
                name,
                slots,
                project: &self.project,
                output: &self.output,
                types: &self.types,
            },
        )
    }

    async fn submit(&self, frames: &str, chunk: u32) -> String {
        self.server
            .submit(json!({"type": "blender", "frames": frames, "chunk_size": chunk,
                "params": {"file": "scene.blend", "output": "shot/frame_####", "engine": "CYCLES"}}))
            .await
    }

    fn assert_frames(&self, frames: std::ops::RangeInclusive<u32>) {
        for f in frames {
            let path = self.output.join(format!("shot/frame_{f:04}.png"));
            assert_eq!(
                png_size(&path),
                Some((64, 48)),
                "{} should be a 64x48 PNG",
                path.display()
            );
        }
    }

    /// A task of `job` leased by `node`, once there is one.
    async fn leased_by(&self, job: &str, node: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let tasks = self.server.tasks(job).await;
            if let Some(t) = tasks
                .into_iter()
                .find(|t| t["state"] == "leased" && t["lease"]["node"] == node)
            {
                return t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {node} never held a lease of {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_render_every_frame_exactly_once() {
    let Some(farm) = setup().await else { return };
    let _a = farm.node("a", 2);
    let _b = farm.node("b", 2);
    let job = farm.submit("1-12", 3).await;
    let done = farm
        .server
        .wait_job(&job, "completed", Duration::from_secs(240))
        .await;
    assert_eq!(
        (done["frames_done"].as_u64(), done["frames_total"].as_u64()),
        (Some(12), Some(12)),
        "{done:#}"
    );
    farm.assert_frames(1..=12);
    let tasks = farm.server.tasks(&job).await;
    assert_eq!(tasks.len(), 4);
    for t in &tasks {
        assert_eq!(t["state"], "completed", "{t:#}");
        assert_eq!(
            t["attempts"], 1,
            "every task should have needed exactly one attempt: {t:#}"
        );
        let outputs = t["result"]["outputs"].as_array().map(Vec::len);
        assert_eq!(
            outputs,
            Some(3),
            "the result should list the three saved frames: {t:#}"
        );
        assert!(
            t["result"]["outputs"][0]
                .as_str()
                .is_some_and(|p| p.starts_with("shot/frame_")),
            "outputs are relative to the output root: {t:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_task_is_leased_again_after_expiry() {
    let Some(farm) = setup().await else { return };
    let mut doomed = farm.node("doomed", 1);
    let doomed_id = doomed.id().await;
    // Chunks of 6 frames keep Blender busy for seconds, long enough to outlive a careless node.
    let job = farm.submit("1-12", 6).await;
    let task = farm.leased_by(&job, &doomed_id).await;
    let output = farm.output.to_string_lossy().into_owned();
    node_support::wait_until(
        "the doomed node's Blender runs",
        Duration::from_secs(30),
        || {
            let output = output.clone();
            async move { blender_running_for(&output) }
        },
    )
    .await;
    doomed.signal(libc::SIGKILL);
    assert_eq!(
        doomed.wait_exit(Duration::from_secs(10)).await,
        None,
        "SIGKILL leaves no exit code"
    );
    // The dead node's render must not go on racing the node that takes it over (PDEATHSIG, and
    // for a chatty program like Blender also SIGPIPE once the node's end of the pipe is gone).
    let output = farm.output.to_string_lossy().into_owned();
    node_support::wait_until(
        "the dead node's Blender is gone",
        Duration::from_secs(10),
        || {
            let output = output.clone();
            async move { !blender_running_for(&output) }
        },
    )
    .await;
    let _rescuer = farm.node("rescuer", 2);
    farm.server
        .wait_job(&job, "completed", Duration::from_secs(240))
        .await;
    farm.assert_frames(1..=12);
    let id = task["id"].as_str().unwrap_or_default();
    let again = farm.server.get(&format!("/v1/tasks/{id}")).await;
    assert!(
        again["attempts"].as_u64() >= Some(2),
        "the killed node's task should have been leased again: {again:#}"
    );
    let last_node = again["history"]
        .as_array()
        .and_then(|h| h.last())
        .map(|h| h["node"].clone());
    assert_ne!(
        last_node,
        Some(json!(doomed_id)),
        "the rescuer should have finished it: {again:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_finishes_and_acks_then_exits_zero() {
    let Some(farm) = setup().await else { return };
    let mut node = farm.node("drained", 1);
    let id = node.id().await;
    let job = farm.submit("1-6", 3).await;
    let task = farm.leased_by(&job, &id).await;
    // The server grants the lease in the answer to the node's poll; the node has the task only
    // once it read that answer. A drain aborts a poll still in flight (a lease granted in that
    // instant lapses and goes to another node), so wait for the node to have started Blender.
    let tid = task["id"].as_str().unwrap_or_default().to_string();
    node_support::wait_until(
        "the node starts Blender for its task",
        Duration::from_secs(60),
        || {
            let log = node.log();
            let tid = tid.clone();
            async move {
                log.lines()
                    .any(|l| l.contains("starting") && l.contains(&tid))
            }
        },
    )
    .await;
    node.signal(libc::SIGTERM);
    assert_eq!(
        node.wait_exit(Duration::from_secs(120)).await,
        Some(0),
        "drain should exit 0; log:\n{}",
        node.log()
    );
    let t = farm.server.get(&format!("/v1/tasks/{tid}")).await;
    assert_eq!(
        t["state"],
        "completed",
        "the running task should have been finished and acked: {t:#}\nnode log:\n{}",
        node.log()
    );
    let tasks = farm.server.tasks(&job).await;
    assert!(
        tasks.iter().all(|t| t["state"] != "leased"),
        "nothing may stay leased: {:#}",
        Value::from(tasks.clone())
    );
    assert!(
        tasks
            .iter()
            .filter(|t| t["id"] != task["id"])
            .all(|t| t["state"] == "queued"),
        "a draining node claims nothing new"
    );
    let n = farm.server.get(&format!("/v1/nodes/{id}")).await;
    // docs/API.md lists `leases` on the node object; tolerate its absence (reported to the lead).
    assert_eq!(n["leases"].as_u64().unwrap_or(0), 0, "{n:#}");
    assert!(Path::new(&farm.output.join("shot/frame_0001.png")).is_file());
}
