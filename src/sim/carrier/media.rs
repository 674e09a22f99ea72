//! `<Connect><Stream>`: the media websocket client (PROTOCOLS §1). It opens the socket with
//! a signed upgrade, sends `connected` and `start`, streams the scripted caller as 20 ms
//! μ-law `media` frames in real time (plus `dtmf`), and plays the server's audio on a
//! simulated clock: each `media` payload takes `bytes / 8` ms after the audio queued before
//! it, a `mark` is echoed once everything queued before it has played (at once if nothing
//! is queued), and `clear` drops the queue and echoes every pending mark.
//!
//! The stream ends when the caller hangs up (`stop`, close; the call completes), when the
//! server closes the socket (`<Connect action>` or the next verb follows), or when a REST
//! update interrupts (`stop`, close; the new TwiML or the hang-up follows).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actors::media::{
    Dtmf, InboundMedia, MarkName, StartMeta, StopMeta, TwilioInbound, TwilioOutbound,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::sim::audio::{self, FRAME_MS};
use crate::twilio::signature::compute_signature;
use crate::twilio::twiml::{Connect, ConnectNoun, Stream};

use super::call::{CallRunner, Control};
use super::config::MediaObserver;
use super::state::{CallEvent, StreamCloser, WebhookKind};
use super::webhook::resolve;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsSink = SplitSink<Ws, Message>;
type WsSource = SplitStream<Ws>;

/// Most latency samples kept per call.
const MAX_SAMPLES: usize = 100_000;
/// How long to wait for the other side of a websocket close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How a `<Connect><Stream>` ended.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    /// The server closed the socket: `<Connect action>` or the next verb runs.
    ServerClosed,
    /// The handshake failed: treated like a stream that ended.
    Rejected,
    /// The caller hung up: the call completes.
    CallerHungUp,
    /// A REST update interrupted.
    Interrupted(Control),
}

enum PumpEnd {
    ServerClosed,
    /// The network dropped the socket (`Control::ResetStream`).
    Reset,
    CallerHungUp,
    Interrupted(Control),
}

/// A new stream SID: `MZ` + 32 lower-case hex digits.
fn new_stream_sid() -> String {
    format!("MZ{}", uuid::Uuid::new_v4().simple())
}

/// Media frames are small: an 8 KiB read buffer (tungstenite zero-fills its whole read
/// buffer, 128 KiB by default, before every socket read).
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// `http(s)` URLs (from resolving a relative `url`) become `ws(s)`.
fn ws_scheme(url: String) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url
    }
}

/// Per-stream wire state and the playback clock.
struct Session {
    stream_sid: String,
    account_sid: String,
    call_sid: String,
    sequence: u64,
    chunk: u64,
    started: Instant,
    play_until: Instant,
    marks: VecDeque<(String, Instant)>,
    tag_frames: bool,
    tag_base: u32,
    observer: Option<Arc<dyn MediaObserver>>,
    sent_at: Vec<Instant>,
    speech_ended: Option<Instant>,
    first_audio_seen: bool,
}

impl Session {
    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    fn start(&mut self, custom_parameters: BTreeMap<String, String>) -> String {
        TwilioInbound::Start {
            sequence_number: self.next_sequence(),
            stream_sid: self.stream_sid.clone(),
            start: StartMeta {
                stream_sid: self.stream_sid.clone(),
                account_sid: self.account_sid.clone(),
                call_sid: self.call_sid.clone(),
                tracks: vec!["inbound".into()],
                custom_parameters,
                media_format: actors::media::MediaFormat::default(),
            },
        }
        .encode()
    }

    fn media(&mut self, frame: &[u8]) -> String {
        self.chunk += 1;
        let timestamp = (self.chunk - 1) * FRAME_MS;
        TwilioInbound::Media {
            sequence_number: self.next_sequence(),
            stream_sid: self.stream_sid.clone(),
            media: InboundMedia {
                track: Some("inbound".into()),
                chunk: Some(self.chunk.to_string()),
                timestamp: Some(timestamp.to_string()),
                payload: STANDARD.encode(frame),
            },
        }
        .encode()
    }

