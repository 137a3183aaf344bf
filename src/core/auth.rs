//! Who is calling: the farm secret (admin), a node token or a personal token. Node tokens are
//! `efn_{node}_{secret}`, personal tokens `eft_{id}_{secret}`; only their sha256 is stored and
//! comparisons are constant-time. An unknown id and a wrong secret get the same answer. What
//! each caller may do is `core::access`.

use super::error::{Error, Result};
use super::model::{NodeRecord, TokenRecord};
use super::records::{load, Rec};
use super::Ctx;
use crate::store::{keys, Store};
use crate::wire::tokens::Role;
use sha2::{Digest, Sha256};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Holder of the farm secret.
    Admin,
    /// An enrolled node, as stored.
    Node(Box<Rec<NodeRecord>>),
    /// A personal token (`/v1/tokens`), as stored.
    Token(Box<Rec<TokenRecord>>),
}

impl Caller {
    /// The role the permission table (`core::access`) knows the caller by.
    pub fn role(&self) -> Role {
        match self {
            Caller::Admin => Role::Admin,
            Caller::Node(_) => Role::Node,
            Caller::Token(t) => t.value.role,
        }
    }

    /// The node id for a node credential.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Caller::Node(n) => Some(&n.value.id),
            Caller::Admin | Caller::Token(_) => None,
        }
    }

    /// The personal token's record.
    pub fn token(&self) -> Option<&TokenRecord> {
        match self {
            Caller::Token(t) => Some(&t.value),
            Caller::Admin | Caller::Node(_) => None,
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
    let wrong = || Error::BadCredentials("the credentials are not valid".into());
    if let Some(rest) = token.strip_prefix("eft_") {
        return personal(ctx, token, rest).await;
    }
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

/// A personal token `eft_{id}_{secret}`: its record, when the hash matches and it has not
/// expired. An unknown id, a malformed token and a wrong secret get the same answer, after the
/// same hash comparison.
async fn personal<S: Store>(ctx: &Ctx<'_, S>, token: &str, rest: &str) -> Result<Caller> {
    let wrong = || Error::BadCredentials("the credentials are not valid".into());
    let id = rest.split_once('_').map_or("", |(id, _)| id);
    let rec: Option<Rec<TokenRecord>> = if super::validate::is_ident(id, 64) {
        load(ctx.store, &keys::token(id)).await?
    } else {
        None
    };
    let stored = rec
        .as_ref()
        .map_or(NO_HASH, |r| r.value.token_sha256.as_str());
    let matches = constant_time_eq(sha256_hex(token).as_bytes(), stored.as_bytes());
    let rec = rec.filter(|_| matches).ok_or_else(wrong)?;
    if rec.value.expires_ms.is_some_and(|e| e <= ctx.now_ms) {
        return Err(Error::BadCredentials("this token has expired".into()));
    }
    Ok(Caller::Token(Box::new(rec)))
}

/// What an unknown token id is compared against (no token hashes to it), so that an unknown id
/// costs the same as a wrong secret.
const NO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
