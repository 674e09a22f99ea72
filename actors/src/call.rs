//! `CallActor`: one actor per live call, `call:{call_sid}`, supervised by the
//! [`supervisor::CallSupervisor`].
//!
//! It owns the call's Twilio media socket (through two pump tasks), its AI realtime session,
//! the playback accounting used for barge-in, and the call's records (voice session,
//! transcript turns, call-log end state), written as things happen so a crash leaves the
//! record up to that point.
//!
//! Audio never passes through the mailbox: the Twilio reader forwards caller audio straight
//! to the AI sender (bounded; a full queue drops and counts), and the AI reader forwards
//! model audio straight to the Twilio writer (bounded; likewise), base64 untouched. The
//! mailbox carries control only: session events, marks, speech start, transcripts, DTMF,
//! stop, errors.
//!
//! Ending: on `stop` or socket close the actor finalizes the records and stops. If it dies
//! instead (panic, error, kill), its state's `Drop` aborts the readers and drops the
//! writer's channel; the writer then records `after_stream = fallback` before closing the
//! socket, so when Twilio asks `stream-ended` the caller gets the route's fallback.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Sink;
use futures::stream::BoxStream;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::active::{ActiveCall, ActiveRegistry, CallPhase};
use crate::ids::{AgentVersionId, SessionId};
use crate::meter::{HandleTimer, kind};
use crate::realtime::{
    ClientEvent, RealtimeClient, RealtimeEndpoint, RealtimeSender, ServerEvent, SessionConfig,
};
use crate::store::{
    AgentVersion, CallRecord, Store, TranscriptTurn, TurnDetection, Usage, VoiceSession,
};
use crate::time::now_ms;

mod handoff;
pub mod playback;
mod pumps;
pub mod supervisor;
pub mod tools;
mod webhook;

use playback::Playback;

/// How long a normal end waits for the AI session's close frame to be written.
const AI_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A frame read from Twilio's media socket.
#[derive(Debug)]
pub enum TwilioFrame {
    /// A text frame (one JSON message).
    Text(String),
    /// The socket closed or failed (why).
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
    /// How long to wait for the connection and `session.updated`.
    pub connect_timeout: Duration,
}

/// What every call actor needs (shared, cloned into each).
#[derive(Clone)]
pub struct CallDeps {
    /// Database.
    pub store: Store,
    /// The realtime service.
    pub ai: AiConfig,
    /// Live calls of this node.
    pub active: Arc<ActiveRegistry>,
    /// Test-only fault injection (`CallMsg::Crash` panics only when true).
    pub chaos: bool,
    /// Capacity of the Twilio write queue (frames).
    pub twilio_queue: usize,
    /// How long a write to Twilio may take before the peer counts as stalled.
    pub twilio_write_timeout: Duration,
    /// The tenant actor, for a tenant's own realtime-model key and its signing secret (set by
    /// the root supervisor).
    pub tenant: Option<crate::singleton::SingletonRef<crate::tenant::TenantMsg>>,
    /// The router, to change the live call through the carrier (transfer, hang up, SMS).
    pub router: Option<crate::singleton::SingletonRef<crate::router::RouterMsg>>,
    /// SSRF-safe client for tenant endpoints (tools, identity checks).
    pub egress: crate::egress::Egress,
    /// Tenant events (set by the root supervisor).
    pub notifier: Option<crate::notifier::Notifier>,
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

/// Messages of a call actor (control only; audio never comes through here).
pub enum CallMsg {
    /// An event of the AI session (not audio).
    Ai(u64, Box<ServerEvent>),
    /// The AI socket ended (generation, reason).
    AiClosed(u64, String),
    /// The caller started speaking while assistant audio played: the pump already stopped
    /// forwarding the response; the actor clears Twilio and truncates (what, when seen).
    BargeIn(playback::Interruption, Instant),
    /// First audio of the AI forwarded to Twilio.
    FirstAudio(Instant),
    /// A mark echo from Twilio.
    Mark(String),
    /// A key press.
    Dtmf(String),
    /// Twilio sent `stop`.
    Stop,
    /// The Twilio socket closed or stalled (reason).
    TwilioGone(String),
    /// The call reached its agent version's maximum duration.
    MaxDuration,
    /// A tool call finished (model call id, result).
    ToolDone(String, Box<tools::ToolOutcome>),
    /// A tool is slower than its filler threshold (model call id).
    ToolSlow(String),
    /// A handoff line or goodbye did not finish playing in time.
    LineDeadline(u64),
    /// The call-duration escalation rule's time came.
    DurationRule,
    /// The caller may have been silent for the idle timeout (epoch of the last activity).
    IdleCheck(u64),
    /// Test-only: panic (when chaos hooks are enabled).
    Crash,
}

impl CallMsg {
    /// Message name for metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            CallMsg::Ai(..) => "ai_event",
            CallMsg::AiClosed(..) => "ai_closed",
            CallMsg::BargeIn(..) => "barge_in",
            CallMsg::FirstAudio(..) => "first_audio",
            CallMsg::Mark(..) => "mark",
            CallMsg::Dtmf(..) => "dtmf",
            CallMsg::Stop => "stop",
            CallMsg::TwilioGone(..) => "twilio_gone",
            CallMsg::MaxDuration => "max_duration",
            CallMsg::ToolDone(..) => "tool_done",
            CallMsg::ToolSlow(..) => "tool_slow",
            CallMsg::LineDeadline(..) => "line_deadline",
            CallMsg::DurationRule => "duration_rule",
            CallMsg::IdleCheck(..) => "idle_check",
            CallMsg::Crash => "crash",
        }
    }
}

