//! The three media tasks of a call; audio never passes through the actor's mailbox.
//!
//! - The **Twilio reader** forwards caller audio straight to the AI sender (bounded; a full
//!   queue drops and counts; audio that comes before a model session is ready is kept, up to
//!   [`EARLY_AUDIO_FRAMES`], and sent as soon as one is), accounts mark echoes in the shared
//!   [`Playback`] (telling the actor only when a drain it waits for happened), and casts the
//!   few control events (key presses, `stop`, the socket going away).
//! - The **AI reader** forwards model audio straight to the Twilio writer with a mark after
//!   each delta, and at barge-in (`speech_started` while audio plays) sends Twilio's `clear`
//!   itself, on the writer's priority lane, before the actor hears of it; it casts only the
//!   control events the conversation needs ([`AiEvent`]), never a per-delta message.
//! - The **Twilio writer** is the only owner of the socket's write half: bounded, with a stall
//!   deadline, a priority lane for `clear` (audio queued before a barge-in is discarded, not
//!   played after the clear), a close, and (fault injection) a reset that drops the socket
//!   without a close frame; it flushes when its queues are empty, not after each message.
//!   When the actor dies without closing, the writer waits for the call supervisor to
//!   record the failure (its release) before it closes the socket, so the `stream-ended`
//!   that follows finds the fallback recorded.
//!
//! What each does per frame is `call/frames.rs`; their metrics are handles registered once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use metrics::{Counter, Histogram, counter, histogram};
use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tracing::Instrument as _;

use super::conversation::{AiEvent, Interruption};
use super::frames::{
    AiFrame, AudioDeltaRef, CallerFrame, clear_text, decoded_len, mark_text, media_text, sniff_ai,
    sniff_caller, valid_audio,
};
use super::playback::{DeltaVerdict, MarkEcho, Playback};
use super::{CallMsg, TwilioFrame, TwilioIncoming, TwilioOut, TwilioOutgoing};
use crate::ending::EndReason;
use crate::media::TwilioInbound;
use crate::realtime::{RealtimeReceiver, RealtimeSender, ServerEvent, TrySendError};

/// How long a dead actor's writer waits for the supervisor before closing anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room of the writer's priority lane.
const URGENT_QUEUE: usize = 8;
/// Media frames the Twilio writer feeds before it flushes even though more are queued.
const MAX_UNFLUSHED: usize = 32;
/// Caller frames kept while no model session is ready (2 s of 20 ms frames), sent once it
/// is; beyond that the oldest is dropped and counted.
pub(super) const EARLY_AUDIO_FRAMES: usize = 100;

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

/// Why the writer stopped writing to a live call's socket.
enum WriteFailure {
    /// The sink returned an error: it must not be used again (`sink_map_err` panics when
    /// polled after its first error).
    Failed,
    /// A write or flush did not finish within the stall deadline.
    Stalled,
}

/// The writer's metric handles, registered once per call.
struct WriterMetrics {
    interrupted: Counter,
    stalls: Counter,
    latency: Histogram,
}

impl WriterMetrics {
    fn new() -> Self {
        Self {
            interrupted: counter!("media_frames_dropped_total", "leg" => "interrupted"),
            stalls: counter!("media_stalls_total", "leg" => "twilio"),
            latency: histogram!("relay_latency_seconds", "direction" => "ai_to_caller"),
        }
    }
}

/// Messages are fed to the socket as they come and flushed only when both queues are empty
/// (one write for a burst, not one per message), or after [`MAX_UNFLUSHED`] media frames
/// when they never are; the relay latency of model audio is
/// recorded once its flush is done. Every feed and flush has the stall deadline.
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
    let metrics = WriterMetrics::new();
    let mut floor = 0_u64;
    let mut urgent_open = true;
    // Fed and not yet flushed: whether anything is, and when each media frame's delta came.
    let mut unflushed = false;
    let mut pending_latency: Vec<Instant> = Vec::new();
    let closing = loop {
        let idle = rx.is_empty() && urgent.is_empty();
        if unflushed && (idle || pending_latency.len() >= MAX_UNFLUSHED) {
            if let Err(failure) = bounded(write_timeout, sink.flush()).await {
                return writer_failed(failure, &metrics, &actor);
            }
            unflushed = false;
            for received in pending_latency.drain(..) {
                metrics.latency.record(received.elapsed().as_secs_f64());
            }
        }
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
                    metrics.interrupted.increment(1);
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
        // The socket failed or stalled while the actor is alive: it is told and ends the
        // call itself.
        if let Err(failure) = bounded(write_timeout, sink.feed(out)).await {
            return writer_failed(failure, &metrics, &actor);
        }
        unflushed = true;
        pending_latency.extend(received);
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
    // the sink errors, and must not be polled again (see above). `send` flushes what was
    // fed before the close too.
    let sent = tokio::time::timeout(write_timeout, sink.send(close)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

/// `write` within the stall deadline.
async fn bounded<F>(deadline: Duration, write: F) -> Result<(), WriteFailure>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailure::Failed),
        Err(_) => Err(WriteFailure::Stalled),
    }
}

