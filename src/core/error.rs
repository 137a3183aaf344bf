//! The one error type of the core, and its single mapping to an HTTP answer.

use crate::store::StoreError;
use crate::wire::errors::{ErrorBody, ErrorDetail};
use bytes::Bytes;
use http::{Response, StatusCode};

/// What the API can say went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a value is not allowed; `field` names it when one is at fault.
    #[error("{message}")]
    BadInput {
        /// Dotted path of the field at fault.
        field: Option<String>,
        /// What is wrong, for a person.
        message: String,
    },
    /// No credentials.
    #[error("missing credentials: send `Authorization: Bearer <secret>`")]
    Unauthorized,
    /// Credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Credentials that are not valid (wrong, unknown, revoked or expired): 403 like
    /// [`Error::Forbidden`], with its own code so a client knows to ask for another credential
    /// rather than report a refused action.
    #[error("{0}")]
    BadCredentials(String),
    /// No such thing.
    #[error("{0} not found")]
    NotFound(String),
    /// No such route or method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// The request contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// The lease named is no longer the caller's.
    #[error("{0}")]
    StaleLease(String),
    /// Over a size or count limit.
    #[error("{0}")]
    TooLarge(String),
    /// Sent more often than the server allows; the answer says when to try again.
    #[error("{0}")]
    Throttled(String),
    /// A record kept changing under this request until its compare-and-swap retries ran out
    /// (`core::cas`): 503 with `Retry-After`; nothing was written, the request may be sent again.
    #[error("{0}")]
    Busy(String),
    /// The store failed; the client sees a generic message.
    #[error("internal error")]
    Store(#[from] StoreError),
}

/// Seconds a client is told to wait before re-sending a request answered [`Error::Busy`].
pub const BUSY_RETRY_S: u64 = 1;

/// Result of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bad value in `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::BadInput {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// A bad request not tied to one field.
    pub fn bad(message: impl Into<String>) -> Self {
        Error::BadInput {
            field: None,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadInput { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::BadCredentials(_) => (StatusCode::FORBIDDEN, "invalid_credentials"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::StaleLease(_) => (StatusCode::CONFLICT, "stale_lease"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
            Error::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The `error` object of the answer (also each refused ack's answer in a poll).
    pub fn detail(&self) -> ErrorDetail {
        let (_, code) = self.status_and_code();
        let field = match self {
            Error::BadInput { field, .. } => field.clone(),
            _ => None,
        };
        ErrorDetail {
            code: code.to_string(),
            message: self.to_string(),
            field,
        }
    }

    /// The `{"error": {...}}` body (`keep_running: false` on a stale lease: the node stops).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.detail(),
            keep_running: matches!(self, Error::StaleLease(_)).then_some(false),
        }
    }

    /// The HTTP answer. Store failures are logged here, once, with their source.
    pub fn into_response(self) -> Response<Bytes> {
        let (status, _) = self.status_and_code();
        if let Error::Store(source) = &self {
            tracing::error!(error = %source, source = ?std::error::Error::source(source), "store failure");
        }
        let mut resp = super::http::json(status, &self.body());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(BUSY_RETRY_S),
            );
        }
        resp
    }
}
