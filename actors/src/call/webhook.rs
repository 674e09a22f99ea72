//! Tool I/O off the call actor: signed requests to tenant endpoints (webhook tools and the
//! identity check) through the SSRF-safe [`crate::egress`] client, and follow-up SMS
//! through the router's carrier. Each runs in a task and reports back as
//! [`CallMsg::ToolDone`]; the task's abort handle is kept so a cancelled tool or an ended
//! call stops it.

use std::time::Duration;

use ractor::ActorRef;
use serde_json::{Value, json};
use tokio::task::AbortHandle;

use super::tools::{MAX_TOOL_RESPONSE, ToolOutcome};
use super::{CallDeps, CallMsg};
use crate::egress::EgressError;
use crate::ids::TenantId;
use crate::router::RouterMsg;
use crate::store::{CallRecord, FunctionCallStatus};

/// A signed request to a tenant endpoint.
#[derive(Debug, Clone)]
pub struct Request {
    /// Endpoint.
    pub url: String,
    /// JSON body.
    pub body: Value,
    /// `Idempotency-Key` (one per invocation).
    pub idempotency_key: String,
    /// Timeout of the whole request.
    pub timeout: Duration,
    /// Tool name (`StateSet-Tool` header).
    pub tool: String,
}

/// Why a tenant endpoint gave no usable answer.
#[derive(Debug, Clone)]
pub enum Failure {
    /// No answer in time.
    Timeout,
    /// Refused before sending (SSRF policy, bad URL) or by the transport.
    Egress(String),
    /// A status other than 2xx.
    Status(u16),
    /// The body is not JSON.
    NotJson,
    /// The body is larger than allowed.
    TooLarge,
    /// The tenant's signing secret could not be read.
    Secret(String),
}

impl Failure {
    /// The tool result for this failure.
    pub fn outcome(&self) -> ToolOutcome {
        match self {
            Failure::Timeout => ToolOutcome::error(
                FunctionCallStatus::TimedOut,
                "the tool did not answer in time",
            ),
            Failure::Egress(why) => ToolOutcome::error(
                FunctionCallStatus::Failed,
                format!("the tool could not be reached: {why}"),
            ),
            Failure::Status(code) => ToolOutcome::error(
                FunctionCallStatus::Failed,
                format!("the tool answered HTTP {code}"),
            ),
            Failure::NotJson => {
                ToolOutcome::error(FunctionCallStatus::Failed, "the tool did not answer JSON")
            }
            Failure::TooLarge => ToolOutcome::error(
                FunctionCallStatus::Failed,
                format!("the tool's answer is larger than {MAX_TOOL_RESPONSE} bytes"),
            ),
            Failure::Secret(why) => ToolOutcome::error(
                FunctionCallStatus::Failed,
                format!("the request could not be signed: {why}"),
            ),
        }
    }
}

async fn signing_secret(deps: &CallDeps, tenant: &TenantId) -> Result<Vec<u8>, Failure> {
    let Some(actor) = deps.tenant.as_ref().and_then(|t| t.get()) else {
        return Err(Failure::Secret(String::from("tenant service restarting")));
    };
    match ractor::call_t!(
        actor,
        crate::tenant::TenantMsg::SigningSecret,
        5_000,
        tenant.clone()
    ) {
        Ok(Ok(secret)) => Ok(secret),
        Ok(Err(e)) => Err(Failure::Secret(e.to_string())),
        Err(e) => Err(Failure::Secret(e.to_string())),
    }
}

async fn post(deps: &CallDeps, tenant: &TenantId, req: &Request) -> Result<Value, Failure> {
    let secret = signing_secret(deps, tenant).await?;
    let body = serde_json::to_vec(&req.body).map_err(|e| Failure::Egress(e.to_string()))?;
    let headers = [
        ("Idempotency-Key", req.idempotency_key.clone()),
        ("StateSet-Tool", req.tool.clone()),
    ];
    let sent = tokio::time::timeout(
        req.timeout,
        deps.egress.post_signed(
            &req.url,
            &secret,
            body,
            &headers,
            req.timeout,
            MAX_TOOL_RESPONSE,
        ),
    )
    .await
    .map_err(|_| Failure::Timeout)?;
    let response = match sent {
        Ok(r) => r,
        Err(EgressError::Timeout) => return Err(Failure::Timeout),
        Err(EgressError::ResponseTooLarge) => return Err(Failure::TooLarge),
        Err(e) => return Err(Failure::Egress(e.to_string())),
    };
    if !(200..300).contains(&response.status) {
        return Err(Failure::Status(response.status));
    }
    serde_json::from_slice(&response.body).map_err(|_| Failure::NotJson)
}

/// Runs a signed request in a task; `map` turns its answer into the tool result.
pub fn spawn(
    deps: CallDeps,
    tenant: TenantId,
    req: Request,
    actor: ActorRef<CallMsg>,
    call_id: String,
    map: impl FnOnce(Result<Value, Failure>) -> ToolOutcome + Send + 'static,
) -> AbortHandle {
    tokio::spawn(async move {
        let answer = post(&deps, &tenant, &req).await;
        if let Err(failure) = &answer {
            tracing::info!(tool = %req.tool, failure = ?failure, "tenant endpoint gave no usable answer");
        }
        let _ = actor.cast(CallMsg::ToolDone(call_id, Box::new(map(answer))));
    })
    .abort_handle()
}

/// Texts the caller through the router's carrier, in a task.
pub fn spawn_sms(
    deps: CallDeps,
    call: CallRecord,
    body: String,
    actor: ActorRef<CallMsg>,
    call_id: String,
) -> AbortHandle {
    tokio::spawn(async move {
        let outcome = match deps.router.as_ref().and_then(|r| r.get()) {
            None => ToolOutcome::error(FunctionCallStatus::Failed, "the router is restarting"),
            Some(router) => match ractor::call_t!(
                router,
                RouterMsg::SendSms,
                15_000,
                call.tenant_id.clone(),
                call.id.clone(),
                body
            ) {
                Ok(Ok(sid)) => ToolOutcome::ok(json!({"status": "sent", "message_sid": sid})),
                Ok(Err(e)) => ToolOutcome::error(
                    FunctionCallStatus::Failed,
                    format!("the message was not sent: {e}"),
                ),
                Err(e) => ToolOutcome::error(
                    FunctionCallStatus::Failed,
                    format!("the message was not sent: {e}"),
                ),
            },
        };
        let _ = actor.cast(CallMsg::ToolDone(call_id, Box::new(outcome)));
    })
    .abort_handle()
}
