//! `/v1/webhooks`: the deliveries list, and the two calls a shell delivers with
//! (`core::webhooks` has the rules).

use crate::core::error::Result;
use crate::core::http::{body, json};
use crate::core::webhooks;
use crate::core::Ctx;
use crate::store::Store;
use crate::wire::webhooks::{DeliveryList, Reported, Reports};
use bytes::Bytes;
use http::{Response, StatusCode};

/// `GET /v1/webhooks/deliveries`.
pub async fn deliveries<S: Store>(ctx: &Ctx<'_, S>) -> Result<Response<Bytes>> {
    let deliveries = webhooks::list(ctx).await?;
    Ok(json(StatusCode::OK, &DeliveryList { deliveries }))
}

/// `POST /v1/webhooks/due`.
pub async fn due<S: Store>(ctx: &Ctx<'_, S>) -> Result<Response<Bytes>> {
    let due = webhooks::due(ctx).await?;
    Ok(json(StatusCode::OK, &due))
}

/// `POST /v1/webhooks/report`.
pub async fn report<S: Store>(ctx: &Ctx<'_, S>, bytes: &[u8]) -> Result<Response<Bytes>> {
    let Reports { reports } = body(bytes)?;
    let next_due_ms = webhooks::report(ctx, &reports).await?;
    Ok(json(StatusCode::OK, &Reported { next_due_ms }))
}
