//! The effective session object: GA defaults, validation of a `session.update` (including
//! the refusal of beta-shaped sessions), merging it in, and the settings the simulator acts
//! on (VAD, transcription, output modality, voice).
//!
//! Fields the published schema does not allow to be `null` in a session object
//! (`transcription`, `noise_reduction`, `include`) are omitted instead of echoed as `null`.

use serde_json::{Map, Value, json};

/// The server's default instructions.
pub(crate) const DEFAULT_INSTRUCTIONS: &str =
    "You are a helpful, witty, and friendly AI. Keep your answers short.";

/// Session fields of the retired beta interface (PROTOCOLS §4.9); any of them at the top of
/// `session` (or a missing `session.type`) is a beta-shaped update.
const BETA_FIELDS: [&str; 9] = [
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "voice",
    "turn_detection",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "max_response_output_tokens",
    "temperature",
];

/// Why a `session.update` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpdateError {
    /// Beta shape: error `beta_api_shape_disabled` and close 4000.
    Beta,
    /// A bad value: error `invalid_value` (or `invalid_type`) naming `param`.
    Invalid {
        code: &'static str,
        param: String,
        message: String,
    },
}

fn invalid(param: &str, message: impl Into<String>) -> UpdateError {
    UpdateError::Invalid {
        code: "invalid_value",
        param: param.to_owned(),
        message: message.into(),
    }
}

/// The session object of `session.created`.
pub(crate) fn default_session(id: &str, model: &str, expires_at: u64) -> Value {
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": null,
        "prompt": null,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": server_vad_defaults(),
            },
            "output": {
                "format": {"type": "audio/pcmu"},
                "voice": "alloy",
                "speed": 1.0,
            }
        }
    })
}

fn server_vad_defaults() -> Value {
    json!({
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": null,
        "create_response": true,
        "interrupt_response": true,
    })
}

fn semantic_vad_defaults() -> Value {
    json!({
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": true,
        "interrupt_response": true,
    })
}

/// Checks the `session` of a `session.update` against the current model.
pub(crate) fn check_update(session: &Value, model: &str) -> Result<(), UpdateError> {
    let Some(obj) = session.as_object() else {
        return Err(UpdateError::Invalid {
            code: "invalid_type",
            param: "session".into(),
            message: "Invalid type for 'session': expected an object.".into(),
        });
    };
    if !obj.contains_key("type") || BETA_FIELDS.iter().any(|f| obj.contains_key(*f)) {
        return Err(UpdateError::Beta);
    }
    if obj.get("type").and_then(Value::as_str) != Some("realtime") {
        return Err(invalid(
            "session.type",
            "Invalid value for 'session.type': only 'realtime' sessions are supported here.",
        ));
    }
    if let Some(m) = obj.get("model")
        && m.as_str() != Some(model)
    {
        return Err(invalid(
            "session.model",
            "Cannot update a session's model after it was created.",
        ));
    }
    if let Some(modalities) = obj.get("output_modalities") {
        let ok = modalities
            .as_array()
            .is_some_and(|a| a.len() == 1 && matches!(a[0].as_str(), Some("audio") | Some("text")));
        if !ok {
            return Err(invalid(
                "session.output_modalities",
                "Invalid 'session.output_modalities': use [\"audio\"] or [\"text\"].",
            ));
        }
    }
    if let Some(instructions) = obj.get("instructions")
        && !instructions.is_string()
    {
        return Err(invalid(
            "session.instructions",
            "Invalid 'session.instructions': expected a string.",
        ));
    }
    if let Some(audio) = obj.get("audio") {
        check_audio(audio)?;
    }
    if let Some(tools) = obj.get("tools") {
        check_tools(tools)?;
    }
    if let Some(choice) = obj.get("tool_choice") {
        let ok = match choice {
            Value::String(s) => matches!(s.as_str(), "auto" | "none" | "required"),
            Value::Object(o) => {
                o.get("type").and_then(Value::as_str) == Some("function")
                    && o.get("name").is_some_and(Value::is_string)
            }
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "session.tool_choice",
                "Invalid 'session.tool_choice'.",
            ));
        }
    }
    Ok(())
}

