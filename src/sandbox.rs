//! `serve --sandbox`: the whole product on one machine with no accounts.
//!
//! The carrier simulator and the realtime-model simulator run in-process on loopback; the
//! server is pointed at them; a demo tenant (with Twilio credentials the simulated carrier
//! knows), an approved demo agent, a live phone route and a fresh tenant key are created
//! (idempotently: restarts reuse the tenant, agent and route). The banner prints the admin
//! key, the tenant key and a `curl` for `make-call` whose call runs to completion: the
//! simulated callee answers and talks with the simulated model, and the transcript is then
//! readable in `voice-sessions`.
//!
//! The demo agent carries the agent contract: a webhook tool (`order_status`, served by the
//! sandbox's own signed-request receiver, [`receivers`]), the `transfer_to_human`,
//! `create_callback_task` and `end_call` built-ins, escalation rules and an operator queue
//! (`support`) whose simulated operator is busy. The demo call looks an order up through the
//! tool, asks for a person, is transferred to the queue, nobody answers, and a callback task
//! is created; every step is in the API and arrives as a signed event at the receiver.
//!
//! The demo version carries an evaluation rubric ([`demo_rubric`]): the greeting said, the
//! order tool called when an order is asked about, a handoff when a person is asked for, and
//! an `llm_judge` question answered by the realtime simulator's deterministic judge
//! (`JUDGE_BASE_URL` points at it). The demo call is evaluated when it ends: the session
//! shows its evaluation, summary and tags, `voice.session.evaluated` reaches the receiver,
//! and the version's evaluation summary counts the call.
//!
//! A restart writes a new demo version when the receivers' port moved. When the demo tenant
//! requires two-person approval (the README's "Launching an agent" walk turns it on), the
//! sandbox, the version's author, may not approve it: the version waits as a draft (reused
//! by later starts) and the banner shows how another approver approves it.

pub mod receivers;

use std::path::Path;
use std::time::Duration;

use actors::contract::{
    Contract, Escalation, EscalationRule, EscalationTrigger, ToolSpec, ToolType,
};
use actors::evaluation::{Criterion, CriterionKind, Rubric};
use actors::ids::TenantId;
use actors::operator::{QueueFallback, QueueSpec};
use actors::rollout::{NewAgent, RolloutError, RolloutMsg, VersionSpec};
use actors::router::{NewRoute, RouterMsg};
use actors::store::{
    AgentVersion, EventWebhook, OverLimit, RouteDirection, RouteStatus, Scope, TurnDetection,
    VersionStatus,
};
use actors::tenant::{AuditMeta, NewApiKey, NewTenant, TenantMsg, TwilioCredentialsInput};
use anyhow::Context as _;
use ractor::call_t;

use crate::config::{Config, RawSettings};
use crate::http::AppState;
use crate::sim::carrier::{
    CalleeBehaviour, CallerScript, CarrierConfig, CarrierSim, CarrierSimHandle, OperatorBehaviour,
    WarmOperator,
};
use crate::sim::realtime::{
    RealtimeScript, RealtimeSim, RealtimeSimConfig, RealtimeSimHandle, ScriptTurn,
};

/// The demo tenant's (simulated) Twilio account.
pub const ACCOUNT_SID: &str = "AC5a4d00c5a4d00c5a4d00c5a4d00c5a4d";
/// Its auth token (known to the simulated carrier only).
pub const AUTH_TOKEN: &str = "sandbox-auth-token-0123456789abcdef";
/// The demo phone number (inbound and outbound).
pub const NUMBER: &str = "+15005550006";
/// The number `make-call` reaches: a simulated person who talks with the agent.
pub const CALLEE: &str = "+15005550010";
/// The demo campaign's person: answers and talks with the agent.
pub const CAMPAIGN_HUMAN: &str = "+15005550011";
/// The demo campaign's answering machine (AMD answers `machine_end_beep`).
pub const CAMPAIGN_MACHINE: &str = "+15005550012";
/// The demo campaign's number nobody answers (retried once).
pub const CAMPAIGN_NO_ANSWER: &str = "+15005550013";
/// The demo campaign's name (found again at a restart while it has not started).
pub const CAMPAIGN_NAME: &str = "Sandbox demo campaign";
/// The demo operator queue's number (its simulated operator is busy).
pub const OPERATOR: &str = "+15005550020";
/// The demo operator queue.
pub const QUEUE: &str = "support";
/// The demo warm-transfer queue: its operator hears a whispered summary and presses 1.
pub const WARM_QUEUE: &str = "sales";
/// The warm queue's number (its simulated operator accepts and talks for 2 s).
pub const WARM_OPERATOR: &str = "+15005550021";
/// The realtime simulator's API key.
pub const REALTIME_KEY: &str = "sk-sandbox";
const TENANT_NAME: &str = "Sandbox Demo";
const AGENT_KEY: &str = "demo";
/// What the demo version leaves on an answering machine (`machine_detection.action` `voicemail`).
const DEMO_VOICEMAIL: &str = "Hi, this is Acme Dental calling about your appointment. Please call us back at your convenience. Thank you!";

