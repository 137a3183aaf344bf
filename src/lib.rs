//! edgefarm: a render-farm job queue. The pure core (`core::handle`) runs over a [`store::Store`]
//! in every runtime; the `native` feature adds the server, the render-node agent and the CLI.

pub mod blob;
pub mod core;
pub mod store;
pub mod wire;

#[cfg(feature = "native")]
pub mod cli;
#[cfg(feature = "native")]
pub mod net;
#[cfg(feature = "native")]
pub mod node;
pub mod runtime;

pub use crate::core::{handle, Config, Ctx};
