//! The media task of a call: ONE task owns both sockets of the call (Twilio's media socket
//! and the model's) and relays audio between them in one `select!` loop. Audio never passes
//! through the actor's mailbox, and no frame is handed from one task to another (no channel
//! hop, no cross-task wake-up per frame).
//!
//! What the loop does, by priority:
//!
//! - **The actor's commands** ([`MediaCmd`], one channel): a new model connection (audio kept
//!   while none was ready goes to it first), client events for the model, closing or
//!   dropping (fault injection) either socket.
//! - **A Twilio frame** (`call/pumps/caller.rs`): caller audio written to the model socket
//!   (without waiting: a socket that cannot take it now drops the frame and counts it; audio
//!   that comes before a model session is ready is kept, up to [`EARLY_AUDIO_FRAMES`]), mark
//!   echoes accounted in the [`Playback`] (the actor is told only when a drain it waits for
//!   happened), and the few control events (key presses, `stop`, the socket going away) cast
//!   to the actor.
//! - **A model event** (`call/pumps/model.rs`): audio written to Twilio with a mark after each
//!   delta; at barge-in (`speech_started` while audio plays) Twilio's `clear` is written and
//!   flushed at once, before the actor hears of it, and audio of the interrupted response
//!   that still comes is discarded; the control events the conversation needs ([`AiEvent`])
//!   are cast, never a message per delta.
//! - **Flushes** when nothing more is ready (one write per burst on each socket, not one per
//!   message). Every write to Twilio has the stall deadline; a failed or stalled Twilio socket
//!   is told to the actor (which ends the call) and not touched again.
//!
//! When the actor dies without closing (its command channel is gone), the task waits for the
//! call supervisor to record the failure (its release) before it closes Twilio's socket, so
//! the `stream-ended` that follows finds the fallback recorded.
//!
//! What is done per frame is `call/frames.rs`; the metrics are handles registered once.

mod caller;
mod model;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, SinkExt, StreamExt};
use metrics::{Counter, Histogram, counter, histogram};
use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::conversation::AiEvent;
use super::playback::Playback;
use super::{AiLink, CallMsg, TwilioIncoming, TwilioOut, TwilioOutgoing};
use crate::ending::EndReason;
use caller::CallerMetrics;
use model::{Model, ModelEvent};

/// How long a dead actor's media task waits for the supervisor before closing anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Media frames fed to a socket before it is flushed even though more are ready.
const MAX_UNFLUSHED: usize = 32;
/// Caller frames kept while no model session is ready (2 s of 20 ms frames), sent once it
/// is; beyond that the oldest is dropped and counted.
pub(super) const EARLY_AUDIO_FRAMES: usize = 100;

/// What the call actor tells its media task (in order, on one channel).
pub(super) enum MediaCmd {
    /// Read this model connection (of `generation`) and send caller audio to it from now
    /// on; a previous connection still open is dropped.
    Attach {
        /// The connection, configured (boxed: every message of the channel is this size).
        link: Box<AiLink>,
        /// Its generation (events are cast with it).
        generation: u64,
    },
    /// A client event (serialised) for the current model connection.
    Send(String),
    /// Close the current model connection with a close frame (its events are still read
    /// until it ends); `done` is told once the frame is written.
    CloseModel(Option<oneshot::Sender<()>>),
    /// Drop the current model connection without a close frame and without reporting it
    /// (fault injection: a network reset).
    ResetModel,
    /// Close Twilio's socket.
    Close {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// Drop Twilio's socket at once, without a close frame (fault injection: a network
    /// reset).
    ResetTwilio,
}

/// What the media task needs.
pub(super) struct MediaArgs {
    /// Twilio's frames, past `connected` and `start`.
    pub incoming: TwilioIncoming,
    /// Twilio's write half.
    pub sink: TwilioOutgoing,
    /// The stall deadline of every write to Twilio.
    pub write_timeout: Duration,
    pub actor: ActorRef<CallMsg>,
    /// Fired (or dropped) by the call supervisor once a dead actor's failure is recorded.
    pub release: oneshot::Receiver<()>,
    pub stream_sid: Arc<str>,
    pub playback: Arc<Mutex<Playback>>,
}

/// Spawns the media task; returns its command channel. The task ends once the channel is
/// gone (the actor stopped or died).
pub(super) fn spawn(args: MediaArgs, span: tracing::Span) -> mpsc::UnboundedSender<MediaCmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(args, rx).instrument(span));
    tx
}

