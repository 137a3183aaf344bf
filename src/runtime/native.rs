//! The native server (`edgefarm serve`), stub being written.

/// Flags of `edgefarm serve`; each also reads an environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEFARM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Data directory for the embedded SQLite store.
    #[arg(long, env = "EDGEFARM_DATA", default_value = "edgefarm-data")]
    pub data: std::path::PathBuf,
    /// Keep everything in memory (nothing survives a restart).
    #[arg(long)]
    pub memory: bool,
    /// Farm secret; generated and kept in the data dir when absent.
    #[arg(long, env = "EDGEFARM_SECRET")]
    pub secret: Option<String>,
    /// Lease length handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_LEASE_MS", default_value_t = 60_000)]
    pub lease_ms: u64,
    /// Heartbeat interval handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// Poll interval handed to nodes, in ms.
    #[arg(long, env = "EDGEFARM_POLL_MS", default_value_t = 2_000)]
    pub poll_ms: u64,
}

/// Runs the server until SIGINT/SIGTERM.
pub fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
