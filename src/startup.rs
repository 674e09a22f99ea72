//! Building and running the application: store, migrations, actor tree, HTTP server, and
//! the shutdown protocol (readiness 503 → live calls drained within the grace period, then
//! handed on through the carrier → the carrier's final status callbacks awaited, bounded →
//! connections drained → actor tree stopped → pool closed).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actors::active::{ActiveRegistry, LiveRegistry, LiveSettings};
use actors::call::{AiConfig, CallMsg, CallSettings};
use actors::crypto::{SecretBox, derive_key, hex};
use actors::egress::{Egress, EgressPolicy};
use actors::nodes::{NodeId, NodeInstance, NodeSettings, Nodes};
use actors::notifier::NotifierSettings;
use actors::ratelimit::ClusterSize;
use actors::store::Store;
use actors::stream_token::StreamTokenKeys;
use actors::supervisor::{RootConfig, RootSupervisor};
use actors::telephony::{PlacementSettings, PublicUrls};
use actors::tenant::tenant_rate_limiter;
use actors::views::ClusterViews;
use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::{Config, Secret};
use crate::http::{self as api, AppState, server};
use crate::telemetry;
use crate::twilio::carrier::TwilioCarrier;
use crate::twilio::rest::TwilioClient;
use crate::twilio::signature;

/// A built application: bound, migrated, actors running, not yet serving.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    /// The recording retention sweeper (one per node; its claims keep nodes apart).
    recording_sweeper: tokio::task::JoinHandle<()>,
}

/// How often this node sweeps recordings past their tenant's retention.
const RECORDING_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Connects to the database and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(
        config.database_url.expose(),
        config.database_max_connections,
    )
    .await
    .with_context(|| format!("cannot open the database {}", config.database_display()))?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {}", config.database_display()))?;
    Ok(store)
}

/// The master key: configured, or (SQLite file only) kept in `master.key` beside the database.
fn master_key(config: &Config) -> anyhow::Result<Secret> {
    if let Some(key) = &config.master_key {
        return Ok(key.clone());
    }
    let Some(db_path) = config.sqlite_path() else {
        tracing::warn!(
            "MASTER_KEY is not set and the database is in memory: using a throwaway key"
        );
        let bytes: [u8; 32] = rand_bytes();
        return Ok(Secret::new(hex(&bytes)));
    };
    let dir = db_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let key_path = dir.join("master.key");
    match std::fs::read_to_string(&key_path) {
        Ok(text) if text.trim().len() >= 32 => {
            tracing::warn!(path = %key_path.display(), "MASTER_KEY is not set: using the key file beside the database");
            Ok(Secret::new(text.trim()))
        }
        Ok(_) => anyhow::bail!(
            "{} is not a valid master key file (set MASTER_KEY)",
            key_path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let key = hex(&rand_bytes::<32>());
            write_private(&key_path, &key)
                .with_context(|| format!("cannot write {}", key_path.display()))?;
            tracing::warn!(path = %key_path.display(), "MASTER_KEY is not set: created a key file beside the database; back it up with the database");
            Ok(Secret::new(key))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", key_path.display())),
    }
}

/// How long calls handed on at the end of the grace period may take to leave this node
/// (the carrier redirects each one and ends its stream, which ends its actor).
const HANDOFF_PATIENCE: Duration = Duration::from_secs(10);

/// How long a stopping node keeps listening for the final status callbacks of the calls it
/// completed (the carrier sends them shortly after the media stream ends).
const FINAL_STATUS_PATIENCE: Duration = Duration::from_secs(5);

/// Drains the live calls of this node: waits up to `grace` for them to end; then hands every
/// call still live on through the carrier (each call actor asks for a redirect: to a fresh
/// stream that resumes the conversation when another node is up to take it, else to the
/// route's fallback) and waits, bounded, for their streams to close. The listener serves
/// carrier callbacks all along, since this runs before it stops accepting.
async fn drain_calls(state: &AppState, grace: Duration) {
    let mut changes = state.actors.active.subscribe();
    let start = tokio::time::Instant::now();
    if calls_ended(state, &mut changes, start + grace).await {
        return;
    }
    let resume = state.nodes.peer_available().await;
    let live = state.actors.active.list(None);
    tracing::info!(
        live_calls = live.len(),
        to = if resume { "resume" } else { "fallback" },
        "grace period over: handing live calls on"
    );
    for call in &live {
        let actor = ractor::registry::where_is(format!("call:{}", call.call_sid))
            .map(ractor::ActorRef::<CallMsg>::from);
        let sent = actor.is_some_and(|a| a.cast(CallMsg::Drain { resume }).is_ok());
        let outcome = match (sent, resume) {
            (false, _) => "gone",
            (true, true) => "resume",
            (true, false) => "fallback",
        };
        metrics::counter!("drain_handoffs_total", "to" => outcome).increment(1);
    }
    let handed = tokio::time::Instant::now();
    if !calls_ended(state, &mut changes, handed + HANDOFF_PATIENCE).await {
        tracing::warn!(
            live_calls = state.actors.active.len(),
            "calls still live after they were handed on"
        );
    }
}

/// Waits until no call is live on this node (true), or `deadline` passes (false).
async fn calls_ended(
    state: &AppState,
    changes: &mut tokio::sync::broadcast::Receiver<actors::active::ActiveEvent>,
    deadline: tokio::time::Instant,
) -> bool {
    while !state.actors.active.is_empty() {
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            _ => break,
        }
    }
    state.actors.active.is_empty()
}

