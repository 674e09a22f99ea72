//! Server events: what the model sends (PROTOCOLS §4.5), parsed leniently into
//! [`ServerEvent`].
//!
//! Parsing is two passes over the borrowed text: a scan that reads only `type` (every other
//! value is skipped without allocating), then one typed pass for that event. So
//! `response.output_audio.delta`, the hot path, copies its base64 `delta` exactly once.
//! Unknown fields are ignored; unknown event types become [`ServerEvent::Unknown`] for the
//! caller to count. Items and the session object stay `serde_json::Value`s with accessors
//! for the bits the runtime needs.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::session::{AudioFormat, TurnDetection};

/// `error` details (also used by `…transcription.failed`, whose fields may be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// `invalid_request_error`, `server_error`, ….
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Machine-readable code, e.g. `conversation_already_has_active_response`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<String>,
    /// The client `event_id` of the event that failed.
    #[serde(default)]
    pub event_id: Option<String>,
}

impl ApiError {
    /// True when `code` equals `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// `session.created` / `session.updated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionEvent {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The full effective session object.
    pub session: Value,
}

impl SessionEvent {
    /// `sess_…`.
    pub fn id(&self) -> Option<&str> {
        self.session.get("id").and_then(Value::as_str)
    }

    /// The model.
    pub fn model(&self) -> Option<&str> {
        self.session.get("model").and_then(Value::as_str)
    }

    /// The instructions.
    pub fn instructions(&self) -> Option<&str> {
        self.session.get("instructions").and_then(Value::as_str)
    }

    /// `audio.input.format`.
    pub fn input_format(&self) -> Option<AudioFormat> {
        parse_at(&self.session, "/audio/input/format")
    }

    /// `audio.output.format`.
    pub fn output_format(&self) -> Option<AudioFormat> {
        parse_at(&self.session, "/audio/output/format")
    }

    /// `audio.output.voice` (when a named voice).
    pub fn voice(&self) -> Option<&str> {
        self.session
            .pointer("/audio/output/voice")
            .and_then(Value::as_str)
    }

    /// `audio.input.turn_detection` (`None` when off or not understood).
    pub fn turn_detection(&self) -> Option<TurnDetection> {
        parse_at(&self.session, "/audio/input/turn_detection")
    }

    /// True when caller transcription is configured.
    pub fn transcribes_input(&self) -> bool {
        self.session
            .pointer("/audio/input/transcription")
            .is_some_and(Value::is_object)
    }
}

fn parse_at<T: serde::de::DeserializeOwned>(value: &Value, pointer: &str) -> Option<T> {
    value.pointer(pointer).and_then(|v| T::deserialize(v).ok())
}

/// `conversation.created` → `conversation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    /// `conv_…`.
    #[serde(default)]
    pub id: String,
}

/// `conversation.created`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConversationCreated {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The conversation.
    #[serde(default)]
    pub conversation: Conversation,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorEvent {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// Details.
    pub error: ApiError,
}

/// `input_audio_buffer.speech_started`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpeechStarted {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// Input timeline position, ms (includes the prefix padding).
    #[serde(default)]
    pub audio_start_ms: u64,
    /// The user item that will be created.
    pub item_id: String,
}

/// `input_audio_buffer.speech_stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpeechStopped {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// Input timeline position, ms.
    #[serde(default)]
    pub audio_end_ms: u64,
    /// The user item.
    pub item_id: String,
}

/// `input_audio_buffer.committed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputCommitted {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The new user item.
    pub item_id: String,
    /// The item before it.
    #[serde(default)]
    pub previous_item_id: Option<String>,
}

/// `input_audio_buffer.timeout_triggered` (idle timeout; a response follows).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputTimeout {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// Start of the idle span, ms.
    #[serde(default)]
    pub audio_start_ms: u64,
    /// End of the idle span, ms.
    #[serde(default)]
    pub audio_end_ms: u64,
    /// The (empty) user item.
    #[serde(default)]
    pub item_id: String,
}

/// An event with nothing but its id (`input_audio_buffer.cleared`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Bare {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
}

/// A conversation item as the server describes it (no audio bytes), kept as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Item(pub Value);

