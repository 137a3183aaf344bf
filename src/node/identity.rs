//! Who this node is to the server: a configured token, the token saved from an earlier
//! enrolment, or a new enrolment with the farm secret or a node-join token (`secret`; then
//! saved for the next start).
//!
//! A saved identity is checked against the server's record of the node: when the config now
//! says another name (or other tags or types), the node enrols again under the new ones and
//! deletes its old record, so `edgefarm nodes` and the server's "why is this job waiting"
//! answer describe the node as it runs. Re-enrolment (a new id) rather than an in-place
//! rename, because the API has no route that lets a node change its own record; it needs the
//! farm secret, and without one the node only warns.

use super::client::Client;
use super::config::NodeConfig;
use super::error::NodeError;
use super::state::{self, NodeState};
use crate::wire::nodes::Enrol;
use crate::wire::nodes::Node as NodeInfo;
use crate::wire::queue::QueueSettings;

/// A connected node: its client (bearer = node token), id when known, and the queue settings.
pub struct Identity {
    pub client: Client,
    pub node_id: Option<String>,
    pub settings: QueueSettings,
}

/// Finds or makes a node token and checks it with `GET /v1/queue/{queue}`.
pub async fn connect(config: &NodeConfig) -> Result<Identity, NodeError> {
    if let Some(token) = &config.token {
        let client = Client::new(&config.url, token)?;
        let settings = client.queue_settings(&config.queue).await?;
        return Ok(Identity {
            client,
            node_id: None,
            settings,
        });
    }
    if let Some(saved) = state::load(&config.state_dir, &config.url)? {
        let client = Client::new(&config.url, &saved.token)?;
        match client.queue_settings(&config.queue).await {
            Ok(settings) => {
                if let Some(changed) = outdated(config, &client, &saved.node_id).await {
                    if config.secret.is_some() {
                        tracing::info!(node = %saved.node_id, %changed, "the config changed this node's record; enrolling again under the new one");
                        let identity = enrol(config).await?;
                        forget(config, &saved.node_id).await;
                        return Ok(identity);
                    }
                    tracing::warn!(node = %saved.node_id, %changed, "the server's record of this node is out of date; enrolling again needs the farm secret (--secret)");
                }
                tracing::info!(node = %saved.node_id, "using the saved node token");
                return Ok(Identity {
                    client,
                    node_id: Some(saved.node_id),
                    settings,
                });
            }
            // A revoked token: enrol again if we can, as a new node.
            Err(e) if e.is_auth() && config.secret.is_some() => {
                tracing::warn!(error = %e.report(), "saved node token refused; enrolling again");
            }
            Err(e) => return Err(e),
        }
    }
    enrol(config).await
}

/// `POST /v1/nodes` with the farm secret or a node-join token (which spends one of its uses);
/// the new id and token are saved at once.
async fn enrol(config: &NodeConfig) -> Result<Identity, NodeError> {
    let secret = config.secret.as_deref().ok_or_else(|| {
        NodeError::Config("no node token and no farm secret to enrol with".to_string())
    })?;
    let admin = Client::new(&config.url, secret)?;
    let body = Enrol {
        name: Some(config.name.clone()),
        tags: Some(config.tags.clone()),
        types: Some(config.types()),
        slots: Some(config.slots),
    };
    let enrolment = admin.enrol(&body).await?;
    let saved = NodeState {
        url: config.url.clone(),
        node_id: enrolment.node.id.clone(),
        token: enrolment.token,
    };
    state::save(&config.state_dir, &saved)?;
    tracing::info!(node = %saved.node_id, name = %config.name, state = %state::path(&config.state_dir).display(), "enrolled");
    let client = Client::new(&config.url, &saved.token)?;
    let settings = client.queue_settings(&config.queue).await?;
    Ok(Identity {
        client,
        node_id: Some(saved.node_id),
        settings,
    })
}

/// What differs between the config and the server's record of node `id`, if anything. A
/// record that cannot be read is taken as current: this check must never stop a node.
async fn outdated(config: &NodeConfig, client: &Client, id: &str) -> Option<String> {
    let record = match client.node(id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e.report(), "could not read this node's record");
            return None;
        }
    };
    describe_changes(config, &record)
}

/// `name "a" → "b", tags [..] → [..]` for the fields the config changed, or `None`.
pub fn describe_changes(config: &NodeConfig, record: &NodeInfo) -> Option<String> {
    fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    }
    let mut changes = Vec::new();
    if config.name_chosen && record.name != config.name {
        changes.push(format!("name {:?} → {:?}", record.name, config.name));
    }
    if sorted(&record.tags) != sorted(&config.tags) {
        changes.push(format!("tags {:?} → {:?}", record.tags, config.tags));
    }
    if sorted(&record.types) != sorted(&config.types()) {
        changes.push(format!("types {:?} → {:?}", record.types, config.types()));
    }
    (!changes.is_empty()).then(|| changes.join(", "))
}

/// Deletes the record this node had before enrolling again (best effort: a leftover record
/// only shows as an offline node an admin can remove).
async fn forget(config: &NodeConfig, old_id: &str) {
    let Some(secret) = config.secret.as_deref() else {
        return;
    };
    let result = match Client::new(&config.url, secret) {
        Ok(admin) => admin.delete_node(old_id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(node = %old_id, error = %e.report(), "could not delete this node's old record");
    }
}
