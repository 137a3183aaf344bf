//! `edgefarm nodes`, `edgefarm drain NODE`, `edgefarm undrain NODE`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::api::{self, n, s};
use super::settings::ClientArgs;
use crate::node::client::enc;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// Node id.
    id: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `edgefarm nodes`.
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let page = api::get(&client, "/v1/nodes").await?;
    if args.client.json {
        api::print_json(&page);
        return Ok(());
    }
    println!(
        "{:<38} {:<16} {:<9} {:>5} {:>6}  TYPES / TAGS",
        "ID", "NAME", "STATE", "SLOTS", "LEASES"
    );
    for node in page["nodes"].as_array().into_iter().flatten() {
        println!(
            "{:<38} {:<16} {:<9} {:>5} {:>6}  {} / {}",
            s(node, "id"),
            s(node, "name"),
            s(node, "state"),
            n(node, "slots"),
            n(node, "leases"),
            node["types"],
            node["tags"]
        );
    }
    Ok(())
}

/// `edgefarm drain|undrain NODE` (`verb` is the API's `drain` or `resume`).
pub async fn action(args: ActionArgs, verb: &str) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let node = api::post(
        &client,
        &format!("/v1/nodes/{}/{verb}", enc(&args.id)),
        &json!({}),
    )
    .await?;
    if args.client.json {
        api::print_json(&node);
    } else {
        println!("node {} is now {}", s(&node, "id"), s(&node, "state"));
    }
    Ok(ExitCode::SUCCESS)
}
