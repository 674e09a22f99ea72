//! Carrier configuration: accounts, timings, and the simulated behaviour of the numbers the
//! carrier calls (callees of outbound calls, operators reached by `<Dial>`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::caller::CallerScript;

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct CarrierConfig {
    /// Where the REST API listens (`127.0.0.1:0` by default: a free loopback port).
    pub bind: SocketAddr,
    /// Accounts as `(account SID, auth token)`.
    pub accounts: Vec<(String, String)>,
    /// Speaking time of `<Say>` per character (default 10 ms).
    pub speech_ms_per_char: u64,
    /// How long an outbound callee rings before answering or signalling busy (default 100 ms).
    pub ring_time: Duration,
    /// How long answering-machine detection takes (`MachineDetectionDuration`, default 250 ms).
    pub amd_duration: Duration,
    /// How long an answering machine's greeting plays before its beep (default 1.5 s): with
    /// `DetectMessageEnd` its result (`machine_end_beep`) comes at the beep, and the machine
    /// records only what is played after it.
    pub machine_greeting: Duration,
    /// Timeout of every webhook request (default 15 s, as Twilio).
    pub webhook_timeout: Duration,
    /// Timeout of the media websocket handshake (default 10 s).
    pub ws_connect_timeout: Duration,
    /// Behaviour of outbound callees without a specific setting (default: answer).
    pub default_callee: CalleeBehaviour,
    /// Behaviour of `<Dial>`ed numbers without a specific setting.
    pub default_operator: OperatorBehaviour,
    /// Told about every tagged frame sent and received on a media stream (default none).
    pub media_observer: Option<Arc<dyn MediaObserver>>,
    /// How long `POST Calls.json` takes to answer (default none). The call exists at once;
    /// only the answer is late, as when the carrier is slow: a client that gives up first
    /// never learns the SID.
    pub create_response_delay: Duration,
    /// How long the lookups (`GET Calls.json`, `GET Calls/{Sid}.json`) take to answer
    /// (default none).
    pub lookup_response_delay: Duration,
    /// How long after a call ends its final (`completed`, `busy`, …) status callback is sent
    /// (default none), as when the carrier's callbacks lag the end of the media stream.
    pub final_status_delay: Duration,
}

/// Watches tagged audio on every media stream, for a load generator that matches frames
/// across processes by their tags ([`crate::sim::audio::tag_frame`]).
///
/// It is called on the stream's task, in the hot path: keep it cheap and never block.
pub trait MediaObserver: Send + Sync + std::fmt::Debug {
    /// The caller is about to send a frame carrying `tag` (scripts with `tag_frames`).
    fn caller_frame_sent(&self, call_sid: &str, tag: u32, at: Instant);
    /// A `media` message from the server arrived at `at`; `tags` are the tags found at the
    /// start of its 20 ms frames, in order (called only when there is at least one).
    fn server_audio_received(&self, call_sid: &str, tags: &[u32], at: Instant);
    /// A `clear` from the server arrived at `at` (audio still queued for the call is
    /// discarded by the server: a barge-in).
    fn clear_received(&self, _call_sid: &str, _at: Instant) {}
}

impl Default for CarrierConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: Vec::new(),
            speech_ms_per_char: 10,
            ring_time: Duration::from_millis(100),
            amd_duration: Duration::from_millis(250),
            machine_greeting: Duration::from_millis(1500),
            webhook_timeout: Duration::from_secs(15),
            ws_connect_timeout: Duration::from_secs(10),
            default_callee: CalleeBehaviour::Answer,
            default_operator: OperatorBehaviour::default(),
            media_observer: None,
            create_response_delay: Duration::ZERO,
            lookup_response_delay: Duration::ZERO,
            final_status_delay: Duration::ZERO,
        }
    }
}

impl CarrierConfig {
    /// The default configuration with one account.
    pub fn with_account(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            accounts: vec![(account_sid.into(), auth_token.into())],
            ..Self::default()
        }
    }
}

/// What the party at the other end of an outbound (`Calls.json`) call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CalleeBehaviour {
    /// Answers after the ring time; the call's TwiML runs.
    #[default]
    Answer,
    /// Busy after the ring time: final status `busy`, no TwiML.
    Busy,
    /// Rings until the call's `Timeout` (default 60 s): final status `no-answer`, no TwiML.
    NoAnswer,
    /// Rings this long (or the call's `Timeout`, if shorter): final status `no-answer`.
    NoAnswerAfter(Duration),
    /// Cannot be reached: final status `failed` at once, no TwiML.
    Failed,
}

/// What a number reached by `<Dial>` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorBehaviour {
    /// Answers after `answer_after` (unless the `<Dial timeout>` is shorter) and talks for
    /// `talk`, then hangs up: `DialCallStatus=completed`.
    Answer {
        /// Ringing time before answering.
        answer_after: Duration,
        /// Bridged conversation time.
        talk: Duration,
    },
    /// Busy after the carrier's ring time.
    Busy,
    /// Never answers: `no-answer` when the `<Dial timeout>` (default 30 s) expires.
    NoAnswer,
    /// Unreachable: `failed` at once.
    Failed,
}

impl Default for OperatorBehaviour {
    fn default() -> Self {
        Self::Answer {
            answer_after: Duration::from_millis(200),
            talk: Duration::from_millis(500),
        }
    }
}

/// What an operator called by a warm transfer (an outbound leg whose TwiML whispers the
/// handoff inside a `<Gather>`) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmOperator {
    /// Answers, hears the whisper, presses 1, and talks this long in the conference before
    /// hanging up.
    Accept {
        /// Time in the conference.
        talk: Duration,
    },
    /// Answers, hears the whisper, presses 2.
    Decline,
    /// Answers, hears the whisper, presses nothing.
    NoKey,
    /// Never answers (`no-answer` at the leg's `Timeout`).
    NoAnswer,
}

/// The error a faulty REST request answers with (Twilio error JSON, PROTOCOLS §3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// HTTP status.
    pub status: u16,
    /// Twilio error code.
    pub code: u32,
    /// Message.
    pub message: String,
}

/// One queued fault for the next REST request.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Answer with this error.
    Fail(FaultSpec),
    /// Answer only after this delay.
    Delay(Duration),
}

/// The mutable settings behind the handle's setters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub accounts: HashMap<String, String>,
    pub create_response_delay: Duration,
    pub lookup_response_delay: Duration,
    pub callees: HashMap<String, CalleeBehaviour>,
    pub operators: HashMap<String, OperatorBehaviour>,
    pub answered_by: HashMap<String, String>,
    pub callee_scripts: HashMap<String, CallerScript>,
    /// Keys pressed at a `<Gather>` by the party at a number (outbound calls).
    pub keypresses: HashMap<String, String>,
    /// How long the party at a number stays in a conference it started.
    pub talk: HashMap<String, Duration>,
}
