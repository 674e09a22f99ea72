//! Checks of the providers a tenant's calls depend on, each within a short deadline: the
//! carrier credential (the account read with the tenant's Twilio credentials, the real
//! check rather than the format) and the realtime model endpoint (a websocket handshake with
//! the key calls would use, up to the server's first event). Used by the providers
//! diagnostics; nothing is written.

use std::time::{Duration, Instant};

use crate::carrier::{Carrier, CarrierAuth};
use crate::realtime::{RealtimeClient, RealtimeEndpoint, RealtimeOptions, ServerEvent};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The provider answered as expected.
    Ok,
    /// It refused, failed or did not answer in time.
    Failed,
    /// Nothing to check with (no credentials, no key).
    NotConfigured,
}

impl CheckStatus {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Failed => "failed",
            CheckStatus::NotConfigured => "not_configured",
        }
    }
}

/// One provider check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCheck {
    /// Its outcome.
    pub status: CheckStatus,
    /// What was found (the account and its status; the first event; the error).
    pub detail: String,
    /// How long it took.
    pub latency: Duration,
}

impl ProviderCheck {
    fn not_configured(detail: &str) -> Self {
        Self {
            status: CheckStatus::NotConfigured,
            detail: detail.to_owned(),
            latency: Duration::ZERO,
        }
    }
}

/// Reads the account `auth` belongs to: `ok` when the carrier knows it and it is active.
pub async fn check_carrier(
    carrier: &dyn Carrier,
    auth: Option<&CarrierAuth>,
    deadline: Duration,
) -> ProviderCheck {
    let Some(auth) = auth else {
        return ProviderCheck::not_configured("the tenant has no Twilio credentials");
    };
    let started = Instant::now();
    let result = tokio::time::timeout(deadline, carrier.fetch_account(auth)).await;
    let latency = started.elapsed();
    let (status, detail) = match result {
        Err(_) => (
            CheckStatus::Failed,
            format!(
                "the carrier did not answer within {} ms",
                deadline.as_millis()
            ),
        ),
        Ok(Err(e)) => (
            CheckStatus::Failed,
            match e.code {
                Some(code) => format!(
                    "the carrier refused the credentials ({code}): {}",
                    e.message
                ),
                None => format!("the carrier check failed: {}", e.message),
            },
        ),
        Ok(Ok(account)) if account.status == "active" => (
            CheckStatus::Ok,
            format!("account {} is active", account.sid),
        ),
        Ok(Ok(account)) => (
            CheckStatus::Failed,
            format!("account {} is {}", account.sid, account.status),
        ),
    };
    ProviderCheck {
        status,
        detail,
        latency,
    }
}

/// Opens a realtime session at `url` with `api_key` and waits for the server's first event:
/// `ok` on `session.created`.
pub async fn check_model(
    url: &str,
    api_key: Option<String>,
    model: &str,
    deadline: Duration,
) -> ProviderCheck {
    let Some(api_key) = api_key.filter(|k| !k.is_empty()) else {
        return ProviderCheck::not_configured(
            "no realtime-model key (the tenant's or OPENAI_API_KEY)",
        );
    };
    let started = Instant::now();
    let endpoint = RealtimeEndpoint {
        url: url.to_owned(),
        api_key,
        model: model.to_owned(),
    };
    let options = RealtimeOptions {
        connect_timeout: deadline,
        ..RealtimeOptions::default()
    };
    let handshake = async {
        let (tx, mut rx) = RealtimeClient::connect_with(endpoint, options)
            .await
            .map_err(|e| format!("the handshake failed: {e}"))?;
        let first = rx.recv().await;
        drop(tx);
        match first {
            Some(Ok(ServerEvent::SessionCreated(_))) => {
                Ok(String::from("session.created received"))
            }
            Some(Ok(ServerEvent::Error(e))) => Err(format!(
                "the model endpoint answered an error: {}",
                e.error.message
            )),
            Some(Ok(other)) => Err(format!("unexpected first event {}", other.kind())),
            Some(Err(e)) => Err(format!("the session failed: {e}")),
            None => Err(String::from("the endpoint closed the session")),
        }
    };
    let result = tokio::time::timeout(deadline, handshake).await;
    let (status, detail) = match result {
        Err(_) => (
            CheckStatus::Failed,
            format!("no session within {} ms", deadline.as_millis()),
        ),
        Ok(Ok(detail)) => (CheckStatus::Ok, detail),
        Ok(Err(detail)) => (CheckStatus::Failed, detail),
    };
    ProviderCheck {
        status,
        detail,
        latency: started.elapsed(),
    }
}
