//! The HTTP conformance suite: every rule of the `/v1` API, run in-process against `handle()`
//! and over real HTTP against `edgefarm serve` (or the server `EDGEFARM_URL` names).

mod harness;
#[path = "../support/png.rs"]
mod png;

mod access;
mod auth;
mod claims;
mod depend;
mod errors;
mod farm_state;
mod jobs;
mod late_acks;
mod nexrender;
mod nodes;
mod openapi;
mod per_frame;
mod previews;
mod stages;
mod webhooks;
