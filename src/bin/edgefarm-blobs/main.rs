//! `edgefarm-blobs`: the blob benchmark of BENCHMARKS.md ("Files that travel with a job").
//!
//! `edgefarm-blobs run --edgefarm target/release/edgefarm --size-mib 1024 --rounds 5` makes a
//! file of pseudo-random bytes, starts `edgefarm serve` and a plain static file server (this
//! binary's own `static` subcommand: tokio + hyper, GET streams a file, PUT writes one and
//! fsyncs, no hashing), then, round after round, times the upload of the file by `curl` to
//! each and by the node's own transfer code (`node::transfer`, a child process) to `serve`,
//! and its download by `curl` from each to `/dev/null`, by `curl` from the static server to a
//! fsynced file, and by the node's verified download from `serve` to a file.
//!
//! Why rounds: on these virtual disks the same 1 GiB write takes 1.3 s one minute and 3.8 s
//! the next, so one run of each compares two different disks. Each round uploads blobs new to
//! their server (the file's first bytes name the round and the uploader), flushes all dirty
//! pages before each timing (no transfer pays for the last one's writeback), and rotates the
//! order; ratios are taken within a round and summarised by their median. It also reports the
//! peak RSS (`VmHWM`) of `serve` and of the node-side process, the time and peak RSS
//! (`ru_maxrss` from `wait4`) of a real `edgefarm fetch` of a blob as a job's output, and the
//! time of one "which do you lack?" request for 10,000 hashes.

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
        /// Rounds; each times every transfer once, in an order that rotates.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
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
            rounds,
            dir,
        } => run(&edgefarm, size_mib, rounds, dir),
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

/// One round's times, seconds. Every pair that is compared ran in the same round, one right
/// after the other, in an order that rotates from round to round.
#[derive(Default, Clone, Copy)]
struct Round {
    static_up: f64,
    serve_up: f64,
    node_up: f64,
    static_down_null: f64,
    serve_down_null: f64,
    static_down_file: f64,
    node_down_file: f64,
}

impl Round {
    fn upload_curl(&self) -> f64 {
        self.static_up / self.serve_up
    }
    fn upload_node(&self) -> f64 {
        self.static_up / self.node_up
    }
    fn download_curl(&self) -> f64 {
        self.static_down_null / self.serve_down_null
    }
    fn download_node(&self) -> f64 {
        self.static_down_file / self.node_down_file
    }
}

/// Median, min and max of `xs` (not empty).
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    (median, xs[0], xs[n - 1])
}

/// Gives `file` new content (its first 16 bytes name the round and the uploader), flushed to
/// disk, and returns its SHA-256: each upload is of a blob the farm does not hold yet.
fn tag(file: &Path, round: u32, who: u8) -> anyhow::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(file)?;
    f.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 16];
    head[..4].copy_from_slice(&round.to_le_bytes());
    head[4] = who;
    head[5..].copy_from_slice(b"edgefarm-bn");
    f.write_all(&head)?;
    f.sync_all()?;
    Ok(edgefarm::node::transfer::hash_file(file)?.0)
}

/// Seconds `f` took, after flushing every dirty page on the machine, so one transfer does not
/// pay for the writeback of the one before it.
fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

/// `curl` writing the download to `dest`, then an fsync of it: what a verified download to a
/// file owes the disk, without the verifying.
fn curl_to(url: &str, dest: &Path) -> anyhow::Result<()> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-o"])
        .arg(dest)
        .arg(url)
        .output()?;
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::File::open(dest)?.sync_all()?;
    Ok(())
}

/// One of `Round`'s ratio methods, for the summary table.
type Ratio = fn(&Round) -> f64;

