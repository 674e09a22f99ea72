//! Provisioning through the admin API: a fresh load-test tenant (unique name) with the
//! carrier simulator's Twilio account, an approved agent version (greeting, server VAD), a
//! live inbound phone route, and concurrency limits above the number of calls.
//!
//! Everything is created new on every run (the account SID and the number are random), so
//! runs never collide with each other or with real data; old load-test tenants can be
//! deleted by name (`loadtest …`).

use reqwest::Method;
use serde_json::{Value, json};

use super::LoadTestError;

/// The agent's greeting (about 2.7 s of simulated speech).
pub const GREETING: &str = "Thanks for calling the load test line. How can I help?";
/// The agent key of the load-test route.
pub const AGENT_KEY: &str = "loadtest";
/// The route's fallback number (a caller sent to the fallback has it dialled).
pub const FALLBACK_NUMBER: &str = "+15550199999";

/// What was created.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The tenant (`ten_…`).
    pub tenant_id: String,
    /// The route's number (E.164).
    pub number: String,
    /// The concurrency limit given to the tenant and the route.
    pub limit: i64,
}

/// An admin API client.
pub struct Admin<'a> {
    /// HTTP client.
    pub client: &'a reqwest::Client,
    /// Base URL of the server.
    pub server: &'a str,
    /// `ADMIN_API_KEY` of the server.
    pub key: &'a str,
}

impl Admin<'_> {
    /// One admin request; the JSON answered (`null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, LoadTestError> {
        let step = format!("{method} {path}");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.server))
            .header("x-admin-key", self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|source| LoadTestError::Http {
            step: step.clone(),
            source,
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| LoadTestError::Http {
                step: step.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(LoadTestError::Admin {
                step,
                status: status.as_u16(),
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| LoadTestError::Admin {
            step,
            status: status.as_u16(),
            body: format!("unreadable JSON ({e}): {text}"),
        })
    }

    fn id(value: &Value, step: &str) -> Result<String, LoadTestError> {
        value["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LoadTestError::Admin {
                step: step.to_owned(),
                status: 200,
                body: format!("no id in {value}"),
            })
    }

    /// Creates the tenant, credentials, agent, version and route for `calls` calls of
    /// `call_seconds` each.
    pub async fn provision(
        &self,
        calls: u32,
        call_seconds: u64,
        account_sid: &str,
        auth_token: &str,
    ) -> Result<Provisioned, LoadTestError> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let limit = i64::from(calls).saturating_mul(2).clamp(20, 10_000);
        let tenant = self
            .call(
                Method::POST,
                "/api/v1/admin/tenants",
                Some(json!({
                    "name": format!("loadtest {}", &suffix[..12]),
                    "max_concurrent_calls": limit,
                })),
            )
            .await?;
        let tenant_id = Self::id(&tenant, "create tenant")?;
        // Explicitly raised as well, so the limit holds even if creation defaults change.
        self.call(
            Method::PATCH,
            &format!("/api/v1/admin/tenants/{tenant_id}"),
            Some(json!({"max_concurrent_calls": limit})),
        )
        .await?;
        self.call(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{tenant_id}/twilio-credentials"),
            Some(json!({"account_sid": account_sid, "auth_token": auth_token})),
        )
        .await?;
        let agent = self
            .call(
                Method::POST,
                "/api/v1/admin/agents",
                Some(json!({"tenant_id": tenant_id, "key": AGENT_KEY, "name": "Load test agent"})),
            )
            .await?;
        let agent_id = Self::id(&agent, "create agent")?;
        let max_call_seconds = i64::try_from(call_seconds.saturating_mul(2))
            .unwrap_or(14_400)
            .clamp(60, 14_400);
        let version = self
            .call(
                Method::POST,
                &format!("/api/v1/admin/agents/{agent_id}/versions"),
                Some(json!({
                    "instructions": "You are the load-test agent. Answer briefly.",
                    "greeting": GREETING,
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                    },
                    "max_call_seconds": max_call_seconds,
                    "idle_timeout_seconds": 600,
                })),
            )
            .await?;
        let version_id = Self::id(&version, "create agent version")?;
        self.call(
            Method::POST,
            &format!("/api/v1/admin/agent-versions/{version_id}/approve"),
            None,
        )
        .await?;
        let number = format!("+1555{:07}", suffix_number(&suffix));
        self.call(
            Method::POST,
            "/api/v1/admin/phone-routes",
            Some(json!({
                "tenant_id": tenant_id,
                "number": number,
                "agent_key": AGENT_KEY,
                "direction": "inbound",
                "status": "live",
                "live_override_reason": "loadtest",
                "fallback_number": FALLBACK_NUMBER,
                "max_concurrent_calls": limit,
            })),
        )
        .await?;
        Ok(Provisioned {
            tenant_id,
            number,
            limit,
        })
    }
}

/// Seven decimal digits from a hex string.
fn suffix_number(hex: &str) -> u64 {
    let n = u64::from_str_radix(hex.get(..15).unwrap_or("0"), 16).unwrap_or(0);
    n % 10_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_seven_digits() {
        assert_eq!(suffix_number("0000000000000ff"), 255);
        assert!(suffix_number("ffffffffffffffff") < 10_000_000);
        assert_eq!(suffix_number("zz"), 0);
        assert_eq!(format!("+1555{:07}", suffix_number("1")), "+15550000000");
    }
}
