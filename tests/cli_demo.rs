//! `edgefarm demo`: a whole farm on one machine. It prints the dashboard link before anything
//! renders, renders a sample job (a real Blender scene when Blender is there), and keeps the farm
//! up until Ctrl-C, or stops it at the job's end with `--exit`.

mod node_support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use edgefarm::node::client::Client;
use serde_json::Value;

/// A running `edgefarm demo` whose stderr lines arrive on a channel; SIGKILLed if still running
/// when dropped (a failed test must not leave a farm behind).
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(args: &[&str], dir: &std::path::Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgefarm"))
            .arg("demo")
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start demo");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line with {needle:?} in time; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Waits for the demo to exit; returns its exit code and its whole stderr.
    fn wait_exit(&mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not exit in time; stderr:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let _ = self.wait_exit(Duration::from_secs(60));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dashboard link the demo prints: (server URL, secret).
fn dashboard(line: &str) -> (String, String) {
    let link = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {line:?}"));
    let (url, secret) = link
        .split_once("/#secret=")
        .unwrap_or_else(|| panic!("no #secret= in {link:?}"));
    (url.to_string(), secret.to_string())
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url")
}

const LONG: Duration = Duration::from_secs(180);

#[test]
fn demo_exit_renders_the_stand_in_job_prints_the_dashboard_first_and_stops_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(&["--no-blender", "--exit", "--frames", "1-12"], dir.path());
    let (code, stderr) = demo.wait_exit(LONG);
    assert_eq!(code, Some(0), "demo failed: {stderr}");
    for frame in 1..=12 {
        let file = dir.path().join(format!("renders/demo_frame_{frame}.txt"));
        assert!(file.is_file(), "{} missing; {stderr}", file.display());
    }
    let at = |needle: &str| {
        stderr
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in: {stderr}"))
    };
    assert!(
        at("demo: dashboard: http://127.0.0.1:") < at("demo: submitted"),
        "the dashboard link must come before the job: {stderr}"
    );
    assert!(at("node stopped") < at("server stopped"), "{stderr}");
}

#[test]
fn demo_keeps_the_farm_up_after_the_job_until_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(&["--no-blender", "--frames", "1-4"], dir.path());
    let (url, secret) = dashboard(&demo.wait_line("demo: dashboard:", LONG));
    demo.wait_line("Ctrl-C stops it", LONG);

    // The job is done and the farm still answers: the dashboard page and the API with the secret.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(&url, &secret).expect("client");
    let (page, jobs) = rt.block_on(async {
        let page = client
            .send_text(client.request(reqwest::Method::GET, "/"))
            .await
            .expect("dashboard page");
        let jobs: Value = client
            .send(client.request(reqwest::Method::GET, "/v1/jobs"))
            .await
            .expect("job list");
        (page, jobs)
    });
    assert!(page.contains("edgefarm"), "{page}");
    assert_eq!(jobs["jobs"][0]["state"], "completed", "{jobs}");
    assert!(
        TcpStream::connect(("127.0.0.1", port_of(&url))).is_ok(),
        "the server must still listen"
    );

    demo.signal(libc::SIGINT);
    let (code, stderr) = demo.wait_exit(LONG);
    assert_eq!(code, Some(0), "the job completed, so exit 0: {stderr}");
    assert!(
        stderr.contains("node stopped") && stderr.contains("server stopped"),
        "{stderr}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port_of(&url))).is_err(),
        "the server must be gone after Ctrl-C"
    );
}

#[test]
fn ctrl_c_while_the_job_runs_stops_node_and_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Enough frames that the job cannot end before the signal lands.
    let mut demo = Demo::start(&["--no-blender", "--frames", "1-100000"], dir.path());
    let (url, _) = dashboard(&demo.wait_line("demo: dashboard:", LONG));
    demo.wait_line("demo: submitted", LONG);
    demo.signal(libc::SIGINT);
    let (code, stderr) = demo.wait_exit(LONG);
    assert_eq!(code, Some(1), "stopped before the job ended: {stderr}");
    assert!(stderr.contains("stopping before the job ended"), "{stderr}");
    assert!(
        stderr.contains("node stopped") && stderr.contains("server stopped"),
        "{stderr}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port_of(&url))).is_err(),
        "the server must be gone after Ctrl-C"
    );
}

#[test]
fn demo_with_blender_renders_real_frames_of_the_sample_scene() {
    let Some(blender) = node_support::blender() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let blender = blender.to_string_lossy().into_owned();
    let mut demo = Demo::start(
        &["--blender", &blender, "--exit", "--frames", "1-2"],
        dir.path(),
    );
    let (code, stderr) = demo.wait_exit(LONG);
    assert_eq!(code, Some(0), "demo failed: {stderr}");
    for frame in ["0001", "0002"] {
        let png = dir.path().join(format!("renders/demo/frame_{frame}.png"));
        assert_eq!(
            node_support::png_size(&png),
            Some((320, 180)),
            "{} is not the 320x180 frame; {stderr}",
            png.display()
        );
    }
    // FFmpeg is on PATH here (scripts/test installs it): the sample gets its preview video.
    let video = dir.path().join("renders/demo/frame.mp4");
    assert!(
        stderr.contains(&format!("demo: preview video: {}", video.display())),
        "{stderr}"
    );
    let stream = node_support::probe(&video);
    assert_eq!(
        (&stream["codec_name"], &stream["nb_read_frames"]),
        (&serde_json::json!("h264"), &serde_json::json!("2")),
        "{stderr}"
    );
}

#[test]
fn a_port_in_use_is_refused_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(&["--no-blender", "--exit", "--port", &port], dir.path());
    let (code, stderr) = demo.wait_exit(LONG);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("--port {port}")), "{stderr}");
    assert!(!stderr.contains("demo: dashboard"), "{stderr}");
}
