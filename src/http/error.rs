//! The one error shape of the API, `{"error":{"code","message","request_id"}}` (plus
//! `field` when one input field is at fault), the status mapping, and the conversion of
//! warp rejections into it.

use std::convert::Infallible;
use std::time::Duration;

use actors::tenant::{AuthError, TenantError};
use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::context;

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be read (bad JSON, wrong type, unknown field, bad query).
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
        /// The input field at fault.
        field: Option<String>,
    },
    /// 422: well-formed but invalid (the field named).
    #[error("{field}: {message}")]
    Validation {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// 401: missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// 404: no such object (named).
    #[error("{0} not found")]
    NotFound(String),
    /// 404: no such route.
    #[error("no such route")]
    RouteNotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 411: a body without `Content-Length`.
    #[error("a Content-Length header is required")]
    LengthRequired,
    /// 413.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 415.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 429 with `Retry-After`.
    #[error("rate limit exceeded")]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
    /// 429 for a concurrency limit (with `Retry-After`).
    #[error("{0}")]
    ConcurrencyLimit(String),
    /// Any other status with its own code (carrier failures, refusals).
    #[error("{message}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// 503: draining, or an actor did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged with its cause, not shown.
    #[error("internal error")]
    Internal(String),
}

/// The error body of every endpoint: `{"error": {"code", "message", "field"?, "request_id"}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorObject,
}

/// Error detail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Machine-readable code (e.g. `validation_failed`, `unauthorized`, `rate_limited`).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The input field at fault, on 400/422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The request id (also in the `x-request-id` header).
    pub request_id: String,
}