/// Where the other nodes reach this one: `NODE_ADDRESS`, else the bound address, or
/// `{hostname}:{port}` when bound to every interface.
fn node_address(config: &Config, bound: SocketAddr) -> String {
    if let Some(address) = &config.node_address {
        return address.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| String::from("localhost"));
    format!("{host}:{}", bound.port())
}

/// This process's node id: `NODE_ID`, else `{hostname}/{bound address}` (stable across
/// restarts of one configuration; unique, since two processes cannot bind one address).
fn node_id(config: &Config, bound: SocketAddr) -> anyhow::Result<NodeId> {
    if let Some(id) = &config.node_id {
        return NodeId::parse(id).map_err(|e| anyhow::anyhow!("NODE_ID {e}"));
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    NodeId::parse(&format!("{host}/{}:{}", bound.ip(), bound.port()))
        .map_err(|e| anyhow::anyhow!("cannot derive a node id (set NODE_ID): {e}"))
}

/// Stream-token keys: the configured secrets, or one derived from the master key.
fn stream_token_keys(config: &Config, master: &Secret) -> StreamTokenKeys {
    let current = match &config.stream_token_secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => derive_key(
            master.expose().as_bytes(),
            b"stateset-voice/stream-token/v1",
        )
        .to_vec(),
    };
    let previous = config
        .stream_token_secret_previous
        .as_ref()
        .map(|s| s.expose().as_bytes().to_vec());
    StreamTokenKeys::new(&current, previous.as_deref())
}

