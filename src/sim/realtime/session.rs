//! One simulated Realtime session: the protocol state machine, with no I/O.
//!
//! The connection task ([`super::server`]) feeds it client frames ([`Session::on_text`])
//! and clock ticks ([`Session::on_tick`]) and sends what it queued in [`Session::out`].
//! This file handles the session, the input buffer (VAD turns, commits, transcription) and
//! the conversation items; responses are in [`super::response`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::config::{RealtimeScript, ScriptReply};
use super::effective::{self, Effective, UpdateError};
use super::response::{Active, Plan};
use super::state::{ErrorRecord, MAX_EVENT_LOG, SessionSnapshot, SharedRef};
use super::vad::{BYTES_PER_MS, Vad, VadEvent};

/// The hot-path client event.
const APPEND: &str = "input_audio_buffer.append";

/// Close code for a refused beta-shaped session.
pub(crate) const BETA_CLOSE_CODE: u16 = 4000;
/// Message of the `beta_api_shape_disabled` error.
pub(crate) const BETA_MESSAGE: &str =
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.";

/// A prefixed random id (`sess_…`, `item_…`, …) shaped like OpenAI's.
pub(crate) fn new_id(prefix: &str) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &hex[..22])
}

/// What kind of conversation item a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    User,
    System,
    Assistant,
    FunctionCall,
    FunctionCallOutput,
}

/// A conversation item the session knows.
#[derive(Debug, Clone)]
pub(crate) struct ItemRecord {
    pub id: String,
    pub kind: ItemKind,
    /// Audio produced (assistant messages), ms; lowered by a truncate.
    pub audio_ms: u64,
    /// The item as last sent (no audio bytes).
    pub value: Value,
}

/// Protocol state of one session.
pub(crate) struct Session {
    pub shared: SharedRef,
    pub index: usize,
    pub id: String,
    pub model: String,
    pub conversation_id: String,
    /// The effective session object.
    pub config: Value,
    pub eff: Effective,
    pub vad: Vad,
    /// Events to send, in order.
    pub out: Vec<Value>,
    /// Close the socket with this code and reason after sending `out`.
    pub close: Option<(u16, String)>,
    pub items: Vec<ItemRecord>,
    pub last_item_id: Option<String>,
    /// The user item announced by `speech_started`, until committed.
    user_item: Option<String>,
    uncommitted_bytes: u64,
    /// User turns so far.
    pub turn: usize,
    pub script: RealtimeScript,
    /// What the next response says or does.
    pub pending: Option<ScriptReply>,
    /// The tool call waiting for its output: `(call_id, then)`.
    pub awaiting_tool: Option<(String, String)>,
    pub active: Option<Active>,
    /// An automatic response deferred until the active one ends.
    pub queued_auto: bool,
    pub responses: u64,
    pub tokens_used: u64,
    /// Appends not yet in the snapshot (the hot path updates it about once a second).
    batched: PendingAppends,
}

/// `input_audio_buffer.append`s counted locally, folded into the snapshot by the next
/// [`Session::snap`] or once [`PENDING_APPENDS`] have accumulated.
#[derive(Debug, Default)]
struct PendingAppends {
    events: u64,
    audio_bytes: u64,
    raw: Vec<Value>,
}

