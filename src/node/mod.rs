//! The render node agent (`edgefarm node`): polls a queue, runs the programs its config allows
//! (never through a shell), heartbeats with progress and logs, and acks results.

pub mod agent;
pub mod backoff;
pub mod blender;
pub mod cache;
pub mod carried;
pub mod client;
pub mod command;
pub mod config;
pub mod error;
pub mod ffmpeg;
pub mod identity;
pub mod logbuf;
pub mod outbox;
pub mod paths;
pub mod platform;
pub mod poll;
pub mod preview;
pub mod process;
pub mod progress;
pub mod rendered;
pub mod shared;
pub mod slot;
pub mod state;
pub mod task;
pub mod transfer;
pub mod workdir;

pub use error::NodeError;