fn check_audio(audio: &Value) -> Result<(), UpdateError> {
    let Some(audio) = audio.as_object() else {
        return Err(invalid("session.audio", "Invalid 'session.audio'."));
    };
    for side in ["input", "output"] {
        let Some(part) = audio.get(side) else {
            continue;
        };
        let Some(part) = part.as_object() else {
            return Err(invalid(
                &format!("session.audio.{side}"),
                "Expected an object.",
            ));
        };
        if let Some(format) = part.get("format") {
            check_format(format, &format!("session.audio.{side}.format"))?;
        }
    }
    let Some(input) = audio.get("input").and_then(Value::as_object) else {
        return Ok(());
    };
    if let Some(td) = input.get("turn_detection") {
        check_turn_detection(td)?;
    }
    if let Some(tr) = input.get("transcription")
        && !tr.is_null()
        && !tr.get("model").is_some_and(Value::is_string)
    {
        return Err(invalid(
            "session.audio.input.transcription.model",
            "Missing required parameter: 'session.audio.input.transcription.model'.",
        ));
    }
    if let Some(nr) = input.get("noise_reduction")
        && !nr.is_null()
        && !matches!(
            nr.get("type").and_then(Value::as_str),
            Some("near_field") | Some("far_field")
        )
    {
        return Err(invalid(
            "session.audio.input.noise_reduction.type",
            "Invalid 'session.audio.input.noise_reduction.type'.",
        ));
    }
    Ok(())
}

fn check_format(format: &Value, param: &str) -> Result<(), UpdateError> {
    let kind = format.get("type").and_then(Value::as_str);
    let rate = format.get("rate");
    let ok = match kind {
        Some("audio/pcmu") | Some("audio/pcma") => true,
        Some("audio/pcm") => rate.is_none_or(|r| r.as_u64() == Some(24000)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            &format!("{param}.type"),
            format!(
                "Invalid value for '{param}'. Supported formats are audio/pcm (24000 Hz), audio/pcmu and audio/pcma."
            ),
        ))
    }
}

fn check_turn_detection(td: &Value) -> Result<(), UpdateError> {
    const PARAM: &str = "session.audio.input.turn_detection";
    if td.is_null() {
        return Ok(());
    }
    match td.get("type").and_then(Value::as_str) {
        Some("server_vad") => {
            if let Some(t) = td.get("threshold")
                && !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
            {
                return Err(invalid(
                    &format!("{PARAM}.threshold"),
                    "Threshold must be between 0 and 1.",
                ));
            }
            for field in ["prefix_padding_ms", "silence_duration_ms"] {
                if let Some(v) = td.get(field)
                    && v.as_u64().is_none()
                {
                    return Err(invalid(
                        &format!("{PARAM}.{field}"),
                        "Expected a non-negative integer.",
                    ));
                }
            }
            if let Some(v) = td.get("idle_timeout_ms")
                && !v.is_null()
                && !v.as_u64().is_some_and(|ms| (5000..=30000).contains(&ms))
            {
                return Err(invalid(
                    &format!("{PARAM}.idle_timeout_ms"),
                    "idle_timeout_ms must be between 5000 and 30000.",
                ));
            }
            Ok(())
        }
        Some("semantic_vad") => {
            if let Some(e) = td.get("eagerness")
                && !matches!(
                    e.as_str(),
                    Some("low") | Some("medium") | Some("high") | Some("auto")
                )
            {
                return Err(invalid(&format!("{PARAM}.eagerness"), "Invalid eagerness."));
            }
            Ok(())
        }
        _ => Err(invalid(
            &format!("{PARAM}.type"),
            "Invalid value: turn detection type must be 'server_vad' or 'semantic_vad'.",
        )),
    }
}

