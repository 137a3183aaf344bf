//! The store suite (`store::conformance`) over the Cloudflare adapters, one request per case:
//! `GET /_store_suite/{adapter}/{run}/{case}` with the farm secret, `adapter` being
//! `durable_object` (run inside the farm's object, over its storage) or `workers_kv` (run in
//! the Worker, over the KV namespace); `GET /_store_suite/cases` lists the cases. Every case of
//! a run gets keys of its own (`store-suite/{run}/{case}/…`), since both stores outlive a run.
//!
//! Only in a Worker built with the `store-suite` feature (scripts/cloudflare-conformance builds
//! one); a production build has no such route. Rejected alternative: a second, test-only
//! Worker crate, which would need its own bindings and build for the same two adapters.

use crate::core::auth::{bearer, constant_time_eq};
use crate::core::http::json;
use crate::store::conformance::{run_case, Prefixed, CASES};
use crate::store::Store;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::json as value;

/// Paths of the route start with this.
pub const PREFIX: &str = "/_store_suite/";

/// Which adapter a request of the route names, and the rest of its path (`{run}/{case}`).
pub enum Target<'a> {
    /// The list of cases.
    Cases,
    /// The Durable Object adapter.
    DurableObject(&'a str),
    /// The Workers KV adapter.
    WorkersKv(&'a str),
}

/// Parses a path of the route; `None` for anything else.
pub fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix(PREFIX)?;
    if rest == "cases" {
        return Some(Target::Cases);
    }
    let (adapter, rest) = rest.split_once('/')?;
    match adapter {
        "durable_object" => Some(Target::DurableObject(rest)),
        "workers_kv" => Some(Target::WorkersKv(rest)),
        _ => None,
    }
}

/// Whether the request carries the farm secret.
pub fn authorized(headers: &http::HeaderMap, secret: &str) -> bool {
    bearer(headers).is_some_and(|t| constant_time_eq(t.as_bytes(), secret.as_bytes()))
}

/// The answer of a refused or unknown request.
pub fn refusal(status: StatusCode, message: &str) -> Response<Bytes> {
    let code = if status == StatusCode::UNAUTHORIZED {
        "unauthorized"
    } else {
        "not_found"
    };
    json(
        status,
        &value!({"error": {"code": code, "message": message}}),
    )
}

/// `GET /_store_suite/cases`.
pub fn cases() -> Response<Bytes> {
    json(StatusCode::OK, &value!({ "cases": CASES }))
}

/// Runs case `{case}` of `run_and_case` (`{run}/{case}`) over `store`: 200 when it passed,
/// 500 with what broke when it failed, 404 for an unknown case.
pub async fn run<S: Store>(store: S, adapter: &str, run_and_case: &str) -> Response<Bytes> {
    let Some((run, case)) = run_and_case.split_once('/') else {
        return refusal(
            StatusCode::NOT_FOUND,
            "want /_store_suite/{adapter}/{run}/{case}",
        );
    };
    let caps = store.capabilities();
    let store = Prefixed::new(store, format!("store-suite/{run}/{case}/"));
    let Some(verdict) = run_case(&store, case).await else {
        return refusal(
            StatusCode::NOT_FOUND,
            &format!("no store suite case {case}"),
        );
    };
    let (status, error) = match &verdict {
        Ok(()) => (StatusCode::OK, None),
        Err(broke) => (StatusCode::INTERNAL_SERVER_ERROR, Some(broke.as_str())),
    };
    json(
        status,
        &value!({"adapter": adapter, "case": case, "ok": verdict.is_ok(), "error": error,
                 "atomic_cas": caps.atomic_cas, "consistency": caps.consistency}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::block_on;
    use crate::store::Memory;

    #[test]
    fn paths_name_the_adapter_run_and_case() {
        assert!(matches!(target("/_store_suite/cases"), Some(Target::Cases)));
        assert!(matches!(
            target("/_store_suite/workers_kv/r1/create_then_read"),
            Some(Target::WorkersKv("r1/create_then_read"))
        ));
        assert!(matches!(
            target("/_store_suite/durable_object/r1/x"),
            Some(Target::DurableObject("r1/x"))
        ));
        assert!(target("/_store_suite/sqlite/r1/x").is_none());
        assert!(target("/v1/health").is_none());
    }

    #[test]
    fn a_case_answers_its_verdict() {
        let ok = block_on(run(Memory::new(), "memory", "r1/create_twice_loses"));
        assert_eq!(ok.status(), StatusCode::OK);
        let unknown = block_on(run(Memory::new(), "memory", "r1/nope"));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let mut h = http::HeaderMap::new();
        assert!(!authorized(&h, "s3cret-secret"));
        h.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer s3cret-secret"),
        );
        assert!(authorized(&h, "s3cret-secret"));
    }
}
