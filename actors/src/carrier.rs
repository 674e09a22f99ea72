//! The carrier boundary: what the actor tree asks of the telephone network (place a call,
//! change a live call, send an SMS, read a call, find the calls a request may have created),
//! without knowing HTTP or TwiML. The service implements
//! [`Carrier`] over the Twilio REST API (and the carrier simulator speaks the same API).

use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// Credentials of one Twilio account.
#[derive(Clone)]
pub struct CarrierAuth {
    /// `AC…`.
    pub account_sid: String,
    /// Auth token (never printed).
    pub auth_token: String,
}

impl std::fmt::Debug for CarrierAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarrierAuth")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .finish()
    }
}

/// A bidirectional media stream to open on a call (rendered as `<Connect><Stream>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInstructions {
    /// `wss://…/media-stream`.
    pub stream_url: String,
    /// `<Connect action>`: asked what to do when the stream ends.
    pub action_url: String,
    /// `<Stream statusCallback>`.
    pub status_callback_url: String,
    /// `<Parameter>`s (the stream token).
    pub parameters: Vec<(String, String)>,
}

/// Answering-machine detection on an outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDetection {
    /// `Enable` or `DetectMessageEnd`.
    pub mode: String,
    /// Where the asynchronous result is posted.
    pub callback_url: String,
    /// `MachineDetectionTimeout` (seconds), when asked.
    pub timeout_secs: Option<u32>,
}

/// An outbound call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceCall {
    /// Callee (E.164).
    pub to: String,
    /// Caller id (one of the tenant's numbers).
    pub from: String,
    /// What runs when the callee answers.
    pub stream: StreamInstructions,
    /// Status callbacks (all four events).
    pub status_callback_url: String,
    /// AMD, when requested.
    pub machine_detection: Option<MachineDetection>,
}

/// The carrier's answer to a placed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    /// `CA…`.
    pub call_sid: String,
    /// Initial status (`queued`).
    pub status: String,
}

/// A call as the carrier reports it (a lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierCall {
    /// `CA…`.
    pub call_sid: String,
    /// Carrier status (`queued`, `ringing`, `in-progress`, `completed`, `busy`, …).
    pub status: String,
    /// Callee.
    pub to: String,
    /// Caller.
    pub from: String,
    /// When the carrier created it (Unix ms; the carrier reports whole seconds).
    pub created_at: Option<i64>,
    /// Duration in seconds, once ended.
    pub duration_secs: Option<i64>,
}

/// Which calls to look for: those from `from` to `to` created at or after `since` (Unix
/// ms). The carrier filters by day; callers filter the answer by [`CarrierCall::created_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallQuery {
    /// Callee.
    pub to: String,
    /// Caller.
    pub from: String,
    /// Created at or after (Unix ms).
    pub since: i64,
}

/// A participant joining a conference (`<Dial><Conference>`), named for a warm transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceJoin {
    /// The conference's `FriendlyName` (unique per account while it runs).
    pub name: String,
    /// Said to the participant before joining.
    pub announcement: Option<String>,
    /// `waitUrl`: what a participant hears until the conference starts (the carrier's
    /// default hold music when absent).
    pub wait_url: Option<String>,
    /// `startConferenceOnEnter`: whether this participant's arrival starts (bridges) it.
    pub start_on_enter: bool,
    /// `endConferenceOnExit`: whether this participant's departure ends it for everyone.
    pub end_on_exit: bool,
    /// Conference `statusCallback` (events `start end join leave`).
    pub status_callback_url: String,
}

/// An outbound leg whose TwiML the carrier fetches when it is answered (`Url=`), e.g. the
/// operator leg of a warm transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceLeg {
    /// Callee (E.164).
    pub to: String,
    /// Caller id.
    pub from: String,
    /// Where the TwiML is fetched (`POST`, signed).
    pub twiml_url: String,
    /// Status callbacks (all four events).
    pub status_callback_url: String,
    /// How long it rings (`Timeout`).
    pub timeout_secs: u32,
}

/// A change to a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallChange {
    /// End the call now.
    Hangup,
    /// Say `announcement` (if any), then ring `numbers` simultaneously.
    Dial {
        /// Said before dialling.
        announcement: Option<String>,
        /// Numbers to ring.
        numbers: Vec<String>,
        /// Caller id shown.
        caller_id: Option<String>,
        /// Ring timeout.
        timeout_secs: Option<u32>,
        /// Asked with the dial result, when set.
        action_url: Option<String>,
    },
    /// Say a message, then the route's fallback number or a hangup.
    Fallback {
        /// Said first.
        message: String,
        /// Number dialled after it, if any.
        number: Option<String>,
    },
    /// Open a fresh media stream (resume with the AI).
    Stream(StreamInstructions),
    /// Join a conference (a warm transfer's caller waiting on hold).
    Conference(ConferenceJoin),
}

