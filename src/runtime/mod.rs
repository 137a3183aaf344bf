//! Runtime shells: turn a runtime's request into `http::Request`, call `handle()`, answer.
#[cfg(all(feature = "cloudflare", target_arch = "wasm32"))]
pub mod cloudflare;
pub mod edge;
#[cfg(feature = "native")]
pub mod latency;
#[cfg(feature = "native")]
pub mod native;
#[cfg(all(feature = "spin", target_arch = "wasm32", target_os = "wasi"))]
pub mod spin;
#[cfg(any(test, all(feature = "store-suite", target_arch = "wasm32")))]
pub mod store_suite;
