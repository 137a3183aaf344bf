//! The HTTP conformance suite: every rule of the `/v1` API, run in-process against `handle()`
//! and over real HTTP against `edgefarm serve` (or the server `EDGEFARM_URL` names).

mod harness;

mod auth;
mod claims;
mod errors;
mod jobs;
mod late_acks;
mod nodes;
