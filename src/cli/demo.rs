//! `edgefarm demo`: a whole farm on one machine for a newcomer. It starts `edgefarm serve` on the
//! embedded store and `edgefarm node` with two slots as child processes of this same binary,
//! renders a sample job — a tiny Cycles scene if `blender` is on PATH, else a `command` job that
//! writes one file per frame with `touch` — follows it, and stops both children (SIGTERM, so the
//! node drains and the server shuts down cleanly).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::{api, block_on, follow, UsageError};
use crate::node::client::Client;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the demo's data, scene and renders (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use a `command` job even if Blender is installed.
    #[arg(long)]
    no_blender: bool,
}

const SCENE_SCRIPT: &str = include_str!("../../tests/fixtures/make_scene.py");

/// Kills (SIGTERM, then SIGKILL after a grace period) a child when dropped.
struct Stopping(Child, &'static str);

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on our own child's pid; SIGTERM lets it drain.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        eprintln!("demo: {} stopped", self.1);
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("edgefarm-demo-{}", std::process::id()))
    });
    let (project, renders) = (dir.join("project"), dir.join("renders"));
    std::fs::create_dir_all(&project)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", project.display())))?;
    let exe = std::env::current_exe()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let secret = format!("demo-{:016x}", getrandom::u64().unwrap_or(0x5eed_5eed));
    let blender = if args.no_blender {
        None
    } else {
        find_in_path("blender")
    };

    eprintln!("demo: working in {}", dir.display());
    let server = Command::new(&exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--secret",
            &secret,
            "--poll-ms",
            "500",
            "--heartbeat-ms",
            "2000",
        ])
        .arg("--data")
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(log_file(&dir, "server.log")?)
        .spawn()?;
    let _server = Stopping(server, "server");
    let client = Client::new(&url, &secret)?;
    block_on(wait_healthy(&client))?;
    eprintln!(
        "demo: server on {url} (log: {})",
        dir.join("server.log").display()
    );

    let mut node = Command::new(&exe);
    node.args([
        "node",
        "--url",
        &url,
        "--secret",
        &secret,
        "--slots",
        "2",
        "--name",
        "demo-node",
    ])
    .arg("--project-root")
    .arg(&project)
    .arg("--output-root")
    .arg(&renders)
    .arg("--state-dir")
    .arg(dir.join("node"))
    .env_remove("EDGEFARM_NODE_CONFIG")
    .env_remove("EDGEFARM_NODE_TOKEN")
    .stdout(Stdio::null())
    .stderr(log_file(&dir, "node.log")?);
    let spec = match &blender {
        Some(blender) => {
            make_scene(blender, &project)?;
            node.arg("--blender").arg(blender);
            json!({"name": "demo render", "type": "blender", "frames": "1-12", "chunk_size": 3,
                   "params": {"file": "scene.blend", "output": "demo/frame_####", "engine": "CYCLES"}})
        }
        None => {
            let touch = find_in_path("touch")
                .ok_or_else(|| UsageError("neither blender nor touch found in PATH".into()))?;
            node.arg("--program")
                .arg(format!("touch={}", touch.display()));
            json!({"name": "demo command", "type": "command", "frames": "1-12", "chunk_size": 3,
                   "params": {"program": "touch", "args": ["{output_root}/demo_frame_{frame}.txt"]}})
        }
    };
    let _node = Stopping(node.spawn()?, "node");
    eprintln!(
        "demo: node with 2 slots started (log: {})",
        dir.join("node.log").display()
    );

    let code = block_on(async {
        let job = api::post(&client, "/v1/jobs", &spec).await?;
        let id = api::s(&job, "id").to_string();
        eprintln!(
            "demo: submitted {} job {id}",
            spec["type"].as_str().unwrap_or("")
        );
        follow::follow(&client, &id, false).await
    })?;
    eprintln!("demo: renders are in {}", renders.display());
    eprintln!("demo: try `edgefarm jobs --url {url} --secret {secret}` while a demo runs");
    Ok(code)
}

async fn wait_healthy(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: Result<Value, _> = client
            .send(client.request(reqwest::Method::GET, "/v1/health"))
            .await;
        match health {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("the demo server did not start: {}", e.report())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn make_scene(blender: &Path, project: &Path) -> anyhow::Result<()> {
    let script = project.join("make_scene.py");
    std::fs::write(&script, SCENE_SCRIPT)?;
    eprintln!(
        "demo: making a 64x48 Cycles scene with {}",
        blender.display()
    );
    let out = Command::new(blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(&script)
        .arg("--")
        .arg(project.join("scene.blend"))
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "blender could not make the sample scene:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(name))?)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
