//! The tree for actor-level tests: a SQLite file in a temporary folder, the real actors,
//! and [`ScriptedCarrier`], a carrier that answers from a script and records what it was
//! asked (the outside service, not the store, is scripted).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actors::Actors;
use actors::call::{AiConfig, CallSettings};
use actors::carrier::{
    CallChange, CallQuery, Carrier, CarrierAuth, CarrierCall, CarrierError, PlaceCall, PlaceLeg,
    PlacedCall,
};
use actors::crypto::SecretBox;
use actors::egress::{Egress, EgressPolicy};
use actors::ids::TenantId;
use actors::notifier::NotifierSettings;
use actors::rollout::{NewAgent, RolloutMsg, VersionSpec};
use actors::router::{NewRoute, RouterMsg};
use actors::store::{OverLimit, RouteDirection, RouteStatus, Store, TurnDetection};
use actors::stream_token::StreamTokenKeys;
use actors::supervisor::{RootConfig, RootSupervisor};
use actors::telephony::{PlacementSettings, PublicUrls};
use actors::tenant::{
    AuditMeta, NewApiKey, NewTenant, TenantMsg, TwilioCredentialsInput, tenant_rate_limiter,
};
use futures::future::BoxFuture;
use ractor::call_t;

/// How long a test waits for an actor.
pub const MS: u64 = 5_000;

/// A carrier answering from a script.
#[derive(Default)]
pub struct ScriptedCarrier {
    script: Mutex<Script>,
}

#[derive(Default)]
struct Script {
    /// Answers to `place_call`, in order (then: a timeout).
    places: VecDeque<Result<PlacedCall, CarrierError>>,
    /// Answers to `find_calls`, in order (the last one repeats).
    lookups: VecDeque<Vec<CarrierCall>>,
    placed: usize,
    looked_up: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error of a carrier request that got no answer in time.
pub fn timeout() -> CarrierError {
    CarrierError {
        suggested_status: 504,
        code: None,
        message: "twilio request timed out".into(),
        already_ended: false,
        timeout: true,
    }
}

impl ScriptedCarrier {
    /// Queues the answer to the next placement.
    pub fn on_place(&self, answer: Result<PlacedCall, CarrierError>) {
        lock(&self.script).places.push_back(answer);
    }

    /// Queues the answer to the next lookup (the last queued one repeats).
    pub fn on_lookup(&self, calls: Vec<CarrierCall>) {
        lock(&self.script).lookups.push_back(calls);
    }

    /// Placements asked for so far.
    pub fn placed(&self) -> usize {
        lock(&self.script).placed
    }

