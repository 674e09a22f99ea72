//! Simulators of the outside services (DESIGN.md §6): faithful stand-ins that speak the real
//! wire protocols over real sockets, so the server, the test suite and a load generator can
//! run without a Twilio or OpenAI account.
//!
//! - [`carrier`]: a Twilio stand-in — the REST API (`Calls.json` create/update,
//!   `Messages.json`), signed voice webhooks and status callbacks, TwiML execution, and the
//!   media-stream websocket client with 20 ms μ-law frames, marks and `clear`.
//! - [`audio`]: the G.711 μ-law helpers and synthetic caller audio the simulators share.
//! - [`cli`]: the `stateset-voice sim …` commands.

pub mod audio;
pub mod carrier;
pub mod cli;
pub mod realtime;
