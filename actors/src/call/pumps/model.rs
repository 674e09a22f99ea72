//! The model connection as the media task uses it: caller audio fed to its socket without
//! waiting, client events sent, its events read (audio written to Twilio with its mark,
//! `clear` at barge-in, control events cast to the actor), and its end reported.

use std::time::Instant;

use metrics::{Counter, Histogram, counter, histogram};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::super::conversation::Interruption;
use super::super::frames::{
    AiFrame, AudioDeltaRef, clear_text, decoded_len, mark_text, media_text, sniff_ai,
};
use super::super::playback::DeltaVerdict;
use super::super::{AiLink, CallMsg, TwilioOut};
use super::{AiEvent, CallerMetrics, MAX_UNFLUSHED, Media};
use crate::realtime::{RealtimeError, RealtimeReceiver, RealtimeSink, ServerEvent};

/// What reading the model socket gave: a text frame, an unreadable frame, or its end.
pub(super) type ModelEvent = Option<Result<Utf8Bytes, RealtimeError>>;

/// The metric handles of one model connection, registered once.
struct ModelMetrics {
    relayed: Counter,
    interrupted: Counter,
    bad: Counter,
    clear: Histogram,
    caller_to_ai: Histogram,
}

impl ModelMetrics {
    fn new() -> Self {
        Self {
            relayed: counter!("media_frames_total", "leg" => "ai", "direction" => "outbound"),
            interrupted: counter!("media_frames_dropped_total", "leg" => "interrupted"),
            bad: counter!("ai_bad_events_total"),
            clear: histogram!("bargein_clear_seconds"),
            caller_to_ai: histogram!("relay_latency_seconds", "direction" => "caller_to_ai"),
        }
    }
}

/// A model connection of the call.
pub(super) struct Model {
    pub(super) rx: RealtimeReceiver,
    /// The sending half, until it is closed or fails.
    pub(super) sink: Option<RealtimeSink>,
    /// Fed and not yet flushed.
    pub(super) dirty: bool,
    generation: u64,
    /// When each caller frame fed and not yet flushed arrived.
    pending_latency: Vec<Instant>,
    metrics: ModelMetrics,
}

impl Model {
    pub(super) fn new(link: AiLink, generation: u64) -> Self {
        Self {
            rx: link.rx,
            sink: Some(link.sink),
            dirty: false,
            generation,
            pending_latency: Vec::new(),
            metrics: ModelMetrics::new(),
        }
    }

    /// Whether caller audio can be sent to it.
    pub(super) fn ready(&self) -> bool {
        self.sink.is_some()
    }

    /// Feeds caller audio (written at the next flush); a socket that cannot take it now
    /// drops it, counted.
    pub(super) fn feed_audio(&mut self, payload: &str, metrics: &CallerMetrics) {
        let fed = self
            .sink
            .as_mut()
            .is_some_and(|sink| sink.try_feed_audio(payload).is_ok());
        if fed {
            metrics.relayed.increment(1);
            self.dirty = true;
            self.pending_latency.push(Instant::now());
        } else {
            metrics.dropped.increment(1);
        }
    }

    /// After [`MAX_UNFLUSHED`] frames fed while something else was always ready: one flush
    /// attempt now (the loop flushes again once nothing is ready).
    pub(super) fn flush_if_full(&mut self) {
        if self.pending_latency.len() < MAX_UNFLUSHED {
            return;
        }
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        let polled = self.sink.as_mut().map(|sink| sink.poll_flush(&mut cx));
        match polled {
            Some(std::task::Poll::Ready(result)) => self.flushed(result.is_ok()),
            Some(std::task::Poll::Pending) | None => {}
        }
    }

    /// A flush finished: the relay latency of the audio in it is recorded; a failed socket
    /// is not written again (its end is read and reported).
    pub(super) fn flushed(&mut self, ok: bool) {
        self.dirty = false;
        if ok {
            for received in self.pending_latency.drain(..) {
                self.metrics
                    .caller_to_ai
                    .record(received.elapsed().as_secs_f64());
            }
        } else {
            self.pending_latency.clear();
            self.sink = None;
        }
    }

    /// Sends a client event (after the audio fed before it).
    pub(super) async fn send(&mut self, text: String) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        match sink.send_text(text).await {
            Ok(()) => self.flushed(true),
            Err(error) => {
                tracing::warn!(error = %error, "could not send to the ai session");
                self.flushed(false);
            }
        }
    }

    /// Writes a close frame; the connection is still read until it ends.
    pub(super) async fn close(&mut self) {
        if let Some(mut sink) = self.sink.take() {
            sink.close().await;
        }
        self.dirty = false;
        self.pending_latency.clear();
    }
}

/// The next event of the model connection; pending while there is none.
pub(super) async fn event(rx: Option<&mut RealtimeReceiver>) -> ModelEvent {
    match rx {
        Some(rx) => rx.recv_text().await,
        None => std::future::pending().await,
    }
}

