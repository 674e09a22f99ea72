//! Responses of a simulated session, in the GA event order (PROTOCOLS §4.6):
//! `response.created` → `rate_limits.updated` → `response.output_item.added` →
//! `conversation.item.added` → `response.content_part.added` → N × (`output_audio.delta` +
//! `output_audio_transcript.delta`) → `output_audio.done` → `output_audio_transcript.done`
//! → `content_part.done` → `output_item.done` → `conversation.item.done` → `response.done`.
//!
//! A tool call streams `response.function_call_arguments.delta`s and `.done` instead of
//! content. Audio is the shared speech synthesiser's μ-law, `ms_per_char` per character,
//! cut into `delta_ms` deltas paced at `speed` × real time after the first-audio latency.
//! A cancellation (`turn_detected` or `client_cancelled`) stops the deltas and closes the
//! item as `incomplete` and the response as `cancelled`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::sim::audio::{FRAME_BYTES, SpeechSynth, tag_frame};

use super::session::{ItemKind, ItemRecord, Session, new_id};
use super::state::{ResponseRecord, ToolCallRecord, lock};
use super::vad::BYTES_PER_MS;

/// What a response does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Speak (or, in a text-only session, write) this text.
    Speech(String),
    /// Call a function, then say `then` after its output arrives.
    Tool {
        name: String,
        arguments: String,
        then: String,
        call_id: Option<String>,
    },
}

/// One delta of a spoken response.
#[derive(Debug)]
pub(crate) struct Chunk {
    audio_b64: String,
    bytes: u64,
    text: String,
    tags: Vec<u32>,
}

#[derive(Debug)]
pub(crate) enum Body {
    Speech {
        text: String,
        chunks: Vec<Chunk>,
        next: usize,
        said: String,
        sent_bytes: u64,
    },
    Tool {
        name: String,
        call_id: String,
        arguments: String,
        pieces: Vec<String>,
        next: usize,
        then: String,
        /// `function_call_arguments.done` was sent; the response closes after a delay.
        args_done: bool,
    },
}

/// What one step did.
enum Step {
    /// More to send after the interval.
    Continue,
    /// Send the closing events now.
    Finished,
    /// Close after this delay.
    Wait(Duration),
}

/// The response being generated.
#[derive(Debug)]
pub(crate) struct Active {
    pub id: String,
    pub item_id: String,
    pub next_at: Instant,
    interval: Duration,
    metadata: Value,
    text_only: bool,
    body: Body,
}

/// Splits `text` into `n` consecutive pieces of about equal length (on char boundaries).
fn split_text(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.max(1);
    (0..n)
        .map(|i| {
            let from = i * chars.len() / n;
            let to = (i + 1) * chars.len() / n;
            chars[from..to].iter().collect()
        })
        .collect()
}

impl Session {
    fn response_object(&self, id: &str, status: &str, metadata: &Value) -> Value {
        let modality = if self.eff.text_only { "text" } else { "audio" };
        json!({
            "object": "realtime.response",
            "id": id,
            "status": status,
            "output": [],
            "conversation_id": self.conversation_id,
            "output_modalities": [modality],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": self.eff.output_format, "voice": self.eff.voice}},
            "metadata": metadata,
        })
    }

    fn speech_chunks(&self, text: &str) -> (Vec<Chunk>, u64) {
        let cfg = &self.shared.config;
        let chars = text.chars().count().max(1) as u64;
        let total_ms = chars * cfg.ms_per_char;
        let frames = total_ms.div_ceil(crate::sim::audio::FRAME_MS).max(1) as usize;
        let mut synth = SpeechSynth::new();
        let mut audio = Vec::with_capacity(frames * FRAME_BYTES);
        let tags: Vec<u32> = if cfg.tag_audio {
            self.shared
                .next_tags(u32::try_from(frames).unwrap_or(u32::MAX))
                .collect()
        } else {
            Vec::new()
        };
        for i in 0..frames {
            let mut frame = synth.next_frame();
            if let Some(&id) = tags.get(i) {
                tag_frame(&mut frame, id);
            }
            audio.extend_from_slice(&frame);
        }
        let chunk_bytes = (cfg.delta_ms.max(1) * BYTES_PER_MS) as usize;
        let n = audio.len().div_ceil(chunk_bytes);
        let texts = split_text(text, n);
        let frames_per_chunk = chunk_bytes.div_ceil(FRAME_BYTES).max(1);
        let chunks = audio
            .chunks(chunk_bytes)
            .zip(texts)
            .enumerate()
            .map(|(i, (bytes, text))| {
                let from = (i * chunk_bytes / FRAME_BYTES).min(tags.len());
                let to = (from + frames_per_chunk).min(tags.len());
                Chunk {
                    audio_b64: STANDARD.encode(bytes),
                    bytes: bytes.len() as u64,
                    text,
                    tags: tags[from..to].to_vec(),
                }
            })
            .collect();
        (chunks, audio.len() as u64 / BYTES_PER_MS)
    }