impl Item {
    fn str_field(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// `item_…`.
    pub fn id(&self) -> Option<&str> {
        self.str_field("id")
    }

    /// `message`, `function_call`, `function_call_output`, ….
    pub fn kind(&self) -> Option<&str> {
        self.str_field("type")
    }

    /// `user`, `assistant`, `system` (messages only).
    pub fn role(&self) -> Option<&str> {
        self.str_field("role")
    }

    /// `in_progress`, `completed`, `incomplete`.
    pub fn status(&self) -> Option<&str> {
        self.str_field("status")
    }

    /// Tool call id (function calls and outputs).
    pub fn call_id(&self) -> Option<&str> {
        self.str_field("call_id")
    }

    /// Function name (function calls).
    pub fn name(&self) -> Option<&str> {
        self.str_field("name")
    }

    /// JSON arguments (function calls).
    pub fn arguments(&self) -> Option<&str> {
        self.str_field("arguments")
    }

    /// True for an assistant message.
    pub fn is_assistant_message(&self) -> bool {
        self.kind() == Some("message") && self.role() == Some("assistant")
    }

    /// True for a function call.
    pub fn is_function_call(&self) -> bool {
        self.kind() == Some("function_call")
    }

    /// The first `transcript` or `text` of the content parts.
    pub fn transcript(&self) -> Option<&str> {
        self.0.get("content")?.as_array()?.iter().find_map(|part| {
            part.get("transcript")
                .and_then(Value::as_str)
                .or_else(|| part.get("text").and_then(Value::as_str))
        })
    }
}

/// `conversation.item.added` / `.done` / `.created`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ItemEvent {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The item before it.
    #[serde(default)]
    pub previous_item_id: Option<String>,
    /// The item.
    pub item: Item,
}

/// `conversation.item.truncated`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemTruncated {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Content part.
    #[serde(default)]
    pub content_index: u32,
    /// Where the audio now ends, ms.
    #[serde(default)]
    pub audio_end_ms: u64,
}

/// `conversation.item.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemDeleted {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The item.
    pub item_id: String,
}

/// `conversation.item.input_audio_transcription.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputTranscriptionDelta {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The user item.
    pub item_id: String,
    /// Content part.
    #[serde(default)]
    pub content_index: u32,
    /// Text fragment.
    #[serde(default)]
    pub delta: String,
}

/// `conversation.item.input_audio_transcription.completed`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InputTranscriptionCompleted {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The user item.
    pub item_id: String,
    /// Content part.
    #[serde(default)]
    pub content_index: u32,
    /// What the caller said.
    #[serde(default)]
    pub transcript: String,
    /// Transcription usage (tokens or duration).
    #[serde(default)]
    pub usage: Option<Value>,
}

/// `conversation.item.input_audio_transcription.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InputTranscriptionFailed {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The user item.
    pub item_id: String,
    /// Content part.
    #[serde(default)]
    pub content_index: u32,
    /// Why.
    #[serde(default)]
    pub error: ApiError,
}

/// `response.status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Generating.
    InProgress,
    /// Finished normally.
    Completed,
    /// Cancelled (`turn_detected` or `client_cancelled`).
    Cancelled,
    /// Failed (see `status_details.error`).
    Failed,
    /// Cut short (`max_output_tokens`, `content_filter`).
    Incomplete,
    /// A status this implementation does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// `response.status_details`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StatusDetails {
    /// Mirrors the status.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `turn_detected`, `client_cancelled`, `max_output_tokens`, `content_filter`.
    #[serde(default)]
    pub reason: Option<String>,
    /// For failed responses.
    #[serde(default)]
    pub error: Option<Value>,
}

/// `usage.input_token_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct InputTokenDetails {
    /// Cached.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Text.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio.
    #[serde(default)]
    pub audio_tokens: u64,
    /// Images.
    #[serde(default)]
    pub image_tokens: u64,
}

/// `usage.output_token_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct OutputTokenDetails {
    /// Text.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio.
    #[serde(default)]
    pub audio_tokens: u64,
}

/// `response.usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Input + output.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input breakdown.
    #[serde(default)]
    pub input_token_details: Option<InputTokenDetails>,
    /// Output breakdown.
    #[serde(default)]
    pub output_token_details: Option<OutputTokenDetails>,
}

