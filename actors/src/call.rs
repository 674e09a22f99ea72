//! `CallActor`: one actor per live media stream, `call:{call_sid}`, supervised by the
//! [`supervisor::CallSupervisor`].
//!
//! The decisions of a call live in its [`conversation::Conversation`], a state machine with no
//! I/O; the actor only feeds it inputs (its messages) and executes the effects it returns
//! (`call/effects.rs`). The actor owns the resources: the Twilio socket and the model's (through
//! the call's media task, `call/pumps.rs`), the AI session setup (`call/ai.rs`), the playback accounting used for
//! barge-in (`call/playback.rs`), tool tasks (`call/tools.rs`), escalation and carrier-change
//! tasks (`call/handoff.rs`), and the per-call recorder (`call/recorder.rs`) through which
//! every record of the live call is written, so the actor never awaits the database while
//! the call is live.
//!
//! Audio never passes through the mailbox, and neither do mark echoes: one media task per
//! call owns both sockets, writes caller audio to the model socket and model audio (with its
//! marks) to Twilio's, accounts mark echoes, and sends the barge-in `clear` itself; the actor
//! tells it what else to write on one command channel. The mailbox carries
//! control only: the AI session's control events, key presses, `stop`, playback drained,
//! tool and task results, timers.
//!
//! Ending: the conversation ends the leg once (`Effect::End`): the actor finishes its voice
//! session, records the continuation for `stream-ended`, completes the call through
//! [`crate::outcome::Outcomes`] (unless the call continues: a handoff dial, a resume), marks
//! itself finished, then closes the sockets and stops. If it dies instead (panic, error,
//! kill), its state's `Drop` releases its tasks and the supervisor records the failure.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Sink;
use futures::stream::BoxStream;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::Instrument as _;

use crate::active::{ActiveCall, ActiveRegistry, CallPhase};
use crate::ending::EndReason;
use crate::ids::{AgentVersionId, SessionId};
use crate::meter::{HandleTimer, kind};
use crate::notifier::{EventKind, Notifier};
use crate::outcome::Outcomes;
use crate::singleton::SingletonRef;
use crate::store::{AgentVersion, CallRecord, Store, VoiceSession};
use crate::tenant::TenantMsg;
use crate::time::now_ms;

mod ai;
pub mod chaos;
pub mod control;
pub mod conversation;
mod effects;
pub mod frames;
pub(crate) mod handoff;
pub mod playback;
mod pumps;
pub mod recorder;
pub mod supervisor;
mod tools;
mod webhook;

pub use ai::AiLink;
use conversation::{
    AiEvent, ControlReport, Conversation, Input, Interruption, Resolution, Setup, Speaker, Timer,
    ToolOutcome,
};
use playback::Playback;
use recorder::{Record, Recorder};

/// A frame read from Twilio's media socket.
#[derive(Debug)]
pub enum TwilioFrame {
    /// A text frame (one JSON message), as the websocket read it (not copied).
    Text(Utf8Bytes),
    /// The socket closed or failed (why: `socket_closed`, `socket_error`).
    Closed(String),
}

/// A frame to write to Twilio's media socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioOut {
    /// A JSON message.
    Text(String),
    /// A `media` message of model audio and when its delta arrived from the model: written
    /// as text, and timed for the runtime's relay-latency histogram.
    Media(String, Instant),
    /// Close the socket.
    Close {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
}

/// The read half of a Twilio media socket, already past `connected` and `start`.
pub type TwilioIncoming = BoxStream<'static, TwilioFrame>;
/// The write half of a Twilio media socket.
pub type TwilioOutgoing = Pin<Box<dyn Sink<TwilioOut, Error = String> + Send>>;

/// Where the AI realtime service is.
#[derive(Clone, Debug)]
pub struct AiConfig {
    /// `wss://api.openai.com/v1/realtime` (or the simulator's URL).
    pub url: String,
    /// API key (redacted in `RealtimeEndpoint`'s `Debug`).
    pub api_key: String,
    /// How long to wait for the connection.
    pub connect_timeout: Duration,
}

