//! The media task against in-memory Twilio sockets and a local model socket: the failure of
//! a Twilio write, barge-in, release after the actor's death, early audio, and flushes.

use std::sync::Mutex as StdMutex;

use tokio::sync::mpsc::UnboundedSender;

use super::super::TwilioFrame;
use super::caller::gone_reason;
use super::*;
use crate::realtime::RealtimeReceiver;
use crate::realtime::RealtimeSink;

// The frame checks and the Twilio messages are tested with them, in `call/frames/tests.rs`.

#[test]
fn gone_reasons() {
    assert_eq!(
        gone_reason("socket_closed"),
        (EndReason::SocketClosed, None)
    );
    assert_eq!(
        gone_reason("tls reset"),
        (EndReason::SocketError, Some("tls reset".into()))
    );
}

/// A socket whose peer is gone: the first write fails, and — like `sink_map_err`, which the
/// media route wraps the websocket in — polling it again after that error panics.
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

/// A socket that keeps what is written to it.
#[derive(Clone, Default)]
struct Recorded(Arc<StdMutex<Vec<TwilioOut>>>, Arc<StdMutex<bool>>);

impl Recorded {
    fn written(&self) -> Vec<TwilioOut> {
        self.0.lock().expect("lock").clone()
    }
}

impl futures::Sink<TwilioOut> for Recorded {
    type Error = String;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: TwilioOut) -> Result<(), String> {
        self.0.lock().expect("lock").push(item);
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        *self.1.lock().expect("lock") = true;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Stands in for the call actor: reports what it is told about the Twilio socket, and the
/// items whose first audio was written.
struct Probe;

/// Where the probe reports.
struct ProbeTx {
    gone: UnboundedSender<EndReason>,
    first_audio: UnboundedSender<String>,
}

impl ractor::Actor for Probe {
    type Msg = CallMsg;
    type State = ProbeTx;
    type Arguments = ProbeTx;

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
        match msg {
            CallMsg::TwilioGone(reason, _) => {
                let _ = tx.gone.send(reason);
            }
            CallMsg::FirstAudio(item, _) => {
                let _ = tx.first_audio.send(item);
            }
            _ => {}
        }
        Ok(())
    }
}

async fn probe_with_audio() -> (
    ActorRef<CallMsg>,
    mpsc::UnboundedReceiver<EndReason>,
    mpsc::UnboundedReceiver<String>,
) {
    let (gone, gone_rx) = mpsc::unbounded_channel();
    let (first_audio, first_rx) = mpsc::unbounded_channel();
    let (probe, _) = ractor::Actor::spawn(None, Probe, ProbeTx { gone, first_audio })
        .await
        .expect("probe");
    (probe, gone_rx, first_rx)
}

async fn probe() -> (ActorRef<CallMsg>, mpsc::UnboundedReceiver<EndReason>) {
    let (probe, gone, _) = probe_with_audio().await;
    (probe, gone)
}

/// Spawns a media task on `incoming` and `sink`; returns its commands and its release.
fn media_with(
    incoming: TwilioIncoming,
    sink: TwilioOutgoing,
    actor: &ActorRef<CallMsg>,
) -> (mpsc::UnboundedSender<MediaCmd>, oneshot::Sender<()>) {
    let (release, released) = oneshot::channel();
    let cmds = spawn(
        MediaArgs {
            incoming,
            sink,
            write_timeout: Duration::from_secs(1),
            actor: actor.clone(),
            release: released,
            stream_sid: Arc::from("MZ1"),
            playback: Arc::new(Mutex::new(Playback::default())),
        },
        tracing::Span::none(),
    );
    (cmds, release)
}

/// A media task whose caller sends nothing.
fn writer(
    sink: TwilioOutgoing,
    actor: &ActorRef<CallMsg>,
) -> (mpsc::UnboundedSender<MediaCmd>, oneshot::Sender<()>) {
    media_with(futures::stream::pending().boxed(), sink, actor)
}

/// An audio delta of `response`/`item` whose payload is `payload`.
fn delta(response: &str, item: &str, payload: &str) -> String {
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"e","response_id":"{response}","item_id":"{item}","output_index":0,"content_index":0,"delta":"{payload}"}}"#
    )
}

const SPEECH_STARTED: &str = r#"{"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":1000,"item_id":"caller"}"#;

