//! `edgefarm demo` (placeholder until the server runs).

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo: not yet")
}
