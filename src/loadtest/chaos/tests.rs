//! `--chaos` parsing and the classification of calls from carrier snapshots.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::*;
use crate::sim::carrier::{CallDirection, DialOutcome};

#[test]
fn chaos_specs_parse() {
    let spec: ChaosSpec = "kill:10@30".parse().expect("spec");
    assert_eq!(
        spec,
        ChaosSpec {
            mode: ChaosMode::Kill,
            percent: 10.0,
            at: Duration::from_secs(30)
        }
    );
    let spec: ChaosSpec = "twilio_reset:2.5%@12.5s".parse().expect("spec");
    assert_eq!(spec.mode, ChaosMode::TwilioReset);
    assert_eq!(spec.percent, 2.5);
    assert_eq!(spec.at, Duration::from_millis(12_500));
    for (text, mode) in [
        ("panic:100@0", ChaosMode::Panic),
        ("ai_reset:1@5", ChaosMode::AiReset),
    ] {
        assert_eq!(text.parse::<ChaosSpec>().expect("spec").mode, mode);
    }
    for bad in [
        "kill",
        "kill:10",
        "kill@10",
        "boom:10@5",
        "kill:0@5",
        "kill:101@5",
        "kill:x@5",
        "kill:10@-1",
        "kill:10@soon",
        "kill:NaN@5",
    ] {
        assert!(bad.parse::<ChaosSpec>().is_err(), "{bad} parsed");
    }
}

#[test]
fn the_chaos_answer_is_read() {
    let body = json!({"mode": "kill", "selected": 2, "calls": [
        {"call_id": "call_1", "call_sid": "CA1", "stream_sid": "MZ1", "tenant_id": "ten_1",
         "injected_at": "2026-12-05T14:00:00Z"},
        {"call_id": "call_2", "call_sid": "CA2", "stream_sid": null, "tenant_id": "ten_1",
         "injected_at": 1_733_400_000_000_i64}
    ]});
    let calls = parse_injected(&body).expect("calls");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].stream_sid.as_deref(), Some("MZ1"));
    assert_eq!(calls[1].stream_sid, None);
    assert_eq!(calls[1].injected_at.as_deref(), Some("1733400000000"));
    assert!(parse_injected(&json!({"selected": 0})).is_err());
    assert!(parse_injected(&json!({"calls": [{"call_sid": "CA1"}]})).is_err());
}

/// A call that streamed `streams` times and ended as `closer` and `events` say.
fn call(streams: u32, events: Vec<CallEvent>) -> CallSnapshot {
    let mut c = CallSnapshot::new(
        "CA1".into(),
        "AC1".into(),
        "+15550000001".into(),
        "+15550000002".into(),
        CallDirection::Inbound,
        CallStatus::Completed,
    );
    c.media.streams_opened = streams;
    c.media.first_audio_ms = Some(900);
    c.events = events;
    c
}

fn closed(by: StreamCloser) -> CallEvent {
    CallEvent::StreamClosed {
        stream_sid: "MZ".into(),
        by,
    }
}

