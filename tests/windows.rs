//! The Windows build under Wine against a native `edgefarm serve` on loopback.
//!
//! `edgefarm.exe` (scripts/build-windows: x86_64-pc-windows-gnu, with the Wine-only ProcessPrng
//! shim beside it) runs as a render node under Debian's Wine and as a CLI. The `command`
//! program is tests/windows/frames.c, built here for Windows (mingw) and for Linux (cc).
//!
//! One test, in order (one Wine prefix, one wineserver):
//! 1. the Windows CLI submits a job; the Windows node enrols, claims the task, runs frames.exe
//!    in its Job Object, heartbeats (the program's lines reach the task log, read back with the
//!    Windows CLI's `log`), acks, and the job completes;
//! 2. the Wine node is SIGKILLed while frames.exe runs (it waits at a gate file): its Job
//!    Object takes frames.exe down with it (no orphan), the lease lapses, and a native Linux
//!    node finishes the job once the gate is open;
//! 3. the node runs as a Windows service (`sc create`, `sc start`); `sc stop` drains it: the
//!    running task finishes and is acked, and the service reports STOPPED with exit code 0.
//!
//! Ctrl-C is not sent: Wine turns SIGINT into CTRL_C_EVENT by creating a thread inside its Unix
//! signal handler (`pthread_create`, which allocates), and when the signal lands while another
//! thread of the process holds glibc's malloc lock (as it does around starting a program), the
//! Wine process deadlocks for good (gdb: the main thread in `calloc` under `pthread_create`
//! from the handler). That is a Wine defect; on Windows the console injects the event on a
//! thread of its own. A service stop reaches the same drain through the service manager.
//!
//! Ignored by plain `cargo test` (it needs the cross build, minutes on a fresh machine):
//! scripts/test runs it after the other tests with `--ignored`. Nothing is skipped quietly: no
//! Wine or no mingw is a failure. EDGEFARM_WINDOWS_EXE names a built edgefarm.exe (its folder
//! must hold the shim); without it the test runs `scripts/build-windows --dev` itself.

mod node_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use node_support::{wait_until, Node, NodeSpec, Server, SECRET};
use serde_json::Value;

const WINE: &str = "/usr/lib/wine/wine64";

/// The Windows build, Wine and the frames program, ready to run.
struct Windows {
    exe: PathBuf,
    prefix: PathBuf,
    frames_exe: PathBuf,
    frames_linux: PathBuf,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("EDGEFARM_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/edgefarm")))
        .expect("EDGEFARM_CACHE or HOME")
}

fn windows_exe() -> PathBuf {
    if let Some(exe) = std::env::var_os("EDGEFARM_WINDOWS_EXE") {
        return PathBuf::from(exe);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/build-windows"))
        .arg("--dev")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/build-windows");
    assert!(out.status.success(), "scripts/build-windows failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build-windows printed the exe")
            .trim(),
    )
}

fn compile(compiler: &str, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/windows/frames.c");
    let status = Command::new(compiler)
        .args(["-O2", "-Wall", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("{compiler} is missing ({e}): apt-get install gcc-mingw-w64-x86-64 (scripts/test and scripts/build-windows install it)")
        });
    assert!(
        status.success(),
        "{compiler} could not build {}",
        src.display()
    );
}

