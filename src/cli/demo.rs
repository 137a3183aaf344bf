//! `edgefarm demo`: a whole farm on one machine for a newcomer. It starts `edgefarm serve` on the
//! embedded store and `edgefarm node` with two slots as child processes of this same binary,
//! prints the dashboard link (the farm secret in its fragment, which never reaches the server)
//! before anything renders, renders a sample job, follows it, and then keeps the farm up until
//! Ctrl-C so the dashboard and the CLI can be tried on it (`--exit` stops at the job's end, for
//! scripts and tests).
//!
//! The sample job is a small animated Cycles scene (`demo_scene.py`) when Blender is found
//! (`--blender`, `blender` on PATH, or the macOS app). Without Blender it says so first, with
//! how to get it (`scripts/demo` installs it where a package manager can), and renders a
//! stand-in `command` job that only writes one empty file per frame with `touch`.
//!
//! The children run in their own process group: a Ctrl-C in the terminal reaches only the demo,
//! which stops the node first (SIGTERM, Ctrl-Break on Windows: it drains) and then the server,
//! in that order (see `node::platform::spawn_detached`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::wire::health::Health;
use crate::wire::jobs::Job;

use super::{api, block_on, follow, UsageError};
use crate::node::client::Client;
use crate::node::platform;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the demo's data, scene and renders (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The Blender to render with (default: `blender` on PATH, or the macOS app).
    #[arg(long, value_name = "PATH")]
    blender: Option<PathBuf>,
    /// Render the stand-in `command` job (empty files) even if Blender is installed.
    #[arg(long)]
    no_blender: bool,
    /// Frames of the sample job.
    #[arg(long, default_value = "1-24")]
    frames: String,
    /// Port of the demo server on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Stop the farm when the job ends instead of keeping it up until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

