//! The three media tasks of a call; audio never passes through the actor's mailbox.
//!
//! - The **Twilio reader** forwards caller audio straight to the AI sender (bounded; a full
//!   queue drops and counts), accounts mark echoes in the shared [`Playback`] (telling the
//!   actor only when a drain it waits for happened), and casts the few control events (key
//!   presses, `stop`, the socket going away).
//! - The **AI reader** forwards model audio straight to the Twilio writer with a mark after
//!   each delta, and at barge-in (`speech_started` while audio plays) sends Twilio's `clear`
//!   itself, on the writer's priority lane, before the actor hears of it; it casts only the
//!   control events the conversation needs ([`AiEvent`]), never a per-delta message.
//! - The **Twilio writer** is the only owner of the socket's write half: bounded, with a stall
//!   deadline, a priority lane for `clear` (audio queued before a barge-in is discarded, not
//!   played after the clear), a close, and (fault injection) a reset that drops the socket
//!   without a close frame. When the actor dies without closing, the writer
//!   waits for the call supervisor to record the failure (its release) before it closes the
//!   socket, so the `stream-ended` that follows finds the fallback recorded.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use metrics::{counter, histogram};
use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tracing::Instrument as _;

use super::conversation::{AiEvent, Interruption};
use super::playback::{DeltaVerdict, MarkEcho, Playback, mark_name};
use super::{CallMsg, TwilioFrame, TwilioIncoming, TwilioOut, TwilioOutgoing};
use crate::ending::EndReason;
use crate::media::TwilioInbound;
use crate::realtime::{RealtimeReceiver, RealtimeSender, ServerEvent, TrySendError};

/// Largest caller frame accepted (Twilio sends 160-byte frames).
const MAX_FRAME_BYTES: usize = 8 * 1024;
/// How long a dead actor's writer waits for the supervisor before closing anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room of the writer's priority lane.
const URGENT_QUEUE: usize = 8;

/// Whether `payload` is base64 of at most [`MAX_FRAME_BYTES`] bytes (checked without
/// allocating; the string itself is forwarded untouched).
fn valid_audio(payload: &str) -> bool {
    let mut buf = [0u8; MAX_FRAME_BYTES];
    !payload.is_empty() && STANDARD.decode_slice(payload, &mut buf).is_ok()
}

/// Decoded length of a base64 string (its audio duration is this / 8 ms).
fn decoded_len(b64: &str) -> usize {
    let pad = b64.bytes().rev().take_while(|b| *b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(pad)
}

/// A frame queued for the Twilio writer.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// Model audio of playback `epoch`, and when its delta arrived from the model.
    Media {
        /// The `media` message.
        text: String,
        /// When the delta arrived.
        received: Instant,
        /// Its playback epoch.
        epoch: u64,
    },
    /// The mark after audio of playback `epoch`.
    Mark {
        /// The `mark` message.
        text: String,
        /// Its playback epoch.
        epoch: u64,
    },
    /// Barge-in: Twilio's `clear`; audio of epochs before `epoch` still queued is discarded.
    Clear {
        /// The `clear` message.
        text: String,
        /// The epoch that starts with it.
        epoch: u64,
    },
    /// Close the socket.
    Close {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// Drop the socket at once, without a close frame (fault injection: a network reset;
    /// sent on the priority lane).
    Reset,
}

/// The queues of the Twilio writer.
#[derive(Clone)]
pub(super) struct TwilioQueue {
    /// Audio, marks and control messages, in order.
    pub normal: mpsc::Sender<Outgoing>,
    /// `clear`, ahead of everything queued.
    pub urgent: mpsc::Sender<Outgoing>,
}

#[derive(Serialize)]
struct MediaFrame<'a> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    media: Payload<'a>,
}

#[derive(Serialize)]
struct Payload<'a> {
    payload: &'a str,
}

#[derive(Serialize)]
#[serde(bound(serialize = "N: std::fmt::Display"))]
struct MarkFrame<'a, N: std::fmt::Display> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    mark: MarkBody<N>,
}

struct MarkBody<N>(N);

impl<N: std::fmt::Display> Serialize for MarkBody<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("name", &format_args!("{}", self.0))?;
        map.end()
    }
}

