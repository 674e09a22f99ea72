//! [`TelephonyError`]: the one error of the telephony edge (admission, streams, callbacks,
//! control, placement, reads).

use crate::carrier::CarrierError;
use crate::ids::CallId;
use crate::store::StoreError;
use crate::stream_token::TokenError;
use crate::tenant::TenantError;

/// Errors of the telephony edge.
#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    /// Not found (what).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Uniqueness or state conflict.
    #[error("{0}")]
    Conflict(String),
    /// Invalid input (field, message).
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// Invalid input in a nested field (path, message).
    #[error("{0}: {1}")]
    InvalidField(String, String),
    /// Concurrency limit reached (`tenant` or `route`).
    #[error("the {0} is at its concurrency limit")]
    AtLimit(&'static str),
    /// Calls are refused: code (`route_staged`, `tenant_suspended`, `draining`) and message.
    #[error("{1}")]
    Refused(&'static str, String),
    /// The pre-dial policy refused the call: nothing was dialed; the call is recorded as
    /// refused with the decision.
    #[error("refused by the pre-dial rule {}: {message}", rule.as_str())]
    PolicyRefused {
        /// The refusing rule.
        rule: crate::governance::predial::Rule,
        /// Why.
        message: String,
        /// The call recorded for the attempt.
        call_id: CallId,
    },
    /// The tenant has no Twilio credentials.
    #[error("the tenant has no Twilio credentials")]
    NoCredentials,
    /// The carrier refused; the call (if any) is recorded as failed.
    #[error("carrier: {error}")]
    Carrier {
        /// The carrier error.
        error: CarrierError,
        /// The call recorded for the attempt.
        call_id: Option<CallId>,
    },
    /// The carrier never confirmed an outbound call and a lookup found none within the grace
    /// period: the call is recorded `failed` (`carrier_not_found`).
    #[error("the carrier has no record of the call")]
    CarrierNotFound {
        /// The call recorded for the attempt.
        call_id: CallId,
    },
    /// The stream token was refused.
    #[error("stream token: {0}")]
    Token(#[from] TokenError),
    /// The store failed.
    #[error("store")]
    Store(#[from] StoreError),
    /// A service this needs (the rollout actor, the tenant directory) is unavailable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The work ended without an answer (its task panicked): the outcome, if any, is
    /// recorded by its owner.
    #[error("the request ended without an answer")]
    Abandoned,
}

impl From<TenantError> for TelephonyError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound(what) => TelephonyError::NotFound(what),
            TenantError::Store(e) => TelephonyError::Store(e),
            other => TelephonyError::Unavailable(other.to_string()),
        }
    }
}

impl TelephonyError {
    /// Whether nothing was attempted: a retry may run the request again from scratch
    /// (draining, a service restarting).
    pub fn nothing_attempted(&self) -> bool {
        matches!(
            self,
            TelephonyError::Unavailable(_) | TelephonyError::Refused("draining", _)
        )
    }
}
