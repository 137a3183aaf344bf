//! One error type for the agent. Config problems are told apart from the rest so the binary can
//! exit with 2 (bad configuration) rather than 1 (a failure while running).

use std::path::PathBuf;

/// Everything that can go wrong in the render node agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is unusable; the message names the file, field or value at fault.
    #[error("config: {0}")]
    Config(String),
    /// A config file that cannot be read.
    #[error("config: cannot read {path}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A task whose params this node refuses to run (escaping a root, injecting a flag...).
    #[error("rejected task params: {0}")]
    Rejected(String),
    /// The server answered with an error.
    #[error("server answered {status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The `error.code` of the answer.
        code: String,
        /// The `error.message` of the answer.
        message: String,
    },
    /// The server could not be reached or its answer could not be read.
    #[error("http request failed")]
    Http(#[from] reqwest::Error),
    /// A local I/O problem (state file, spawning a program).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl NodeError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io {
            what: what.into(),
            source,
        }
    }

    /// The message with every underlying cause, for logs and task errors.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// True for errors that mean "the configuration is wrong" (exit code 2), including a server
    /// certificate this node does not trust.
    pub fn is_config(&self) -> bool {
        match self {
            NodeError::Config(_) | NodeError::ConfigRead { .. } => true,
            // A refused server certificate needs --ca-cert or a fixed certificate, not retries.
            NodeError::Http(e) => crate::net::is_certificate_error(e),
            _ => false,
        }
    }

    /// True when the server said the lease is no longer ours.
    pub fn is_stale_lease(&self) -> bool {
        matches!(self, NodeError::Api { code, .. } if code == "stale_lease")
    }

    /// True when the credentials were refused (revoked token, wrong secret).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            NodeError::Api {
                status: 401 | 403,
                ..
            }
        )
    }
}