/// The configuration of call actors (from the service's settings).
#[derive(Clone, Debug)]
pub struct CallSettings {
    /// The realtime service.
    pub ai: AiConfig,
    /// Fault injection (`CallMsg::Crash` panics and `CallMsg::Fault` acts only when true).
    pub chaos: bool,
    /// Capacity of the Twilio write queue (frames).
    pub twilio_queue: usize,
    /// How long a write to Twilio may take before the peer counts as stalled.
    pub twilio_write_timeout: Duration,
    /// A Twilio leg lost without `stop` resumes on a fresh stream at most once per this
    /// long per call; `None` ends the call instead.
    pub resume_lost_leg: Option<Duration>,
    /// A model socket lost is reconnected at most once per this long per stream; `None`
    /// hands the caller to the fallback instead.
    pub ai_reconnect: Option<Duration>,
}

/// What every call actor needs, built complete by the root supervisor before the call
/// supervisor starts (shared, cloned into each actor).
#[derive(Clone)]
pub struct CallDeps {
    /// Database.
    pub store: Store,
    /// Configuration.
    pub settings: CallSettings,
    /// Live calls of this node.
    pub active: Arc<ActiveRegistry>,
    /// The tenant actor, for a tenant's own realtime-model key and its signing secret.
    pub tenant: SingletonRef<TenantMsg>,
    /// Changes the live call through the carrier (hang up, dial, say, SMS).
    pub control: Arc<dyn control::CallControl>,
    /// SSRF-safe client for tenant endpoints (tools, identity checks).
    pub egress: crate::egress::Egress,
    /// Tenant events.
    pub notifier: Notifier,
    /// The one recorder of how calls end.
    pub outcomes: Outcomes,
    /// Woken when the end of a session wrote its evaluation job.
    pub evaluations: crate::evaluation::Evaluations,
}

/// A verified stream handed to the call supervisor.
pub struct CallStart {
    /// The call (its `call_sid` set).
    pub call: CallRecord,
    /// `MZ…`.
    pub stream_sid: String,
    /// Read half.
    pub incoming: TwilioIncoming,
    /// Write half.
    pub outgoing: TwilioOutgoing,
}

/// Messages of a call actor (control only; audio and marks never come through here).
pub enum CallMsg {
    /// A control event of AI connection `generation`.
    Ai(u64, AiEvent),
    /// AI connection `generation` is up, or could not be made.
    AiConnected(u64, Result<AiLink, String>),
    /// The AI socket of connection `generation` ended (why).
    AiClosed(u64, String),
    /// The caller talked over the agent; the media task already sent Twilio's `clear`.
    BargeIn(Interruption),
    /// First audio of an assistant item (its id) forwarded to Twilio.
    FirstAudio(String, Instant),
    /// The audio the actor waits for has played (a mark echo drained it).
    PlaybackDrained,
    /// A key press.
    Dtmf(String),
    /// Twilio sent `stop`.
    Stop,
    /// The Twilio socket closed, failed or stalled (why, detail).
    TwilioGone(EndReason, Option<String>),
    /// A timer of the conversation fired.
    Timer(Timer),
    /// A tool task finished (model call id, outcome).
    ToolDone(String, Box<ToolOutcome>),
    /// The escalation task found where the caller goes.
    Escalated(Box<Resolution>),
    /// A carrier change finished.
    ControlDone(ControlReport),
    /// The node drains: hand the caller on through the carrier (to a fresh stream when
    /// `resume`, another node being there to take it; else to the route's fallback).
    Drain {
        /// Whether another node can take the call.
        resume: bool,
    },
    /// The call's AMD result was read: a machine or not (`None`: none in time).
    AnsweredBy(Option<bool>),
    /// Test-only: panic (when chaos hooks are enabled).
    Crash,
    /// Fault injection (when chaos hooks are enabled): drop one of the call's sockets.
    Fault(chaos::Fault),
}