/// The `media` message of `payload` (one allocation: the message itself).
fn media_text(stream_sid: &str, payload: &str) -> String {
    let mut out = Vec::with_capacity(payload.len() + stream_sid.len() + 64);
    let frame = MediaFrame {
        event: "media",
        stream_sid,
        media: Payload { payload },
    };
    if serde_json::to_writer(&mut out, &frame).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The `mark` message after audio of `item` (one allocation: the message itself).
fn mark_text(stream_sid: &str, epoch: u64, cumulative_ms: u64, item: &str) -> String {
    let mut out = Vec::with_capacity(stream_sid.len() + item.len() + 80);
    let frame = MarkFrame {
        event: "mark",
        stream_sid,
        mark: MarkBody(mark_name(epoch, cumulative_ms, item)),
    };
    if serde_json::to_writer(&mut out, &frame).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The `clear` message.
fn clear_text(stream_sid: &str) -> String {
    let mut out = Vec::with_capacity(stream_sid.len() + 40);
    let _ = write!(out, r#"{{"event":"clear","streamSid":"#);
    let _ = serde_json::to_writer(&mut out, stream_sid);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// What the writer needs besides its queues.
pub(super) struct WriterArgs {
    pub sink: TwilioOutgoing,
    pub write_timeout: Duration,
    pub actor: ActorRef<CallMsg>,
    /// Fired (or dropped) by the call supervisor once a dead actor's failure is recorded.
    pub release: oneshot::Receiver<()>,
}

/// Spawns the Twilio writer; returns its queues. It ends on `Close`, on a write failure or
/// stall (telling the actor, which ends the call), or, when every sender is gone without a
/// `Close` (the actor died), after the supervisor's release, with a 1011 close.
pub(super) fn spawn_twilio_writer(
    args: WriterArgs,
    capacity: usize,
    span: tracing::Span,
) -> TwilioQueue {
    let (normal, rx) = mpsc::channel(capacity.max(8));
    let (urgent, urgent_rx) = mpsc::channel(URGENT_QUEUE);
    tokio::spawn(write_loop(args, rx, urgent_rx).instrument(span));
    TwilioQueue { normal, urgent }
}

async fn write_loop(
    args: WriterArgs,
    mut rx: mpsc::Receiver<Outgoing>,
    mut urgent: mpsc::Receiver<Outgoing>,
) {
    let WriterArgs {
        mut sink,
        write_timeout,
        actor,
        release,
    } = args;
    let mut floor = 0_u64;
    let mut urgent_open = true;
    let closing = loop {
        let next = tokio::select! {
            biased;
            out = urgent.recv(), if urgent_open => match out {
                Some(out) => Some(out),
                None => {
                    urgent_open = false;
                    continue;
                }
            },
            out = rx.recv() => out,
        };
        let Some(out) = next else {
            break None;
        };
        let (out, received) = match out {
            Outgoing::Media {
                text,
                received,
                epoch,
            } => {
                if epoch < floor {
                    counter!("media_frames_dropped_total", "leg" => "interrupted").increment(1);
                    continue;
                }
                (TwilioOut::Media(text, received), Some(received))
            }
            Outgoing::Mark { text, epoch } => {
                if epoch < floor {
                    continue;
                }
                (TwilioOut::Text(text), None)
            }
            Outgoing::Clear { text, epoch } => {
                floor = floor.max(epoch);
                (TwilioOut::Text(text), None)
            }
            Outgoing::Close { code, reason } => break Some(TwilioOut::Close { code, reason }),
            // The write half goes without a word; the reader's half is aborted by the actor.
            Outgoing::Reset => return,
        };
        match tokio::time::timeout(write_timeout, sink.send(out)).await {
            Ok(Ok(())) => {
                if let Some(received) = received {
                    histogram!("relay_latency_seconds", "direction" => "ai_to_caller")
                        .record(received.elapsed().as_secs_f64());
                }
            }
            // The socket failed or stalled while the actor is alive: it is told and ends the
            // call itself. A sink that returned an error must not be used again
            // (`sink_map_err` panics when polled after its first error).
            Ok(Err(_)) => {
                let _ = actor.cast(CallMsg::TwilioGone(EndReason::TwilioWriteFailed, None));
                return;
            }
            Err(_) => {
                counter!("media_stalls_total", "leg" => "twilio").increment(1);
                let _ = actor.cast(CallMsg::TwilioGone(EndReason::TwilioStalled, None));
                return;
            }
        }
    };
    let close = match closing {
        Some(close) => close,
        None => {
            // The actor is gone without closing: it died. The supervisor records the failure
            // (the fallback included) and then releases the socket; Twilio's `stream-ended`
            // then finds what to do.
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, release).await;
            TwilioOut::Close {
                code: 1011,
                reason: String::from("call_actor_failed"),
            }
        }
    };
    // Typically the peer already went away (a caller who closed the socket without `stop`):
    // the sink errors, and must not be polled again (see above).
    let sent = tokio::time::timeout(write_timeout, sink.send(close)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

/// The reason a Twilio socket went away, as the media route reports it.
fn gone_reason(reason: &str) -> (EndReason, Option<String>) {
    match reason {
        "socket_closed" => (EndReason::SocketClosed, None),
        "socket_error" => (EndReason::SocketError, None),
        other => (EndReason::SocketError, Some(other.to_owned())),
    }
}

/// Spawns the Twilio reader.
pub(super) fn spawn_twilio_reader(
    mut incoming: TwilioIncoming,
    actor: ActorRef<CallMsg>,
    ai: watch::Receiver<Option<RealtimeSender>>,
    playback: Arc<Mutex<Playback>>,
    span: tracing::Span,
) -> AbortHandle {
    let task = async move {
        while let Some(frame) = incoming.next().await {
            let text = match frame {
                TwilioFrame::Text(text) => text,
                TwilioFrame::Closed(reason) => {
                    let (reason, detail) = gone_reason(&reason);
                    let _ = actor.cast(CallMsg::TwilioGone(reason, detail));
                    return;
                }
            };
            match TwilioInbound::parse(&text) {
                Ok(TwilioInbound::Media { media, .. }) => {
                    if !valid_audio(&media.payload) {
                        counter!("media_bad_frames_total", "leg" => "twilio").increment(1);
                        continue;
                    }
                    let sent = ai
                        .borrow()
                        .as_ref()
                        .map(|tx| tx.try_send_audio(&media.payload));
                    match sent {
                        Some(Ok(())) => {
                            counter!("media_frames_total", "leg" => "twilio", "direction" => "inbound").increment(1);
                        }
                        Some(Err(TrySendError::Full)) | Some(Err(TrySendError::Closed)) | None => {
                            counter!("media_frames_dropped_total", "leg" => "ai").increment(1);
                        }
                    }
                }
                Ok(TwilioInbound::Mark { mark, .. }) => {
                    let echo = playback
                        .lock()
                        .map(|mut p| p.on_mark(&mark.name, Instant::now()))
                        .unwrap_or(MarkEcho::Ignored);
                    if echo == MarkEcho::Drained {
                        let _ = actor.cast(CallMsg::PlaybackDrained);
                    }
                }
                Ok(TwilioInbound::Dtmf { dtmf, .. }) => {
                    let _ = actor.cast(CallMsg::Dtmf(dtmf.digit));
                }
                Ok(TwilioInbound::Stop { .. }) => {
                    let _ = actor.cast(CallMsg::Stop);
                    return;
                }
                Ok(TwilioInbound::Unknown) => {
                    counter!("media_unknown_events_total", "leg" => "twilio").increment(1);
                }
                Ok(TwilioInbound::Connected { .. } | TwilioInbound::Start { .. }) => {
                    counter!("media_unexpected_events_total", "leg" => "twilio").increment(1);
                }
                Err(_) => {
                    counter!("media_bad_frames_total", "leg" => "twilio").increment(1);
                }
            }
        }
        let _ = actor.cast(CallMsg::TwilioGone(EndReason::SocketClosed, None));
    };
    tokio::spawn(task.instrument(span)).abort_handle()
}

/// What the AI reader of one connection needs.
pub(super) struct AiReader {
    pub rx: RealtimeReceiver,
    pub actor: ActorRef<CallMsg>,
    pub generation: u64,
    pub twilio: TwilioQueue,
    pub stream_sid: Arc<str>,
    pub playback: Arc<Mutex<Playback>>,
}

/// Spawns the AI reader of connection `generation`.
pub(super) fn spawn_ai_reader(reader: AiReader, span: tracing::Span) -> AbortHandle {
    tokio::spawn(ai_loop(reader).instrument(span)).abort_handle()
}

async fn ai_loop(reader: AiReader) {
    let AiReader {
        mut rx,
        actor,
        generation,
        twilio,
        stream_sid,
        playback,
    } = reader;
    while let Some(event) = rx.recv().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                counter!("ai_bad_events_total").increment(1);
                tracing::debug!(error = %error, "unreadable ai event");
                continue;
            }
        };
        match event {
            ServerEvent::AudioDelta(d) => {
                let received = Instant::now();
                // Room for the frame and its mark first: a frame that cannot be queued is
                // dropped before playback counts it as sent, so the barge-in accounting (sent
                // and played milliseconds) stays exact under back-pressure.
                let Ok(mut permits) = twilio.normal.try_reserve_many(2) else {
                    let interrupted = playback
                        .lock()
                        .map(|p| p.was_dropped(&d.response_id))
                        .unwrap_or(false);
                    let leg = if interrupted { "interrupted" } else { "twilio" };
                    counter!("media_frames_dropped_total", "leg" => leg).increment(1);
                    continue;
                };
                let verdict = match playback.lock() {
                    Ok(mut p) => p.on_delta(&d.response_id, &d.item_id, decoded_len(&d.delta)),
                    Err(_) => DeltaVerdict::Drop,
                };
                match verdict {
                    DeltaVerdict::Drop => {
                        counter!("media_frames_dropped_total", "leg" => "interrupted").increment(1);
                    }
                    DeltaVerdict::Forward {
                        epoch,
                        cumulative_ms,
                        first_of_item,
                    } => {
                        if let Some(permit) = permits.next() {
                            permit.send(Outgoing::Media {
                                text: media_text(&stream_sid, &d.delta),
                                received,
                                epoch,
                            });
                            counter!("media_frames_total", "leg" => "ai", "direction" => "outbound").increment(1);
                        }
                        if let Some(permit) = permits.next() {
                            permit.send(Outgoing::Mark {
                                text: mark_text(&stream_sid, epoch, cumulative_ms, &d.item_id),
                                epoch,
                            });
                        }
                        if first_of_item {
                            let _ =
                                actor.cast(CallMsg::FirstAudio(d.item_id.clone(), Instant::now()));
                        }
                    }
                }
            }
            ServerEvent::SpeechStarted(_) => {
                let seen = Instant::now();
                let cut = playback.lock().ok().and_then(|mut p| {
                    let cut = p.interrupt(seen)?;
                    Some((cut, p.epoch()))
                });
                if let Some((cut, epoch)) = cut {
                    // The clear leaves now, ahead of any audio still queued (which the writer
                    // discards); the actor truncates the item when it hears of it.
                    let clear = Outgoing::Clear {
                        text: clear_text(&stream_sid),
                        epoch,
                    };
                    if twilio.urgent.send(clear).await.is_ok() {
                        histogram!("bargein_clear_seconds").record(seen.elapsed().as_secs_f64());
                        let _ = actor.cast(CallMsg::BargeIn(Interruption {
                            item_id: cut.item_id,
                            heard_ms: cut.audio_end_ms,
                            sent_ms: cut.sent_ms,
                        }));
                    }
                }
                let _ = actor.cast(CallMsg::Ai(generation, AiEvent::SpeechStarted));
            }
            ServerEvent::Unknown { kind } => {
                tracing::debug!(kind = %kind, "unknown ai event");
            }
            // Deltas of transcripts and text, item and content-part events: nothing the
            // conversation needs, and never a message per delta.
            other => {
                if let Some(event) = AiEvent::from_server(other) {
                    let _ = actor.cast(CallMsg::Ai(generation, event));
                }
            }
        }
    }
    let reason = rx
        .close_info()
        .map_or_else(|| String::from("closed"), |c| format!("{c:?}"));
    let _ = actor.cast(CallMsg::AiClosed(generation, reason));
}

#[cfg(test)]
mod tests;
