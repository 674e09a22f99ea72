//! The per-frame work of the media path, pure and allocation-light: what the pumps
//! (`call/pumps.rs`) do with each caller frame and each model audio delta, public so the
//! benchmark (`benches/frames.rs`) measures the code the pumps run.
//!
//! - Caller → model: [`sniff_caller`] reads a Twilio frame in one borrowed pass (the audio
//!   payload and a mark's name are borrowed, never copied), [`valid_audio`] checks the
//!   base64 without decoding it; `realtime::append_json` then writes the model's
//!   `input_audio_buffer.append` (one allocation: the message itself).
//! - Model → caller: [`sniff_ai`] reads a model event in one borrowed pass and borrows an
//!   audio delta's ids and base64; [`media_text`] and [`mark_text`] write the Twilio
//!   messages (one allocation each: the message itself).
//!
//! A borrowed model delta is copied into the Twilio message verbatim: a JSON string that
//! could be borrowed had no escape in the input, so it holds no `"`, `\` or control
//! character and needs none.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Deserialize;

use super::playback::mark_name;
use crate::realtime::client_event::{json_verbatim, push_json_str};

/// Largest caller frame accepted, decoded (Twilio sends 160-byte frames).
pub const MAX_FRAME_BYTES: usize = 8 * 1024;

/// Value of each base64 character of the standard alphabet, `INVALID` for the rest.
const INVALID: u8 = 0xff;
const BASE64_VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Whether `payload` is canonical padded standard base64 of 1 to [`MAX_FRAME_BYTES`] bytes
/// (what `base64`'s `STANDARD` engine accepts), checked in one pass over the string:
/// nothing decoded, nothing allocated or zeroed.
pub fn valid_audio(payload: &str) -> bool {
    let bytes = payload.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return false;
    }
    let pad = bytes.iter().rev().take_while(|b| **b == b'=').count();
    if pad > 2 || bytes.len() / 4 * 3 - pad > MAX_FRAME_BYTES {
        return false;
    }
    let data = &bytes[..bytes.len() - pad];
    if !data
        .iter()
        .all(|b| BASE64_VALUES[usize::from(*b)] != INVALID)
    {
        return false;
    }
    // Canonical: the bits a padded quantum leaves over must be zero.
    let last = data.last().map_or(0, |b| BASE64_VALUES[usize::from(*b)]);
    match pad {
        1 => last & 0b11 == 0,
        2 => last & 0b1111 == 0,
        _ => true,
    }
}

/// Decoded length of a base64 string (its audio duration is this / 8 ms).
pub fn decoded_len(b64: &str) -> usize {
    let pad = b64.bytes().rev().take_while(|b| *b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(pad)
}

/// A JSON string borrowed when it has no escape (then it is written back verbatim).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Text<'_> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Writes it as a JSON string: verbatim when borrowed (see the module docs).
    fn write_json(&self, out: &mut String) {
        match &self.0 {
            Cow::Borrowed(s) => {
                out.reserve(s.len() + 2);
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Cow::Owned(s) => push_json_str(out, s),
        }
    }
}

/// A caller frame, as the Twilio reader needs it.
#[derive(Debug)]
pub enum CallerFrame<'a> {
    /// `media`: the base64 payload, not yet validated.
    Media(Text<'a>),
    /// `mark`: the echo of a mark's name.
    Mark(Text<'a>),
    /// Anything else (`dtmf`, `stop`, …): parse it with `TwilioInbound::parse`.
    Other,
}

#[derive(Deserialize)]
struct CallerSniff<'a> {
    #[serde(borrow)]
    event: Text<'a>,
    #[serde(rename = "streamSid", borrow, default)]
    stream_sid: Option<Text<'a>>,
    #[serde(borrow, default)]
    media: Option<PayloadField<'a>>,
    #[serde(borrow, default)]
    mark: Option<NameField<'a>>,
}

#[derive(Deserialize)]
struct PayloadField<'a> {
    #[serde(borrow)]
    payload: Text<'a>,
}

#[derive(Deserialize)]
struct NameField<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

