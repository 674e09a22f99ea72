//! The conversation as tables: each step is (ms since the stream started, an input) and the
//! effects it must produce, rendered as short lines (`create line_3: Say exactly: …`,
//! `timer Line(2) 20000ms`, `end agent_ended_call hangup completed`). Time is explicit, so
//! every race the runtime met on real sockets is replayed here exactly: responses requested
//! within one round trip, refused requests, fillers, line epochs and deadlines, idle
//! timeouts, repeated invocations, escalation once per call, interruptions.
//!
//! Request timeouts, phases, live-view lines and usage records are left out of the rendering
//! (noise in every step); they are checked where they matter.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::call::recorder::Record;
use crate::contract::{
    Contract, Escalation as EscalationSettings, EscalationRule, EscalationTrigger, IdentityCheck,
    ToolSpec, ToolType, Toolbox,
};
use crate::realtime::{ContentPart, ConversationItem};
use crate::store::FunctionCallStatus;

const GREETING: &str = "Hello, thanks for calling.";

fn render(effect: &Effect) -> Option<String> {
    Some(match effect {
        Effect::Ai(ClientEvent::ResponseCreate { event_id, response }) => {
            let id = event_id.clone().unwrap_or_default();
            match response.as_ref().and_then(|r| r.instructions.clone()) {
                Some(i) => format!("create {id}: {i}"),
                None => format!("create {id}"),
            }
        }
        Effect::Ai(ClientEvent::ConversationItemCreate { item, .. }) => match item {
            ConversationItem::FunctionCallOutput { call_id, output } => {
                format!("output {call_id}: {output}")
            }
            ConversationItem::Message { content, .. } => match content.first() {
                Some(ContentPart::InputText { text } | ContentPart::OutputText { text }) => {
                    format!("item: {text}")
                }
                None => String::from("item"),
            },
            ConversationItem::FunctionCall { .. } => String::from("item function_call"),
        },
        Effect::Ai(ClientEvent::ConversationItemTruncate {
            item_id,
            audio_end_ms,
            ..
        }) => format!("truncate {item_id} at {audio_end_ms}"),
        Effect::Ai(other) => format!("ai {}", other.kind()),
        Effect::Record(Record::Turn(t)) => format!(
            "turn {}: {}",
            t.role,
            t.heard_text.as_deref().unwrap_or(&t.text)
        ),
        Effect::Record(Record::CallEvent { kind, detail }) => match detail["event"].as_str() {
            Some(event) => format!("event {kind} {event}"),
            None => format!("event {kind}"),
        },
        Effect::Record(Record::FunctionCall(r)) => {
            format!(
                "record {} {}",
                r.invocation.model_call_id,
                r.settled.status.as_str()
            )
        }
        Effect::Record(Record::Identity(s)) => format!("identity {}", s.as_str()),
        Effect::Record(Record::Reconnect) => String::from("record reconnect"),
        Effect::Record(
            Record::Usage(_)
            | Record::FirstAudio(_)
            | Record::ResponseGap { .. }
            | Record::Event(..),
        ) => {
            return None;
        }
        Effect::Phase(_) | Effect::LastLine(..) | Effect::Timer(Timer::Request(_), _) => {
            return None;
        }
        Effect::Timer(timer, after) => format!("timer {timer:?} {}ms", after.as_millis()),
        Effect::Connect { replay } => format!("connect replaying {}", replay.len()),
        Effect::RunTool(job) => {
            let work = match job.work {
                ToolWork::Webhook { .. } => "webhook",
                ToolWork::Identity { .. } => "identity",
                ToolWork::Callback { .. } => "callback",
                ToolWork::Sms { .. } => "sms",
                ToolWork::OptOut { .. } => "opt_out",
            };
            format!("run {} {work}", job.invocation.model_call_id)
        }
        Effect::CancelTool { model_call_id, .. } => format!("cancel {model_call_id}"),
        Effect::Escalate(r) => format!(
            "escalate {} to {}",
            r.rule,
            r.queue.as_deref().unwrap_or("-")
        ),
        Effect::Control(r) => format!(
            "control {} then {}",
            r.action.name(),
            r.continuation.as_str()
        ),
        Effect::WatchDrain => String::from("watch drain"),
        Effect::WatchAnsweredBy(after) => format!("watch answered_by {}ms", after.as_millis()),
        Effect::End(e) => format!(
            "end {} {} {}",
            e.reason,
            e.continuation.map_or("-", Continuation::as_str),
            e.status.as_str()
        ),
    })
}

fn rendered(effects: &[Effect]) -> Vec<String> {
    effects.iter().filter_map(render).collect()
}

/// A conversation under test.
struct Call {
    c: Conversation,
}

impl Call {
    fn new(setup: Setup) -> (Self, Vec<String>) {
        let mut c = Conversation::new(setup);
        let start = rendered(&c.start());
        (Self { c }, start)
    }

    /// Connected, the session configured at 10 ms: the greeting is in flight.
    fn live(setup: Setup) -> Self {
        let (mut call, _) = Self::new(setup);
        call.at(0, Input::AiConnected);
        call.at(10, ai(AiEvent::SessionUpdated));
        call
    }

    /// Live, and the greeting said (its response done at 900 ms).
    fn greeted(setup: Setup) -> Self {
        let mut call = Self::live(setup);
        call.at(40, created("resp_greet", Some("greeting_1")));
        call.at(900, done("resp_greet"));
        call
    }

    fn at(&mut self, now: Millis, input: Input) -> Vec<String> {
        rendered(&self.c.handle(now, input))
    }

    fn raw(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        self.c.handle(now, input)
    }

    /// Plays `steps`, checking each one's effects.
    fn play(&mut self, steps: Vec<(Millis, Input, &[&str])>) {
        for (i, (now, input, expected)) in steps.into_iter().enumerate() {
            let described = format!("{input:?}");
            let got = self.at(now, input);
            assert_eq!(got, expected, "step {i} at {now} ms: {described}");
        }
    }
}