/// The simulators of a sandbox (dropping it stops them).
pub struct Sandbox {
    /// Twilio stand-in.
    pub carrier: CarrierSimHandle,
    /// OpenAI Realtime stand-in.
    pub realtime: RealtimeSimHandle,
    /// The demo tenant's tool and event endpoints.
    pub receivers: receivers::Receivers,
}

/// What the sandbox created.
pub struct Seeded {
    /// The demo tenant.
    pub tenant_id: String,
    /// A fresh tenant key (runtime, read, operator).
    pub api_key: String,
    /// The demo agent's current version (its rubric scores the demo call).
    pub version_id: String,
    /// A demo version written at this start that the sandbox may not approve itself (the
    /// tenant requires two-person approval): it waits, as a draft, for another approver.
    pub awaiting_approval: Option<String>,
    /// The demo campaign (draft until resumed): a person, a machine, a no-answer.
    pub campaign_id: String,
}

fn demo_caller() -> CallerScript {
    CallerScript::default()
        .silence(Duration::from_millis(3500))
        .speak(Duration::from_millis(1200), "Where is my order A1234?")
        .silence(Duration::from_millis(7000))
        .speak(
            Duration::from_millis(1000),
            "Can I talk to a person, please?",
        )
        .silence(Duration::from_millis(20_000))
        .hang_up()
}

/// The demo campaign's person: asks about an order, then for someone in sales (a warm
/// transfer), and waits on the line.
fn campaign_caller() -> CallerScript {
    CallerScript::default()
        .silence(Duration::from_millis(3500))
        .speak(Duration::from_millis(1200), "Where is my order A1234?")
        .silence(Duration::from_millis(7000))
        .speak(
            Duration::from_millis(1000),
            "Can I talk to someone in sales, please?",
        )
        .silence(Duration::from_millis(30_000))
        .hang_up()
}

/// The demo caller's first question: the `order_status` tool, then the answer.
fn order_turn() -> ScriptTurn {
    ScriptTurn::call_tool(
        "Where is my order A1234?",
        "order_status",
        serde_json::json!({"order_id": "A1234"}),
        "Your order A1234 has shipped with UPS and should arrive on Tuesday. Anything else?",
    )
}

/// What the simulated model does with the demo caller's turns.
fn demo_model() -> RealtimeScript {
    RealtimeScript::new(vec![
        order_turn(),
        ScriptTurn::call_tool(
            "Can I talk to a person, please?",
            "transfer_to_human",
            serde_json::json!({"reason": "The caller asked to talk to a person.", "queue": QUEUE}),
            "Of course. I'm transferring you to a colleague now, please stay on the line.",
        ),
    ])
    // The demo campaign's person (their contact's variables are in the session's
    // instructions) asks for sales: a warm transfer.
    .with_variant(
        r#""who":"person""#,
        vec![
            order_turn(),
            ScriptTurn::call_tool(
                "Can I talk to someone in sales, please?",
                "transfer_to_human",
                serde_json::json!({"reason": "The caller asked for sales.", "queue": WARM_QUEUE}),
                "Sure, I'll introduce you to a colleague in sales. Please hold.",
            ),
        ],
    )
}