/// Appends (20 ms each from a Twilio bridge) batched before a snapshot update.
const PENDING_APPENDS: u64 = 50;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Session {
    /// A new session; registers its snapshot and queues `session.created` and
    /// `conversation.created` (or, for a connection that sent an `OpenAI-Beta` header, the
    /// `beta_api_shape_disabled` error and a 4000 close).
    pub fn start(
        shared: SharedRef,
        model: String,
        beta_header: bool,
    ) -> (
        Self,
        tokio::sync::mpsc::UnboundedReceiver<super::state::Control>,
    ) {
        let id = new_id("sess");
        let expires_at = unix_now() + shared.config.session_ttl.as_secs();
        let config = effective::default_session(&id, &model, expires_at);
        let (index, control) = shared.register(&id, model.clone(), config.clone());
        let script = super::state::lock(&shared.settings).script.clone();
        let eff = effective::effective(&config);
        let mut session = Self {
            shared,
            index,
            id,
            model,
            conversation_id: new_id("conv"),
            config,
            eff,
            vad: Vad::default(),
            out: Vec::new(),
            close: None,
            items: Vec::new(),
            last_item_id: None,
            user_item: None,
            uncommitted_bytes: 0,
            turn: 0,
            script,
            pending: None,
            awaiting_tool: None,
            active: None,
            queued_auto: false,
            responses: 0,
            tokens_used: 0,
            batched: PendingAppends::default(),
        };
        if beta_header {
            session.refuse_beta(None);
            return (session, control);
        }
        let created = json!({"type": "session.created", "session": session.config.clone()});
        session.emit(created);
        let conversation = json!({
            "type": "conversation.created",
            "conversation": {"id": session.conversation_id.clone(), "object": "realtime.conversation"},
        });
        session.emit(conversation);
        (session, control)
    }

    /// Changes this session's snapshot (folding in the batched appends first).
    pub fn snap(&mut self, f: impl FnOnce(&mut SessionSnapshot)) {
        let batched = std::mem::take(&mut self.batched);
        self.shared.update(self.index, |s| {
            if batched.events > 0 {
                s.client_event_count += batched.events;
                s.audio_bytes_received += batched.audio_bytes;
                let room = MAX_EVENT_LOG.saturating_sub(s.client_events.len());
                let n = usize::try_from(batched.events)
                    .unwrap_or(usize::MAX)
                    .min(room);
                s.client_events
                    .extend(std::iter::repeat_n(APPEND.to_owned(), n));
                s.client_events_raw.extend(batched.raw);
            }
            f(s);
        });
    }

    /// Queues a server event (adds its `event_id`).
    pub fn emit(&mut self, mut event: Value) {
        if let Some(obj) = event.as_object_mut() {
            obj.insert("event_id".into(), Value::String(self.shared.event_id()));
        }
        if self.shared.config.record_events {
            let copy = event.clone();
            self.snap(|s| s.server_events.push(copy));
        }
        self.out.push(event);
    }

    /// Queues an `error` event and records it.
    pub fn error(
        &mut self,
        code: &str,
        message: impl Into<String>,
        param: Option<&str>,
        event_id: Option<String>,
    ) {
        let message = message.into();
        let record = ErrorRecord {
            kind: "invalid_request_error".into(),
            code: Some(code.to_owned()),
            param: param.map(str::to_owned),
            message: message.clone(),
            event_id: event_id.clone(),
        };
        self.snap(|s| s.errors.push(record));
        self.emit(json!({
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            }
        }));
    }

    /// Replaces `{session}` and `{turn}`.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{session}", &self.id)
            .replace("{turn}", &self.turn.to_string())
    }

    /// Handles one client text frame.
    pub fn on_text(&mut self, text: &str, now: Instant) {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.snap(|s| s.client_event_count += 1);
                let message = format!("We could not parse the JSON body of your request: {e}");
                self.error("invalid_json", message, None, None);
                return;
            }
        };
        let kind = value.get("type").and_then(Value::as_str).map(str::to_owned);
        let record = self.shared.config.record_events.then(|| value.clone());
        if kind.as_deref() == Some(APPEND) {
            self.batched.events += 1;
            self.batched.raw.extend(record);
            let event_id = value
                .get("event_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.on_append(&value, event_id, now);
            if self.batched.events >= PENDING_APPENDS {
                self.snap(|_| {});
            }
            return;
        }
        self.snap(|s| {
            s.client_event_count += 1;
            if let Some(k) = &kind
                && s.client_events.len() < MAX_EVENT_LOG
            {
                s.client_events.push(k.clone());
            }
            if let Some(raw) = record {
                s.client_events_raw.push(raw);
            }
        });
        let event_id = value
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(kind) = kind else {
            self.error(
                "invalid_event",
                "The 'type' field is missing.",
                Some("type"),
                event_id,
            );
            return;
        };
        match kind.as_str() {
            "session.update" => self.on_session_update(&value, event_id),
            "input_audio_buffer.commit" => self.on_commit(event_id),
            "input_audio_buffer.clear" => self.on_clear(),
            "conversation.item.create" => self.on_item_create(&value, event_id),
            "conversation.item.truncate" => self.on_truncate(&value, event_id),
            "conversation.item.delete" => self.on_item_delete(&value, event_id),
            "conversation.item.retrieve" => self.on_item_retrieve(&value, event_id),
            "response.create" => self.on_response_create(&value, event_id, now),
            "response.cancel" => self.on_response_cancel(&value, event_id),
            other => {
                let message = format!(
                    "Invalid value: '{other}'. Supported values are: 'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear', 'conversation.item.create', 'conversation.item.truncate', 'conversation.item.delete', 'conversation.item.retrieve', 'response.create', and 'response.cancel'."
                );
                self.error("unknown_event", message, Some("type"), event_id);
            }
        }
    }

    fn on_session_update(&mut self, value: &Value, event_id: Option<String>) {
        let session = value.get("session").cloned().unwrap_or(Value::Null);
        match effective::check_update(&session, &self.model) {
            Err(UpdateError::Beta) => self.refuse_beta(event_id),
            Err(UpdateError::Invalid {
                code,
                param,
                message,
            }) => self.error(code, message, Some(&param), event_id),
            Ok(()) => {
                effective::merge(&mut self.config, &session);
                self.eff = effective::effective(&self.config);
                if let Some(instructions) = session.get("instructions").and_then(Value::as_str)
                    && let Some(variant) = self
                        .script
                        .variants
                        .iter()
                        .find(|v| instructions.contains(&v.marker))
                {
                    self.script.turns = variant.turns.clone();
                }
                if self.eff.vad.is_none() && self.vad.speaking() {
                    self.vad.reset();
                    self.user_item = None;
                }
                let config = self.config.clone();
                self.snap(|s| {
                    s.config = config;
                    s.updates += 1;
                });
                let updated = json!({"type": "session.updated", "session": self.config.clone()});
                self.emit(updated);
            }
        }
    }

    /// Queues the `beta_api_shape_disabled` error and the 4000 close.
    fn refuse_beta(&mut self, event_id: Option<String>) {
        self.error("beta_api_shape_disabled", BETA_MESSAGE, None, event_id);
        self.close = Some((BETA_CLOSE_CODE, "beta_api_shape_disabled".into()));
    }

    fn on_append(&mut self, value: &Value, event_id: Option<String>, now: Instant) {
        let Some(audio) = value.get("audio").and_then(Value::as_str) else {
            self.error(
                "missing_required_parameter",
                "Missing required parameter: 'audio'.",
                Some("audio"),
                event_id,
            );
            return;
        };
        let bytes = match STANDARD.decode(audio) {
            Ok(b) => b,
            Err(_) => {
                self.error(
                    "invalid_value",
                    "Invalid 'audio'. Expected base64-encoded audio bytes.",
                    Some("audio"),
                    event_id,
                );
                return;
            }
        };
        if let Some(observer) = &self.shared.config.tag_observer {
            let tags: Vec<u32> = bytes
                .chunks(crate::sim::audio::FRAME_BYTES)
                .filter_map(crate::sim::audio::read_tag)
                .collect();
            if !tags.is_empty() {
                observer.input_tags_received(self.index, &tags, now);
            }
        }
        let n = bytes.len() as u64;
        self.uncommitted_bytes += n;
        self.batched.audio_bytes += n;
        let mut events = Vec::new();
        let settings = self.eff.vad;
        self.vad.push(&bytes, settings.as_ref(), &mut events);
        for event in events {
            match event {
                VadEvent::Started { audio_start_ms } => self.on_speech_started(audio_start_ms),
                VadEvent::Stopped { audio_end_ms } => self.on_speech_stopped(audio_end_ms, now),
            }
        }
    }

    fn on_speech_started(&mut self, audio_start_ms: u64) {
        let item_id = new_id("item");
        self.user_item = Some(item_id.clone());
        self.snap(|s| s.speech_started += 1);
        self.emit(json!({
            "type": "input_audio_buffer.speech_started",
            "audio_start_ms": audio_start_ms,
            "item_id": item_id,
        }));
        let interrupt = self.eff.vad.is_some_and(|v| v.interrupt_response);
        if interrupt && self.active.is_some() {
            self.cancel_active("turn_detected");
        }
    }

    fn on_speech_stopped(&mut self, audio_end_ms: u64, now: Instant) {
        let item_id = self.user_item.take().unwrap_or_else(|| new_id("item"));
        self.emit(json!({
            "type": "input_audio_buffer.speech_stopped",
            "audio_end_ms": audio_end_ms,
            "item_id": item_id,
        }));
        let audio_ms = self.uncommitted_bytes / BYTES_PER_MS;
        self.commit_user_turn(item_id, audio_ms);
        if self.eff.vad.is_some_and(|v| v.create_response) {
            if self.active.is_some() {
                self.queued_auto = true;
            } else {
                self.start_response(None, Value::Null, now);
            }
        }
    }

    fn on_commit(&mut self, event_id: Option<String>) {
        if self.uncommitted_bytes == 0 {
            self.error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio.",
                None,
                event_id,
            );
            return;
        }
        let item_id = self.user_item.take().unwrap_or_else(|| new_id("item"));
        let audio_ms = self.uncommitted_bytes / BYTES_PER_MS;
        self.commit_user_turn(item_id, audio_ms);
        self.vad.reset();
    }

    fn on_clear(&mut self) {
        self.uncommitted_bytes = 0;
        self.user_item = None;
        self.vad.reset();
        self.emit(json!({"type": "input_audio_buffer.cleared"}));
    }

    /// The next script turn: `(transcript, reply)`, placeholders filled.
    fn next_turn(&mut self) -> (String, ScriptReply) {
        self.turn += 1;
        let turn = self.script.turns.get(self.turn - 1).cloned();
        match turn {
            Some(t) => {
                let reply = match t.reply {
                    ScriptReply::Say(text) => ScriptReply::Say(self.fill(&text)),
                    ScriptReply::CallTool {
                        name,
                        arguments,
                        then,
                        call_id,
                    } => ScriptReply::CallTool {
                        name,
                        arguments: fill_json(&arguments, &|s| self.fill(s)),
                        then: self.fill(&then),
                        call_id,
                    },
                };
                (self.fill(&t.user), reply)
            }
            None => (
                self.fill(&self.script.default_user),
                ScriptReply::Say(self.fill(&self.script.default_reply)),
            ),
        }
    }

    /// Commits the buffered caller audio as a user item, with its transcription.
    fn commit_user_turn(&mut self, item_id: String, audio_ms: u64) {
        self.uncommitted_bytes = 0;
        let (transcript, reply) = self.next_turn();
        self.pending = Some(reply);
        let previous = self.last_item_id.clone();
        self.emit(json!({
            "type": "input_audio_buffer.committed",
            "previous_item_id": previous,
            "item_id": item_id,
        }));
        let item = json!({
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio"}],
        });
        self.add_item(ItemKind::User, item, 0);
        let record = transcript.clone();
        self.snap(|s| s.user_turns.push(record));
        if !self.eff.transcribe {
            return;
        }
        let words: Vec<&str> = transcript.split_inclusive(' ').collect();
        let per = words.len().div_ceil(3).max(1);
        for piece in words.chunks(per) {
            self.emit(json!({
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item_id,
                "content_index": 0,
                "delta": piece.concat(),
            }));
        }
        let audio_tokens = audio_ms / 100 + 1;
        let text_tokens = transcript.len() as u64 / 4 + 1;
        self.emit(json!({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": transcript,
            "usage": {
                "type": "tokens",
                "total_tokens": audio_tokens + text_tokens,
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": text_tokens,
            }
        }));
    }

    /// Records an item and queues `conversation.item.added` and `.done`.
    fn add_item(&mut self, kind: ItemKind, item: Value, audio_ms: u64) {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let previous = self.last_item_id.replace(id.clone());
        self.emit(json!({
            "type": "conversation.item.added",
            "previous_item_id": previous,
            "item": item.clone(),
        }));
        self.emit(json!({
            "type": "conversation.item.done",
            "previous_item_id": previous,
            "item": item.clone(),
        }));
        self.items.push(ItemRecord {
            id,
            kind,
            audio_ms,
            value: item,
        });
    }

    /// The item with this id.
    pub fn item_mut(&mut self, id: &str) -> Option<&mut ItemRecord> {
        self.items.iter_mut().find(|i| i.id == id)
    }

    fn on_item_create(&mut self, value: &Value, event_id: Option<String>) {
        let Some(item) = value.get("item").and_then(Value::as_object) else {
            self.error(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                Some("item"),
                event_id,
            );
            return;
        };
        if let Some(prev) = value.get("previous_item_id").and_then(Value::as_str)
            && prev != "root"
            && !self.items.iter().any(|i| i.id == prev)
        {
            let message = format!("Invalid 'previous_item_id': item '{prev}' not found.");
            self.error("invalid_value", message, Some("previous_item_id"), event_id);
            return;
        }
        let kind = match check_item(item) {
            Ok(kind) => kind,
            Err((param, message)) => {
                self.error("invalid_value", message, Some(&param), event_id);
                return;
            }
        };
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| new_id("item"), str::to_owned);
        if self.items.iter().any(|i| i.id == id) {
            let message = format!("Item with id '{id}' already exists.");
            self.error("invalid_value", message, Some("item.id"), event_id);
            return;
        }
        let mut stored = item.clone();
        stored.insert("id".into(), Value::String(id));
        stored.insert("object".into(), json!("realtime.item"));
        stored.insert("status".into(), json!("completed"));
        let stored = Value::Object(stored);
        match kind {
            ItemKind::User => {
                let text: String = stored["content"]
                    .as_array()
                    .map(|parts| {
                        parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let (_, reply) = self.next_turn();
                self.pending = Some(reply);
                self.snap(|s| s.user_turns.push(text));
            }
            ItemKind::FunctionCallOutput => {
                let call_id = stored["call_id"].as_str().unwrap_or_default().to_owned();
                let output = stored["output"].as_str().unwrap_or_default().to_owned();
                if let Some((waiting, then)) = self.awaiting_tool.take() {
                    if waiting == call_id {
                        self.pending = Some(ScriptReply::Say(then));
                    } else {
                        self.awaiting_tool = Some((waiting, then));
                    }
                }
                self.snap(|s| {
                    if let Some(call) = s.tool_calls.iter_mut().find(|c| c.call_id == call_id) {
                        call.output = Some(output);
                    }
                });
            }
            _ => {}
        }
        self.add_item(kind, stored, 0);
    }

    fn on_truncate(&mut self, value: &Value, event_id: Option<String>) {
        let item_id = value
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let audio_end_ms = value.get("audio_end_ms").and_then(Value::as_u64);
        let content_index = value.get("content_index").and_then(Value::as_u64);
        let found = self
            .items
            .iter()
            .find(|i| i.id == item_id)
            .map(|i| (i.kind, i.audio_ms));
        let mut record = super::state::TruncateRecord {
            item_id: item_id.clone(),
            audio_end_ms: audio_end_ms.unwrap_or(0),
            item_audio_ms: found.map(|(_, ms)| ms),
            accepted: false,
        };
        let failure = match (found, audio_end_ms, content_index) {
            (None, _, _) => Some((
                "item_id",
                format!("Invalid 'item_id': no item with id '{item_id}' was found."),
            )),
            (Some((kind, _)), _, _) if kind != ItemKind::Assistant => Some((
                "item_id",
                "Only assistant message items can be truncated.".to_owned(),
            )),
            (_, None, _) => Some((
                "audio_end_ms",
                "Invalid 'audio_end_ms': expected a non-negative integer.".to_owned(),
            )),
            (_, _, ci) if ci != Some(0) => Some((
                "content_index",
                "Invalid 'content_index': the item has one audio content part (0).".to_owned(),
            )),
            (Some((_, have)), Some(end), _) if end > have => Some((
                "audio_end_ms",
                format!("Audio content of {have}ms is already shorter than {end}ms."),
            )),
            _ => None,
        };
        if let Some((param, message)) = failure {
            self.snap(|s| s.truncations.push(record));
            self.error("invalid_value", message, Some(param), event_id);
            return;
        }
        let end = audio_end_ms.unwrap_or(0);
        if let Some(item) = self.item_mut(&item_id) {
            item.audio_ms = end;
        }
        record.accepted = true;
        self.snap(|s| s.truncations.push(record));
        self.emit(json!({
            "type": "conversation.item.truncated",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": end,
        }));
    }

    fn on_item_delete(&mut self, value: &Value, event_id: Option<String>) {
        let item_id = value
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(pos) = self.items.iter().position(|i| i.id == item_id) else {
            let message = format!("Invalid 'item_id': no item with id '{item_id}' was found.");
            self.error("invalid_value", message, Some("item_id"), event_id);
            return;
        };
        let removed = self.items.remove(pos);
        if self.last_item_id.as_deref() == Some(removed.id.as_str()) {
            self.last_item_id = self.items.last().map(|i| i.id.clone());
        }
        self.emit(json!({"type": "conversation.item.deleted", "item_id": removed.id}));
    }

    fn on_item_retrieve(&mut self, value: &Value, event_id: Option<String>) {
        let item_id = value
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.items.iter().find(|i| i.id == item_id) {
            Some(item) => {
                let item = item.value.clone();
                self.emit(json!({"type": "conversation.item.retrieved", "item": item}));
            }
            None => {
                let message = format!("Invalid 'item_id': no item with id '{item_id}' was found.");
                self.error("invalid_value", message, Some("item_id"), event_id);
            }
        }
    }

    fn on_response_create(&mut self, value: &Value, event_id: Option<String>, now: Instant) {
        if let Some(active) = &self.active {
            let message = format!(
                "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                active.id
            );
            self.error(
                "conversation_already_has_active_response",
                message,
                None,
                event_id,
            );
            return;
        }
        let params = value.get("response");
        let instructions = params
            .and_then(|p| p.get("instructions"))
            .and_then(Value::as_str);
        let metadata = params
            .and_then(|p| p.get("metadata"))
            .filter(|m| m.is_object())
            .cloned()
            .unwrap_or(Value::Null);
        let exact = instructions.and_then(say_exactly);
        self.start_response(exact.map(Plan::Speech), metadata, now);
    }

    fn on_response_cancel(&mut self, value: &Value, event_id: Option<String>) {
        let wanted = value.get("response_id").and_then(Value::as_str);
        let matches = match (&self.active, wanted) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(active), Some(id)) => active.id == id,
        };
        if !matches {
            self.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                None,
                event_id,
            );
            return;
        }
        self.cancel_active("client_cancelled");
    }

    /// Advances the active response if it is due.
    pub fn on_tick(&mut self, now: Instant) {
        self.step_response(now);
    }

    /// When [`on_tick`](Self::on_tick) next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.next_at)
    }

    /// The planned reply for a response without fixed text: the pending script reply, or
    /// the default.
    pub fn take_plan(&mut self) -> Plan {
        match self.pending.take() {
            Some(ScriptReply::Say(text)) => Plan::Speech(text),
            Some(ScriptReply::CallTool {
                name,
                arguments,
                then,
                call_id,
            }) => Plan::Tool {
                name,
                arguments: arguments.to_string(),
                then,
                call_id,
            },
            None => Plan::Speech(self.fill(&self.script.default_reply)),
        }
    }
}

