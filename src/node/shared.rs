//! State the supervisor shares with its slots: the client, the current config (swapped on
//! SIGHUP; a running task keeps the config it started with), and flags set from answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::client::Client;
use super::config::NodeConfig;
use super::slot::Runner;
use super::task::{self, TaskEnv};

/// Shared between the supervisor and the slots.
pub struct Shared {
    pub client: Client,
    config: RwLock<Arc<NodeConfig>>,
    pub heartbeat_ms: AtomicU64,
    pub server_draining: AtomicBool,
    pub abort: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        client: Client,
        config: Arc<NodeConfig>,
        heartbeat_ms: u64,
        abort: watch::Receiver<bool>,
    ) -> Self {
        Shared {
            client,
            config: RwLock::new(config),
            heartbeat_ms: AtomicU64::new(heartbeat_ms),
            server_draining: AtomicBool::new(false),
            abort,
        }
    }

    /// The config now in force.
    pub fn config(&self) -> Arc<NodeConfig> {
        // A poisoned lock only means a panic happened while swapping an Arc; the value is whole.
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the config (tasks already running keep theirs).
    pub fn set_config(&self, config: Arc<NodeConfig>) {
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    pub fn draining(&self) -> bool {
        self.server_draining.load(Ordering::Relaxed)
    }
}

/// The runner slots use: [`task::run`] with the shared state.
pub fn runner(shared: Arc<Shared>) -> Runner {
    Arc::new(move |claimed| {
        let shared = shared.clone();
        Box::pin(async move {
            let config = shared.config();
            let env = TaskEnv {
                client: &shared.client,
                config: &config,
                heartbeat_ms: shared.heartbeat_ms.load(Ordering::Relaxed),
                abort: shared.abort.clone(),
                server_draining: &shared.server_draining,
            };
            // A job that carries its files, or the encode of one (its frames come from the
            // render's outputs): both run in a work dir of their own.
            let from_job = crate::core::blobs::inputs::from_job(claimed.kind, &claimed.params);
            if claimed.inputs.is_some() || from_job.is_some() {
                super::carried::run(env, &claimed).await
            } else {
                task::run(env, &claimed).await
            }
        })
    })
}