/// The demo agent's contract: one webhook tool, the built-ins, escalation rules.
fn demo_contract(tools_base: &str) -> anyhow::Result<Contract> {
    let webhook = ToolSpec {
        name: String::from("order_status"),
        kind: ToolType::Webhook,
        description: String::from("Looks up the shipping status of an order by its id."),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"order_id": {"type": "string", "pattern": "^[A-Z][0-9]{4}$"}},
            "required": ["order_id"],
            "additionalProperties": false
        }),
        requires_identity: false,
        url: Some(format!("{tools_base}/tools/order-status")),
        timeout_ms: 5000,
        filler: Some(String::from("One moment while I look that up.")),
        filler_after_ms: 1500,
        cancel_on_interrupt: false,
    };
    let builtin = |name: &str| ToolSpec {
        name: name.to_owned(),
        kind: ToolType::Builtin,
        description: String::new(),
        parameters: serde_json::Value::Null,
        requires_identity: false,
        url: None,
        timeout_ms: 5000,
        filler: None,
        filler_after_ms: 1500,
        cancel_on_interrupt: false,
    };
    Contract {
        tools: vec![
            webhook,
            builtin("transfer_to_human"),
            builtin("create_callback_task"),
            builtin("end_call"),
        ],
        escalation: Escalation {
            default_queue: Some(QUEUE.to_owned()),
            handoff_line: Some(String::from(
                "I'm transferring you to a colleague now. Please stay on the line.",
            )),
            rules: vec![
                EscalationRule {
                    trigger: EscalationTrigger::CallerAsksForHuman {
                        patterns: vec![String::from(r"\b(supervisor|manager|complaint)\b")],
                    },
                    queue: None,
                },
                EscalationRule {
                    trigger: EscalationTrigger::ToolFailures { count: 2 },
                    queue: None,
                },
            ],
        },
        identity: None,
    }
    .validate(&|_| Ok(()))
    .map_err(|e| anyhow::anyhow!("demo contract: {e}"))
}

/// The demo agent's rubric: what every demo call is scored against.
pub fn demo_rubric() -> anyhow::Result<Rubric> {
    let criterion = |key: &str, kind: CriterionKind, critical: bool| Criterion {
        key: key.to_owned(),
        kind,
        weight: 1.0,
        critical,
    };
    Rubric {
        pass_score: 0.75,
        criteria: vec![
            criterion(
                "greeting",
                CriterionKind::RequiredPhrase {
                    pattern: String::from(r"how can i help"),
                    within_seconds: Some(15),
                },
                true,
            ),
            criterion(
                "order_looked_up",
                CriterionKind::ToolCalled {
                    tool: String::from("order_status"),
                    when_caller_says: Some(String::from(r"\border\b")),
                    when_intent: None,
                },
                false,
            ),
            criterion(
                "handoff_when_asked",
                CriterionKind::HandoffWhenAsked {
                    patterns: vec![String::from(r"\b(a person|human|someone|operator)\b")],
                    within_seconds: 30,
                },
                false,
            ),
            criterion(
                "resolved",
                CriterionKind::LlmJudge {
                    question: String::from(
                        "Did the agent resolve the caller's question or hand off correctly?",
                    ),
                    min_score: None,
                },
                false,
            ),
        ],
    }
    .validate()
    .map_err(|e| anyhow::anyhow!("demo rubric: {e}"))
}

