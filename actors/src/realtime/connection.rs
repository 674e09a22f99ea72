//! The websocket connection to a Realtime endpoint: [`RealtimeClient::connect`] opens it
//! and splits it into a [`RealtimeSender`] (cheap, cloneable) and a [`RealtimeReceiver`].
//!
//! Writes go through a bounded channel to one writer task, which batches frames and flushes
//! when the channel is empty. Audio uses [`RealtimeSender::try_send_audio`]: a full channel
//! is an immediate [`TrySendError::Full`] the caller counts as a dropped frame, never a
//! wait. Control events use [`RealtimeSender::send`], which waits for room. The receiver
//! reads and parses on the caller's task (no reader task).
//!
//! The writer task is aborted when the last handle (sender clones and receiver) is
//! dropped; [`RealtimeSender::close`] ends it cleanly with a close frame instead.
//!
//! [`RealtimeClient::connect_owned`] gives a [`RealtimeSink`] instead of a sender, for an
//! owner that writes and reads the socket on one task (a call's media task): no writer task
//! and no queue; audio is fed without waiting and flushed when the owner has nothing more.
//! TLS (`wss://`) is rustls with the ring provider and the webpki roots, built here so the
//! client does not depend on a process-wide default provider.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::client_event::{ClientEvent, append_json};
use super::server_event::ServerEvent;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long [`RealtimeReceiver::recv`] keeps polling after a close frame to answer it.
const CLOSE_DRAIN: Duration = Duration::from_millis(500);

/// Where to connect. `Debug` redacts the API key.
#[derive(Clone)]
pub struct RealtimeEndpoint {
    /// `wss://api.openai.com/v1/realtime`, or a simulator's `ws://127.0.0.1:…/v1/realtime`.
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    pub api_key: String,
    /// Appended as `?model=…`.
    pub model: String,
}

impl std::fmt::Debug for RealtimeEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeEndpoint")
            .field("url", &self.url)
            .field("api_key", &"[redacted]")
            .field("model", &self.model)
            .finish()
    }
}

impl RealtimeEndpoint {
    /// The connection URL: `{url}?model={model}` (`&` if `url` already has a query).
    pub fn connect_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}model={}", self.url, encode_query(&self.model))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct RealtimeOptions {
    /// TCP + TLS + websocket handshake.
    pub connect_timeout: Duration,
    /// Frames queued for the writer task before `try_send` reports `Full`.
    pub channel_capacity: usize,
    /// Initial room of the read buffer (it grows for a larger message; tungstenite's
    /// default, 128 KiB, is allocated per socket and zeroed as it is read into).
    pub read_buffer_size: usize,
    /// Bytes the writer buffers before writing to the socket (it also writes when its
    /// queue is empty).
    pub write_buffer_size: usize,
    /// Hard cap of the write buffer (a stalled socket errors instead of growing).
    pub max_write_buffer_size: usize,
    /// Largest incoming message.
    pub max_message_size: usize,
    /// Largest incoming frame.
    pub max_frame_size: usize,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            channel_capacity: 256,
            read_buffer_size: 4 * 1024,
            write_buffer_size: 4 * 1024,
            max_write_buffer_size: 4 * 1024 * 1024,
            max_message_size: 16 * 1024 * 1024,
            max_frame_size: 16 * 1024 * 1024,
        }
    }
}

impl RealtimeOptions {
    fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_size)
            .write_buffer_size(self.write_buffer_size)
            .max_write_buffer_size(self.max_write_buffer_size.max(self.write_buffer_size + 1))
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_frame_size))
    }
}

/// What can go wrong talking to a Realtime endpoint.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The URL, TCP, TLS or websocket handshake failed.
    #[error("cannot connect to the realtime endpoint")]
    Connect(#[source] tungstenite::Error),
    /// The server answered the upgrade with this HTTP status (401: bad key).
    #[error("realtime handshake refused with HTTP {0}")]
    Handshake(u16),
    /// The connection is closed (or was reset without a close frame).
    #[error("realtime connection closed")]
    Closed,
    /// A frame could not be encoded or decoded.
    #[error("realtime protocol error: {0}")]
    Protocol(String),
    /// Connecting took longer than the connect timeout.
    #[error("realtime connect timed out")]
    Timeout,
}

