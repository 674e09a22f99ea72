//! The three tasks of a call: the Twilio reader (caller audio straight to the AI sender,
//! control events to the actor), the AI reader (model audio straight to the Twilio writer
//! with marks, barge-in detection, other events to the actor), and the Twilio writer (the
//! only owner of the socket's write half, bounded, with a stall deadline).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use metrics::{counter, histogram};
use ractor::ActorRef;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::playback::{DeltaVerdict, Playback};
use super::{CallMsg, TwilioFrame, TwilioIncoming, TwilioOut, TwilioOutgoing};
use crate::ids::CallId;
use crate::media::{MarkName, OutboundMedia, TwilioInbound, TwilioOutbound};
use crate::realtime::{RealtimeReceiver, RealtimeSender, ServerEvent, TrySendError};
use crate::store::Store;

/// Largest caller frame accepted (Twilio sends 160-byte frames).
const MAX_FRAME_BYTES: usize = 8 * 1024;

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

/// Spawns the Twilio writer; it ends on `Close`, on a write failure or stall (telling the
/// actor, which finishes the call), or when every sender is gone. In the last case, unless
/// the call finished normally, the actor died: record the fallback before closing so
/// Twilio's `stream-ended` request plays it.
pub(super) fn spawn_twilio_writer(
    mut sink: TwilioOutgoing,
    mut rx: mpsc::Receiver<TwilioOut>,
    write_timeout: Duration,
    finished: Arc<AtomicBool>,
    store: Store,
    call_id: CallId,
    actor: ActorRef<CallMsg>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut closing = None;
        while let Some(out) = rx.recv().await {
            let (text, received) = match out {
                TwilioOut::Text(text) => (text, None),
                TwilioOut::Media(text, received) => (text, Some(received)),
                close @ TwilioOut::Close { .. } => {
                    closing = Some(close);
                    break;
                }
            };
            match tokio::time::timeout(write_timeout, sink.send(TwilioOut::Text(text))).await {
                Ok(Ok(())) => {
                    if let Some(received) = received {
                        histogram!("relay_latency_seconds", "direction" => "ai_to_caller")
                            .record(received.elapsed().as_secs_f64());
                    }
                }
                // The socket failed or stalled while the actor is alive: it is told and
                // finishes the call itself. Stop here, touching the sink no more: this is
                // not the actor dying (which the fallback below is for — recording it raced
                // the actor's own end, leaving a call the caller simply hung up on marked
                // `call_actor_failed` with a fallback), and a sink that returned an error
                // must not be used again (`sink_map_err` panics when polled after its first
                // error).
                Ok(Err(_)) => {
                    let _ = actor.cast(CallMsg::TwilioGone(String::from("twilio_write_failed")));
                    return;
                }
                Err(_) => {
                    counter!("media_stalls_total", "leg" => "twilio").increment(1);
                    let _ = actor.cast(CallMsg::TwilioGone(String::from("twilio_stalled")));
                    return;
                }
            }
        }
        if closing.is_none() && !finished.load(Ordering::SeqCst) {
            // The call actor is gone without finishing: the caller gets the fallback.
            let _ = store.set_after_stream(&call_id, Some("fallback")).await;
            let _ = store.set_end_reason(&call_id, "call_actor_failed").await;
            closing = Some(TwilioOut::Close {
                code: 1011,
                reason: String::from("call_actor_failed"),
            });
        }
        if let Some(close) = closing {
            // Typically the peer already went away (a caller who closed the socket without
            // `stop`): the sink errors, and must not be polled again (see above).
            let sent = tokio::time::timeout(write_timeout, sink.send(close)).await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
        let _ = tokio::time::timeout(write_timeout, sink.close()).await;
    })
}

