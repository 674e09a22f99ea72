//! Client events: what the runtime sends to the model (PROTOCOLS §4.4), as the typed
//! [`ClientEvent`] with builders, serialised to the exact GA JSON.
//!
//! `input_audio_buffer.append` is the hot path (one per 20 ms of caller audio per call):
//! [`append_json`] writes the frame straight from the borrowed base64 string, so the audio
//! is copied exactly once, into the outgoing text.

use serde::Serialize;

use super::session::{ResponseParams, SessionConfig};

/// Who a message item is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The caller.
    User,
    /// Context from the runtime (instructions mid-call).
    System,
    /// The model (history reconstruction; text only).
    Assistant,
}

/// One content part of a message item the client creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// User or system text.
    InputText {
        /// The text.
        text: String,
    },
    /// Assistant text.
    OutputText {
        /// The text.
        text: String,
    },
}

/// An item for `conversation.item.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConversationItem {
    /// A message.
    Message {
        /// Author.
        role: Role,
        /// Parts (`input_text` for user/system, `output_text` for assistant).
        content: Vec<ContentPart>,
    },
    /// The answer to a tool call.
    FunctionCallOutput {
        /// The `call_id` of the `function_call` item.
        call_id: String,
        /// Result (usually JSON), or an error string.
        output: String,
    },
    /// A past tool call (history reconstruction).
    FunctionCall {
        /// Call id.
        call_id: String,
        /// Function name.
        name: String,
        /// JSON arguments.
        arguments: String,
    },
}

/// An event the client sends. Each variant may carry an `event_id`, echoed in
/// `error.event_id` when that event fails.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    /// Changes the session configuration (only the fields present).
    #[serde(rename = "session.update")]
    SessionUpdate {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The GA session object.
        session: Box<SessionConfig>,
    },
    /// Caller audio (base64 in the session input format). No acknowledgement.
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Base64 audio.
        audio: String,
    },
    /// Commits the buffer as a user item (only without turn detection).
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// Discards the uncommitted buffer.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// Adds an item to the conversation.
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Insert after this item (`"root"`: at the start); absent: append.
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_item_id: Option<String>,
        /// The item.
        item: ConversationItem,
    },
    /// Cuts an assistant audio item at what the caller actually heard.
    #[serde(rename = "conversation.item.truncate")]
    ConversationItemTruncate {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The assistant message item.
        item_id: String,
        /// Content part (0 for audio responses).
        content_index: u32,
        /// Audio heard, ms (inclusive; must not exceed the item's audio).
        audio_end_ms: u64,
    },
    /// Removes an item.
    #[serde(rename = "conversation.item.delete")]
    ConversationItemDelete {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The item.
        item_id: String,
    },
    /// Asks the model to respond.
    #[serde(rename = "response.create")]
    ResponseCreate {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Overrides for this response.
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<Box<ResponseParams>>,
    },
    /// Cancels the active response.
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// A specific response (default: the active one).
        #[serde(skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
}

impl From<SessionConfig> for ClientEvent {
    fn from(session: SessionConfig) -> Self {
        ClientEvent::session_update(session)
    }
}

impl ClientEvent {
    /// `session.update`.
    pub fn session_update(session: SessionConfig) -> Self {
        ClientEvent::SessionUpdate {
            event_id: None,
            session: Box::new(session),
        }
    }

    /// `input_audio_buffer.append` (prefer [`append_json`] on the hot path).
    pub fn append(audio_b64: String) -> Self {
        ClientEvent::InputAudioBufferAppend {
            event_id: None,
            audio: audio_b64,
        }
    }

    /// `input_audio_buffer.commit`.
    pub fn commit() -> Self {
        ClientEvent::InputAudioBufferCommit { event_id: None }
    }

    /// `input_audio_buffer.clear`.
    pub fn clear_input() -> Self {
        ClientEvent::InputAudioBufferClear { event_id: None }
    }

    /// `conversation.item.create` of any item, appended.
    pub fn item(item: ConversationItem) -> Self {
        ClientEvent::ConversationItemCreate {
            event_id: None,
            previous_item_id: None,
            item,
        }
    }

    /// A user text message (e.g. DTMF relayed as text).
    pub fn user_text(text: impl Into<String>) -> Self {
        Self::message(Role::User, ContentPart::InputText { text: text.into() })
    }