/// Why [`RealtimeSender::try_send_audio`] / [`RealtimeSender::try_send`] did not queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The writer is behind: the frame was dropped (count it).
    #[error("realtime send queue full")]
    Full,
    /// The connection is closed.
    #[error("realtime connection closed")]
    Closed,
}

/// How the server closed the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// Close code (1000 normal, 4000 beta shape refused, …).
    pub code: u16,
    /// Reason text.
    pub reason: String,
}

enum Outbound {
    Text(String),
    /// Caller audio (`input_audio_buffer.append`) and when its Twilio frame arrived, for the
    /// runtime's relay-latency histogram.
    Audio(String, std::time::Instant),
    /// Send a close frame and stop; the sender is told once the frame is written.
    Close(oneshot::Sender<()>),
}

/// Aborts the writer task when the last handle goes.
struct WriterGuard(AbortHandle);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens Realtime connections.
#[derive(Debug, Clone, Copy)]
pub struct RealtimeClient;

impl RealtimeClient {
    /// Connects with [`RealtimeOptions::default`].
    pub async fn connect(
        endpoint: RealtimeEndpoint,
    ) -> Result<(RealtimeSender, RealtimeReceiver), RealtimeError> {
        Self::connect_with(endpoint, RealtimeOptions::default()).await
    }

    /// Connects: `GET {url}?model={model}` with `Authorization: Bearer {api_key}` (never an
    /// `OpenAI-Beta` header), within `options.connect_timeout`.
    pub async fn connect_with(
        endpoint: RealtimeEndpoint,
        options: RealtimeOptions,
    ) -> Result<(RealtimeSender, RealtimeReceiver), RealtimeError> {
        let ws = open(endpoint, options).await?;
        Ok(split(ws, options.channel_capacity))
    }

    /// Connects as [`connect_with`](Self::connect_with), for an owner that writes and reads
    /// on one task: the sending half is a [`RealtimeSink`] it writes itself (no writer task,
    /// no queue between them).
    pub async fn connect_owned(
        endpoint: RealtimeEndpoint,
        options: RealtimeOptions,
    ) -> Result<(RealtimeSink, RealtimeReceiver), RealtimeError> {
        let (sink, stream) = open(endpoint, options).await?.split();
        Ok((
            RealtimeSink { sink },
            RealtimeReceiver {
                stream,
                close: None,
                done: false,
                _guard: None,
            },
        ))
    }
}

/// Opens the websocket.
async fn open(endpoint: RealtimeEndpoint, options: RealtimeOptions) -> Result<Ws, RealtimeError> {
    let url = endpoint.connect_url();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(RealtimeError::Connect)?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", endpoint.api_key))
        .map_err(|_| RealtimeError::Protocol("API key is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    let connector = if url.starts_with("wss://") {
        Some(Connector::Rustls(tls_config()?))
    } else {
        Some(Connector::Plain)
    };
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(options.websocket_config()),
        true,
        connector,
    );
    match tokio::time::timeout(options.connect_timeout, connecting).await {
        Err(_) => Err(RealtimeError::Timeout),
        Ok(Err(tungstenite::Error::Http(response))) => {
            Err(RealtimeError::Handshake(response.status().as_u16()))
        }
        Ok(Err(error)) => Err(RealtimeError::Connect(error)),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// rustls with the ring provider and the webpki roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, RealtimeError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RealtimeError::Protocol(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn split(ws: Ws, capacity: usize) -> (RealtimeSender, RealtimeReceiver) {
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(write_loop(sink, rx));
    let guard = Arc::new(WriterGuard(task.abort_handle()));
    (
        RealtimeSender {
            tx,
            _guard: guard.clone(),
        },
        RealtimeReceiver {
            stream,
            close: None,
            done: false,
            _guard: Some(guard),
        },
    )
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Outbound>,
) {
    let mut closed = None;
    // Registered once per connection, not looked up per frame.
    let latency = metrics::histogram!("relay_latency_seconds", "direction" => "caller_to_ai");
    while let Some(outbound) = rx.recv().await {
        match outbound {
            Outbound::Text(text) => {
                if sink.feed(Message::text(text)).await.is_err() {
                    return;
                }
                if rx.is_empty() && sink.flush().await.is_err() {
                    return;
                }
            }
            Outbound::Audio(text, received) => {
                if sink.feed(Message::text(text)).await.is_err() {
                    return;
                }
                if rx.is_empty() && sink.flush().await.is_err() {
                    return;
                }
                latency.record(received.elapsed().as_secs_f64());
            }
            Outbound::Close(done) => {
                closed = Some(done);
                break;
            }
        }
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    if let Some(done) = closed {
        let _ = done.send(());
    }
    let _ = sink.close().await;
}

/// The sending half of a connection written by its owner's task
/// ([`RealtimeClient::connect_owned`]): audio is fed without waiting (a socket that cannot
/// take it now drops it), and the owner flushes when it has nothing more to write.
pub struct RealtimeSink {
    sink: futures::stream::SplitSink<Ws, Message>,
}

impl std::fmt::Debug for RealtimeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSink").finish_non_exhaustive()
    }
}

