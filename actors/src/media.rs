//! The Twilio Media Streams wire format (bidirectional `<Connect><Stream>`, PROTOCOLS §1.4
//! and §1.5): typed messages in both directions, parsed and encoded with serde.
//!
//! Numeric counters arrive as JSON strings; accessors parse them. Unknown events parse as
//! [`TwilioInbound::Unknown`] so a newer Twilio never breaks a call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Audio format of a stream (`audio/x-mulaw`, 8000 Hz, mono).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// `8000`.
    #[serde(rename = "sampleRate")]
    pub sample_rate: u32,
    /// `1`.
    pub channels: u32,
}

impl Default for MediaFormat {
    fn default() -> Self {
        Self {
            encoding: String::from("audio/x-mulaw"),
            sample_rate: 8000,
            channels: 1,
        }
    }
}

/// `start` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartMeta {
    /// `MZ…`.
    #[serde(rename = "streamSid")]
    pub stream_sid: String,
    /// `AC…`.
    #[serde(rename = "accountSid")]
    pub account_sid: String,
    /// `CA…`.
    #[serde(rename = "callSid")]
    pub call_sid: String,
    /// `["inbound"]` for bidirectional streams.
    #[serde(default)]
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the TwiML.
    #[serde(rename = "customParameters", default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// Audio format.
    #[serde(rename = "mediaFormat", default)]
    pub media_format: MediaFormat,
}

/// Caller audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMedia {
    /// `inbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// Chunk counter (string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// Milliseconds since stream start (string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Base64 μ-law.
    pub payload: String,
}

impl InboundMedia {
    /// The presentation timestamp in milliseconds, when present and numeric.
    pub fn timestamp_ms(&self) -> Option<u64> {
        self.timestamp.as_deref().and_then(|t| t.parse().ok())
    }
}

/// A key press.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    /// `inbound_track`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// The key.
    pub digit: String,
}

/// A mark name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkName {
    /// The name sent with the mark.
    pub name: String,
}

/// `stop` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopMeta {
    /// `AC…`.
    #[serde(rename = "accountSid", default)]
    pub account_sid: String,
    /// `CA…`.
    #[serde(rename = "callSid", default)]
    pub call_sid: String,
}

/// A message Twilio sends to the media websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioInbound {
    /// First frame after the upgrade.
    Connected {
        /// `Call`.
        #[serde(default)]
        protocol: String,
        /// `1.0.0`.
        #[serde(default)]
        version: String,
    },
    /// Stream metadata, once.
    Start {
        /// Message counter.
        #[serde(rename = "sequenceNumber", default)]
        sequence_number: String,
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// Metadata.
        start: StartMeta,
    },
    /// Caller audio.
    Media {
        /// Message counter.
        #[serde(rename = "sequenceNumber", default)]
        sequence_number: String,
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// Audio.
        media: InboundMedia,
    },
    /// A key press.
    Dtmf {
        /// Message counter.
        #[serde(rename = "sequenceNumber", default)]
        sequence_number: String,
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The key.
        dtmf: Dtmf,
    },
    /// Echo of a mark we sent: the audio before it has played (or was cleared).
    Mark {
        /// Message counter.
        #[serde(rename = "sequenceNumber", default)]
        sequence_number: String,
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The mark.
        mark: MarkName,
    },
    /// The stream ended; Twilio closes the socket next.
    Stop {
        /// Message counter.
        #[serde(rename = "sequenceNumber", default)]
        sequence_number: String,
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// Metadata.
        #[serde(default = "empty_stop")]
        stop: StopMeta,
    },
    /// An event this implementation does not know (ignored and counted).
    #[serde(other)]
    Unknown,
}

fn empty_stop() -> StopMeta {
    StopMeta {
        account_sid: String::new(),
        call_sid: String::new(),
    }
}

impl TwilioInbound {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Encodes one text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Event name, for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            TwilioInbound::Connected { .. } => "connected",
            TwilioInbound::Start { .. } => "start",
            TwilioInbound::Media { .. } => "media",
            TwilioInbound::Dtmf { .. } => "dtmf",
            TwilioInbound::Mark { .. } => "mark",
            TwilioInbound::Stop { .. } => "stop",
            TwilioInbound::Unknown => "unknown",
        }
    }
}