/// Why writing to Twilio stopped while the call is live.
enum WriteFailure {
    /// The sink returned an error: it must not be used again (`sink_map_err` panics when
    /// polled after its first error).
    Failed,
    /// A write or flush did not finish within the stall deadline.
    Stalled,
}

/// Twilio's write half and what was fed to it.
struct Twilio {
    sink: TwilioOutgoing,
    /// Fed and not yet flushed.
    unflushed: bool,
    /// When the model delta of each media frame fed and not yet flushed arrived.
    pending_latency: Vec<Instant>,
}

/// The task's metric handles, registered once per call.
struct MediaMetrics {
    stalls: Counter,
    ai_to_caller: Histogram,
    caller: CallerMetrics,
}

impl MediaMetrics {
    fn new() -> Self {
        Self {
            stalls: counter!("media_stalls_total", "leg" => "twilio"),
            ai_to_caller: histogram!("relay_latency_seconds", "direction" => "ai_to_caller"),
            caller: CallerMetrics::new(),
        }
    }
}

/// The state of a call's media.
struct Media {
    actor: ActorRef<CallMsg>,
    stream_sid: Arc<str>,
    playback: Arc<Mutex<Playback>>,
    write_timeout: Duration,
    /// Twilio's read half, until `stop`, its end, or a reset.
    incoming: Option<TwilioIncoming>,
    /// Twilio's write half, until it is closed, failed, or reset.
    twilio: Option<Twilio>,
    /// The current model connection.
    model: Option<Model>,
    /// Caller audio waiting for a model session.
    early: VecDeque<String>,
    metrics: MediaMetrics,
}

/// What the loop takes next.
enum Input {
    Cmd(Option<MediaCmd>),
    Caller(Option<super::TwilioFrame>),
    Model(ModelEvent),
    ModelFlushed(bool),
}

/// The next input, by priority: commands, Twilio, the model, then flushing the model
/// socket (only when nothing else is ready).
async fn next(
    cmds: &mut mpsc::UnboundedReceiver<MediaCmd>,
    incoming: &mut Option<TwilioIncoming>,
    model: &mut Option<Model>,
) -> Input {
    let (events, sink) = match model {
        Some(m) => {
            let sink = if m.dirty { m.sink.as_mut() } else { None };
            (Some(&mut m.rx), sink)
        }
        None => (None, None),
    };
    tokio::select! {
        biased;
        cmd = cmds.recv() => Input::Cmd(cmd),
        frame = caller_frame(incoming) => Input::Caller(frame),
        event = model::event(events) => Input::Model(event),
        flushed = model::flush(sink) => Input::ModelFlushed(flushed),
    }
}

/// Twilio's next frame; pending once its read half is gone.
async fn caller_frame(incoming: &mut Option<TwilioIncoming>) -> Option<super::TwilioFrame> {
    match incoming {
        Some(incoming) => incoming.next().await,
        None => std::future::pending().await,
    }
}

async fn run(args: MediaArgs, mut cmds: mpsc::UnboundedReceiver<MediaCmd>) {
    let MediaArgs {
        incoming,
        sink,
        write_timeout,
        actor,
        release,
        stream_sid,
        playback,
    } = args;
    let mut media = Media {
        actor,
        stream_sid,
        playback,
        write_timeout,
        incoming: Some(incoming),
        twilio: Some(Twilio {
            sink,
            unflushed: false,
            pending_latency: Vec::new(),
        }),
        model: None,
        early: VecDeque::new(),
        metrics: MediaMetrics::new(),
    };
    loop {
        if media
            .twilio
            .as_ref()
            .is_some_and(|t| t.pending_latency.len() >= MAX_UNFLUSHED)
        {
            media.flush_twilio().await;
        }
        if let Some(model) = media.model.as_mut() {
            model.flush_if_full();
        }
        let unflushed = media.twilio.as_ref().is_some_and(|t| t.unflushed);
        let input = if unflushed {
            match next(&mut cmds, &mut media.incoming, &mut media.model).now_or_never() {
                Some(input) => input,
                None => {
                    media.flush_twilio().await;
                    continue;
                }
            }
        } else {
            next(&mut cmds, &mut media.incoming, &mut media.model).await
        };
        match input {
            // Rare, and boxed: the task's state is the size of the hot path's, not this one's.
            Input::Cmd(Some(cmd)) => Box::pin(media.command(cmd)).await,
            Input::Cmd(None) => break,
            Input::Caller(frame) => media.on_caller(frame),
            Input::Model(event) => media.on_model(event).await,
            Input::ModelFlushed(ok) => media.model_flushed(ok),
        }
    }
    // The actor is gone. After a normal end Twilio's socket is closed already; otherwise the
    // actor died: the supervisor records the failure (the fallback included) and then
    // releases the socket; Twilio's `stream-ended` then finds what to do.
    let Media { twilio, .. } = media;
    if let Some(twilio) = twilio {
        let _ = tokio::time::timeout(RELEASE_TIMEOUT, release).await;
        close_twilio(
            twilio,
            write_timeout,
            TwilioOut::Close {
                code: 1011,
                reason: String::from("call_actor_failed"),
            },
        )
        .await;
    }
}