/// The text after `Say exactly:` in response instructions (quotes trimmed).
pub(crate) fn say_exactly(instructions: &str) -> Option<String> {
    const MARKER: &str = "say exactly:";
    let lower = instructions.to_ascii_lowercase();
    let at = lower.find(MARKER)?;
    let text = instructions.get(at + MARKER.len()..)?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    (!text.is_empty()).then(|| text.to_owned())
}

fn fill_json(value: &Value, fill: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(fill(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_json(v, fill)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), fill_json(v, fill)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Validates a client item; returns its kind or `(param, message)`.
fn check_item(item: &serde_json::Map<String, Value>) -> Result<ItemKind, (String, String)> {
    let str_field = |k: &str| item.get(k).and_then(Value::as_str);
    let missing = |k: &str| {
        (
            format!("item.{k}"),
            format!("Missing required parameter: 'item.{k}'."),
        )
    };
    match str_field("type") {
        Some("message") => {
            let kind = match str_field("role") {
                Some("user") => ItemKind::User,
                Some("system") => ItemKind::System,
                Some("assistant") => ItemKind::Assistant,
                _ => {
                    return Err((
                        "item.role".into(),
                        "Invalid 'item.role': expected 'user', 'system' or 'assistant'.".into(),
                    ));
                }
            };
            let Some(parts) = item.get("content").and_then(Value::as_array) else {
                return Err(missing("content"));
            };
            let allowed: &[&str] = match kind {
                ItemKind::User => &["input_text", "input_audio", "input_image"],
                ItemKind::System => &["input_text"],
                _ => &["output_text"],
            };
            for (i, part) in parts.iter().enumerate() {
                let t = part.get("type").and_then(Value::as_str).unwrap_or_default();
                if !allowed.contains(&t) {
                    return Err((
                        format!("item.content[{i}].type"),
                        format!("Invalid 'item.content[{i}].type': '{t}' is not allowed here."),
                    ));
                }
            }
            Ok(kind)
        }
        Some("function_call_output") => {
            if str_field("call_id").is_none() {
                return Err(missing("call_id"));
            }
            if str_field("output").is_none() {
                return Err(missing("output"));
            }
            Ok(ItemKind::FunctionCallOutput)
        }
        Some("function_call") => {
            for k in ["name", "arguments"] {
                if str_field(k).is_none() {
                    return Err(missing(k));
                }
            }
            Ok(ItemKind::FunctionCall)
        }
        _ => Err((
            "item.type".into(),
            "Invalid 'item.type': expected 'message', 'function_call' or 'function_call_output'."
                .into(),
        )),
    }
}
