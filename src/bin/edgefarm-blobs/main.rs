//! `edgefarm-blobs`: the blob benchmark of BENCHMARKS.md ("Files that travel with a job").
//!
//! `edgefarm-blobs run --edgefarm target/release/edgefarm --size-mib 1024` makes a file of
//! pseudo-random bytes, starts `edgefarm serve` and a plain static file server (this binary's
//! own `static` subcommand: tokio + hyper, GET streams a file, PUT writes one and fsyncs, no
//! hashing), then times with `curl` the upload and download of the file through each, and with
//! the node's own transfer code (`node::transfer`, run as a child process) through `serve`.
//! It reports throughput, the ratio to the static server, the peak RSS (`VmHWM`) of `serve`
//! and of the node-side transfer process, the time and peak RSS (`ru_maxrss` from `wait4`) of a
//! real `edgefarm fetch` of the blob as a job's output, and the time of one "which do you
//! lack?" round for 10,000 hashes.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Blob throughput, memory and manifest-check benchmark of edgefarm serve")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the benchmark.
    Run {
        /// The edgefarm binary (a release build).
        #[arg(long)]
        edgefarm: PathBuf,
        /// Size of the blob, MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Working directory [default: a fresh temp dir].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A plain static file server for the baseline: GET /f streams FILE, PUT /f writes FILE.put.
    Static { file: PathBuf, port: u16 },
    /// The node's transfer code in its own process: `up FILE SHA SIZE` or `down SHA SIZE DEST`.
    Transfer {
        url: String,
        secret: String,
        direction: String,
        args: Vec<String>,
    },
}

const SECRET: &str = "blob-bench-secret";

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run {
            edgefarm,
            size_mib,
            dir,
        } => run(&edgefarm, size_mib, dir),
        Cmd::Static { file, port } => static_server(file, port),
        Cmd::Transfer {
            url,
            secret,
            direction,
            args,
        } => transfer(&url, &secret, &direction, &args),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn wait_http(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", url])
            .status()?
            .success();
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer within 30 s")
}