/// Tells the actor, which ends the call; the sink is not touched again.
fn writer_failed(failure: WriteFailure, metrics: &WriterMetrics, actor: &ActorRef<CallMsg>) {
    let reason = match failure {
        WriteFailure::Failed => EndReason::TwilioWriteFailed,
        WriteFailure::Stalled => {
            metrics.stalls.increment(1);
            EndReason::TwilioStalled
        }
    };
    let _ = actor.cast(CallMsg::TwilioGone(reason, None));
}

/// The reason a Twilio socket went away, as the media route reports it.
fn gone_reason(reason: &str) -> (EndReason, Option<String>) {
    match reason {
        "socket_closed" => (EndReason::SocketClosed, None),
        "socket_error" => (EndReason::SocketError, None),
        other => (EndReason::SocketError, Some(other.to_owned())),
    }
}

/// The Twilio reader's metric handles, registered once per call.
struct ReaderMetrics {
    relayed: Counter,
    dropped: Counter,
    early: Counter,
    bad: Counter,
    unknown: Counter,
    unexpected: Counter,
}

impl ReaderMetrics {
    fn new() -> Self {
        Self {
            relayed: counter!("media_frames_total", "leg" => "twilio", "direction" => "inbound"),
            dropped: counter!("media_frames_dropped_total", "leg" => "ai"),
            early: counter!("media_frames_early_total", "leg" => "twilio"),
            bad: counter!("media_bad_frames_total", "leg" => "twilio"),
            unknown: counter!("media_unknown_events_total", "leg" => "twilio"),
            unexpected: counter!("media_unexpected_events_total", "leg" => "twilio"),
        }
    }
}

/// Caller audio on its way to the model session: straight to its sender when one is ready,
/// otherwise kept (bounded, oldest dropped) until one is.
struct CallerAudio {
    ai: watch::Receiver<Option<RealtimeSender>>,
    early: VecDeque<String>,
    metrics: ReaderMetrics,
}

impl CallerAudio {
    /// Relays one validated base64 payload (after any kept before it).
    fn relay(&mut self, payload: &str) {
        let ai = self.ai.borrow_and_update();
        match ai.as_ref() {
            Some(tx) => {
                for early in self.early.drain(..) {
                    send_audio(tx, &early, &self.metrics);
                }
                send_audio(tx, payload, &self.metrics);
            }
            None => {
                if self.early.len() == EARLY_AUDIO_FRAMES {
                    self.early.pop_front();
                    self.metrics.dropped.increment(1);
                }
                self.early.push_back(payload.to_owned());
                self.metrics.early.increment(1);
            }
        }
    }

    /// A model session may be ready: sends what was kept, in order.
    fn flush(&mut self) {
        let ai = self.ai.borrow_and_update();
        if let Some(tx) = ai.as_ref() {
            for early in self.early.drain(..) {
                send_audio(tx, &early, &self.metrics);
            }
        }
    }
}

