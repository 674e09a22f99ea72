//! Egress over loopback: tiny HTTP/1.1 servers started by each test, speaking raw bytes.
//!
//! "The server saw no connection" is proven without waiting: after the refusal, the test
//! connects a sentinel socket and checks that the first connection the server accepted is
//! the sentinel (accepts are FIFO).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

/// What a test server does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Reads the request, writes these bytes, closes.
    Respond(Vec<u8>),
    /// Never answers (holds the connection open).
    Silent,
}

/// A request the server received: head (request line and headers) and body.
#[derive(Debug)]
struct Received {
    head: String,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

struct TestServer {
    addr: SocketAddr,
    /// Peer address of every accepted connection, in order.
    accepted: mpsc::UnboundedReceiver<SocketAddr>,
    /// Every complete request read.
    requests: mpsc::UnboundedReceiver<Received>,
}

impl TestServer {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (accepted_tx, accepted) = mpsc::unbounded_channel();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let _ = accepted_tx.send(peer);
                let behaviour = behaviour.clone();
                let requests_tx = requests_tx.clone();
                tokio::spawn(async move {
                    serve(stream, behaviour, requests_tx).await;
                });
            }
        });
        Self {
            addr,
            accepted,
            requests,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Asserts that no connection reached the server before this call.
    async fn assert_no_connection(&mut self) {
        let sentinel = TcpStream::connect(self.addr).await.expect("sentinel");
        let sentinel_addr = sentinel.local_addr().expect("sentinel addr");
        let first = tokio::time::timeout(Duration::from_secs(10), self.accepted.recv())
            .await
            .expect("the server accepts the sentinel")
            .expect("server running");
        assert_eq!(
            first, sentinel_addr,
            "a connection reached the server before the sentinel"
        );
    }

    async fn next_request(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.requests.recv())
            .await
            .expect("a request arrives")
            .expect("server running")
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    requests: mpsc::UnboundedSender<Received>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = requests.send(Received {
        head,
        body: buf[head_end..head_end + length].to_vec(),
    });
    match behaviour {
        Behaviour::Respond(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Silent => {
            // Hold the socket until the client gives up.
            let _ = stream.read(&mut chunk).await;
        }
    }
}

fn response(status: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn egress(allow_private: bool) -> Egress {
    Egress::new(EgressPolicy { allow_private }).expect("client")
}

const SECRET: &[u8] = b"whsec_egress_tests";
const T: Duration = Duration::from_secs(5);

async fn post(e: &Egress, url: &str) -> Result<EgressResponse, EgressError> {
    e.post_signed(url, SECRET, b"{}".to_vec(), &[], T, 4096)
        .await
}

#[tokio::test]
async fn refuses_every_non_public_destination_without_connecting() {
    let mut server = TestServer::start(Behaviour::Respond(response("200 OK", "", b"ok"))).await;
    let port = server.port();
    let e = egress(false);
    assert_eq!(
        post(&e, &format!("http://127.0.0.1:{port}/hook")).await,
        Err(EgressError::Scheme)
    );
    for (url, host) in [
        (format!("https://127.0.0.1:{port}/hook"), "127.0.0.1"),
        ("https://10.0.0.1/hook".to_owned(), "10.0.0.1"),
        (
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
        ),
        (format!("https://[::1]:{port}/hook"), "::1"),
        (
            format!("https://[::ffff:127.0.0.1]:{port}/hook"),
            "::ffff:127.0.0.1",
        ),
        // The decimal form of 127.0.0.1 is an IP literal too.
        (format!("https://2130706433:{port}/hook"), "127.0.0.1"),
    ] {
        assert_eq!(
            post(&e, &url).await,
            Err(EgressError::BlockedAddress(host.to_owned())),
            "{url}"
        );
    }
    // A name resolving to loopback is refused after resolution, before any connection.
    assert_eq!(
        post(&e, &format!("https://localhost:{port}/hook")).await,
        Err(EgressError::BlockedAddress("localhost".to_owned()))
    );
    server.assert_no_connection().await;
}

#[tokio::test]
async fn the_resolver_refuses_names_with_private_addresses() {
    let strict = PublicOnlyResolver {
        allow_private: false,
    };
    assert_eq!(
        strict.lookup("localhost").await,
        Err(EgressError::BlockedAddress("localhost".to_owned()))
    );
    let lenient = PublicOnlyResolver {
        allow_private: true,
    };
    let addrs = lenient.lookup("localhost").await.expect("resolves");
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
}

#[test]
fn check_url_cases() {
    let strict = EgressPolicy::default();
    let dev = EgressPolicy {
        allow_private: true,
    };
    assert_eq!(
        check_url("https://hooks.example.com/a?b=c", &strict)
            .expect("ok")
            .as_str(),
        "https://hooks.example.com/a?b=c"
    );
    assert!(
        check_url("https://localhost:8443/hook", &strict).is_ok(),
        "no DNS at config time"
    );
    assert_eq!(
        check_url("http://hooks.example.com/", &strict),
        Err(EgressError::Scheme)
    );
    assert!(check_url("http://hooks.example.com/", &dev).is_ok());
    assert_eq!(
        check_url("ftp://hooks.example.com/", &dev),
        Err(EgressError::Scheme)
    );
    assert_eq!(
        check_url("file:///etc/passwd", &dev),
        Err(EgressError::Scheme)
    );
    assert!(matches!(
        check_url("not a url", &strict),
        Err(EgressError::InvalidUrl(_))
    ));
    assert!(matches!(
        check_url("https://user:pw@hooks.example.com/", &strict),
        Err(EgressError::InvalidUrl(_))
    ));
    assert!(matches!(
        check_url(
            &format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)),
            &strict
        ),
        Err(EgressError::InvalidUrl(_))
    ));
    for (url, host) in [
        ("https://10.0.0.1/", "10.0.0.1"),
        ("https://192.168.1.10:8443/", "192.168.1.10"),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254"),
        (
            "https://[::ffff:169.254.169.254]/",
            "::ffff:169.254.169.254",
        ),
        ("https://0x7f.1/", "127.0.0.1"),
    ] {
        assert_eq!(
            check_url(url, &strict),
            Err(EgressError::BlockedAddress(host.to_owned())),
            "{url}"
        );
        assert!(check_url(url, &dev).is_ok(), "{url} allowed in development");
    }
    assert!(check_url("https://8.8.8.8/hook", &strict).is_ok());
}