/// A response (`RealtimeResponse`, no audio bytes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Response {
    /// `resp_…`.
    pub id: String,
    /// Status.
    #[serde(default)]
    pub status: ResponseStatus,
    /// Why it ended as it did.
    #[serde(default)]
    pub status_details: Option<StatusDetails>,
    /// Output items.
    #[serde(default)]
    pub output: Vec<Item>,
    /// Token usage (in `response.done`).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// `conv_…` (null for out-of-band responses).
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Echoed metadata.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl Response {
    /// `status_details.reason`.
    pub fn reason(&self) -> Option<&str> {
        self.status_details.as_ref()?.reason.as_deref()
    }
}

/// `response.created` / `response.done`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseEvent {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response: Response,
}

/// `response.output_item.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutputItemEvent {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// The item.
    pub item: Item,
}

/// `part` of `response.content_part.*` (`type` is `audio`/`text`, or the item content
/// names `output_audio`/`output_text`: both are accepted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Part {
    /// Part type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Text (text parts).
    #[serde(default)]
    pub text: Option<String>,
    /// Transcript (audio parts).
    #[serde(default)]
    pub transcript: Option<String>,
}

/// `response.content_part.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContentPartEvent {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Position in the item content.
    #[serde(default)]
    pub content_index: u32,
    /// The part.
    #[serde(default)]
    pub part: Part,
}

/// `response.output_audio.delta`: model audio to forward.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AudioDelta {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response (drop deltas of an interrupted one).
    pub response_id: String,
    /// The assistant item (truncate target).
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Position in the item content.
    #[serde(default)]
    pub content_index: u32,
    /// Base64 audio in the session output format.
    pub delta: String,
}

/// `response.output_audio.done`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AudioDone {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Position in the item content.
    #[serde(default)]
    pub content_index: u32,
}

/// `response.output_audio_transcript.delta` / `response.output_text.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TextDelta {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Position in the item content.
    #[serde(default)]
    pub content_index: u32,
    /// Text fragment.
    #[serde(default)]
    pub delta: String,
}

/// `response.output_audio_transcript.done`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TranscriptDone {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Position in the item content.
    #[serde(default)]
    pub content_index: u32,
    /// The whole transcript.
    #[serde(default)]
    pub transcript: String,
}

/// `response.output_text.done`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TextDone {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Position in the item content.
    #[serde(default)]
    pub content_index: u32,
    /// The whole text.
    #[serde(default)]
    pub text: String,
}

/// `response.function_call_arguments.delta`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FunctionCallArgumentsDelta {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The function-call item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Tool call id.
    pub call_id: String,
    /// JSON fragment.
    #[serde(default)]
    pub delta: String,
}

/// `response.function_call_arguments.done`: run the tool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FunctionCallArgumentsDone {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The response (send the output after its `response.done`).
    pub response_id: String,
    /// The function-call item.
    pub item_id: String,
    /// Position in the response output.
    #[serde(default)]
    pub output_index: u32,
    /// Tool call id (answer with `function_call_output`).
    pub call_id: String,
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Complete JSON arguments.
    #[serde(default)]
    pub arguments: String,
}

/// One entry of `rate_limits.updated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RateLimit {
    /// `requests` or `tokens`.
    #[serde(default)]
    pub name: String,
    /// Limit.
    #[serde(default)]
    pub limit: u64,
    /// Remaining.
    #[serde(default)]
    pub remaining: u64,
    /// Seconds until reset.
    #[serde(default)]
    pub reset_seconds: f64,
}

/// `rate_limits.updated`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RateLimitsUpdated {
    /// Server event id.
    #[serde(default)]
    pub event_id: String,
    /// The limits.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
}

