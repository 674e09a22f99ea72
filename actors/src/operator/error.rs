//! [`OperatorError`]: the error of the operator surface (queues and callback tasks).

use crate::store::StoreError;

/// Errors of operator queues and callback tasks.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Not found (what); a queue or task of another tenant is not found either.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness conflict (the message names it).
    #[error("{0}")]
    Conflict(String),
    /// Invalid input in a (possibly nested) field: path, message.
    #[error("{0}: {1}")]
    InvalidField(String, String),
    /// A state change the object's current state does not allow (the message names it).
    #[error("{0}")]
    InvalidTransition(String),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
}
