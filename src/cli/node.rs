//! `edgefarm node`: flags and environment over the TOML config file, then the agent.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::node::agent::{self, Exit, Loader};
use crate::node::config::{self, BlenderFile, CommandFile, FileConfig};
use crate::node::NodeError;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Config file (TOML); flags and environment override it. Re-read on SIGHUP (Windows: when
    /// the file changes).
    #[arg(long, env = "EDGEFARM_NODE_CONFIG")]
    config: Option<PathBuf>,
    /// Server URL.
    #[arg(long, env = "EDGEFARM_URL")]
    url: Option<String>,
    /// Farm secret or a node-join token (`edgefarm tokens create --role node-join --uses 1`),
    /// used once to enrol when there is no node token yet.
    #[arg(long, env = "EDGEFARM_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Node token from an earlier enrolment.
    #[arg(long, env = "EDGEFARM_NODE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Queue to take tasks from [default: default].
    #[arg(long, env = "EDGEFARM_QUEUE")]
    queue: Option<String>,
    /// Node name shown in `edgefarm nodes` [default: the host name]; a new name renames an
    /// enrolled node (it enrols again, which needs the farm secret).
    #[arg(long, env = "EDGEFARM_NODE_NAME")]
    name: Option<String>,
    /// Tags (repeatable or comma-separated); tagged jobs go only to nodes with the tag.
    #[arg(long = "tag", env = "EDGEFARM_NODE_TAGS", value_delimiter = ',')]
    tags: Vec<String>,
    /// Tasks run at once [default: 1].
    #[arg(long, env = "EDGEFARM_SLOTS")]
    slots: Option<u32>,
    /// Inputs (job `file` params) are resolved under this directory.
    #[arg(long, env = "EDGEFARM_PROJECT_ROOT")]
    project_root: Option<PathBuf>,
    /// Outputs (job `output` params) are written under this directory.
    #[arg(long, env = "EDGEFARM_OUTPUT_ROOT")]
    output_root: Option<PathBuf>,
    /// Where node.json (node id + token) is kept, locked while the node runs; each node needs
    /// its own [default: $XDG_STATE_HOME/edgefarm/node or ~/.local/state/edgefarm/node].
    #[arg(long, env = "EDGEFARM_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Most MiB the content cache of jobs that carry their files keeps between tasks
    /// (least recently used first out) [default: 10240].
    #[arg(long, env = "EDGEFARM_CACHE_MIB")]
    cache_mib: Option<u64>,
    /// Restart a slot after it ran this many tasks (0 = never).
    #[arg(long, env = "EDGEFARM_RECYCLE_AFTER")]
    recycle_after: Option<u32>,
    /// Enable `blender` jobs with this program (same as [types.blender] program; `auto`: find
    /// it in PATH or the platform's install place).
    #[arg(long, env = "EDGEFARM_BLENDER")]
    blender: Option<PathBuf>,
    /// Enable `ffmpeg` jobs (preview videos) with this program (same as [types.ffmpeg]
    /// program).
    #[arg(long, env = "EDGEFARM_FFMPEG")]
    ffmpeg: Option<PathBuf>,
    /// Allow a `command` program: NAME=PATH (repeatable).
    #[arg(long = "program", value_parser = parse_program)]
    programs: Vec<(String, PathBuf)>,
    /// Run under the Windows service manager (`sc create edgefarm binPath= "...\edgefarm.exe
    /// node --service --config ..."`): a service stop drains like Ctrl-C. Logs go to
    /// --log-file, by default node.log in the state dir.
    #[arg(long)]
    service: bool,
    /// Append the log to this file instead of stderr.
    #[arg(long, env = "EDGEFARM_LOG_FILE")]
    log_file: Option<PathBuf>,
}

fn parse_program(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or("expected NAME=PATH")?;
    Ok((name.to_string(), PathBuf::from(path)))
}

impl NodeArgs {
    /// Where the log goes: --log-file; as a service (which has no stderr) node.log in the state
    /// dir; else `None`, stderr.
    pub fn log_file(&self) -> Option<PathBuf> {
        if self.log_file.is_some() || !self.service {
            return self.log_file.clone();
        }
        self.load().ok().map(|c| c.state_dir.join("node.log"))
    }

    /// The file (if any) with the flags laid over it, validated.
    pub fn load(&self) -> Result<config::NodeConfig, NodeError> {
        let mut file = match &self.config {
            Some(path) => config::read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! over {
            ($($field:ident),*) => {$( if let Some(v) = &self.$field { file.$field = Some(v.clone()); } )*};
        }
        over!(
            url,
            secret,
            token,
            queue,
            name,
            slots,
            project_root,
            output_root,
            state_dir,
            recycle_after,
            cache_mib
        );
        if !self.tags.is_empty() {
            file.tags = Some(self.tags.clone());
        }
        if let Some(program) = &self.blender {
            let mut b = file.types.blender.take().unwrap_or(BlenderFile {
                program: program.clone(),
                threads: 0,
                args: vec![],
            });
            b.program = program.clone();
            file.types.blender = Some(b);
        }
        if let Some(program) = &self.ffmpeg {
            file.types.ffmpeg = Some(config::FfmpegFile {
                program: program.clone(),
            });
        }
        if !self.programs.is_empty() {
            let c = file.types.command.get_or_insert_with(|| CommandFile {
                programs: Default::default(),
            });
            c.programs.extend(self.programs.iter().cloned());
        }
        config::validate(file)
    }
}

/// Runs the agent until it is stopped (as a Windows service with `--service`).
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    // Validate before anything else so a bad config fails fast with exit code 2.
    args.load()?;
    if args.service {
        let body = Box::new(move || match run_agent(args) {
            Ok(code) => u32::from(code),
            Err(e) => {
                tracing::error!("{e:#}");
                1
            }
        });
        // Not under a service manager (or not on Windows): a usage error, exit code 2.
        let code = crate::node::platform::run_as_service(body)
            .map_err(|e| super::UsageError(e.to_string()))?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    run_agent(args).map(ExitCode::from)
}

/// The agent until it stops; the process exit code.
fn run_agent(args: NodeArgs) -> anyhow::Result<u8> {
    let config_file = args.config.clone();
    let loader: Loader = Arc::new(move || args.load());
    // One thread is plenty: the agent waits on the network and on child processes; the
    // rendering itself happens in those processes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(agent::run_watching(loader, config_file))? {
        Exit::Drained | Exit::Forced { unsent: 0 } => Ok(0),
        Exit::Forced { unsent } => {
            tracing::error!("{unsent} finished results could not be delivered");
            Ok(1)
        }
    }
}
