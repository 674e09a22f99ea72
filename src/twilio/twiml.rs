//! TwiML: the typed model of the voice verbs this project uses, rendered for Twilio by the
//! webhook handlers and parsed by the carrier simulator. Both directions go through serde
//! and quick-xml, so escaping and parsing are the library's, not ours.
//!
//! Verbs: `<Say>`, `<Pause>`, `<Hangup>`, `<Reject>`, `<Redirect>`, `<Dial>` (with
//! `<Number>`s or one `<Conference>`), `<Gather>` (digits, with nested `<Say>`/`<Pause>`),
//! `<Connect>` with one `<Stream>` and its `<Parameter>`s (PROTOCOLS §1.3, §1.9).

use serde::{Deserialize, Serialize};

/// A TwiML document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Response")]
pub struct Response {
    /// The verbs, executed in order.
    #[serde(rename = "$value", default)]
    pub verbs: Vec<Verb>,
}

/// One verb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verb {
    /// Text-to-speech.
    Say(Say),
    /// Silence.
    Pause(Pause),
    /// End the call.
    Hangup(Empty),
    /// Refuse an inbound call without answering (first verb only).
    Reject(Reject),
    /// Continue with TwiML from a URL.
    Redirect(Redirect),
    /// Bridge to numbers (simultaneous ring).
    Dial(Dial),
    /// Bidirectional media stream.
    Connect(Connect),
    /// Collect key presses while saying the nested verbs.
    Gather(Gather),
}

/// `<Gather input="dtmf" numDigits timeout action>`: the nested verbs play while the caller
/// may press keys; the digits go to `action` (`Digits`). Without input the next verb runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gather {
    /// Requested with `Digits` once the caller pressed keys.
    #[serde(rename = "@action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Method for `action`.
    #[serde(rename = "@method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `dtmf`.
    #[serde(rename = "@input", default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Digits to collect before `action` is requested.
    #[serde(
        rename = "@numDigits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_digits: Option<u32>,
    /// Seconds of silence after the nested verbs before giving up.
    #[serde(rename = "@timeout", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Nested `<Say>`/`<Pause>`.
    #[serde(rename = "$value", default)]
    pub children: Vec<GatherChild>,
}

/// What `<Gather>` plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatherChild {
    /// Text-to-speech.
    Say(Say),
    /// Silence.
    Pause(Pause),
}

/// `<Conference>` inside `<Dial>` (PROTOCOLS: conference attributes and status callback).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conference {
    /// Whether this participant's arrival starts the conference.
    #[serde(
        rename = "@startConferenceOnEnter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub start_conference_on_enter: Option<bool>,
    /// Whether this participant's departure ends it.
    #[serde(
        rename = "@endConferenceOnExit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub end_conference_on_exit: Option<bool>,
    /// Hold audio (TwiML or MP3/WAV) until the conference starts.
    #[serde(rename = "@waitUrl", default, skip_serializing_if = "Option::is_none")]
    pub wait_url: Option<String>,
    /// `false`: no beep on joins and leaves.
    #[serde(rename = "@beep", default, skip_serializing_if = "Option::is_none")]
    pub beep: Option<String>,
    /// Conference events are posted here.
    #[serde(
        rename = "@statusCallback",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub status_callback: Option<String>,
    /// Space-separated: `start end join leave mute hold speaker`.
    #[serde(
        rename = "@statusCallbackEvent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub status_callback_event: Option<String>,
    /// Method of the status callback.
    #[serde(
        rename = "@statusCallbackMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub status_callback_method: Option<String>,
    /// The conference's friendly name.
    #[serde(rename = "$text", default)]
    pub name: String,
}

/// An element with no content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `<Say>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Say {
    /// Voice name.
    #[serde(rename = "@voice", default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Language, e.g. `en-US`.
    #[serde(rename = "@language", default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The words.
    #[serde(rename = "$text", default)]
    pub text: String,
}

/// `<Pause length="N"/>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Seconds.
    #[serde(rename = "@length", default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
}

/// `<Reject reason="…"/>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// `rejected` (default) or `busy`.
    #[serde(rename = "@reason", default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `<Redirect>URL</Redirect>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// `GET` or `POST`.
    #[serde(rename = "@method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Where the next TwiML is.
    #[serde(rename = "$text", default)]
    pub url: String,
}