impl CallMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            CallMsg::Ai(..) => "ai_event",
            CallMsg::AiConnected(..) => "ai_connected",
            CallMsg::AiClosed(..) => "ai_closed",
            CallMsg::BargeIn(..) => "barge_in",
            CallMsg::FirstAudio(..) => "first_audio",
            CallMsg::PlaybackDrained => "playback_drained",
            CallMsg::Dtmf(..) => "dtmf",
            CallMsg::Stop => "stop",
            CallMsg::TwilioGone(..) => "twilio_gone",
            CallMsg::Timer(..) => "timer",
            CallMsg::ToolDone(..) => "tool_done",
            CallMsg::Escalated(..) => "escalated",
            CallMsg::ControlDone(..) => "control_done",
            CallMsg::Drain { .. } => "drain",
            CallMsg::AnsweredBy(..) => "answered_by",
            CallMsg::Crash => "crash",
            CallMsg::Fault(..) => "fault",
        }
    }
}

/// Arguments of a call actor.
pub struct CallArgs {
    /// The stream.
    pub start: CallStart,
    /// Dependencies.
    pub deps: CallDeps,
    /// Set by the actor once its records are final; the supervisor tells a normal end from a
    /// kill by it.
    pub finished: Arc<AtomicBool>,
    /// Fired by the supervisor once a dead actor's failure is recorded: the media task
    /// closes Twilio's socket only then.
    pub release: oneshot::Receiver<()>,
}

/// The call actor behaviour.
pub struct CallActor;

/// Tasks and the registry entry, released when the state is dropped (also when the actor is
/// killed, which skips `post_stop`). Tool tasks are not here: dropping their handles cancels
/// them, and they record the cancellation.
struct Guard {
    tasks: Vec<AbortHandle>,
    active: Arc<ActiveRegistry>,
    call_id: crate::ids::CallId,
    finished: Arc<AtomicBool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let reason = if self.finished.load(Ordering::SeqCst) {
            "ended"
        } else {
            "failed"
        };
        self.active.remove(&self.call_id, reason);
    }
}

/// Latency figures of the live call (metrics and the live view, not decisions).
#[derive(Debug, Default)]
struct Stats {
    first_audio_recorded: bool,
    speech_stopped_at: Option<Instant>,
}

/// State of a call actor.
pub struct CallState {
    deps: CallDeps,
    call: Arc<CallRecord>,
    version: Option<Arc<AgentVersion>>,
    session_id: SessionId,
    started: Instant,
    span: tracing::Span,
    conversation: Conversation,
    recorder: Recorder,
    /// The media task's commands.
    media: mpsc::UnboundedSender<pumps::MediaCmd>,
    stream_sid: Arc<str>,
    /// Whether the media task has a model connection of the current generation to send to.
    ai_attached: bool,
    /// Generation of the AI connection (events of an older one are ignored).
    ai_generation: u64,
    playback: Arc<Mutex<Playback>>,
    /// Running tool tasks by model call id.
    tools: HashMap<String, tools::RunningTool>,
    /// Tool tasks cancelled while the call goes on (awaited at the end for their records).
    cancelled: Vec<JoinHandle<()>>,
    stats: Stats,
    /// Set once the records are final (a normal end).
    finished: Arc<AtomicBool>,
    /// The leg ended (the actor is stopping).
    ended: bool,
    guard: Guard,
}

