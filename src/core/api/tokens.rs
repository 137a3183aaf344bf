//! `/v1/tokens`: personal tokens with roles (create, list, revoke), `/v1/whoami`, and the one use
//! of a node-join token an enrolment spends. Only an admin reaches the token routes
//! (`core::access`).

use crate::core::auth::{sha256_hex, Caller};
use crate::core::cas::{self, Step};
use crate::core::error::{Error, Result};
use crate::core::http::{body, json};
use crate::core::model::TokenRecord;
use crate::core::records::{load, save, Rec};
use crate::core::validate;
use crate::core::Ctx;
use crate::store::{keys, Cond, Store};
use crate::wire::jobs::Deleted;
use crate::wire::tokens::{Role, Token, TokenCreate, TokenCreated, TokenList, WhoAmI};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ids {
    ids: Vec<String>,
}

/// Most uses a node-join token may have.
pub const MAX_USES: u32 = 10_000;

/// A duration as the API and CLI take it: a whole number and a unit (`s`, `m`, `h`, `d`), in ms.
pub fn parse_duration(field: &str, s: &str) -> Result<u64> {
    let bad = || {
        Error::field(
            field,
            format!("{field} must be a number and a unit s, m, h or d, like 90d (got {s:?})"),
        )
    };
    let s = s.trim();
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err(bad()),
    };
    match n.checked_mul(ms) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(bad()),
    }
}

fn view(t: &TokenRecord) -> Token {
    Token {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role,
        queues: t.queues.clone(),
        max_priority: t.max_priority,
        expires_ms: t.expires_ms,
        uses_left: t.uses_left,
        created_ms: t.created_ms,
    }
}

/// `POST /v1/tokens`: a new token and its secret (shown once).
pub async fn create<S: Store>(ctx: &Ctx<'_, S>, bytes: &[u8]) -> Result<Response<Bytes>> {
    let c: TokenCreate = body(bytes)?;
    let limits = &ctx.config.limits;
    if c.name.is_empty() || c.name.len() > limits.string_len {
        return Err(Error::field(
            "name",
            format!("name: 1 to {} bytes", limits.string_len),
        ));
    }
    if c.role == Role::Node {
        return Err(Error::field(
            "role",
            "role must be viewer, submitter, operator, admin or node-join (nodes get their token by enrolling)",
        ));
    }
    let submitter_only =
        |field: &str| Error::field(field, format!("{field} applies to submitter tokens only"));
    let queues = match c.queues {
        Some(_) if c.role != Role::Submitter => return Err(submitter_only("queues")),
        Some(qs) => {
            if qs.len() > limits.tags {
                return Err(Error::TooLarge(format!("queues: at most {}", limits.tags)));
            }
            for q in &qs {
                validate::ident("queues", q)?;
            }
            qs
        }
        None => Vec::new(),
    };
    let max_priority = match c.max_priority {
        Some(_) if c.role != Role::Submitter => return Err(submitter_only("max_priority")),
        Some(p) => Some(validate::priority(p).map_err(|_| {
            Error::field("max_priority", "max_priority must be a valid job priority")
        })?),
        None => None,
    };
    let uses_left = match (c.role, c.uses) {
        (Role::NodeJoin, Some(n)) if (1..=MAX_USES).contains(&n) => Some(n),
        (Role::NodeJoin, _) => {
            return Err(Error::field(
                "uses",
                format!("a node-join token needs uses, from 1 to {MAX_USES}"),
            ))
        }
        (_, Some(_)) => {
            return Err(Error::field(
                "uses",
                "uses applies to node-join tokens only",
            ))
        }
        (_, None) => None,
    };
    let expires_ms = c
        .expires
        .as_deref()
        .map(|e| parse_duration("expires", e))
        .transpose()?
        .map(|d| ctx.now_ms.saturating_add(d));
    let id = ctx.token()[..16].to_string();
    let token = format!("eft_{id}_{}", ctx.token());
    let record = TokenRecord {
        id: id.clone(),
        name: c.name,
        role: c.role,
        queues,
        max_priority,
        expires_ms,
        uses_left,
        created_ms: ctx.now_ms,
        token_sha256: sha256_hex(&token),
    };
    // The token record is the commit point; the list entry is a hint (a revoked id in it is
    // skipped).
    update_list(ctx, |l| l.ids.push(id.clone())).await?;
    if save(ctx.store, &keys::token(&id), &record, Cond::Absent)
        .await?
        .is_none()
    {
        return Err(Error::Conflict(format!(
            "token id {id} is taken; try again"
        )));
    }
    let created = TokenCreated {
        info: view(&record),
        token,
    };
    Ok(json(StatusCode::CREATED, &created))
}