/// Arguments of a call actor.
pub struct CallArgs {
    /// The stream.
    pub start: CallStart,
    /// Dependencies.
    pub deps: CallDeps,
}

/// The call actor behaviour.
pub struct CallActor;

/// Tasks and flags released when the state is dropped (also when the actor is killed).
struct Guard {
    readers: Vec<AbortHandle>,
    active: Arc<ActiveRegistry>,
    call_id: crate::ids::CallId,
    finished: Arc<AtomicBool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for task in &self.readers {
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

/// State of a call actor.
pub struct CallState {
    deps: CallDeps,
    call: CallRecord,
    stream_sid: String,
    version: Option<AgentVersion>,
    session_id: SessionId,
    session_started: Instant,
    /// Twilio write queue (the writer task owns the socket half).
    twilio_tx: mpsc::Sender<TwilioOut>,
    /// Current AI sender, read per frame by the Twilio reader.
    ai_tx: watch::Sender<Option<RealtimeSender>>,
    /// Generation of the AI connection (events of an older one are ignored).
    ai_generation: u64,
    playback: Arc<Mutex<Playback>>,
    /// Set once the records are final (a normal end).
    finished: Arc<AtomicBool>,
    guard: Guard,
    greeted: bool,
    response_active: bool,
    reconnects: u32,
    first_audio_recorded: bool,
    speech_stopped_at: Option<Instant>,
    /// Assistant items the caller interrupted: item → (heard ms, sent ms).
    interrupted: std::collections::HashMap<String, (u64, u64)>,
    /// Conversation so far (role, text), replayed after a reconnect.
    history: Vec<(String, String)>,
    /// Tool calls, identity and escalation state.
    tools: tools::ToolState,
    /// Bumped on caller and agent activity; an idle check of an older epoch is stale.
    idle_epoch: u64,
    /// This stream resumes a call that already talked (after an unanswered handoff).
    resumed: bool,
}

fn session_config(version: Option<&AgentVersion>, call: &CallRecord) -> SessionConfig {
    let (model, voice, base) = match version {
        Some(v) => (v.model.clone(), v.voice.clone(), v.instructions.clone()),
        None => (
            "gpt-realtime".to_owned(),
            "marin".to_owned(),
            String::from("You are a helpful phone agent."),
        ),
    };
    let caller = match call.direction {
        crate::store::CallDirection::Inbound => &call.from_number,
        crate::store::CallDirection::Outbound => &call.to_number,
    };
    let instructions = format!(
        "{base}\n\nCall context: this is a phone call ({dir}). The caller's number is {caller}.",
        dir = call.direction.as_str()
    );
    let mut config = SessionConfig::telephony(model, instructions, voice);
    if let Some(v) = version {
        if let Some(model) = &v.transcription_model {
            config = config.with_transcription(model.clone(), v.transcription_language.as_deref());
        }
        let td = match &v.turn_detection {
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
            } => crate::realtime::TurnDetection::ServerVad(crate::realtime::ServerVad {
                threshold: Some(*threshold),
                prefix_padding_ms: Some(*prefix_padding_ms),
                silence_duration_ms: Some(*silence_duration_ms),
                create_response: Some(true),
                interrupt_response: Some(true),
                idle_timeout_ms: None,
            }),
            TurnDetection::SemanticVad { eagerness } => {
                crate::realtime::TurnDetection::SemanticVad(crate::realtime::SemanticVad {
                    eagerness: Some(match eagerness.as_str() {
                        "low" => crate::realtime::Eagerness::Low,
                        "medium" => crate::realtime::Eagerness::Medium,
                        "high" => crate::realtime::Eagerness::High,
                        _ => crate::realtime::Eagerness::Auto,
                    }),
                    create_response: Some(true),
                    interrupt_response: Some(true),
                })
            }
        };
        config = config.with_turn_detection(Some(td));
        if !v.contract.tools.is_empty() {
            config = config.with_tools(v.contract.session_tools());
        }
    } else {
        config = config.with_transcription("gpt-4o-mini-transcribe", None);
    }
    config
}

/// The greeting: the call's own, else the version's.
fn greeting(call: &CallRecord, version: Option<&AgentVersion>) -> Option<String> {
    call.greeting
        .clone()
        .or_else(|| version.and_then(|v| v.greeting.clone()))
}

impl CallState {
    fn ms_since_start(&self) -> i64 {
        i64::try_from(self.session_started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    async fn connect_ai(&mut self, myself: &ActorRef<CallMsg>, replay: bool) -> Result<(), String> {
        let model = self
            .version
            .as_ref()
            .map_or("gpt-realtime", |v| v.model.as_str())
            .to_owned();
        let endpoint = RealtimeEndpoint {
            url: self.deps.ai.url.clone(),
            api_key: self.api_key().await,
            model,
        };
        let (tx, rx) = tokio::time::timeout(
            self.deps.ai.connect_timeout,
            RealtimeClient::connect(endpoint),
        )
        .await
        .map_err(|_| String::from("ai connect timed out"))?
        .map_err(|e| format!("ai connect failed: {e}"))?;
        tx.send(&ClientEvent::session_update(session_config(
            self.version.as_ref(),
            &self.call,
        )))
        .await
        .map_err(|e| format!("ai session.update failed: {e}"))?;
        if replay {
            for (role, text) in &self.history {
                let event = match role.as_str() {
                    "assistant" => ClientEvent::assistant_text(text.clone()),
                    _ => ClientEvent::user_text(text.clone()),
                };
                tx.send(&event)
                    .await
                    .map_err(|e| format!("ai replay failed: {e}"))?;
            }
        }
        self.ai_generation += 1;
        let task = pumps::spawn_ai_reader(
            rx,
            myself.clone(),
            self.ai_generation,
            self.twilio_tx.clone(),
            self.stream_sid.clone(),
            Arc::clone(&self.playback),
        );
        self.guard.readers.push(task);
        self.ai_tx.send_replace(Some(tx));
        Ok(())
    }

    /// The tenant's own realtime-model key when it has one, else the global key.
    async fn api_key(&self) -> String {
        let actor = self.deps.tenant.as_ref().and_then(|t| t.get());
        if let Some(actor) = actor {
            let own = ractor::call_t!(
                actor,
                crate::tenant::TenantMsg::OpenAiKey,
                2000,
                self.call.tenant_id.clone()
            );
            match own {
                Ok(Ok(Some(key))) => return key,
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(call_id = %self.call.id, error = %error, "tenant realtime key unreadable; using the global key")
                }
                Err(error) => {
                    tracing::warn!(call_id = %self.call.id, error = %error, "tenant actor unavailable; using the global key")
                }
            }
        }
        self.deps.ai.api_key.clone()
    }

    fn ai(&self) -> Option<RealtimeSender> {
        self.ai_tx.borrow().clone()
    }

    async fn send_ai(&self, event: ClientEvent) {
        if let Some(tx) = self.ai()
            && let Err(error) = tx.send(&event).await
        {
            tracing::warn!(call_id = %self.call.id, error = %error, "could not send to the ai session");
        }
    }

    async fn turn(
        &mut self,
        role: &str,
        item_id: Option<String>,
        text: String,
        interrupted: bool,
        heard: Option<String>,
    ) {
        if text.trim().is_empty() {
            return;
        }
        let now = self.ms_since_start();
        let turn = TranscriptTurn {
            id: 0,
            role: role.to_owned(),
            item_id,
            text: text.clone(),
            start_ms: None,
            end_ms: Some(now),
            interrupted,
            heard_text: heard.clone(),
            created_at: now_ms(),
        };
        if let Err(error) = self.deps.store.add_turn(&self.session_id, &turn).await {
            tracing::warn!(call_id = %self.call.id, error = %error, "could not record a transcript turn");
        }
        let said = heard.unwrap_or(text);
        self.history.push((role.to_owned(), said.clone()));
        let role = role.to_owned();
        self.deps
            .active
            .update(&self.call.id, |c| c.last_line = Some((role, said)));
    }

    /// Caller or agent activity: restarts the idle timer.
    fn touch(&mut self, myself: &ActorRef<CallMsg>) {
        self.idle_epoch += 1;
        if let Some(v) = &self.version {
            let epoch = self.idle_epoch;
            let idle = Duration::from_secs(u64::try_from(v.idle_timeout_seconds).unwrap_or(30));
            myself.send_after(idle, move || CallMsg::IdleCheck(epoch));
        }
    }

    /// The idle timer of `epoch` fired: when nothing happened since and nothing is in
    /// flight, the agent says goodbye and the call ends once it played.
    async fn idle_check(&mut self, myself: &ActorRef<CallMsg>, epoch: u64) {
        if epoch != self.idle_epoch
            || self.response_active
            || self.tools.busy()
            || self.tools.ending.is_some()
            || self.tools.has_line()
        {
            return;
        }
        tracing::info!(call_id = %self.call.id, "caller idle: ending the call");
        let _ = self
            .deps
            .store
            .add_call_event(&self.call.id, "idle_timeout", &json!({"epoch": epoch}))
            .await;
        self.plan_line(
            myself,
            tools::LineAction::Hangup,
            Some(String::from(
                "I haven't heard anything for a while, so I'll end the call now. Goodbye!",
            )),
        );
        self.tools.ending_reason_hint = Some("idle_timeout");
        self.maybe_respond().await;
    }

    /// Records a function call cut off by the end of the call.
    async fn cancel_pending_tools(&mut self) {
        self.tools.abort_all();
        for (record, latency) in self.tools.drain_pending() {
            let _ = self
                .deps
                .store
                .finish_function_call(
                    &record,
                    crate::store::FunctionCallStatus::Cancelled,
                    None,
                    Some("the call ended before the tool finished"),
                    latency,
                )
                .await;
        }
    }

    fn phase(&self, phase: CallPhase) {
        self.deps.active.update(&self.call.id, |c| c.phase = phase);
    }

    async fn on_ai(
        &mut self,
        myself: &ActorRef<CallMsg>,
        event: ServerEvent,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            ServerEvent::SessionUpdated(_) if !self.greeted => {
                self.greeted = true;
                if self.resumed {
                    self.phase(CallPhase::Greeting);
                    self.response_active = true;
                    self.send_ai(ClientEvent::response_with_instructions(
                        "Say exactly: I'm sorry, nobody was able to take your call. I'm back with you. How else can I help?",
                    ))
                    .await;
                } else if let Some(text) = greeting(&self.call, self.version.as_ref()) {
                    self.phase(CallPhase::Greeting);
                    self.send_ai(ClientEvent::response_with_instructions(format!(
                        "Greet the caller. Say exactly: {text}"
                    )))
                    .await;
                } else {
                    self.phase(CallPhase::Listening);
                }
            }
            ServerEvent::SpeechStarted(_) => {
                self.touch(myself);
                self.tools_interrupted(myself).await;
            }
            ServerEvent::SpeechStopped(_) => {
                self.speech_stopped_at = Some(Instant::now());
            }
            ServerEvent::InputTranscriptionCompleted(t) => {
                let rule = self
                    .tools
                    .toolbox
                    .as_ref()
                    .and_then(|tb| tb.caller_asks_for_human(&t.transcript).cloned());
                let text = t.transcript.clone();
                self.turn("user", Some(t.item_id), t.transcript, false, None)
                    .await;
                if let Some(rule) = rule {
                    self.escalate(
                        myself,
                        tools::Escalation {
                            rule: String::from("caller_asks_for_human"),
                            reason: format!("the caller asked for a human: \"{text}\""),
                            queue: rule.queue,
                            tool_call: None,
                        },
                    )
                    .await;
                }
            }
            ServerEvent::ResponseCreated(_) => {
                self.response_active = true;
            }
            ServerEvent::AudioTranscriptDone(t) => {
                let (interrupted, heard) = match self.interrupted.get(&t.item_id) {
                    Some((heard_ms, sent_ms)) => {
                        (true, Some(heard_prefix(&t.transcript, *heard_ms, *sent_ms)))
                    }
                    None => (false, None),
                };
                self.turn(
                    "assistant",
                    Some(t.item_id),
                    t.transcript,
                    interrupted,
                    heard,
                )
                .await;
            }
            ServerEvent::ResponseDone(r) => {
                self.response_active = false;
                if let Some(u) = r.response.usage {
                    let usage = Usage {
                        input: i64::try_from(u.input_tokens).unwrap_or(0),
                        output: i64::try_from(u.output_tokens).unwrap_or(0),
                        total: i64::try_from(u.total_tokens).unwrap_or(0),
                    };
                    if let Err(error) = self
                        .deps
                        .store
                        .add_session_usage(&self.session_id, usage)
                        .await
                    {
                        tracing::warn!(call_id = %self.call.id, error = %error, "could not record usage");
                    }
                }
                if !self.tools.busy() {
                    self.phase(CallPhase::Listening);
                }
                self.touch(myself);
                self.tools_response_done(myself).await;
            }
            ServerEvent::Error(e) => {
                let code = e.error.code.clone().unwrap_or_else(|| String::from("none"));
                metrics::counter!("ai_session_errors_total", "code" => bounded_code(&code))
                    .increment(1);
                tracing::warn!(call_id = %self.call.id, code = %code, message = %e.error.message, "ai session error");
                if code == "conversation_already_has_active_response" {
                    self.response_refused(e.error.event_id.as_deref());
                }
                if is_fatal(&code) {
                    self.fail_over(&format!("ai_error:{code}")).await;
                }
            }
            ServerEvent::FunctionCallArgumentsDone(f) => {
                self.on_function_call(myself, f).await;
            }
            ServerEvent::Unknown { kind } => {
                tracing::debug!(call_id = %self.call.id, kind = %kind, "unknown ai event");
            }
            _ => {}
        }
        Ok(())
    }