/// An event from the server. Variant names follow the wire `type` (shown on each).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `session.created`.
    SessionCreated(SessionEvent),
    /// `session.updated`.
    SessionUpdated(SessionEvent),
    /// `conversation.created`.
    ConversationCreated(ConversationCreated),
    /// `error`.
    Error(ErrorEvent),
    /// `input_audio_buffer.speech_started`.
    SpeechStarted(SpeechStarted),
    /// `input_audio_buffer.speech_stopped`.
    SpeechStopped(SpeechStopped),
    /// `input_audio_buffer.committed`.
    InputCommitted(InputCommitted),
    /// `input_audio_buffer.cleared`.
    InputCleared(Bare),
    /// `input_audio_buffer.timeout_triggered`.
    InputTimeout(InputTimeout),
    /// `conversation.item.added`.
    ItemAdded(ItemEvent),
    /// `conversation.item.done`.
    ItemDone(ItemEvent),
    /// `conversation.item.created` (beta name, still in the GA union; treat as added).
    ItemCreated(ItemEvent),
    /// `conversation.item.truncated`.
    ItemTruncated(ItemTruncated),
    /// `conversation.item.deleted`.
    ItemDeleted(ItemDeleted),
    /// `conversation.item.input_audio_transcription.delta`.
    InputTranscriptionDelta(InputTranscriptionDelta),
    /// `conversation.item.input_audio_transcription.completed`.
    InputTranscriptionCompleted(InputTranscriptionCompleted),
    /// `conversation.item.input_audio_transcription.failed`.
    InputTranscriptionFailed(InputTranscriptionFailed),
    /// `response.created`.
    ResponseCreated(ResponseEvent),
    /// `response.output_item.added`.
    OutputItemAdded(OutputItemEvent),
    /// `response.output_item.done`.
    OutputItemDone(OutputItemEvent),
    /// `response.content_part.added`.
    ContentPartAdded(ContentPartEvent),
    /// `response.content_part.done`.
    ContentPartDone(ContentPartEvent),
    /// `response.output_audio.delta`.
    AudioDelta(AudioDelta),
    /// `response.output_audio.done`.
    AudioDone(AudioDone),
    /// `response.output_audio_transcript.delta`.
    AudioTranscriptDelta(TextDelta),
    /// `response.output_audio_transcript.done`.
    AudioTranscriptDone(TranscriptDone),
    /// `response.output_text.delta`.
    TextDelta(TextDelta),
    /// `response.output_text.done`.
    TextDone(TextDone),
    /// `response.function_call_arguments.delta`.
    FunctionCallArgumentsDelta(FunctionCallArgumentsDelta),
    /// `response.function_call_arguments.done`.
    FunctionCallArgumentsDone(FunctionCallArgumentsDone),
    /// `response.done`.
    ResponseDone(ResponseEvent),
    /// `rate_limits.updated`.
    RateLimitsUpdated(RateLimitsUpdated),
    /// Any other `type` (MCP, segments, WebRTC-only events, future additions): count it.
    Unknown {
        /// The wire `type`.
        kind: String,
    },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

fn typed<'a, T: Deserialize<'a>>(
    text: &'a str,
    wrap: fn(T) -> ServerEvent,
) -> Result<ServerEvent, serde_json::Error> {
    serde_json::from_str(text).map(wrap)
}

