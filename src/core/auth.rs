//! Who is calling: the farm secret (admin) or a node token. Node tokens are `efn_{node}_{secret}`
//! and only their sha256 is stored; comparisons are constant-time.

use super::error::{Error, Result};
use super::model::NodeRecord;
use super::records::{load, Rec};
use super::Ctx;
use crate::store::{keys, Store};
use sha2::{Digest, Sha256};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Holder of the farm secret.
    Admin,
    /// An enrolled node, as stored.
    Node(Box<Rec<NodeRecord>>),
}

impl Caller {
    /// Admin only.
    pub fn require_admin(&self) -> Result<()> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Node(_) => Err(Error::Forbidden(
                "a node token cannot do this; use the farm secret".into(),
            )),
        }
    }

    /// The node id for a node credential.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Node(n) => Some(&n.value.id),
        }
    }
}

/// Equal without revealing where two strings first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// sha256, hex.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates a request by its bearer token.
pub async fn authenticate<S: Store>(ctx: &Ctx<'_, S>, headers: &http::HeaderMap) -> Result<Caller> {
    let Some(token) = bearer(headers) else {
        return Err(Error::Unauthorized);
    };
    if constant_time_eq(token.as_bytes(), ctx.config.secret.as_bytes()) {
        return Ok(Caller::Admin);
    }
    let wrong = || Error::Forbidden("the credentials are not valid".into());
    let rest = token.strip_prefix("efn_").ok_or_else(wrong)?;
    let (node, _) = rest.split_once('_').ok_or_else(wrong)?;
    if !super::validate::is_ident(node, 64) {
        return Err(wrong());
    }
    let rec: Rec<NodeRecord> = load(ctx.store, &keys::node(node))
        .await?
        .ok_or_else(wrong)?;
    if !constant_time_eq(
        sha256_hex(token).as_bytes(),
        rec.value.token_sha256.as_bytes(),
    ) {
        return Err(wrong());
    }
    Ok(Caller::Node(Box::new(rec)))
}
