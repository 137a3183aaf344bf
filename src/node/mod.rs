//! The render node agent (`edgefarm node`): polls a queue, runs the programs its config allows
//! (never through a shell), heartbeats with progress and logs, and acks results.

pub mod blender;
pub mod command;
pub mod config;
pub mod error;
pub mod paths;
pub mod wire;

pub use error::NodeError;
