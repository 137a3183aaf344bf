//! `edgefarm nodes`, `edgefarm nodes remove NODE`, `edgefarm drain NODE`, `edgefarm undrain
//! NODE`.
//!
//! NODE is a node's name, its id, or the start of its id. The server addresses nodes by id
//! only; the names are resolved here, from `GET /v1/nodes`, so every client sees the same API
//! and a name that matches two nodes is refused with both listed rather than guessed.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::api;
use super::settings::ClientArgs;
use super::UsageError;
use crate::node::client::{enc, Client};
use crate::wire::jobs::Deleted;
use crate::wire::metrics::Metrics;
use crate::wire::nodes::{Node, NodeList};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(subcommand)]
    command: Option<NodesCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum NodesCommand {
    /// Remove a node: its token stops working and its tasks go to other nodes at once.
    Remove(RemoveArgs),
}

/// The server flags are the `nodes` command's own (they are global), so only the node here.
#[derive(Debug, Args)]
struct RemoveArgs {
    /// The node: its name, its id, or the start of its id.
    node: String,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The node: its name, its id, or the start of its id.
    node: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// `edgefarm nodes` (or `edgefarm nodes remove NODE`).
pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    if let Some(NodesCommand::Remove(a)) = &args.command {
        return remove(&args.client, &a.node).await;
    }
    let client = args.client.client()?;
    let page: NodeList = api::get(&client, "/v1/nodes").await?;
    if args.client.json {
        api::print_json(&page);
        return Ok(());
    }
    // Live leases per node: the metrics' `leases_by_node` (unexpired leases, counted over the
    // bounded scan of the newest jobs); "-" when the metrics cannot be read.
    let leases = api::get::<Metrics>(&client, "/v1/metrics?format=json")
        .await
        .map(|m| m.snapshot.leases_by_node)
        .ok();
    let nodes = &page.nodes;
    if nodes.is_empty() {
        println!("no nodes enrolled: start one with `edgefarm node`");
        return Ok(());
    }
    let width = nodes
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 32);
    let what = |node: &Node| {
        let types: Vec<&str> = node.types.iter().map(|t| t.as_str()).collect();
        format!("{} / {}", list_of(&types), list_of(&node.tags))
    };
    let wide = nodes
        .iter()
        .map(|n| what(n).chars().count())
        .max()
        .unwrap_or(12)
        .clamp(12, 48);
    println!(
        "{:<width$}  {:<8}  {:>5}  {:>6}  {:<10}  {:<wide$}  ID",
        "NAME", "STATE", "SLOTS", "LEASES", "SEEN", "TYPES / TAGS"
    );
    let now = now_ms();
    for node in nodes {
        let held = match &leases {
            Some(by_node) => by_node.get(&node.id).copied().unwrap_or(0).to_string(),
            None => "-".to_string(),
        };
        println!(
            "{:<width$}  {:<8}  {:>5}  {:>6}  {:<10}  {:<wide$}  {}",
            node.name,
            node.state.as_str(),
            node.slots,
            held,
            ago(now, node.last_seen_ms),
            what(node),
            node.id,
        );
    }
    let online = nodes.iter().filter(|n| n.online).count();
    println!("{online} of {} nodes online", nodes.len());
    Ok(())
}

fn list_of<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// "12 s ago", "3 min ago", ...
fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The one node `query` names: an exact id, else an exact name, else the start of an id.
pub async fn resolve(client: &Client, query: &str) -> anyhow::Result<Node> {
    let page: NodeList = api::get(client, "/v1/nodes").await?;
    pick(&page.nodes, query)
}

fn pick(nodes: &[Node], query: &str) -> anyhow::Result<Node> {
    let by = |f: &dyn Fn(&Node) -> bool| -> Vec<&Node> { nodes.iter().filter(|n| f(n)).collect() };
    let rules: [&dyn Fn(&Node) -> bool; 3] = [&|n| n.id == query, &|n| n.name == query, &|n| {
        !query.is_empty() && n.id.starts_with(query)
    }];
    for rule in rules {
        match by(rule).as_slice() {
            [] => continue,
            [one] => return Ok((*one).clone()),
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|n| format!("{} ({})", n.name, n.id))
                    .collect();
                return Err(UsageError(format!(
                    "{query:?} matches {} nodes: {}; give the id",
                    many.len(),
                    names.join(", ")
                ))
                .into());
            }
        }
    }
    Err(UsageError(format!(
        "no node is named {query:?} or has an id starting with it; `edgefarm nodes` lists them"
    ))
    .into())
}

/// `edgefarm drain|undrain NODE` (`verb` is the API's `drain` or `resume`).
pub async fn action(args: ActionArgs, verb: &str) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let target = resolve(&client, &args.node).await?;
    let node: Node = api::post(
        &client,
        &format!("/v1/nodes/{}/{verb}", enc(&target.id)),
        &json!({}),
    )
    .await?;
    if args.client.json {
        api::print_json(&node);
    } else {
        let now = if node.draining {
            "draining: it is handed no new task"
        } else {
            "taking tasks again"
        };
        println!(
            "node {} ({}) is {now} (state: {})",
            node.name,
            node.id,
            node.state.as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `edgefarm nodes remove NODE`.
async fn remove(flags: &ClientArgs, node: &str) -> anyhow::Result<()> {
    let client = flags.client()?;
    let target = resolve(&client, node).await?;
    let id = &target.id;
    let answer: Deleted = client
        .send(client.request(Method::DELETE, &format!("/v1/nodes/{}", enc(id))))
        .await?;
    if flags.json {
        api::print_json(&answer);
    } else {
        println!(
            "node {} ({id}) removed: its token no longer works",
            target.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, name: &str) -> Node {
        Node {
            id: id.into(),
            name: name.into(),
            tags: Vec::new(),
            types: Vec::new(),
            slots: 1,
            state: crate::wire::nodes::ShownState::Awake,
            online: true,
            draining: false,
            queues: Vec::new(),
            last_seen_ms: 0,
            left_ms: None,
            created_ms: 0,
        }
    }

    fn nodes() -> Vec<Node> {
        vec![
            node("0193a1b2-aaaa", "nodeA"),
            node("0193a1b2-bbbb", "nodeB"),
            node("0193ffff-cccc", "nodeB"),
        ]
    }

    #[test]
    fn a_unique_name_or_id_prefix_names_one_node() {
        let n = nodes();
        assert_eq!(
            pick(&n, "nodeA").map(|v| v.id).ok().as_deref(),
            Some("0193a1b2-aaaa")
        );
        assert_eq!(
            pick(&n, "0193ff").map(|v| v.name).ok().as_deref(),
            Some("nodeB")
        );
        assert_eq!(
            pick(&n, "0193a1b2-bbbb").map(|v| v.id).ok().as_deref(),
            Some("0193a1b2-bbbb")
        );
    }

    #[test]
    fn an_ambiguous_name_lists_the_candidates() {
        let e = pick(&nodes(), "nodeB").map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("0193a1b2-bbbb") && e.contains("0193ffff-cccc"),
            "{e}"
        );
        let e = pick(&nodes(), "0193a1")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 nodes"), "{e}");
        assert!(pick(&nodes(), "nodeZ").is_err());
    }
}
