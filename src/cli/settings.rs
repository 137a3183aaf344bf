//! Where the CLI finds the server and the farm secret: flags and environment first, then
//! `~/.config/edgefarm/cli.toml`, then the secret file a local server keeps in its data dir
//! (`$EDGEFARM_DATA/secret` or `./edgefarm-data/secret`), so that on the server's own machine
//! `edgefarm jobs` works with no setup.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::UsageError;
use crate::node::client::Client;

/// Flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, env = "EDGEFARM_URL", global = true)]
    pub url: Option<String>,
    /// Farm secret (admin credential).
    #[arg(long, env = "EDGEFARM_SECRET", global = true, hide_env_values = true)]
    pub secret: Option<String>,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CliFile {
    url: Option<String>,
    secret: Option<String>,
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

impl ClientArgs {
    /// A client with the resolved URL and secret.
    pub fn client(&self) -> anyhow::Result<Client> {
        let file = read_cli_file()?;
        let url = self
            .url
            .clone()
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let secret = self
            .secret
            .clone()
            .or(file.secret)
            .or_else(data_dir_secret)
            .ok_or_else(|| UsageError(
                "no farm secret: pass --secret, set EDGEFARM_SECRET, or put `secret = \"...\"` in ~/.config/edgefarm/cli.toml".into(),
            ))?;
        Ok(Client::new(&url, &secret)?)
    }
}

fn read_cli_file() -> anyhow::Result<CliFile> {
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(CliFile::default());
    };
    let path = PathBuf::from(home).join(".config/edgefarm/cli.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliFile::default()),
        Err(e) => Err(UsageError(format!("cannot read {}: {e}", path.display())).into()),
    }
}

fn data_dir_secret() -> Option<String> {
    let dir = std::env::var_os("EDGEFARM_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| "edgefarm-data".into());
    std::fs::read_to_string(dir.join("secret"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
