//! The GA session configuration a client sends in `session.update` (PROTOCOLS §4.3):
//! [`SessionConfig`] and its parts, serialised to the exact GA shape.
//!
//! Every field is optional and skipped when `None`, because `session.update` changes only
//! the fields present. `session.type` is always `"realtime"` (a GA session without it is
//! refused as beta-shaped). Nothing here knows beta names (`modalities`,
//! `input_audio_format`, top-level `voice` or `turn_detection`, …).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

/// The realtime model used when none is configured.
pub const DEFAULT_MODEL: &str = "gpt-realtime";

/// `session.type`: always `"realtime"` for a speech-to-speech session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionType {
    /// `"realtime"`.
    #[default]
    #[serde(rename = "realtime")]
    Realtime,
}

/// What the model answers with (`output_modalities`; one of them, not both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Audio plus its transcript.
    Audio,
    /// Text only.
    Text,
}

/// An audio format (`RealtimeAudioFormats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AudioFormat {
    /// G.711 μ-law at 8 kHz: what Twilio Media Streams carry.
    #[serde(rename = "audio/pcmu")]
    Pcmu,
    /// G.711 A-law at 8 kHz.
    #[serde(rename = "audio/pcma")]
    Pcma,
    /// 16-bit little-endian PCM; `rate` is always 24000.
    #[serde(rename = "audio/pcm")]
    Pcm {
        /// Sample rate (24000).
        rate: u32,
    },
}

/// `audio.input.transcription`: transcribe the caller (asynchronously, for logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcription {
    /// `whisper-1`, `gpt-4o-mini-transcribe`, `gpt-4o-transcribe`, ….
    pub model: String,
    /// ISO-639-1 language hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Free-text hint for the transcriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// `audio.input.noise_reduction.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseReductionType {
    /// Headsets and handsets (telephony).
    NearField,
    /// Speakerphones and room microphones.
    FarField,
}

/// `audio.input.noise_reduction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseReduction {
    /// The filter.
    #[serde(rename = "type")]
    pub kind: NoiseReductionType,
}

/// Energy-based server VAD settings; `None` fields keep the server's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerVad {
    /// Activation threshold, 0–1 (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Audio kept before detected speech, ms (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_padding_ms: Option<u32>,
    /// Silence that ends a turn, ms (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_duration_ms: Option<u32>,
    /// Respond automatically at the end of a turn (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_response: Option<bool>,
    /// Cancel the active response when the caller starts talking (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_response: Option<bool>,
    /// Prompt the caller after this much silence, 5000–30000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u32>,
}

/// Semantic VAD eagerness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eagerness {
    /// Waits longest (up to 8 s).
    Low,
    /// Up to 4 s.
    Medium,
    /// Up to 2 s.
    High,
    /// Same as medium.
    Auto,
}

/// Model-based turn detection settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemanticVad {
    /// How soon the model decides a turn ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eagerness: Option<Eagerness>,
    /// Respond automatically at the end of a turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_response: Option<bool>,
    /// Cancel the active response when the caller starts talking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_response: Option<bool>,
}

/// `audio.input.turn_detection` (`RealtimeTurnDetection`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnDetection {
    /// Energy-based VAD.
    ServerVad(ServerVad),
    /// Model-based VAD.
    SemanticVad(SemanticVad),
}

impl TurnDetection {
    /// Server VAD with every documented default spelled out (PROTOCOLS §4.3).
    pub fn server_vad_defaults() -> Self {
        TurnDetection::ServerVad(ServerVad {
            threshold: Some(0.5),
            prefix_padding_ms: Some(300),
            silence_duration_ms: Some(500),
            create_response: Some(true),
            interrupt_response: Some(true),
            idle_timeout_ms: None,
        })
    }
}

/// `audio.input`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioInput {
    /// Format of the appended audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Caller transcription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Transcription>,
    /// Noise filter applied before VAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_reduction: Option<NoiseReduction>,
    /// `None`: unchanged; `Some(None)`: `null` (manual commits); `Some(Some(_))`: set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_detection: Option<Option<TurnDetection>>,
}

/// `audio.output`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioOutput {
    /// Format of the audio deltas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// `alloy`, `ash`, `ballad`, `coral`, `echo`, `sage`, `shimmer`, `verse`, `marin`, `cedar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Playback speed, 0.25–1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