    fn dtmf(&mut self, digit: String) -> String {
        TwilioInbound::Dtmf {
            sequence_number: self.next_sequence(),
            stream_sid: self.stream_sid.clone(),
            dtmf: Dtmf {
                track: Some("inbound_track".into()),
                digit,
            },
        }
        .encode()
    }

    fn mark(&mut self, name: String) -> String {
        TwilioInbound::Mark {
            sequence_number: self.next_sequence(),
            stream_sid: self.stream_sid.clone(),
            mark: MarkName { name },
        }
        .encode()
    }

    fn stop(&mut self) -> String {
        TwilioInbound::Stop {
            sequence_number: self.next_sequence(),
            stream_sid: self.stream_sid.clone(),
            stop: StopMeta {
                account_sid: self.account_sid.clone(),
                call_sid: self.call_sid.clone(),
            },
        }
        .encode()
    }

    /// Handles one text frame from the server; returns the messages to send back.
    fn on_text(&mut self, runner: &CallRunner, text: &str, now: Instant) -> Vec<String> {
        let message = match TwilioOutbound::parse(text) {
            Ok(m) => m,
            Err(_) => {
                runner.update(|s| s.media.bad_messages += 1);
                return Vec::new();
            }
        };
        let stream_sid = match &message {
            TwilioOutbound::Media { stream_sid, .. }
            | TwilioOutbound::Mark { stream_sid, .. }
            | TwilioOutbound::Clear { stream_sid } => stream_sid,
        };
        if *stream_sid != self.stream_sid {
            runner.update(|s| s.media.bad_messages += 1);
            return Vec::new();
        }
        match message {
            TwilioOutbound::Media { media, .. } => {
                let Ok(bytes) = STANDARD.decode(media.payload.as_bytes()) else {
                    runner.update(|s| s.media.bad_payloads += 1);
                    return Vec::new();
                };
                // Played once what is queued before it has played.
                runner.shared.record_audio(
                    &self.call_sid,
                    super::recording::Track::Played,
                    self.play_until.max(now),
                    &bytes,
                );
                self.play_until =
                    self.play_until.max(now) + Duration::from_micros(bytes.len() as u64 * 125);
                let first_audio =
                    (!self.first_audio_seen).then(|| (now - self.started).as_millis() as u64);
                self.first_audio_seen = true;
                let response = self
                    .speech_ended
                    .take()
                    .map(|at| (now - at).as_millis() as u64);
                let tag = audio::read_tag(&bytes)
                    .and_then(|id| id.checked_sub(1))
                    .and_then(|id| id.checked_sub(self.tag_base))
                    .and_then(|i| self.sent_at.get(i as usize))
                    .map(|at| (now - *at).as_millis() as u64);
                if let Some(observer) = &self.observer {
                    let tags: Vec<u32> = bytes
                        .chunks(audio::FRAME_BYTES)
                        .filter_map(audio::read_tag)
                        .collect();
                    if !tags.is_empty() {
                        observer.server_audio_received(&self.call_sid, &tags, now.into_std());
                    }
                }
                let after_beep = runner.machine_beep.map(|beep| now >= beep);
                runner.update(|s| {
                    if let (Some(machine), Some(after)) = (&mut s.machine, after_beep) {
                        // μ-law: 8 bytes a millisecond.
                        let ms = bytes.len() as u64 / 8;
                        if after {
                            machine.audio_ms_after_beep += ms;
                        } else {
                            machine.audio_ms_before_beep += ms;
                        }
                    }
                    let m = &mut s.media;
                    m.media_received += 1;
                    m.bytes_received += bytes.len() as u64;
                    if m.first_audio_ms.is_none() {
                        m.first_audio_ms = first_audio;
                    }
                    if let Some(r) = response
                        && m.response_latencies_ms.len() < MAX_SAMPLES
                    {
                        m.response_latencies_ms.push(r);
                    }
                    if let Some(t) = tag
                        && m.tag_latencies_ms.len() < MAX_SAMPLES
                    {
                        m.tag_latencies_ms.push(t);
                    }
                });
                Vec::new()
            }
            TwilioOutbound::Mark { mark, .. } => {
                runner.update(|s| s.media.marks_received += 1);
                if self.play_until <= now && self.marks.is_empty() {
                    runner.update(|s| s.media.marks_echoed += 1);
                    vec![self.mark(mark.name)]
                } else {
                    let due = self.play_until.max(now);
                    self.marks.push_back((mark.name, due));
                    Vec::new()
                }
            }
            TwilioOutbound::Clear { .. } => {
                if let Some(observer) = &self.observer {
                    observer.clear_received(&self.call_sid, now.into_std());
                }
                runner.shared.record_clear(&self.call_sid, now);
                let cleared = self.play_until.saturating_duration_since(now);
                self.play_until = now;
                let pending: Vec<String> = self.marks.drain(..).map(|(name, _)| name).collect();
                let echoed = pending.len() as u64;
                runner.update(|s| {
                    s.media.clears += 1;
                    s.media.cleared_ms += cleared.as_millis() as u64;
                    s.media.marks_echoed += echoed;
                });
                pending.into_iter().map(|name| self.mark(name)).collect()
            }
        }
    }