fn setup() -> Setup {
    Setup {
        caller: String::from("+15550001111"),
        greeting: Some(GREETING.to_owned()),
        toolbox: None,
        idle_timeout: None,
        max_duration: None,
        started_at_ms: 1_000_000,
        prior: Vec::new(),
        prior_invocations: Vec::new(),
        cut_off: false,
        resume_lost_leg: None,
        ai_reconnect: Some(Duration::from_secs(30)),
        hold_greeting: None,
    }
}

fn with_contract(contract: Contract) -> Setup {
    Setup {
        toolbox: Some(Arc::new(Toolbox::new(contract))),
        ..setup()
    }
}

fn webhook(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.to_owned(),
        kind: ToolType::Webhook,
        description: String::from("Looks things up."),
        parameters: json!({"type": "object"}),
        requires_identity: false,
        url: Some(String::from("https://tools.example.com/hook")),
        timeout_ms: 5_000,
        filler: None,
        filler_after_ms: 1_500,
        cancel_on_interrupt: false,
    }
}

fn builtin(name: &str) -> ToolSpec {
    ToolSpec {
        kind: ToolType::Builtin,
        url: None,
        ..webhook(name)
    }
}

fn contract(tools: Vec<ToolSpec>) -> Contract {
    Contract {
        tools,
        ..Contract::default()
    }
}

fn ai(event: AiEvent) -> Input {
    Input::Ai(event)
}

fn created(response: &str, request: Option<&str>) -> Input {
    ai(AiEvent::ResponseCreated {
        response_id: response.to_owned(),
        request: request.map(str::to_owned),
    })
}

fn done(response: &str) -> Input {
    ai(AiEvent::ResponseDone {
        response_id: response.to_owned(),
        usage: None,
    })
}

fn refused(request: &str) -> Input {
    ai(AiEvent::Error {
        code: Some(String::from("conversation_already_has_active_response")),
        message: String::from("Conversation already has an active response"),
        event_id: Some(request.to_owned()),
    })
}

fn said(item: &str, text: &str) -> Input {
    ai(AiEvent::AgentTranscript {
        item_id: item.to_owned(),
        text: text.to_owned(),
    })
}

fn heard(item: &str, text: &str) -> Input {
    ai(AiEvent::CallerTranscript {
        item_id: item.to_owned(),
        text: text.to_owned(),
    })
}

fn function_call(call_id: &str, item: &str, response: &str, name: &str, args: &str) -> Input {
    ai(AiEvent::FunctionCall(FunctionCallRequest {
        call_id: call_id.to_owned(),
        item_id: item.to_owned(),
        response_id: response.to_owned(),
        name: name.to_owned(),
        arguments: args.to_owned(),
    }))
}

fn tool_ok(call_id: &str, result: serde_json::Value) -> Input {
    Input::ToolDone(call_id.to_owned(), ToolOutcome::ok(result))
}

fn key(digit: &str) -> Input {
    Input::Dtmf(digit.to_owned())
}

const KEY_1: &str = "item: [The caller pressed the key 1 on their keypad.]";
const KEY_2: &str = "item: [The caller pressed the key 2 on their keypad.]";
const GREET: &str = "create greeting_1: Greet the caller. Say exactly: Hello, thanks for calling.";

// === start ===

#[test]
fn a_stream_sets_its_timers_connects_and_greets_once_configured() {
    let (mut call, start) = Call::new(Setup {
        idle_timeout: Some(Duration::from_secs(30)),
        max_duration: Some(Duration::from_secs(600)),
        ..setup()
    });
    assert_eq!(
        start,
        [
            "timer MaxDuration 600000ms",
            "timer Idle(1) 30000ms",
            "connect replaying 0"
        ]
    );
    call.play(vec![
        (0, Input::AiConnected, &[]),
        (10, ai(AiEvent::SessionUpdated), &[GREET]),
        // A second `session.updated` (a later update) greets nobody again.
        (12, ai(AiEvent::SessionUpdated), &[]),
    ]);
}

#[test]
fn an_outbound_greeting_waits_for_the_amd_result_of_a_person() {
    let hold = Setup {
        hold_greeting: Some(Duration::from_secs(4)),
        ..setup()
    };
    let (mut call, start) = Call::new(hold.clone());
    assert_eq!(
        start,
        [
            "timer GreetingHold 4000ms",
            "watch answered_by 4000ms",
            "connect replaying 0"
        ]
    );
    call.play(vec![
        (0, Input::AiConnected, &[]),
        // Configured, but the greeting waits for the AMD result.
        (10, ai(AiEvent::SessionUpdated), &[]),
        (600, Input::AnsweredBy { machine: false }, &[GREET]),
        // The hold's timer, later, asks nothing again.
        (4_000, Input::Timer(Timer::GreetingHold), &[]),
    ]);

    // No result in time: a person is not kept waiting.
    let (mut call, _) = Call::new(hold.clone());
    call.play(vec![
        (0, Input::AiConnected, &[]),
        (10, ai(AiEvent::SessionUpdated), &[]),
        (4_000, Input::Timer(Timer::GreetingHold), &[GREET]),
    ]);

    // A machine never hears the greeting (its action ends the call through the carrier).
    let (mut call, _) = Call::new(hold.clone());
    call.play(vec![
        (0, Input::AiConnected, &[]),
        (300, Input::AnsweredBy { machine: true }, &[]),
        (310, ai(AiEvent::SessionUpdated), &[]),
        (4_000, Input::Timer(Timer::GreetingHold), &[]),
    ]);

    // A resumed stream has greeted already: nothing is held.
    let (_, start) = Call::new(Setup {
        prior: vec![(Speaker::Agent, GREETING.to_owned())],
        ..hold
    });
    assert_eq!(start, ["connect replaying 1"]);
}

// === the response arbiter (issue 9, bug 2) ===