/// Audio to play.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMedia {
    /// Base64 μ-law, passed through untouched.
    pub payload: String,
}

/// A message we send to Twilio on the media websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioOutbound {
    /// Audio to play (queued by Twilio).
    Media {
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// Audio.
        media: OutboundMedia,
    },
    /// Ask for an echo once the audio queued before it has played.
    Mark {
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// The mark.
        mark: MarkName,
    },
    /// Drop queued audio now (barge-in); pending marks are echoed.
    Clear {
        /// `MZ…`.
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

impl TwilioOutbound {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Encodes one text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Duration in milliseconds of `bytes` of 8 kHz μ-law.
pub fn mulaw_ms(bytes: usize) -> u64 {
    (bytes / 8) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_inbound_event() {
        let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ01","start":{"accountSid":"AC01","streamSid":"MZ01","callSid":"CA01","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"token":"t1"}}}"#;
        let TwilioInbound::Start {
            start, stream_sid, ..
        } = TwilioInbound::parse(start).expect("start")
        else {
            panic!("start")
        };
        assert_eq!(stream_sid, "MZ01");
        assert_eq!(start.call_sid, "CA01");
        assert_eq!(start.custom_parameters["token"], "t1");
        let media = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ01","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//8="}}"#;
        let TwilioInbound::Media { media, .. } = TwilioInbound::parse(media).expect("media") else {
            panic!("media")
        };
        assert_eq!(media.timestamp_ms(), Some(40));
        assert_eq!(media.payload, "//8=");
        let connected =
            TwilioInbound::parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
                .expect("connected");
        assert_eq!(connected.name(), "connected");
        let dtmf = TwilioInbound::parse(r##"{"event":"dtmf","streamSid":"MZ01","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"#"}}"##).expect("dtmf");
        assert!(
            matches!(dtmf, TwilioInbound::Dtmf { dtmf: Dtmf { ref digit, .. }, .. } if digit == "#")
        );
        let mark = TwilioInbound::parse(
            r#"{"event":"mark","streamSid":"MZ01","sequenceNumber":"6","mark":{"name":"m1"}}"#,
        )
        .expect("mark");
        assert_eq!(mark.name(), "mark");
        let stop = TwilioInbound::parse(r#"{"event":"stop","streamSid":"MZ01","sequenceNumber":"7","stop":{"accountSid":"AC01","callSid":"CA01"}}"#).expect("stop");
        assert_eq!(stop.name(), "stop");
        let unknown = TwilioInbound::parse(r#"{"event":"hologram","streamSid":"MZ01","x":1}"#)
            .expect("unknown");
        assert_eq!(unknown, TwilioInbound::Unknown);
        assert!(TwilioInbound::parse("not json").is_err());
        assert!(TwilioInbound::parse(r#"{"event":"media","streamSid":"MZ01"}"#).is_err());
    }

    #[test]
    fn encodes_outbound_messages_in_twilio_shape() {
        let media = TwilioOutbound::Media {
            stream_sid: "MZ01".into(),
            media: OutboundMedia {
                payload: "AAEC".into(),
            },
        };
        assert_eq!(
            media.encode(),
            r#"{"event":"media","streamSid":"MZ01","media":{"payload":"AAEC"}}"#
        );
        let mark = TwilioOutbound::Mark {
            stream_sid: "MZ01".into(),
            mark: MarkName { name: "a1".into() },
        };
        assert_eq!(
            mark.encode(),
            r#"{"event":"mark","streamSid":"MZ01","mark":{"name":"a1"}}"#
        );
        let clear = TwilioOutbound::Clear {
            stream_sid: "MZ01".into(),
        };
        assert_eq!(clear.encode(), r#"{"event":"clear","streamSid":"MZ01"}"#);
        assert_eq!(
            TwilioOutbound::parse(&clear.encode()).expect("parse"),
            clear
        );
        assert_eq!(mulaw_ms(160), 20);
    }
}
