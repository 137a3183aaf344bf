//! Failed authentications per client address: after [`AuthLimit::failures`] in one window of
//! [`AuthLimit::window_ms`], every request from that address that carries a credential is
//! answered `429` with `Retry-After` until the window ends, before its credential is looked at
//! (so a guess that happens to be right is refused too, and guessing stays bounded).
//!
//! The address is the one the shell observed (`nexrender::job::peer`, the `x-edgefarm-peer`
//! header every runtime sets and no client can); without one (in-process callers) nothing is
//! counted. The counter is a store record per address (`keys::auth_failures`) in a fixed window
//! timed by `ctx.now_ms`: the only write a refused request makes. A lost race to count a
//! failure is left uncounted (`cas::best_effort`): the answer is a refusal anyway.

use super::cas::{self, Step};
use super::error::{Error, Result};
use super::records::{load, Rec};
use super::Ctx;
use crate::store::{keys, Store};
use bytes::Bytes;
use http::{header, HeaderValue, Response};
use serde::{Deserialize, Serialize};

/// How many failed authentications an address may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimit {
    /// Failures allowed per window (0: no limit).
    pub failures: u32,
    /// The window, ms.
    pub window_ms: u64,
}

impl Default for AuthLimit {
    fn default() -> Self {
        // Generous for people and scripts that mistype, and for the conformance suite (which
        // sends a few hundred wrong credentials from one address on purpose); against a 128-bit
        // secret it bounds guessing all the same.
        AuthLimit {
            failures: 300,
            window_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Failures {
    since_ms: u64,
    count: u32,
}

/// The address a request came from, as a key part (`None`: unknown, nothing is counted).
fn address(headers: &http::HeaderMap) -> Option<String> {
    let peer = super::nexrender::peer_of(headers)?;
    let clean: String = peer
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '.' || *c == ':')
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// `Some(429 answer)` when the address of this request is over its limit now.
pub async fn check<S: Store>(
    ctx: &Ctx<'_, S>,
    headers: &http::HeaderMap,
) -> Result<Option<Response<Bytes>>> {
    let limit = ctx.config.auth_limit;
    let Some(addr) = address(headers).filter(|_| limit.failures > 0) else {
        return Ok(None);
    };
    let Some(rec) = load::<Failures, _>(ctx.store, &keys::auth_failures(&addr)).await? else {
        return Ok(None);
    };
    let ends = rec.value.since_ms.saturating_add(limit.window_ms);
    if rec.value.count < limit.failures || ends <= ctx.now_ms {
        return Ok(None);
    }
    let wait_s = (ends - ctx.now_ms).div_ceil(1000).max(1);
    let mut resp = Error::Throttled(format!(
        "too many failed authentications from this address; try again in {wait_s} s"
    ))
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
    Ok(Some(resp))
}

/// Counts one failed authentication of this request's address.
pub async fn failed<S: Store>(ctx: &Ctx<'_, S>, headers: &http::HeaderMap) -> Result<()> {
    let limit = ctx.config.auth_limit;
    let Some(addr) = address(headers).filter(|_| limit.failures > 0) else {
        return Ok(());
    };
    let counted = cas::update(
        ctx.store,
        &keys::auth_failures(&addr),
        "an address's failed authentications",
        async |rec: Option<Rec<Failures>>| {
            let mut f = rec.map(|r| r.value).unwrap_or_default();
            if f.count == 0 || f.since_ms.saturating_add(limit.window_ms) <= ctx.now_ms {
                f = Failures {
                    since_ms: ctx.now_ms,
                    count: 0,
                };
            }
            f.count = f.count.saturating_add(1);
            Ok(Step::Write(f, ()))
        },
    )
    .await;
    cas::best_effort(counted, "count a failed authentication").map(|_| ())
}

/// Whether an authentication error counts as a failure (a wrong credential; a request with none
/// is not a guess).
pub fn counts(e: &Error) -> bool {
    matches!(e, Error::BadCredentials(_))
}
