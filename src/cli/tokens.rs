//! `edgefarm tokens create|list|revoke`: personal tokens with roles (admin only; the server's
//! permission table is `core::access`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::api;
use super::settings::ClientArgs;
use crate::node::client::enc;
use crate::wire::jobs::Deleted;
use crate::wire::tokens::{Role, TokenCreate, TokenCreated, TokenList};

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token; it is printed once, on the last line (`--json`: {id, name, role, token}).
    Create(CreateArgs),
    /// List the tokens (never their secrets).
    List,
    /// Revoke a token by id: it stops working at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Who holds it (shown on the jobs it submits).
    #[arg(long)]
    name: String,
    /// viewer, submitter, operator, admin or node-join.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Submitter only: a queue it may submit to (repeat for more; any when absent).
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Submitter only: the highest priority it may give a job.
    #[arg(long)]
    max_priority: Option<i64>,
    /// How long it works: 90d, 12h, 30m, 45s (forever when absent).
    #[arg(long)]
    expires: Option<String>,
    /// Node-join only: how many nodes it may enrol.
    #[arg(long)]
    uses: Option<u32>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The token's id (from `edgefarm tokens list`).
    id: String,
}

fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(json!(s))
        .map_err(|_| "one of viewer, submitter, operator, admin, node-join".to_string())
}

/// `edgefarm tokens ...`.
pub async fn run(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    match args.command {
        TokensCommand::Create(c) => {
            let body = TokenCreate {
                name: c.name,
                role: c.role,
                queues: (!c.queues.is_empty()).then_some(c.queues),
                max_priority: c.max_priority,
                expires: c.expires,
                uses: c.uses,
            };
            let t: TokenCreated = api::post(&client, "/v1/tokens", &body).await?;
            if args.client.json {
                api::print_json(&json!({"id": t.info.id, "name": t.info.name,
                                        "role": t.info.role, "token": t.token}));
            } else {
                println!(
                    "token {} for {} ({}){}; it is shown only now:",
                    t.info.id,
                    t.info.name,
                    t.info.role.as_str(),
                    limits(&t.info.queues, t.info.max_priority, t.info.uses_left)
                );
                println!("{}", t.token);
            }
        }
        TokensCommand::List => {
            let list: TokenList = api::get(&client, "/v1/tokens").await?;
            if args.client.json {
                api::print_json(&list);
            } else if list.tokens.is_empty() {
                println!(
                    "no tokens: create one with `edgefarm tokens create --name NAME --role ROLE`"
                );
            } else {
                println!(
                    "{:<16}  {:<10}  {:<24}  {:<16}  LIMITS",
                    "ID", "ROLE", "NAME", "EXPIRES"
                );
                for t in &list.tokens {
                    let expires = t.expires_ms.map_or("never".to_string(), expiry);
                    println!(
                        "{:<16}  {:<10}  {:<24}  {:<16}  {}",
                        t.id,
                        t.role.as_str(),
                        t.name,
                        expires,
                        limits(&t.queues, t.max_priority, t.uses_left).trim_start_matches(", ")
                    );
                }
            }
        }
        TokensCommand::Revoke(r) => {
            let d: Deleted = client
                .send(client.request(Method::DELETE, &format!("/v1/tokens/{}", enc(&r.id))))
                .await?;
            if args.client.json {
                api::print_json(&d);
            } else {
                println!("token {} revoked", d.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn limits(queues: &[String], max_priority: Option<i64>, uses: Option<u32>) -> String {
    let mut out = String::new();
    if !queues.is_empty() {
        out.push_str(&format!(", queues {}", queues.join(",")));
    }
    if let Some(p) = max_priority {
        out.push_str(&format!(", priority up to {p}"));
    }
    if let Some(u) = uses {
        out.push_str(&format!(", {u} uses left"));
    }
    out
}

/// "in 89 d", "in 3 h", "expired".
fn expiry(at_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let s = at_ms.saturating_sub(now) / 1000;
    match s {
        0 => "expired".to_string(),
        1..120 => format!("in {s} s"),
        120..7200 => format!("in {} min", s / 60),
        7200..172_800 => format!("in {} h", s / 3600),
        _ => format!("in {} d", s / 86_400),
    }
}