#[test]
fn calls_are_classified_from_their_snapshots() {
    let normal = call(1, vec![closed(StreamCloser::Caller)]);
    assert_eq!(classify(&normal), Fate::Normal);

    let resumed = call(
        2,
        vec![closed(StreamCloser::Reset), closed(StreamCloser::Caller)],
    );
    assert_eq!(classify(&resumed), Fate::Resumed);

    let said_fallback = call(
        1,
        vec![
            closed(StreamCloser::Server),
            CallEvent::Said(actors::telephony::DEFAULT_FALLBACK_MESSAGE.into()),
            CallEvent::HungUp,
        ],
    );
    assert_eq!(classify(&said_fallback), Fate::Fallback);
    let dialled_fallback = call(
        1,
        vec![
            closed(StreamCloser::Redirect),
            CallEvent::Dialed {
                numbers: vec![FALLBACK_NUMBER.into()],
                outcome: DialOutcome {
                    status: "completed".into(),
                    dial_call_sid: "CA9".into(),
                    duration_secs: 1,
                    bridged: true,
                    answered_number: Some(FALLBACK_NUMBER.into()),
                },
            },
        ],
    );
    assert_eq!(classify(&dialled_fallback), Fate::Fallback);

    let app_error = call(
        1,
        vec![
            closed(StreamCloser::Server),
            CallEvent::ApplicationError {
                detail: "connection refused".into(),
            },
        ],
    );
    assert_eq!(classify(&app_error), Fate::Failed);
    let hung_up_by_server = call(
        1,
        vec![
            closed(StreamCloser::Server),
            CallEvent::TwimlRun {
                source: "http://x/stream-ended".into(),
                verbs: vec!["Hangup".into()],
            },
            CallEvent::HungUp,
        ],
    );
    assert_eq!(classify(&hung_up_by_server), Fate::Failed);
    assert_eq!(
        failure_detail(&hung_up_by_server),
        "status completed, 1 streams, last stream closed by Server, last TwiML [Hangup]"
    );
    let mut no_audio = call(1, vec![closed(StreamCloser::Caller)]);
    no_audio.media.first_audio_ms = None;
    assert_eq!(classify(&no_audio), Fate::Failed);
    let mut not_completed = call(1, vec![closed(StreamCloser::Caller)]);
    not_completed.status = CallStatus::Failed;
    assert_eq!(classify(&not_completed), Fate::Failed);
    assert_eq!(classify(&call(0, vec![])), Fate::Failed);
}

#[test]
fn the_report_counts_touched_and_untouched_calls_apart() {
    let spec: ChaosSpec = "kill:50@10".parse().expect("spec");
    let fate = |index, touched, fate, ms| CallFate {
        call_sid: format!("CA{index}"),
        index,
        touched,
        fate,
        streams: 1,
        fault_to_outcome_ms: ms,
        detail: (fate == Fate::Failed).then(|| String::from("status completed")),
    };
    let lost = BTreeMap::from([(0, (0, 0)), (1, (3, 1)), (2, (0, 2))]);
    let touched = HashSet::from([1]);
    let report = ChaosReport::new(
        spec,
        2,
        Duration::from_secs(10),
        vec![
            fate(3, true, Fate::Failed, None),
            fate(2, false, Fate::Normal, None),
            fate(1, true, Fate::Resumed, Some(400)),
            fate(0, false, Fate::Normal, None),
        ],
        untouched_loss(&lost, &touched),
    );
    assert_eq!(
        report.calls.iter().map(|c| c.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(
        report.touched,
        FateCounts {
            resumed: 1,
            failed: 1,
            ..FateCounts::default()
        }
    );
    assert_eq!(report.untouched.normal, 2);
    assert_eq!(report.fault_to_outcome.count, 1);
    assert_eq!(report.fault_to_outcome.max_ms, Some(400.0));
    assert_eq!(report.outcome_not_recorded, 1);
    assert_eq!(
        report.untouched_frames_lost,
        UntouchedLoss {
            caller_to_ai: 0,
            ai_to_caller: 2
        }
    );
    let mut text = String::new();
    report.render(&mut text);
    assert!(
        text.contains("chaos kill: 50% of live calls at 10.0 s: 2 selected"),
        "{text}"
    );
    assert!(
        text.contains("touched calls: 0 normal, 1 resumed, 0 fallback, 1 failed"),
        "{text}"
    );
    assert!(text.contains("1 not recorded in time"), "{text}");
    assert!(text.contains("caller -> AI 0, AI -> caller 2"), "{text}");
    assert!(
        text.contains("  failed: CA3 (touched): status completed"),
        "{text}"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["spec"]["mode"], "kill");
    assert_eq!(json["spec"]["at_seconds"], 10.0);
    assert_eq!(json["calls"][1]["fate"], "resumed");
}
