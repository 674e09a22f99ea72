//! The HTTP server: accept loop, per-request context (request id, client address, route
//! label), request metrics and logs, and graceful connection draining with a deadline.
//!
//! warp's own `serve` cannot wrap the filter service, so connections are served here with
//! hyper-util directly (with upgrades, for the media websocket).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics::{counter, histogram};
use tokio::net::TcpListener;
use tower_service::Service;

use super::context::{self, RequestScope};

/// The client address used for per-IP limits: the peer, or the first address of the
/// configured proxy header when present and well-formed.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps the warp service with the request context.
#[derive(Clone)]
struct AppService<S> {
    inner: S,
    peer: SocketAddr,
    client_ip_header: Option<HeaderName>,
}

fn client_ip(req: &Request<Incoming>, peer: SocketAddr, header: Option<&HeaderName>) -> IpAddr {
    header
        .and_then(|h| req.headers().get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| peer.ip())
}

fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl<S, B> Service<Request<Incoming>> for AppService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let id =
            context::request_id_from(req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()));
        let ip = client_ip(&req, self.peer, self.client_ip_header.as_ref());
        req.extensions_mut().insert(ClientIp(ip));
        let method = method_label(req.method());
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let started = Instant::now();
            let (result, route) = context::scoped(RequestScope::new(id.clone()), async move {
                inner.call(req).await
            })
            .await;
            let mut resp = match result {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(REQUEST_ID.clone(), v);
            }
            let elapsed = started.elapsed();
            let status = resp.status().as_u16();
            counter!("http_requests_total", "route" => route, "method" => method, "status" => status.to_string())
                .increment(1);
            histogram!("http_request_duration_seconds", "route" => route, "method" => method)
                .record(elapsed.as_secs_f64());
            tracing::info!(
                request_id = %id,
                method,
                route,
                status,
                elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
            Ok(resp)
        })
    }
}

/// Serves `svc` on `listener` until `shutdown` resolves, then stops accepting and gives
/// open connections `grace` to finish. Returns whether they all finished in time.
pub async fn serve<S, B>(
    listener: TcpListener,
    svc: S,
    client_ip_header: Option<HeaderName>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut accept_backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %error, "accept failed");
                        tokio::time::sleep(accept_backoff).await;
                        accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                accept_backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(AppService {
                    inner: svc.clone(),
                    peer,
                    client_ip_header: client_ip_header.clone(),
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
}