    /// Echoes for the marks whose audio has played by `now`.
    fn due_marks(&mut self, runner: &CallRunner, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((_, due)) = self.marks.front() {
            if *due > now {
                break;
            }
            if let Some((name, _)) = self.marks.pop_front() {
                out.push(self.mark(name));
            }
        }
        let echoed = out.len() as u64;
        if echoed > 0 {
            runner.update(|s| s.media.marks_echoed += echoed);
        }
        out
    }
}

async fn send_all(sink: &mut WsSink, messages: Vec<String>) -> Result<(), tungstenite::Error> {
    for m in messages {
        sink.send(Message::text(m)).await?;
    }
    Ok(())
}

impl CallRunner {
    /// Runs `<Connect><Stream>` until the stream ends.
    pub(super) async fn connect(&mut self, connect: &Connect, base: Option<&str>) -> StreamEnd {
        let Some(stream) = connect.nouns.first().map(|ConnectNoun::Stream(s)| s) else {
            self.event(CallEvent::ApplicationError {
                detail: "<Connect> without <Stream>".into(),
            });
            return StreamEnd::Rejected;
        };
        let stream_sid = new_stream_sid();
        let status_callback = stream.status_callback.as_deref().and_then(|u| {
            resolve(base, u).ok().map(|url| {
                let method = stream
                    .status_callback_method
                    .clone()
                    .unwrap_or_else(|| "POST".into());
                (url, method)
            })
        });
        let ctx = StreamCtx {
            stream_sid: stream_sid.clone(),
            name: stream.name.clone().unwrap_or_else(|| stream_sid.clone()),
            status_callback,
        };
        let url = match resolve(base, &stream.url) {
            Ok(u) => ws_scheme(u),
            Err(detail) => return self.stream_rejected(&ctx, &stream.url, None, detail).await,
        };
        let mut request = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return self.stream_rejected(&ctx, &url, None, e.to_string()).await,
        };
        let signature = compute_signature(&self.token, &url, &[]);
        if let Ok(value) = HeaderValue::from_str(&signature) {
            request.headers_mut().insert("x-twilio-signature", value);
        }
        let limit = self.shared.config.ws_connect_timeout;
        // TCP_NODELAY: small 20 ms frames must not wait for Nagle (and a load generator's
        // latency figures must not include it).
        let connecting = tokio::time::timeout(
            limit,
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true),
        );
        let ws = match self.guard(connecting).await {
            Err(control) => return StreamEnd::Interrupted(control),
            Ok(Err(_)) => {
                let detail = "handshake timed out".to_owned();
                return self.stream_rejected(&ctx, &url, None, detail).await;
            }
            Ok(Ok(Err(error))) => {
                let status = match &error {
                    tungstenite::Error::Http(resp) => Some(resp.status().as_u16()),
                    _ => None,
                };
                return self
                    .stream_rejected(&ctx, &url, status, error.to_string())
                    .await;
            }
            Ok(Ok(Ok((ws, _)))) => ws,
        };
        self.run_stream(ws, stream, &url, ctx).await
    }

    async fn run_stream(
        &mut self,
        ws: Ws,
        stream: &Stream,
        url: &str,
        ctx: StreamCtx,
    ) -> StreamEnd {
        let custom: BTreeMap<String, String> = stream.parameter_pairs().into_iter().collect();
        let now = Instant::now();
        let mut session = Session {
            stream_sid: ctx.stream_sid.clone(),
            account_sid: self.id.account_sid.clone(),
            call_sid: self.id.sid.clone(),
            sequence: 0,
            chunk: 0,
            started: now,
            play_until: now,
            marks: VecDeque::new(),
            tag_frames: self.script.tag_frames,
            tag_base: self.script.tag_base,
            observer: self.shared.config.media_observer.clone(),
            sent_at: Vec::new(),
            speech_ended: None,
            first_audio_seen: false,
        };
        self.update(|s| {
            s.media.streams_opened += 1;
            s.stream_sid = Some(ctx.stream_sid.clone());
            s.events.push(CallEvent::StreamOpened {
                url: url.to_owned(),
                stream_sid: ctx.stream_sid.clone(),
                custom_parameters: custom.clone(),
            });
        });
        tracing::debug!(call = %self.id.sid, stream = %ctx.stream_sid, url, "stream opened");
        let (mut sink, mut source) = ws.split();
        let connected = TwilioInbound::Connected {
            protocol: "Call".into(),
            version: "1.0.0".into(),
        }
        .encode();
        let start = session.start(custom);
        let opened = send_all(&mut sink, vec![connected, start]).await.is_ok();
        self.stream_status(&ctx, "stream-started", None).await;
        let end = if opened {
            self.pump(&mut session, &mut sink, &mut source).await
        } else {
            PumpEnd::ServerClosed
        };
        let unplayed = session
            .play_until
            .saturating_duration_since(Instant::now())
            .as_millis() as u64;
        if unplayed > 0 {
            self.update(|s| s.media.unplayed_at_end_ms += unplayed);
        }
        let (by, result) = match end {
            PumpEnd::ServerClosed => {
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
                (StreamCloser::Server, StreamEnd::ServerClosed)
            }
            // No close frame, no `stop`: the socket just goes away.
            PumpEnd::Reset => (StreamCloser::Reset, StreamEnd::ServerClosed),
            PumpEnd::CallerHungUp => {
                close_from_our_side(&mut session, &mut sink, &mut source).await;
                (StreamCloser::Caller, StreamEnd::CallerHungUp)
            }
            PumpEnd::Interrupted(control) => {
                close_from_our_side(&mut session, &mut sink, &mut source).await;
                let by = match control {
                    Control::Redirect(_) => StreamCloser::Redirect,
                    Control::Hangup | Control::Cancel | Control::ResetStream => {
                        StreamCloser::Hangup
                    }
                };
                (by, StreamEnd::Interrupted(control))
            }
        };
        tracing::debug!(call = %self.id.sid, stream = %ctx.stream_sid, ?by, "stream closed");
        self.event(CallEvent::StreamClosed {
            stream_sid: ctx.stream_sid.clone(),
            by,
        });
        self.stream_status(&ctx, "stream-stopped", None).await;
        result
    }

    /// Streams caller audio and plays server audio until the stream ends.
    async fn pump(
        &mut self,
        session: &mut Session,
        sink: &mut WsSink,
        source: &mut WsSource,
    ) -> PumpEnd {
        let mut ticker = tokio::time::interval(Duration::from_millis(FRAME_MS));
        let deadline = session.started + self.script.max_duration;
        loop {
            let next_mark = session.marks.front().map(|(_, due)| *due);
            tokio::select! {
                biased;
                Some(control) = self.control.recv() => {
                    // The call is answered: `canceled` does not apply.
                    match control {
                        Control::Cancel => {}
                        Control::ResetStream => return PumpEnd::Reset,
                        other => return PumpEnd::Interrupted(other),
                    }
                }
                _ = ticker.tick() => {
                    let now = Instant::now();
                    if now >= deadline {
                        return PumpEnd::CallerHungUp;
                    }
                    let tick = self.cursor.tick();
                    if let Some(text) = tick.started_speaking {
                        self.event(CallEvent::CallerSpoke(text));
                    }
                    let mut out = Vec::new();
                    for digit in tick.dtmf {
                        out.push(session.dtmf(digit.clone()));
                        self.update(|s| {
                            s.media.dtmf_sent += 1;
                            s.events.push(CallEvent::DtmfSent(digit));
                        });
                    }
                    if tick.hang_up {
                        if send_all(sink, out).await.is_err() {
                            return PumpEnd::ServerClosed;
                        }
                        return PumpEnd::CallerHungUp;
                    }
                    if let Some(mut frame) = tick.frame {
                        if session.tag_frames {
                            let tag = session.tag_base.wrapping_add((session.chunk + 1) as u32);
                            audio::tag_frame(&mut frame, tag);
                            session.sent_at.push(now);
                            if let Some(observer) = &session.observer {
                                observer.caller_frame_sent(&session.call_sid, tag, now.into_std());
                            }
                        }
                        self.shared.record_audio(
                            &session.call_sid,
                            super::recording::Track::Caller,
                            now,
                            &frame,
                        );
                        out.push(session.media(&frame));
                        self.update(|s| s.media.frames_sent += 1);
                    }
                    if tick.stopped_speaking {
                        session.speech_ended = Some(now);
                    }
                    if send_all(sink, out).await.is_err() {
                        return PumpEnd::ServerClosed;
                    }
                }
                () = tokio::time::sleep_until(next_mark.unwrap_or(deadline)), if next_mark.is_some() => {
                    let out = session.due_marks(self, Instant::now());
                    if send_all(sink, out).await.is_err() {
                        return PumpEnd::ServerClosed;
                    }
                }
                message = source.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let out = session.on_text(self, text.as_str(), Instant::now());
                        if send_all(sink, out).await.is_err() {
                            return PumpEnd::ServerClosed;
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return PumpEnd::ServerClosed,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Records a failed handshake and posts `stream-error`.
    async fn stream_rejected(
        &mut self,
        ctx: &StreamCtx,
        url: &str,
        http_status: Option<u16>,
        error: String,
    ) -> StreamEnd {
        tracing::debug!(call = %self.id.sid, url, ?http_status, %error, "stream rejected");
        self.event(CallEvent::StreamRejected {
            url: url.to_owned(),
            http_status,
            error: error.clone(),
        });
        let detail = format!("31920 Stream - WebSocket - Handshake Error: {error}");
        self.stream_status(ctx, "stream-error", Some(detail)).await;
        StreamEnd::Rejected
    }

    /// Posts a `<Stream statusCallback>` event (PROTOCOLS §1.8), if one is configured.
    async fn stream_status(&self, ctx: &StreamCtx, event: &str, error: Option<String>) {
        let Some((url, method)) = &ctx.status_callback else {
            return;
        };
        let mut params = vec![
            ("AccountSid".to_owned(), self.id.account_sid.clone()),
            ("CallSid".to_owned(), self.id.sid.clone()),
            ("StreamSid".to_owned(), ctx.stream_sid.clone()),
            ("StreamName".to_owned(), ctx.name.clone()),
            ("StreamEvent".to_owned(), event.to_owned()),
        ];
        if let Some(error) = error {
            params.push(("StreamError".to_owned(), error));
        }
        params.push(("Timestamp".to_owned(), chrono::Utc::now().to_rfc3339()));
        self.webhook(WebhookKind::StreamStatus, method, url, params)
            .await;
    }
}

/// What a stream's status callbacks need.
struct StreamCtx {
    stream_sid: String,
    name: String,
    status_callback: Option<(String, String)>,
}

/// `stop`, then a close frame, then wait briefly for the server's close.
async fn close_from_our_side(session: &mut Session, sink: &mut WsSink, source: &mut WsSource) {
    let stop = session.stop();
    if sink.send(Message::text(stop)).await.is_err() {
        return;
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = source.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
}
