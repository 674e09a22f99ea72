//! The `stateset-voice sim …` commands: the carrier simulator on its own, and one scripted
//! inbound call placed at a running server with a human-readable summary.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::carrier::{
    CallEvent, CallSnapshot, CallStatus, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle,
    InboundCall, StreamCloser, WebhookKind,
};

/// An `ACCOUNT_SID:AUTH_TOKEN` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountArg {
    /// `AC…`.
    pub sid: String,
    /// Auth token.
    pub token: String,
}

impl FromStr for AccountArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((sid, token)) if !sid.is_empty() && !token.is_empty() => Ok(Self {
                sid: sid.to_owned(),
                token: token.to_owned(),
            }),
            _ => Err(format!("expected ACCOUNT_SID:AUTH_TOKEN, got {s:?}")),
        }
    }
}

/// Runs the carrier simulator on `bind` until `shutdown` resolves, logging every call.
pub async fn run_carrier(
    bind: SocketAddr,
    accounts: Vec<AccountArg>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = CarrierConfig {
        bind,
        accounts: accounts.into_iter().map(|a| (a.sid, a.token)).collect(),
        ..CarrierConfig::default()
    };
    let sim = Arc::new(CarrierSim::start(config).await?);
    println!("carrier simulator listening on {}", sim.base_url());
    println!(
        "use it as the Twilio API base URL: {}/2010-04-01/Accounts/{{AccountSid}}/Calls.json",
        sim.base_url()
    );
    let mut new_calls = sim.subscribe_new_calls();
    let watcher_sim = sim.clone();
    let watcher = tokio::spawn(async move {
        let mut per_call = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                received = new_calls.recv() => match received {
                    Ok(sid) => {
                        let sim = watcher_sim.clone();
                        per_call.spawn(async move {
                            if let Some(call) = sim.call(&sid) {
                                tracing::info!(call = %sid, direction = call.direction.as_str(), from = %call.from, to = %call.to, "call started");
                            }
                            let call = sim.wait_ended(&sid).await;
                            println!("{}", summary(&call));
                        });
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "too many calls to log");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                Some(_) = per_call.join_next() => {}
            }
        }
    });
    shutdown.await;
    watcher.abort();
    let _ = watcher.await;
    sim.shutdown();
    Ok(())
}

/// Options of `sim call`.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Base URL of the server under test (`http://127.0.0.1:5050`).
    pub server: String,
    /// Called number.
    pub to: String,
    /// Caller.
    pub from: String,
    /// Account of the called number.
    pub account_sid: String,
    /// Its auth token (signs the webhooks).
    pub auth_token: String,
    /// How long the caller speaks after half a second of silence.
    pub speak: Duration,
    /// When the caller hangs up, from the start of the media stream.
    pub hangup_after: Duration,
}

/// Places one inbound call at `{server}/api/v1/incoming-call` (status callbacks to
/// `{server}/api/v1/call-status`), waits for it to end, and returns its final snapshot.
pub async fn run_call(options: CallOptions) -> anyhow::Result<CallSnapshot> {
    let sim: CarrierSimHandle = CarrierSim::start(CarrierConfig::with_account(
        options.account_sid.clone(),
        options.auth_token.clone(),
    ))
    .await?;
    let lead_in = Duration::from_millis(500);
    let remaining = options
        .hangup_after
        .saturating_sub(lead_in)
        .saturating_sub(options.speak);
    let script = CallerScript::default()
        .silence(lead_in)
        .speak(options.speak, "Hello, I have a question about my order.")
        .silence(remaining)
        .hang_up()
        .with_max_duration(options.hangup_after + Duration::from_secs(5));
    let server = options.server.trim_end_matches('/');
    let sid = sim.place_inbound_call(InboundCall {
        account_sid: options.account_sid,
        from: options.from,
        to: options.to,
        voice_url: format!("{server}/api/v1/incoming-call"),
        status_callback: Some(format!("{server}/api/v1/call-status")),
        // A number's status callback reports `completed` only.
        status_callback_events: Vec::new(),
        script,
    })?;
    tracing::info!(call = %sid, "call placed");
    let limit = options.hangup_after + Duration::from_secs(60);
    let call = match tokio::time::timeout(limit, sim.wait_ended(&sid)).await {
        Ok(call) => call,
        Err(_) => {
            tracing::warn!(call = %sid, "the call did not end in time: hanging up");
            let _ = sim.hangup(&sid);
            tokio::time::timeout(Duration::from_secs(20), sim.wait_ended(&sid))
                .await
                .map_err(|_| anyhow::anyhow!("call {sid} did not end"))?
        }
    };
    Ok(call)
}