    /// Lookups made so far.
    pub fn looked_up(&self) -> usize {
        lock(&self.script).looked_up
    }
}

impl Carrier for ScriptedCarrier {
    fn place_call<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _call: &'a PlaceCall,
    ) -> BoxFuture<'a, Result<PlacedCall, CarrierError>> {
        let mut s = lock(&self.script);
        s.placed += 1;
        let answer = s.places.pop_front().unwrap_or_else(|| Err(timeout()));
        Box::pin(async move { answer })
    }

    fn place_leg<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _leg: &'a PlaceLeg,
    ) -> BoxFuture<'a, Result<PlacedCall, CarrierError>> {
        Box::pin(async { Err(timeout()) })
    }

    fn update_call<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _call_sid: &'a str,
        _change: &'a CallChange,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async { Ok(()) })
    }

    fn fetch_call<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _call_sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<CarrierCall>, CarrierError>> {
        Box::pin(async { Ok(None) })
    }

    fn find_calls<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _query: &'a CallQuery,
    ) -> BoxFuture<'a, Result<Vec<CarrierCall>, CarrierError>> {
        let mut s = lock(&self.script);
        s.looked_up += 1;
        let answer = if s.lookups.len() > 1 {
            s.lookups.pop_front().unwrap_or_default()
        } else {
            s.lookups.front().cloned().unwrap_or_default()
        };
        Box::pin(async move { Ok(answer) })
    }

    fn send_sms<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _to: &'a str,
        _from: &'a str,
        _body: &'a str,
    ) -> BoxFuture<'a, Result<String, CarrierError>> {
        Box::pin(async { Ok(String::from("SM1")) })
    }

    fn fetch_account<'a>(
        &'a self,
        auth: &'a CarrierAuth,
    ) -> BoxFuture<'a, Result<actors::carrier::CarrierAccount, CarrierError>> {
        let account = actors::carrier::CarrierAccount {
            sid: auth.account_sid.clone(),
            friendly_name: None,
            status: String::from("active"),
        };
        Box::pin(async move { Ok(account) })
    }

    // --- recording (issue 16, part 1): not scripted; these tests record nothing ---

    fn start_recording<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _call_sid: &'a str,
        _request: &'a actors::carrier::StartRecording,
    ) -> BoxFuture<'a, Result<actors::carrier::CarrierRecording, CarrierError>> {
        Box::pin(async { Err(timeout()) })
    }

    fn delete_recording<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _recording_sid: &'a str,
    ) -> BoxFuture<'a, Result<bool, CarrierError>> {
        Box::pin(async { Ok(false) })
    }

    fn fetch_recording_media<'a>(
        &'a self,
        _auth: &'a CarrierAuth,
        _recording_sid: &'a str,
        _range: Option<String>,
    ) -> BoxFuture<'a, Result<Option<actors::carrier::RecordingMedia>, CarrierError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A running tree and what it runs on.
pub struct Tree {
    pub actors: Actors,
    pub store: Store,
    pub carrier: Arc<ScriptedCarrier>,
    /// `sqlite://…` of the store (tests open their own connections to it).
    pub database_url: String,
    _dir: tempfile::TempDir,
}

/// Starts the tree on a fresh SQLite file with `placement` settings.
pub async fn start(placement: PlacementSettings) -> Tree {
    start_with(placement, |_| {}).await
}

/// Starts the tree like [`start`], letting the test adjust the configuration first.
pub async fn start_with(
    placement: PlacementSettings,
    adjust: impl FnOnce(&mut RootConfig),
) -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&database_url, 4).await.expect("store");
    store.migrate().await.expect("migrate");
    let carrier = Arc::new(ScriptedCarrier::default());
    let egress = Egress::new(EgressPolicy {
        allow_private: true,
    })
    .expect("egress");
    let active = Arc::default();
    let config = RootConfig {
        store: store.clone(),
        secret_box: SecretBox::from_master_key(b"actor-test-master-key-0123456789abcdef"),
        tenant_rate_limiter: Arc::new(tenant_rate_limiter(
            std::num::NonZeroU32::new(100_000).expect("non-zero"),
            actors::ratelimit::ClusterSize::default(),
        )),
        key_cache_ttl: Duration::from_secs(30),
        max_restarts: 5,
        restart_window: Duration::from_secs(60),
        carrier: Arc::clone(&carrier) as Arc<dyn Carrier>,
        stream_keys: StreamTokenKeys::new(b"actor-test-stream-token-secret-0123456789", None),
        urls: PublicUrls {
            http_base: "http://127.0.0.1:9".into(),
            ws_base: "ws://127.0.0.1:9".into(),
        },
        stream_token_ttl: Duration::from_secs(300),
        node: actors::nodes::NodeInstance::new(
            actors::nodes::NodeId::parse("actor-test").expect("node id"),
        ),
        live_window: Duration::from_secs(3600),
        actor_timeout: Duration::from_secs(5),
        active: Arc::clone(&active),
        views: actors::views::ClusterViews::start(store.clone(), "actors-test".into()),
        calls: CallSettings {
            ai: AiConfig {
                url: "ws://127.0.0.1:9".into(),
                api_key: String::new(),
                connect_timeout: Duration::from_secs(1),
            },
            chaos: false,
            twilio_queue: 64,
            twilio_write_timeout: Duration::from_secs(1),
            resume_lost_leg: None,
            ai_reconnect: Some(Duration::from_secs(30)),
        },
        egress,
        notifier: NotifierSettings::default(),
        placement,
        evaluation: actors::evaluation::EvaluationSettings::default(),
        clock: actors::time::Clock::System,
    };
    let mut config = config;
    adjust(&mut config);
    let actors = RootSupervisor::start(config).await.expect("tree starts");
    Tree {
        actors,
        store,
        carrier,
        database_url,
        _dir: dir,
    }
}

