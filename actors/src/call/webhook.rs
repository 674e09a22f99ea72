//! Signed requests to tenant endpoints (webhook tools and the identity check) through the
//! SSRF-safe [`crate::egress`] client, signed with the tenant's secret: the request, and the
//! ways an endpoint can fail to give a usable answer. Run by the tool tasks
//! ([`super::tools`]).

use std::time::Duration;

use serde_json::Value;

use super::CallDeps;
use super::conversation::ToolOutcome;
use crate::egress::EgressError;
use crate::ids::TenantId;
use crate::store::FunctionCallStatus;

/// Largest tool response body accepted.
pub const MAX_TOOL_RESPONSE: usize = 64 * 1024;

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
    let Some(actor) = deps.tenant.get() else {
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

pub async fn post(deps: &CallDeps, tenant: &TenantId, req: &Request) -> Result<Value, Failure> {
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
