//! A tiny "server under test" for the carrier simulator tests: it answers webhooks with
//! configured TwiML, verifies every signature with `crate::twilio::signature`, records
//! every hit, and hands accepted media websockets to the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::media::{TwilioInbound, TwilioOutbound};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use warp::Filter;
use warp::filters::ws::{Message, WebSocket};
use warp::reply::Reply as _;

use crate::twilio::signature::{build_url, build_ws_url, verify_form, verify_get};

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token";
pub const WAIT: Duration = Duration::from_secs(10);

/// One webhook the server received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub params: Vec<(String, String)>,
    pub signature_ok: bool,
}

impl Hit {
    pub fn param(&self, name: &str) -> Option<&str> {
        super::super::param(&self.params, name)
    }
}

/// An accepted media websocket and whether its upgrade signature verified.
pub struct Socket {
    pub ws: WebSocket,
    pub signature_ok: bool,
}

/// What a path answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Twiml(String),
    Status(u16),
}

pub struct TestServer {
    pub base: String,
    hits: watch::Sender<Vec<Hit>>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    sockets: mpsc::UnboundedReceiver<Socket>,
    task: tokio::task::AbortHandle,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let base_url = url::Url::parse(&base).expect("url");
        let hits = watch::Sender::new(Vec::<Hit>::new());
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let (socket_tx, sockets) = mpsc::unbounded_channel();

        let ws_base = base_url.clone();
        let media = warp::path("media-stream")
            .and(warp::path::end())
            .and(warp::ws())
            .and(warp::header::optional::<String>("x-twilio-signature"))
            .map(move |ws: warp::ws::Ws, signature: Option<String>| {
                let url = build_ws_url(&ws_base, "/media-stream");
                let signature_ok = verify_get(TOKEN, &url, signature.as_deref()).is_ok();
                let tx = socket_tx.clone();
                ws.on_upgrade(move |ws| async move {
                    let _ = tx.send(Socket { ws, signature_ok });
                })
            });

        let hook_hits = hits.clone();
        let hook_answers = answers.clone();
        let hooks = warp::post()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("x-twilio-signature"))
            .and(warp::body::bytes())
            .map(
                move |path: warp::path::FullPath, signature: Option<String>, body: Bytes| {
                    let params: Vec<(String, String)> =
                        url::form_urlencoded::parse(&body).into_owned().collect();
                    let url = build_url(&base_url, path.as_str());
                    let signature_ok =
                        verify_form(TOKEN, &url, &params, signature.as_deref()).is_ok();
                    let path = path.as_str().to_owned();
                    hook_hits.send_modify(|h| {
                        h.push(Hit {
                            path: path.clone(),
                            params,
                            signature_ok,
                        })
                    });
                    let answer = hook_answers
                        .lock()
                        .expect("lock")
                        .get(&path)
                        .cloned()
                        .unwrap_or(Answer::Status(204));
                    match answer {
                        Answer::Twiml(xml) => {
                            warp::reply::with_header(xml, "content-type", "text/xml; charset=utf-8")
                                .into_response()
                        }
                        Answer::Status(code) => warp::reply::with_status(
                            String::new(),
                            warp::http::StatusCode::from_u16(code).expect("status"),
                        )
                        .into_response(),
                    }
                },
            );
        let routes = media.or(hooks);
        let task = tokio::spawn(warp::serve(routes).incoming(listener).run()).abort_handle();
        Self {
            base,
            hits,
            answers,
            sockets,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }

    pub fn answer(&self, path: &str, answer: Answer) {
        self.answers
            .lock()
            .expect("lock")
            .insert(path.to_owned(), answer);
    }

    pub fn twiml(&self, path: &str, xml: &str) {
        self.answer(path, Answer::Twiml(xml.to_owned()));
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.borrow().clone()
    }

    pub fn hits_to(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    /// Waits (no sleeping) until `pred` holds for the hits.
    pub async fn wait_hits(&self, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let mut rx = self.hits.subscribe();
        let hits = tokio::time::timeout(WAIT, rx.wait_for(|h| pred(h)))
            .await
            .expect("timed out waiting for webhooks")
            .expect("server gone");
        hits.clone()
    }

    pub async fn accept(&mut self) -> Socket {
        tokio::time::timeout(WAIT, self.sockets.recv())
            .await
            .expect("timed out waiting for the media websocket")
            .expect("socket channel closed")
    }

    pub fn assert_all_signed(&self) {
        let hits = self.hits();
        assert!(!hits.is_empty());
        for hit in hits {
            assert!(hit.signature_ok, "bad signature on {hit:?}");
        }
    }
}

/// The next Twilio message on the socket (`None` once closed).
pub async fn next_event(ws: &mut WebSocket) -> Option<TwilioInbound> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out reading the media websocket")?;
        let Ok(message) = message else {
            return None;
        };
        if message.is_close() {
            return None;
        }
        if let Ok(text) = message.to_str() {
            return Some(TwilioInbound::parse(text).expect("twilio message"));
        }
    }
}

/// Reads until `pred` matches, returning the match and what was skipped.
pub async fn next_matching(
    ws: &mut WebSocket,
    pred: impl Fn(&TwilioInbound) -> bool,
) -> (TwilioInbound, Vec<TwilioInbound>) {
    let mut skipped = Vec::new();
    loop {
        let event = next_event(ws)
            .await
            .expect("socket closed before the event");
        if pred(&event) {
            return (event, skipped);
        }
        skipped.push(event);
    }
}

pub async fn send(ws: &mut WebSocket, message: TwilioOutbound) {
    ws.send(Message::text(message.encode()))
        .await
        .expect("send");
}

pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn client() -> reqwest::Client {
    crate::startup::install_crypto_provider();
    reqwest::Client::builder().build().expect("client")
}
