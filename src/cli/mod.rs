//! The `edgefarm` command line: the server (`serve`), the render node (`node`), the user
//! commands that talk to a server, and `demo`. One file per subcommand; this one parses and
//! dispatches. Exit codes: 0 success, 1 failure (including a server error or a failed job),
//! 2 bad usage or configuration.

mod api;
mod demo;
mod fetch;
mod follow;
mod gc;
mod jobs;
mod node;
mod nodes;
pub mod pack;
mod settings;
mod submit;
mod tokens;
mod upload;
mod webhooks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::node::NodeError;

#[derive(Debug, Parser)]
#[command(
    name = "edgefarm",
    version,
    about = "A render-farm job queue: server, render node and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    transport: crate::net::TransportArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded SQLite store by default).
    Serve(crate::runtime::native::ServeArgs),
    /// Run a render node: poll a queue and render what it hands out.
    Node(node::NodeArgs),
    /// Submit a job (`blender`, `command`, or `--file job.json`).
    Submit(submit::SubmitArgs),
    /// Download every output of a job (resumable, verified; skips files already there).
    Fetch(fetch::FetchArgs),
    /// Delete the blobs no job references, older than --older-than (server's data dir).
    Gc(gc::GcArgs),
    /// List jobs, newest first.
    Jobs(jobs::ListArgs),
    /// Show one job: its tasks, attempts, nodes, times, outputs, errors and failed tasks' logs.
    Job(jobs::ShowArgs),
    /// Follow a job's progress until it ends (exit 1 unless it completes).
    Follow(follow::FollowArgs),
    /// Print the log of a task (its latest attempt, or --attempt N).
    Log(jobs::LogArgs),
    /// Cancel a job.
    Cancel(jobs::ActionArgs),
    /// Pause a job (running tasks finish; nothing new starts).
    Pause(jobs::ActionArgs),
    /// Resume a paused job.
    Resume(jobs::ActionArgs),
    /// Queue a job's unfinished tasks again (all of them if it had completed).
    Requeue(jobs::ActionArgs),
    /// List render nodes.
    Nodes(nodes::ListArgs),
    /// Drain a node: it is handed no new task.
    Drain(nodes::ActionArgs),
    /// Undo `drain`.
    Undrain(nodes::ActionArgs),
    /// Personal tokens with roles: `tokens create --name anna --role submitter`, `tokens list`, `tokens revoke ID`.
    Tokens(tokens::TokensArgs),
    /// Webhook deliveries (`webhooks list`), and `webhooks deliver` for farms that cannot deliver by themselves.
    Webhooks(webhooks::WebhooksArgs),
    /// Start a server and a node, render a sample scene, keep the farm up until Ctrl-C (`--exit`: stop when the job ends).
    Demo(demo::DemoArgs),
}

/// A problem with how the command was called or configured (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::net::configure(cli.transport.clone());
    let log_file = match &cli.command {
        Command::Node(args) => args.log_file(),
        _ => None,
    };
    if let Err(e) = init_logging(
        matches!(cli.command, Command::Serve(_) | Command::Node(_)),
        log_file.as_deref(),
    ) {
        eprintln!("edgefarm: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(args) => crate::runtime::native::serve(args).map(|()| ExitCode::SUCCESS),
        Command::Node(args) => node::run(args),
        Command::Demo(args) => demo::run(args),
        other => block_on(client_command(other)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgefarm: {e:#}");
            if cannot_connect(&e) {
                eprintln!(
                    "edgefarm: is `edgefarm serve` running at that address? The URL comes from --url, EDGEFARM_URL or ~/.config/edgefarm/cli.toml (default http://127.0.0.1:8080)."
                );
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn client_command(command: Command) -> anyhow::Result<ExitCode> {
    if matches!(
        command,
        Command::Jobs(_)
            | Command::Job(_)
            | Command::Follow(_)
            | Command::Log(_)
            | Command::Nodes(_)
            | Command::Tokens(_)
            | Command::Webhooks(_)
    ) {
        quiet_on_closed_pipe();
    }
    match command {
        Command::Submit(a) => submit::run(a).await,
        Command::Fetch(a) => fetch::run(a).await,
        Command::Gc(a) => gc::run(a).await,
        Command::Jobs(a) => jobs::list(a).await.map(|()| ExitCode::SUCCESS),
        Command::Job(a) => jobs::show(a).await,
        Command::Follow(a) => follow::run(a).await,
        Command::Log(a) => jobs::log(a).await,
        Command::Cancel(a) => jobs::action(a, "cancel").await,
        Command::Pause(a) => jobs::action(a, "pause").await,
        Command::Resume(a) => jobs::action(a, "resume").await,
        Command::Requeue(a) => jobs::action(a, "requeue").await,
        Command::Nodes(a) => nodes::list(a).await.map(|()| ExitCode::SUCCESS),
        Command::Drain(a) => nodes::action(a, "drain").await,
        Command::Undrain(a) => nodes::action(a, "resume").await,
        Command::Tokens(a) => tokens::run(a).await,
        Command::Webhooks(a) => webhooks::run(a).await,
        Command::Serve(_) | Command::Node(_) | Command::Demo(_) => {
            Err(UsageError("not a client command".into()).into())
        }
    }
}

/// `edgefarm jobs | head` ends quietly when `head` has read enough, as Unix tools do, instead
/// of panicking on the failed write. Only for the commands that print listings: the others
/// write to child processes' pipes, which must fail as errors (Rust's default).
fn quiet_on_closed_pipe() {
    // SAFETY: signal(2) with the default disposition, before any thread of ours writes to a
    // pipe; sockets are unaffected (Rust sends with MSG_NOSIGNAL / SO_NOSIGPIPE).
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub(crate) fn block_on<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Whether the server could not be reached at all (as opposed to answering with an error).
fn cannot_connect(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect() || r.is_timeout())
    })
}

/// 2 for usage and config errors, 1 for everything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|c| {
        c.downcast_ref::<UsageError>().is_some()
            || c.downcast_ref::<NodeError>()
                .is_some_and(NodeError::is_config)
    });
    if usage {
        2
    } else {
        1
    }
}

/// Logs to stderr, or appended to `file`.
fn init_logging(verbose: bool, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEFARM_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("log file {}: {e}", path.display()))?;
            builder
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .try_init()
        }
        None => {
            // Colour only on a terminal: redirected to a log file, escape codes are noise.
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none();
            builder
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .try_init()
        }
    };
    Ok(())
}
