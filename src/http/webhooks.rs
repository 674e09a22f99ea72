//! Twilio webhooks: `incoming-call`, `stream-ended` (the `<Connect action>`), `call-status`,
//! `stream-status`, `amd-status`. Every one is verified with the auth token of the account
//! in `AccountSid` (over the URL rebuilt from `PUBLIC_BASE_URL` plus the path and raw query
//! as received) before any field is trusted or any tenant is routed; a failure answers 403,
//! writes nothing, and is counted for `/api/v1/admin/alerts/auth-transport`.

use std::collections::BTreeMap;

use actors::ids::{CallId, TenantId};
use actors::router::RouterMsg;
use actors::store::StatusUpdate;
use actors::telephony::admission::{self, InboundDecision, InboundRequest};
use actors::telephony::dial::{self, DialReport};
use actors::telephony::status::{self, StreamCallback};
use actors::telephony::{AfterStream, CallbackTarget, UNROUTED_MESSAGE, stream};
use actors::tenant::TwilioAccount;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::guard::Signed;
use super::mount::Request;
use super::{ApiError, AppState};
use crate::http::ErrorResponse;
use crate::twilio::{signature, twiml};

/// A Twilio webhook as received.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    /// Path and raw query, exactly as received.
    pub path_and_query: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Decoded form parameters (all of them: the signature covers every one).
    pub params: Vec<(String, String)>,
    /// `X-Twilio-Signature`.
    pub signature: Option<String>,
}

impl TwilioRequest {
    /// First value of a form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required form parameter (400 naming it when absent).
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.param(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadRequest {
                code: "invalid_body",
                message: format!("{name} is required"),
                field: Some(name.to_owned()),
            })
    }

    /// Our `call_id` from the callback URL, when present.
    pub fn call_id(&self) -> Option<CallId> {
        self.query
            .iter()
            .find(|(k, _)| k == "call_id")
            .and_then(|(_, v)| CallId::parse(v))
    }

    /// Parameters as a JSON object (stored with status events).
    pub fn params_json(&self) -> serde_json::Value {
        let map: BTreeMap<&str, &str> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        serde_json::to_value(map).unwrap_or_default()
    }

    pub(crate) fn target(&self, tenant: TenantId) -> Result<CallbackTarget, ApiError> {
        Ok(CallbackTarget {
            tenant_id: tenant,
            call_id: self.call_id(),
            call_sid: self.required("CallSid")?.to_owned(),
        })
    }
}

