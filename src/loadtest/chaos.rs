//! `--chaos MODE:PERCENT@SECONDS`: at SECONDS after the start of the run the load generator
//! asks the server (`POST /api/v1/admin/chaos/calls`, which needs `CHAOS_HOOKS` on) to inject
//! MODE into PERCENT % of its live calls, and reports what became of every call.
//!
//! The fate of a call ([`Fate`]) is read from the carrier simulator's snapshot of it once it
//! ended:
//! - `failed`: the call did not end `completed`, or the carrier met an application error
//!   (TwiML it could not fetch or parse: what a caller hears as "an application error");
//! - `fallback`: the caller heard the route's fallback (its message, or the fallback number
//!   dialled);
//! - `resumed`: the carrier opened a further stream on the same call and the conversation went
//!   on to the caller's hang-up;
//! - `normal`: one stream, ended by the caller.
//!
//! The time from the fault to the *recorded outcome* of a touched call is measured from the
//! instant the chaos request was answered to whichever comes first, polled every
//! [`OUTCOME_POLL`]: the carrier opening a further stream on the call (the server recorded the
//! resume continuation and answered `stream-ended` with a fresh stream), or the server's call
//! log showing the call completed (`completed_at`: fallback, failure, or a normal end).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::LoadTestError;
use super::histogram::{Histogram, LatencySummary};
use super::setup::{Admin, FALLBACK_NUMBER};
use crate::sim::carrier::{CallEvent, CallSnapshot, CallStatus, StreamCloser};

/// Between two looks at a touched call's outcome.
pub const OUTCOME_POLL: Duration = Duration::from_millis(100);
/// How long a touched call's outcome is waited for.
pub const OUTCOME_DEADLINE: Duration = Duration::from_secs(120);

/// What the server injects (the chaos API's `mode`): the runtime's own modes.
pub use actors::call::chaos::ChaosMode;

/// A mode as the API names it, for the JSON report.
fn mode_name<S: serde::Serializer>(mode: &ChaosMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode.as_str())
}

/// One `--chaos MODE:PERCENT@SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChaosSpec {
    /// What to inject.
    #[serde(serialize_with = "mode_name")]
    pub mode: ChaosMode,
    /// Share of the live calls, percent (0 < p ≤ 100).
    pub percent: f64,
    /// When, after the start of the run.
    #[serde(rename = "at_seconds", serialize_with = "secs")]
    pub at: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl FromStr for ChaosSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{s:?}: expected MODE:PERCENT@SECONDS, e.g. kill:10@30");
        let (mode, rest) = s.split_once(':').ok_or_else(usage)?;
        let (percent, at) = rest.split_once('@').ok_or_else(usage)?;
        let mode = ChaosMode::parse(mode.trim()).ok_or_else(|| {
            format!(
                "unknown chaos mode {:?} (kill, panic, ai_reset, twilio_reset)",
                mode.trim()
            )
        })?;
        let percent: f64 = percent
            .trim()
            .trim_end_matches('%')
            .parse()
            .map_err(|_| usage())?;
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(format!("{s:?}: PERCENT must be in (0, 100]"));
        }
        let at: f64 = at
            .trim()
            .trim_end_matches('s')
            .parse()
            .map_err(|_| usage())?;
        let at = Duration::try_from_secs_f64(at).map_err(|_| usage())?;
        Ok(Self { mode, percent, at })
    }
}

/// A call the server injected the fault into (the chaos API's `calls[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Injected {
    /// `call_…`.
    pub call_id: String,
    /// `CA…`.
    pub call_sid: String,
    /// `MZ…` of the stream that was live.
    pub stream_sid: Option<String>,
    /// When the server injected it (as the server reports it).
    pub injected_at: Option<String>,
}

/// Reads the chaos API's answer.
pub fn parse_injected(body: &Value) -> Result<Vec<Injected>, String> {
    let calls = body["calls"]
        .as_array()
        .ok_or_else(|| format!("no calls[] in {body}"))?;
    calls
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().map(str::to_owned);
            Ok(Injected {
                call_id: text("call_id").ok_or_else(|| format!("no call_id in {c}"))?,
                call_sid: text("call_sid").ok_or_else(|| format!("no call_sid in {c}"))?,
                stream_sid: text("stream_sid"),
                injected_at: match &c["injected_at"] {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                },
            })
        })
        .collect()
}