impl CallState {
    fn now(&self) -> conversation::Millis {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whose records this stream writes.
    fn owner(&self) -> recorder::Owner {
        recorder::Owner {
            call: self.call.id.clone(),
            tenant: self.call.tenant_id.clone(),
            session: self.session_id.clone(),
        }
    }

    fn phase(&self, phase: CallPhase) {
        self.deps.active.update(&self.call.id, |c| c.phase = phase);
    }

    /// The first audio of assistant item `item_id` reached Twilio: the session's first audio
    /// (once), and the response gap of that turn (from the end of the caller's speech).
    fn first_audio(&mut self, item_id: String, at: Instant) {
        if !self.stats.first_audio_recorded {
            self.stats.first_audio_recorded = true;
            let since = at.saturating_duration_since(self.started);
            let ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
            metrics::histogram!("ai_first_audio_seconds").record(since.as_secs_f64());
            self.recorder.record(Record::FirstAudio(ms));
            self.deps
                .active
                .update(&self.call.id, |c| c.first_audio_ms = Some(ms));
        }
        if let Some(stopped) = self.stats.speech_stopped_at.take() {
            let ms = i64::try_from(at.saturating_duration_since(stopped).as_millis()).unwrap_or(0);
            metrics::histogram!("ai_response_gap_seconds")
                .record(at.saturating_duration_since(stopped).as_secs_f64());
            self.recorder.record(Record::ResponseGap { item_id, ms });
            self.deps
                .active
                .update(&self.call.id, |c| c.last_response_ms = Some(ms));
        }
        self.phase(CallPhase::Speaking);
    }
}

/// Reads what a stream of `call` starts from: its version, and the conversation and tool
/// invocations of earlier streams (a call resumed after an unanswered handoff).
async fn load(
    store: &Store,
    call: &CallRecord,
) -> Result<(Option<AgentVersion>, Setup), ActorProcessingErr> {
    let version = match call
        .agent_version_id
        .as_deref()
        .and_then(AgentVersionId::parse)
    {
        Some(id) => store.get_version(&id).await?,
        None => None,
    };
    let prior = match store.call_conversation(&call.id).await {
        Ok(lines) => lines
            .into_iter()
            .map(|(role, text)| (Speaker::parse(&role), text))
            .collect(),
        Err(error) => {
            tracing::warn!(error = %error, "could not read the conversation so far");
            Vec::new()
        }
    };
    let prior_invocations = match store.call_invocations(&call.id).await {
        Ok(prior) => prior,
        Err(error) => {
            tracing::warn!(error = %error, "could not read earlier tool invocations");
            Vec::new()
        }
    };
    let cut_off = !prior.is_empty() && previous_leg_cut_off(store, call).await;
    let setup = Setup {
        caller: tools::caller(call).to_owned(),
        greeting: ai::greeting(call, version.as_ref()),
        toolbox: version
            .as_ref()
            .map(|v| Arc::new(crate::contract::Toolbox::new(v.contract.clone()))),
        idle_timeout: version
            .as_ref()
            .map(|v| Duration::from_secs(u64::try_from(v.idle_timeout_seconds).unwrap_or(30))),
        max_duration: version
            .as_ref()
            .map(|v| Duration::from_secs(u64::try_from(v.max_call_seconds).unwrap_or(1800))),
        started_at_ms: now_ms(),
        prior,
        prior_invocations,
        cut_off,
        resume_lost_leg: None,
        ai_reconnect: None,
        hold_greeting: hold_greeting(call),
    };
    Ok((version, setup))
}

/// The longest the greeting of an outbound call with an answering-machine action waits for
/// the AMD result (a person hears the agent at most this late).
pub const GREETING_HOLD: Duration = Duration::from_secs(4);

/// How long the greeting of `call` waits for its AMD result: only with an action that ends
/// machine calls and no result yet (bounded by the detection timeout).
fn hold_greeting(call: &CallRecord) -> Option<Duration> {
    use crate::telephony::amd::AmdAction;
    let action = call.amd_action.as_deref().and_then(AmdAction::parse)?;
    if action == AmdAction::Continue || call.answered_by.is_some() {
        return None;
    }
    let timeout = call
        .amd_timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(GREETING_HOLD, Duration::from_secs);
    Some(GREETING_HOLD.min(timeout))
}

/// Whether the latest earlier stream of `call` was cut off (its socket lost, or its node
/// drained) rather than handed to a human who never answered.
async fn previous_leg_cut_off(store: &Store, call: &CallRecord) -> bool {
    match store.sessions_of_call(&call.id).await {
        Ok(sessions) => sessions.last().is_some_and(|s| {
            s.end_reason
                .as_deref()
                .and_then(EndReason::parse)
                .is_some_and(|r| {
                    matches!(
                        r,
                        EndReason::SocketClosed | EndReason::SocketError | EndReason::Drained
                    )
                })
        }),
        Err(error) => {
            tracing::warn!(error = %error, "could not read the earlier streams");
            false
        }
    }
}

impl Actor for CallActor {
    type Msg = CallMsg;
    type State = CallState;
    type Arguments = CallArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CallMsg>,
        args: CallArgs,
    ) -> Result<CallState, ActorProcessingErr> {
        let CallArgs {
            start,
            deps,
            finished,
            release,
        } = args;
        let call = Arc::new(start.call);
        let span = tracing::info_span!(
            "call",
            call_id = %call.id,
            call_sid = call.call_sid.as_deref().unwrap_or_default(),
            tenant = %call.tenant_id,
        );
        // The media task first: whatever fails below, the socket is closed by it (after the
        // supervisor recorded the failure).
        let stream_sid: Arc<str> = Arc::from(start.stream_sid.as_str());
        let playback = Arc::new(Mutex::new(Playback::default()));
        let media = pumps::spawn(
            pumps::MediaArgs {
                incoming: start.incoming,
                sink: start.outgoing,
                write_timeout: deps.settings.twilio_write_timeout,
                actor: myself.clone(),
                release,
                stream_sid: Arc::clone(&stream_sid),
                playback: Arc::clone(&playback),
            },
            span.clone(),
        );
        let guard = Guard {
            tasks: Vec::new(),
            active: Arc::clone(&deps.active),
            call_id: call.id.clone(),
            finished: Arc::clone(&finished),
        };
        let (version, mut setup) = load(&deps.store, &call).instrument(span.clone()).await?;
        setup.resume_lost_leg = deps.settings.resume_lost_leg;
        setup.ai_reconnect = deps.settings.ai_reconnect;
        let session_id = SessionId::generate();
        let started_at = setup.started_at_ms;
        let session = VoiceSession::live(
            session_id.clone(),
            &call,
            ai::model(version.as_ref()).to_owned(),
            ai::voice(version.as_ref()).to_owned(),
            Some(start.stream_sid.clone()),
            started_at,
        );
        deps.store.insert_session(&session).await?;
        let owner = recorder::Owner {
            call: call.id.clone(),
            tenant: call.tenant_id.clone(),
            session: session_id.clone(),
        };
        let recorder = Recorder::spawn(
            deps.store.clone(),
            deps.notifier.clone(),
            owner,
            span.clone(),
        );
        Ok(CallState {
            conversation: Conversation::new(setup),
            session_id,
            started: Instant::now(),
            span,
            recorder,
            media,
            stream_sid,
            ai_attached: false,
            ai_generation: 0,
            playback,
            tools: HashMap::new(),
            cancelled: Vec::new(),
            stats: Stats::default(),
            finished,
            ended: false,
            guard,
            version: version.map(Arc::new),
            call,
            deps,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CallMsg>,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        async {
            let call = Arc::clone(&state.call);
            state.deps.active.insert(ActiveCall {
                call_id: call.id.clone(),
                call_sid: call.call_sid.clone().unwrap_or_default(),
                stream_sid: Some(state.stream_sid.to_string()),
                tenant_id: call.tenant_id.clone(),
                direction: call.direction.as_str(),
                from: call.from_number.clone(),
                to: call.to_number.clone(),
                agent_key: call.agent_key.clone(),
                agent_version_id: call.agent_version_id.clone(),
                started_at: now_ms(),
                phase: CallPhase::Greeting,
                last_line: None,
                first_audio_ms: None,
                last_response_ms: None,
            });
            state.recorder.record(Record::Event(
                EventKind::CallStarted,
                json!({
                    "call_id": call.id.as_str(),
                    "call_sid": call.call_sid,
                    "session_id": state.session_id.as_str(),
                    "direction": call.direction.as_str(),
                    "from": call.from_number,
                    "to": call.to_number,
                    "agent_key": call.agent_key,
                    "agent_version_id": call.agent_version_id,
                }),
            ));
            let effects = state.conversation.start();
            state.apply(&myself, effects).await;
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        message: CallMsg,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let _timer = HandleTimer::start(kind::CALL, message.name());
        if state.ended {
            return Ok(());
        }
        let span = state.span.clone();
        state.on_message(&myself, message).instrument(span).await;
        Ok(())
    }
}

impl CallState {
    async fn on_message(&mut self, myself: &ActorRef<CallMsg>, message: CallMsg) {
        let input = match message {
            CallMsg::Ai(generation, event) if generation == self.ai_generation => {
                if event == AiEvent::SpeechStopped {
                    self.stats.speech_stopped_at = Some(Instant::now());
                }
                Input::Ai(event)
            }
            CallMsg::Ai(..) => return,
            CallMsg::AiConnected(generation, link) if generation == self.ai_generation => {
                match link {
                    Ok(link) => {
                        self.attach_ai(link);
                        Input::AiConnected
                    }
                    Err(why) => Input::AiConnectFailed(why),
                }
            }
            CallMsg::AiConnected(..) => return,
            CallMsg::AiClosed(generation, why) if generation == self.ai_generation => {
                self.ai_attached = false;
                Input::AiClosed(why)
            }
            CallMsg::AiClosed(..) => return,
            CallMsg::BargeIn(cut) => Input::BargeIn(cut),
            CallMsg::FirstAudio(item_id, at) => {
                self.first_audio(item_id, at);
                return;
            }
            CallMsg::PlaybackDrained => Input::PlaybackDrained,
            CallMsg::Dtmf(digit) => Input::Dtmf(digit),
            CallMsg::Stop => Input::TwilioStopped,
            CallMsg::TwilioGone(reason, detail) => Input::TwilioGone(reason, detail),
            CallMsg::Timer(timer) => Input::Timer(timer),
            CallMsg::ToolDone(id, outcome) => {
                // The task reported: it is over.
                self.tools.remove(&id);
                Input::ToolDone(id, *outcome)
            }
            CallMsg::Escalated(resolution) => Input::Escalated(*resolution),
            CallMsg::ControlDone(report) => Input::ControlDone(report),
            CallMsg::Drain { resume } => Input::Drain { resume },
            CallMsg::AnsweredBy(None) => return,
            CallMsg::AnsweredBy(Some(machine)) => Input::AnsweredBy { machine },
            CallMsg::Crash => {
                if self.deps.settings.chaos {
                    panic!("chaos hook: call actor crash requested");
                }
                return;
            }
            CallMsg::Fault(fault) => {
                if !self.deps.settings.chaos {
                    return;
                }
                self.fault(fault).await
            }
        };
        self.feed(myself, input).await;
    }

    /// Hands `input` to the conversation and executes what it returns.
    async fn feed(&mut self, myself: &ActorRef<CallMsg>, input: Input) {
        let effects = self.conversation.handle(self.now(), input);
        self.apply(myself, effects).await;
    }

    /// A new AI connection is up: the media task sends caller audio to it and reads its
    /// events.
    fn attach_ai(&mut self, link: AiLink) {
        let attached = self.media.send(pumps::MediaCmd::Attach {
            link: Box::new(link),
            generation: self.ai_generation,
        });
        self.ai_attached = attached.is_ok();
    }

    /// Drops one of the call's sockets without a close frame, as a network reset would,
    /// and returns the loss the conversation then handles as any other: the model's socket
    /// (dropped by the media task, never reported), or Twilio's (both halves dropped by the
    /// media task without `stop` or close frame).
    async fn fault(&mut self, fault: chaos::Fault) -> Input {
        match fault {
            chaos::Fault::AiReset => {
                self.ai_attached = false;
                let _ = self.media.send(pumps::MediaCmd::ResetModel);
                Input::AiClosed(String::from(chaos::RESET_DETAIL))
            }
            chaos::Fault::TwilioReset => {
                let _ = self.media.send(pumps::MediaCmd::ResetTwilio);
                Input::TwilioGone(EndReason::SocketError, Some(chaos::RESET_DETAIL.into()))
            }
        }
    }

    /// Ends the AI session with a close frame (PROTOCOLS §5.1: on `stop` or a closed Twilio
    /// socket, close the model's socket), bounded, since the AI peer may be what stalled.
    async fn close_ai(&mut self) {
        if std::mem::take(&mut self.ai_attached) {
            let (done, written) = oneshot::channel();
            if self
                .media
                .send(pumps::MediaCmd::CloseModel(Some(done)))
                .is_ok()
            {
                let _ = tokio::time::timeout(ai::AI_CLOSE_TIMEOUT, written).await;
            }
        }
    }
}