/// Writes the close (after what was fed: `send` flushes) and closes, each within the
/// deadline. Typically the peer already went away (a caller who closed the socket without
/// `stop`): the sink errors, and must not be polled again (see [`WriteFailure::Failed`]).
async fn close_twilio(mut twilio: Twilio, deadline: Duration, close: TwilioOut) {
    let sent = tokio::time::timeout(deadline, twilio.sink.send(close)).await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = tokio::time::timeout(deadline, twilio.sink.close()).await;
    }
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

impl Media {
    async fn command(&mut self, cmd: MediaCmd) {
        match cmd {
            MediaCmd::Attach { link, generation } => {
                let mut model = Model::new(*link, generation);
                // Audio kept before the session was ready leaves first, in order.
                for early in self.early.drain(..) {
                    model.feed_audio(&early, &self.metrics.caller);
                }
                self.model = Some(model);
            }
            // A model socket that stalls does not hold the call's media: the event is given
            // up after the deadline and the socket is not written again (its end is read).
            MediaCmd::Send(text) => {
                if let Some(model) = self.model.as_mut()
                    && tokio::time::timeout(self.write_timeout, model.send(text))
                        .await
                        .is_err()
                {
                    tracing::warn!("the ai session did not take an event in time");
                    model.flushed(false);
                }
            }
            MediaCmd::CloseModel(done) => {
                if let Some(model) = self.model.as_mut()
                    && tokio::time::timeout(self.write_timeout, model.close())
                        .await
                        .is_err()
                {
                    model.flushed(false);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            MediaCmd::ResetModel => self.model = None,
            MediaCmd::Close { code, reason } => {
                self.incoming = None;
                if let Some(twilio) = self.twilio.take() {
                    close_twilio(
                        twilio,
                        self.write_timeout,
                        TwilioOut::Close { code, reason },
                    )
                    .await;
                }
            }
            // Both halves go without a word.
            MediaCmd::ResetTwilio => {
                self.incoming = None;
                self.twilio = None;
            }
        }
    }

    /// Feeds one message to Twilio within the stall deadline; on failure the actor is told
    /// and the socket is not touched again.
    async fn feed_twilio(&mut self, out: TwilioOut) {
        let Some(twilio) = self.twilio.as_mut() else {
            return;
        };
        let received = match &out {
            TwilioOut::Media(_, received) => Some(*received),
            _ => None,
        };
        match bounded(self.write_timeout, twilio.sink.feed(out)).await {
            Ok(()) => {
                twilio.unflushed = true;
                twilio.pending_latency.extend(received);
            }
            Err(failure) => self.twilio_failed(failure),
        }
    }

    /// Flushes what was fed to Twilio within the stall deadline, and records the relay
    /// latency of the model audio in it.
    async fn flush_twilio(&mut self) {
        let Some(twilio) = self.twilio.as_mut() else {
            return;
        };
        match bounded(self.write_timeout, twilio.sink.flush()).await {
            Ok(()) => {
                twilio.unflushed = false;
                for received in twilio.pending_latency.drain(..) {
                    self.metrics
                        .ai_to_caller
                        .record(received.elapsed().as_secs_f64());
                }
            }
            Err(failure) => self.twilio_failed(failure),
        }
    }

    /// Twilio's socket failed or stalled while the call is live: the actor is told and ends
    /// the call; the sink is not touched again.
    fn twilio_failed(&mut self, failure: WriteFailure) {
        self.twilio = None;
        let reason = match failure {
            WriteFailure::Failed => EndReason::TwilioWriteFailed,
            WriteFailure::Stalled => {
                self.metrics.stalls.increment(1);
                EndReason::TwilioStalled
            }
        };
        let _ = self.actor.cast(CallMsg::TwilioGone(reason, None));
    }
}

#[cfg(test)]
mod tests;
