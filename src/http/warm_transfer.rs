//! The warm transfer's Twilio webhooks (issue 16), each signed and scoped to the tenant
//! whose account signed it, with `call_id` and `handoff_id` in the URL the runtime gave the
//! carrier: the operator leg's whisper TwiML, the `<Gather action>` with the operator's key,
//! the operator leg's status callback and the conference's status callback. The decisions
//! are `actors::telephony::warm`'s; this layer parses and renders TwiML.

use actors::ids::HandoffId;
use actors::telephony::warm::{self, Decision, WarmTarget, Whisper};
use actors::tenant::TwilioAccount;

use super::guard::Signed;
use super::mount::Request;
use super::webhooks::{TwilioForm, TwilioRequest, no_content, xml};
use super::{ApiError, ErrorResponse};
use crate::twilio::twiml;
use warp::reply::Response;

/// The handoff a webhook is about: `handoff_id` (and `call_id`) from its URL.
fn target(account: &TwilioAccount, req: &TwilioRequest) -> Result<WarmTarget, ApiError> {
    let handoff_id = req
        .query
        .iter()
        .find(|(k, _)| k == "handoff_id")
        .and_then(|(_, v)| HandoffId::parse(v))
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: "handoff_id is required".into(),
            field: Some("handoff_id".into()),
        })?;
    Ok(WarmTarget {
        tenant_id: account.tenant_id.clone(),
        call_id: req.call_id(),
        handoff_id,
    })
}

fn goodbye(message: &str) -> twiml::Response {
    twiml::Response::new(vec![
        twiml::Say::text(message),
        twiml::Verb::Hangup(twiml::Empty {}),
    ])
}

/// The operator leg's TwiML: the whispered handoff summary inside a one-digit `<Gather>`
/// (1 accepts, 2 declines); without a key the leg hangs up.
#[utoipa::path(post, path = "/api/v1/warm-transfer/whisper", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "The caller's call (set in the URL)"),
           ("handoff_id" = String, Query, description = "The handoff (set in the URL)")),
    responses((status = 200, description = "TwiML: the whisper and the question, or a goodbye", content_type = "text/xml"),
              (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "no warm handoff of the signing account's tenant")))]
pub async fn whisper(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = target(&account, &req)?;
    let doc = match warm::whisper(&state.actors.telephony, target).await? {
        Whisper::Ask {
            text,
            decision_url,
            timeout_secs,
        } => twiml::Response::new(vec![
            twiml::Verb::Gather(twiml::Gather {
                action: Some(decision_url),
                method: Some(String::from("POST")),
                input: Some(String::from("dtmf")),
                num_digits: Some(1),
                timeout: Some(timeout_secs),
                children: vec![twiml::GatherChild::Say(twiml::Say {
                    text,
                    ..twiml::Say::default()
                })],
            }),
            twiml::Say::text("No choice was made. Goodbye."),
            twiml::Verb::Hangup(twiml::Empty {}),
        ]),
        Whisper::Gone(message) => goodbye(&message),
    };
    Ok(xml(&doc))
}

/// The whisper's `<Gather action>`: `Digits=1` joins the operator to the caller's
/// conference (the transfer `accepted`); any other key declines (the queue's
/// `when_unanswered` applies to the caller).
#[utoipa::path(post, path = "/api/v1/warm-transfer/decision", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "The caller's call (set in the URL)"),
           ("handoff_id" = String, Query, description = "The handoff (set in the URL)")),
    responses((status = 200, description = "TwiML: join the conference, or a goodbye", content_type = "text/xml"),
              (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "no warm handoff of the signing account's tenant")))]
pub async fn decision(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = target(&account, &req)?;
    let digits = req.param("Digits").map(str::to_owned);
    let doc = match warm::decision(&state.actors.telephony, target, digits).await? {
        Decision::Join(join) => twiml::Response::new(vec![twiml::conference(&join)]),
        Decision::Hangup(message) => goodbye(&message),
    };
    Ok(xml(&doc))
}

/// The operator leg's status callback: a leg that ends before the operator accepted (no
/// answer, busy, failed, no key) leaves the transfer `unanswered`.
#[utoipa::path(post, path = "/api/v1/warm-transfer/operator-status", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "The caller's call (set in the URL)"),
           ("handoff_id" = String, Query, description = "The handoff (set in the URL)")),
    responses((status = 204, description = "Recorded (or a duplicate)"),
              (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "no warm handoff of the signing account's tenant, or another leg")))]
pub async fn operator_status(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = target(&account, &req)?;
    let call_sid = req.required("CallSid")?.to_owned();
    let status = req.required("CallStatus")?.to_owned();
    warm::operator_status(&state.actors.telephony, target, &call_sid, &status).await?;
    Ok(no_content())
}

/// The conference's status callback (`start end join leave`): on the call's timeline; the
/// caller leaving before the operator accepted abandons the transfer.
#[utoipa::path(post, path = "/api/v1/warm-transfer/conference-status", tag = "webhooks",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    params(("call_id" = Option<String>, Query, description = "The caller's call (set in the URL)"),
           ("handoff_id" = String, Query, description = "The handoff (set in the URL)")),
    responses((status = 204, description = "Recorded"),
              (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse, description = "no warm handoff of the signing account's tenant")))]
pub async fn conference_status(req: Request<Signed>) -> Result<Response, ApiError> {
    let Request {
        state,
        auth: Signed {
            account,
            request: req,
        },
        ..
    } = req;
    let target = target(&account, &req)?;
    let event = req.required("StatusCallbackEvent")?.to_owned();
    warm::conference_status(
        &state.actors.telephony,
        target,
        &event,
        req.param("ConferenceSid"),
        req.param("CallSid"),
    )
    .await?;
    Ok(no_content())
}
