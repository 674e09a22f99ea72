//! The thin warp layer: one file per API surface, shared filters, the error shape, and
//! the server loop. Handlers parse, send one message to an actor and map the reply; they
//! hold no state and no business logic.
//!
//! Every route is declared once: its handler's `#[utoipa::path]` attribute (method, path,
//! documentation) and one line of the route table ([`routes::table`]) naming its
//! authentication. [`mount`] builds the filter (exact template match, route label for
//! metrics, bounded body, authentication, typed path parameters) and the OpenAPI documents
//! ([`crate::openapi`]) are derived from the same table.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actors::Actors;
use actors::store::Store;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use warp::{Filter, Reply};

use crate::config::Config;

pub mod admin;
pub mod alerts;
pub mod body;
pub mod call_stream;
pub mod callbacks;
pub mod calls;
pub mod campaigns;
pub mod console;
pub mod context;
pub mod dnc;
pub mod docs;
pub mod error;
pub mod evaluation_series;
pub mod evaluations;
pub mod fields;
pub mod filters;
pub mod guard;
pub mod live_stream;
pub mod media;
pub mod media_gate;
pub mod mount;
pub mod ops;
pub mod page;
pub mod queues;
pub mod recordings;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod sessions;
pub mod signals;
pub mod template;
pub mod upgrade;
pub mod warm_transfer;
pub mod webhook_deliveries;
pub mod webhooks;

pub use error::{ApiError, ErrorResponse};

/// Shared state handed to handlers (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The message of the 503 a draining node answers new calls and media streams with while a
/// peer takes them ([`AppState::refuses_new_calls`]).
pub const DRAINING_REFUSAL: &str = "this node is shutting down; another node takes new calls";

