//! Realtime simulator configuration: keys, timings, and the script of what the simulated
//! assistant hears and says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::judge::SimVerdict;
use super::state::JudgeFault;

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct RealtimeSimConfig {
    /// Where to listen (`127.0.0.1:0` by default: a free loopback port).
    pub bind: SocketAddr,
    /// Accepted `Authorization: Bearer` keys (an empty list refuses every connection).
    pub api_keys: Vec<String>,
    /// What the assistant says, per session.
    pub script: RealtimeScript,
    /// Spoken audio per character of reply text (default 50 ms).
    pub ms_per_char: u64,
    /// Audio per `response.output_audio.delta` (default 100 ms).
    pub delta_ms: u64,
    /// Pace of the deltas as a multiple of real time (default 5: 100 ms of audio every
    /// 20 ms). Zero or a non-finite value sends them as fast as possible.
    pub speed: f64,
    /// From `response.created` to the first delta (default 200 ms); see
    /// [`RealtimeSimHandle::set_response_latency`](super::RealtimeSimHandle::set_response_latency).
    pub first_audio_latency: Duration,
    /// One-way network latency of client events: each is handled this long after it arrived,
    /// in order (default zero). A client that asks for a response before the previous one's
    /// `response.created` has come back gets the real service's conflict error.
    pub client_event_delay: Duration,
    /// From `response.function_call_arguments.done` to the closing events and
    /// `response.done` of a tool-call response (default 20 ms), so a client that sends
    /// `response.create` before `response.done` gets the real service's conflict error.
    pub tool_done_delay: Duration,
    /// Stamp every 20 ms of output audio with a frame tag (`sim::audio::tag_frame`) whose
    /// id is at least [`OUTPUT_TAG_BASE`](super::OUTPUT_TAG_BASE); the send instant of each
    /// tag is kept for latency measurements.
    pub tag_audio: bool,
    /// Keep the JSON of every event sent and received in the snapshots (for conformance
    /// tests; memory grows with the call).
    pub record_events: bool,
    /// Session lifetime announced in `expires_at` (default 30 min; not enforced).
    pub session_ttl: Duration,
    /// Told about tagged audio received and sent, and about sessions ending (default none).
    pub tag_observer: Option<Arc<dyn TagObserver>>,
    /// The judge's verdicts by criterion key (`POST /v1/chat/completions`); criteria not
    /// listed are judged by the keyword rules of [`super::judge`].
    pub judge_verdicts: HashMap<String, SimVerdict>,
    /// A fault of every judge request (default none).
    pub judge_fault: Option<JudgeFault>,
}

/// Watches frame tags ([`crate::sim::audio::tag_frame`]) crossing the simulator, for a load
/// generator that measures relay latency and loss by matching tags across processes.
///
/// Sessions are named by their connection index ([`SessionSnapshot::index`](super::SessionSnapshot::index)).
/// It is called on the session's task, in the hot path: keep it cheap and never block.
pub trait TagObserver: Send + Sync + std::fmt::Debug {
    /// An `input_audio_buffer.append` arrived at `at`; `tags` are the tags found at the start
    /// of its 20 ms frames, in order (called only when there is at least one).
    fn input_tags_received(&self, session: usize, tags: &[u32], at: Instant);
    /// Output audio frames carrying `tags` were queued for sending at `at` (with
    /// `tag_audio`; the socket write follows at once).
    fn output_tags_sent(&self, session: usize, tags: &[u32], at: Instant);
    /// The session's connection ended (any way but a simulator shutdown).
    fn session_ended(&self, session: usize, at: Instant);
}

impl Default for RealtimeSimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: Vec::new(),
            script: RealtimeScript::default(),
            ms_per_char: 50,
            delta_ms: 100,
            speed: 5.0,
            first_audio_latency: Duration::from_millis(200),
            client_event_delay: Duration::ZERO,
            tool_done_delay: Duration::from_millis(20),
            tag_audio: false,
            record_events: false,
            session_ttl: Duration::from_secs(30 * 60),
            tag_observer: None,
            judge_verdicts: HashMap::new(),
            judge_fault: None,
        }
    }
}

impl RealtimeSimConfig {
    /// The default configuration accepting one key.
    pub fn with_api_key(key: impl Into<String>) -> Self {
        Self {
            api_keys: vec![key.into()],
            ..Self::default()
        }
    }

    /// Sets the script.
    pub fn with_script(mut self, script: RealtimeScript) -> Self {
        self.script = script;
        self
    }
}