/// A carrier failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("carrier error {code:?}: {message}")]
pub struct CarrierError {
    /// HTTP status our API should answer with (400 for the caller's bad input, 502 for a
    /// carrier fault, 503 when throttled, 504 on timeout).
    pub suggested_status: u16,
    /// Carrier error code (e.g. Twilio 21211), when the carrier answered.
    pub code: Option<i64>,
    /// Safe message (no secrets).
    pub message: String,
    /// True when the carrier reports the call already ended.
    pub already_ended: bool,
    /// True when no answer came in time.
    pub timeout: bool,
}

/// The telephone network.
pub trait Carrier: Send + Sync + 'static {
    /// Places an outbound call.
    fn place_call<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        call: &'a PlaceCall,
    ) -> BoxFuture<'a, Result<PlacedCall, CarrierError>>;

    /// Places an outbound leg whose TwiML is fetched from a URL when it is answered.
    fn place_leg<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        leg: &'a PlaceLeg,
    ) -> BoxFuture<'a, Result<PlacedCall, CarrierError>>;

    /// Changes a live call.
    fn update_call<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        call_sid: &'a str,
        change: &'a CallChange,
    ) -> BoxFuture<'a, Result<(), CarrierError>>;

    /// Reads a call; `Ok(None)` when the carrier has no such call.
    fn fetch_call<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        call_sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<CarrierCall>, CarrierError>>;

    /// Lists the calls matching `query` (the first page, newest first).
    fn find_calls<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        query: &'a CallQuery,
    ) -> BoxFuture<'a, Result<Vec<CarrierCall>, CarrierError>>;

    /// Sends an SMS; returns the message id.
    fn send_sms<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        to: &'a str,
        from: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<String, CarrierError>>;

    /// Reads the account the credentials belong to (the credential check): wrong credentials
    /// are an error with the carrier's code.
    fn fetch_account<'a>(
        &'a self,
        auth: &'a CarrierAuth,
    ) -> BoxFuture<'a, Result<CarrierAccount, CarrierError>>;

    // --- recording (issue 16, part 1) ---

    /// Starts recording a live call (dual-channel, with a signed status callback).
    fn start_recording<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        call_sid: &'a str,
        request: &'a StartRecording,
    ) -> BoxFuture<'a, Result<CarrierRecording, CarrierError>>;

    /// Deletes a recording; `Ok(false)` when the carrier has no such recording (already gone).
    fn delete_recording<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        recording_sid: &'a str,
    ) -> BoxFuture<'a, Result<bool, CarrierError>>;

    /// Streams a recording's WAV, forwarding `range` (a `Range` header value) as is;
    /// `Ok(None)` when the carrier has no such recording.
    fn fetch_recording_media<'a>(
        &'a self,
        auth: &'a CarrierAuth,
        recording_sid: &'a str,
        range: Option<String>,
    ) -> BoxFuture<'a, Result<Option<RecordingMedia>, CarrierError>>;
}

// --- recording (issue 16, part 1): types of the recording methods of [`Carrier`] ---

/// A recording to start on a live call (`POST Calls/{CallSid}/Recordings.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRecording {
    /// `RecordingChannels`: `dual` (caller and agent on separate channels) or `mono`.
    pub channels: String,
    /// `RecordingStatusCallback`.
    pub status_callback_url: String,
    /// `RecordingStatusCallbackEvent`s (`in-progress`, `completed`, `absent`).
    pub status_callback_events: Vec<String>,
}

/// A recording as the carrier reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierRecording {
    /// `RE…`.
    pub sid: String,
    /// `CA…`.
    pub call_sid: String,
    /// `in-progress`, `paused`, `stopped`, `processing`, `completed`, `absent`, `failed`.
    pub status: String,
    /// Channels (2 for `dual`).
    pub channels: i64,
    /// When recording started (Unix ms), when reported.
    pub started_at: Option<i64>,
}

/// The recording's audio as the carrier answers it (a range request honoured): the status
/// (200, 206 or 416), the headers worth passing on, and the body as a stream of chunks.
pub struct RecordingMedia {
    /// HTTP status of the carrier's answer (200, 206, 416).
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// `Content-Range`.
    pub content_range: Option<String>,
    /// `Accept-Ranges`.
    pub accept_ranges: Option<String>,
    /// The body, chunk by chunk (a transport error ends it with an error).
    pub body: BoxStream<'static, Result<bytes::Bytes, CarrierError>>,
}

impl std::fmt::Debug for RecordingMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingMedia")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("content_length", &self.content_length)
            .field("content_range", &self.content_range)
            .finish_non_exhaustive()
    }
}

/// The account a carrier credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierAccount {
    /// `AC…`.
    pub sid: String,
    /// Its name.
    pub friendly_name: Option<String>,
    /// `active`, `suspended` or `closed`.
    pub status: String,
}