/// Seconds `curl args` took (it must succeed).
fn curl(args: &[&str]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-o", "/dev/null"])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(started.elapsed().as_secs_f64())
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(edgefarm: &Path, size_mib: u64, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("edgefarm-blobs-{}", std::process::id()));
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("blob.bin");
    let size = size_mib << 20;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..size_mib {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    let (sha, _) = edgefarm::node::transfer::hash_file(&file)?;
    let me = std::env::current_exe()?;
    let mib = size as f64 / (1 << 20) as f64;

    let sport = free_port()?;
    let _static = Killed(
        Command::new(&me)
            .args(["static"])
            .arg(&file)
            .arg(sport.to_string())
            .spawn()?,
    );
    let static_url = format!("http://127.0.0.1:{sport}/f");
    wait_http(&format!("http://127.0.0.1:{sport}/health"))?;
    let eport = free_port()?;
    let serve = Killed(
        Command::new(edgefarm)
            .args([
                "serve",
                "--secret",
                SECRET,
                "--listen",
                &format!("127.0.0.1:{eport}"),
            ])
            .arg("--data")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start edgefarm serve")?,
    );
    let url = format!("http://127.0.0.1:{eport}");
    wait_http(&format!("{url}/v1/health"))?;
    let auth = format!("Authorization: Bearer {SECRET}");
    let file_s = file.to_string_lossy().into_owned();
    let blob_url = format!("{url}/v1/blobs/{sha}");

    let static_up = curl(&["-T", &file_s, &static_url])?;
    let serve_up = curl(&["-T", &file_s, "-H", &auth, &blob_url])?;
    let static_down = curl(&[&static_url])?;
    let serve_down = curl(&["-H", &auth, &blob_url])?;
    // The node's code path, in its own process: a verified download of the blob, and the
    // upload of a second blob (the farm has the first one already).
    let node_down_dest = dir.join("node-down.bin");
    let (node_down, node_down_kib) = child_transfer(
        &me,
        &url,
        "down",
        &[&sha, &size.to_string(), &node_down_dest.to_string_lossy()],
    )?;
    let _ = std::fs::remove_file(&node_down_dest);
    let file2 = dir.join("blob2.bin");
    {
        // A second blob (the first is on the farm already): the first with one byte changed.
        std::fs::copy(&file, &file2)?;
        let mut f = std::fs::OpenOptions::new().write(true).open(&file2)?;
        f.write_all(b"!")?;
    }
    let (sha2, _) = edgefarm::node::transfer::hash_file(&file2)?;
    let (node_up, node_up_kib) = child_transfer(
        &me,
        &url,
        "up",
        &[&file2.to_string_lossy(), &sha2, &size.to_string()],
    )?;
    // The CLI: the second blob acked as a job's output, then `edgefarm fetch` of the job.
    let (cli_fetch, cli_kib) = cli_fetch(edgefarm, &url, &dir, &sha2, size)?;
    let serve_kib = vm_hwm_kib(serve.0.id());

    // One "which do you lack?" round for 10,000 hashes (one of them present).
    let mut blobs: Vec<serde_json::Value> = (0..9_999u32)
        .map(|i| serde_json::json!({"sha256": format!("{:064x}", u128::from(i) * 0x9E37_79B9), "size": 1}))
        .collect();
    blobs.push(serde_json::json!({"sha256": sha, "size": size}));
    let body = dir.join("check.json");
    std::fs::write(
        &body,
        serde_json::to_vec(&serde_json::json!({"blobs": blobs}))?,
    )?;
    let body_arg = format!("@{}", body.display());
    let mut checks = Vec::new();
    for _ in 0..3 {
        checks.push(curl(&[
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body_arg,
            &format!("{url}/v1/blobs/missing"),
        ])?);
    }
    drop(serve);
    let rate = |secs: f64| mib / secs;
    println!("blob: {mib:.0} MiB, loopback, curl as the client");
    println!("| transfer | static server | edgefarm serve | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| upload (curl PUT) | {:.0} MiB/s | {:.0} MiB/s | {:.2} |",
        rate(static_up),
        rate(serve_up),
        static_up / serve_up
    );
    println!(
        "| download (curl GET) | {:.0} MiB/s | {:.0} MiB/s | {:.2} |",
        rate(static_down),
        rate(serve_down),
        static_down / serve_down
    );
    println!(
        "| node upload (node::transfer) | | {:.0} MiB/s | {:.2} |",
        rate(node_up),
        static_up / node_up
    );
    println!(
        "| node download (node::transfer, verified) | | {:.0} MiB/s | {:.2} |",
        rate(node_down),
        static_down / node_down
    );
    println!(
        "| CLI `edgefarm fetch` (verified, to disk) | | {:.0} MiB/s | {:.2} |",
        rate(cli_fetch),
        static_down / cli_fetch
    );
    println!(
        "peak RSS: serve {:.1} MiB, node download {:.1} MiB, node upload {:.1} MiB, CLI fetch {:.1} MiB",
        serve_kib as f64 / 1024.0,
        node_down_kib as f64 / 1024.0,
        node_up_kib as f64 / 1024.0,
        cli_kib as f64 / 1024.0
    );
    println!(
        "10,000-hash check, one request: {}",
        checks
            .iter()
            .map(|s| format!("{:.0} ms", s * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if dir.starts_with(std::env::temp_dir()) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// One JSON request with the farm secret, through curl.
fn api(method: &str, url: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", method])
        .args(["-H", &format!("Authorization: Bearer {SECRET}")])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(serde_json::to_string(body)?)
        .arg(url)
        .output()?;
    if !out.status.success() {
        bail!(
            "{method} {url}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Makes the blob `sha` the output of a one-task job (submit, claim, ack), then times a real
/// `edgefarm fetch` of that job; its time and peak RSS (KiB, `ru_maxrss` of the reaped child).
fn cli_fetch(
    edgefarm: &Path,
    url: &str,
    dir: &Path,
    sha: &str,
    size: u64,
) -> anyhow::Result<(f64, u64)> {
    let job = api(
        "POST",
        &format!("{url}/v1/jobs"),
        &serde_json::json!({"type": "command", "queue": "bench", "frames": "1",
            "params": {"program": "bench", "args": []}}),
    )?;
    let id = job["id"].as_str().context("job id")?.to_string();
    let claim = api(
        "POST",
        &format!("{url}/v1/queue/bench"),
        &serde_json::json!({"node": "bench", "max": 1, "tasks": []}),
    )?;
    let task = &claim["tasks"][0];
    let task_id = task["_id"].as_str().context("claimed task")?;
    api(
        "POST",
        &format!("{url}/v1/tasks/{task_id}/ack"),
        &serde_json::json!({"lease": task["lease"], "status": "done", "result": {},
            "outputs": [{"path": "out/blob.bin", "sha256": sha, "size": size}]}),
    )?;
    let to = dir.join("fetched");
    let started = Instant::now();
    let child = Command::new(edgefarm)
        .args(["fetch", &id, "--to"])
        .arg(&to)
        .env("EDGEFARM_URL", url)
        .env("EDGEFARM_SECRET", SECRET)
        .stdout(Stdio::null())
        .spawn()
        .context("start edgefarm fetch")?;
    let (ok, kib) = wait_rusage(child)?;
    let secs = started.elapsed().as_secs_f64();
    if !ok {
        bail!("edgefarm fetch failed");
    }
    let (got, _) = edgefarm::node::transfer::hash_file(&to.join("out/blob.bin"))?;
    if got != sha {
        bail!("edgefarm fetch wrote other bytes");
    }
    let _ = std::fs::remove_dir_all(&to);
    Ok((secs, kib))
}

/// Reaps `child`: whether it succeeded and its peak RSS in KiB (`ru_maxrss` from `wait4`).
fn wait_rusage(child: Child) -> anyhow::Result<(bool, u64)> {
    let pid = i32::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on the pid of our own child, not reaped by anyone else (`child` is dropped
    // without a wait); the pointers are to live locals.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if got != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// Runs this binary's `transfer` subcommand; its time and peak RSS (KiB).
fn child_transfer(
    me: &Path,
    url: &str,
    direction: &str,
    args: &[&str],
) -> anyhow::Result<(f64, u64)> {
    let out = Command::new(me)
        .args(["transfer", url, SECRET, direction])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "transfer {direction}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let secs: f64 = it
        .next()
        .and_then(|s| s.parse().ok())
        .context("child time")?;
    let kib: u64 = it
        .next()
        .and_then(|s| s.parse().ok())
        .context("child rss")?;
    Ok((secs, kib))
}

fn transfer(url: &str, secret: &str, direction: &str, args: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = edgefarm::node::client::Client::new(url, secret)?;
    let t = edgefarm::node::transfer::Transfer::new(&client)?;
    let started = Instant::now();
    match (direction, args) {
        ("up", [file, sha, size]) => rt.block_on(async {
            let entry = edgefarm::core::blobs::FileEntry {
                path: "blob".into(),
                sha256: sha.clone(),
                size: size.parse()?,
            };
            // Uploaded the way the farm says (to itself, or to its bucket); not when present.
            for blob in t.missing(&[entry]).await? {
                t.upload(Path::new(file), &blob).await?;
            }
            anyhow::Ok(())
        })?,
        ("down", [sha, size, dest]) => {
            rt.block_on(t.download(sha, size.parse()?, Path::new(dest)))?;
        }
        _ => bail!("transfer up FILE SHA SIZE | down SHA SIZE DEST"),
    }
    println!(
        "{} {}",
        started.elapsed().as_secs_f64(),
        vm_hwm_kib(std::process::id())
    );
    Ok(())
}

fn static_server(file: PathBuf, port: u16) -> anyhow::Result<()> {
    use axum::body::Body;
    use axum::routing::get;
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let get_file = file.clone();
        let put_file = file.with_extension("put");
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/f",
                get(move || {
                    let path = get_file.clone();
                    async move {
                        let f = tokio::fs::File::open(&path)
                            .await
                            .map_err(|e| e.to_string())?;
                        let len = f.metadata().await.map_err(|e| e.to_string())?.len();
                        let stream = futures_util::stream::unfold(f, |mut f| async move {
                            let mut buf = vec![0u8; 1 << 20];
                            match f.read(&mut buf).await {
                                Ok(0) => None,
                                Ok(n) => {
                                    buf.truncate(n);
                                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
                                }
                                Err(e) => Some((Err(e), f)),
                            }
                        });
                        let mut resp = axum::response::Response::new(Body::from_stream(stream));
                        resp.headers_mut()
                            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
                        Ok::<_, String>(resp)
                    }
                })
                .put(move |body: Body| {
                    let path = put_file.clone();
                    async move {
                        let f = tokio::fs::File::create(&path)
                            .await
                            .map_err(|e| e.to_string())?;
                        let mut w = tokio::io::BufWriter::with_capacity(1 << 20, f);
                        let mut s = body.into_data_stream();
                        while let Some(chunk) = s.next().await {
                            let chunk = chunk.map_err(|e| e.to_string())?;
                            w.write_all(&chunk).await.map_err(|e| e.to_string())?;
                        }
                        w.flush().await.map_err(|e| e.to_string())?;
                        w.into_inner().sync_all().await.map_err(|e| e.to_string())?;
                        Ok::<_, String>("stored")
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