impl ApiError {
    /// A 422 for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } | ApiError::ConcurrencyLimit(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Status { status, .. } => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Status { code, .. } => code,
            ApiError::ConcurrencyLimit(_) => "concurrency_limit",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::LengthRequired => "length_required",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            ApiError::Validation { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl ApiError {
    /// The JSON body of this error (as sent, with the current request id).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.response()).unwrap_or_default()
    }

    /// The error body (with the current request id).
    pub fn response(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorObject {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
                request_id: context::request_id().unwrap_or_default(),
            },
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::ConcurrencyLimit(_) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let mut resp =
            warp::reply::with_status(warp::reply::json(&self.response()), status).into_response();
        if let Some(retry_after) = self.retry_after() {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(v) = warp::http::HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut()
                    .insert(warp::http::header::RETRY_AFTER, v);
            }
        }
        if matches!(self, ApiError::PayloadTooLarge) {
            // The oversized body is left unread, so the server closes the connection after
            // this response. Say so (RFC 9112 §9.6): a client that is not told reuses the
            // connection for its next request and fails with a reset or an incomplete
            // message.
            resp.headers_mut().insert(
                warp::http::header::CONNECTION,
                warp::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

impl From<&actors::telephony::TelephonyError> for ApiError {
    fn from(err: &actors::telephony::TelephonyError) -> Self {
        use actors::telephony::TelephonyError as T;
        match err {
            T::NotFound(what) => ApiError::NotFound((*what).to_owned()),
            T::Conflict(m) => ApiError::Conflict(m.clone()),
            T::Invalid(field, message) => ApiError::invalid(*field, message.clone()),
            T::InvalidField(field, message) => ApiError::invalid(field.clone(), message.clone()),
            T::AtLimit(which) => ApiError::ConcurrencyLimit(format!(
                "the {which} is at its concurrency limit of live calls"
            )),
            T::Refused(code, message) => ApiError::Status {
                status: if *code == "draining" {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::FORBIDDEN
                },
                code,
                message: message.clone(),
            },
            T::PolicyRefused {
                rule,
                message,
                call_id,
            } => ApiError::Status {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: rule.as_str(),
                message: format!(
                    "refused by the pre-dial rule `{}`: {message}; nothing was dialed (call {call_id} recorded as refused)",
                    rule.as_str()
                ),
            },
            T::NoCredentials => ApiError::Status {
                status: StatusCode::CONFLICT,
                code: "twilio_credentials_missing",
                message: "the tenant has no Twilio credentials".into(),
            },
            T::Carrier { error, call_id } => {
                let status =
                    StatusCode::from_u16(error.suggested_status).unwrap_or(StatusCode::BAD_GATEWAY);
                let call = call_id
                    .as_ref()
                    .map(|c| format!(" (call {c} recorded as failed)"))
                    .unwrap_or_default();
                ApiError::Status {
                    status,
                    code: if error.timeout {
                        "carrier_timeout"
                    } else {
                        "carrier_error"
                    },
                    message: format!("the carrier refused the request: {}{call}", error.message),
                }
            }
            T::CarrierNotFound { call_id } => ApiError::Status {
                status: StatusCode::BAD_GATEWAY,
                code: "carrier_not_found",
                message: format!(
                    "the carrier never confirmed the call and has no record of it (call {call_id} recorded as failed)"
                ),
            },
            T::Token(e) => ApiError::Forbidden {
                code: "invalid_stream_token",
                message: e.to_string(),
            },
            T::Store(e) => ApiError::Internal(format!("store: {e:?}")),
            T::Unavailable(m) => ApiError::Unavailable(format!("service unavailable: {m}")),
            T::Abandoned => ApiError::Internal("the request ended without an answer".into()),
        }
    }
}

impl From<actors::governance::GovernanceError> for ApiError {
    fn from(err: actors::governance::GovernanceError) -> Self {
        use actors::governance::GovernanceError as G;
        match err {
            G::NotFound(what) => ApiError::NotFound(what.to_owned()),
            G::Invalid { field, message } => ApiError::Validation { field, message },
            G::Conflict(m) => ApiError::Conflict(m),
            G::Forbidden { code, message } => ApiError::Forbidden { code, message },
            G::Store(e) => ApiError::Internal(format!("store: {e:?}")),
        }
    }
}

impl From<actors::telephony::TelephonyError> for ApiError {
    fn from(err: actors::telephony::TelephonyError) -> Self {
        ApiError::from(&err)
    }
}

impl From<actors::operator::OperatorError> for ApiError {
    fn from(err: actors::operator::OperatorError) -> Self {
        use actors::operator::OperatorError as O;
        match err {
            O::NotFound(what) => ApiError::NotFound(what.to_owned()),
            O::Conflict(m) => ApiError::Conflict(m),
            O::InvalidField(field, message) => ApiError::invalid(field, message),
            O::InvalidTransition(message) => ApiError::Status {
                status: StatusCode::CONFLICT,
                code: "invalid_transition",
                message,
            },
            O::Store(e) => ApiError::Internal(format!("store: {e:?}")),
        }
    }
}

impl<M> From<ractor::RactorErr<M>> for ApiError {
    fn from(err: ractor::RactorErr<M>) -> Self {
        match err {
            ractor::RactorErr::Timeout => {
                ApiError::Unavailable("the service is busy; retry shortly".into())
            }
            _ => ApiError::Unavailable("a service component is restarting; retry shortly".into()),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(err: TenantError) -> Self {
        match err {
            TenantError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            TenantError::Conflict(what) => ApiError::Conflict(format!("{what} is already in use")),
            TenantError::Store(e) => ApiError::Internal(format!("store: {e:?}")),
            TenantError::Crypto(e) => ApiError::Internal(format!("crypto: {e}")),
        }
    }
}

impl From<actors::notifier::NotifierError> for ApiError {
    fn from(err: actors::notifier::NotifierError) -> Self {
        use actors::notifier::NotifierError as N;
        match err {
            N::NotFound(what) => ApiError::NotFound(what.to_owned()),
            N::InFlight => ApiError::Conflict(N::InFlight.to_string()),
            N::Store(e) => ApiError::Internal(format!("store: {e:?}")),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidKey => ApiError::Unauthorized("invalid or revoked api key".into()),
            AuthError::Suspended => ApiError::Forbidden {
                code: "tenant_suspended",
                message: "the tenant is suspended".into(),
            },
            AuthError::RateLimited { retry_after } => ApiError::RateLimited { retry_after },
            AuthError::Store(e) => ApiError::Internal(format!("store: {e:?}")),
        }
    }
}

/// Turns the rejections left after routing into the error shape.
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if rejection.is_not_found() {
        ApiError::RouteNotFound
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::LengthRequired
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::UnsupportedMediaType
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::BadRequest {
            code: "invalid_header",
            message: e.to_string(),
            field: None,
        }
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::BadRequest {
            code: "missing_header",
            message: e.to_string(),
            field: None,
        }
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::BadRequest {
            code: "invalid_query",
            message: e.to_string(),
            field: None,
        }
    } else {
        ApiError::Internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(err.into_response())
}
