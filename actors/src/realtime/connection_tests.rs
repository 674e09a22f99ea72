//! The client connection against a bare loopback websocket server: the upgrade request,
//! frames both ways, closing, resets, timeouts and the bounded send queue.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::*;

const LIMIT: Duration = Duration::from_secs(10);

struct Upgrade {
    uri: String,
    authorization: Option<String>,
    beta: bool,
}

type Server = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Accepts one websocket connection; reports the upgrade request.
// The handshake closure returns tungstenite's `Callback` result type.
#[allow(clippy::result_large_err)]
async fn one_server(refuse: Option<u16>) -> (String, oneshot::Receiver<(Upgrade, Option<Server>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut seen = None;
        let callback = |req: &Request, resp: Response| {
            seen = Some(Upgrade {
                uri: req.uri().to_string(),
                authorization: req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                beta: req.headers().contains_key("openai-beta"),
            });
            match refuse {
                Some(status) => {
                    let mut error = ErrorResponse::new(Some("{}".into()));
                    *error.status_mut() = StatusCode::from_u16(status).expect("status");
                    Err(error)
                }
                None => Ok(resp),
            }
        };
        let ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
            .await
            .ok();
        let _ = tx.send((seen.expect("upgrade seen"), ws));
    });
    (format!("ws://{addr}/v1/realtime"), rx)
}

fn endpoint(url: String) -> RealtimeEndpoint {
    RealtimeEndpoint {
        url,
        api_key: "sk-test".into(),
        model: "gpt-realtime".into(),
    }
}