/// `<Dial>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dial {
    /// Requested when the dialed leg ends (with `DialCallStatus`).
    #[serde(rename = "@action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Method for `action`.
    #[serde(rename = "@method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Ring timeout in seconds.
    #[serde(rename = "@timeout", default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Caller id shown to the callee.
    #[serde(rename = "@callerId", default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    /// Keep the caller hearing ringing until the callee answers.
    #[serde(
        rename = "@answerOnBridge",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub answer_on_bridge: Option<bool>,
    /// Numbers (or a plain number as text).
    #[serde(rename = "$value", default)]
    pub targets: Vec<DialTarget>,
}

/// What `<Dial>` calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialTarget {
    /// `<Number>+1…</Number>`.
    Number(Number),
    /// `<Conference>name</Conference>`.
    Conference(Conference),
    /// A bare number as the element's text.
    #[serde(rename = "$text")]
    Text(String),
}

/// `<Number>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Number {
    /// E.164 number.
    #[serde(rename = "$text", default)]
    pub number: String,
}

/// `<Connect>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connect {
    /// Requested when the stream ends; its TwiML runs next.
    #[serde(rename = "@action", default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Method for `action`.
    #[serde(rename = "@method", default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The stream (one per call).
    #[serde(rename = "$value", default)]
    pub nouns: Vec<ConnectNoun>,
}

/// What `<Connect>` connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectNoun {
    /// A media stream.
    Stream(Stream),
}

/// `<Stream>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// `wss://…` (no query string).
    #[serde(rename = "@url")]
    pub url: String,
    /// Stream name.
    #[serde(rename = "@name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stream lifecycle callbacks.
    #[serde(
        rename = "@statusCallback",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub status_callback: Option<String>,
    /// Method of the status callback.
    #[serde(
        rename = "@statusCallbackMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub status_callback_method: Option<String>,
    /// Custom parameters, delivered in `start.customParameters`.
    #[serde(rename = "$value", default)]
    pub parameters: Vec<StreamChild>,
}

/// Children of `<Stream>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamChild {
    /// `<Parameter name value/>`.
    Parameter(Parameter),
}

/// `<Parameter>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Name.
    #[serde(rename = "@name")]
    pub name: String,
    /// Value.
    #[serde(rename = "@value")]
    pub value: String,
}

/// TwiML that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid twiml: {0}")]
pub struct TwimlError(String);

impl Response {
    /// A document of `verbs`.
    pub fn new(verbs: Vec<Verb>) -> Self {
        Self { verbs }
    }

    /// Renders the document with an XML declaration.
    pub fn render(&self) -> String {
        match quick_xml::se::to_string(self) {
            Ok(body) => format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{body}"),
            // Serializing these plain structs cannot fail; keep the call safe anyway.
            Err(_) => String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>",
            ),
        }
    }

    /// Parses a document.
    pub fn parse(xml: &str) -> Result<Self, TwimlError> {
        quick_xml::de::from_str(xml).map_err(|e| TwimlError(e.to_string()))
    }
}

impl Say {
    /// `<Say>` with default voice.
    pub fn text(text: impl Into<String>) -> Verb {
        Verb::Say(Say {
            voice: None,
            language: None,
            text: text.into(),
        })
    }
}

impl Stream {
    /// The stream's custom parameters as pairs.
    pub fn parameter_pairs(&self) -> Vec<(String, String)> {
        self.parameters
            .iter()
            .map(|StreamChild::Parameter(p)| (p.name.clone(), p.value.clone()))
            .collect()
    }
}

impl Dial {
    /// The numbers to ring.
    pub fn numbers(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| match t {
                DialTarget::Number(n) => n.number.trim().to_owned(),
                DialTarget::Text(s) => s.trim().to_owned(),
                DialTarget::Conference(_) => String::new(),
            })
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// The conference this dial joins, if any.
    pub fn conference(&self) -> Option<&Conference> {
        self.targets.iter().find_map(|t| match t {
            DialTarget::Conference(c) => Some(c),
            _ => None,
        })
    }
}

