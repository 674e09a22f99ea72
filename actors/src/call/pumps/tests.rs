//! The pumps against in-memory sockets: frame checks, the writer's failure, priority and
//! release behaviour.

use std::sync::Mutex as StdMutex;

use tokio::sync::mpsc::UnboundedSender;

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

#[test]
fn frames_are_twilio_messages() {
    use crate::media::{MarkName, OutboundMedia, TwilioOutbound};
    assert_eq!(
        TwilioOutbound::parse(&media_text("MZ1", "AAAA")).expect("media"),
        TwilioOutbound::Media {
            stream_sid: "MZ1".into(),
            media: OutboundMedia {
                payload: "AAAA".into()
            }
        }
    );
    assert_eq!(
        TwilioOutbound::parse(&mark_text("MZ1", 2, 140, "item_7")).expect("mark"),
        TwilioOutbound::Mark {
            stream_sid: "MZ1".into(),
            mark: MarkName {
                name: "2:140:item_7".into()
            }
        }
    );
    assert_eq!(
        TwilioOutbound::parse(&clear_text("MZ1")).expect("clear"),
        TwilioOutbound::Clear {
            stream_sid: "MZ1".into()
        }
    );
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

/// Stands in for the call actor: reports what it is told about the Twilio socket.
struct Probe;

impl ractor::Actor for Probe {
    type Msg = CallMsg;
    type State = UnboundedSender<EndReason>;
    type Arguments = UnboundedSender<EndReason>;

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
        if let CallMsg::TwilioGone(reason, _) = msg {
            let _ = tx.send(reason);
        }
        Ok(())
    }
}

async fn probe() -> (ActorRef<CallMsg>, mpsc::UnboundedReceiver<EndReason>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (probe, _) = ractor::Actor::spawn(None, Probe, tx).await.expect("probe");
    (probe, rx)
}

fn writer(sink: TwilioOutgoing, actor: &ActorRef<CallMsg>) -> (TwilioQueue, oneshot::Sender<()>) {
    let (release, released) = oneshot::channel();
    let queue = spawn_twilio_writer(
        WriterArgs {
            sink,
            write_timeout: Duration::from_secs(1),
            actor: actor.clone(),
            release: released,
        },
        16,
        tracing::Span::none(),
    );
    (queue, release)
}

#[tokio::test]
async fn a_failed_twilio_write_tells_the_actor_and_leaves_the_socket_alone() {
    let (probe, mut gone) = probe().await;
    let (queue, _release) = writer(Box::pin(GoneSink { failed: false }), &probe);
    queue
        .normal
        .send(Outgoing::Mark {
            text: String::from("{}"),
            epoch: 0,
        })
        .await
        .expect("queue");
    assert_eq!(gone.recv().await, Some(EndReason::TwilioWriteFailed));
    // The call finished and closes a socket the peer already closed: one attempt, no panic.
    let (queue, _release) = writer(Box::pin(GoneSink { failed: false }), &probe);
    queue
        .normal
        .send(Outgoing::Close {
            code: 1000,
            reason: String::from("caller_hangup"),
        })
        .await
        .expect("queue");
    drop(queue);
    probe.stop(None);
}

#[tokio::test]
async fn a_clear_overtakes_queued_audio_which_is_then_discarded() {
    let (probe, _gone) = probe().await;
    let sink = Recorded::default();
    let (queue, _release) = writer(Box::pin(sink.clone()), &probe);
    // Audio of epoch 0 is queued (the writer may already be writing the first of it), the
    // caller talks: the clear of epoch 1 jumps the queue, the rest of epoch 0 is dropped,
    // and audio of epoch 1 follows.
    let media = |n: u32, epoch| Outgoing::Media {
        text: format!("m{n}"),
        received: Instant::now(),
        epoch,
    };
    for n in 0..8 {
        queue.normal.send(media(n, 0)).await.expect("queue");
    }
    queue
        .urgent
        .send(Outgoing::Clear {
            text: String::from("clear"),
            epoch: 1,
        })
        .await
        .expect("urgent");
    queue.normal.send(media(100, 1)).await.expect("queue");
    queue
        .normal
        .send(Outgoing::Close {
            code: 1000,
            reason: String::from("done"),
        })
        .await
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
        .map(|o| match o {
            TwilioOut::Text(t) | TwilioOut::Media(t, _) => t,
            TwilioOut::Close { reason, .. } => format!("close:{reason}"),
        })
        .collect();
    let clear_at = written
        .iter()
        .position(|t| t == "clear")
        .expect("clear sent");
    assert!(
        written[clear_at + 1..]
            .iter()
            .all(|t| !t.starts_with('m') || t == "m100"),
        "nothing of the interrupted epoch after the clear: {written:?}"
    );
    assert_eq!(
        &written[written.len() - 2..],
        ["m100".to_owned(), "close:done".to_owned()]
    );
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
