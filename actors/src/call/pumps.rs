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

use futures::{FutureExt as _, SinkExt, StreamExt};
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

/// A control message for the media writer.
#[derive(Debug)]
pub(super) enum Outgoing {
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

/// The queues of the media writer.
#[derive(Clone)]
pub(super) struct TwilioQueue {
    /// Control messages (the close), in order.
    pub normal: mpsc::Sender<Outgoing>,
    /// The reset, ahead of everything queued.
    pub urgent: mpsc::Sender<Outgoing>,
    /// The model connections whose events the writer reads.
    pub models: mpsc::UnboundedSender<ModelCmd>,
}

/// What the actor tells the media writer about the model connection.
pub(super) enum ModelCmd {
    /// Read this connection's events from now on (the previous one, if any, is dropped).
    Attach(AiReader),
    /// Drop the current connection without reporting it (fault injection: a network reset).
    Detach,
}

/// What the writer needs besides its queues.
pub(super) struct WriterArgs {
    pub sink: TwilioOutgoing,
    pub write_timeout: Duration,
    pub actor: ActorRef<CallMsg>,
    /// Fired (or dropped) by the call supervisor once a dead actor's failure is recorded.
    pub release: oneshot::Receiver<()>,
}

/// Spawns the media writer; returns its queues. It reads the model's events itself (one task
/// from the model socket to Twilio's, no hand-off per delta). It ends on `Close`, on a write
/// failure or stall (telling the actor, which ends the call), or, when every sender is gone
/// without a `Close` (the actor died), after the supervisor's release, with a 1011 close.
pub(super) fn spawn_twilio_writer(
    args: WriterArgs,
    capacity: usize,
    span: tracing::Span,
) -> TwilioQueue {
    let (normal, rx) = mpsc::channel(capacity.max(8));
    let (urgent, urgent_rx) = mpsc::channel(URGENT_QUEUE);
    let (models, models_rx) = mpsc::unbounded_channel();
    let queues = Queues {
        normal: rx,
        urgent: urgent_rx,
        urgent_open: true,
        models: models_rx,
        models_open: true,
    };
    tokio::spawn(write_loop(args, queues).instrument(span));
    TwilioQueue {
        normal,
        urgent,
        models,
    }
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
    stalls: Counter,
    latency: Histogram,
}

impl WriterMetrics {
    fn new() -> Self {
        Self {
            stalls: counter!("media_stalls_total", "leg" => "twilio"),
            latency: histogram!("relay_latency_seconds", "direction" => "ai_to_caller"),
        }
    }
}

/// The writer's inputs besides the model socket.
struct Queues {
    normal: mpsc::Receiver<Outgoing>,
    urgent: mpsc::Receiver<Outgoing>,
    urgent_open: bool,
    models: mpsc::UnboundedReceiver<ModelCmd>,
    models_open: bool,
}

/// The model connection the writer reads.
struct Model {
    reader: AiReader,
    metrics: AiMetrics,
}

/// What the writer takes next.
enum Next {
    Model(Option<ModelCmd>),
    Urgent(Option<Outgoing>),
    Normal(Option<Outgoing>),
    Ai(Option<Result<tokio_tungstenite::tungstenite::Utf8Bytes, crate::realtime::RealtimeError>>),
}

/// The next input, by priority: the actor's model commands, the urgent lane, the normal
/// lane, then the model's events.
async fn next(queues: &mut Queues, model: &mut Option<Model>) -> Next {
    tokio::select! {
        biased;
        cmd = queues.models.recv(), if queues.models_open => Next::Model(cmd),
        out = queues.urgent.recv(), if queues.urgent_open => Next::Urgent(out),
        out = queues.normal.recv() => Next::Normal(out),
        text = model_event(model) => Next::Ai(text),
    }
}

/// The next event of the model connection; pending while there is none.
async fn model_event(
    model: &mut Option<Model>,
) -> Option<Result<tokio_tungstenite::tungstenite::Utf8Bytes, crate::realtime::RealtimeError>> {
    match model {
        Some(model) => model.reader.rx.recv_text().await,
        None => std::future::pending().await,
    }
}

/// The writer's state while the call is live.
struct Writer {
    sink: TwilioOutgoing,
    write_timeout: Duration,
    actor: ActorRef<CallMsg>,
    metrics: WriterMetrics,
    /// Fed and not yet flushed: whether anything is, and when each media frame's delta came.
    unflushed: bool,
    pending_latency: Vec<Instant>,
}

impl Writer {
    /// Feeds one message, within the stall deadline.
    async fn feed(&mut self, out: TwilioOut) -> Result<(), WriteFailure> {
        let received = match &out {
            TwilioOut::Media(_, received) => Some(*received),
            _ => None,
        };
        bounded(self.write_timeout, self.sink.feed(out)).await?;
        self.unflushed = true;
        self.pending_latency.extend(received);
        Ok(())
    }

