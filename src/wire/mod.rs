//! The JSON of the `/v1` API, as types: every request body and every answer, in one place.
//!
//! The core serialises these (its handlers build a value of one of these types and nothing
//! else), the render node and the CLI deserialise them. So a field the server does not send
//! cannot be read by a client, and a field renamed here is renamed for all three at once. The
//! OpenAPI document (`src/core/openapi.json`) is checked against them: `openapi_check` serialises
//! a full sample of each type and validates it against its schema, and requires the sample's
//! fields to be exactly the schema's properties.
//!
//! Conventions, kept from the hand-written replies these types replaced (the JSON on the wire
//! did not change): an answer field that can be absent is `null` (an `Option` without
//! `skip_serializing_if`) unless the type says otherwise; a request field the client may leave
//! out is an `Option` the client omits. Request types reject unknown fields (a typo is a 400
//! naming the field); answer types ignore them (an older client keeps working against a newer
//! server). Value types that are also stored (`JobType`, `TaskState`, `FrameRange`, ...) are
//! the core's own (`core::model`): their JSON is the same in the store and on the wire.
//!
//! Rejected alternative: generating these from the OpenAPI document. The document is written for
//! people (descriptions, patterns, limits) and a generator would add a build step for the wasm
//! shells; a test that compares the two keeps them equal at lower cost.
//!
//! The nexrender façade (`/api/v1`) is not here: its JSON follows nexrender's own format
//! (`core::nexrender`).

pub mod blobs;
pub mod errors;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod nodes;
pub mod previews;
pub mod queue;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

#[cfg(test)]
mod openapi_check;
