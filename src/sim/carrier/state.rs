//! What tests observe: per-call snapshots (status, the ordered event log, media counters,
//! status callbacks) and the records of REST requests and messages.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Call status (PROTOCOLS §3.2; `initiated` exists only in status callbacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// Created, not yet dialled.
    Queued,
    /// Ringing.
    Ringing,
    /// Answered.
    InProgress,
    /// Answered and ended.
    Completed,
    /// Busy.
    Busy,
    /// Could not be placed, or the first TwiML could not be fetched.
    Failed,
    /// Not answered or rejected.
    NoAnswer,
    /// Cancelled while queued or ringing.
    Canceled,
}

impl CallStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    /// True for the statuses a call ends in.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallDirection {
    /// A caller phoned one of the account's numbers (`place_inbound_call`).
    Inbound,
    /// Created through `Calls.json`.
    OutboundApi,
}

impl CallDirection {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::OutboundApi => "outbound-api",
        }
    }
}

/// Why the simulator sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookKind {
    /// The call's first TwiML (voice URL of an inbound call, `Url` of an outbound one).
    Voice,
    /// `<Redirect>` or a REST update with `Url`.
    Redirect,
    /// `<Connect action>`.
    ConnectAction,
    /// `<Dial action>`.
    DialAction,
    /// Call progress (`StatusCallback`).
    StatusCallback,
    /// `<Stream statusCallback>`.
    StreamStatus,
    /// `AsyncAmdStatusCallback`.
    Amd,
    /// `RecordingStatusCallback`.
    RecordingStatus,
    /// `<Gather action>` with `Digits`.
    GatherAction,
    /// A conference's `statusCallback`.
    ConferenceStatus,
}

/// One webhook request the simulator made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Why.
    pub kind: WebhookKind,
    /// `POST` or `GET`.
    pub method: String,
    /// The URL requested (for `GET`, without the parameters appended).
    pub url: String,
    /// The parameters, in the order sent.
    pub params: Vec<(String, String)>,
    /// The `X-Twilio-Signature` sent.
    pub signature: String,
    /// HTTP status received, `None` when the request failed.
    pub status: Option<u16>,
    /// Transport error, when the request failed.
    pub error: Option<String>,
    /// From sending the request to the whole reply read (ms), when the server answered.
    pub elapsed_ms: Option<u64>,
}

impl WebhookRecord {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }
}

/// The first value of `name` in `params`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Who ended a media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamCloser {
    /// The scripted caller hung up (or stayed past `max_duration`).
    Caller,
    /// The server closed the websocket.
    Server,
    /// A REST update replaced the TwiML.
    Redirect,
    /// A REST update with `Status=completed`.
    Hangup,
    /// The network dropped the socket (no `stop`, no close frame).
    Reset,
}

/// How a `<Dial>` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOutcome {
    /// `DialCallStatus`: `completed`, `busy`, `no-answer`, `failed` or `canceled`.
    pub status: String,
    /// `DialCallSid` (the answering leg, or the last one).
    pub dial_call_sid: String,
    /// `DialCallDuration` in seconds.
    pub duration_secs: u64,
    /// `DialBridged`.
    pub bridged: bool,
    /// The number that answered.
    pub answered_number: Option<String>,
}

