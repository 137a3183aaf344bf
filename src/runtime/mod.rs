//! Runtime shells: turn a runtime's request into `http::Request`, call `handle()`, answer.
pub mod latency;
pub mod native;