/// Asks the server to inject `spec` into the live calls of `tenant_id` (the run's tenant;
/// 403 `chaos_disabled` when `CHAOS_HOOKS` is off).
pub async fn inject(
    admin: &Admin<'_>,
    spec: &ChaosSpec,
    tenant_id: &str,
) -> Result<Vec<Injected>, LoadTestError> {
    let step = "POST /api/v1/admin/chaos/calls";
    let body = admin
        .call(
            reqwest::Method::POST,
            "/api/v1/admin/chaos/calls",
            Some(json!({
                "mode": spec.mode.as_str(),
                "percent": spec.percent,
                "tenant_id": tenant_id,
            })),
        )
        .await
        .map_err(|e| match e {
            LoadTestError::Admin {
                status: 403, body, ..
            } => LoadTestError::Admin {
                step: step.to_owned(),
                status: 403,
                body: format!("{body} (is the server started with CHAOS_HOOKS=true?)"),
            },
            other => other,
        })?;
    parse_injected(&body).map_err(|detail| LoadTestError::Admin {
        step: step.to_owned(),
        status: 200,
        body: detail,
    })
}

/// What became of a call (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// One stream, ended by the caller.
    Normal,
    /// A further stream on the same call; the conversation went on.
    Resumed,
    /// The route's fallback.
    Fallback,
    /// Anything else.
    Failed,
}

impl Fate {
    /// The report's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Resumed => "resumed",
            Self::Fallback => "fallback",
            Self::Failed => "failed",
        }
    }
}

/// True when the caller heard the route's fallback.
pub fn heard_fallback(call: &CallSnapshot) -> bool {
    call.has_event(|e| match e {
        CallEvent::Said(text) => text == actors::telephony::DEFAULT_FALLBACK_MESSAGE,
        CallEvent::Dialed { numbers, .. } => numbers.iter().any(|n| n == FALLBACK_NUMBER),
        _ => false,
    })
}

/// True when the carrier met an application error (a caller hears "an application error").
pub fn heard_application_error(call: &CallSnapshot) -> bool {
    call.has_event(|e| matches!(e, CallEvent::ApplicationError { .. }))
}

/// The fate of an ended call from its carrier snapshot.
pub fn classify(call: &CallSnapshot) -> Fate {
    if call.status != CallStatus::Completed || heard_application_error(call) {
        return Fate::Failed;
    }
    if heard_fallback(call) {
        return Fate::Fallback;
    }
    if call.media.streams_opened == 0
        || call.stream_closed_by() != Some(StreamCloser::Caller)
        || call.media.first_audio_ms.is_none()
    {
        return Fate::Failed;
    }
    if call.media.streams_opened > 1 {
        Fate::Resumed
    } else {
        Fate::Normal
    }
}

/// The fate of one call, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallFate {
    /// `CA…`.
    pub call_sid: String,
    /// The load generator's index of the call.
    pub index: u32,
    /// Whether the fault was injected into it.
    pub touched: bool,
    /// What became of it.
    pub fate: Fate,
    /// Streams the carrier opened for it.
    pub streams: u32,
    /// Touched calls: from the fault to the recorded outcome, ms (`None`: not recorded
    /// within [`OUTCOME_DEADLINE`]).
    pub fault_to_outcome_ms: Option<u64>,
    /// A failed call: what the carrier saw last ([`failure_detail`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the carrier saw of a call that did not end well: who closed its last stream, the
/// verbs of the last TwiML it ran, and the last application error.
pub fn failure_detail(call: &CallSnapshot) -> String {
    let closer = call
        .stream_closed_by()
        .map_or_else(|| String::from("none"), |c| format!("{c:?}"));
    let verbs = call
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            CallEvent::TwimlRun { verbs, .. } => Some(verbs.join(",")),
            _ => None,
        })
        .unwrap_or_default();
    let error = call
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            CallEvent::ApplicationError { detail } => {
                Some(format!("; application error: {detail}"))
            }
            _ => None,
        })
        .unwrap_or_default();
    format!(
        "status {}, {} streams, last stream closed by {closer}, last TwiML [{verbs}]{error}",
        call.status, call.media.streams_opened
    )
}

/// Fates counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FateCounts {
    /// Ended normally.
    pub normal: u64,
    /// Resumed on a further stream.
    pub resumed: u64,
    /// Sent to the fallback.
    pub fallback: u64,
    /// Failed.
    pub failed: u64,
}

impl FateCounts {
    fn add(&mut self, fate: Fate) {
        match fate {
            Fate::Normal => self.normal += 1,
            Fate::Resumed => self.resumed += 1,
            Fate::Fallback => self.fallback += 1,
            Fate::Failed => self.failed += 1,
        }
    }
}

/// Frames the untouched calls lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UntouchedLoss {
    /// Caller frames that never reached the model, mid-call.
    pub caller_to_ai: u64,
    /// Model frames that never reached the caller, mid-call.
    pub ai_to_caller: u64,
}