/// A model connection whose server has already written `events` (in one flush) by the time
/// this returns: on loopback they are in the client's socket buffer, so the media task finds
/// them all ready.
async fn model_with(events: Vec<String>) -> AiLink {
    use crate::realtime::{RealtimeClient, RealtimeEndpoint, RealtimeOptions};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
    let (sent, written) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        for event in events {
            ws.feed(Message::text(event)).await.expect("feed");
        }
        ws.flush().await.expect("flush");
        let _ = sent.send(());
        // Keep the socket open until the client goes.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let endpoint = RealtimeEndpoint {
        url,
        api_key: String::from("sk-test"),
        model: String::from("gpt-realtime"),
    };
    let (sink, rx): (RealtimeSink, RealtimeReceiver) =
        RealtimeClient::connect_owned(endpoint, RealtimeOptions::default())
            .await
            .expect("connect");
    written.await.expect("model wrote its events");
    AiLink { sink, rx }
}

/// Hands the model connection to the media task.
fn attach(cmds: &mpsc::UnboundedSender<MediaCmd>, link: AiLink) {
    cmds.send(MediaCmd::Attach {
        link: Box::new(link),
        generation: 1,
    })
    .expect("media task running");
}

#[tokio::test]
async fn a_failed_twilio_write_tells_the_actor_and_leaves_the_socket_alone() {
    let (probe, mut gone) = probe().await;
    let (queue, _release) = writer(Box::pin(GoneSink { failed: false }), &probe);
    attach(&queue, model_with(vec![delta("r1", "i1", "AAAA")]).await);
    assert_eq!(gone.recv().await, Some(EndReason::TwilioWriteFailed));
    // The call finished and closes a socket the peer already closed: one attempt, no panic.
    let (queue, _release) = writer(Box::pin(GoneSink { failed: false }), &probe);
    queue
        .send(MediaCmd::Close {
            code: 1000,
            reason: String::from("caller_hangup"),
        })
        .expect("queue");
    drop(queue);
    probe.stop(None);
}