/// Who test changes are recorded as.
pub fn meta() -> AuditMeta {
    AuditMeta {
        actor: "test".into(),
        request_id: None,
    }
}

/// The account of test tenants.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// The tenant's outbound number.
pub const NUMBER: &str = "+14155550100";

/// A tenant with Twilio credentials, an approved agent `support` and a live route for
/// [`NUMBER`]: (tenant, key secret).
pub async fn telephony_tenant(tree: &Tree) -> (TenantId, String) {
    let tenants = tree.actors.tenant.get().expect("tenant actor");
    let tenant = call_t!(
        tenants,
        TenantMsg::Create,
        MS,
        NewTenant {
            name: "Acme".into(),
            max_concurrent_calls: 10,
            webhook_url: None,
        },
        meta()
    )
    .expect("answer")
    .expect("tenant");
    call_t!(
        tenants,
        TenantMsg::SetTwilioCredentials,
        MS,
        tenant.id.clone(),
        TwilioCredentialsInput {
            account_sid: ACCOUNT_SID.into(),
            auth_token: "token-0123456789".into(),
        },
        meta()
    )
    .expect("answer")
    .expect("credentials");
    let key = call_t!(
        tenants,
        TenantMsg::CreateApiKey,
        MS,
        tenant.id.clone(),
        NewApiKey {
            name: "test".into(),
            scopes: vec![actors::store::Scope::Runtime],
        },
        meta()
    )
    .expect("answer")
    .expect("key");
    let rollout = tree.actors.rollout.get().expect("rollout actor");
    let agent = call_t!(
        rollout,
        RolloutMsg::CreateAgent,
        MS,
        NewAgent {
            tenant_id: tenant.id.clone(),
            key: "support".into(),
            name: "Support".into(),
        },
        meta()
    )
    .expect("answer")
    .expect("agent");
    let version = call_t!(
        rollout,
        RolloutMsg::CreateVersion,
        MS,
        agent.id,
        VersionSpec {
            model: "gpt-realtime".into(),
            voice: "marin".into(),
            instructions: "You are a helpful phone agent.".into(),
            greeting: None,
            voicemail_message: None,
            transcription_model: None,
            transcription_language: None,
            turn_detection: TurnDetection::default(),
            max_call_seconds: 600,
            idle_timeout_seconds: 30,
            contract: Default::default(),
            rubric: None,
            recording_policy: None,
            recording_disclosure: None,
        },
        meta()
    )
    .expect("answer")
    .expect("version");
    call_t!(rollout, RolloutMsg::Approve, MS, version.id, meta())
        .expect("answer")
        .expect("approved");
    let router = tree.actors.router.get().expect("router actor");
    call_t!(
        router,
        RouterMsg::CreateRoute,
        MS,
        NewRoute {
            tenant_id: tenant.id.clone(),
            number: NUMBER.into(),
            agent_key: "support".into(),
            direction: RouteDirection::Both,
            status: RouteStatus::Live,
            fallback_number: Some("+15550009999".into()),
            fallback_message: None,
            over_limit: OverLimit::Fallback,
            max_concurrent_calls: 10,
            test_callers: Vec::new(),
            recording_policy: None,
            live_override: None,
        },
        meta()
    )
    .expect("answer")
    .expect("route");
    (tenant.id, key.secret)
}