impl ServerEvent {
    /// Parses one text frame. Errors only for invalid JSON, a missing `type`, or a known
    /// event missing a field the runtime relies on (ids, `delta`).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let envelope: Envelope<'_> = serde_json::from_str(text)?;
        Self::parse_kind(envelope.kind.as_ref(), text)
    }

    /// Parses one text frame whose `type` is already known to be `kind` (one typed pass).
    pub fn parse_kind(kind: &str, text: &str) -> Result<Self, serde_json::Error> {
        match kind {
            "response.output_audio.delta" => typed(text, ServerEvent::AudioDelta),
            "response.output_audio_transcript.delta" => {
                typed(text, ServerEvent::AudioTranscriptDelta)
            }
            "session.created" => typed(text, ServerEvent::SessionCreated),
            "session.updated" => typed(text, ServerEvent::SessionUpdated),
            "conversation.created" => typed(text, ServerEvent::ConversationCreated),
            "error" => typed(text, ServerEvent::Error),
            "input_audio_buffer.speech_started" => typed(text, ServerEvent::SpeechStarted),
            "input_audio_buffer.speech_stopped" => typed(text, ServerEvent::SpeechStopped),
            "input_audio_buffer.committed" => typed(text, ServerEvent::InputCommitted),
            "input_audio_buffer.cleared" => typed(text, ServerEvent::InputCleared),
            "input_audio_buffer.timeout_triggered" => typed(text, ServerEvent::InputTimeout),
            "conversation.item.added" => typed(text, ServerEvent::ItemAdded),
            "conversation.item.done" => typed(text, ServerEvent::ItemDone),
            "conversation.item.created" => typed(text, ServerEvent::ItemCreated),
            "conversation.item.truncated" => typed(text, ServerEvent::ItemTruncated),
            "conversation.item.deleted" => typed(text, ServerEvent::ItemDeleted),
            "conversation.item.input_audio_transcription.delta" => {
                typed(text, ServerEvent::InputTranscriptionDelta)
            }
            "conversation.item.input_audio_transcription.completed" => {
                typed(text, ServerEvent::InputTranscriptionCompleted)
            }
            "conversation.item.input_audio_transcription.failed" => {
                typed(text, ServerEvent::InputTranscriptionFailed)
            }
            "response.created" => typed(text, ServerEvent::ResponseCreated),
            "response.output_item.added" => typed(text, ServerEvent::OutputItemAdded),
            "response.output_item.done" => typed(text, ServerEvent::OutputItemDone),
            "response.content_part.added" => typed(text, ServerEvent::ContentPartAdded),
            "response.content_part.done" => typed(text, ServerEvent::ContentPartDone),
            "response.output_audio.done" => typed(text, ServerEvent::AudioDone),
            "response.output_audio_transcript.done" => {
                typed(text, ServerEvent::AudioTranscriptDone)
            }
            "response.output_text.delta" => typed(text, ServerEvent::TextDelta),
            "response.output_text.done" => typed(text, ServerEvent::TextDone),
            "response.function_call_arguments.delta" => {
                typed(text, ServerEvent::FunctionCallArgumentsDelta)
            }
            "response.function_call_arguments.done" => {
                typed(text, ServerEvent::FunctionCallArgumentsDone)
            }
            "response.done" => typed(text, ServerEvent::ResponseDone),
            "rate_limits.updated" => typed(text, ServerEvent::RateLimitsUpdated),
            other => Ok(ServerEvent::Unknown {
                kind: other.to_owned(),
            }),
        }
    }

    /// The wire `type`.
    pub fn kind(&self) -> &str {
        match self {
            ServerEvent::SessionCreated(_) => "session.created",
            ServerEvent::SessionUpdated(_) => "session.updated",
            ServerEvent::ConversationCreated(_) => "conversation.created",
            ServerEvent::Error(_) => "error",
            ServerEvent::SpeechStarted(_) => "input_audio_buffer.speech_started",
            ServerEvent::SpeechStopped(_) => "input_audio_buffer.speech_stopped",
            ServerEvent::InputCommitted(_) => "input_audio_buffer.committed",
            ServerEvent::InputCleared(_) => "input_audio_buffer.cleared",
            ServerEvent::InputTimeout(_) => "input_audio_buffer.timeout_triggered",
            ServerEvent::ItemAdded(_) => "conversation.item.added",
            ServerEvent::ItemDone(_) => "conversation.item.done",
            ServerEvent::ItemCreated(_) => "conversation.item.created",
            ServerEvent::ItemTruncated(_) => "conversation.item.truncated",
            ServerEvent::ItemDeleted(_) => "conversation.item.deleted",
            ServerEvent::InputTranscriptionDelta(_) => {
                "conversation.item.input_audio_transcription.delta"
            }
            ServerEvent::InputTranscriptionCompleted(_) => {
                "conversation.item.input_audio_transcription.completed"
            }
            ServerEvent::InputTranscriptionFailed(_) => {
                "conversation.item.input_audio_transcription.failed"
            }
            ServerEvent::ResponseCreated(_) => "response.created",
            ServerEvent::OutputItemAdded(_) => "response.output_item.added",
            ServerEvent::OutputItemDone(_) => "response.output_item.done",
            ServerEvent::ContentPartAdded(_) => "response.content_part.added",
            ServerEvent::ContentPartDone(_) => "response.content_part.done",
            ServerEvent::AudioDelta(_) => "response.output_audio.delta",
            ServerEvent::AudioDone(_) => "response.output_audio.done",
            ServerEvent::AudioTranscriptDelta(_) => "response.output_audio_transcript.delta",
            ServerEvent::AudioTranscriptDone(_) => "response.output_audio_transcript.done",
            ServerEvent::TextDelta(_) => "response.output_text.delta",
            ServerEvent::TextDone(_) => "response.output_text.done",
            ServerEvent::FunctionCallArgumentsDelta(_) => "response.function_call_arguments.delta",
            ServerEvent::FunctionCallArgumentsDone(_) => "response.function_call_arguments.done",
            ServerEvent::ResponseDone(_) => "response.done",
            ServerEvent::RateLimitsUpdated(_) => "rate_limits.updated",
            ServerEvent::Unknown { kind } => kind,
        }
    }

    /// True for [`ServerEvent::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, ServerEvent::Unknown { .. })
    }
}
