//! `edgefarm fetch JOB_ID --to DIR`: download every output of a job, verified against its
//! hash, resuming partial files (`<name>.part`, a `Range` request) and skipping files already
//! present with the right hash, so running it again after an interruption finishes the job.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::settings::ClientArgs;
use super::upload::Moved;
use super::UsageError;
use crate::node::transfer::{hash_file, Transfer};
use crate::wire::blobs::OutputsPage;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The job whose outputs to download.
    job: String,
    /// Where to put them (their paths below it as the job wrote them).
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `edgefarm fetch`.
pub async fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    crate::core::validate::ident("job", &args.job).map_err(|e| UsageError(e.to_string()))?;
    let client = args.client.client()?;
    let transfer = Transfer::new(&client)?;
    std::fs::create_dir_all(&args.to)
        .map_err(|e| UsageError(format!("{}: {e}", args.to.display())))?;
    let mut files = Vec::new();
    let mut cursor = Some("0".to_string());
    while let Some(c) = cursor {
        let path = format!("/v1/jobs/{}/outputs?cursor={c}&limit=1000", args.job);
        let page: OutputsPage = client
            .send(client.request(reqwest::Method::GET, &path))
            .await?;
        files.extend(page.outputs.into_iter().map(|l| l.file));
        cursor = page.next;
    }
    let mut moved = Moved::default();
    for e in &files {
        // The server checked these paths; check again, a path must never leave --to.
        crate::core::blobs::manifest::path("outputs", &e.path)
            .map_err(|err| anyhow::anyhow!("the server listed a bad path: {err}"))?;
        let dest = args.to.join(&e.path);
        let have = if dest.is_file() {
            let d = dest.clone();
            tokio::task::spawn_blocking(move || hash_file(&d))
                .await?
                .ok()
        } else {
            None
        };
        if have == Some((e.sha256.clone(), e.size)) {
            moved.skipped_files += 1;
            moved.skipped_bytes += e.size;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut part = dest.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let fetched = transfer.download(&e.sha256, e.size, &part).await?;
        std::fs::rename(&part, &dest)?;
        moved.files += 1;
        moved.bytes += fetched;
    }
    if args.client.json {
        super::api::print_json(&serde_json::to_value(moved)?);
    } else {
        println!(
            "{} (in {})",
            moved.summary("fetched", "already present"),
            args.to.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