/// Starts the simulators and points the settings at them (explicit settings win).
pub async fn start(raw: &mut RawSettings) -> anyhow::Result<Sandbox> {
    let realtime =
        RealtimeSim::start(RealtimeSimConfig::with_api_key(REALTIME_KEY).with_script(demo_model()))
            .await
            .context("cannot start the realtime simulator")?;
    let carrier = CarrierSim::start(CarrierConfig::with_account(ACCOUNT_SID, AUTH_TOKEN))
        .await
        .context("cannot start the carrier simulator")?;
    carrier.set_callee_script(CALLEE, demo_caller());
    carrier.set_operator(OPERATOR, OperatorBehaviour::Busy);
    carrier.set_callee_script(CAMPAIGN_HUMAN, campaign_caller());
    carrier.set_warm_operator(
        WARM_OPERATOR,
        WarmOperator::Accept {
            talk: Duration::from_secs(2),
        },
    );
    carrier.set_answered_by(CAMPAIGN_MACHINE, "machine_end_beep");
    carrier.set_callee(
        CAMPAIGN_NO_ANSWER,
        CalleeBehaviour::NoAnswerAfter(Duration::from_secs(3)),
    );
    let receivers = receivers::start()
        .await
        .context("cannot start the demo tool and event receivers")?;
    // The simulators' addresses always win; the database and admin key only when unset.
    raw.set("TWILIO_API_BASE_URL", carrier.base_url());
    raw.set("OPENAI_REALTIME_URL", realtime.url());
    raw.set("OPENAI_API_KEY", REALTIME_KEY);
    // The realtime simulator also answers as the deterministic LLM judge.
    raw.set("JUDGE_BASE_URL", realtime.judge_base_url());
    if !raw.is_set("DATABASE_URL") {
        raw.set("DATABASE_URL", "sqlite://data/sandbox.db");
    }
    // Demo event-webhook receivers listen on loopback.
    if !raw.is_set("OUTBOUND_ALLOW_PRIVATE") {
        raw.set("OUTBOUND_ALLOW_PRIVATE", "true");
    }
    if !raw.is_set("ADMIN_API_KEY") {
        raw.set(
            "ADMIN_API_KEY",
            sandbox_admin_key(Path::new("data/sandbox-admin.key"))?,
        );
    }
    Ok(Sandbox {
        carrier,
        realtime,
        receivers,
    })
}