const SCENE_SCRIPT: &str = include_str!("demo_scene.py");

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
struct Stopping(Child, &'static str);

impl Stopping {
    /// Spawns `cmd` in a process group of its own, so a terminal's Ctrl-C reaches only the demo.
    fn spawn(cmd: &mut Command, name: &'static str) -> anyhow::Result<Self> {
        Ok(Self(platform::spawn_detached(cmd)?, name))
    }

    /// `Some(exit status text)` once the child has exited.
    fn exited(&mut self) -> Option<String> {
        match self.0.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        platform::ask_to_stop(&self.0);
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
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("edgefarm-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(dir.join("project"))
        .map_err(|e| UsageError(format!("cannot create {}: {e}", dir.display())))?;
    let blender = match (&args.blender, args.no_blender) {
        (_, true) => None,
        (Some(path), false) if path.is_file() => Some(path.clone()),
        (Some(path), false) => {
            return Err(UsageError(format!("--blender {}: no such file", path.display())).into())
        }
        (None, false) => crate::node::config::find_blender(),
    };
    if blender.is_none() && !args.no_blender {
        eprintln!(
            "demo: Blender not found, so the sample job is a stand-in that only writes empty \
             files. For real frames install Blender (scripts/demo does it with apt, dnf, pacman \
             or brew; or https://www.blender.org/download/) or pass --blender PATH."
        );
    }
    let sample = match blender {
        Some(blender) => Sample::Blender(blender),
        None => Sample::Touch(
            find_in_path("touch")
                .ok_or_else(|| UsageError("neither blender nor touch found in PATH".into()))?,
        ),
    };
    // Bound here first so that a port in use is reported, not mistaken for our server.
    let port = TcpListener::bind(("127.0.0.1", args.port))
        .and_then(|l| l.local_addr())
        .map_err(|e| UsageError(format!("--port {}: {e}", args.port)))?
        .port();
    let farm = Farm {
        url: format!("http://127.0.0.1:{port}"),
        secret: format!("demo-{:016x}", getrandom::u64().unwrap_or(0x5eed_5eed)),
        exe: std::env::current_exe()?,
        dir,
    };
    block_on(farm.run(&args, &sample))
}

/// What renders the sample job.
enum Sample {
    /// A real scene, rendered with this Blender.
    Blender(PathBuf),
    /// The stand-in without Blender: `touch` writes one empty file per frame.
    Touch(PathBuf),
}

/// One demo run: where its server listens, its secret and its working directory.
struct Farm {
    url: String,
    secret: String,
    exe: PathBuf,
    dir: PathBuf,
}

impl Farm {
    async fn run(&self, args: &DemoArgs, sample: &Sample) -> anyhow::Result<ExitCode> {
        // First: from here on a Ctrl-C is ours to handle, and the children get stopped in order.
        let mut stop = StopSignals::new()?;
        let (url, secret, dir) = (&self.url, &self.secret, &self.dir);
        let (project, renders) = (dir.join("project"), dir.join("renders"));
        eprintln!("demo: working in {}", dir.display());
        let mut server = Command::new(&self.exe);
        server
            .args(["serve", "--listen", url.trim_start_matches("http://")])
            .args([
                "--secret",
                secret,
                "--poll-ms",
                "500",
                "--heartbeat-ms",
                "2000",
            ])
            .arg("--data")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(log_file(dir, "server.log")?);
        let mut server = Stopping::spawn(&mut server, "server")?;
        let client = Client::new(url, secret)?;
        tokio::select! {
            up = wait_healthy(&client, &mut server) => up?,
            () = stop.recv() => return Ok(stopped_early()),
        }
        eprintln!(
            "demo: server on {url} (log: {})",
            dir.join("server.log").display()
        );
        // Before anything renders, so the job can be watched from its first frame.
        eprintln!("demo: dashboard: {url}/#secret={secret}");
        eprintln!(
            "demo:   (the link carries the farm secret, {secret}; the page keeps it in this browser only)"
        );
        eprintln!(
            "demo: CLI: export EDGEFARM_URL={url} EDGEFARM_SECRET={secret}; {} jobs",
            self.exe.display()
        );

        let mut node = Command::new(&self.exe);
        node.args(["node", "--url", url, "--secret", secret])
            .args(["--slots", "2", "--name", "demo-node"])
            .arg("--project-root")
            .arg(&project)
            .arg("--output-root")
            .arg(&renders)
            .arg("--state-dir")
            .arg(dir.join("node"))
            .env_remove("EDGEFARM_NODE_CONFIG")
            .env_remove("EDGEFARM_NODE_TOKEN")
            .stdout(Stdio::null())
            .stderr(log_file(dir, "node.log")?);
        // With Blender and FFmpeg the sample also gets its preview video: a second job that
        // waits for the render (`submit --preview-video` does the same).
        let ffmpeg = match sample {
            Sample::Blender(_) => find_in_path("ffmpeg"),
            Sample::Touch(_) => None,
        };
        let spec = match sample {
            Sample::Blender(blender) => {
                tokio::select! {
                    made = make_scene(blender, &project) => made?,
                    () = stop.recv() => return Ok(stopped_early()),
                }
                node.arg("--blender").arg(blender);
                match &ffmpeg {
                    Some(ffmpeg) => {
                        node.arg("--ffmpeg").arg(ffmpeg);
                    }
                    None => eprintln!(
                        "demo: no ffmpeg in PATH, so no preview video (Debian/Ubuntu: apt install ffmpeg)"
                    ),
                }
                json!({"name": "demo render", "type": "blender", "frames": args.frames, "chunk_size": 4,
                       "params": {"file": "scene.blend", "output": "demo/frame_####", "engine": "CYCLES"}})
            }
            Sample::Touch(touch) => {
                node.arg("--program")
                    .arg(format!("touch={}", touch.display()));
                json!({"name": "demo command (stand-in, no Blender)", "type": "command",
                       "frames": args.frames, "chunk_size": 4,
                       "params": {"program": "touch", "args": ["{output_root}/demo_frame_{frame}.txt"]}})
            }
        };
        let mut node = Stopping::spawn(&mut node, "node")?;
        eprintln!(
            "demo: node with 2 slots started (log: {})",
            dir.join("node.log").display()
        );

        let job: Job = api::post(&client, "/v1/jobs", &spec).await?;
        let id = job.spec.id.clone();
        eprintln!("demo: submitted {} job {id}", job.spec.kind.as_str());
        let video = match &ffmpeg {
            Some(_) => {
                // Frames that are no single range (e.g. 1-24x2) make no video; the render
                // still runs.
                let params = super::submit::video_params(
                    "demo/frame_####",
                    None,
                    crate::node::ffmpeg::DEFAULT_FPS,
                    Some(&args.frames),
                );
                let submitted = match params {
                    Ok(params) => {
                        let encode = super::submit::preview_job(&job, params);
                        api::post::<_, Job>(&client, "/v1/jobs", &encode).await
                    }
                    Err(e) => Err(e.into()),
                };
                match submitted {
                    Ok(v) => {
                        eprintln!(
                            "demo: submitted ffmpeg job {} (the preview video, after {id})",
                            v.spec.id
                        );
                        Some(v.spec.id)
                    }
                    Err(e) => {
                        eprintln!("demo: no preview video: {e:#}");
                        None
                    }
                }
            }
            None => None,
        };
        let code = tokio::select! {
            code = follow::follow(&client, &id, false) => code?,
            () = stop.recv() => return Ok(stopped_early()),
        };
        if let (Some(video), true) = (&video, code == ExitCode::SUCCESS) {
            // The render decides the demo's exit code: an FFmpeg without libx264 (some
            // distributions ship one) fails only the video.
            let made = tokio::select! {
                made = follow::follow(&client, video, false) => made?,
                () = stop.recv() => return Ok(stopped_early()),
            };
            if made == ExitCode::SUCCESS {
                let path = renders.join("demo/frame.mp4");
                eprintln!("demo: preview video: {}", path.display());
            } else {
                eprintln!(
                    "demo: the preview video failed (see `edgefarm job {video}`); the frames are fine"
                );
            }
        }
        let out = match sample {
            Sample::Blender(_) => renders.join("demo"),
            Sample::Touch(_) => renders,
        };
        eprintln!("demo: renders are in {}", out.display());
        if args.exit {
            return Ok(code);
        }
        eprintln!(
            "demo: the farm stays up: open the dashboard ({url}/#secret={secret}) or use the CLI \
             line above; Ctrl-C stops it"
        );
        tokio::select! {
            () = stop.recv() => {}
            why = child_exit(&mut server, &mut node) => eprintln!("demo: {why}; stopping"),
        }
        Ok(code)
    }
}

fn stopped_early() -> ExitCode {
    eprintln!("demo: stopping before the job ended");
    ExitCode::FAILURE
}

/// Ctrl-C (SIGINT) and SIGTERM (Windows: Ctrl-C, Ctrl-Break, console close), listened to from
/// creation on: a signal that arrives while the demo is busy elsewhere is kept for the next
/// `recv`.
struct StopSignals(platform::Signals);

impl StopSignals {
    fn new() -> std::io::Result<Self> {
        Ok(Self(platform::Signals::new(None)?))
    }

    async fn recv(&mut self) {
        self.0.stop().await
    }
}

/// Resolves when the server or the node exits on its own, naming which.
async fn child_exit(server: &mut Stopping, node: &mut Stopping) -> String {
    loop {
        if let Some(status) = server.exited() {
            return format!("the server exited ({status})");
        }
        if let Some(status) = node.exited() {
            return format!("the node exited ({status})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_healthy(client: &Client, server: &mut Stopping) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health: Result<Health, _> = client
            .send(client.request(reqwest::Method::GET, "/v1/health"))
            .await;
        match health {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("the demo server did not start: {}", e.report())
            }
            Err(_) => {
                if let Some(status) = server.exited() {
                    anyhow::bail!("the demo server exited ({status}); see server.log");
                }
                tokio::time::sleep(Duration::from_millis(100)).await
            }
        }
    }
}

async fn make_scene(blender: &Path, project: &Path) -> anyhow::Result<()> {
    let script = project.join("demo_scene.py");
    std::fs::write(&script, SCENE_SCRIPT)?;
    eprintln!(
        "demo: making a 24-frame 320x180 Cycles scene with {}",
        blender.display()
    );
    let out = tokio::process::Command::new(blender)
        .args(["-b", "--factory-startup", "--python"])
        .arg(&script)
        .arg("--")
        .arg(project.join("scene.blend"))
        .kill_on_drop(true)
        .output()
        .await?;
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
