//! Handlers, one file per resource. They parse, call the scheduler or the records, and shape
//! the answer; rules live in `validate`, `rollup` and `scheduler`.

pub mod blobs;
pub mod jobs;
pub mod metrics;
pub mod nodes;
pub mod previews;
pub mod queue;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

use super::http::json;
use super::Ctx;
use crate::store::Store;
use crate::wire::health::Health;
use bytes::Bytes;
use http::{Response, StatusCode};

/// `GET /v1/health`: alive, and what the store guarantees.
pub fn health<S: Store>(ctx: &Ctx<'_, S>) -> Response<Bytes> {
    let health = Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
        store: ctx.store.capabilities().into(),
    };
    json(StatusCode::OK, &health)
}