impl Windows {
    fn setup(dir: &Path) -> Windows {
        assert!(
            Path::new(WINE).is_file(),
            "Wine is missing ({WINE}): apt-get install wine64 (scripts/test installs it)"
        );
        let exe = windows_exe();
        assert!(exe.is_file(), "no {}", exe.display());
        assert!(
            exe.with_file_name("bcryptprimitives.dll").is_file(),
            "the Wine ProcessPrng shim must sit beside {}",
            exe.display()
        );
        let frames_exe = dir.join("frames.exe");
        compile("x86_64-w64-mingw32-gcc", &frames_exe);
        let frames_linux = dir.join("frames");
        compile("cc", &frames_linux);
        // Kept between runs: making a prefix takes Wine ~20 s. Made (or updated) here by one
        // `wineboot` before any other Wine process starts: two Wine processes starting at once
        // on a missing prefix race to create it and its server folder ("wine: chdir to
        // /tmp/.wine-0/server-...").
        let prefix = cache_dir().join("wine-prefix");
        std::fs::create_dir_all(prefix.parent().expect("parent")).expect("cache dir");
        let boot = Command::new(WINE)
            .arg("wineboot")
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run wineboot");
        assert!(
            boot.success(),
            "wineboot could not make {}: {boot}",
            prefix.display()
        );
        Windows {
            exe,
            prefix,
            frames_exe,
            frames_linux,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(WINE);
        cmd.arg(&self.exe)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("EDGEFARM_SECRET")
            .env_remove("EDGEFARM_URL")
            .env_remove("DISPLAY");
        cmd
    }

    /// Runs the Windows CLI; its stdout. Output goes through files, not pipes: Wine's helper
    /// processes (services.exe, winedevice.exe, ...), started by whichever Wine process comes
    /// first, inherit its handles and would hold a pipe open long after the CLI exits.
    fn cli(&self, server: &Server, dir: &Path, args: &[&str]) -> String {
        let (out_path, err_path) = (dir.join("cli.out"), dir.join("cli.err"));
        let status = self
            .command()
            .args(args)
            .args(["--url", &server.url, "--secret", SECRET])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("cli.out"))
            .stderr(std::fs::File::create(&err_path).expect("cli.err"))
            .status()
            .expect("run edgefarm.exe");
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert!(
            status.success(),
            "edgefarm.exe {args:?}: {status}\n{stdout}\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        stdout
    }

    /// Runs one of Wine's own programs (`sc`, ...) to its end; whether it succeeded and its
    /// stdout (through a file, as for [`Windows::cli`]).
    fn tool(&self, dir: &Path, args: &[&str]) -> (bool, String) {
        let out_path = dir.join("tool.out");
        let status = Command::new(WINE)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("tool.out"))
            .stderr(Stdio::null())
            .status()
            .expect("run a Wine program");
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        (status.success(), stdout)
    }