    /// Flushes what was fed, within the stall deadline; records the relay latency of the
    /// model audio in it.
    async fn flush(&mut self) -> Result<(), WriteFailure> {
        bounded(self.write_timeout, self.sink.flush()).await?;
        self.unflushed = false;
        for received in self.pending_latency.drain(..) {
            self.metrics
                .latency
                .record(received.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Tells the actor, which ends the call; the sink is not touched again.
    fn failed(&self, failure: WriteFailure) {
        writer_failed(failure, &self.metrics, &self.actor);
    }
}

/// Messages are fed to the socket as they come and flushed only when nothing more is ready
/// (one write for a burst, not one per message), or after [`MAX_UNFLUSHED`] media frames
/// when something always is; the relay latency of model audio is recorded once its flush is
/// done. Every feed and flush has the stall deadline. The model's events are read here too:
/// audio is written with its mark as it arrives, and at barge-in the `clear` leaves at once.
async fn write_loop(args: WriterArgs, mut queues: Queues) {
    let WriterArgs {
        sink,
        write_timeout,
        actor,
        release,
    } = args;
    let mut w = Writer {
        sink,
        write_timeout,
        actor,
        metrics: WriterMetrics::new(),
        unflushed: false,
        pending_latency: Vec::new(),
    };
    let mut model: Option<Model> = None;
    let closing = loop {
        if w.unflushed && w.pending_latency.len() >= MAX_UNFLUSHED {
            if let Err(failure) = w.flush().await {
                return w.failed(failure);
            }
        }
        let input = if w.unflushed {
            match next(&mut queues, &mut model).now_or_never() {
                Some(input) => input,
                None => {
                    if let Err(failure) = w.flush().await {
                        return w.failed(failure);
                    }
                    continue;
                }
            }
        } else {
            next(&mut queues, &mut model).await
        };
        match input {
            Next::Model(Some(ModelCmd::Attach(reader))) => {
                model = Some(Model {
                    reader,
                    metrics: AiMetrics::new(),
                });
            }
            Next::Model(Some(ModelCmd::Detach)) => model = None,
            Next::Model(None) => queues.models_open = false,
            Next::Urgent(None) => queues.urgent_open = false,
            Next::Urgent(Some(out)) | Next::Normal(Some(out)) => match out {
                Outgoing::Close { code, reason } => break Some(TwilioOut::Close { code, reason }),
                // The write half goes without a word; the reader's half is aborted by the
                // actor.
                Outgoing::Reset => return,
            },
            Next::Normal(None) => break None,
            // The socket failed or stalled while the actor is alive: it is told and ends the
            // call itself.
            Next::Ai(event) => {
                if let Err(failure) = on_model_event(&mut w, &mut model, event).await {
                    return w.failed(failure);
                }
            }
        }
    };
    // The model connection is not read any longer (the actor closes its sending side).
    drop(model);
    let Writer {
        mut sink,
        write_timeout,
        ..
    } = w;
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

/// A model connection for the media writer to read.
pub(super) struct AiReader {
    pub rx: RealtimeReceiver,
    pub generation: u64,
    pub stream_sid: Arc<str>,
    pub playback: Arc<Mutex<Playback>>,
}

/// The model reader's metric handles, registered once per connection.
struct AiMetrics {
    relayed: Counter,
    interrupted: Counter,
    bad: Counter,
    clear: Histogram,
}

impl AiMetrics {
    fn new() -> Self {
        Self {
            relayed: counter!("media_frames_total", "leg" => "ai", "direction" => "outbound"),
            interrupted: counter!("media_frames_dropped_total", "leg" => "interrupted"),
            bad: counter!("ai_bad_events_total"),
            clear: histogram!("bargein_clear_seconds"),
        }
    }
}

/// One event of the model connection (or its end); an error only when writing to Twilio
/// failed.
async fn on_model_event(
    w: &mut Writer,
    model: &mut Option<Model>,
    event: Option<
        Result<tokio_tungstenite::tungstenite::Utf8Bytes, crate::realtime::RealtimeError>,
    >,
) -> Result<(), WriteFailure> {
    let Some(m) = model.as_mut() else {
        return Ok(());
    };
    let text = match event {
        Some(Ok(text)) => text,
        Some(Err(error)) => {
            m.metrics.bad.increment(1);
            tracing::debug!(error = %error, "unreadable ai event");
            return Ok(());
        }
        None => {
            let reason = m
                .reader
                .rx
                .close_info()
                .map_or_else(|| String::from("closed"), |c| format!("{c:?}"));
            let _ = w.actor.cast(CallMsg::AiClosed(m.reader.generation, reason));
            *model = None;
            return Ok(());
        }
    };
    // Audio deltas (the hot path) are read once, borrowed; other events by their type.
    let event = match sniff_ai(text.as_str()) {
        Ok(AiFrame::Audio(delta)) => return forward_audio(w, m, &delta).await,
        Ok(AiFrame::Other(kind)) => ServerEvent::parse_kind(kind.as_str(), text.as_str()),
        Err(_) => ServerEvent::parse(text.as_str()),
    };
    let event = match event {
        Ok(event) => event,
        Err(error) => {
            m.metrics.bad.increment(1);
            tracing::debug!(error = %error, "unreadable ai event");
            return Ok(());
        }
    };
    let generation = m.reader.generation;
    match event {
        ServerEvent::SpeechStarted(_) => {
            let seen = Instant::now();
            let cut = m
                .reader
                .playback
                .lock()
                .ok()
                .and_then(|mut p| p.interrupt(seen));
            if let Some(cut) = cut {
                // The clear leaves now: audio of the interrupted response still to come is
                // discarded by the playback; the actor truncates the item when it hears of it.
                w.feed(TwilioOut::Text(clear_text(&m.reader.stream_sid)))
                    .await?;
                w.flush().await?;
                m.metrics.clear.record(seen.elapsed().as_secs_f64());
                let _ = w.actor.cast(CallMsg::BargeIn(Interruption {
                    item_id: cut.item_id,
                    heard_ms: cut.audio_end_ms,
                    sent_ms: cut.sent_ms,
                }));
            }
            let _ = w
                .actor
                .cast(CallMsg::Ai(generation, AiEvent::SpeechStarted));
        }
        ServerEvent::Unknown { kind } => {
            tracing::debug!(kind = %kind, "unknown ai event");
        }
        // Deltas of transcripts and text, item and content-part events: nothing the
        // conversation needs, and never a message per delta.
        other => {
            if let Some(event) = AiEvent::from_server(other) {
                let _ = w.actor.cast(CallMsg::Ai(generation, event));
            }
        }
    }
    Ok(())
}

/// Model audio to Twilio, with its mark. A delta is counted as sent by the playback only
/// once it is written, so the barge-in accounting (sent and played milliseconds) stays
/// exact; a stalled socket ends the call after the deadline.
async fn forward_audio(
    w: &mut Writer,
    m: &mut Model,
    d: &AudioDeltaRef<'_>,
) -> Result<(), WriteFailure> {
    let received = Instant::now();
    let (response_id, item_id) = (d.response_id.as_str(), d.item_id.as_str());
    let verdict = match m.reader.playback.lock() {
        Ok(mut p) => p.on_delta(response_id, item_id, decoded_len(d.delta.as_str())),
        Err(_) => DeltaVerdict::Drop,
    };
    match verdict {
        DeltaVerdict::Drop => m.metrics.interrupted.increment(1),
        DeltaVerdict::Forward {
            epoch,
            cumulative_ms,
            first_of_item,
        } => {
            let stream_sid = &m.reader.stream_sid;
            w.feed(TwilioOut::Media(media_text(stream_sid, &d.delta), received))
                .await?;
            m.metrics.relayed.increment(1);
            w.feed(TwilioOut::Text(mark_text(
                stream_sid,
                epoch,
                cumulative_ms,
                item_id,
            )))
            .await?;
            if first_of_item {
                let _ = w
                    .actor
                    .cast(CallMsg::FirstAudio(item_id.to_owned(), Instant::now()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