    /// A system message (mid-call context).
    pub fn system_text(text: impl Into<String>) -> Self {
        Self::message(Role::System, ContentPart::InputText { text: text.into() })
    }

    /// An assistant text message (history).
    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self::message(
            Role::Assistant,
            ContentPart::OutputText { text: text.into() },
        )
    }

    fn message(role: Role, part: ContentPart) -> Self {
        Self::item(ConversationItem::Message {
            role,
            content: vec![part],
        })
    }

    /// The answer to tool call `call_id`.
    pub fn function_output(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        Self::item(ConversationItem::FunctionCallOutput {
            call_id: call_id.into(),
            output: output.into(),
        })
    }

    /// `conversation.item.truncate` of content part 0.
    pub fn truncate(item_id: impl Into<String>, audio_end_ms: u64) -> Self {
        ClientEvent::ConversationItemTruncate {
            event_id: None,
            item_id: item_id.into(),
            content_index: 0,
            audio_end_ms,
        }
    }

    /// `response.create` with the session defaults.
    pub fn response_create() -> Self {
        ClientEvent::ResponseCreate {
            event_id: None,
            response: None,
        }
    }

    /// `response.create` with overrides.
    pub fn response_with(params: ResponseParams) -> Self {
        ClientEvent::ResponseCreate {
            event_id: None,
            response: Some(Box::new(params)),
        }
    }

    /// `response.create` with instructions for this response only.
    pub fn response_with_instructions(instructions: impl Into<String>) -> Self {
        Self::response_with(ResponseParams {
            instructions: Some(instructions.into()),
            ..ResponseParams::default()
        })
    }

    /// `response.cancel` of the active response.
    pub fn response_cancel() -> Self {
        ClientEvent::ResponseCancel {
            event_id: None,
            response_id: None,
        }
    }

    /// Sets the client `event_id`.
    pub fn with_event_id(mut self, id: impl Into<String>) -> Self {
        let id = Some(id.into());
        match &mut self {
            ClientEvent::SessionUpdate { event_id, .. }
            | ClientEvent::InputAudioBufferAppend { event_id, .. }
            | ClientEvent::InputAudioBufferCommit { event_id }
            | ClientEvent::InputAudioBufferClear { event_id }
            | ClientEvent::ConversationItemCreate { event_id, .. }
            | ClientEvent::ConversationItemTruncate { event_id, .. }
            | ClientEvent::ConversationItemDelete { event_id, .. }
            | ClientEvent::ResponseCreate { event_id, .. }
            | ClientEvent::ResponseCancel { event_id, .. } => *event_id = id,
        }
        self
    }

    /// The wire `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientEvent::SessionUpdate { .. } => "session.update",
            ClientEvent::InputAudioBufferAppend { .. } => "input_audio_buffer.append",
            ClientEvent::InputAudioBufferCommit { .. } => "input_audio_buffer.commit",
            ClientEvent::InputAudioBufferClear { .. } => "input_audio_buffer.clear",
            ClientEvent::ConversationItemCreate { .. } => "conversation.item.create",
            ClientEvent::ConversationItemTruncate { .. } => "conversation.item.truncate",
            ClientEvent::ConversationItemDelete { .. } => "conversation.item.delete",
            ClientEvent::ResponseCreate { .. } => "response.create",
            ClientEvent::ResponseCancel { .. } => "response.cancel",
        }
    }

    /// The JSON text frame.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// The `input_audio_buffer.append` frame for `audio_b64`, written directly from the
/// borrowed string (the audio is copied once, into the result; base64 needs no escaping, so
/// it is copied verbatim after one check).
pub fn append_json(audio_b64: &str) -> String {
    const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":"#;
    let mut out = String::with_capacity(audio_b64.len() + HEAD.len() + 3);
    out.push_str(HEAD);
    push_json_str(&mut out, audio_b64);
    out.push('}');
    out
}

/// Whether `s` can be written inside a JSON string as it is (no `"`, `\\` or control
/// character).
pub fn json_verbatim(s: &str) -> bool {
    !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Writes `s` as a JSON string: verbatim between quotes when nothing in it needs escaping
/// (no `"`, `\` or control character: base64, ids), through serde_json otherwise.
pub fn push_json_str(out: &mut String, s: &str) {
    if json_verbatim(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(escaped) = serde_json::to_string(s) {
        out.push_str(&escaped);
    }
}
