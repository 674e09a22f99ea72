//! The simulator's plain-HTTP side, on the same port as the websocket: the request head is
//! read first; a websocket upgrade goes on to the realtime session with the bytes already
//! read replayed ([`Replay`]), and anything else is answered here and the connection closed.
//!
//! `POST /v1/chat/completions` (Bearer key checked like the websocket's) answers as a
//! deterministic judge ([`super::judge`]) in the shape the real API returns
//! (`choices[0].message.content` as a JSON string, `usage`), unless a fault is set: a delay,
//! an HTTP error status, invalid JSON, or no answer at all.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::judge::judge;
use super::state::{JudgeFault, JudgeRequestRecord, SharedRef, lock};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 4 << 20;
/// The judge's path.
pub(crate) const CHAT_PATH: &str = "/v1/chat/completions";

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request asks for a websocket.
    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next()?.split(' ');
    let method = request.next()?.to_owned();
    let target = request.next()?;
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Head {
        method,
        path,
        headers,
    })
}

/// Reads the request head; returns it with every byte read so far (the head and whatever
/// followed it). `None` when the peer closed or sent no valid head.
pub(crate) async fn read_head(tcp: &mut TcpStream) -> Option<(Head, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 2048];
    loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_head(&buffer[..end])?;
            return Some((head, buffer));
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
    }
}

/// A stream that yields `prefix` before reading from `inner` (the bytes consumed while
/// looking at the head).
pub(crate) struct Replay {
    prefix: Vec<u8>,
    position: usize,
    inner: TcpStream,
}

impl Replay {
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Self {
            prefix,
            position: 0,
            inner,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.position < this.prefix.len() {
            let rest = &this.prefix[this.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.position += n;
            if this.position == this.prefix.len() {
                this.prefix = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn error_body(message: &str, kind: &str, code: Option<&str>) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

async fn respond(tcp: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Answers one plain HTTP request (`read` holds the head and what followed it) and closes.
pub(crate) async fn serve(shared: SharedRef, mut tcp: TcpStream, head: Head, read: Vec<u8>) {
    if head.path != CHAT_PATH {
        return respond(
            &mut tcp,
            404,
            &error_body("Not found.", "invalid_request_error", None),
        )
        .await;
    }
    if head.method != "POST" {
        return respond(
            &mut tcp,
            405,
            &error_body("Method not allowed.", "invalid_request_error", None),
        )
        .await;
    }
    let authorized = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| shared.config.api_keys.iter().any(|k| k == key));
    let length = head
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let Some(length) = length.filter(|n| *n <= MAX_BODY) else {
        return respond(
            &mut tcp,
            413,
            &error_body(
                "A content-length of at most 4 MiB is required.",
                "invalid_request_error",
                None,
            ),
        )
        .await;
    };
    let head_len = read
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(read.len(), |p| p + 4);
    let mut body = read[head_len..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0_u8; (length - body.len()).min(64 * 1024)];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let model = request
        .as_ref()
        .and_then(|r| r.get("model"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let input = request.as_ref().and_then(|r| {
        r.get("messages")?
            .as_array()?
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .find_map(|m| {
                let content = m.get("content")?.as_str()?;
                serde_json::from_str::<actors::evaluation::judge::JudgeInput>(content).ok()
            })
    });
    let fault = shared.next_judge_fault();
    let (status, answer) = if !authorized {
        (
            401,
            error_body(
                "Incorrect API key provided.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
        )
    } else if let Some(JudgeFault::Status(status)) = fault {
        (
            status,
            error_body(
                "Simulated failure.",
                "server_error",
                Some("simulated_failure"),
            ),
        )
    } else {
        match &input {
            None => (
                400,
                error_body(
                    "The simulator judges only StateSet evaluation requests (a JudgeInput user message).",
                    "invalid_request_error",
                    None,
                ),
            ),
            Some(input) => {
                let content = if fault == Some(JudgeFault::InvalidJson) {
                    String::from("{\"summary\": \"cut off")
                } else {
                    let verdicts = lock(&shared.settings).judge_verdicts.clone();
                    let output = judge(input, |key| verdicts.get(key).cloned());
                    serde_json::to_string(&output).unwrap_or_default()
                };
                let prompt_tokens = body.len() / 4;
                let completion_tokens = content.len() / 4;
                let n = shared.event_id();
                (
                    200,
                    json!({
                        "id": format!("chatcmpl-sim-{n}"),
                        "object": "chat.completion",
                        "created": chrono::Utc::now().timestamp(),
                        "model": if model.is_empty() { "sim-judge" } else { model.as_str() },
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": null},
                            "finish_reason": "stop"
                        }],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens
                        }
                    })
                    .to_string(),
                )
            }
        }
    };
    shared.judge_request(JudgeRequestRecord {
        authorized,
        model,
        criteria: input
            .as_ref()
            .map(|i| i.criteria.iter().map(|c| c.key.clone()).collect())
            .unwrap_or_default(),
        status: if fault == Some(JudgeFault::Hang) {
            0
        } else {
            status
        },
        body: body_text,
    });
    match fault {
        Some(JudgeFault::Hang) => {
            // Hold the connection open without answering until the client gives up.
            let mut sink = [0_u8; 1024];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        Some(JudgeFault::Delay(delay)) => tokio::time::sleep(delay).await,
        _ => {}
    }
    respond(&mut tcp, status, &answer).await;
}

/// How long the HTTP side waits for a request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_upgrades_are_recognised() {
        let head = parse_head(
            b"GET /v1/realtime?model=x HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade",
        )
        .expect("head");
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/v1/realtime");
        assert!(head.is_upgrade());
        let post =
            parse_head(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 12").expect("head");
        assert!(!post.is_upgrade());
        assert_eq!(post.header("content-length"), Some("12"));
        assert_eq!(parse_head(b"\xff\xfe"), None);
    }
}