impl RealtimeSink {
    /// Feeds `input_audio_buffer.append` of `audio_b64` if the socket can take it now
    /// (written at the next flush); [`TrySendError::Full`] when it cannot (count it as
    /// dropped), never a wait.
    pub fn try_feed_audio(&mut self, audio_b64: &str) -> Result<(), TrySendError> {
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        match self.sink.poll_ready_unpin(&mut cx) {
            std::task::Poll::Ready(Ok(())) => self
                .sink
                .start_send_unpin(Message::text(append_json(audio_b64)))
                .map_err(|_| TrySendError::Closed),
            std::task::Poll::Ready(Err(_)) => Err(TrySendError::Closed),
            std::task::Poll::Pending => Err(TrySendError::Full),
        }
    }

    /// Writes what was fed to the socket.
    pub fn poll_flush(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), RealtimeError>> {
        self.sink
            .poll_flush_unpin(cx)
            .map_err(|_| RealtimeError::Closed)
    }

    /// Sends a client event (fed and flushed).
    pub async fn send(&mut self, event: &ClientEvent) -> Result<(), RealtimeError> {
        let text = event
            .to_json()
            .map_err(|e| RealtimeError::Protocol(e.to_string()))?;
        self.send_text(text).await
    }

    /// Sends a pre-serialised text frame (fed and flushed).
    pub async fn send_text(&mut self, text: String) -> Result<(), RealtimeError> {
        self.sink
            .send(Message::text(text))
            .await
            .map_err(|_| RealtimeError::Closed)
    }

    /// Sends a normal close frame after what was fed (the receiver then sees the server's
    /// close and ends).
    pub async fn close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.sink.send(Message::Close(Some(frame))).await.is_ok() {
            let _ = self.sink.close().await;
        }
    }
}

/// Sends client events. Cheap to clone; all clones feed the same writer task.
#[derive(Clone)]
pub struct RealtimeSender {
    tx: mpsc::Sender<Outbound>,
    _guard: Arc<WriterGuard>,
}

impl std::fmt::Debug for RealtimeSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeSender")
            .field("closed", &self.tx.is_closed())
            .finish_non_exhaustive()
    }
}

impl RealtimeSender {
    /// Queues a control event, waiting for room.
    pub async fn send(&self, event: &ClientEvent) -> Result<(), RealtimeError> {
        let text = event
            .to_json()
            .map_err(|e| RealtimeError::Protocol(e.to_string()))?;
        self.send_text(text).await
    }

    /// Queues a pre-serialised text frame, waiting for room.
    pub async fn send_text(&self, text: String) -> Result<(), RealtimeError> {
        self.tx
            .send(Outbound::Text(text))
            .await
            .map_err(|_| RealtimeError::Closed)
    }

    /// Queues an event if there is room now.
    pub fn try_send(&self, event: &ClientEvent) -> Result<(), TrySendError> {
        let text = event.to_json().map_err(|_| TrySendError::Closed)?;
        self.try_send_text(text)
    }

