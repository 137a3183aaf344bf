//! `edgefarm webhooks [list]`: the deliveries (pending, then the latest finished);
//! `edgefarm webhooks deliver`: a deliverer for farms that cannot deliver by themselves
//! (Workers KV mode, Spin; docs/WEBHOOKS.md), the same rounds `edgefarm serve` runs inside.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};

use super::api;
use super::settings::ClientArgs;
use crate::node::client::Client;
use crate::runtime::native::webhooks::{http_client, round, Core};
use crate::wire::webhooks::{DeliveryList, DeliveryState};

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    command: Option<WebhooksCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// List deliveries: pending ones, then the latest finished (the default).
    List(ListArgs),
    /// Deliver the farm's webhooks from here, for ever (admin secret): for runtimes with no
    /// background work of their own. Not needed with `edgefarm serve` or a Durable Object.
    Deliver(DeliverArgs),
}

#[derive(Debug, Args, Default)]
struct ListArgs {
    /// The answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DeliverArgs {
    /// Longest wait between two asks, seconds (this process hears of new events only by asking).
    #[arg(long, default_value_t = 15)]
    every: u64,
    /// Allow receivers on loopback and private addresses (as the farm's own setting).
    #[arg(long)]
    allow_private: bool,
    /// One round, then exit.
    #[arg(long)]
    once: bool,
}

impl Core for Client {
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<T> {
        let req = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body);
        Ok(self.send(req).await?)
    }
}

/// `edgefarm webhooks ...`.
pub async fn run(args: WebhooksArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    match args.command {
        None => list(&client, ListArgs::default()).await,
        Some(WebhooksCommand::List(l)) => list(&client, l).await,
        Some(WebhooksCommand::Deliver(d)) => deliver(&client, d).await,
    }
}

async fn list(client: &Client, args: ListArgs) -> anyhow::Result<ExitCode> {
    let list: DeliveryList = api::get(client, "/v1/webhooks/deliveries").await?;
    if args.json {
        api::print_json(&list);
        return Ok(ExitCode::SUCCESS);
    }
    if list.deliveries.is_empty() {
        println!("no webhook deliveries");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<10} {:>8}  {:<14} {:<24} {:<40} LAST",
        "STATE", "ATTEMPTS", "EVENT", "JOB", "URL"
    );
    for d in &list.deliveries {
        let state = match d.state {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        };
        let last = match (d.last_status, &d.last_error) {
            (_, Some(e)) => e.clone(),
            (Some(s), None) => format!("HTTP {s}"),
            (None, None) => "-".into(),
        };
        println!(
            "{state:<10} {:>8}  {:<14} {:<24} {:<40} {last}",
            d.attempts, d.event, d.job, d.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The farm answered 401 or 403: asking again will not help.
fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::node::error::NodeError>(),
            Some(crate::node::error::NodeError::Api {
                status: 401 | 403,
                ..
            })
        )
    })
}

async fn deliver(client: &Client, args: DeliverArgs) -> anyhow::Result<ExitCode> {
    let http = http_client(args.allow_private)?;
    let every = Duration::from_secs(args.every.max(1));
    loop {
        let (sent, next) = match round(client, &http).await {
            Ok(r) => r,
            // One round, or a farm that refuses this credential: say so and stop.
            Err(e) if args.once || refused(&e) => return Err(e),
            Err(e) => {
                eprintln!("webhooks: {e:#}; trying again in {} s", every.as_secs());
                (0, None)
            }
        };
        if sent > 0 {
            eprintln!("webhooks: sent {sent}");
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let wait = next
            .map(|n| Duration::from_millis(n.saturating_sub(now)))
            .unwrap_or(every)
            .min(every);
        if sent == 0 || !wait.is_zero() {
            tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
        }
    }
}