    async fn barge_in(&mut self, cut: playback::Interruption, seen: Instant) {
        let clear = crate::media::TwilioOutbound::Clear {
            stream_sid: self.stream_sid.clone(),
        };
        if self
            .twilio_tx
            .send(TwilioOut::Text(clear.encode()))
            .await
            .is_err()
        {
            return;
        }
        metrics::histogram!("bargein_clear_seconds").record(seen.elapsed().as_secs_f64());
        self.send_ai(ClientEvent::truncate(cut.item_id.clone(), cut.audio_end_ms))
            .await;
        self.interrupted
            .insert(cut.item_id.clone(), (cut.audio_end_ms, cut.sent_ms));
        metrics::counter!("bargeins_total").increment(1);
        self.phase(CallPhase::Listening);
    }

    /// The AI leg failed for good: record it, and let Twilio play the route's fallback.
    async fn fail_over(&mut self, reason: &str) {
        self.cancel_pending_tools().await;
        tracing::warn!(call_id = %self.call.id, reason, "ai leg failed: handing the caller to the fallback");
        let store = &self.deps.store;
        let _ = store
            .set_after_stream(&self.call.id, Some("fallback"))
            .await;
        let _ = store.set_end_reason(&self.call.id, reason).await;
        let _ = store
            .finish_session(&self.session_id, "failed", reason, None)
            .await;
        let _ = store
            .add_call_event(
                &self.call.id,
                "ai",
                &json!({"event": "failed", "reason": reason}),
            )
            .await;
        self.finished.store(true, Ordering::SeqCst);
        metrics::counter!("calls_total", "direction" => self.call.direction.as_str(), "outcome" => "fallback").increment(1);
        let _ = self
            .twilio_tx
            .send(TwilioOut::Close {
                code: 1000,
                reason: String::from("fallback"),
            })
            .await;
        self.close_ai().await;
    }