/// A human-readable account of a call.
pub fn summary(call: &CallSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "call {} {}: {} after {} s ({} {} -> {})",
        call.sid,
        call.direction.as_str(),
        call.status,
        call.duration_secs.unwrap_or(0),
        if call.answered_at.is_some() {
            "answered"
        } else {
            "never answered"
        },
        call.from,
        call.to,
    );
    for event in &call.events {
        let line = match event {
            CallEvent::WebhookSent(w) if w.kind == WebhookKind::StatusCallback => continue,
            CallEvent::WebhookSent(w) => format!(
                "  webhook {:?} {} {} -> {}",
                w.kind,
                w.method,
                w.url,
                w.status
                    .map(|s| s.to_string())
                    .or_else(|| w.error.clone())
                    .unwrap_or_default()
            ),
            CallEvent::Said(text) => format!("  said: {text:?}"),
            CallEvent::CallerSpoke(text) => format!("  caller spoke: {text:?}"),
            CallEvent::Dialed { numbers, outcome } => format!(
                "  dialed {}: {} ({} s)",
                numbers.join(", "),
                outcome.status,
                outcome.duration_secs
            ),
            CallEvent::StreamOpened {
                url, stream_sid, ..
            } => {
                format!("  stream {stream_sid} opened at {url}")
            }
            CallEvent::StreamRejected {
                url,
                http_status,
                error,
            } => format!("  stream to {url} rejected ({http_status:?}): {error}"),
            CallEvent::StreamClosed { stream_sid, by } => {
                let by = match by {
                    StreamCloser::Caller => "the caller",
                    StreamCloser::Server => "the server",
                    StreamCloser::Redirect => "a REST redirect",
                    StreamCloser::Hangup => "a REST hang-up",
                    StreamCloser::Reset => "a network reset",
                };
                format!("  stream {stream_sid} closed by {by}")
            }
            CallEvent::Rejected { reason } => format!("  rejected: {reason}"),
            CallEvent::ApplicationError { detail } => format!("  application error: {detail}"),
            CallEvent::Updated { .. } => "  updated through the REST API".to_owned(),
            CallEvent::AmdSent { answered_by } => format!("  AMD result: {answered_by}"),
            CallEvent::HungUp => "  hung up by TwiML".to_owned(),
            CallEvent::ConferenceJoined {
                name,
                conference_sid,
                hold_audio,
                ..
            } => match hold_audio {
                Some(audio) => {
                    format!("  joined conference {name} ({conference_sid}), on hold with {audio}")
                }
                None => format!("  joined conference {name} ({conference_sid})"),
            },
            CallEvent::ConferenceBridged { conference_sid } => {
                format!("  bridged in conference {conference_sid}")
            }
            CallEvent::ConferenceLeft { conference_sid } => {
                format!("  left conference {conference_sid}")
            }
            CallEvent::Gathered { digits } => match digits {
                Some(d) => format!("  pressed {d}"),
                None => "  pressed nothing".to_owned(),
            },
            CallEvent::TwimlRun { .. } | CallEvent::Paused(_) | CallEvent::DtmfSent(_) => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    if !call.status_callbacks.is_empty() {
        let sent: Vec<String> = call
            .status_callbacks
            .iter()
            .map(|c| {
                let status = c
                    .http_status
                    .map_or_else(|| "failed".into(), |s| s.to_string());
                format!("#{} {} -> {status}", c.sequence_number, c.call_status)
            })
            .collect();
        let _ = writeln!(out, "  status callbacks: {}", sent.join(", "));
    }
    let m = &call.media;
    if m.streams_opened > 0 {
        let _ = writeln!(
            out,
            "  media: {} frames sent ({} ms), {} DTMF; {} messages received ({} ms of audio), first audio after {}; marks {}/{} echoed, {} clears",
            m.frames_sent,
            m.frames_sent * 20,
            m.dtmf_sent,
            m.media_received,
            m.bytes_received / 8,
            m.first_audio_ms
                .map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms")),
            m.marks_echoed,
            m.marks_received,
            m.clears,
        );
        if !m.response_latencies_ms.is_empty() {
            let _ = writeln!(
                out,
                "  response latency after caller speech (ms): {:?}",
                m.response_latencies_ms
            );
        }
    }
    out
}

/// Exit status of `sim call`: success only for a completed call.
pub fn succeeded(call: &CallSnapshot) -> bool {
    call.status == CallStatus::Completed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_arguments_parse() {
        assert_eq!(
            "AC1:tok:en".parse::<AccountArg>(),
            Ok(AccountArg {
                sid: "AC1".into(),
                token: "tok:en".into()
            })
        );
        assert!("AC1".parse::<AccountArg>().is_err());
        assert!(":x".parse::<AccountArg>().is_err());
    }
}