#[allow(clippy::too_many_lines)]
fn run(edgefarm: &Path, size_mib: u64, rounds: u32, dir: Option<PathBuf>) -> anyhow::Result<()> {
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
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
    let stored = edgefarm::blob::fs::FsBlobs::existing(&dir.join("data").join("blobs"));
    let auth = format!("Authorization: Bearer {SECRET}");
    let file_s = file.to_string_lossy().into_owned();
    let size_s = size.to_string();
    let down_file = dir.join("down.bin");
    let mut node_up_kib = 0;
    let mut node_down_kib = 0;
    let mut results = Vec::new();
    let mut last_node_sha = String::new();
    let mut stored_last_round: Vec<String> = Vec::new();
    for r in 0..rounds {
        // Last round's blobs go, so the data dir (and the disk's free space) stays the same.
        for sha in stored_last_round.drain(..) {
            let _ = std::fs::remove_file(stored.path(&sha));
        }
        let mut round = Round::default();
        // Uploads: static, serve, node, each of a blob new to its server, in a rotating order.
        for step in 0..3u32 {
            match (step + r) % 3 {
                0 => {
                    tag(&file, r, 0)?;
                    round.static_up = timed(|| curl(&["-T", &file_s, &static_url]).map(drop))?;
                }
                1 => {
                    let sha = tag(&file, r, 1)?;
                    let blob_url = format!("{url}/v1/blobs/{sha}");
                    round.serve_up =
                        timed(|| curl(&["-T", &file_s, "-H", &auth, &blob_url]).map(drop))?;
                    stored_last_round.push(sha);
                }
                _ => {
                    let sha = tag(&file, r, 2)?;
                    let mut kib = 0;
                    round.node_up = timed(|| {
                        kib = child_transfer(&me, &url, "up", &[&file_s, &sha, &size_s])?.1;
                        Ok(())
                    })?;
                    node_up_kib = node_up_kib.max(kib);
                    stored_last_round.push(sha.clone());
                    last_node_sha = sha;
                }
            }
        }
        // Downloads of the same size: the node's blob from serve, the file from the static
        // server; to /dev/null by curl from each, and to a file (fsynced) by curl from the
        // static server and by the node's verified download from serve; in a rotating order.
        let blob_url = format!("{url}/v1/blobs/{last_node_sha}");
        for step in 0..4u32 {
            let _ = std::fs::remove_file(&down_file);
            match (step + r) % 4 {
                0 => round.static_down_null = timed(|| curl(&[&static_url]).map(drop))?,
                1 => round.serve_down_null = timed(|| curl(&["-H", &auth, &blob_url]).map(drop))?,
                2 => round.static_down_file = timed(|| curl_to(&static_url, &down_file))?,
                _ => {
                    let dest = down_file.to_string_lossy().into_owned();
                    let mut kib = 0;
                    round.node_down_file = timed(|| {
                        kib =
                            child_transfer(&me, &url, "down", &[&last_node_sha, &size_s, &dest])?.1;
                        Ok(())
                    })?;
                    node_down_kib = node_down_kib.max(kib);
                }
            }
        }
        let _ = std::fs::remove_file(&down_file);
        eprintln!(
            "round {}: upload curl {:.2}, node {:.2}; download curl {:.2}, node {:.2}",
            r + 1,
            round.upload_curl(),
            round.upload_node(),
            round.download_curl(),
            round.download_node()
        );
        results.push(round);
    }
    // The CLI: the node's last blob acked as a job's output, then `edgefarm fetch` of the job.
    let (cli_fetch, cli_kib) = cli_fetch(edgefarm, &url, &dir, &last_node_sha, size)?;
    let serve_kib = vm_hwm_kib(serve.0.id());

    // One "which do you lack?" round for 10,000 hashes (one of them present).
    let mut blobs: Vec<serde_json::Value> = (0..9_999u32)
        .map(|i| serde_json::json!({"sha256": format!("{:064x}", u128::from(i) * 0x9E37_79B9), "size": 1}))
        .collect();
    blobs.push(serde_json::json!({"sha256": last_node_sha, "size": size}));
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
    println!("blob: {mib:.0} MiB, loopback, {rounds} rounds; ratio = edgefarm's rate / the static server's in the same round");
    println!("| round | upload: static, serve (curl), node | ratio curl / node | download to /dev/null: static, serve | ratio | download to a file, fsynced: curl from static, node (verified) | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (i, x) in results.iter().enumerate() {
        println!(
            "| {} | {:.0}, {:.0}, {:.0} MiB/s | {:.2} / {:.2} | {:.0}, {:.0} MiB/s | {:.2} | {:.0}, {:.0} MiB/s | {:.2} |",
            i + 1,
            rate(x.static_up),
            rate(x.serve_up),
            rate(x.node_up),
            x.upload_curl(),
            x.upload_node(),
            rate(x.static_down_null),
            rate(x.serve_down_null),
            x.download_curl(),
            rate(x.static_down_file),
            rate(x.node_down_file),
            x.download_node()
        );
    }
    println!("| ratio | median | min | max |");
    println!("| --- | --- | --- | --- |");
    let rows: [(&str, Ratio); 4] = [
        ("upload, curl", Round::upload_curl),
        ("upload, node", Round::upload_node),
        ("download, curl", Round::download_curl),
        ("download, node (to a file)", Round::download_node),
    ];
    for (name, f) in rows {
        let (median, lo, hi) = spread(results.iter().map(f).collect());
        println!("| {name} | **{median:.2}** | {lo:.2} | {hi:.2} |");
    }
    let (static_null, _, _) = spread(results.iter().map(|x| x.static_down_null).collect());
    println!(
        "CLI `edgefarm fetch` (verified, to disk): {:.0} MiB/s, {:.2} of the static server's median download to /dev/null",
        rate(cli_fetch),
        static_null / cli_fetch
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
