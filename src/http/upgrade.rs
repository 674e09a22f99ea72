//! The websocket upgrade of the media route, owned here rather than by warp's `ws()` filter:
//! warp builds its socket with tungstenite's default buffers (a 128 KiB read buffer per
//! socket, zeroed as it is read into, and a 128 KiB write threshold), which it does not let
//! a route change. Here the request's headers are checked as warp checks them, the 101 is
//! answered, and the upgraded connection becomes a `tokio-tungstenite` socket with a full
//! [`WebSocketConfig`] sized for 20 ms audio frames.

use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::reply::Response;

/// An upgraded media socket.
pub type MediaSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A websocket upgrade request, not yet answered.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade").finish_non_exhaustive()
    }
}

/// The socket's buffers and limits: reads take up to 1 KiB at a time (a caller's frame is
/// about 400 bytes, and tungstenite zeroes the chunk it reads into, so a larger chunk costs a
/// `memset` per frame for nothing; the buffer grows for a larger message, up to
/// `max_message`), writes are batched up to 4 KiB before they reach the socket (the writer
/// also flushes whenever its queue is empty), and a peer that stops reading fails the write
/// once 256 KiB are waiting instead of growing the buffer.
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

impl Upgrade {
    /// The upgrade of a request, when it is one (see [`upgrade_key`]) and its connection
    /// can be upgraded.
    pub fn of(method: &Method, headers: &HeaderMap, on_upgrade: Option<OnUpgrade>) -> Option<Self> {
        Some(Self {
            key: upgrade_key(method, headers)?.clone(),
            on_upgrade: on_upgrade?,
        })
    }

    /// Answers `101 Switching Protocols` and runs `run` on the socket once the connection
    /// is upgraded (in a task of its own; a failed upgrade is logged at debug and dropped).
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, run: F) -> Response
    where
        F: FnOnce(MediaSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    run(socket).await;
                }
                Err(error) => tracing::debug!(error = %error, "websocket upgrade failed"),
            }
        });
        let mut response = Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// The `Sec-WebSocket-Key` of a complete websocket upgrade request: `GET`, `Connection`
/// naming `upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a key (what
/// warp's `ws()` requires).
fn upgrade_key<'h>(method: &Method, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
    let header = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let complete = method == Method::GET
        && connection_upgrade
        && header(UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && header(SEC_WEBSOCKET_VERSION) == Some("13");
    headers
        .get(SEC_WEBSOCKET_KEY)
        .filter(|key| complete && !key.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE_HEADERS: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    /// The upgrade headers with `name` replaced by `value` (or removed).
    fn headers(name: &str, value: Option<&'static str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in UPGRADE_HEADERS {
            let v = if *k == name { value } else { Some(*v) };
            if let Some(v) = v {
                map.append(*k, HeaderValue::from_static(v));
            }
        }
        map
    }

    #[test]
    fn only_complete_upgrades_are_upgrades() {
        let full = headers("", None);
        assert_eq!(
            upgrade_key(&Method::GET, &full).and_then(|k| k.to_str().ok()),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert!(upgrade_key(&Method::POST, &full).is_none(), "POST");
        for (name, value) in [
            ("connection", Some("keep-alive")),
            ("connection", None),
            ("upgrade", Some("h2c")),
            ("upgrade", None),
            ("sec-websocket-version", Some("8")),
            ("sec-websocket-version", None),
            ("sec-websocket-key", None),
        ] {
            assert!(
                upgrade_key(&Method::GET, &headers(name, value)).is_none(),
                "{name}: {value:?}"
            );
        }
        // A request whose connection cannot be upgraded is not an upgrade.
        let request = http::Request::new(());
        assert!(Upgrade::of(&Method::GET, &full, Some(hyper::upgrade::on(request))).is_some());
        assert!(Upgrade::of(&Method::GET, &full, None).is_none());
    }

    #[test]
    fn the_accept_key_is_rfc6455s() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