    /// A normal end: the caller hung up or Twilio stopped the stream.
    async fn finish(&mut self, reason: &str) {
        // A call the agent handed off or hung up ends for that reason, not the `stop` after it.
        let reason = self.tools.ending.unwrap_or(reason).to_owned();
        let reason = reason.as_str();
        self.cancel_pending_tools().await;
        let store = &self.deps.store;
        let _ = store.set_end_reason(&self.call.id, reason).await;
        let _ = store.set_stream_state(&self.call.id, None, "stopped").await;
        let _ = store
            .finish_session(&self.session_id, "completed", reason, None)
            .await;
        let _ = store
            .add_call_event(
                &self.call.id,
                "call.completed",
                &json!({"reason": reason, "session_id": self.session_id.as_str()}),
            )
            .await;
        self.finished.store(true, Ordering::SeqCst);
        metrics::counter!("calls_total", "direction" => self.call.direction.as_str(), "outcome" => "completed").increment(1);
        self.emit(
            crate::notifier::EventKind::CallCompleted,
            json!({
                "call_id": self.call.id.as_str(),
                "call_sid": self.call.call_sid,
                "session_id": self.session_id.as_str(),
                "direction": self.call.direction.as_str(),
                "from": self.call.from_number,
                "to": self.call.to_number,
                "agent_key": self.call.agent_key,
                "agent_version_id": self.call.agent_version_id,
                "end_reason": reason,
                "duration_ms": self.ms_since_start(),
                // The dial result comes later (`/api/v1/dial-result`): whether a human took
                // the call is in the handoff, not known here.
                "handoff_started": self.tools.ending == Some("escalated"),
            }),
        )
        .await;
        let _ = self
            .twilio_tx
            .send(TwilioOut::Close {
                code: 1000,
                reason: reason.to_owned(),
            })
            .await;
        self.close_ai().await;
    }

