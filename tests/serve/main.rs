//! `edgefarm serve` facing a network: idle cost of long polls, timeouts and connection limits,
//! TLS end to end with a real node, and whose forwarded address is believed.

mod blobs;
mod idle;
mod limits;
mod proxy;
#[path = "../support/serve.rs"]
mod serve;
mod support;
mod tls;