fn send_audio(tx: &RealtimeSender, payload: &str, metrics: &ReaderMetrics) {
    match tx.try_send_audio(payload) {
        Ok(()) => metrics.relayed.increment(1),
        Err(TrySendError::Full | TrySendError::Closed) => metrics.dropped.increment(1),
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
        let mut audio = CallerAudio {
            ai,
            early: VecDeque::new(),
            metrics: ReaderMetrics::new(),
        };
        loop {
            let frame = tokio::select! {
                biased;
                // Audio kept before the model session was ready leaves as soon as it is.
                changed = audio.ai.changed(), if !audio.early.is_empty() => {
                    if changed.is_ok() {
                        audio.flush();
                    } else {
                        audio.early.clear();
                    }
                    continue;
                }
                frame = incoming.next() => frame,
            };
            let Some(frame) = frame else {
                break;
            };
            let text = match frame {
                TwilioFrame::Text(text) => text,
                TwilioFrame::Closed(reason) => {
                    let (reason, detail) = gone_reason(&reason);
                    let _ = actor.cast(CallMsg::TwilioGone(reason, detail));
                    return;
                }
            };
            // Media and mark echoes (the hot path) are read borrowed; the rest in full.
            match sniff_caller(text.as_str()) {
                Ok(CallerFrame::Media(payload)) => {
                    if valid_audio(payload.as_str()) {
                        audio.relay(payload.as_str());
                    } else {
                        audio.metrics.bad.increment(1);
                    }
                    continue;
                }
                Ok(CallerFrame::Mark(name)) => {
                    let echo = playback
                        .lock()
                        .map(|mut p| p.on_mark(name.as_str(), Instant::now()))
                        .unwrap_or(MarkEcho::Ignored);
                    if echo == MarkEcho::Drained {
                        let _ = actor.cast(CallMsg::PlaybackDrained);
                    }
                    continue;
                }
                Ok(CallerFrame::Other) | Err(_) => {}
            }
            match TwilioInbound::parse(text.as_str()) {
                Ok(TwilioInbound::Dtmf { dtmf, .. }) => {
                    let _ = actor.cast(CallMsg::Dtmf(dtmf.digit));
                }
                Ok(TwilioInbound::Stop { .. }) => {
                    let _ = actor.cast(CallMsg::Stop);
                    return;
                }
                Ok(TwilioInbound::Unknown) => audio.metrics.unknown.increment(1),
                Ok(TwilioInbound::Connected { .. } | TwilioInbound::Start { .. }) => {
                    audio.metrics.unexpected.increment(1);
                }
                // A media or mark frame the sniff did not take is malformed.
                Ok(TwilioInbound::Media { .. } | TwilioInbound::Mark { .. }) | Err(_) => {
                    audio.metrics.bad.increment(1);
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

/// The AI reader's metric handles, registered once per connection.
struct AiMetrics {
    relayed: Counter,
    dropped: Counter,
    interrupted: Counter,
    bad: Counter,
    clear: Histogram,
}

impl AiMetrics {
    fn new() -> Self {
        Self {
            relayed: counter!("media_frames_total", "leg" => "ai", "direction" => "outbound"),
            dropped: counter!("media_frames_dropped_total", "leg" => "twilio"),
            interrupted: counter!("media_frames_dropped_total", "leg" => "interrupted"),
            bad: counter!("ai_bad_events_total"),
            clear: histogram!("bargein_clear_seconds"),
        }
    }
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
    let metrics = AiMetrics::new();
    while let Some(text) = rx.recv_text().await {
        let text = match text {
            Ok(text) => text,
            Err(error) => {
                metrics.bad.increment(1);
                tracing::debug!(error = %error, "unreadable ai event");
                continue;
            }
        };
        // Audio deltas (the hot path) are read once, borrowed; other events by their type.
        let event = match sniff_ai(text.as_str()) {
            Ok(AiFrame::Audio(delta)) => {
                forward_audio(&delta, &twilio, &stream_sid, &playback, &actor, &metrics);
                continue;
            }
            Ok(AiFrame::Other(kind)) => ServerEvent::parse_kind(kind.as_str(), text.as_str()),
            Err(_) => ServerEvent::parse(text.as_str()),
        };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                metrics.bad.increment(1);
                tracing::debug!(error = %error, "unreadable ai event");
                continue;
            }
        };
        match event {
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
                        metrics.clear.record(seen.elapsed().as_secs_f64());
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

/// Model audio to the Twilio writer, with its mark.
fn forward_audio(
    d: &AudioDeltaRef<'_>,
    twilio: &TwilioQueue,
    stream_sid: &str,
    playback: &Mutex<Playback>,
    actor: &ActorRef<CallMsg>,
    metrics: &AiMetrics,
) {
    let received = Instant::now();
    let (response_id, item_id) = (d.response_id.as_str(), d.item_id.as_str());
    // Room for the frame and its mark first: a frame that cannot be queued is dropped
    // before playback counts it as sent, so the barge-in accounting (sent and played
    // milliseconds) stays exact under back-pressure.
    let Ok(mut permits) = twilio.normal.try_reserve_many(2) else {
        let interrupted = playback
            .lock()
            .map(|p| p.was_dropped(response_id))
            .unwrap_or(false);
        if interrupted {
            metrics.interrupted.increment(1);
        } else {
            metrics.dropped.increment(1);
        }
        return;
    };
    let verdict = match playback.lock() {
        Ok(mut p) => p.on_delta(response_id, item_id, decoded_len(d.delta.as_str())),
        Err(_) => DeltaVerdict::Drop,
    };
    match verdict {
        DeltaVerdict::Drop => metrics.interrupted.increment(1),
        DeltaVerdict::Forward {
            epoch,
            cumulative_ms,
            first_of_item,
        } => {
            if let Some(permit) = permits.next() {
                permit.send(Outgoing::Media {
                    text: media_text(stream_sid, &d.delta),
                    received,
                    epoch,
                });
                metrics.relayed.increment(1);
            }
            if let Some(permit) = permits.next() {
                permit.send(Outgoing::Mark {
                    text: mark_text(stream_sid, epoch, cumulative_ms, item_id),
                    epoch,
                });
            }
            if first_of_item {
                let _ = actor.cast(CallMsg::FirstAudio(item_id.to_owned(), Instant::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