/// What the simulated assistant replies to one user turn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptReply {
    /// Speaks this text.
    Say(String),
    /// Calls a function tool, then speaks `then` once the client sent the
    /// `function_call_output` and a `response.create`.
    CallTool {
        /// Function name.
        name: String,
        /// Arguments object (sent as its JSON string).
        #[serde(default = "empty_object")]
        arguments: serde_json::Value,
        /// Said after the tool result.
        then: String,
        /// The `call_id` to use (default: a fresh one). Scripts repeat one to model a
        /// model that re-emits the same invocation.
        #[serde(default)]
        call_id: Option<String>,
    },
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// One user turn of a script.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScriptTurn {
    /// The transcript of the caller's turn (sent as the input transcription).
    pub user: String,
    /// The assistant's answer.
    pub reply: ScriptReply,
}

impl ScriptTurn {
    /// A turn answered with speech.
    pub fn say(user: impl Into<String>, reply: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            reply: ScriptReply::Say(reply.into()),
        }
    }

    /// A turn answered with a tool call, then `then`.
    pub fn call_tool(
        user: impl Into<String>,
        name: impl Into<String>,
        arguments: serde_json::Value,
        then: impl Into<String>,
    ) -> Self {
        Self {
            user: user.into(),
            reply: ScriptReply::CallTool {
                name: name.into(),
                arguments,
                then: then.into(),
                call_id: None,
            },
        }
    }
}

impl ScriptTurn {
    /// The same turn, its tool call using `call_id` (no effect on a spoken reply).
    pub fn with_call_id(mut self, id: impl Into<String>) -> Self {
        if let ScriptReply::CallTool { call_id, .. } = &mut self.reply {
            *call_id = Some(id.into());
        }
        self
    }
}

/// The conversation every session follows: user turns in order, then defaults.
///
/// In every text, `{session}` becomes the session id and `{turn}` the 1-based number of the
/// user turn, so concurrent sessions say distinguishable things.
///
/// As JSON (`--script`): `{"turns":[{"user":"…","reply":{"say":"…"}},
/// {"user":"…","reply":{"call_tool":{"name":"…","arguments":{…},"then":"…"}}}],
/// "default_reply":"…","default_user":"…"}`, or just the array of turns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RealtimeScript {
    /// Turns, used in order.
    pub turns: Vec<ScriptTurn>,
    /// Said when the turns have run out, or for a `response.create` with nothing pending.
    pub default_reply: String,
    /// Transcript of user turns beyond the script.
    pub default_user: String,
    /// Other turns for sessions whose instructions contain a marker (for example a call's
    /// variables): the first variant whose marker the session's instructions contain, when
    /// they are set, replaces [`RealtimeScript::turns`] for that session.
    pub variants: Vec<ScriptVariant>,
}

/// Turns for the sessions whose instructions contain `marker`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScriptVariant {
    /// Looked for in the session's `instructions`.
    pub marker: String,
    /// The turns those sessions use.
    pub turns: Vec<ScriptTurn>,
}

impl Default for RealtimeScript {
    fn default() -> Self {
        Self {
            turns: Vec::new(),
            default_reply: String::from("How can I help you?"),
            default_user: String::from("(caller speech)"),
            variants: Vec::new(),
        }
    }
}

impl RealtimeScript {
    /// A script of `turns` with the default replies.
    pub fn new(turns: Vec<ScriptTurn>) -> Self {
        Self {
            turns,
            ..Self::default()
        }
    }

    /// The same script, with `turns` for sessions whose instructions contain `marker`.
    pub fn with_variant(mut self, marker: impl Into<String>, turns: Vec<ScriptTurn>) -> Self {
        self.variants.push(ScriptVariant {
            marker: marker.into(),
            turns,
        });
        self
    }

    /// Parses the JSON form (an object, or an array of turns).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Turns(Vec<ScriptTurn>),
            Full(RealtimeScript),
        }
        Ok(match serde_json::from_str(text)? {
            Form::Turns(turns) => Self::new(turns),
            Form::Full(script) => script,
        })
    }
}

/// When [`RealtimeSimHandle::drop_next_session_after`](super::RealtimeSimHandle::drop_next_session_after)
/// cuts the next session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropAfter {
    /// After this many server events have been sent.
    Events(u64),
    /// This long after the connection was accepted.
    Duration(Duration),
}

impl From<u64> for DropAfter {
    fn from(n: u64) -> Self {
        DropAfter::Events(n)
    }
}

impl From<Duration> for DropAfter {
    fn from(d: Duration) -> Self {
        DropAfter::Duration(d)
    }
}