#[tokio::test]
async fn posts_signed_json_with_extra_headers() {
    let mut server = TestServer::start(Behaviour::Respond(response("200 OK", "", b"thanks"))).await;
    let e = egress(true);
    let body = br#"{"id":"evt_1","event":"voice.call.started"}"#.to_vec();
    let got = e
        .post_signed(
            &format!("http://127.0.0.1:{}/hook", server.port()),
            SECRET,
            body.clone(),
            &[("Idempotency-Key", "evt_1".to_owned())],
            T,
            4096,
        )
        .await
        .expect("delivered");
    assert_eq!(got.status, 200);
    assert!(got.is_success());
    assert_eq!(got.body, b"thanks");
    let req = server.next_request().await;
    assert!(req.head.starts_with("POST /hook HTTP/1.1"), "{}", req.head);
    assert_eq!(req.body, body);
    assert_eq!(req.header("idempotency-key").as_deref(), Some("evt_1"));
    assert_eq!(
        req.header("content-type").as_deref(),
        Some("application/json")
    );
    let signature = req.header(SIGNATURE_HEADER).expect("signature header");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(verify(SECRET, &signature, &req.body, now, 300), Ok(()));
    assert_eq!(
        verify(b"wrong", &signature, &req.body, now, 300),
        Err(SignatureError::Mismatch)
    );
}

#[tokio::test]
async fn error_statuses_are_answers_not_errors() {
    let server = TestServer::start(Behaviour::Respond(response(
        "503 Service Unavailable",
        "",
        b"busy",
    )))
    .await;
    let got = post(
        &egress(true),
        &format!("http://127.0.0.1:{}/", server.port()),
    )
    .await
    .expect("an answer");
    assert_eq!(got.status, 503);
    assert!(!got.is_success());
}

#[tokio::test]
async fn redirects_are_refused_and_never_followed() {
    let mut target = TestServer::start(Behaviour::Respond(response("200 OK", "", b""))).await;
    let redirector = TestServer::start(Behaviour::Respond(response(
        "302 Found",
        &format!("location: http://127.0.0.1:{}/elsewhere\r\n", target.port()),
        b"",
    )))
    .await;
    assert_eq!(
        post(
            &egress(true),
            &format!("http://127.0.0.1:{}/", redirector.port())
        )
        .await,
        Err(EgressError::Redirect(302))
    );
    target.assert_no_connection().await;
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let big = vec![b'x'; 100_000];
    // Announced with Content-Length.
    let announced = TestServer::start(Behaviour::Respond(response("200 OK", "", &big))).await;
    assert_eq!(
        post(
            &egress(true),
            &format!("http://127.0.0.1:{}/", announced.port())
        )
        .await,
        Err(EgressError::ResponseTooLarge)
    );
    // Not announced: the body ends when the connection closes, and is cut off while read.
    let mut unannounced = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
    unannounced.extend_from_slice(&big);
    let streamed = TestServer::start(Behaviour::Respond(unannounced)).await;
    assert_eq!(
        post(
            &egress(true),
            &format!("http://127.0.0.1:{}/", streamed.port())
        )
        .await,
        Err(EgressError::ResponseTooLarge)
    );
}

#[tokio::test]
async fn the_deadline_is_honoured() {
    let mut server = TestServer::start(Behaviour::Silent).await;
    let got = egress(true)
        .post_signed(
            &format!("http://127.0.0.1:{}/", server.port()),
            SECRET,
            b"{}".to_vec(),
            &[],
            Duration::from_millis(300),
            4096,
        )
        .await;
    assert_eq!(got, Err(EgressError::Timeout));
    // The request did reach the server: it is the answer that never came.
    server.next_request().await;
}

#[tokio::test]
async fn connection_failures_are_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let got = post(&egress(true), &format!("http://127.0.0.1:{port}/")).await;
    assert!(matches!(got, Err(EgressError::Connect(_))), "{got:?}");
}