fn check_tools(tools: &Value) -> Result<(), UpdateError> {
    let Some(tools) = tools.as_array() else {
        return Err(invalid("session.tools", "Expected an array."));
    };
    for (i, tool) in tools.iter().enumerate() {
        let function = tool.get("type").and_then(Value::as_str) == Some("function");
        if !function || !tool.get("name").is_some_and(Value::is_string) {
            return Err(invalid(
                &format!("session.tools[{i}]"),
                "Only function tools with a name are supported.",
            ));
        }
    }
    Ok(())
}

/// Merges a checked update into the effective session: `session`, `audio`, `audio.input`
/// and `audio.output` merge key by key; every other value (formats, turn detection, tools,
/// transcription) is replaced whole, then defaults are filled in.
pub(crate) fn merge(effective: &mut Value, update: &Value) {
    let Some(update) = update.as_object() else {
        return;
    };
    let Some(target) = effective.as_object_mut() else {
        return;
    };
    for (key, value) in update {
        match key.as_str() {
            "type" | "id" | "object" | "expires_at" | "model" => {}
            "audio" => {
                let Some(parts) = value.as_object() else {
                    continue;
                };
                let Some(audio) = object_at(Some(&mut *target), "audio") else {
                    continue;
                };
                for (side, settings) in parts {
                    let (Some(part), Some(settings)) =
                        (object_at(Some(&mut *audio), side), settings.as_object())
                    else {
                        continue;
                    };
                    for (k, v) in settings {
                        part.insert(k.clone(), v.clone());
                    }
                }
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    normalise(effective);
}

/// The object under `key` of `map` (created, or replacing a non-object).
fn object_at<'a>(
    map: Option<&'a mut Map<String, Value>>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let entry = map?
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

/// Fills turn-detection defaults and drops `null`s the schema does not allow.
fn normalise(effective: &mut Value) {
    if let Some(input) = effective
        .pointer_mut("/audio/input")
        .and_then(Value::as_object_mut)
    {
        for key in ["transcription", "noise_reduction"] {
            if input.get(key).is_some_and(Value::is_null) {
                input.remove(key);
            }
        }
        if let Some(td) = input.get_mut("turn_detection")
            && let Some(given) = td.as_object().cloned()
        {
            let mut full = match given.get("type").and_then(Value::as_str) {
                Some("semantic_vad") => semantic_vad_defaults(),
                _ => server_vad_defaults(),
            };
            if let Some(full_obj) = full.as_object_mut() {
                for (k, v) in given {
                    full_obj.insert(k, v);
                }
            }
            *td = full;
        }
    }
    if let Some(obj) = effective.as_object_mut()
        && obj.get("include").is_some_and(Value::is_null)
    {
        obj.remove("include");
    }
}

/// Server-VAD settings the simulator applies (semantic VAD is approximated by an energy VAD
/// whose silence window follows the eagerness).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VadSettings {
    pub threshold: f64,
    pub prefix_padding_ms: u64,
    pub silence_duration_ms: u64,
    pub create_response: bool,
    pub interrupt_response: bool,
}

/// What the simulator acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Effective {
    /// `None`: turn detection off (manual commits).
    pub vad: Option<VadSettings>,
    /// Input transcription configured.
    pub transcribe: bool,
    /// `output_modalities == ["text"]`.
    pub text_only: bool,
    /// `audio.output` for response objects (format and voice).
    pub output_format: Value,
    /// `audio.output.voice`.
    pub voice: Value,
    /// Instructions (for token counts).
    pub instructions_len: usize,
}

/// Reads the settings from an effective session object.
pub(crate) fn effective(session: &Value) -> Effective {
    let td = session.pointer("/audio/input/turn_detection");
    let vad = td.filter(|v| v.is_object()).map(|td| {
        let flag = |k: &str| td.get(k).and_then(Value::as_bool).unwrap_or(true);
        let semantic = td.get("type").and_then(Value::as_str) == Some("semantic_vad");
        let silence = if semantic {
            match td.get("eagerness").and_then(Value::as_str) {
                Some("high") => 300,
                Some("low") => 800,
                _ => 500,
            }
        } else {
            td.get("silence_duration_ms")
                .and_then(Value::as_u64)
                .unwrap_or(500)
        };
        VadSettings {
            threshold: td.get("threshold").and_then(Value::as_f64).unwrap_or(0.5),
            prefix_padding_ms: td
                .get("prefix_padding_ms")
                .and_then(Value::as_u64)
                .unwrap_or(300),
            silence_duration_ms: silence,
            create_response: flag("create_response"),
            interrupt_response: flag("interrupt_response"),
        }
    });
    let text_only = session
        .get("output_modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.len() == 1 && m[0].as_str() == Some("text"));
    Effective {
        vad,
        transcribe: session
            .pointer("/audio/input/transcription")
            .is_some_and(Value::is_object),
        text_only,
        output_format: session
            .pointer("/audio/output/format")
            .cloned()
            .unwrap_or_else(|| json!({"type": "audio/pcmu"})),
        voice: session
            .pointer("/audio/output/voice")
            .cloned()
            .unwrap_or_else(|| json!("alloy")),
        instructions_len: session
            .get("instructions")
            .and_then(Value::as_str)
            .map_or(0, str::len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_shapes_are_recognised() {
        for session in [
            json!({"modalities": ["audio"], "type": "realtime"}),
            json!({"input_audio_format": "g711_ulaw"}),
            json!({"type": "realtime", "voice": "alloy"}),
            json!({"type": "realtime", "turn_detection": null}),
            json!({"type": "realtime", "input_audio_transcription": {"model": "whisper-1"}}),
            json!({"instructions": "hi"}),
        ] {
            assert_eq!(
                check_update(&session, "gpt-realtime"),
                Err(UpdateError::Beta),
                "{session}"
            );
        }
        assert_eq!(check_update(&json!({"type": "realtime"}), "m"), Ok(()));
    }

    #[test]
    fn invalid_values_name_their_param() {
        let param = |s: Value| match check_update(&s, "gpt-realtime") {
            Err(UpdateError::Invalid { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            param(json!({"type":"realtime","audio":{"input":{"format":{"type":"g711_ulaw"}}}})),
            "session.audio.input.format.type"
        );
        assert_eq!(
            param(
                json!({"type":"realtime","audio":{"input":{"turn_detection":{"type":"server_vad","threshold":2}}}})
            ),
            "session.audio.input.turn_detection.threshold"
        );
        assert_eq!(
            param(json!({"type":"realtime","model":"other"})),
            "session.model"
        );
        assert_eq!(param(json!({"type":"transcription"})), "session.type");
        assert_eq!(
            param(json!({"type":"realtime","output_modalities":["audio","text"]})),
            "session.output_modalities"
        );
    }

    #[test]
    fn merge_replaces_leaves_and_fills_vad_defaults() {
        let mut session = default_session("sess_1", "gpt-realtime", 1);
        merge(
            &mut session,
            &json!({"type":"realtime","instructions":"Be brief.","audio":{
                "input":{"transcription":{"model":"whisper-1"},"noise_reduction":null,
                         "turn_detection":{"type":"semantic_vad","eagerness":"high"}},
                "output":{"voice":"marin"}}}),
        );
        assert_eq!(session["instructions"], "Be brief.");
        assert_eq!(session["audio"]["output"]["format"]["type"], "audio/pcmu");
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        let td = &session["audio"]["input"]["turn_detection"];
        assert_eq!(td["type"], "semantic_vad");
        assert_eq!(td["create_response"], true);
        assert!(td.get("threshold").is_none());
        assert!(session["audio"]["input"].get("noise_reduction").is_none());
        let eff = effective(&session);
        assert!(eff.transcribe);
        assert_eq!(eff.vad.map(|v| v.silence_duration_ms), Some(300));
        merge(
            &mut session,
            &json!({"type":"realtime","audio":{"input":{"turn_detection":null}}}),
        );
        assert_eq!(effective(&session).vad, None);
        assert!(session["audio"]["input"]["turn_detection"].is_null());
    }
}