#[tokio::test]
async fn a_clear_goes_first_and_audio_of_the_interrupted_response_is_then_discarded() {
    let (probe, _gone, mut first_audio) = probe_with_audio().await;
    let sink = Recorded::default();
    let (queue, _release) = writer(Box::pin(sink.clone()), &probe);
    // Audio of response r1 plays, the caller talks, the model still sends some of r1 before
    // it notices (discarded: the caller must not hear it after the clear), then r2.
    let mut events: Vec<String> = (0..4)
        .map(|n| delta("r1", "i1", &format!("AAA{n}")))
        .collect();
    events.push(SPEECH_STARTED.to_owned());
    events.extend((4..8).map(|n| delta("r1", "i1", &format!("AAA{n}"))));
    events.push(delta("r2", "i2", "BBBB"));
    attach(&queue, model_with(events).await);
    // The last event's audio was written once its item's first audio is reported.
    assert_eq!(first_audio.recv().await.as_deref(), Some("i1"));
    assert_eq!(first_audio.recv().await.as_deref(), Some("i2"));
    queue
        .send(MediaCmd::Close {
            code: 1000,
            reason: String::from("done"),
        })
        .expect("queue");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !*sink.1.lock().expect("lock") {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("closed");
    let written: Vec<String> = sink
        .written()
        .into_iter()
        .filter_map(|o| match o {
            TwilioOut::Media(t, _) => Some(t),
            TwilioOut::Text(t) if t.contains(r#""event":"clear""#) => Some(String::from("clear")),
            TwilioOut::Text(_) => None,
            TwilioOut::Close { reason, .. } => Some(format!("close:{reason}")),
        })
        .collect();
    let clear_at = written
        .iter()
        .position(|t| t == "clear")
        .expect("clear sent");
    assert_eq!(
        clear_at, 4,
        "the audio before the barge-in, then the clear: {written:?}"
    );
    assert!(written[..clear_at].iter().all(|t| t.contains("AAA")));
    assert_eq!(written.len(), clear_at + 3, "{written:?}");
    assert!(written[clear_at + 1].contains("BBBB"), "{written:?}");
    assert_eq!(written[clear_at + 2], "close:done");
    probe.stop(None);
}

#[tokio::test(start_paused = true)]
async fn a_dead_actors_socket_closes_only_once_its_failure_is_recorded() {
    let (probe, _gone) = probe().await;
    let sink = Recorded::default();
    let (queue, release) = writer(Box::pin(sink.clone()), &probe);
    // Every sender is gone without a close: the actor died.
    drop(queue);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(sink.written().is_empty(), "waits for the supervisor");
    release.send(()).expect("writer waiting");
    tokio::time::timeout(Duration::from_secs(1), async {
        while !*sink.1.lock().expect("lock") {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("closed after the release");
    assert_eq!(
        sink.written(),
        vec![TwilioOut::Close {
            code: 1011,
            reason: String::from("call_actor_failed")
        }]
    );
    probe.stop(None);
}

/// A Twilio `media` frame whose payload names frame `n`.
fn caller_frame(n: u32) -> (String, String) {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode(n.to_be_bytes());
    let frame = format!(
        r#"{{"event":"media","sequenceNumber":"{n}","streamSid":"MZ1","media":{{"track":"inbound","payload":"{payload}"}}}}"#
    );
    (frame, payload)
}

#[tokio::test]
async fn caller_audio_before_the_model_session_is_ready_is_kept_and_sent_in_order() {
    use crate::realtime::{RealtimeClient, RealtimeEndpoint, RealtimeOptions, append_json};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_tungstenite::tungstenite::Message;

    let (probe, _gone) = probe().await;
    // The model: collects what it is sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
    let early = EARLY_AUDIO_FRAMES as u32 + 2;
    let total = early + 2;
    let model = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let mut got = Vec::new();
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(text) = message {
                got.push(text.to_string());
                if got.len() == (total - 2) as usize {
                    break;
                }
            }
        }
        got
    });
    let (frames, incoming) = futures::channel::mpsc::unbounded();
    let read = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&read);
    let incoming = incoming
        .inspect(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .boxed();
    let (cmds, _release) = media_with(incoming, Box::pin(Recorded::default()), &probe);
    // The caller speaks right after `start`, before the model session is ready: more than
    // the buffer holds, so the oldest two are dropped.
    for n in 0..early {
        frames
            .unbounded_send(TwilioFrame::Text(caller_frame(n).0.into()))
            .expect("frame");
    }
    // This test runs on one thread: once the media task has taken the last frame, it has
    // handled it (nothing awaits in between).
    tokio::time::timeout(Duration::from_secs(5), async {
        while read.load(Ordering::SeqCst) < early as usize {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("frames read");
    let endpoint = RealtimeEndpoint {
        url,
        api_key: String::from("sk-test"),
        model: String::from("gpt-realtime"),
    };
    let (sink, rx) = RealtimeClient::connect_owned(endpoint, RealtimeOptions::default())
        .await
        .expect("connect");
    attach(&cmds, AiLink { sink, rx });
    for n in early..total {
        frames
            .unbounded_send(TwilioFrame::Text(caller_frame(n).0.into()))
            .expect("frame");
    }
    let got = tokio::time::timeout(Duration::from_secs(5), model)
        .await
        .expect("model got the audio")
        .expect("model task");
    let expected: Vec<String> = (2..total)
        .map(|n| append_json(&caller_frame(n).1))
        .collect();
    assert_eq!(got, expected);
    probe.stop(None);
}

/// A socket that counts what is written to it and how often it is flushed.
#[derive(Clone, Default)]
struct Counting {
    written: Arc<StdMutex<usize>>,
    flushes: Arc<StdMutex<usize>>,
}

impl futures::Sink<TwilioOut> for Counting {
    type Error = String;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn start_send(self: std::pin::Pin<&mut Self>, _: TwilioOut) -> Result<(), String> {
        *self.written.lock().expect("lock") += 1;
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        *self.flushes.lock().expect("lock") += 1;
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), String>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn the_writer_flushes_a_burst_once() {
    let (probe, _gone) = probe().await;
    let sink = Counting::default();
    let (queue, _release) = writer(Box::pin(sink.clone()), &probe);
    // The four deltas are all ready when the writer reads the first: it writes each with its
    // mark, and flushes once nothing more is ready.
    let events = (0..4)
        .map(|n| delta("r1", "i1", &format!("AAA{n}")))
        .collect();
    attach(&queue, model_with(events).await);
    tokio::time::timeout(Duration::from_secs(5), async {
        while *sink.flushes.lock().expect("lock") == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("flushed");
    assert_eq!(*sink.written.lock().expect("lock"), 8);
    assert_eq!(*sink.flushes.lock().expect("lock"), 1);
    probe.stop(None);
}