/// Spawns the Twilio reader.
pub(super) fn spawn_twilio_reader(
    mut incoming: TwilioIncoming,
    actor: ActorRef<CallMsg>,
    ai: watch::Receiver<Option<RealtimeSender>>,
) -> AbortHandle {
    tokio::spawn(async move {
        while let Some(frame) = incoming.next().await {
            let text = match frame {
                TwilioFrame::Text(text) => text,
                TwilioFrame::Closed(reason) => {
                    let _ = actor.cast(CallMsg::TwilioGone(reason));
                    return;
                }
            };
            match TwilioInbound::parse(&text) {
                Ok(TwilioInbound::Media { media, .. }) => {
                    if !valid_audio(&media.payload) {
                        counter!("media_bad_frames_total", "leg" => "twilio").increment(1);
                        continue;
                    }
                    let sent = ai.borrow().as_ref().map(|tx| tx.try_send_audio(&media.payload));
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
                    let _ = actor.cast(CallMsg::Mark(mark.name));
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
        let _ = actor.cast(CallMsg::TwilioGone(String::from("socket_closed")));
    })
    .abort_handle()
}

/// Spawns the AI reader of connection `generation`.
pub(super) fn spawn_ai_reader(
    mut rx: RealtimeReceiver,
    actor: ActorRef<CallMsg>,
    generation: u64,
    twilio: mpsc::Sender<TwilioOut>,
    stream_sid: String,
    playback: Arc<Mutex<Playback>>,
) -> AbortHandle {
    tokio::spawn(async move {
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
                    // dropped before playback counts it as sent, so the barge-in accounting
                    // (sent and played milliseconds) stays exact under back-pressure.
                    let Ok(mut permits) = twilio.try_reserve_many(2) else {
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
                        DeltaVerdict::Forward { mark, first_of_item } => {
                            let media = TwilioOutbound::Media {
                                stream_sid: stream_sid.clone(),
                                media: OutboundMedia { payload: d.delta },
                            };
                            let mark = TwilioOutbound::Mark {
                                stream_sid: stream_sid.clone(),
                                mark: MarkName { name: mark },
                            };
                            if let Some(permit) = permits.next() {
                                permit.send(TwilioOut::Media(media.encode(), received));
                                counter!("media_frames_total", "leg" => "ai", "direction" => "outbound").increment(1);
                            }
                            if let Some(permit) = permits.next() {
                                permit.send(TwilioOut::Text(mark.encode()));
                            }
                            if first_of_item {
                                let _ = actor.cast(CallMsg::FirstAudio(Instant::now()));
                            }
                        }
                    }
                }
                ServerEvent::SpeechStarted(s) => {
                    let seen = Instant::now();
                    let cut = playback.lock().ok().and_then(|mut p| p.interrupt(seen));
                    if let Some(cut) = cut {
                        let _ = actor.cast(CallMsg::BargeIn(cut, seen));
                    }
                    let _ = actor.cast(CallMsg::Ai(generation, Box::new(ServerEvent::SpeechStarted(s))));
                }
                other => {
                    let _ = actor.cast(CallMsg::Ai(generation, Box::new(other)));
                }
            }
        }
        let reason = rx
            .close_info()
            .map_or_else(|| String::from("closed"), |c| format!("{c:?}"));
        let _ = actor.cast(CallMsg::AiClosed(generation, reason));
    })
    .abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_checks() {
        assert!(valid_audio("//////////8="));
        assert!(!valid_audio("not base64!"));
        assert!(!valid_audio(""));
        assert_eq!(decoded_len("AAAA"), 3);
        assert_eq!(decoded_len("//8="), 2);
        let big = STANDARD.encode(vec![0u8; MAX_FRAME_BYTES + 1]);
        assert!(!valid_audio(&big));
    }

    /// A socket whose peer is gone: the first write fails, and — like `sink_map_err`, which
    /// the media route wraps the websocket in — polling it again after that error panics.
    struct GoneSink {
        failed: bool,
    }

    impl GoneSink {
        fn check(&self) {
            assert!(!self.failed, "sink polled after its error");
        }
    }

    impl futures::Sink<TwilioOut> for GoneSink {
        type Error = String;

        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), String>> {
            self.check();
            std::task::Poll::Ready(Ok(()))
        }

        fn start_send(mut self: std::pin::Pin<&mut Self>, _: TwilioOut) -> Result<(), String> {
            self.check();
            self.failed = true;
            Err(String::from("connection closed"))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), String>> {
            self.check();
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), String>> {
            self.check();
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Stands in for the call actor: reports the reasons of `TwilioGone`.
    struct Probe;

    impl ractor::Actor for Probe {
        type Msg = CallMsg;
        type State = mpsc::UnboundedSender<String>;
        type Arguments = mpsc::UnboundedSender<String>;

        async fn pre_start(
            &self,
            _: ActorRef<CallMsg>,
            tx: Self::Arguments,
        ) -> Result<Self::State, ractor::ActorProcessingErr> {
            Ok(tx)
        }

        async fn handle(
            &self,
            _: ActorRef<CallMsg>,
            msg: CallMsg,
            tx: &mut Self::State,
        ) -> Result<(), ractor::ActorProcessingErr> {
            if let CallMsg::TwilioGone(reason) = msg {
                let _ = tx.send(reason);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_twilio_write_tells_the_actor_and_leaves_the_socket_alone() {
        let store = Store::connect("sqlite::memory:", 1).await.expect("store");
        let (gone_tx, mut gone) = mpsc::unbounded_channel();
        let (probe, _) = ractor::Actor::spawn(None, Probe, gone_tx)
            .await
            .expect("probe");
        // A write fails while the call is live: the actor is told; the writer neither
        // records the dead-actor fallback nor touches the failed sink again.
        let (tx, rx) = mpsc::channel(8);
        let writer = spawn_twilio_writer(
            Box::pin(GoneSink { failed: false }),
            rx,
            Duration::from_secs(1),
            Arc::new(AtomicBool::new(false)),
            store.clone(),
            CallId::generate(),
            probe.clone(),
        );
        tx.send(TwilioOut::Text(String::from("{}")))
            .await
            .expect("queue");
        writer.await.expect("the writer ends without panicking");
        assert_eq!(gone.recv().await.as_deref(), Some("twilio_write_failed"));
        // The call finished and closes a socket the peer already closed: one attempt.
        let (tx, rx) = mpsc::channel(8);
        let writer = spawn_twilio_writer(
            Box::pin(GoneSink { failed: false }),
            rx,
            Duration::from_secs(1),
            Arc::new(AtomicBool::new(true)),
            store,
            CallId::generate(),
            probe.clone(),
        );
        tx.send(TwilioOut::Close {
            code: 1000,
            reason: String::from("caller_hangup"),
        })
        .await
        .expect("queue");
        writer.await.expect("the writer ends without panicking");
        probe.stop(None);
    }
}