impl TwilioRequest {
    /// The request as received: `path` and raw `query`, the signature header and the form
    /// body.
    pub fn new(path: &str, query: &str, headers: &warp::http::HeaderMap, body: &[u8]) -> Self {
        let path_and_query = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        TwilioRequest {
            path_and_query,
            query: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            params: url::form_urlencoded::parse(body).into_owned().collect(),
            signature: headers
                .get("x-twilio-signature")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

impl AppState {
    /// The Twilio account owning `account_sid`, if any (from the shared tenant directory:
    /// never behind the tenant actor's mailbox).
    pub async fn twilio_account(
        &self,
        account_sid: &str,
    ) -> Result<Option<TwilioAccount>, ApiError> {
        Ok(self.actors.tenants.account_by_sid(account_sid).await?)
    }

    /// Verifies a webhook's signature with its account's auth token, then applies the
    /// tenant's webhook rate limit. Nothing about the request is trusted before this.
    pub async fn verify_twilio(
        &self,
        req: &TwilioRequest,
        route: &'static str,
    ) -> Result<TwilioAccount, ApiError> {
        let claimed = req.param("AccountSid");
        let account = match claimed {
            Some(sid) if !sid.is_empty() => self.twilio_account(sid).await?,
            _ => None,
        };
        let url = signature::build_url(&self.config.public_base_url, &req.path_and_query);
        let verified = account.filter(|a| {
            signature::verify_form(
                &a.auth.auth_token,
                &url,
                &req.params,
                req.signature.as_deref(),
            )
            .is_ok()
        });
        let Some(account) = verified else {
            self.auth_log.signature_failure(route, claimed);
            tracing::warn!(route, "twilio webhook refused: signature did not verify");
            return Err(ApiError::Forbidden {
                code: "invalid_signature",
                message: "the X-Twilio-Signature does not verify".into(),
            });
        };
        if let Err(retry_after) = self.webhook_limiter.check(&account.tenant_id) {
            metrics::counter!("rate_limited_total", "limit" => "webhooks").increment(1);
            return Err(ApiError::RateLimited { retry_after });
        }
        self.signals.signed_webhook(&account.tenant_id);
        Ok(account)
    }

    /// The router actor, or 503 while it is down.
    pub fn router_actor(&self) -> Result<actors::singleton::Mailbox<RouterMsg>, ApiError> {
        self.actors.router.get().ok_or_else(|| {
            ApiError::Unavailable("call routing is restarting; retry shortly".into())
        })
    }
}

pub(crate) fn xml(doc: &twiml::Response) -> Response {
    warp::reply::with_header(doc.render(), "content-type", "text/xml; charset=utf-8")
        .into_response()
}

pub(crate) fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

/// A Twilio webhook's form parameters (`AccountSid`, `CallSid`, …, named as Twilio sends
/// them; the signature covers them all).
#[derive(utoipa::ToSchema)]
pub struct TwilioForm(pub std::collections::BTreeMap<String, String>);

/// Twilio's voice webhook for an inbound call: route, admit, record, and answer TwiML.
#[utoipa::path(post, path = "/api/v1/incoming-call", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded",
                 description = "Twilio voice webhook parameters (CallSid, AccountSid, From, To, …)"),
    responses((status = 200, description = "TwiML", content_type = "text/xml"),
              (status = 403, body = ErrorResponse, description = "signature does not verify"),
              (status = 503, body = ErrorResponse, description = "this node is draining and another node is up: the load balancer retries the call there")))]
pub async fn incoming_call(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    if state.refuses_new_calls() {
        return Err(ApiError::Unavailable(super::DRAINING_REFUSAL.into()));
    }
    let inbound = InboundRequest {
        account,
        call_sid: req.required("CallSid")?.to_owned(),
        from: req.param("From").unwrap_or("anonymous").to_owned(),
        to: req.required("To")?.to_owned(),
        draining: state.is_draining(),
    };
    let decision = admission::inbound(&state.actors.telephony, inbound).await?;
    let doc = match decision {
        InboundDecision::Connect {
            stream, fallback, ..
        } => {
            let mut verbs = vec![twiml::connect(&stream)];
            verbs.extend(twiml::fallback(&fallback));
            twiml::Response::new(verbs)
        }
        InboundDecision::Unrouted => twiml::Response::new(vec![
            twiml::Say::text(UNROUTED_MESSAGE),
            twiml::Verb::Hangup(twiml::Empty {}),
        ]),
        InboundDecision::Fallback { fallback, .. } => {
            twiml::Response::new(twiml::fallback(&fallback))
        }
        InboundDecision::Busy { .. } => {
            twiml::Response::new(vec![twiml::Verb::Reject(twiml::Reject {
                reason: Some(String::from("busy")),
            })])
        }
    };
    Ok(xml(&doc))
}

/// The `<Connect action>`: what the caller hears once the AI leg ended.
#[utoipa::path(post, path = "/api/v1/stream-ended", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "Our call id (set in the action URL)")),
    responses((status = 200, description = "TwiML: hangup, fallback dial, or a fresh stream", content_type = "text/xml"),
              (status = 403, body = ErrorResponse)))]
pub async fn stream_ended(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = req.target(account.tenant_id)?;
    let next = stream::stream_ended(&state.actors.telephony, target).await?;
    let doc = match next {
        AfterStream::Hangup => twiml::hangup(),
        AfterStream::Fallback(f) => twiml::Response::new(twiml::fallback(&f)),
        AfterStream::Resume(stream) => twiml::Response::new(vec![twiml::connect(&stream)]),
    };
    Ok(xml(&doc))
}