#[test]
fn a_key_pressed_before_the_session_is_configured_is_answered_after_the_greeting() {
    let (mut call, _) = Call::new(setup());
    call.play(vec![
        // Before the model is connected, the key waits to be given to it.
        (0, key("1"), &[]),
        (5, Input::AiConnected, &[KEY_1]),
        (10, ai(AiEvent::SessionUpdated), &[GREET]),
        (40, created("resp_greet", Some("greeting_1")), &[]),
        (900, done("resp_greet"), &["create dtmf_2"]),
    ]);
}

#[test]
fn a_key_pressed_within_one_round_trip_of_the_greeting_is_answered_after_it() {
    let mut call = Call::live(setup());
    call.play(vec![
        // The greeting's request is in flight: `response.created` has not come back yet.
        (15, key("1"), &[KEY_1]),
        (40, created("resp_greet", Some("greeting_1")), &[]),
        (
            41,
            said("item_g", GREETING),
            &["turn assistant: Hello, thanks for calling."],
        ),
        (900, done("resp_greet"), &["create dtmf_2"]),
        (920, created("resp_k1", Some("dtmf_2")), &[]),
        (1_500, done("resp_k1"), &[]),
    ]);
}

#[test]
fn two_quick_keys_are_each_answered_one_response_at_a_time() {
    let mut call = Call::greeted(setup());
    call.play(vec![
        (2_000, key("1"), &[KEY_1, "create dtmf_2"]),
        // The second key comes before the first one's response was created.
        (2_010, key("2"), &[KEY_2]),
        (2_030, created("resp_k1", Some("dtmf_2")), &[]),
        (2_600, done("resp_k1"), &["create dtmf_3"]),
        (2_630, created("resp_k2", Some("dtmf_3")), &[]),
        (3_200, done("resp_k2"), &[]),
    ]);
}

#[test]
fn a_key_pressed_while_the_model_answers_the_caller_is_answered_after_it() {
    let mut call = Call::greeted(setup());
    call.play(vec![
        // Server VAD answers the caller on its own (no request tag).
        (3_000, created("resp_vad", None), &[]),
        (3_100, key("1"), &[KEY_1]),
        (3_800, done("resp_vad"), &["create dtmf_2"]),
    ]);
}

#[test]
fn a_refused_request_is_asked_for_again_after_the_response_that_refused_it() {
    let mut call = Call::live(setup());
    call.play(vec![
        // Server VAD started a reply first; the greeting is refused, then asked again.
        (20, created("resp_vad", None), &[]),
        (25, refused("greeting_1"), &[]),
        (
            600,
            done("resp_vad"),
            &["create greeting_2: Greet the caller. Say exactly: Hello, thanks for calling."],
        ),
        (620, created("resp_greet", Some("greeting_2")), &[]),
    ]);
}

#[test]
fn a_response_without_metadata_is_ours_until_its_request_is_refused() {
    let mut call = Call::live(setup());
    call.play(vec![
        // The model does not echo the tag: the response is taken for the greeting's…
        (20, created("resp_x", None), &[]),
        // …until the greeting is refused: it was the server's, and the greeting goes again.
        (25, refused("greeting_1"), &[]),
        (
            600,
            done("resp_x"),
            &["create greeting_2: Greet the caller. Say exactly: Hello, thanks for calling."],
        ),
    ]);
}

// === tool calls ===

