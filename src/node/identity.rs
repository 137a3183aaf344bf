//! Who this node is to the server: a configured token, the token saved from an earlier
//! enrolment, or a new enrolment with the farm secret (then saved for the next start).

use serde_json::json;

use super::client::Client;
use super::config::NodeConfig;
use super::error::NodeError;
use super::state::{self, NodeState};
use super::wire::QueueSettings;

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
    let secret = config.secret.as_deref().ok_or_else(|| {
        NodeError::Config("no node token and no farm secret to enrol with".to_string())
    })?;
    let admin = Client::new(&config.url, secret)?;
    let body = json!({
        "name": config.name, "tags": config.tags, "types": config.types(), "slots": config.slots,
    });
    let enrolment = admin.enrol(&body).await?;
    let saved = NodeState {
        url: config.url.clone(),
        node_id: enrolment.node.id.clone(),
        token: enrolment.token,
    };
    state::save(&config.state_dir, &saved)?;
    tracing::info!(node = %saved.node_id, state = %state::path(&config.state_dir).display(), "enrolled");
    let client = Client::new(&config.url, &saved.token)?;
    let settings = client.queue_settings(&config.queue).await?;
    Ok(Identity {
        client,
        node_id: Some(saved.node_id),
        settings,
    })
}
