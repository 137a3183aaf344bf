//! `/v1/tokens` and `/v1/whoami`: personal tokens with roles, and who a credential is.

use serde::{Deserialize, Serialize};

/// What a credential may do (`core::access` holds the table of what each role may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads jobs, tasks, logs, outputs, nodes, metrics.
    Viewer,
    /// Viewer, plus submits jobs, uploads blobs and steers the jobs it submitted.
    Submitter,
    /// All jobs and nodes, not tokens.
    Operator,
    /// Everything (also the farm secret).
    Admin,
    /// Enrols nodes only, a limited number of times.
    NodeJoin,
    /// An enrolled node's own token (never created through `/v1/tokens`).
    Node,
}

impl Role {
    /// The name in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::NodeJoin => "node-join",
            Role::Node => "node",
        }
    }
}

/// `POST /v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Who holds it (shown in lists and on the jobs it submits).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Submitter only: the queues it may submit to (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// Submitter only: the highest priority it may give a job (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<i64>,
    /// How long it works: a number and a unit, `90d`, `12h`, `30m`, `45s` (forever when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Node-join only: how many nodes it may enrol (required for node-join).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
}

/// A token as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Token id (the part of the token after `eft_`, before the secret).
    pub id: String,
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The queues it may submit to (empty: any).
    pub queues: Vec<String>,
    /// The highest priority it may give a job.
    pub max_priority: Option<i64>,
    /// When it stops working.
    pub expires_ms: Option<u64>,
    /// Enrolments left (node-join).
    pub uses_left: Option<u32>,
    /// Creation time.
    pub created_ms: u64,
}

/// `POST /v1/tokens` answer: the token and its secret (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token as listed.
    #[serde(flatten)]
    pub info: Token,
    /// The bearer token, `eft_{id}_{secret}`.
    pub token: String,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, oldest first.
    pub tokens: Vec<Token>,
}

/// Who submitted a job: the personal token's id and name (absent for the farm secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedBy {
    /// Token id.
    pub token_id: String,
    /// The token's name.
    pub name: String,
}

/// `GET /v1/whoami`: what the credential sent is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// Its role.
    pub role: Role,
    /// The personal token's id (null for the farm secret and node tokens).
    pub token_id: Option<String>,
    /// The personal token's or node's name (null for the farm secret).
    pub name: Option<String>,
    /// The node's id for a node token.
    pub node_id: Option<String>,
}