/// Something that happened on a call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A webhook was requested.
    WebhookSent(WebhookRecord),
    /// A TwiML document started; `source` is `inline` or the URL.
    TwimlRun {
        /// Where it came from.
        source: String,
        /// Verb names in order.
        verbs: Vec<String>,
    },
    /// `<Say>` text.
    Said(String),
    /// `<Pause>`.
    Paused(Duration),
    /// `<Dial>` finished.
    Dialed {
        /// The numbers rung.
        numbers: Vec<String>,
        /// The result.
        outcome: DialOutcome,
    },
    /// The media websocket opened and `start` was sent.
    StreamOpened {
        /// The `<Stream url>`.
        url: String,
        /// `MZ…`.
        stream_sid: String,
        /// The `<Parameter>`s.
        custom_parameters: BTreeMap<String, String>,
    },
    /// The websocket handshake failed.
    StreamRejected {
        /// The `<Stream url>`.
        url: String,
        /// The HTTP status, when the server answered.
        http_status: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// The stream ended.
    StreamClosed {
        /// `MZ…`.
        stream_sid: String,
        /// Who ended it.
        by: StreamCloser,
    },
    /// The scripted caller started a `Speak` step.
    CallerSpoke(String),
    /// The scripted caller pressed a key.
    DtmfSent(String),
    /// `<Reject>` as the first verb.
    Rejected {
        /// `busy` or `rejected`.
        reason: String,
    },
    /// The call was hung up by TwiML (`<Hangup>` or the end of the document).
    HungUp,
    /// A REST update was accepted.
    Updated {
        /// New inline TwiML.
        twiml: Option<String>,
        /// New TwiML URL.
        url: Option<String>,
        /// New status (`completed` or `canceled`).
        status: Option<String>,
    },
    /// The asynchronous AMD result was posted.
    AmdSent {
        /// `AnsweredBy`.
        answered_by: String,
    },
    /// The call joined a conference (`<Dial><Conference>`).
    ConferenceJoined {
        /// Its friendly name.
        name: String,
        /// `CF…`.
        conference_sid: String,
        /// Not started yet: the participant hears hold audio.
        waiting: bool,
        /// What it hears while waiting: the `waitUrl`, or `default` (the carrier's music).
        hold_audio: Option<String>,
    },
    /// The conference this call waited in started: the participant is bridged.
    ConferenceBridged {
        /// `CF…`.
        conference_sid: String,
    },
    /// The call left a conference.
    ConferenceLeft {
        /// `CF…`.
        conference_sid: String,
    },
    /// A `<Gather>` ended: the keys the party pressed (`None`: it timed out).
    Gathered {
        /// `Digits`.
        digits: Option<String>,
    },
    /// TwiML could not be fetched or parsed (Twilio would play "an application error").
    ApplicationError {
        /// What went wrong.
        detail: String,
    },
}

/// One call-progress status callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallbackRecord {
    /// `SequenceNumber`.
    pub sequence_number: u32,
    /// `CallStatus` sent.
    pub call_status: String,
    /// URL.
    pub url: String,
    /// HTTP status received.
    pub http_status: Option<u16>,
}

/// Media counters of a call (summed over its streams).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Streams opened.
    pub streams_opened: u32,
    /// `media` frames sent to the server.
    pub frames_sent: u64,
    /// `dtmf` events sent.
    pub dtmf_sent: u64,
    /// `media` messages received from the server.
    pub media_received: u64,
    /// Audio bytes received (8 bytes = 1 ms).
    pub bytes_received: u64,
    /// Payloads that were not valid base64.
    pub bad_payloads: u64,
    /// Messages from the server that could not be parsed.
    pub bad_messages: u64,
    /// `mark`s received.
    pub marks_received: u64,
    /// `mark`s echoed back.
    pub marks_echoed: u64,
    /// `clear`s received.
    pub clears: u64,
    /// Milliseconds of queued audio dropped by `clear`.
    pub cleared_ms: u64,
    /// Milliseconds of server audio still queued, never played, when a stream ended (a REST
    /// update, a hang-up or the server's close cut it off).
    pub unplayed_at_end_ms: u64,
    /// Milliseconds from the start of a stream to the first audio the server sent on it
    /// (the first stream that got any audio).
    pub first_audio_ms: Option<u64>,
    /// For every caller `Speak` step: milliseconds from its end to the next audio received.
    pub response_latencies_ms: Vec<u64>,
    /// For received payloads carrying a frame tag: milliseconds since that frame was sent.
    pub tag_latencies_ms: Vec<u64>,
}