#[test]
fn one_output_per_item_and_the_response_create_waits_for_every_call_of_the_response() {
    let mut call = Call::greeted(with_contract(contract(vec![
        webhook("lookup"),
        webhook("weather"),
    ])));
    call.play(vec![
        (3_000, created("resp_t", None), &[]),
        (
            3_010,
            function_call("c1", "fc_i1", "resp_t", "lookup", "{}"),
            &["run c1 webhook"],
        ),
        (
            3_020,
            function_call("c2", "fc_i2", "resp_t", "weather", "{}"),
            &["run c2 webhook"],
        ),
        // The first result comes before the response is done: no response.create yet.
        (
            3_030,
            tool_ok("c1", json!({"a": 1})),
            &[r#"output c1: {"a":1}"#],
        ),
        (3_300, done("resp_t"), &[]),
        // The last call of the response answered: now the model may speak about both.
        (
            3_400,
            tool_ok("c2", json!({"b": 2})),
            &[r#"output c2: {"b":2}"#, "create outputs_2"],
        ),
        // A result reported twice changes nothing.
        (3_401, tool_ok("c2", json!({"b": 3})), &[]),
    ]);
}

#[test]
fn a_repeated_invocation_id_never_runs_twice_and_each_item_gets_the_first_result() {
    let mut call = Call::greeted(with_contract(contract(vec![webhook("lookup")])));
    call.play(vec![
        (3_000, created("resp_a", None), &[]),
        (
            3_010,
            function_call("same", "item_1", "resp_a", "lookup", "{}"),
            &["run same webhook"],
        ),
        // The same item reported again: nothing.
        (
            3_011,
            function_call("same", "item_1", "resp_a", "lookup", "{}"),
            &[],
        ),
        // A retry in another response while it runs: it waits for the first result.
        (
            3_050,
            function_call("same", "item_2", "resp_a", "lookup", "{}"),
            &[],
        ),
        (3_100, done("resp_a"), &[]),
        (
            3_200,
            tool_ok("same", json!({"ok": true})),
            &[
                r#"output same: {"ok":true}"#,
                r#"output same: {"ok":true}"#,
                "create outputs_2",
            ],
        ),
        (3_210, created("resp_b", Some("outputs_2")), &[]),
        (3_800, done("resp_b"), &[]),
        // Later, in a third response: answered at once with the first result, never run.
        (5_000, created("resp_c", None), &[]),
        (
            5_010,
            function_call("same", "item_3", "resp_c", "lookup", "{}"),
            &[r#"output same: {"ok":true}"#],
        ),
        (5_100, done("resp_c"), &["create outputs_3"]),
    ]);
}

#[test]
fn an_invocation_an_earlier_stream_ran_is_answered_with_its_result() {
    let mut call = Call::live(Setup {
        prior: vec![(Speaker::Agent, GREETING.to_owned())],
        prior_invocations: vec![crate::store::PriorInvocation {
            model_call_id: String::from("old"),
            output: Some(String::from(r#"{"status":"shipped"}"#)),
        }],
        ..with_contract(contract(vec![webhook("lookup")]))
    });
    call.play(vec![
        (40, created("resp_back", Some("resume_1")), &[]),
        (900, done("resp_back"), &[]),
        (2_000, created("resp_a", None), &[]),
        (
            2_010,
            function_call("old", "item_9", "resp_a", "lookup", "{}"),
            &[r#"output old: {"status":"shipped"}"#],
        ),
        (2_100, done("resp_a"), &["create outputs_2"]),
    ]);
}

#[test]
fn refusals_and_invalid_arguments_are_answered_and_recorded_without_a_task() {
    let mut gated = webhook("balance");
    gated.requires_identity = true;
    gated.parameters =
        json!({"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]});
    let mut call = Call::greeted(with_contract(contract(vec![gated])));
    call.at(3_000, created("resp_a", None));
    let unknown = call.at(3_010, function_call("u1", "i1", "resp_a", "nope", "{}"));
    assert_eq!(
        unknown,
        [
            "record u1 refused",
            r#"output u1: {"error":"tool nope is not available"}"#
        ]
    );
    let not_object = call.at(3_020, function_call("u2", "i2", "resp_a", "balance", "[1]"));
    assert_eq!(not_object[0], "record u2 invalid");
    let gated = call.at(
        3_030,
        function_call("u3", "i3", "resp_a", "balance", r#"{"n":"1"}"#),
    );
    assert_eq!(gated[0], "record u3 refused");
    assert!(gated[1].contains("verify_identity first"), "{gated:?}");
    // Three failures, no rule: the conversation goes on once the response is done.
    assert_eq!(call.at(3_100, done("resp_a")), ["create outputs_2"]);
}

#[test]
fn a_refused_outputs_request_is_sent_again_and_a_refused_filler_never() {
    let mut slow = webhook("lookup");
    slow.filler = Some(String::from("One moment."));
    slow.filler_after_ms = 300;
    let mut call = Call::greeted(with_contract(contract(vec![slow])));
    call.play(vec![
        (3_000, created("resp_t", None), &[]),
        (
            3_010,
            function_call("c1", "i1", "resp_t", "lookup", "{}"),
            &["run c1 webhook", "timer Filler(\"c1\") 300ms"],
        ),
        (3_100, done("resp_t"), &[]),
        (
            3_310,
            Input::Timer(Timer::Filler(String::from("c1"))),
            &["create filler_2: Say exactly: One moment."],
        ),
        // Server VAD's reply got in first: the filler is refused and its moment has passed.
        (3_311, created("resp_vad", None), &[]),
        (3_312, refused("filler_2"), &[]),
        (3_900, done("resp_vad"), &[]),
        (
            4_000,
            tool_ok("c1", json!({"ok": 1})),
            &[r#"output c1: {"ok":1}"#, "create outputs_3"],
        ),
        // The outputs request is refused too (another server reply): it goes again after it.
        (4_001, created("resp_vad2", None), &[]),
        (4_002, refused("outputs_3"), &[]),
        (4_500, done("resp_vad2"), &["create outputs_4"]),
    ]);
}

#[test]
fn an_interruption_cancels_a_tool_marked_cancel_on_interrupt_without_a_response() {
    let mut tool = webhook("lookup");
    tool.cancel_on_interrupt = true;
    let mut call = Call::greeted(with_contract(contract(vec![tool])));
    call.play(vec![
        (3_000, created("resp_t", None), &[]),
        (3_010, function_call("c1", "i1", "resp_t", "lookup", "{}"), &["run c1 webhook"]),
        (3_100, done("resp_t"), &[]),
        (
            3_500,
            ai(AiEvent::SpeechStarted),
            &["cancel c1", r#"output c1: {"error":"cancelled: the caller interrupted before the tool finished"}"#],
        ),
        // Its late result is ignored.
        (4_000, tool_ok("c1", json!({"late": true})), &[]),
    ]);
}

#[test]
fn repeated_tool_failures_escalate_once_and_the_callback_line_replaces_the_reply() {
    let mut c = contract(vec![webhook("lookup")]);
    c.escalation.rules = vec![EscalationRule {
        trigger: EscalationTrigger::ToolFailures { count: 2 },
        queue: None,
    }];
    let mut call = Call::live(with_contract(c));
    let fail = |id: &str| {
        Input::ToolDone(
            id.to_owned(),
            ToolOutcome::error(FunctionCallStatus::Failed, "the tool answered HTTP 503"),
        )
    };
    call.play(vec![
        (40, created("resp_greet", Some("greeting_1")), &[]),
        (900, done("resp_greet"), &[]),
        (3_000, created("r1", None), &[]),
        (3_010, function_call("c1", "i1", "r1", "lookup", "{}"), &["run c1 webhook"]),
        (3_100, done("r1"), &[]),
        (3_200, fail("c1"), &[r#"output c1: {"error":"the tool answered HTTP 503"}"#, "create outputs_2"]),
        (3_210, created("r2", Some("outputs_2")), &[]),
        (3_800, done("r2"), &[]),
        (5_000, created("r3", None), &[]),
        (5_010, function_call("c2", "i2", "r3", "lookup", "{}"), &["run c2 webhook"]),
        (5_100, done("r3"), &[]),
        // The second failure fires the rule: no response until the escalation is resolved.
        (
            5_200,
            fail("c2"),
            &[r#"output c2: {"error":"the tool answered HTTP 503"}"#, "escalate tool_failures to -"],
        ),
        (
            5_250,
            Input::Escalated(Resolution::Callback(Ok(String::from("cbt_1")))),
            &[
                "timer Line(1) 20000ms",
                "create line_3: Say exactly: Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.",
            ],
        ),
        (5_260, created("r4", Some("line_3")), &[]),
        (8_000, done("r4"), &["watch drain"]),
        (8_500, Input::PlaybackDrained, &[]),
    ]);
    // A third failure: the rule fired once per call.
    call.at(9_000, created("r5", None));
    call.at(9_010, function_call("c3", "i3", "r5", "lookup", "{}"));
    let third = call.at(9_020, fail("c3"));
    assert!(
        !third.iter().any(|e| e.starts_with("escalate")),
        "{third:?}"
    );
}

// === lines ===

#[test]
fn end_call_hangs_up_only_once_the_goodbye_played() {
    let mut call = Call::greeted(with_contract(contract(vec![builtin("end_call")])));
    call.play(vec![
        (3_000, created("r1", None), &[]),
        (
            3_010,
            function_call("c1", "i1", "r1", "end_call", "{}"),
            &[
                "timer Line(1) 20000ms",
                "record c1 succeeded",
                r#"output c1: {"instructions":"Say a brief goodbye now; the call ends when you finish speaking.","status":"ending"}"#,
            ],
        ),
        // The goodbye is the model's reply to the output.
        (3_100, done("r1"), &["create outputs_2"]),
        (3_110, created("r2", Some("outputs_2")), &[]),
        (3_900, done("r2"), &["watch drain"]),
        // Still playing when the response is done; the mark echo that drains it acts.
        (5_400, Input::PlaybackDrained, &["control hangup then hangup"]),
        (5_600, Input::ControlDone(ControlReport::Hangup(Ok(()))), &[]),
        // The carrier hangs up: Twilio's `stop` ends the leg for the agent's reason.
        (5_700, Input::TwilioStopped, &["end agent_ended_call hangup completed"]),
        // Nothing after the end.
        (5_800, Input::TwilioGone(EndReason::SocketClosed, None), &[]),
    ]);
}

#[test]
fn a_goodbye_that_never_drains_hangs_up_at_its_deadline() {
    let mut call = Call::greeted(with_contract(contract(vec![builtin("end_call")])));
    call.at(3_000, created("r1", None));
    call.at(3_010, function_call("c1", "i1", "r1", "end_call", "{}"));
    call.play(vec![
        (3_100, done("r1"), &["create outputs_2"]),
        (3_110, created("r2", Some("outputs_2")), &[]),
        (3_900, done("r2"), &["watch drain"]),
        (
            23_010,
            Input::Timer(Timer::Line(1)),
            &["control hangup then hangup"],
        ),
    ]);
}

#[test]
fn an_earlier_lines_deadline_never_acts_on_a_later_line() {
    let mut c = contract(vec![builtin("end_call")]);
    c.escalation.rules = vec![EscalationRule {
        trigger: EscalationTrigger::ToolFailures { count: 1 },
        queue: None,
    }];
    c.tools.push(webhook("lookup"));
    let mut call = Call::greeted(with_contract(c));
    // Line 1: a callback notice after a failed tool.
    call.at(3_000, created("r1", None));
    call.at(3_010, function_call("c1", "i1", "r1", "lookup", "{}"));
    call.at(3_100, done("r1"));
    call.at(
        3_200,
        Input::ToolDone(
            String::from("c1"),
            ToolOutcome::error(FunctionCallStatus::Failed, "down"),
        ),
    );
    call.play(vec![
        (
            3_300,
            Input::Escalated(Resolution::Callback(Ok(String::from("cbt_1")))),
            &[
                "timer Line(1) 20000ms",
                "create line_2: Say exactly: Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.",
            ],
        ),
        (3_310, created("r2", Some("line_2")), &[]),
        (6_000, done("r2"), &["watch drain"]),
        (6_500, Input::PlaybackDrained, &[]),
        // Line 2: end_call's goodbye, planned at 10 s.
        (10_000, created("r3", None), &[]),
        (10_010, function_call("c2", "i2", "r3", "end_call", "{}"), &[
            "timer Line(2) 20000ms",
            "record c2 succeeded",
            r#"output c2: {"instructions":"Say a brief goodbye now; the call ends when you finish speaking.","status":"ending"}"#,
        ]),
        // Line 1's deadline (23.3 s) comes while line 2's goodbye is still being asked for:
        // it acts on nothing.
        (23_300, Input::Timer(Timer::Line(1)), &[]),
        (23_400, done("r3"), &["create outputs_3"]),
        (23_410, created("r4", Some("outputs_3")), &[]),
        (24_000, done("r4"), &["watch drain"]),
        (25_000, Input::PlaybackDrained, &["control hangup then hangup"]),
    ]);
}

#[test]
fn a_refused_exact_line_is_asked_for_again_after_the_reply_that_beat_it() {
    let mut c = contract(vec![]);
    c.escalation = EscalationSettings {
        default_queue: Some(String::from("support")),
        handoff_line: Some(String::from("Connecting you now.")),
        rules: vec![EscalationRule {
            trigger: EscalationTrigger::CallerAsksForHuman {
                patterns: vec![String::from("human")],
            },
            queue: None,
        }],
    };
    let mut call = Call::live(with_contract(c));
    let plan = DialPlan {
        handoff_id: crate::ids::HandoffId::generate(),
        numbers: vec![String::from("+15550002222")],
        caller_id: None,
        timeout_secs: 20,
        announcement: None,
        queue: String::from("support"),
    };
    call.play(vec![
        (40, created("resp_greet", Some("greeting_1")), &[]),
        (900, done("resp_greet"), &[]),
        (
            3_000,
            heard("u1", "a human please"),
            &[
                "turn user: a human please",
                "escalate caller_asks_for_human to support",
            ],
        ),
        (
            3_020,
            Input::Escalated(Resolution::Dial(plan)),
            &[
                "timer Line(1) 20000ms",
                "create line_2: Say exactly: Connecting you now.",
            ],
        ),
        // Server VAD's reply to the turn was created first; the line is refused…
        (3_021, created("resp_vad", None), &[]),
        (3_022, refused("line_2"), &[]),
        // …said after it, played out, then the queue is dialed.
        (
            3_600,
            done("resp_vad"),
            &["create line_3: Say exactly: Connecting you now."],
        ),
        (3_610, created("resp_line", Some("line_3")), &[]),
        (4_200, done("resp_line"), &["watch drain"]),
        (
            4_900,
            Input::PlaybackDrained,
            &["control handoff then handoff"],
        ),
        (5_000, Input::ControlDone(ControlReport::Dial(Ok(()))), &[]),
        // The carrier redirects the call: the leg ends escalated, the call continues.
        (
            5_100,
            Input::TwilioStopped,
            &["end escalated handoff completed"],
        ),
    ]);
}

#[test]
fn escalation_happens_once_per_call() {
    let mut c = contract(vec![builtin("transfer_to_human")]);
    c.escalation.rules = vec![EscalationRule {
        trigger: EscalationTrigger::CallerAsksForHuman {
            patterns: vec![String::from("human")],
        },
        queue: Some(String::from("support")),
    }];
    let mut call = Call::greeted(with_contract(c));
    assert_eq!(
        call.at(2_000, heard("u1", "human")),
        [
            "turn user: human",
            "escalate caller_asks_for_human to support"
        ]
    );
    // While it resolves, the model's transfer tool is refused and nothing else escalates.
    call.at(2_010, created("r1", None));
    assert_eq!(
        call.at(
            2_020,
            function_call("t1", "i1", "r1", "transfer_to_human", "{}")
        ),
        [
            "record t1 refused",
            r#"output t1: {"error":"a transfer is already in progress for this call"}"#
        ]
    );
    assert_eq!(
        call.at(2_030, heard("u2", "human!!")),
        ["turn user: human!!"]
    );
}

#[test]
fn a_closed_queue_that_keeps_the_caller_allows_a_later_escalation() {
    let mut call = Call::greeted(with_contract(contract(vec![builtin("transfer_to_human")])));
    call.at(2_000, created("r1", None));
    call.play(vec![
        (2_010, function_call("t1", "i1", "r1", "transfer_to_human", r#"{"reason":"bill"}"#), &["escalate tool:transfer_to_human to -"]),
        (2_100, done("r1"), &[]),
        (
            2_200,
            Input::Escalated(Resolution::StayWithAgent {
                queue: String::from("support"),
            }),
            &[
                "timer Line(1) 20000ms",
                r#"record t1 succeeded"#,
                r#"output t1: {"instructions":"No human is available now: tell the caller and keep helping them yourself.","queue":"support","status":"unavailable"}"#,
                "create outputs_2",
            ],
        ),
    ]);
    call.at(2_210, created("r2", Some("outputs_2")));
    call.at(3_000, done("r2"));
    call.at(3_500, Input::PlaybackDrained);
    call.at(5_000, created("r3", None));
    assert_eq!(
        call.at(
            5_010,
            function_call("t2", "i2", "r3", "transfer_to_human", "{}")
        ),
        ["escalate tool:transfer_to_human to -"]
    );
}

#[test]
fn a_refused_dial_keeps_the_caller_with_the_agent_and_says_so() {
    let mut call = Call::live(with_contract(contract(vec![builtin("transfer_to_human")])));
    let plan = DialPlan {
        handoff_id: crate::ids::HandoffId::generate(),
        numbers: vec![String::from("+15550002222")],
        caller_id: None,
        timeout_secs: 20,
        announcement: None,
        queue: String::from("support"),
    };
    call.at(40, created("resp_greet", Some("greeting_1")));
    call.at(900, done("resp_greet"));
    call.at(2_000, created("r1", None));
    call.at(
        2_010,
        function_call("t1", "i1", "r1", "transfer_to_human", "{}"),
    );
    call.at(2_100, done("r1"));
    call.at(2_200, Input::Escalated(Resolution::Dial(plan)));
    call.at(2_210, created("r2", Some("outputs_2")));
    call.play(vec![
        (3_000, done("r2"), &["watch drain"]),
        (3_500, Input::PlaybackDrained, &["control handoff then handoff"]),
        (
            3_600,
            Input::ControlDone(ControlReport::Dial(Err(true))),
            &[
                "timer Line(2) 20000ms",
                "create line_3: Say exactly: Nobody is available to take your call right now, so I've arranged for a colleague to call you back as soon as possible.",
            ],
        ),
        (3_610, created("r3", Some("line_3")), &[]),
        (6_000, done("r3"), &["watch drain"]),
        (6_100, Input::PlaybackDrained, &[]),
        // The caller stays: a hang-up now is the caller's.
        (9_000, Input::TwilioStopped, &["end caller_hangup - completed"]),
    ]);
}

// === idle ===

#[test]
fn the_idle_timeout_says_goodbye_only_when_nothing_happened_since() {
    let mut call = Call::live(Setup {
        idle_timeout: Some(Duration::from_secs(5)),
        ..setup()
    });
    call.play(vec![
        (40, created("resp_greet", Some("greeting_1")), &[]),
        // The greeting's done is activity: a new idle epoch.
        (900, done("resp_greet"), &["timer Idle(2) 5000ms"]),
        // The timer of the first epoch is stale.
        (5_000, Input::Timer(Timer::Idle(1)), &[]),
        // A model response in flight holds the idle check back.
        (5_800, created("resp_vad", None), &[]),
        (5_900, Input::Timer(Timer::Idle(2)), &[]),
        (6_000, done("resp_vad"), &["timer Idle(3) 5000ms"]),
        (
            11_000,
            Input::Timer(Timer::Idle(3)),
            &[
                "event idle_timeout",
                "timer Line(1) 20000ms",
                "create line_2: Say exactly: I haven't heard anything for a while, so I'll end the call now. Goodbye!",
            ],
        ),
        (11_020, created("resp_bye", Some("line_2")), &[]),
        (13_000, done("resp_bye"), &["timer Idle(4) 5000ms", "watch drain"]),
        // The goodbye is playing: a new idle epoch does not plan a second goodbye.
        (18_000, Input::Timer(Timer::Idle(4)), &[]),
        (18_500, Input::PlaybackDrained, &["control hangup then hangup"]),
        (18_700, Input::TwilioStopped, &["end idle_timeout hangup completed"]),
    ]);
}

#[test]
fn caller_speech_restarts_the_idle_timer() {
    let mut call = Call::greeted(Setup {
        idle_timeout: Some(Duration::from_secs(5)),
        ..setup()
    });
    call.play(vec![
        (4_000, ai(AiEvent::SpeechStarted), &["timer Idle(3) 5000ms"]),
        (5_900, Input::Timer(Timer::Idle(2)), &[]),
    ]);
}

// === barge-in and transcripts ===

#[test]
fn heard_prefix_is_proportional_and_bounded() {
    assert_eq!(
        heard_prefix("Hello there, how are you", 500, 1000),
        "Hello there,"
    );
    assert_eq!(heard_prefix("abc", 5000, 1000), "abc");
    assert_eq!(heard_prefix("abc", 0, 0), "");
}

#[test]
fn a_barge_in_truncates_to_what_was_heard_and_the_transcript_keeps_it() {
    let mut call = Call::live(setup());
    call.at(40, created("resp_greet", Some("greeting_1")));
    call.play(vec![
        (
            400,
            Input::BargeIn(Interruption {
                item_id: String::from("item_g"),
                heard_ms: 500,
                sent_ms: 1_000,
            }),
            &["truncate item_g at 500"],
        ),
        (
            450,
            said("item_g", GREETING),
            &["turn assistant: Hello, thanks"],
        ),
        (460, said("item_other", "Sure."), &["turn assistant: Sure."]),
    ]);
}

// === the end of the leg ===

#[test]
fn a_dropped_ai_socket_reconnects_with_the_conversation_then_fails_over_when_lost_again_soon() {
    let mut call = Call::live(setup());
    call.at(40, created("resp_greet", Some("greeting_1")));
    call.at(41, said("item_g", GREETING));
    call.at(900, done("resp_greet"));
    call.play(vec![
        (
            1_200,
            Input::AiClosed(String::from("reset")),
            &[
                "record reconnect",
                "event ai reconnect",
                "connect replaying 1",
            ],
        ),
        (1_300, Input::AiConnected, &[]),
        // No second greeting on the new session.
        (1_310, ai(AiEvent::SessionUpdated), &[]),
        (
            4_000,
            Input::AiClosed(String::from("reset again")),
            &["event ai failed", "end ai_failed fallback failed"],
        ),
    ]);
}

#[test]
fn a_model_socket_is_reconnected_again_once_the_interval_has_passed() {
    let mut call = Call::greeted(setup());
    let reconnected: &[&str] = &[
        "record reconnect",
        "event ai reconnect",
        "connect replaying 0",
    ];
    call.play(vec![
        (1_200, Input::AiClosed(String::from("reset")), reconnected),
        (1_300, Input::AiConnected, &[]),
        (1_310, ai(AiEvent::SessionUpdated), &[]),
        // 30 s after the last reconnect: another one.
        (31_200, Input::AiClosed(String::from("reset")), reconnected),
        (31_300, Input::AiConnected, &[]),
        (31_310, ai(AiEvent::SessionUpdated), &[]),
        (
            40_000,
            Input::AiClosed(String::from("reset")),
            &["event ai failed", "end ai_failed fallback failed"],
        ),
    ]);
    // Without reconnects, the first loss fails over.
    let mut never = Call::greeted(Setup {
        ai_reconnect: None,
        ..setup()
    });
    let effects = never.raw(1_200, Input::AiClosed(String::from("reset")));
    let Some(Effect::End(ending)) = effects.last() else {
        panic!("the leg ends: {effects:?}")
    };
    assert_eq!(ending.detail.as_deref(), Some("closed: reset"));
}

#[test]
fn a_failed_connection_hands_the_caller_to_the_fallback_with_its_detail() {
    let (mut call, _) = Call::new(setup());
    let effects = call.raw(
        3_000,
        Input::AiConnectFailed(String::from("ai connect failed: HTTP 503")),
    );
    let Some(Effect::End(ending)) = effects.last() else {
        panic!("the leg ends: {effects:?}")
    };
    assert_eq!(ending.reason, EndReason::AiFailed);
    assert_eq!(ending.continuation, Some(Continuation::Fallback));
    assert_eq!(ending.status, SessionStatus::Failed);
    assert_eq!(
        ending.detail.as_deref(),
        Some("connect failed: ai connect failed: HTTP 503")
    );
}

#[test]
fn a_fatal_model_error_fails_over() {
    let mut call = Call::live(setup());
    call.play(vec![(
        100,
        ai(AiEvent::Error {
            code: Some(String::from("invalid_api_key")),
            message: String::from("bad key"),
            event_id: None,
        }),
        &["event ai failed", "end ai_failed fallback failed"],
    )]);
}

#[test]
fn the_end_cancels_running_tools_and_records_calls_still_being_answered() {
    let mut call = Call::greeted(with_contract(contract(vec![
        webhook("lookup"),
        builtin("transfer_to_human"),
    ])));
    call.at(2_000, created("r1", None));
    call.at(2_010, function_call("c1", "i1", "r1", "lookup", "{}"));
    call.at(
        2_020,
        function_call("t1", "i2", "r1", "transfer_to_human", "{}"),
    );
    call.play(vec![(
        2_500,
        Input::TwilioGone(EndReason::SocketError, None),
        &[
            "cancel c1",
            "record t1 cancelled",
            "end socket_error - completed",
        ],
    )]);
}

#[test]
fn the_maximum_duration_ends_the_call_with_a_hang_up() {
    let mut call = Call::live(setup());
    call.play(vec![(
        600_000,
        Input::Timer(Timer::MaxDuration),
        &["end max_duration hangup completed"],
    )]);
}

#[test]
fn identity_verification_opens_gated_tools() {
    let mut gated = webhook("balance");
    gated.requires_identity = true;
    let mut c = contract(vec![gated, builtin("verify_identity")]);
    c.identity = Some(IdentityCheck {
        url: String::from("https://id.example.com"),
        fields: vec![String::from("zip")],
        timeout_ms: 1_000,
    });
    let mut call = Call::greeted(with_contract(c));
    call.at(2_000, created("r1", None));
    assert_eq!(
        call.at(
            2_010,
            function_call("v1", "i1", "r1", "verify_identity", r#"{"zip":"1"}"#)
        ),
        ["run v1 identity"]
    );
    let verified = Input::ToolDone(
        String::from("v1"),
        ToolOutcome {
            identity: Some(true),
            ..ToolOutcome::ok(json!({"verified": true}))
        },
    );
    assert_eq!(
        call.at(2_100, verified),
        ["identity verified", r#"output v1: {"verified":true}"#]
    );
    assert_eq!(
        call.at(2_110, function_call("b1", "i2", "r1", "balance", "{}")),
        ["run b1 webhook"]
    );
}

#[test]
fn a_resumed_stream_tells_the_caller_why_the_agent_is_back() {
    for (cut_off, line) in [
        (false, super::RESUME_AFTER_HANDOFF),
        (true, super::RESUME_AFTER_CUT),
    ] {
        let (mut call, _) = Call::new(Setup {
            prior: vec![(Speaker::Agent, GREETING.to_owned())],
            cut_off,
            ..setup()
        });
        call.at(0, Input::AiConnected);
        let effects = call.raw(10, ai(AiEvent::SessionUpdated));
        let asked = format!("{effects:?}");
        assert!(asked.contains(line), "cut off {cut_off}: {asked}");
    }
}

#[test]
fn a_lost_twilio_leg_resumes_on_a_fresh_stream_at_most_once_per_interval() {
    let resumable = Setup {
        resume_lost_leg: Some(Duration::from_secs(30)),
        ..setup()
    };
    // A first leg lost without `stop` asks for a fresh stream.
    let mut call = Call::live(resumable.clone());
    call.play(vec![(
        2_000,
        Input::TwilioGone(EndReason::SocketError, None),
        &["end socket_error resume completed"],
    )]);
    // A leg that itself resumed the call resumes again only once the interval has passed.
    let resumed = Setup {
        prior: vec![(Speaker::Agent, GREETING.to_owned())],
        ..resumable.clone()
    };
    let mut call = Call::live(resumed.clone());
    call.play(vec![(
        5_000,
        Input::TwilioGone(EndReason::SocketClosed, None),
        &["end socket_closed - completed"],
    )]);
    let mut call = Call::live(resumed);
    call.play(vec![(
        30_000,
        Input::TwilioGone(EndReason::SocketClosed, None),
        &["end socket_closed resume completed"],
    )]);
    // A write failure is not a lost leg, and a caller's `stop` is a hang-up.
    let mut call = Call::live(resumable.clone());
    call.play(vec![(
        2_000,
        Input::TwilioGone(EndReason::TwilioStalled, None),
        &["end twilio_stalled - completed"],
    )]);
    let mut call = Call::live(resumable);
    call.play(vec![(
        2_000,
        Input::TwilioStopped,
        &["end caller_hangup - completed"],
    )]);
}

#[test]
fn a_draining_node_hands_a_live_call_to_a_fresh_stream_and_ends_when_the_carrier_does() {
    let mut call = Call::greeted(setup());
    call.play(vec![
        (
            5_000,
            Input::Drain { resume: true },
            &["control resume then resume"],
        ),
        // Asked again (a second signal): nothing more.
        (5_001, Input::Drain { resume: true }, &[]),
        (
            5_050,
            Input::ControlDone(ControlReport::Redirect(Ok(()))),
            &[],
        ),
    ]);
    let effects = call.raw(5_100, Input::TwilioStopped);
    let Some(Effect::End(ending)) = effects.last() else {
        panic!("the leg ends: {effects:?}")
    };
    assert_eq!(ending.reason, EndReason::Drained);
    assert_eq!(ending.continuation, Some(Continuation::Resume));
    assert_eq!(ending.status, SessionStatus::Completed);
    // The carrier already runs the fresh stream: `stream-ended` is not asked.
    assert!(ending.redirected);
}

#[test]
fn a_draining_node_without_a_peer_hands_the_caller_to_the_fallback() {
    let mut call = Call::greeted(setup());
    call.play(vec![
        (
            5_000,
            Input::Drain { resume: false },
            &["control fallback then fallback"],
        ),
        (
            5_100,
            Input::TwilioGone(EndReason::SocketClosed, None),
            &["end drained fallback completed"],
        ),
    ]);
}

#[test]
fn a_refused_drain_redirect_closes_the_stream_for_stream_ended_to_follow() {
    let mut call = Call::greeted(setup());
    call.at(5_000, Input::Drain { resume: true });
    let effects = call.raw(
        5_050,
        Input::ControlDone(ControlReport::Redirect(Err(String::from("HTTP 503")))),
    );
    let Some(Effect::End(ending)) = effects.last() else {
        panic!("the leg ends: {effects:?}")
    };
    assert_eq!(ending.reason, EndReason::Drained);
    assert_eq!(ending.continuation, Some(Continuation::Resume));
    assert_eq!(ending.detail.as_deref(), Some("HTTP 503"));
    // Recorded for `stream-ended`, which the carrier asks once the stream closes.
    assert!(!ending.redirected);
}

#[test]
fn a_drain_leaves_a_leg_the_agent_is_already_closing() {
    let mut call = Call::greeted(setup());
    // The agent's goodbye: closing for its own reason.
    call.c.leg = Leg::Closing {
        reason: EndReason::AgentEndedCall,
        continuation: Continuation::Hangup,
    };
    call.play(vec![
        (5_000, Input::Drain { resume: true }, &[]),
        (
            5_100,
            Input::TwilioStopped,
            &["end agent_ended_call hangup completed"],
        ),
    ]);
}