/// `<Dial><Conference …>name</Conference></Dial>` for `join`: events `start end join leave`
/// posted to its status callback, no beep.
pub fn conference(join: &actors::carrier::ConferenceJoin) -> Verb {
    Verb::Dial(Dial {
        targets: vec![DialTarget::Conference(Conference {
            start_conference_on_enter: Some(join.start_on_enter),
            end_conference_on_exit: Some(join.end_on_exit),
            wait_url: join.wait_url.clone(),
            beep: Some(String::from("false")),
            status_callback: Some(join.status_callback_url.clone()),
            status_callback_event: Some(String::from("start end join leave")),
            status_callback_method: Some(String::from("POST")),
            name: join.name.clone(),
        })],
        ..Dial::default()
    })
}

/// `<Connect action><Stream url statusCallback><Parameter…/></Stream></Connect>` for `s`.
pub fn connect(s: &actors::carrier::StreamInstructions) -> Verb {
    Verb::Connect(Connect {
        action: Some(s.action_url.clone()),
        method: Some(String::from("POST")),
        nouns: vec![ConnectNoun::Stream(Stream {
            url: s.stream_url.clone(),
            name: None,
            status_callback: Some(s.status_callback_url.clone()),
            status_callback_method: Some(String::from("POST")),
            parameters: s
                .parameters
                .iter()
                .map(|(name, value)| {
                    StreamChild::Parameter(Parameter {
                        name: name.clone(),
                        value: value.clone(),
                    })
                })
                .collect(),
        })],
    })
}

/// A `<Dial>` of `numbers` (simultaneous ring).
pub fn dial(
    numbers: &[String],
    caller_id: Option<&str>,
    timeout_secs: Option<u32>,
    action: Option<&str>,
) -> Verb {
    Verb::Dial(Dial {
        action: action.map(str::to_owned),
        method: action.map(|_| String::from("POST")),
        timeout: timeout_secs,
        caller_id: caller_id.map(str::to_owned),
        answer_on_bridge: Some(true),
        targets: numbers
            .iter()
            .map(|n| DialTarget::Number(Number { number: n.clone() }))
            .collect(),
    })
}

/// The verbs of a human fallback: the message, then the fallback number or a hangup.
pub fn fallback(f: &actors::telephony::Fallback) -> Vec<Verb> {
    let mut verbs = vec![Say::text(f.message.clone())];
    match &f.number {
        Some(number) => verbs.push(dial(std::slice::from_ref(number), None, None, None)),
        None => verbs.push(Verb::Hangup(Empty {})),
    }
    verbs
}

/// A document that only hangs up.
pub fn hangup() -> Response {
    Response::new(vec![Verb::Hangup(Empty {})])
}