async fn update_list<S: Store>(ctx: &Ctx<'_, S>, mut change: impl FnMut(&mut Ids)) -> Result<()> {
    cas::update(
        ctx.store,
        &keys::token_list(),
        "the token list",
        async |rec: Option<Rec<Ids>>| {
            let mut list = rec.map(|r| r.value).unwrap_or_default();
            change(&mut list);
            Ok(Step::Write(list, ()))
        },
    )
    .await
}

/// `GET /v1/tokens`: every token, oldest first, never a secret or hash.
pub async fn list<S: Store>(ctx: &Ctx<'_, S>) -> Result<Response<Bytes>> {
    let ids = load::<Ids, _>(ctx.store, &keys::token_list())
        .await?
        .map(|r| r.value.ids)
        .unwrap_or_default();
    let mut tokens = Vec::new();
    for id in ids {
        if let Some(t) = load::<TokenRecord, _>(ctx.store, &keys::token(&id)).await? {
            tokens.push(view(&t.value));
        }
    }
    Ok(json(StatusCode::OK, &TokenList { tokens }))
}

/// `DELETE /v1/tokens/{id}`: the token stops working with the next request.
pub async fn revoke<S: Store>(ctx: &Ctx<'_, S>, id: &str) -> Result<Response<Bytes>> {
    let missing = || Error::NotFound(format!("token {id}"));
    if !validate::is_ident(id, 64) {
        return Err(missing());
    }
    load::<TokenRecord, _>(ctx.store, &keys::token(id))
        .await?
        .ok_or_else(missing)?;
    ctx.store.delete(&keys::token(id), Cond::Any).await?;
    update_list(ctx, |l| l.ids.retain(|t| t != id)).await?;
    let deleted = Deleted {
        id: id.to_string(),
        deleted: true,
    };
    Ok(json(StatusCode::OK, &deleted))
}

/// `GET /v1/whoami`.
pub fn whoami(caller: &Caller) -> Response<Bytes> {
    let who = match caller {
        Caller::Admin => WhoAmI {
            role: Role::Admin,
            token_id: None,
            name: None,
            node_id: None,
        },
        Caller::Node(n) => WhoAmI {
            role: Role::Node,
            token_id: None,
            name: Some(n.value.name.clone()),
            node_id: Some(n.value.id.clone()),
        },
        Caller::Token(t) => WhoAmI {
            role: t.value.role,
            token_id: Some(t.value.id.clone()),
            name: Some(t.value.name.clone()),
            node_id: None,
        },
    };
    json(StatusCode::OK, &who)
}

/// Spends one use of the caller's node-join token (compare-and-swap on its record, so two
/// enrolments racing for the last use cannot both have it). Other callers spend nothing.
/// Refused, with nothing written, when no use is left or the token was revoked meanwhile.
pub async fn spend_join_use<S: Store>(ctx: &Ctx<'_, S>, caller: &Caller) -> Result<()> {
    let Some(t) = caller.token().filter(|t| t.role == Role::NodeJoin) else {
        return Ok(());
    };
    let used = || Error::Forbidden("this join token has no enrolment left".into());
    let what = format!("token {}", t.id);
    cas::update(
        ctx.store,
        &keys::token(&t.id),
        &what,
        async |rec: Option<Rec<TokenRecord>>| {
            let mut t = rec.ok_or_else(used)?.value;
            match t.uses_left {
                Some(n) if n > 0 => {
                    t.uses_left = Some(n - 1);
                    Ok(Step::Write(t, ()))
                }
                _ => Err(used()),
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration("e", "90d").ok(), Some(90 * 86_400_000));
        assert_eq!(parse_duration("e", "12h").ok(), Some(12 * 3_600_000));
        assert_eq!(parse_duration("e", "30m").ok(), Some(1_800_000));
        assert_eq!(parse_duration("e", "45s").ok(), Some(45_000));
        for bad in [
            "",
            "d",
            "0d",
            "90",
            "9x",
            "-1d",
            "1.5h",
            "99999999999999999d",
        ] {
            assert!(parse_duration("e", bad).is_err(), "{bad:?}");
        }
    }
}