    /// Queues `input_audio_buffer.append` of `audio_b64` if there is room now (the hot
    /// path: the base64 is copied once, into the frame).
    pub fn try_send_audio(&self, audio_b64: &str) -> Result<(), TrySendError> {
        // Reserve first, so a full queue costs no serialisation.
        let permit = self.tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => TrySendError::Full,
            mpsc::error::TrySendError::Closed(()) => TrySendError::Closed,
        })?;
        permit.send(Outbound::Audio(
            append_json(audio_b64),
            std::time::Instant::now(),
        ));
        Ok(())
    }

    /// Queues a pre-serialised text frame if there is room now.
    pub fn try_send_text(&self, text: String) -> Result<(), TrySendError> {
        self.tx.try_send(Outbound::Text(text)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TrySendError::Full,
            mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
        })
    }

    /// Sends a normal close frame after the frames already queued, and returns once it is
    /// written (or at once when the connection is already gone); the receiver then sees the
    /// server's close and ends.
    ///
    /// Waiting matters to owners that drop every handle right after: that aborts the writer
    /// task, and a close frame still queued would never be sent (the server would see a
    /// reset instead of a normal close).
    pub async fn close(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Outbound::Close(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Drops the connection at once, without a close frame (what a network reset looks
    /// like to the server): the writer task is aborted, and the socket goes as soon as the
    /// receiver is dropped too. Fault injection (`CHAOS_HOOKS`); a normal end uses
    /// [`close`](Self::close).
    pub fn reset(&self) {
        self._guard.0.abort();
    }

    /// True once the writer task has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Receives server events, parsing on the caller's task.
pub struct RealtimeReceiver {
    stream: futures::stream::SplitStream<Ws>,
    close: Option<CloseInfo>,
    done: bool,
    /// The writer task's guard (none when the sending half is a [`RealtimeSink`]).
    _guard: Option<Arc<WriterGuard>>,
}

impl std::fmt::Debug for RealtimeReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeReceiver")
            .field("close", &self.close)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl RealtimeReceiver {
    /// The next event. `None` after a close frame (see [`close_info`](Self::close_info)) or
    /// the end of the stream; `Some(Err(Closed))` once when the socket was reset without a
    /// close frame; `Some(Err(Protocol))` for a frame that is not a valid event (the
    /// connection stays usable).
    pub async fn recv(&mut self) -> Option<Result<ServerEvent, RealtimeError>> {
        let text = self.recv_text().await?;
        Some(text.and_then(|text| {
            ServerEvent::parse(text.as_str()).map_err(|e| RealtimeError::Protocol(e.to_string()))
        }))
    }

    /// The next text frame, unparsed (the call's media task reads audio deltas borrowed from
    /// it, `call::frames`); otherwise as [`recv`](Self::recv), a binary frame being
    /// `Some(Err(Protocol))`.
    pub async fn recv_text(&mut self) -> Option<Result<Utf8Bytes, RealtimeError>> {
        if self.done {
            return None;
        }
        loop {
            let message = match self.stream.next().await {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(message)) => message,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => {
                    self.done = true;
                    return None;
                }
                Some(Err(error)) => {
                    tracing::debug!(error = %error, "realtime socket failed");
                    self.done = true;
                    return Some(Err(RealtimeError::Closed));
                }
            };
            match message {
                Message::Text(text) => return Some(Ok(text)),
                Message::Binary(_) => {
                    return Some(Err(RealtimeError::Protocol("binary frame".into())));
                }
                Message::Close(frame) => {
                    self.close = Some(match frame {
                        Some(frame) => CloseInfo {
                            code: u16::from(frame.code),
                            reason: frame.reason.to_string(),
                        },
                        None => CloseInfo {
                            code: u16::from(CloseCode::Status),
                            reason: String::new(),
                        },
                    });
                    self.done = true;
                    // Poll on briefly so tungstenite flushes its reply to the close frame
                    // and sees the end of the stream.
                    let drain = async { while let Some(Ok(_)) = self.stream.next().await {} };
                    let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
                    return None;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// The server's close frame, once received.
    pub fn close_info(&self) -> Option<&CloseInfo> {
        self.close.as_ref()
    }
}