    /// Starts a response: `plan` or, when `None`, the pending script reply.
    pub fn start_response(&mut self, plan: Option<Plan>, metadata: Value, now: Instant) {
        let plan = plan.unwrap_or_else(|| self.take_plan());
        let id = new_id("resp");
        let item_id = new_id("item");
        self.responses += 1;
        let created = self.response_object(&id, "in_progress", &metadata);
        self.emit(json!({"type": "response.created", "response": created}));
        let remaining_requests = 5000_u64.saturating_sub(self.responses);
        let remaining_tokens = 40_000_u64.saturating_sub(self.tokens_used);
        self.emit(json!({
            "type": "rate_limits.updated",
            "rate_limits": [
                {"name": "requests", "limit": 5000, "remaining": remaining_requests, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 40000, "remaining": remaining_tokens, "reset_seconds": 0.6},
            ]
        }));
        let text_only = self.eff.text_only;
        let (item, body, record_text, total_ms, kind) = match plan {
            Plan::Speech(text) => {
                let item = json!({
                    "id": item_id, "object": "realtime.item", "type": "message",
                    "status": "in_progress", "role": "assistant", "content": [],
                });
                let (chunks, total_ms) = if text_only {
                    let pieces = split_text(&text, text.chars().count().div_ceil(20).max(1));
                    let chunks = pieces
                        .into_iter()
                        .map(|text| Chunk {
                            audio_b64: String::new(),
                            bytes: 0,
                            text,
                            tags: Vec::new(),
                        })
                        .collect();
                    (chunks, 0)
                } else {
                    self.speech_chunks(&text)
                };
                let body = Body::Speech {
                    text: text.clone(),
                    chunks,
                    next: 0,
                    said: String::new(),
                    sent_bytes: 0,
                };
                (item, body, text, total_ms, "message")
            }
            Plan::Tool {
                name,
                arguments,
                then,
                call_id,
            } => {
                let call_id = call_id.unwrap_or_else(|| new_id("call"));
                let item = json!({
                    "id": item_id, "object": "realtime.item", "type": "function_call",
                    "status": "in_progress", "call_id": call_id, "name": name, "arguments": "",
                });
                let pieces = split_text(&arguments, 3)
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect();
                let body = Body::Tool {
                    name: name.clone(),
                    call_id,
                    arguments,
                    pieces,
                    next: 0,
                    then,
                    args_done: false,
                };
                (item, body, name, 0, "function_call")
            }
        };
        self.emit(json!({
            "type": "response.output_item.added",
            "response_id": id, "output_index": 0, "item": item,
        }));
        let previous = self.last_item_id.replace(item_id.clone());
        self.emit(json!({
            "type": "conversation.item.added",
            "previous_item_id": previous, "item": item,
        }));
        if matches!(body, Body::Speech { .. }) {
            let part = if text_only {
                json!({"type": "text", "text": ""})
            } else {
                json!({"type": "audio", "transcript": ""})
            };
            self.emit(json!({
                "type": "response.content_part.added",
                "response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0,
                "part": part,
            }));
        }
        let item_kind = if kind == "message" {
            ItemKind::Assistant
        } else {
            ItemKind::FunctionCall
        };
        self.items.push(ItemRecord {
            id: item_id.clone(),
            kind: item_kind,
            audio_ms: 0,
            value: item,
        });
        let record = ResponseRecord {
            id: id.clone(),
            item_id: item_id.clone(),
            kind: kind.to_owned(),
            text: record_text,
            said: String::new(),
            status: "in_progress".into(),
            reason: None,
            deltas_sent: 0,
            audio_ms_sent: 0,
            audio_ms_total: total_ms,
        };
        self.snap(|s| {
            s.responses_started += 1;
            s.responses.push(record);
        });
        let latency = lock(&self.shared.settings).response_latency;
        let cfg = &self.shared.config;
        let interval = if cfg.speed.is_finite() && cfg.speed > 0.0 {
            Duration::from_secs_f64(cfg.delta_ms as f64 / 1000.0 / cfg.speed)
        } else {
            Duration::ZERO
        };
        self.active = Some(Active {
            id,
            item_id,
            next_at: now + latency,
            interval,
            metadata,
            text_only,
            body,
        });
    }