    /// Ends the AI session with a close frame (PROTOCOLS §5.1: on `stop` or a closed Twilio
    /// socket, close the model's socket). Without this, the connection only went away when
    /// this actor's state dropped, which aborts the realtime writer task: the model service
    /// saw a reset without a closing handshake at the end of every call. Bounded, since the
    /// AI peer may be the thing that is stalled.
    async fn close_ai(&mut self) {
        if let Some(tx) = self.ai_tx.send_replace(None) {
            let _ = tokio::time::timeout(AI_CLOSE_TIMEOUT, tx.close()).await;
        }
    }
}

/// The part of `transcript` the caller heard, proportional to the audio played.
fn heard_prefix(transcript: &str, heard_ms: u64, sent_ms: u64) -> String {
    if sent_ms == 0 {
        return String::new();
    }
    let chars: Vec<char> = transcript.chars().collect();
    let keep = usize::try_from((chars.len() as u64).saturating_mul(heard_ms) / sent_ms)
        .unwrap_or(chars.len());
    chars[..keep.min(chars.len())]
        .iter()
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Error codes that end the AI session.
fn is_fatal(code: &str) -> bool {
    matches!(
        code,
        "beta_api_shape_disabled" | "invalid_api_key" | "session_expired" | "insufficient_quota"
    )
}

/// Keeps the metric label bounded: known codes as is, anything else `other`.
fn bounded_code(code: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "beta_api_shape_disabled",
        "conversation_already_has_active_response",
        "response_cancel_not_active",
        "invalid_value",
        "invalid_api_key",
        "session_expired",
        "insufficient_quota",
        "rate_limit_exceeded",
        "none",
    ];
    KNOWN
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or("other")
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
        let CallArgs { start, deps } = args;
        let finished = Arc::new(AtomicBool::new(false));
        let (twilio_tx, twilio_rx) = mpsc::channel(deps.twilio_queue.max(8));
        pumps::spawn_twilio_writer(
            start.outgoing,
            twilio_rx,
            deps.twilio_write_timeout,
            Arc::clone(&finished),
            deps.store.clone(),
            start.call.id.clone(),
            myself.clone(),
        );
        let (ai_tx, ai_rx) = watch::channel(None);
        let reader = pumps::spawn_twilio_reader(start.incoming, myself.clone(), ai_rx);
        let version = match start
            .call
            .agent_version_id
            .as_deref()
            .and_then(AgentVersionId::parse)
        {
            Some(id) => deps.store.get_version(&id).await?,
            None => None,
        };
        let toolbox = version
            .as_ref()
            .map(|v| Arc::new(crate::contract::Toolbox::new(v.contract.clone())));
        let guard = Guard {
            readers: vec![reader],
            active: Arc::clone(&deps.active),
            call_id: start.call.id.clone(),
            finished: Arc::clone(&finished),
        };
        Ok(CallState {
            session_id: SessionId::generate(),
            session_started: Instant::now(),
            stream_sid: start.stream_sid,
            version,
            twilio_tx,
            ai_tx,
            ai_generation: 0,
            playback: Arc::new(Mutex::new(Playback::default())),
            finished,
            guard,
            greeted: false,
            response_active: false,
            reconnects: 0,
            first_audio_recorded: false,
            speech_stopped_at: None,
            interrupted: std::collections::HashMap::new(),
            history: Vec::new(),
            tools: tools::ToolState::new(toolbox),
            idle_epoch: 0,
            resumed: false,
            call: start.call,
            deps,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CallMsg>,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let (model, voice) = state
            .version
            .as_ref()
            .map_or((String::from("gpt-realtime"), String::from("marin")), |v| {
                (v.model.clone(), v.voice.clone())
            });
        let session = VoiceSession {
            id: state.session_id.clone(),
            tenant_id: state.call.tenant_id.clone(),
            call_id: state.call.id.clone(),
            agent_key: state.call.agent_key.clone(),
            agent_version_id: state.call.agent_version_id.clone(),
            model,
            voice,
            stream_sid: Some(state.stream_sid.clone()),
            status: String::from("active"),
            end_reason: None,
            first_audio_ms: None,
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            reconnects: 0,
            summary: None,
            tags: Vec::new(),
            started_at: now_ms(),
            ended_at: None,
        };
        state.deps.store.insert_session(&session).await?;
        state.deps.active.insert(ActiveCall {
            call_id: state.call.id.clone(),
            call_sid: state.call.call_sid.clone().unwrap_or_default(),
            tenant_id: state.call.tenant_id.clone(),
            direction: state.call.direction.as_str(),
            from: state.call.from_number.clone(),
            to: state.call.to_number.clone(),
            agent_key: state.call.agent_key.clone(),
            agent_version_id: state.call.agent_version_id.clone(),
            started_at: now_ms(),
            phase: CallPhase::Greeting,
            last_line: None,
            first_audio_ms: None,
            last_response_ms: None,
        });
        if let Some(v) = &state.version {
            let max = Duration::from_secs(u64::try_from(v.max_call_seconds).unwrap_or(1800));
            myself.send_after(max, || CallMsg::MaxDuration);
            let duration_rule = v
                .contract
                .escalation
                .rules
                .iter()
                .find_map(|r| match r.trigger {
                    crate::contract::EscalationTrigger::CallDuration { seconds } => Some(seconds),
                    _ => None,
                });
            if let Some(seconds) = duration_rule {
                myself.send_after(Duration::from_secs(seconds), || CallMsg::DurationRule);
            }
        }
        state.touch(&myself);
        state
            .emit(
                crate::notifier::EventKind::CallStarted,
                json!({
                    "call_id": state.call.id.as_str(),
                    "call_sid": state.call.call_sid,
                    "session_id": state.session_id.as_str(),
                    "direction": state.call.direction.as_str(),
                    "from": state.call.from_number,
                    "to": state.call.to_number,
                    "agent_key": state.call.agent_key,
                    "agent_version_id": state.call.agent_version_id,
                }),
            )
            .await;
        // A fresh stream of a call that already talked (the caller came back from an
        // unanswered handoff): the conversation so far is replayed into the new session.
        match state.deps.store.call_conversation(&state.call.id).await {
            Ok(prior) if !prior.is_empty() => {
                state.history = prior;
                state.resumed = true;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(call_id = %state.call.id, error = %error, "could not read the conversation so far");
            }
        }
        let replay = state.resumed;
        if let Err(reason) = state.connect_ai(&myself, replay).await {
            metrics::counter!("ai_session_errors_total", "code" => "connect").increment(1);
            state.fail_over(&reason).await;
            myself.stop(Some(reason));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        message: CallMsg,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let _timer = HandleTimer::start(kind::CALL, message.name());
        match message {
            CallMsg::Ai(generation, event) if generation == state.ai_generation => {
                state.on_ai(&myself, *event).await?
            }
            CallMsg::Ai(..) => {}
            CallMsg::AiClosed(generation, reason)
                if generation == state.ai_generation && !state.finished.load(Ordering::SeqCst) =>
            {
                metrics::counter!("ai_session_errors_total", "code" => "closed").increment(1);
                if state.reconnects == 0 {
                    state.reconnects += 1;
                    let _ = state
                        .deps
                        .store
                        .count_session_reconnect(&state.session_id)
                        .await;
                    let _ = state
                        .deps
                        .store
                        .add_call_event(
                            &state.call.id,
                            "ai",
                            &json!({"event": "reconnect", "reason": reason}),
                        )
                        .await;
                    metrics::counter!("ai_ws_reconnects_total").increment(1);
                    if let Err(why) = state.connect_ai(&myself, true).await {
                        state
                            .fail_over(&format!("ai_reconnect_failed: {why}"))
                            .await;
                        myself.stop(Some(why));
                    }
                } else {
                    state.fail_over(&format!("ai_closed: {reason}")).await;
                    myself.stop(Some(reason));
                }
            }
            CallMsg::AiClosed(..) => {}
            CallMsg::BargeIn(cut, seen) => state.barge_in(cut, seen).await,
            CallMsg::FirstAudio(at) => {
                if !state.first_audio_recorded {
                    state.first_audio_recorded = true;
                    let ms = i64::try_from(at.duration_since(state.session_started).as_millis())
                        .unwrap_or(i64::MAX);
                    metrics::histogram!("ai_first_audio_seconds")
                        .record(at.duration_since(state.session_started).as_secs_f64());
                    let _ = state
                        .deps
                        .store
                        .set_session_first_audio(&state.session_id, ms)
                        .await;
                    state
                        .deps
                        .active
                        .update(&state.call.id, |c| c.first_audio_ms = Some(ms));
                }
                if let Some(stopped) = state.speech_stopped_at.take() {
                    let ms = i64::try_from(at.saturating_duration_since(stopped).as_millis())
                        .unwrap_or(0);
                    state
                        .deps
                        .active
                        .update(&state.call.id, |c| c.last_response_ms = Some(ms));
                }
                state.phase(CallPhase::Speaking);
            }
            CallMsg::Mark(name) => {
                if let Ok(mut p) = state.playback.lock() {
                    p.on_mark(&name, Instant::now());
                }
                state.check_line_played(&myself).await;
            }
            CallMsg::Dtmf(digit) => {
                state
                    .send_ai(ClientEvent::user_text(format!(
                        "[The caller pressed the key {digit} on their keypad.]"
                    )))
                    .await;
                if !state.response_active {
                    state.send_ai(ClientEvent::response_create()).await;
                }
            }
            CallMsg::Stop => {
                state.finish("caller_hangup").await;
                myself.stop(Some(String::from("stop")));
            }
            CallMsg::TwilioGone(reason) => {
                if !state.finished.load(Ordering::SeqCst) {
                    state.finish(&reason).await;
                }
                myself.stop(Some(reason));
            }
            CallMsg::MaxDuration => {
                let _ = state
                    .deps
                    .store
                    .set_after_stream(&state.call.id, Some("hangup"))
                    .await;
                state.finish("max_duration").await;
                myself.stop(Some(String::from("max_duration")));
            }
            CallMsg::ToolDone(call_id, outcome) => {
                state.tool_done(&myself, call_id, *outcome).await;
            }
            CallMsg::ToolSlow(call_id) => state.tool_slow(&call_id).await,
            CallMsg::LineDeadline(epoch) => state.line_deadline(&myself, epoch).await,
            CallMsg::DurationRule => {
                let queue = state.tools.toolbox.as_ref().and_then(|t| {
                    t.rule(|r| matches!(r, crate::contract::EscalationTrigger::CallDuration { .. }))
                        .and_then(|r| r.queue.clone())
                });
                state
                    .escalate(
                        &myself,
                        tools::Escalation {
                            rule: String::from("call_duration"),
                            reason: String::from("the call reached the escalation time limit"),
                            queue,
                            tool_call: None,
                        },
                    )
                    .await;
            }
            CallMsg::IdleCheck(epoch) => state.idle_check(&myself, epoch).await,
            CallMsg::Crash => {
                if state.deps.chaos {
                    panic!("chaos hook: call actor crash requested");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_prefix_is_proportional_and_bounded() {
        assert_eq!(
            heard_prefix("Hello there, how are you", 500, 1000),
            "Hello there,"
        );
        assert_eq!(heard_prefix("abc", 5000, 1000), "abc");
        assert_eq!(heard_prefix("abc", 0, 0), "");
        assert_eq!(bounded_code("weird"), "other");
        assert!(is_fatal("beta_api_shape_disabled"));
    }
}