/// `audio`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioConfig {
    /// Caller side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<AudioInput>,
    /// Model side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<AudioOutput>,
}

/// A tool the model may call. Only function tools are modelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    /// `{"type":"function","name","description","parameters"}`.
    Function {
        /// Function name.
        name: String,
        /// When the model should call it.
        description: String,
        /// JSON Schema of the arguments object.
        parameters: serde_json::Value,
    },
}

impl Tool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: serde_json::Value,
    ) -> Self {
        Tool::Function {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// `"auto"` (default).
    Auto,
    /// `"none"`.
    None,
    /// `"required"`.
    Required,
    /// `{"type":"function","name":…}`: force this function.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Forced<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            name: &'a str,
        }
        match self {
            ToolChoice::Auto => serializer.serialize_str("auto"),
            ToolChoice::None => serializer.serialize_str("none"),
            ToolChoice::Required => serializer.serialize_str("required"),
            ToolChoice::Function(name) => Forced {
                kind: "function",
                name,
            }
            .serialize(serializer),
        }
    }
}

/// `max_output_tokens`: a cap or `"inf"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxOutputTokens {
    /// 1–4096.
    Limit(u32),
    /// `"inf"`.
    Inf,
}

impl Serialize for MaxOutputTokens {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxOutputTokens::Limit(n) => serializer.serialize_u32(*n),
            MaxOutputTokens::Inf => serializer.serialize_str("inf"),
        }
    }
}

/// The `session` object of a GA `session.update` (`RealtimeSessionCreateRequestGA`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionConfig {
    /// Always `"realtime"`.
    #[serde(rename = "type")]
    pub kind: SessionType,
    /// Model name (cannot change after the session started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System prompt (`""` clears it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `["audio"]` or `["text"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// Formats, voice, transcription, VAD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioConfig>,
    /// Tools (`[]` clears them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model picks tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Token cap per response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
}

impl SessionConfig {
    /// The recommended phone session (PROTOCOLS §4.3): `audio/pcmu` both ways, server VAD
    /// with its defaults, near-field noise reduction, audio output.
    pub fn telephony(
        model: impl Into<String>,
        instructions: impl Into<String>,
        voice: impl Into<String>,
    ) -> Self {
        Self {
            kind: SessionType::Realtime,
            model: Some(model.into()),
            instructions: Some(instructions.into()),
            output_modalities: Some(vec![Modality::Audio]),
            audio: Some(AudioConfig {
                input: Some(AudioInput {
                    format: Some(AudioFormat::Pcmu),
                    transcription: None,
                    noise_reduction: Some(NoiseReduction {
                        kind: NoiseReductionType::NearField,
                    }),
                    turn_detection: Some(Some(TurnDetection::server_vad_defaults())),
                }),
                output: Some(AudioOutput {
                    format: Some(AudioFormat::Pcmu),
                    voice: Some(voice.into()),
                    speed: None,
                }),
            }),
            tools: None,
            tool_choice: None,
            max_output_tokens: None,
        }
    }

    /// Adds caller transcription.
    pub fn with_transcription(mut self, model: impl Into<String>, language: Option<&str>) -> Self {
        self.input_mut().transcription = Some(Transcription {
            model: model.into(),
            language: language.map(str::to_owned),
            prompt: None,
        });
        self
    }

    /// Sets (`Some`) or switches off (`None`) turn detection.
    pub fn with_turn_detection(mut self, turn_detection: Option<TurnDetection>) -> Self {
        self.input_mut().turn_detection = Some(turn_detection);
        self
    }

    /// Sets the tools and `tool_choice: "auto"`.
    pub fn with_tools(mut self, tools: Vec<Tool>) -> Self {
        self.tools = Some(tools);
        self.tool_choice = Some(ToolChoice::Auto);
        self
    }

    fn input_mut(&mut self) -> &mut AudioInput {
        self.audio
            .get_or_insert_with(AudioConfig::default)
            .input
            .get_or_insert_with(AudioInput::default)
    }
}

/// Per-response overrides of `response.create` (`RealtimeResponseCreateParams`); all
/// optional. `conversation` is not modelled: the published schema cannot validate
/// `"auto"`/`"none"` (both branches of its `oneOf` match).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseParams {
    /// Instructions for this response only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `["audio"]` or `["text"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// Tools for this response only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Tool choice for this response only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Token cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// String map echoed in the response (tag responses with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}