/// The chaos part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChaosReport {
    /// What was asked.
    pub spec: ChaosSpec,
    /// Calls the server selected.
    pub selected: u64,
    /// Seconds after the start of the run the server answered.
    pub injected_after_seconds: f64,
    /// Fates of the touched calls.
    pub touched: FateCounts,
    /// Fates of the other calls.
    pub untouched: FateCounts,
    /// Touched calls: fault → recorded outcome.
    pub fault_to_outcome: LatencySummary,
    /// Touched calls whose outcome was not recorded within the deadline.
    pub outcome_not_recorded: u64,
    /// Frames lost by the untouched calls (must be 0).
    pub untouched_frames_lost: UntouchedLoss,
    /// Every call.
    pub calls: Vec<CallFate>,
}

impl ChaosReport {
    /// Builds the report from every call's fate.
    pub fn new(
        spec: ChaosSpec,
        selected: u64,
        injected_after: Duration,
        mut calls: Vec<CallFate>,
        untouched_frames_lost: UntouchedLoss,
    ) -> Self {
        calls.sort_by_key(|c| c.index);
        let (mut touched, mut untouched) = (FateCounts::default(), FateCounts::default());
        let latency = Histogram::new();
        let mut outcome_not_recorded = 0;
        for c in &calls {
            if c.touched {
                touched.add(c.fate);
                match c.fault_to_outcome_ms {
                    Some(ms) => latency.record_ms(ms),
                    None => outcome_not_recorded += 1,
                }
            } else {
                untouched.add(c.fate);
            }
        }
        Self {
            spec,
            selected,
            injected_after_seconds: injected_after.as_secs_f64(),
            touched,
            untouched,
            fault_to_outcome: latency.summary(),
            outcome_not_recorded,
            untouched_frames_lost,
            calls,
        }
    }

    /// The text lines of the report.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.spec;
        let counts = |c: &FateCounts| {
            format!(
                "{} normal, {} resumed, {} fallback, {} failed",
                c.normal, c.resumed, c.fallback, c.failed
            )
        };
        let _ = writeln!(
            out,
            "chaos {}: {}% of live calls at {:.1} s: {} selected",
            s.mode.as_str(),
            s.percent,
            self.injected_after_seconds,
            self.selected
        );
        let _ = writeln!(out, "  touched calls: {}", counts(&self.touched));
        let _ = writeln!(out, "  untouched calls: {}", counts(&self.untouched));
        let _ = writeln!(
            out,
            "  fault -> recorded outcome: {}{}",
            super::report::latency_line(&self.fault_to_outcome),
            if self.outcome_not_recorded > 0 {
                format!("; {} not recorded in time", self.outcome_not_recorded)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "  frames lost by untouched calls: caller -> AI {}, AI -> caller {}",
            self.untouched_frames_lost.caller_to_ai, self.untouched_frames_lost.ai_to_caller
        );
        for c in self
            .calls
            .iter()
            .filter(|c| c.fate == Fate::Failed)
            .take(10)
        {
            let _ = writeln!(
                out,
                "  failed: {} ({}): {}",
                c.call_sid,
                if c.touched { "touched" } else { "untouched" },
                c.detail.as_deref().unwrap_or("-")
            );
        }
    }
}

/// Waits for a touched call's recorded outcome: a further stream at the carrier, or the
/// server's call log showing it completed. Returns the time from `fault`.
pub async fn wait_recorded(
    reader: &super::reader::Reader<'_>,
    carrier: &crate::sim::carrier::CarrierSimHandle,
    injected: &Injected,
    streams_at_fault: u32,
    fault: Instant,
) -> Option<Duration> {
    let deadline = fault + OUTCOME_DEADLINE;
    loop {
        let resumed = carrier
            .call(&injected.call_sid)
            .is_some_and(|c| c.media.streams_opened > streams_at_fault);
        if resumed {
            return Some(fault.elapsed());
        }
        if let Ok(Some(log)) = reader.call_log(&injected.call_id).await
            && log["completed_at"].is_string()
        {
            return Some(fault.elapsed());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(OUTCOME_POLL).await;
    }
}

/// Untouched calls' losses from the per-call losses of the probe.
pub fn untouched_loss(
    lost_by_call: &BTreeMap<u32, (u64, u64)>,
    touched: &std::collections::HashSet<u32>,
) -> UntouchedLoss {
    let mut loss = UntouchedLoss::default();
    for (index, (caller, ai)) in lost_by_call {
        if !touched.contains(index) {
            loss.caller_to_ai += caller;
            loss.ai_to_caller += ai;
        }
    }
    loss
}

#[cfg(test)]
mod tests;