/// The `<Dial action>` of a handoff: answered → the call ends with the bridged leg;
/// busy / no-answer / failed → the queue's fallback (callback task, voicemail message, or a
/// fresh stream back to the agent).
#[utoipa::path(post, path = "/api/v1/dial-result", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "Our call id (set in the action URL)"),
           ("handoff_id" = String, Query, description = "The handoff (set in the action URL)")),
    responses((status = 200, description = "TwiML: hangup, a message, or a fresh stream", content_type = "text/xml"),
              (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn dial_result(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = req.target(account.tenant_id)?;
    let handoff = req
        .query
        .iter()
        .find(|(k, _)| k == "handoff_id")
        .and_then(|(_, v)| actors::ids::HandoffId::parse(v))
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: "handoff_id is required".into(),
            field: Some("handoff_id".into()),
        })?;
    let report = DialReport {
        status: req.required("DialCallStatus")?.to_owned(),
        dial_call_sid: req.param("DialCallSid").map(str::to_owned),
        duration_secs: req.param("DialCallDuration").and_then(|d| d.parse().ok()),
    };
    let next = dial::dial_result(&state.actors.telephony, target, handoff, report).await?;
    let doc = match next {
        AfterStream::Hangup => twiml::hangup(),
        AfterStream::Fallback(f) => twiml::Response::new(twiml::fallback(&f)),
        AfterStream::Resume(stream) => twiml::Response::new(vec![twiml::connect(&stream)]),
    };
    Ok(xml(&doc))
}

fn parse_rfc2822_ms(ts: Option<&str>) -> Option<i64> {
    ts.and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.timestamp_millis())
}

/// Call status callbacks: each event stored once; the status advances only with a higher
/// `SequenceNumber`.
#[utoipa::path(post, path = "/api/v1/call-status", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "Our call id (set in the callback URL)")),
    responses((status = 204, description = "Recorded (or a duplicate)"), (status = 400, body = ErrorResponse),
              (status = 403, body = ErrorResponse)))]
pub async fn call_status(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = req.target(account.tenant_id.clone())?;
    let sequence_number: i64 =
        req.required("SequenceNumber")?
            .parse()
            .map_err(|_| ApiError::BadRequest {
                code: "invalid_body",
                message: "SequenceNumber must be an integer".into(),
                field: Some("SequenceNumber".into()),
            })?;
    let update = StatusUpdate {
        call_id: target.call_id.clone(),
        account_sid: account.auth.account_sid.clone(),
        call_sid: target.call_sid.clone(),
        sequence_number,
        status: req.required("CallStatus")?.to_owned(),
        at: parse_rfc2822_ms(req.param("Timestamp")).unwrap_or_else(actors::time::now_ms),
        duration_seconds: req.param("CallDuration").and_then(|d| d.parse().ok()),
        answered_by: req.param("AnsweredBy").map(str::to_owned),
        params: req.params_json(),
    };
    status::call_status(&state.actors.telephony, target, update).await?;
    Ok(no_content())
}

/// `<Stream statusCallback>`: stream started, stopped or failed.
#[utoipa::path(post, path = "/api/v1/stream-status", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "Our call id")),
    responses((status = 204, description = "Recorded"), (status = 403, body = ErrorResponse)))]
pub async fn stream_status(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let cb = StreamCallback {
        target: req.target(account.tenant_id)?,
        stream_sid: req.param("StreamSid").map(str::to_owned),
        event: req.required("StreamEvent")?.to_owned(),
        error: req.param("StreamError").map(str::to_owned),
    };
    status::stream_status(&state.actors.telephony, cb).await?;
    Ok(no_content())
}

/// Asynchronous answering-machine detection result.
#[utoipa::path(post, path = "/api/v1/amd-status", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "Our call id")),
    responses((status = 204, description = "Recorded"), (status = 403, body = ErrorResponse)))]
pub async fn amd_status(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = req.target(account.tenant_id)?;
    let answered_by = req.required("AnsweredBy")?.to_owned();
    status::amd_status(&state.actors.telephony, target, answered_by).await?;
    Ok(no_content())
}
