//! The per-frame functions agree with the reference parsers and encoders.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::*;
use crate::media::{MarkName, OutboundMedia, TwilioInbound, TwilioOutbound};
use crate::realtime::ServerEvent;

/// What the decoder accepts, within the size bound.
fn decodes(payload: &str) -> bool {
    !payload.is_empty()
        && STANDARD
            .decode(payload)
            .is_ok_and(|b| b.len() <= MAX_FRAME_BYTES)
}

#[test]
fn audio_checks() {
    assert!(valid_audio("//////////8="));
    assert!(valid_audio("AA=="));
    assert!(!valid_audio("AB=="), "non-canonical trailing bits");
    assert!(!valid_audio("AAB="), "non-canonical trailing bits");
    assert!(!valid_audio("A==="));
    assert!(!valid_audio("===="));
    assert!(!valid_audio("AA=A"));
    assert!(!valid_audio("AAA"));
    assert!(!valid_audio("not base64!"));
    assert!(!valid_audio(""));
    assert!(valid_audio(&STANDARD.encode(vec![7u8; MAX_FRAME_BYTES])));
    assert!(!valid_audio(
        &STANDARD.encode(vec![0u8; MAX_FRAME_BYTES + 1])
    ));
    assert_eq!(decoded_len("AAAA"), 3);
    assert_eq!(decoded_len("//8="), 2);
}

proptest! {
    #[test]
    fn validation_agrees_with_the_decoder(s in "[A-Za-z0-9+/=!\\- ]{0,24}") {
        prop_assert_eq!(valid_audio(&s), decodes(&s), "{:?}", s);
    }

    #[test]
    fn encoded_bytes_are_valid(bytes in proptest::collection::vec(any::<u8>(), 1..600)) {
        prop_assert!(valid_audio(&STANDARD.encode(&bytes)));
    }
}

#[test]
fn caller_frames_are_sniffed() {
    let media = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//8="}}"#;
    let CallerFrame::Media(payload) = sniff_caller(media).expect("media") else {
        panic!("not media");
    };
    assert_eq!(payload.as_str(), "//8=");
    assert!(matches!(payload.0, Cow::Borrowed(_)), "borrowed");
    let mark =
        r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"0:20:item_1"}}"#;
    let CallerFrame::Mark(name) = sniff_caller(mark).expect("mark") else {
        panic!("not a mark");
    };
    assert_eq!(name.as_str(), "0:20:item_1");
    // An escaped payload is still read (owned).
    let escaped = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"\/\/8="}}"#;
    let CallerFrame::Media(payload) = sniff_caller(escaped).expect("escaped") else {
        panic!("not media");
    };
    assert_eq!(payload.as_str(), "//8=");
    for other in [
        r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
        r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"1"}}"#,
        r#"{"event":"media","media":{"payload":"//8="}}"#,
        r#"{"event":"surprise"}"#,
    ] {
        assert!(
            matches!(sniff_caller(other), Ok(CallerFrame::Other)),
            "{other}"
        );
        assert!(TwilioInbound::parse(other).is_ok() || other.contains("media"));
    }
    assert!(sniff_caller("not json").is_err());
    assert!(sniff_caller(r#"{"no":"event"}"#).is_err());
}

#[test]
fn ai_frames_are_sniffed() {
    let delta = r#"{"type":"response.output_audio.delta","event_id":"e1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"//8="}"#;
    let AiFrame::Audio(d) = sniff_ai(delta).expect("delta") else {
        panic!("not audio");
    };
    assert_eq!(
        (d.response_id.as_str(), d.item_id.as_str(), d.delta.as_str()),
        ("resp_1", "item_1", "//8=")
    );
    let ServerEvent::AudioDelta(full) = ServerEvent::parse(delta).expect("parse") else {
        panic!("not a delta");
    };
    assert_eq!(full.delta, d.delta.as_str());

    let stopped = r#"{"type":"input_audio_buffer.speech_stopped","event_id":"e2","audio_end_ms":900,"item_id":"item_2"}"#;
    let AiFrame::Other(kind) = sniff_ai(stopped).expect("other") else {
        panic!("audio?");
    };
    assert_eq!(
        ServerEvent::parse_kind(kind.as_str(), stopped).expect("typed"),
        ServerEvent::parse(stopped).expect("parse")
    );
    // An audio delta without its ids is an error, as the full parse says.
    let broken = r#"{"type":"response.output_audio.delta","delta":"//8="}"#;
    assert!(sniff_ai(broken).is_err());
    assert!(ServerEvent::parse(broken).is_err());
}

#[test]
fn frames_are_twilio_messages() {
    let payload = Text(Cow::Borrowed("AAAA"));
    assert_eq!(
        TwilioOutbound::parse(&media_text("MZ1", &payload)).expect("media"),
        TwilioOutbound::Media {
            stream_sid: "MZ1".into(),
            media: OutboundMedia {
                payload: "AAAA".into()
            }
        }
    );
    let owned = Text(Cow::Owned(String::from("a\"b")));
    let TwilioOutbound::Media { media, .. } =
        TwilioOutbound::parse(&media_text("MZ1", &owned)).expect("escaped media")
    else {
        panic!("not media");
    };
    assert_eq!(media.payload, "a\"b");
    assert_eq!(
        TwilioOutbound::parse(&mark_text("MZ1", 2, 140, "item_7")).expect("mark"),
        TwilioOutbound::Mark {
            stream_sid: "MZ1".into(),
            mark: MarkName {
                name: "2:140:item_7".into()
            }
        }
    );
    // An item id that needs escaping (never seen) still makes a valid message.
    let TwilioOutbound::Mark { mark, .. } =
        TwilioOutbound::parse(&mark_text("M\"Z", 0, 20, "it\"em\n")).expect("escaped mark")
    else {
        panic!("not a mark");
    };
    assert_eq!(mark.name, "0:20:it\"em\n");
    assert_eq!(
        TwilioOutbound::parse(&clear_text("MZ1")).expect("clear"),
        TwilioOutbound::Clear {
            stream_sid: "MZ1".into()
        }
    );
}