    /// Sends the next delta(s) that are due; finishes the response after the last.
    pub fn step_response(&mut self, now: Instant) {
        let Some(mut active) = self.active.take() else {
            return;
        };
        while active.next_at <= now {
            match self.step_once(&mut active) {
                Step::Finished => {
                    self.finish(active);
                    if self.queued_auto && self.active.is_none() {
                        self.queued_auto = false;
                        self.start_response(None, Value::Null, now);
                    }
                    return;
                }
                Step::Wait(delay) => {
                    active.next_at = now + delay;
                    break;
                }
                Step::Continue => {}
            }
            active.next_at += active.interval;
            if active.interval.is_zero() {
                break;
            }
        }
        self.active = Some(active);
    }

    /// Sends one delta (or, after the last argument delta, `arguments.done`).
    fn step_once(&mut self, active: &mut Active) -> Step {
        let (id, item_id) = (active.id.clone(), active.item_id.clone());
        match &mut active.body {
            Body::Speech {
                chunks,
                next,
                said,
                sent_bytes,
                ..
            } => {
                let Some(chunk) = chunks.get(*next) else {
                    return Step::Finished;
                };
                *next += 1;
                let last = *next >= chunks.len();
                let ids = json!({"response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0});
                let mut events = Vec::new();
                if active.text_only {
                    let mut e = ids.clone();
                    e["type"] = json!("response.output_text.delta");
                    e["delta"] = json!(chunk.text);
                    events.push(e);
                } else {
                    let mut e = ids.clone();
                    e["type"] = json!("response.output_audio.delta");
                    e["delta"] = json!(chunk.audio_b64);
                    events.push(e);
                    if !chunk.text.is_empty() {
                        let mut t = ids;
                        t["type"] = json!("response.output_audio_transcript.delta");
                        t["delta"] = json!(chunk.text);
                        events.push(t);
                    }
                }
                said.push_str(&chunk.text);
                *sent_bytes += chunk.bytes;
                let audio_ms = *sent_bytes / BYTES_PER_MS;
                let tags = chunk.tags.clone();
                let said_now = said.clone();
                for e in events {
                    self.emit(e);
                }
                let sent_at = Instant::now();
                self.shared.tags_sent(&tags, sent_at);
                if let Some(observer) = &self.shared.config.tag_observer
                    && !tags.is_empty()
                {
                    observer.output_tags_sent(self.index, &tags, sent_at);
                }
                if let Some(item) = self.item_mut(&item_id) {
                    item.audio_ms = audio_ms;
                }
                self.snap(|s| {
                    if let Some(r) = s.responses.iter_mut().find(|r| r.id == id) {
                        r.deltas_sent += 1;
                        r.audio_ms_sent = audio_ms;
                        r.said = said_now;
                    }
                });
                if last { Step::Finished } else { Step::Continue }
            }
            Body::Tool {
                name,
                call_id,
                arguments,
                pieces,
                next,
                then,
                args_done,
            } => {
                if *args_done {
                    return Step::Finished;
                }
                if let Some(piece) = pieces.get(*next) {
                    let event = json!({
                        "type": "response.function_call_arguments.delta",
                        "response_id": id, "item_id": item_id, "output_index": 0,
                        "call_id": call_id, "delta": piece,
                    });
                    *next += 1;
                    self.emit(event);
                    return Step::Continue;
                }
                // The client may answer the call from here on, but `response.done`
                // trails (as on the real service): a `response.create` sent before it is
                // refused with `conversation_already_has_active_response`.
                *args_done = true;
                self.emit(json!({
                    "type": "response.function_call_arguments.done",
                    "response_id": id, "item_id": item_id, "output_index": 0,
                    "call_id": call_id, "name": name, "arguments": arguments,
                }));
                let record = ToolCallRecord {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                    output: None,
                };
                self.snap(|s| s.tool_calls.push(record));
                self.awaiting_tool = Some((call_id.clone(), then.clone()));
                Step::Wait(self.shared.config.tool_done_delay)
            }
        }
    }

    fn usage(&self, text: &str, audio_ms: u64) -> Value {
        let text_out = text.len() as u64 / 4 + 1;
        let audio_out = audio_ms / 50;
        let text_in = 40 + self.eff.instructions_len as u64 / 4 + 12 * self.turn as u64;
        let audio_in = self.vad.position_ms() / 100;
        let input = text_in + audio_in;
        let output = text_out + audio_out;
        json!({
            "total_tokens": input + output,
            "input_tokens": input,
            "output_tokens": output,
            "input_token_details": {
                "text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        })
    }

    /// Closes the response: `completed` (`reason` `None`) or `cancelled`.
    fn close_response(&mut self, active: Active, reason: Option<&str>) {
        let (id, item_id) = (active.id.clone(), active.item_id.clone());
        let item_status = if reason.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let ids =
            json!({"response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0});
        let (item, text, audio_ms, said_text) = match active.body {
            Body::Speech {
                text,
                said,
                sent_bytes,
                ..
            } => {
                let transcript = if reason.is_some() { said.clone() } else { text };
                if active.text_only {
                    let mut done = ids.clone();
                    done["type"] = json!("response.output_text.done");
                    done["text"] = json!(transcript);
                    self.emit(done);
                } else {
                    let mut audio_done = ids.clone();
                    audio_done["type"] = json!("response.output_audio.done");
                    self.emit(audio_done);
                    let mut t_done = ids.clone();
                    t_done["type"] = json!("response.output_audio_transcript.done");
                    t_done["transcript"] = json!(transcript);
                    self.emit(t_done);
                }
                let (part, content) = if active.text_only {
                    (
                        json!({"type": "text", "text": transcript}),
                        json!({"type": "output_text", "text": transcript}),
                    )
                } else {
                    (
                        json!({"type": "audio", "transcript": transcript}),
                        json!({"type": "output_audio", "transcript": transcript}),
                    )
                };
                let mut part_done = ids;
                part_done["type"] = json!("response.content_part.done");
                part_done["part"] = part;
                self.emit(part_done);
                let item = json!({
                    "id": item_id, "object": "realtime.item", "type": "message",
                    "status": item_status, "role": "assistant", "content": [content],
                });
                (
                    item,
                    transcript.clone(),
                    sent_bytes / BYTES_PER_MS,
                    Some(transcript),
                )
            }
            Body::Tool {
                name,
                call_id,
                arguments,
                args_done,
                ..
            } => {
                let args = if args_done { arguments } else { String::new() };
                let item = json!({
                    "id": item_id, "object": "realtime.item", "type": "function_call",
                    "status": item_status, "call_id": call_id, "name": name, "arguments": args,
                });
                (item, args, 0, None)
            }
        };
        self.emit(json!({
            "type": "response.output_item.done",
            "response_id": id, "output_index": 0, "item": item,
        }));
        let previous = self
            .items
            .iter()
            .position(|i| i.id == item_id)
            .and_then(|p| p.checked_sub(1))
            .and_then(|p| self.items.get(p))
            .map(|i| i.id.clone());
        self.emit(json!({
            "type": "conversation.item.done",
            "previous_item_id": previous, "item": item,
        }));
        if let Some(record) = self.item_mut(&item_id) {
            record.value = item.clone();
        }
        let usage = self.usage(&text, audio_ms);
        self.tokens_used += usage["total_tokens"].as_u64().unwrap_or(0);
        let status = if reason.is_some() {
            "cancelled"
        } else {
            "completed"
        };
        let mut response = self.response_object(&id, status, &active.metadata);
        response["output"] = json!([item]);
        response["usage"] = usage;
        if let Some(reason) = reason {
            response["status_details"] = json!({"type": "cancelled", "reason": reason});
        }
        self.emit(json!({"type": "response.done", "response": response}));
        let reason = reason.map(str::to_owned);
        self.snap(|s| {
            if reason.is_some() {
                s.responses_cancelled += 1;
            } else {
                s.responses_completed += 1;
                if let Some(t) = said_text {
                    s.said.push(t);
                }
            }
            if let Some(r) = s.responses.iter_mut().find(|r| r.id == id) {
                r.status = status.to_owned();
                r.reason = reason;
            }
        });
    }

    fn finish(&mut self, active: Active) {
        self.close_response(active, None);
    }

    /// Cancels the active response (`turn_detected` or `client_cancelled`).
    pub fn cancel_active(&mut self, reason: &str) {
        if let Some(active) = self.active.take() {
            self.close_response(active, Some(reason));
        }
        self.queued_auto = false;
    }
}

#[cfg(test)]
mod tests {
    use super::split_text;

    #[test]
    fn split_text_keeps_every_char_in_order() {
        let pieces = split_text("héllo wörld", 4);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces.concat(), "héllo wörld");
        assert_eq!(split_text("ab", 5).concat(), "ab");
        assert_eq!(split_text("", 0), vec![String::new()]);
    }
}
