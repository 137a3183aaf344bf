//! `edgefarm-load`: an HTTP load generator for edgefarm and nexrender-server.
//!
//! `edgefarm-load run --url http://127.0.0.1:8080 --secret S --protocol v1 --pid PID` submits
//! jobs with concurrent clients (jobs/s), claims and finishes tasks with concurrent pickers
//! while N tasks are queued for each N of `--sizes` (claims/s, p50/p99), reads job status
//! (p50/p99) and samples the server's RSS and idle CPU from `/proc/PID`. `--protocol
//! nexrender` speaks nexrender-server's `/api/v1`, so one script can measure edgefarm's façade
//! and the real nexrender-server in the same run; `compare` prints two runs side by side.
//! See BENCHMARKS.md for the numbers and how to reproduce them.
//!
//! It is a binary rather than a `cargo bench` target so that it can be pointed at any server
//! (the real nexrender-server included) and so that `cargo test --all-targets` builds it
//! without running it.

mod killtest;
mod paired;
mod proto;
mod report;
mod run;
mod stats;
mod steady;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load generator for edgefarm's /v1 and nexrender's /api/v1 protocols")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the benchmark against one server.
    Run(RunArgs),
    /// Submits, claims and acks with concurrent clients and sends SIGKILL to the server
    /// midway; writes every write the server acknowledged to `--out` (for `kill-verify`).
    KillTest {
        #[command(flatten)]
        server: ServerArgs,
        /// Server process id (it is sent SIGKILL).
        #[arg(long)]
        pid: u32,
        /// Concurrent submitters (and as many pickers).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// When to kill, ms after the load starts.
        #[arg(long, default_value_t = 3000)]
        kill_after_ms: u64,
        /// Where to write the acknowledged writes (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// After a `kill-test` and a restart of the server on the same data: checks that every
    /// acknowledged write is there; exits non-zero when one is missing.
    KillVerify {
        #[command(flatten)]
        server: ServerArgs,
        /// The file `kill-test` wrote.
        #[arg(long)]
        file: PathBuf,
    },
    /// Prints two runs' results (JSON files written by `run --json`) side by side.
    Compare {
        /// The first run (the ratios are first / second).
        a: PathBuf,
        /// The second run.
        b: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Farm secret.
    #[arg(long, env = "EDGEFARM_SECRET")]
    secret: String,
}

impl ServerArgs {
    fn target(&self) -> anyhow::Result<proto::Target> {
        loopback_only(&self.url)?;
        Ok(proto::Target {
            base: self.url.trim_end_matches('/').to_string(),
            secret: self.secret.clone(),
            protocol: proto::Protocol::V1,
            tasks_per_job: 1,
            queue: "default".into(),
        })
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: the generator shares the machine with the server it measures, and an HTTP
    // client needs far less CPU per request than the server does.
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

#[derive(clap::Args)]
struct RunArgs {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Farm secret (edgefarm) or nexrender-server's `--secret`.
    #[arg(long, env = "EDGEFARM_SECRET")]
    secret: String,
    /// Protocol to speak.
    #[arg(long, value_enum, default_value = "v1")]
    protocol: proto::Protocol,
    /// Server process id, to sample its RSS and CPU from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Queue depths (queued tasks) at which claims are measured, ascending.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000,100000")]
    sizes: Vec<u64>,
    /// Concurrent clients submitting jobs and reading status.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Concurrent pickers claiming tasks.
    #[arg(long, default_value_t = 8)]
    pickers: usize,
    /// Concurrent clients submitting during the claim phase to hold the queue depth (default:
    /// as many as pickers, so that the refill keeps up with the claims).
    #[arg(long)]
    refillers: Option<usize>,
    /// After the sweep, pairs of alternating slots on a shallow queue (the first size) and the
    /// deep one (the last size) on the same server, for a depth ratio that other load on the
    /// machine does not skew (`/v1` only; 0: none).
    #[arg(long, default_value_t = 0)]
    pairs: u64,
    /// Seconds per slot of the paired comparison.
    #[arg(long, default_value_t = 3)]
    slot_seconds: u64,
    /// Claim cycles measured at each queue depth (at most).
    #[arg(long, default_value_t = 2000)]
    cycles: u64,
    /// Seconds of claiming at each queue depth (at most).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Status reads.
    #[arg(long, default_value_t = 5000)]
    reads: u64,
    /// Tasks per `/v1` job (nexrender jobs have one).
    #[arg(long, default_value_t = 1)]
    tasks_per_job: u64,
    /// Seconds the server is left idle at the end to measure its idle CPU.
    #[arg(long, default_value_t = 5)]
    idle_seconds: u64,
    /// Stop everything after this many seconds.
    #[arg(long, default_value_t = 1800)]
    max_seconds: u64,
    /// Name of this run in the tables.
    #[arg(long, default_value = "server")]
    label: String,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A tiny run (sizes 100 and 1000, 200 cycles, 200 reads) to check the setup.
    #[arg(long)]
    quick: bool,
}

fn loopback_only(url: &str) -> anyhow::Result<()> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', '?']).next())
        .unwrap_or("");
    // `[::1]:80` and `[::1]` keep their brackets; `host:port` loses its port.
    let host = match host.split_once(']') {
        Some((v6, _)) => &host[..=v6.len()],
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let ok = host == "localhost" || host == "[::1]" || host.starts_with("127.");
    anyhow::ensure!(
        ok,
        "{url}: the load generator only targets loopback addresses"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Compare { a, b } => {
            let read = |p: &PathBuf| -> anyhow::Result<run::Report> {
                Ok(serde_json::from_slice(&std::fs::read(p)?)?)
            };
            print!("{}", report::compare(&read(&a)?, &read(&b)?));
            Ok(())
        }
        Command::KillTest {
            server,
            pid,
            clients,
            kill_after_ms,
            out,
        } => {
            let target = server.target()?;
            let acked = runtime()?.block_on(killtest::run(
                &target,
                pid,
                clients.max(1),
                Duration::from_millis(kill_after_ms),
            ))?;
            println!(
                "killed the server (SIGKILL) under load; acknowledged before the kill: {} submits, {} acks",
                acked.jobs.len(),
                acked.completed.len()
            );
            std::fs::write(out, serde_json::to_vec(&acked)?)?;
            Ok(())
        }
        Command::KillVerify { server, file } => {
            let target = server.target()?;
            let acked: killtest::Acknowledged = serde_json::from_slice(&std::fs::read(file)?)?;
            let missing = runtime()?.block_on(killtest::verify(&target, &acked))?;
            println!(
                "after the restart: {} of {} acknowledged submits and {} of {} acknowledged acks found",
                acked.jobs.len() - missing.iter().filter(|m| m.starts_with("job ")).count(),
                acked.jobs.len(),
                acked.completed.len() - missing.iter().filter(|m| m.starts_with("completion")).count(),
                acked.completed.len()
            );
            anyhow::ensure!(missing.is_empty(), "lost after kill -9: {missing:?}");
            Ok(())
        }
        Command::Run(args) => {
            loopback_only(&args.url)?;
            let mut plan = run::Plan {
                target: proto::Target {
                    base: args.url.trim_end_matches('/').to_string(),
                    secret: args.secret,
                    protocol: args.protocol,
                    tasks_per_job: args.tasks_per_job,
                    queue: "default".into(),
                },
                label: args.label,
                pid: args.pid,
                sizes: args.sizes,
                clients: args.clients.max(1),
                pickers: args.pickers.max(1),
                refillers: args.refillers.unwrap_or(args.pickers).max(1),
                pairs: args.pairs,
                slot_seconds: args.slot_seconds.max(1),
                cycles: args.cycles,
                seconds_per_size: args.seconds,
                reads: args.reads,
                idle_seconds: args.idle_seconds,
                deadline: Instant::now() + Duration::from_secs(args.max_seconds),
            };
            if args.quick {
                plan.sizes = vec![100, 1000];
                plan.cycles = 200;
                plan.reads = 200;
                plan.idle_seconds = 1;
                plan.pairs = plan.pairs.min(2);
            }
            let report = runtime()?.block_on(run::run(&plan))?;
            print!("{}", report::table(&report));
            if let Some(path) = args.json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_only;

    #[test]
    fn only_loopback_servers_are_load_tested() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:3000/",
            "http://[::1]:80",
            "http://[::1]",
        ] {
            assert!(loopback_only(ok).is_ok(), "{ok}");
        }
        for no in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://192.168.1.2",
        ] {
            assert!(loopback_only(no).is_err(), "{no}");
        }
    }
}