/// The sandbox admin key, kept in a file so it survives restarts.
fn sandbox_admin_key(path: &Path) -> anyhow::Result<String> {
    if let Ok(key) = std::fs::read_to_string(path)
        && key.trim().len() >= 16
    {
        return Ok(key.trim().to_owned());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = format!("sandbox-admin-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(path, &key).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

fn meta() -> AuditMeta {
    AuditMeta {
        actor: String::from("sandbox"),
        request_id: None,
    }
}

/// Creates (or finds) the demo tenant, agent, queue, event webhook and route, and a fresh key.
pub async fn seed(state: &AppState, sandbox: &Sandbox) -> anyhow::Result<Seeded> {
    let ms = state.actor_timeout_ms();
    let tenants = state.tenant_actor().map_err(|e| anyhow::anyhow!("{e}"))?;
    let existing = call_t!(tenants, TenantMsg::List, ms, 200, 0)??
        .items
        .into_iter()
        .find(|t| t.name == TENANT_NAME);
    let tenant = match existing {
        Some(t) => t,
        None => call_t!(
            tenants,
            TenantMsg::Create,
            ms,
            NewTenant {
                name: TENANT_NAME.to_owned(),
                max_concurrent_calls: 20,
                webhook_url: None,
            },
            meta()
        )??,
    };
    if tenant.twilio.as_ref().map(|t| t.account_sid.as_str()) != Some(ACCOUNT_SID) {
        call_t!(
            tenants,
            TenantMsg::SetTwilioCredentials,
            ms,
            tenant.id.clone(),
            TwilioCredentialsInput {
                account_sid: ACCOUNT_SID.to_owned(),
                auth_token: AUTH_TOKEN.to_owned(),
            },
            meta()
        )??;
    }
    let rollout = state.rollout_actor().map_err(|e| anyhow::anyhow!("{e}"))?;
    let agents = call_t!(rollout, RolloutMsg::ListAgents, ms, Some(tenant.id.clone()))??;
    let agent = match agents.into_iter().find(|a| a.key == AGENT_KEY) {
        Some(a) => a,
        None => call_t!(
            rollout,
            RolloutMsg::CreateAgent,
            ms,
            NewAgent {
                tenant_id: tenant.id.clone(),
                key: AGENT_KEY.to_owned(),
                name: String::from("Demo receptionist"),
            },
            meta()
        )??,
    };
    let contract = demo_contract(&sandbox.receivers.base)?;
    let rubric = demo_rubric()?;
    let versions = call_t!(rollout, RolloutMsg::ListVersions, ms, agent.id.clone())??;
    // A new version when none is approved, or when the approved one predates this demo
    // contract (the receivers' port changes at every start) or rubric.
    let current = versions
        .iter()
        .filter(|v| v.status == VersionStatus::Approved)
        .max_by_key(|v| v.version);
    let is_demo = |v: &&AgentVersion| {
        v.contract == contract
            && v.rubric.as_ref() == Some(&rubric)
            && v.voicemail_message.as_deref() == Some(DEMO_VOICEMAIL)
    };
    // A demo version written at an earlier start and left awaiting approval is reused.
    let draft = versions
        .iter()
        .filter(|v| v.status == VersionStatus::Draft)
        .filter(is_demo)
        .max_by_key(|v| v.version)
        .map(|v| v.id.clone());
    let mut awaiting_approval = None;
    let version_id = match current {
        Some(v) if is_demo(&v) => v.id.clone(),
        _ => {
            let spec = VersionSpec {
                model: String::from("gpt-realtime"),
                voice: String::from("marin"),
                instructions: String::from(
                    "You are the friendly receptionist of Acme Dental. Answer briefly. Opening hours: 9 to 5, Monday to Friday.",
                ),
                greeting: Some(String::from(
                    "Hi! This is the StateSet Voice sandbox agent. How can I help?",
                )),
                voicemail_message: Some(String::from(DEMO_VOICEMAIL)),
                transcription_model: Some(String::from("gpt-4o-mini-transcribe")),
                transcription_language: Some(String::from("en")),
                turn_detection: TurnDetection::default(),
                max_call_seconds: 600,
                idle_timeout_seconds: 30,
                contract,
                rubric: Some(rubric),
                // Recorded (outbound calls follow the version's policy).
                recording_policy: Some(actors::recording::RecordingPolicy::On),
                recording_disclosure: None,
            };
            let id = match draft {
                Some(id) => id,
                None => {
                    call_t!(
                        rollout,
                        RolloutMsg::CreateVersion,
                        ms,
                        agent.id.clone(),
                        spec,
                        meta()
                    )??
                    .id
                }
            };
            match call_t!(rollout, RolloutMsg::Approve, ms, id.clone(), meta())? {
                Ok(_) => {
                    if let Some(old) = current {
                        call_t!(rollout, RolloutMsg::Retire, ms, old.id.clone(), meta())??;
                    }
                    id
                }
                // The tenant requires two-person approval (the "Launching an agent" walk
                // turns it on): the sandbox wrote this version, so it may not approve it. It
                // stays a draft for another approver; the banner says so.
                Err(RolloutError::Forbidden("two_person_approval", _)) => {
                    awaiting_approval = Some(id.to_string());
                    current.map_or(id, |v| v.id.clone())
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    seed_events(state, &tenant.id, sandbox).await?;
    let router = state.router_actor().map_err(|e| anyhow::anyhow!("{e}"))?;
    let routes = actors::router::list_routes(&state.store, Some(&tenant.id), 200, 0).await?;
    if !routes.items.iter().any(|r| r.number == NUMBER) {
        // The demo route goes live at once through the audited override (reason `sandbox`,
        // with the gates that failed): a fresh sandbox has no evaluated calls, approvals or
        // metrics scrape yet, and its point is to take a call right away.
        let review = crate::http::admin::readiness::review(state, &tenant.id, None, false)
            .await
            .map_err(|e| anyhow::anyhow!("readiness review: {e}"))?;
        let live_override = Some(actors::router::LiveOverride {
            reason: String::from("sandbox"),
            failing_gates: review.failing().into_iter().map(str::to_owned).collect(),
        });
        call_t!(
            router,
            RouterMsg::CreateRoute,
            ms,
            NewRoute {
                tenant_id: tenant.id.clone(),
                number: NUMBER.to_owned(),
                agent_key: AGENT_KEY.to_owned(),
                direction: RouteDirection::Both,
                status: RouteStatus::Live,
                fallback_number: Some(String::from("+15005550099")),
                fallback_message: Some(String::from("Let me connect you to a colleague.")),
                over_limit: OverLimit::Fallback,
                max_concurrent_calls: 20,
                test_callers: Vec::new(),
                // The demo's calls are recorded (dual-channel, by the carrier simulator).
                recording_policy: Some(actors::recording::RecordingPolicy::On),
                live_override,
            },
            meta()
        )??;
    }
    if state
        .store
        .get_queue_by_name(&tenant.id, QUEUE)
        .await?
        .is_none()
    {
        let spec = QueueSpec {
            name: QUEUE.to_owned(),
            numbers: vec![OPERATOR.to_owned()],
            caller_id: None,
            ring_timeout_seconds: 15,
            business_hours: None,
            when_closed: QueueFallback::CallbackTask,
            when_unanswered: QueueFallback::CallbackTask,
            voicemail_message: None,
            announcement: Some(String::from("Connecting you to the support team.")),
            transfer_mode: actors::operator::TransferMode::Cold,
            hold_music_url: None,
        };
        actors::operator::queues::create(&state.store, &tenant.id, spec, meta()).await?;
    }
    if state
        .store
        .get_queue_by_name(&tenant.id, WARM_QUEUE)
        .await?
        .is_none()
    {
        let spec = QueueSpec {
            name: WARM_QUEUE.to_owned(),
            numbers: vec![WARM_OPERATOR.to_owned()],
            caller_id: None,
            ring_timeout_seconds: 15,
            business_hours: None,
            when_closed: QueueFallback::CallbackTask,
            when_unanswered: QueueFallback::CallbackTask,
            voicemail_message: None,
            announcement: Some(String::from("Please hold while I connect you to sales.")),
            transfer_mode: actors::operator::TransferMode::Warm,
            hold_music_url: None,
        };
        actors::operator::queues::create(&state.store, &tenant.id, spec, meta()).await?;
    }
    let key = call_t!(
        tenants,
        TenantMsg::CreateApiKey,
        ms,
        tenant.id.clone(),
        NewApiKey {
            name: String::from("sandbox"),
            scopes: vec![Scope::Runtime, Scope::Read, Scope::Operator],
        },
        meta()
    )??;
    let campaign_id = seed_campaign(state, &tenant.id).await?;
    Ok(Seeded {
        tenant_id: tenant.id.to_string(),
        api_key: key.secret,
        version_id: version_id.to_string(),
        awaiting_approval,
        campaign_id,
    })
}

/// The demo campaign: reused while it waits as a draft, else created again (a draft of three
/// contacts: a person who talks with the agent, an answering machine, and a number nobody
/// answers, retried once after 10 s).
async fn seed_campaign(state: &AppState, tenant: &TenantId) -> anyhow::Result<String> {
    use actors::campaign::{
        self, CampaignSpec, CampaignStatus, ContactSpec, MachineAction, RetryPolicy, RetryRule,
    };
    let existing = campaign::ops::list(&state.store, tenant, 200, 0).await?;
    if let Some((c, _)) = existing
        .items
        .into_iter()
        .find(|(c, _)| c.name == CAMPAIGN_NAME && c.status == CampaignStatus::Draft)
    {
        return Ok(c.id.into_string());
    }
    let contact = |phone: &str, who: &str| ContactSpec {
        phone: phone.to_owned(),
        variables: Some(serde_json::json!({"who": who})),
        external_id: Some(format!("demo-{who}")),
    };
    let spec = CampaignSpec {
        name: CAMPAIGN_NAME.to_owned(),
        agent_key: Some(AGENT_KEY.to_owned()),
        agent_version_id: None,
        from: Some(NUMBER.to_owned()),
        contacts: vec![
            contact(CAMPAIGN_HUMAN, "person"),
            contact(CAMPAIGN_MACHINE, "machine"),
            contact(CAMPAIGN_NO_ANSWER, "no_answer"),
        ],
        calling_windows: None,
        calls_per_minute: 30,
        max_concurrent: 3,
        retry: RetryPolicy {
            no_answer: RetryRule {
                max_attempts: 2,
                spacing_seconds: 10,
            },
            ..RetryPolicy::default()
        },
        machine_detection: Some(MachineAction::Voicemail),
        start: false,
    };
    let (c, _) = campaign::ops::create(&state.store, &state.campaigns, tenant, spec)
        .await
        .map_err(|e| anyhow::anyhow!("demo campaign: {e}"))?;
    Ok(c.id.into_string())
}

/// Points the demo tenant's event webhook at the sandbox receiver and gives the receiver the
/// tenant's signing secret, so it verifies every delivery.
async fn seed_events(state: &AppState, tenant: &TenantId, sandbox: &Sandbox) -> anyhow::Result<()> {
    let ms = state.actor_timeout_ms();
    let tenants = state.tenant_actor().map_err(|e| anyhow::anyhow!("{e}"))?;
    let webhook = EventWebhook {
        url: format!("{}/events", sandbox.receivers.base),
        events: None,
    };
    call_t!(
        tenants,
        TenantMsg::SetEventWebhook,
        ms,
        tenant.clone(),
        Some(webhook),
        meta()
    )??;
    let secret = call_t!(tenants, TenantMsg::SigningSecret, ms, tenant.clone())??;
    if let Ok(mut slot) = sandbox.receivers.secret.write() {
        *slot = Some(secret);
    }
    Ok(())
}

/// The banner printed at start.
pub fn banner(config: &Config, seeded: &Seeded, base: &str) -> String {
    let admin = config
        .admin_api_key
        .as_ref()
        .map_or("(unset)", |k| k.expose());
    let awaiting = seeded.awaiting_approval.as_ref().map_or_else(String::new, |v| {
        format!(
            "\nThe demo tenant requires two-person approval, so the sandbox may not approve the\n\
             demo version it wrote at this start, whose webhook tool is at this start's receiver\n\
             ({v}); until another approver does, calls run the approved versions as before:\n\n\
             curl -s -X POST {base}/api/v1/admin/agent-versions/{v}/approve -H 'x-admin-key: <approver key>'\n"
        )
    });
    let text = format!(
        "\nStateSet Voice sandbox is running at {base}\n\
         (carrier and realtime model simulated in-process; nothing leaves this machine)\n\n\
         admin key  (x-admin-key):          {admin}\n\
         tenant key (Authorization: Bearer): {key}\n\
         demo tenant: {tenant}, number {NUMBER}\n\n\
         Place a call (the simulated callee asks about an order, which the agent looks up with\n\
         its webhook tool, then asks for a person: the agent transfers the call to the `support`\n\
         queue, nobody answers, and a callback task is created; about 20 s):\n\n\
         curl -s -X POST {base}/api/v1/make-call \\\n  \
         -H 'authorization: Bearer {key}' -H 'content-type: application/json' \\\n  \
         -d '{{\"to\":\"{CALLEE}\"}}'\n\n\
         Console: {base}/console  (sign in with the tenant key above; the admin key opens the admin pages)\n\n\
         Then read the transcript:\n\n\
         curl -s {base}/api/v1/voice-sessions -H 'authorization: Bearer {key}'\n\
         curl -s {base}/api/v1/voice-sessions/<id> -H 'authorization: Bearer {key}'\n\n\
         The tool calls and the handoff are in that session; then the callback task and the\n\
         signed events delivered to the demo receiver (every attempt logged):\n\n\
         curl -s {base}/api/v1/callback-tasks -H 'authorization: Bearer {key}'\n\
         curl -s {base}/api/v1/webhook-deliveries -H 'authorization: Bearer {key}'\n\n\
         The call is evaluated against the demo rubric when it ends (greeting, order lookup,\n\
         handoff, and a judge question answered by the simulated judge): the evaluation, with\n\
         every criterion and its evidence, is in the session above and here; the version's\n\
         aggregates (pass rate, Wilson interval, first audio) in the admin summary:\n\n\
         curl -s {base}/api/v1/evaluations -H 'authorization: Bearer {key}'\n\
         curl -s {base}/api/v1/admin/agent-versions/{version}/evaluation-summary -H 'x-admin-key: {admin}'\n\n\
         Watch live calls: curl -N {base}/api/v1/active-sessions/stream -H 'authorization: Bearer {key}'\n\n\
         A demo campaign waits as a draft ({campaign}: a person who talks with the agent, an\n\
         answering machine, a number nobody answers, retried once after 10 s). Start it, then\n\
         follow its progress and every contact's attempts (call ids, outcomes):\n\n\
         curl -s -X POST {base}/api/v1/campaigns/{campaign}/resume -H 'authorization: Bearer {key}'\n\
         curl -s {base}/api/v1/campaigns/{campaign} -H 'authorization: Bearer {key}'\n\
         curl -s {base}/api/v1/campaigns/{campaign}/contacts -H 'authorization: Bearer {key}'\n",
        key = seeded.api_key,
        tenant = seeded.tenant_id,
        version = seeded.version_id,
        campaign = seeded.campaign_id,
    );
    text + &awaiting
}