/// Everything observable about one call at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSnapshot {
    /// `CA…`.
    pub sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// Caller.
    pub from: String,
    /// Called number.
    pub to: String,
    /// Direction.
    pub direction: CallDirection,
    /// Current status.
    pub status: CallStatus,
    /// AMD result, when detection ran.
    pub answered_by: Option<String>,
    /// The answering machine's side of the call, when a machine answered (its `answered_by`
    /// setting is a machine): the beep and what it recorded.
    pub machine: Option<MachineRecording>,
    /// Seconds from answer to end (set when the call ends).
    pub duration_secs: Option<u64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// Ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The event log.
    pub events: Vec<CallEvent>,
    /// Every `<Say>` text, in order.
    pub said: Vec<String>,
    /// Status callbacks sent, in order.
    pub status_callbacks: Vec<StatusCallbackRecord>,
    /// Media counters.
    pub media: MediaStats,
    /// `MZ…` of the last stream opened.
    pub stream_sid: Option<String>,
    /// The call's task is done: the call ended and every webhook of it has been sent.
    pub finished: bool,
}

impl CallSnapshot {
    pub(crate) fn new(
        sid: String,
        account_sid: String,
        from: String,
        to: String,
        direction: CallDirection,
        status: CallStatus,
    ) -> Self {
        Self {
            sid,
            account_sid,
            from,
            to,
            direction,
            status,
            answered_by: None,
            machine: None,
            duration_secs: None,
            created_at: Utc::now(),
            answered_at: None,
            ended_at: None,
            events: Vec::new(),
            said: Vec::new(),
            status_callbacks: Vec::new(),
            media: MediaStats::default(),
            stream_sid: None,
            finished: false,
        }
    }

    /// Every webhook sent, in order.
    pub fn webhooks(&self) -> impl Iterator<Item = &WebhookRecord> {
        self.events.iter().filter_map(|e| match e {
            CallEvent::WebhookSent(w) => Some(w),
            _ => None,
        })
    }

    /// The webhooks of one kind, in order.
    pub fn webhooks_of(&self, kind: WebhookKind) -> Vec<&WebhookRecord> {
        self.webhooks().filter(|w| w.kind == kind).collect()
    }

    /// True when some event matches.
    pub fn has_event(&self, pred: impl Fn(&CallEvent) -> bool) -> bool {
        self.events.iter().any(pred)
    }

    /// How the last stream ended, if one did.
    pub fn stream_closed_by(&self) -> Option<StreamCloser> {
        self.events.iter().rev().find_map(|e| match e {
            CallEvent::StreamClosed { by, .. } => Some(*by),
            _ => None,
        })
    }
}

/// What an answering machine heard: its greeting ends with a beep, and only what is played
/// after the beep is recorded (a message spoken over the greeting is lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRecording {
    /// When the greeting ended with the beep.
    pub beep_at: DateTime<Utc>,
    /// `<Say>` texts played after the beep (recorded), in order, with the milliseconds
    /// from the beep to the start of each.
    pub recorded: Vec<(String, u64)>,
    /// `<Say>` texts played before the beep (talked over the greeting, lost).
    pub before_beep: Vec<String>,
    /// Milliseconds of media-stream audio received after the beep (recorded).
    pub audio_ms_after_beep: u64,
    /// Milliseconds of media-stream audio received before the beep (lost).
    pub audio_ms_before_beep: u64,
}

/// A conference as it went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceRecord {
    /// `CF…`.
    pub sid: String,
    /// Friendly name.
    pub name: String,
    /// `AC…`.
    pub account_sid: String,
    /// `CallSid`s of everyone who joined, in order.
    pub participants: Vec<String>,
    /// A participant with `startConferenceOnEnter` joined.
    pub started: bool,
    /// It ended.
    pub ended: bool,
    /// `ReasonConferenceEnded`.
    pub end_reason: Option<String>,
    /// Events in order (`participant-join:CA…`, `conference-start`, …).
    pub events: Vec<String>,
}

/// A REST request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Form parameters, in order (repeated keys kept).
    pub params: Vec<(String, String)>,
    /// Basic-auth user name, when present.
    pub auth_user: Option<String>,
    /// Status answered.
    pub status: u16,
}

/// An SMS sent through `Messages.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// `SM…`.
    pub sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// Recipient.
    pub to: String,
    /// Sender.
    pub from: String,
    /// Text.
    pub body: String,
    /// Created.
    pub date_created: DateTime<Utc>,
}