/// The TwiML of a change to a live call.
pub fn for_change(change: &actors::carrier::CallChange) -> Response {
    use actors::carrier::CallChange;
    match change {
        CallChange::Hangup => hangup(),
        CallChange::Dial {
            announcement,
            numbers,
            caller_id,
            timeout_secs,
            action_url,
        } => {
            let mut verbs = Vec::new();
            if let Some(a) = announcement {
                verbs.push(Say::text(a.clone()));
            }
            verbs.push(dial(
                numbers,
                caller_id.as_deref(),
                *timeout_secs,
                action_url.as_deref(),
            ));
            Response::new(verbs)
        }
        CallChange::Fallback { message, number } => {
            Response::new(fallback(&actors::telephony::Fallback {
                message: message.clone(),
                number: number.clone(),
            }))
        }
        CallChange::Stream(s) => Response::new(vec![connect(s)]),
        CallChange::Conference(join) => {
            let mut verbs = Vec::new();
            if let Some(a) = &join.announcement {
                verbs.push(Say::text(a.clone()));
            }
            verbs.push(conference(join));
            Response::new(verbs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_doc() -> Response {
        Response::new(vec![
            Verb::Connect(Connect {
                action: Some("https://voice.example/api/v1/stream-ended".into()),
                method: None,
                nouns: vec![ConnectNoun::Stream(Stream {
                    url: "wss://voice.example/media-stream".into(),
                    name: None,
                    status_callback: Some("https://voice.example/api/v1/stream-status".into()),
                    status_callback_method: None,
                    parameters: vec![StreamChild::Parameter(Parameter {
                        name: "token".into(),
                        value: "a&b<c>\"d'".into(),
                    })],
                })],
            }),
            Say::text("Sorry & goodbye <now>"),
            Verb::Dial(Dial {
                action: Some("https://voice.example/api/v1/dial-result".into()),
                timeout: Some(25),
                answer_on_bridge: Some(true),
                targets: vec![
                    DialTarget::Number(Number {
                        number: "+15550002222".into(),
                    }),
                    DialTarget::Number(Number {
                        number: "+15550003333".into(),
                    }),
                ],
                ..Dial::default()
            }),
            Verb::Reject(Reject {
                reason: Some("busy".into()),
            }),
            Verb::Pause(Pause { length: Some(1) }),
            Verb::Redirect(Redirect {
                method: Some("POST".into()),
                url: "https://x.example/next".into(),
            }),
            Verb::Gather(Gather {
                action: Some("https://voice.example/api/v1/warm-transfer/decision".into()),
                method: Some("POST".into()),
                input: Some("dtmf".into()),
                num_digits: Some(1),
                timeout: Some(8),
                children: vec![
                    GatherChild::Say(Say {
                        text: "Press 1".into(),
                        ..Say::default()
                    }),
                    GatherChild::Pause(Pause { length: Some(1) }),
                ],
            }),
            conference(&actors::carrier::ConferenceJoin {
                name: "handoff-ho_1".into(),
                announcement: None,
                wait_url: Some("https://music.example/hold.mp3".into()),
                start_on_enter: false,
                end_on_exit: true,
                status_callback_url: "https://voice.example/api/v1/warm-transfer/conference-status"
                    .into(),
            }),
            Verb::Hangup(Empty {}),
        ])
    }

    #[test]
    fn renders_conference_and_gather() {
        let xml = connect_doc().render();
        assert!(xml.contains("<Gather action=\"https://voice.example/api/v1/warm-transfer/decision\" method=\"POST\" input=\"dtmf\" numDigits=\"1\" timeout=\"8\"><Say>Press 1</Say><Pause length=\"1\"/></Gather>"), "{xml}");
        assert!(xml.contains("<Dial><Conference startConferenceOnEnter=\"false\" endConferenceOnExit=\"true\" waitUrl=\"https://music.example/hold.mp3\" beep=\"false\" statusCallback=\"https://voice.example/api/v1/warm-transfer/conference-status\" statusCallbackEvent=\"start end join leave\" statusCallbackMethod=\"POST\">handoff-ho_1</Conference></Dial>"), "{xml}");
    }

    #[test]
    fn renders_twilio_shaped_xml() {
        let xml = connect_doc().render();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect action=\"https://voice.example/api/v1/stream-ended\">"), "{xml}");
        assert!(xml.contains("<Stream url=\"wss://voice.example/media-stream\" statusCallback=\"https://voice.example/api/v1/stream-status\">"), "{xml}");
        assert!(
            xml.contains("<Parameter name=\"token\" value=\"a&amp;b&lt;c&gt;&quot;d'\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<Say>Sorry &amp; goodbye &lt;now&gt;</Say>"),
            "{xml}"
        );
        assert!(xml.contains("<Dial action=\"https://voice.example/api/v1/dial-result\" timeout=\"25\" answerOnBridge=\"true\"><Number>+15550002222</Number><Number>+15550003333</Number></Dial>"), "{xml}");
        assert!(xml.contains("<Hangup/>"), "{xml}");
    }

    #[test]
    fn parses_what_it_renders() {
        let doc = connect_doc();
        assert_eq!(Response::parse(&doc.render()).expect("parse"), doc);
    }

    #[test]
    fn parses_twilio_documentation_examples() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Say voice="Polly.Joanna">Connecting you to a colleague now.</Say>
  <Dial callerId="+15550001111" timeout="25" answerOnBridge="true"
        action="https://bridge.example.net/twilio/dial-result">
    <Number>+15550002222</Number>
  </Dial>
  <Dial>+15550004444</Dial>
  <Say>Sorry, nobody is available.</Say>
  <Hangup/>
</Response>"#;
        let doc = Response::parse(xml).expect("parse");
        assert_eq!(doc.verbs.len(), 5);
        let Verb::Dial(dial) = &doc.verbs[1] else {
            panic!("dial")
        };
        assert_eq!(dial.numbers(), vec!["+15550002222"]);
        assert_eq!(dial.caller_id.as_deref(), Some("+15550001111"));
        let Verb::Dial(plain) = &doc.verbs[2] else {
            panic!("dial")
        };
        assert_eq!(plain.numbers(), vec!["+15550004444"]);
        assert!(Response::parse("<Response><Play>x</Play></Response>").is_err());
        assert!(Response::parse("not xml").is_err());
    }
}