/// Reads a caller frame in one pass, borrowing the payload or mark name. `media` and `mark`
/// need their `streamSid` and body, as `TwilioInbound` does; an error is a frame that is
/// not a JSON object with an `event`.
pub fn sniff_caller(text: &str) -> Result<CallerFrame<'_>, serde_json::Error> {
    let sniff: CallerSniff<'_> = serde_json::from_str(text)?;
    Ok(
        match (
            sniff.event.as_str(),
            sniff.stream_sid,
            sniff.media,
            sniff.mark,
        ) {
            ("media", Some(_), Some(media), _) => CallerFrame::Media(media.payload),
            ("mark", Some(_), _, Some(mark)) => CallerFrame::Mark(mark.name),
            _ => CallerFrame::Other,
        },
    )
}

/// A model event as the AI reader needs it.
#[derive(Debug)]
pub enum AiFrame<'a> {
    /// `response.output_audio.delta`, borrowed.
    Audio(AudioDeltaRef<'a>),
    /// Any other event, of this `type`: parse it with `ServerEvent::parse_kind`.
    Other(Text<'a>),
}

/// A `response.output_audio.delta` borrowed from its frame.
#[derive(Debug, Deserialize)]
pub struct AudioDeltaRef<'a> {
    /// The response (drop deltas of an interrupted one).
    #[serde(borrow)]
    pub response_id: Text<'a>,
    /// The assistant item (truncate target).
    #[serde(borrow)]
    pub item_id: Text<'a>,
    /// Base64 audio.
    #[serde(borrow)]
    pub delta: Text<'a>,
}

#[derive(Deserialize)]
struct AiSniff<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    response_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    item_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    delta: Option<Text<'a>>,
}

/// The `type` of an audio delta.
const AUDIO_DELTA: &str = "response.output_audio.delta";

/// Reads a model event in one pass: an audio delta is borrowed whole (the hot path); any
/// other event is returned with its `type`, to be parsed by type. An error is a frame that
/// is not a JSON object with a `type`, or an audio delta without its ids or `delta` (as
/// `ServerEvent::parse` reports).
pub fn sniff_ai(text: &str) -> Result<AiFrame<'_>, serde_json::Error> {
    let sniff: AiSniff<'_> = serde_json::from_str(text)?;
    if sniff.kind.as_str() != AUDIO_DELTA {
        return Ok(AiFrame::Other(sniff.kind));
    }
    match (sniff.response_id, sniff.item_id, sniff.delta) {
        (Some(response_id), Some(item_id), Some(delta)) => Ok(AiFrame::Audio(AudioDeltaRef {
            response_id,
            item_id,
            delta,
        })),
        _ => {
            // The typed parse names the missing field.
            serde_json::from_str::<AudioDeltaRef<'_>>(text).map(AiFrame::Audio)
        }
    }
}

/// The Twilio `media` message of `payload` (one allocation: the message itself).
pub fn media_text(stream_sid: &str, payload: &Text<'_>) -> String {
    let mut out = String::with_capacity(payload.as_str().len() + stream_sid.len() + 64);
    out.push_str(r#"{"event":"media","streamSid":"#);
    push_json_str(&mut out, stream_sid);
    out.push_str(r#","media":{"payload":"#);
    payload.write_json(&mut out);
    out.push_str("}}");
    out
}

/// The Twilio `mark` message after audio of `item` (one allocation: the message itself).
pub fn mark_text(stream_sid: &str, epoch: u64, cumulative_ms: u64, item: &str) -> String {
    let mut out = String::with_capacity(stream_sid.len() + item.len() + 80);
    out.push_str(r#"{"event":"mark","streamSid":"#);
    push_json_str(&mut out, stream_sid);
    out.push_str(r#","mark":{"name":"#);
    let name = mark_name(epoch, cumulative_ms, item);
    if json_verbatim(item) {
        let _ = write!(out, "\"{name}\"");
    } else {
        push_json_str(&mut out, &name.to_string());
    }
    out.push_str("}}");
    out
}

/// The Twilio `clear` message.
pub fn clear_text(stream_sid: &str) -> String {
    let mut out = String::with_capacity(stream_sid.len() + 40);
    out.push_str(r#"{"event":"clear","streamSid":"#);
    push_json_str(&mut out, stream_sid);
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
