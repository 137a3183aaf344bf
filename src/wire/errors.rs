//! The error answer every `/v1` route gives: `{"error": {"code", "message", "field"?}}`.

use serde::{Deserialize, Serialize};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// `false` on a `stale_lease` answer: the node must stop the task (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_running: Option<bool>,
}

/// The `error` object: a stable code, a message for a person, and the field at fault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `invalid_credentials`, `not_found`,
    /// `method_not_allowed`, `conflict`, `stale_lease`, `too_large`, `throttled` or `internal`.
    #[serde(default)]
    pub code: String,
    /// What is wrong, for a person.
    #[serde(default)]
    pub message: String,
    /// Dotted path of the field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    /// An error answer without a field (the shells' own errors, before the core runs).
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
                field: None,
            },
            keep_running: None,
        }
    }
}