async fn next_text(server: &mut Server) -> String {
    loop {
        match tokio::time::timeout(LIMIT, server.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn connects_with_bearer_and_model_and_exchanges_events() {
    let (url, accepted) = one_server(None).await;
    let (tx, mut rx) = RealtimeClient::connect(endpoint(url))
        .await
        .expect("connect");
    let (upgrade, server) = accepted.await.expect("server");
    let mut server = server.expect("upgraded");
    assert_eq!(upgrade.uri, "/v1/realtime?model=gpt-realtime");
    assert_eq!(upgrade.authorization.as_deref(), Some("Bearer sk-test"));
    assert!(!upgrade.beta, "never OpenAI-Beta");

    server
        .send(Message::text(
            r#"{"type":"input_audio_buffer.speech_started","event_id":"e1","audio_start_ms":20,"item_id":"item_1"}"#,
        ))
        .await
        .expect("server send");
    server
        .send(Message::text(
            r#"{"type":"mcp_list_tools.in_progress","event_id":"e2"}"#,
        ))
        .await
        .expect("server send");
    server
        .send(Message::text("not json"))
        .await
        .expect("server send");
    let event = rx.recv().await.expect("event").expect("parsed");
    assert!(matches!(event, ServerEvent::SpeechStarted(ref s) if s.item_id == "item_1"));
    let unknown = rx.recv().await.expect("event").expect("parsed");
    assert!(unknown.is_unknown());
    assert!(matches!(
        rx.recv().await,
        Some(Err(RealtimeError::Protocol(_)))
    ));

    tx.send(&ClientEvent::response_create())
        .await
        .expect("send");
    tx.try_send_audio("//8=").expect("queue audio");
    tx.try_send(&ClientEvent::truncate("item_1", 40))
        .expect("queue truncate");
    assert_eq!(
        next_text(&mut server).await,
        r#"{"type":"response.create"}"#
    );
    assert_eq!(
        next_text(&mut server).await,
        r#"{"type":"input_audio_buffer.append","audio":"//8="}"#
    );
    assert_eq!(
        next_text(&mut server).await,
        r#"{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":40}"#
    );

    // The client closes: the server sees a normal close frame, the receiver ends.
    tx.close().await;
    let close = loop {
        match tokio::time::timeout(LIMIT, server.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
    // Let the server answer the close.
    assert!(
        tokio::time::timeout(LIMIT, server.next())
            .await
            .expect("end")
            .is_none()
    );
    assert!(
        tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("end")
            .is_none()
    );
    assert_eq!(rx.close_info().map(|c| c.code), Some(1000));
    assert!(rx.recv().await.is_none(), "stays ended");
    assert_eq!(tx.try_send_audio("AA=="), Err(TrySendError::Closed));
    assert!(matches!(
        tx.send(&ClientEvent::commit()).await,
        Err(RealtimeError::Closed)
    ));
}

#[tokio::test]
async fn server_close_codes_and_resets_are_reported() {
    let (url, accepted) = one_server(None).await;
    let (_tx, mut rx) = RealtimeClient::connect(endpoint(url))
        .await
        .expect("connect");
    let mut server = accepted.await.expect("server").1.expect("upgraded");
    server
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(4000),
            reason: "beta_api_shape_disabled".into(),
        })))
        .await
        .expect("close");
    assert!(
        tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("end")
            .is_none()
    );
    let info = rx.close_info().expect("close info");
    assert_eq!(
        (info.code, info.reason.as_str()),
        (4000, "beta_api_shape_disabled")
    );

    let (url, accepted) = one_server(None).await;
    let (_tx, mut rx) = RealtimeClient::connect(endpoint(url))
        .await
        .expect("connect");
    let server = accepted.await.expect("server").1.expect("upgraded");
    drop(server);
    let reset = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("in time");
    assert!(
        matches!(reset, Some(Err(RealtimeError::Closed))),
        "{reset:?}"
    );
    assert!(rx.recv().await.is_none());
    assert!(rx.close_info().is_none());
}

#[tokio::test]
async fn refused_handshakes_and_timeouts() {
    let (url, _accepted) = one_server(Some(401)).await;
    let refused = RealtimeClient::connect(endpoint(url)).await;
    assert!(
        matches!(refused, Err(RealtimeError::Handshake(401))),
        "{refused:?}"
    );

    // A server that accepts TCP but never answers the upgrade.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/v1/realtime", silent.local_addr().expect("addr"));
    let options = RealtimeOptions {
        connect_timeout: Duration::from_millis(200),
        ..RealtimeOptions::default()
    };
    let timed_out = RealtimeClient::connect_with(endpoint(url), options).await;
    assert!(
        matches!(timed_out, Err(RealtimeError::Timeout)),
        "{timed_out:?}"
    );
    drop(silent);

    let nothing = RealtimeClient::connect(endpoint("ws://127.0.0.1:1/v1/realtime".into())).await;
    assert!(
        matches!(nothing, Err(RealtimeError::Connect(_))),
        "{nothing:?}"
    );
}

#[tokio::test]
async fn a_full_queue_drops_audio_instead_of_waiting() {
    let (url, accepted) = one_server(None).await;
    let options = RealtimeOptions {
        channel_capacity: 2,
        ..RealtimeOptions::default()
    };
    let (tx, rx) = RealtimeClient::connect_with(endpoint(url), options)
        .await
        .expect("connect");
    let mut server = accepted.await.expect("server").1.expect("upgraded");
    // On this single-threaded runtime the writer cannot run between the calls.
    assert_eq!(tx.try_send_audio("AA=="), Ok(()));
    assert_eq!(tx.try_send_audio("AQ=="), Ok(()));
    assert_eq!(tx.try_send_audio("Ag=="), Err(TrySendError::Full));
    assert_eq!(tx.try_send(&ClientEvent::commit()), Err(TrySendError::Full));
    assert_eq!(
        next_text(&mut server).await,
        r#"{"type":"input_audio_buffer.append","audio":"AA=="}"#
    );
    assert_eq!(
        next_text(&mut server).await,
        r#"{"type":"input_audio_buffer.append","audio":"AQ=="}"#
    );
    // Dropping both ends aborts the writer and closes the socket.
    drop(tx);
    drop(rx);
    let end = tokio::time::timeout(LIMIT, async {
        loop {
            match server.next().await {
                Some(Ok(Message::Text(t))) => panic!("unexpected frame {t}"),
                Some(Ok(_)) => continue,
                _ => break,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection ends");
}