/// What handlers can reach.
pub struct AppInner {
    /// Validated configuration.
    pub config: Config,
    /// The store: readiness checks, and the plain modules handlers call directly (operator
    /// queues, callback tasks, route reads). State that needs one owner goes through actors.
    pub store: Store,
    /// The actor tree.
    pub actors: Actors,
    /// Set when shutdown starts: readiness answers 503.
    pub draining: AtomicBool,
    /// Set when shutdown starts with another node up to take calls: new inbound calls and
    /// media streams are refused with 503 before any work, so the load balancer retries
    /// them on a peer (without a peer they are served as before: the fallback).
    peer_takes_new: AtomicBool,
    /// Flips to true when shutdown starts, for long-lived responses (SSE) to end.
    drain_signal: tokio::sync::watch::Sender<bool>,
    /// Per-client-IP limits of unauthenticated routes and failed authentication.
    pub ip_guard: IpGuard,
    /// Prometheus registry.
    pub metrics: PrometheusHandle,
    /// Signature failures and stream-token rejections, recorded into the cluster views.
    pub auth_log: alerts::AuthTransportLog,
    /// The node's campaign dialer (started with the state, stopped when shutdown starts).
    pub campaigns: actors::campaign::Dialer,
    /// Verified Twilio webhooks per tenant: a cluster-wide budget, this node's share.
    pub webhook_limiter: actors::ratelimit::ClusterRateLimiter,
    /// Process start, for uptime.
    pub started: Instant,
    /// This node: its heartbeat and the reconciler of lost nodes' calls.
    pub nodes: actors::nodes::Nodes,
    /// The cluster-wide live-call registry: this node's publisher and feed, and the reads.
    pub live: actors::active::LiveRegistry,
    /// Media websockets waiting for their `start` (bounded per address and in total).
    pub media_gate: media_gate::MediaGate,
    /// The last verified signed webhook per tenant and the last metrics scrape (readiness),
    /// flushed to the database for the other nodes.
    pub signals: Arc<signals::ReadinessSignals>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Builds the state.
    pub fn new(
        config: Config,
        store: Store,
        actors: Actors,
        metrics: PrometheusHandle,
        nodes: actors::nodes::Nodes,
        live: actors::active::LiveRegistry,
    ) -> Self {
        let ip_guard = IpGuard::new(config.rate_limit_per_ip_per_minute);
        let media_gate =
            media_gate::MediaGate::new(config.media_pending_max, config.media_pending_per_ip);
        let webhook_limiter = actors::ratelimit::ClusterRateLimiter::new(
            config.rate_limit_webhooks_per_tenant_per_minute,
            nodes.cluster_size().clone(),
        );
        let drain_signal = tokio::sync::watch::Sender::new(false);
        let signals = Arc::new(signals::ReadinessSignals::default());
        let mut drained = drain_signal.subscribe();
        Arc::clone(&signals).spawn_flusher(
            store.clone(),
            nodes.instance().id.as_str().to_owned(),
            async move {
                let _ = drained.wait_for(|draining| *draining).await;
            },
        );
        let campaigns = actors::campaign::Dialer::start(
            actors.telephony.clone(),
            actors::campaign::DialerSettings::default(),
        );
        Self(Arc::new(AppInner {
            campaigns,
            auth_log: alerts::AuthTransportLog::new(actors.telephony.views().clone()),
            webhook_limiter,
            config,
            store,
            actors,
            draining: AtomicBool::new(false),
            peer_takes_new: AtomicBool::new(false),
            drain_signal,
            ip_guard,
            metrics,
            started: Instant::now(),
            nodes,
            live,
            media_gate,
            signals,
        }))
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Checks a tenant-supplied URL (tools, identity checks, event webhooks) against the
    /// egress policy: https only and no literal private address, unless
    /// `OUTBOUND_ALLOW_PRIVATE` is on. Addresses behind names are checked again, after
    /// resolution, on every request.
    pub fn check_tenant_url(&self, url: &str) -> Result<(), String> {
        let policy = actors::egress::EgressPolicy {
            allow_private: self.config.outbound_allow_private,
        };
        actors::egress::check_url(url, &policy)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Whether new inbound calls and media streams go to another node (answered 503 with
    /// [`DRAINING_REFUSAL`]): this one is draining and a peer was up when it started to.
    pub fn refuses_new_calls(&self) -> bool {
        self.is_draining() && self.peer_takes_new.load(Ordering::SeqCst)
    }

    /// The start of the shutdown protocol: asks whether a peer is up (new calls are then
    /// refused with 503 for the load balancer to retry elsewhere), starts draining and
    /// records the node draining in the database.
    pub async fn begin_drain(&self) {
        let peer = self.nodes.peer_available().await;
        self.peer_takes_new.store(peer, Ordering::SeqCst);
        self.start_draining();
        self.nodes.draining().await;
    }

    /// Starts draining (readiness turns 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.drain_signal.send_replace(true);
    }

    /// Resolves once shutdown has started (at once if it already has): long-lived
    /// responses end on it so that open streams never hold the shutdown for its grace period.
    pub fn drained(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.drain_signal.subscribe();
        async move {
            let _ = rx.wait_for(|draining| *draining).await;
        }
    }

    /// How long handlers wait for an actor, in milliseconds.
    pub fn actor_timeout_ms(&self) -> u64 {
        u64::try_from(self.config.actor_call_timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Per-IP limiting: a GCRA limiter for routes without credentials, and a block list fed by
/// failed authentication, checked *before* a credential is verified so guessing is throttled.
/// Per node, unlike the per-tenant budgets: an address is throttled by each node it reaches.
pub struct IpGuard {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: DashMap<IpAddr, Instant>,
}

impl IpGuard {
    fn new(per_minute: std::num::NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            blocked: DashMap::new(),
        }
    }

    /// Counts one request of `ip` on a route without credentials.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.check_blocked(ip)?;
        self.limiter.check_key(&ip).map_err(|not_until| {
            metrics::counter!("rate_limited_total", "limit" => "ip").increment(1);
            ApiError::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }
        })
    }

    /// Refuses an address that failed authentication too often, until its block ends.
    pub fn check_blocked(&self, ip: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        if let Some(until) = self.blocked.get(&ip).map(|u| *u) {
            if until > now {
                metrics::counter!("rate_limited_total", "limit" => "auth_failures").increment(1);
                return Err(ApiError::RateLimited {
                    retry_after: until - now,
                });
            }
            self.blocked.remove(&ip);
        }
        Ok(())
    }

    /// Records a failed authentication; past the limit the address is blocked for a while.
    pub fn record_failure(&self, ip: IpAddr) {
        if let Err(not_until) = self.limiter.check_key(&ip) {
            let wait = not_until
                .wait_time_from(DefaultClock::default().now())
                .max(Duration::from_secs(1));
            self.blocked.insert(ip, Instant::now() + wait);
        }
    }
}

/// Every route of the service: the operator console's pages (not part of the API
/// documents), then the route table, with the rejection handler on top.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    console::routes()
        .or(mount::dispatch(state, routes::table()))
        .unify()
        .recover(error::handle_rejection)
        .unify()
        .map(Reply::into_response)
}