/// Flushes the model socket (true when done); pending while there is nothing to flush.
pub(super) async fn flush(sink: Option<&mut RealtimeSink>) -> bool {
    match sink {
        Some(sink) => std::future::poll_fn(|cx| sink.poll_flush(cx)).await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Media {
    /// A flush of the model socket finished.
    pub(super) fn model_flushed(&mut self, ok: bool) {
        if let Some(model) = self.model.as_mut() {
            model.flushed(ok);
        }
    }

    /// One event of the model connection, or its end.
    pub(super) async fn on_model(&mut self, event: ModelEvent) {
        let Some(model) = self.model.as_mut() else {
            return;
        };
        let generation = model.generation;
        let text = match event {
            Some(Ok(text)) => text,
            Some(Err(error)) => {
                model.metrics.bad.increment(1);
                tracing::debug!(error = %error, "unreadable ai event");
                return;
            }
            None => {
                let reason = model
                    .rx
                    .close_info()
                    .map_or_else(|| String::from("closed"), |c| format!("{c:?}"));
                self.model = None;
                let _ = self.actor.cast(CallMsg::AiClosed(generation, reason));
                return;
            }
        };
        // Audio deltas (the hot path) are read once, borrowed; other events by their type.
        let event = match sniff_ai(text.as_str()) {
            Ok(AiFrame::Audio(delta)) => return self.model_audio(&delta).await,
            Ok(AiFrame::Other(kind)) => ServerEvent::parse_kind(kind.as_str(), text.as_str()),
            Err(_) => ServerEvent::parse(text.as_str()),
        };
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                model.metrics.bad.increment(1);
                tracing::debug!(error = %error, "unreadable ai event");
                return;
            }
        };
        match event {
            // Boxed, as rare: the task's state stays the size of the audio path's.
            ServerEvent::SpeechStarted(_) => Box::pin(self.barge_in(generation)).await,
            ServerEvent::Unknown { kind } => {
                tracing::debug!(kind = %kind, "unknown ai event");
            }
            // Deltas of transcripts and text, item and content-part events: nothing the
            // conversation needs, and never a message per delta.
            other => {
                if let Some(event) = AiEvent::from_server(other) {
                    let _ = self.actor.cast(CallMsg::Ai(generation, event));
                }
            }
        }
    }

    /// The caller started speaking: while audio plays, Twilio's `clear` is written and
    /// flushed now (audio of the interrupted response still to come is discarded by the
    /// playback), then the actor hears of the barge-in (it truncates the item).
    async fn barge_in(&mut self, generation: u64) {
        let seen = Instant::now();
        let cut = self
            .playback
            .lock()
            .ok()
            .and_then(|mut p| p.interrupt(seen));
        if let Some(cut) = cut {
            let clear = clear_text(&self.stream_sid);
            self.feed_twilio(TwilioOut::Text(clear)).await;
            self.flush_twilio().await;
            if self.twilio.is_some() {
                if let Some(model) = self.model.as_ref() {
                    model.metrics.clear.record(seen.elapsed().as_secs_f64());
                }
                let _ = self.actor.cast(CallMsg::BargeIn(Interruption {
                    item_id: cut.item_id,
                    heard_ms: cut.audio_end_ms,
                    sent_ms: cut.sent_ms,
                }));
            }
        }
        let _ = self
            .actor
            .cast(CallMsg::Ai(generation, AiEvent::SpeechStarted));
    }

    /// Model audio to Twilio, with its mark. Counted as sent by the playback before it is
    /// written: a write that fails or stalls ends the call.
    async fn model_audio(&mut self, d: &AudioDeltaRef<'_>) {
        let received = Instant::now();
        let (response_id, item_id) = (d.response_id.as_str(), d.item_id.as_str());
        let verdict = match self.playback.lock() {
            Ok(mut p) => p.on_delta(response_id, item_id, decoded_len(d.delta.as_str())),
            Err(_) => DeltaVerdict::Drop,
        };
        let DeltaVerdict::Forward {
            epoch,
            cumulative_ms,
            first_of_item,
        } = verdict
        else {
            if let Some(model) = self.model.as_ref() {
                model.metrics.interrupted.increment(1);
            }
            return;
        };
        let media = media_text(&self.stream_sid, &d.delta);
        let mark = mark_text(&self.stream_sid, epoch, cumulative_ms, item_id);
        self.feed_twilio(TwilioOut::Media(media, received)).await;
        self.feed_twilio(TwilioOut::Text(mark)).await;
        if let Some(model) = self.model.as_ref() {
            model.metrics.relayed.increment(1);
        }
        if first_of_item {
            let _ = self
                .actor
                .cast(CallMsg::FirstAudio(item_id.to_owned(), Instant::now()));
        }
    }
}