    /// Writes the config of a Windows node named `name`; its path.
    fn node_config(&self, server: &Server, dir: &Path, name: &str) -> PathBuf {
        let project = dir.join("project");
        let output = dir.join("out");
        std::fs::create_dir_all(&project).expect("project");
        let config = format!(
            "url = {:?}\nsecret = {SECRET:?}\nname = {name:?}\nproject_root = {:?}\noutput_root = {:?}\nstate_dir = {:?}\n[types.command.programs]\nframes = {:?}\n",
            server.url,
            wine_path(&project),
            wine_path(&output),
            wine_path(&dir.join(format!("{name}-state"))),
            wine_path(&self.frames_exe),
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("node config");
        path
    }

    /// Starts a Windows node named `name`; its log goes to `<dir>/<name>.log`.
    fn node(&self, server: &Server, dir: &Path, name: &str) -> WineNode {
        let path = self.node_config(server, dir, name);
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("node log");
        let child = self
            .command()
            .args(["node", "--config", &wine_path(&path)])
            .env("EDGEFARM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the Wine node");
        WineNode {
            child,
            log: log_path,
        }
    }
}

/// A Linux path as Wine's Windows programs see it (drive Z: is the Unix root).
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

struct WineNode {
    child: Child,
    log: PathBuf,
}

impl WineNode {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the Wine node did not exit in time; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WineNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pids of running processes whose command line mentions every one of `needles` (a Windows
/// program started by a Wine process shows its Windows command line, `Z:\\...`).
fn processes_running(needles: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            needles.iter().all(|n| cmdline.contains(n)) && !stat.contains(") Z ")
        })
        .collect()
}

fn submit(win: &Windows, server: &Server, dir: &Path, id: &str, frames: &str, delay_ms: u32) {
    submit_args(win, server, dir, id, frames, &[&delay_ms.to_string()]);
}

/// Submits `frames {output_root}/ID_{frame}.out ARGS...` (tests/windows/frames.c).
fn submit_args(win: &Windows, server: &Server, dir: &Path, id: &str, frames: &str, args: &[&str]) {
    let mut argv = vec![format!("{{output_root}}/{id}_{{frame}}.out")];
    argv.extend(args.iter().map(|a| a.to_string()));
    let spec = serde_json::json!({
        "id": id, "type": "command", "frames": frames, "chunk_size": 100, "max_attempts": 3,
        "params": {"program": "frames", "args": argv}
    });
    let file = dir.join(format!("{id}.json"));
    std::fs::write(&file, spec.to_string()).expect("job file");
    win.cli(server, dir, &["submit", "--file", &wine_path(&file)]);
}

async fn task(server: &Server, job: &str) -> Value {
    server
        .tasks(job)
        .await
        .into_iter()
        .next()
        .expect("one task")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the Windows cross build and Wine: scripts/test runs it with --ignored"]
async fn windows_node_and_cli_under_wine() {
    let server = Server::start().await;
    let dir = server.dir.path().to_path_buf();
    let win = Windows::setup(&dir);
    let out = dir.join("out");

    // 1. Submit, claim, run, heartbeat, ack: all from the Windows build.
    let mut node = win.node(&server, &dir, "win-a");
    submit(&win, &server, &dir, "w1", "1-3", 300);
    server
        .wait_job_explained("w1", "completed", Duration::from_secs(180), || {
            format!("Wine node log:\n{}", node.log())
        })
        .await;
    for f in 1..=3 {
        let text = std::fs::read_to_string(out.join(format!("w1_{f}.out"))).unwrap_or_default();
        assert_eq!(text.trim(), "frame from windows", "frame {f}");
    }
    let t = task(&server, "w1").await;
    let ran_on = t["history"][0]["node"].as_str().unwrap_or("").to_string();
    let nodes = server.get("/v1/nodes").await;
    let names: Vec<(String, String)> = nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or("").into(),
                n["name"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        names.contains(&(ran_on.clone(), "win-a".to_string())),
        "the task ran on {ran_on}, nodes: {names:?}"
    );
    let log = win.cli(&server, &dir, &["log", t["id"].as_str().expect("task id")]);
    assert!(
        log.contains("wrote Z:") && log.contains("w1_3.out"),
        "the program's output reaches the task log through heartbeats:\n{log}"
    );
    let listed = win.cli(&server, &dir, &["jobs"]);
    assert!(listed.contains("w1"), "edgefarm.exe jobs:\n{listed}");

    // 2. Kill the Wine node mid-task: the Job Object ends frames.exe, the lease lapses, and a
    //    native node finishes the job. frames.exe waits at a gate, so the kill certainly lands
    //    while it runs (not in the instant between its creation and its joining the job, which
    //    no Job Object can cover: docs/NODE.md).
    submit_args(
        &win,
        &server,
        &dir,
        "w2",
        "1-3",
        &["100", "{output_root}/w2.gate"],
    );
    wait_until(
        "frames.exe of w2 runs under the Wine node",
        Duration::from_secs(60),
        || async { out.join("w2_1.out.started").is_file() },
    )
    .await;
    let unique = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("temp dir name")
        .to_string();
    let frames_exe = ["frames.exe", unique.as_str()];
    assert!(
        !processes_running(&frames_exe).is_empty(),
        "frames.exe waits at its gate under Wine"
    );
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10)).await;
    wait_until(
        "Wine ends frames.exe with the killed node's Job Object",
        Duration::from_secs(30),
        || async { processes_running(&frames_exe).is_empty() },
    )
    .await;
    assert!(
        !out.join("w2_1.out").exists(),
        "frames.exe was ended before it could write its frame"
    );
    std::fs::write(out.join("w2.gate"), b"open").expect("open the gate");
    let native_types = format!(
        "[types.command.programs]\nframes = {:?}\n",
        win.frames_linux
    );
    let native = Node::start(
        &server,
        NodeSpec {
            name: "linux-b",
            slots: 1,
            project: &dir.join("project"),
            output: &out,
            types: &native_types,
        },
    );
    let native_id = native.id().await;
    server
        .wait_job("w2", "completed", Duration::from_secs(120))
        .await;
    let t = task(&server, "w2").await;
    let history = t["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        history.last().and_then(|h| h["node"].as_str()),
        Some(native_id.as_str()),
        "the native node finished it: {t:#}"
    );
    let last = std::fs::read_to_string(out.join("w2_3.out")).unwrap_or_default();
    assert_eq!(last.trim(), "frame from linux");
    drop(native);

