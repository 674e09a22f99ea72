//! The OpenAI Realtime API (GA) over WebSocket (PROTOCOLS §4): the wire model and the
//! client connection. This module owns the JSON shapes in both directions and the socket;
//! it knows nothing about calls, Twilio or actors (the call actor drives it).
//!
//! - [`session`]: the GA `session.update` object ([`SessionConfig`]) and response overrides.
//! - [`client_event`]: [`ClientEvent`] (what we send) with builders; [`append_json`] for
//!   the audio hot path.
//! - [`server_event`]: [`ServerEvent`] (what we receive), parsed leniently.
//! - [`connection`]: [`RealtimeClient::connect`] → ([`RealtimeSender`], [`RealtimeReceiver`]);
//!   [`RealtimeClient::connect_owned`] → ([`RealtimeSink`], [`RealtimeReceiver`]) for an owner
//!   that writes and reads on one task (a call's media task).
//!
//! Only the GA interface is implemented: no `OpenAI-Beta` header, `session.type:"realtime"`,
//! `audio.input`/`audio.output`, `response.output_audio.*` events. A beta-shaped session is
//! refused by the server with `beta_api_shape_disabled` and close code 4000.
//!
//! Driving a call (PROTOCOLS §4.6, §4.7, §5):
//!
//! ```no_run
//! # async fn demo() -> Result<(), actors::realtime::RealtimeError> {
//! use actors::realtime::*;
//!
//! let endpoint = RealtimeEndpoint {
//!     url: "wss://api.openai.com/v1/realtime".into(),
//!     api_key: "sk-…".into(),
//!     model: "gpt-realtime".into(),
//! };
//! let (tx, mut rx) = RealtimeClient::connect(endpoint).await?;
//! let session = SessionConfig::telephony("gpt-realtime", "You are …", "marin");
//! tx.send(&ClientEvent::session_update(session)).await?;
//! // Greeting: a response whose instructions fix the words.
//! tx.send(&ClientEvent::response_with_instructions("Say exactly: Hello!")).await?;
//! while let Some(event) = rx.recv().await {
//!     match event? {
//!         ServerEvent::AudioDelta(d) => { /* forward d.delta to Twilio */ }
//!         ServerEvent::FunctionCallArgumentsDone(call) => {
//!             // after this response's response.done:
//!             tx.send(&ClientEvent::function_output(call.call_id, "{\"ok\":true}")).await?;
//!             tx.send(&ClientEvent::response_create()).await?;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod client_event;
pub mod connection;
pub mod server_event;
pub mod session;

#[cfg(test)]
mod connection_tests;
#[cfg(test)]
mod tests;

pub use client_event::{ClientEvent, ContentPart, ConversationItem, Role, append_json};
pub use connection::{
    CloseInfo, RealtimeClient, RealtimeEndpoint, RealtimeError, RealtimeOptions, RealtimeReceiver,
    RealtimeSender, RealtimeSink, TrySendError,
};
pub use server_event::{
    ApiError, FunctionCallArgumentsDone, Item, Response, ResponseStatus, ServerEvent,
};
pub use session::{
    AudioConfig, AudioFormat, AudioInput, AudioOutput, DEFAULT_MODEL, Eagerness, MaxOutputTokens,
    Modality, NoiseReduction, NoiseReductionType, ResponseParams, SemanticVad, ServerVad,
    SessionConfig, SessionType, Tool, ToolChoice, Transcription, TurnDetection,
};
