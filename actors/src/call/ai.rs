//! The AI leg of a call: the realtime session configuration an agent version asks for
//! ([`session_config`]), and the connection task ([`connect`]) that opens the session with the
//! tenant's own model key (else the global one), configures it, and replays the conversation
//! so far into it (after a dropped socket, or on a resumed call's fresh stream).

use std::time::Duration;

use crate::realtime::{
    ClientEvent, RealtimeClient, RealtimeEndpoint, RealtimeOptions, RealtimeReceiver, RealtimeSink,
    SessionConfig,
};
use crate::store::{AgentVersion, CallRecord, TurnDetection};

use super::CallDeps;
use super::conversation::Speaker;

/// How long a normal end waits for the AI session's close frame to be written.
pub(super) const AI_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the tenant actor may take to give the tenant's model key.
const KEY_TIMEOUT_MS: u64 = 2_000;

/// An open AI session: the two halves of its socket, both used by the call's media task.
pub struct AiLink {
    /// Client events and caller audio.
    pub sink: RealtimeSink,
    /// Server events.
    pub rx: RealtimeReceiver,
}

impl std::fmt::Debug for AiLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiLink").finish_non_exhaustive()
    }
}

/// The model of a call.
pub(super) fn model(version: Option<&AgentVersion>) -> &str {
    version.map_or("gpt-realtime", |v| v.model.as_str())
}

/// The voice of a call.
pub(super) fn voice(version: Option<&AgentVersion>) -> &str {
    version.map_or("marin", |v| v.voice.as_str())
}

/// The opening line: the call's greeting, else the version's, preceded by the recording
/// disclosure when the call is recorded with disclosure (said before anything else).
pub(super) fn greeting(call: &CallRecord, version: Option<&AgentVersion>) -> Option<String> {
    let greeting = call
        .greeting
        .clone()
        .or_else(|| version.and_then(|v| v.greeting.clone()));
    crate::recording::opening(
        call.recording_policy,
        version.and_then(|v| v.recording_disclosure.as_deref()),
        greeting,
    )
}

/// The realtime session a call runs: the version's model, voice, instructions (with the
/// call's context), transcription, turn detection and tools; μ-law both ways.
pub(super) fn session_config(version: Option<&AgentVersion>, call: &CallRecord) -> SessionConfig {
    let base = version.map_or_else(
        || String::from("You are a helpful phone agent."),
        |v| v.instructions.clone(),
    );
    let caller = super::tools::caller(call);
    let mut instructions = format!(
        "{base}\n\nCall context: this is a phone call ({dir}). The caller's number is {caller}.",
        dir = call.direction.as_str()
    );
    if let Some(variables) = call_variables(call) {
        instructions.push_str("\nCall variables (JSON): ");
        instructions.push_str(&variables);
    }
    let mut config = SessionConfig::telephony(
        model(version).to_owned(),
        instructions,
        voice(version).to_owned(),
    );
    let Some(v) = version else {
        return config.with_transcription("gpt-4o-mini-transcribe", None);
    };
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
    config
}

/// The longest call-variables JSON put into the session's instructions (bytes).
const MAX_VARIABLES_BYTES: usize = 4096;

/// The call's variables (`metadata.variables`: a campaign contact's, or make-call's own), as
/// compact JSON for the model, when they are a non-empty object no longer than
/// [`MAX_VARIABLES_BYTES`].
fn call_variables(call: &CallRecord) -> Option<String> {
    let variables = call.metadata.as_ref()?.get("variables")?.as_object()?;
    if variables.is_empty() {
        return None;
    }
    let json = serde_json::to_string(variables).ok()?;
    (json.len() <= MAX_VARIABLES_BYTES).then_some(json)
}

/// The tenant's own realtime-model key when it has one, else the global key.
async fn api_key(deps: &CallDeps, call: &CallRecord) -> String {
    if let Some(actor) = deps.tenant.get() {
        let own = ractor::call_t!(
            actor,
            crate::tenant::TenantMsg::OpenAiKey,
            KEY_TIMEOUT_MS,
            call.tenant_id.clone()
        );
        match own {
            Ok(Ok(Some(key))) => return key,
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "tenant realtime key unreadable; using the global key");
            }
            Err(error) => {
                tracing::warn!(error = %error, "tenant actor unavailable; using the global realtime key");
            }
        }
    }
    deps.settings.ai.api_key.clone()
}

/// Opens the call's AI session: connects, configures it, and replays `replay` into it.
pub(super) async fn connect(
    deps: &CallDeps,
    call: &CallRecord,
    version: Option<&AgentVersion>,
    replay: &[(Speaker, String)],
) -> Result<AiLink, String> {
    let endpoint = RealtimeEndpoint {
        url: deps.settings.ai.url.clone(),
        api_key: api_key(deps, call).await,
        model: model(version).to_owned(),
    };
    let (mut sink, rx) = tokio::time::timeout(
        deps.settings.ai.connect_timeout,
        RealtimeClient::connect_owned(endpoint, RealtimeOptions::default()),
    )
    .await
    .map_err(|_| String::from("ai connect timed out"))?
    .map_err(|e| format!("ai connect failed: {e}"))?;
    sink.send(&ClientEvent::session_update(session_config(version, call)))
        .await
        .map_err(|e| format!("ai session.update failed: {e}"))?;
    for (speaker, text) in replay {
        let event = match speaker {
            Speaker::Agent => ClientEvent::assistant_text(text.clone()),
            Speaker::Caller => ClientEvent::user_text(text.clone()),
        };
        sink.send(&event)
            .await
            .map_err(|e| format!("ai replay failed: {e}"))?;
    }
    Ok(AiLink { sink, rx })
}