    // 3. As a Windows service: the service manager starts `edgefarm.exe node --service`; `sc
    //    stop` drains it like Ctrl-C (the running task finishes and is acked) and the service
    //    reports STOPPED with exit code 0. (Not SIGINT: see the module comment.)
    let config = win.node_config(&server, &dir, "win-svc");
    let log = dir.join("win-svc.log");
    let service = Service {
        win: &win,
        dir: &dir,
        name: format!("edgefarm-test-{unique}"),
    };
    let bin = format!(
        "{} node --service --config {} --log-file {}",
        wine_path(&win.exe),
        wine_path(&config),
        wine_path(&log)
    );
    service.sc(&["create", &service.name, "binPath=", &bin]);
    submit(&win, &server, &dir, "w4", "1-6", 500);
    service.sc(&["start", &service.name]);
    wait_until(
        "the service node renders w4",
        Duration::from_secs(60),
        || async { out.join("w4_1.out").is_file() },
    )
    .await;
    service.sc(&["stop", &service.name]);
    wait_until("the service stops", Duration::from_secs(60), || async {
        service.sc(&["query", &service.name]).contains("STOPPED")
    })
    .await;
    let query = service.sc(&["query", &service.name]);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("the service manager asks the node to stop") && log.contains("draining"),
        "a service stop should start a drain:\n{log}"
    );
    assert_eq!(
        sc_field(&query, "WIN32_EXIT_CODE"),
        Some(0),
        "the drained service exits 0:\n{query}\n{log}"
    );
    let j = server.get("/v1/jobs/w4").await;
    assert_eq!(
        j["state"], "completed",
        "the drain finished the task: {j:#}\n{log}"
    );
    for f in 1..=6 {
        assert!(out.join(format!("w4_{f}.out")).is_file(), "frame {f}");
    }
}

/// The number `sc query` prints after `NAME :` (`WIN32_EXIT_CODE    : 0  (0x0)`).
fn sc_field(query: &str, name: &str) -> Option<i64> {
    let line = query.lines().find(|l| l.trim_start().starts_with(name))?;
    line.split_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A Windows service in the test's Wine prefix, deleted (after a stop) when dropped.
struct Service<'a> {
    win: &'a Windows,
    dir: &'a Path,
    name: String,
}

impl Service<'_> {
    /// Runs `sc ARGS`; its output. Panics when `sc` fails, except for `query`.
    fn sc(&self, args: &[&str]) -> String {
        let mut full = vec!["sc"];
        full.extend_from_slice(args);
        let (ok, out) = self.win.tool(self.dir, &full);
        assert!(ok || args[0] == "query", "sc {args:?} failed:\n{out}");
        out
    }
}

impl Drop for Service<'_> {
    fn drop(&mut self) {
        let _ = self.win.tool(self.dir, &["sc", "stop", &self.name]);
        let _ = self.win.tool(self.dir, &["sc", "delete", &self.name]);
    }
}