/// This service's URLs as Twilio reaches them.
pub fn public_urls(base: &url::Url) -> PublicUrls {
    let http_base = signature::build_url(base, "/");
    let ws_base = signature::build_ws_url(base, "/");
    PublicUrls {
        http_base: http_base.trim_end_matches('/').to_owned(),
        ws_base: ws_base.trim_end_matches('/').to_owned(),
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        let r: [u8; 16] = uuid::Uuid::new_v4().into_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Installs the process-wide TLS crypto provider (ring) used by outbound HTTPS and wss
/// clients. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Application {
    /// Opens the store, starts the actor tree and binds the listener.
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        install_crypto_provider();
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind_addr))?;
        let local_addr = listener.local_addr()?;
        if !config.public_base_url_explicit {
            config.public_base_url = url::Url::parse(&format!("http://{local_addr}"))?;
        }
        let metrics = telemetry::metrics_handle();
        let store = open_store(&config).await?;
        let master = master_key(&config)?;
        let secret_box = SecretBox::from_master_key(master.expose().as_bytes());
        let stream_keys = stream_token_keys(&config, &master);
        let client = TwilioClient::new(config.twilio_api_base_url.clone(), config.twilio_timeout)
            .map_err(|e| anyhow::anyhow!("cannot build the Twilio client: {e}"))?;
        let egress = Egress::new(EgressPolicy {
            allow_private: config.outbound_allow_private,
        })
        .map_err(|e| anyhow::anyhow!("cannot build the outbound http client: {e}"))?;
        if config.outbound_allow_private {
            tracing::warn!(
                "OUTBOUND_ALLOW_PRIVATE is on: tenant URLs may reach private addresses (development only)"
            );
        }
        let node = NodeInstance::new(node_id(&config, local_addr)?);
        let active: Arc<ActiveRegistry> = Arc::default();
        // The live nodes the per-tenant budgets are divided by, counted on every heartbeat.
        let cluster = ClusterSize::default();
        let actors = RootSupervisor::start(RootConfig {
            egress,
            notifier: NotifierSettings {
                max_attempts: config.event_webhook_max_attempts,
                backoff_base: config.event_webhook_backoff,
                timeout: config.event_webhook_timeout,
                ..NotifierSettings::default()
            },
            carrier: Arc::new(TwilioCarrier::new(client)),
            placement: PlacementSettings {
                lookup_interval: config.carrier_lookup_interval,
                lookup_grace: config.carrier_lookup_grace,
            },
            clock: actors::time::Clock::System,
            stream_keys,
            urls: public_urls(&config.public_base_url),
            stream_token_ttl: config.stream_token_ttl,
            live_window: config.call_live_window,
            actor_timeout: config.actor_call_timeout,
            active: Arc::clone(&active),
            views: ClusterViews::start(store.clone(), node.id.to_string()),
            calls: CallSettings {
                ai: AiConfig {
                    url: config
                        .openai_realtime_url
                        .as_str()
                        .trim_end_matches('/')
                        .to_owned(),
                    api_key: config
                        .openai_api_key
                        .as_ref()
                        .map(|k| k.expose().to_owned())
                        .unwrap_or_default(),
                    connect_timeout: Duration::from_secs(10),
                },
                chaos: config.chaos_hooks,
                twilio_queue: 512,
                twilio_write_timeout: Duration::from_secs(5),
                resume_lost_leg: config.twilio_leg_resume,
                ai_reconnect: config.ai_reconnect,
            },
            store: store.clone(),
            secret_box,
            tenant_rate_limiter: Arc::new(tenant_rate_limiter(
                config.rate_limit_per_tenant_per_minute,
                cluster.clone(),
            )),
            key_cache_ttl: config.key_cache_ttl,
            max_restarts: config.supervisor_max_restarts,
            restart_window: config.supervisor_restart_window,
            evaluation: config.evaluation.settings(config.openai_api_key.as_ref()),
            node,
        })
        .await
        .context("cannot start the actor tree")?;
        let nodes = Nodes::start(
            actors.telephony.clone(),
            NodeSettings {
                heartbeat: config.node_heartbeat,
                stale_after: config.node_stale_after,
                address: node_address(&config, local_addr),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
            Some(api::calls::reconciled_placement_reply()),
            cluster,
        )
        .await
        .context("cannot record this node")?;
        let live = LiveRegistry::start(
            store.clone(),
            Arc::clone(&active),
            nodes.instance().clone(),
            LiveSettings {
                poll: config.live_feed_poll,
                retention: config.live_events_retention,
                ..LiveSettings::default()
            },
        )
        .await
        .context("cannot read the live-call events")?;
        tracing::info!(
            listen = %local_addr,
            database = %config.database_display(),
            backend = store.backend(),
            admin_api = config.admin_api_key.is_some(),
            node_id = %nodes.instance().id,
            public_base_url = %config.public_base_url,
            "stateset-voice ready"
        );
        let recording_sweeper =
            actors::recording::spawn_sweeper(actors.telephony.clone(), RECORDING_SWEEP_INTERVAL);
        let state = AppState::new(config, store, actors, metrics, nodes, live);
        Ok(Self {
            listener,
            local_addr,
            state,
            recording_sweeper,
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (tests reach the actor tree through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then runs the shutdown protocol.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let grace = state.config.shutdown_grace;
        let svc = warp::service(api::routes(state.clone()));
        let drain_state = state.clone();
        let shutdown = async move {
            shutdown.await;
            drain_state.begin_drain().await;
            // No new campaign attempts on a node that is stopping.
            drain_state.campaigns.stop().await;
            tracing::info!(
                grace_seconds = grace.as_secs(),
                live_calls = drain_state.actors.active.len(),
                "shutdown requested: draining"
            );
            drain_calls(&drain_state, grace).await;
            drain_state
                .nodes
                .await_final_statuses(FINAL_STATUS_PATIENCE)
                .await;
        };
        let header = state
            .config
            .client_ip_header
            .as_deref()
            .and_then(|h| h.parse::<http::HeaderName>().ok());
        let graceful = server::serve(self.listener, svc, header, shutdown, grace).await;
        // A sweep in flight loses nothing: its claims expire and the next sweep retakes them.
        self.recording_sweeper.abort();
        state
            .actors
            .root
            .stop_and_wait(Some(String::from("shutdown")), Some(grace))
            .await
            .ok();
        // The call actors are gone: their ends are published before the node stops.
        state.live.stop().await;
        state.nodes.stop().await;
        // The cluster views' entries still queued are written before the pool closes.
        state.actors.telephony.views().flush().await;
        state.store.close().await;
        if graceful {
            tracing::info!("shutdown complete");
        } else {
            tracing::warn!("shutdown grace period elapsed with connections still open");
        }
        Ok(())
    }
}
