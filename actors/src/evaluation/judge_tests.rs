//! Tests of the judge: what it is shown (numbered, redacted, bounded), how its answer is
//! checked, and the client against a loopback endpoint (answer, error status, invalid JSON,
//! timeout, nobody listening).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::evaluation::fixtures::{FakeJudge, JudgeMode};
use crate::evaluation::input::{Speaker, ToolInvocation, Turn};
use crate::store::FunctionCallStatus;

fn turn(speaker: Speaker, text: &str, end_ms: i64) -> Turn {
    Turn {
        speaker,
        text: text.into(),
        heard_text: None,
        interrupted: false,
        start_ms: None,
        end_ms: Some(end_ms),
        response_gap_ms: None,
    }
}

fn input() -> EvaluationInput {
    let mut cut = turn(
        Speaker::Agent,
        "Your card 4111 1111 1111 1111 is on file and",
        6_000,
    );
    cut.interrupted = true;
    cut.heard_text = Some("Your card 4111 1111 1111 1111 is".into());
    EvaluationInput {
        turns: vec![
            turn(Speaker::Agent, "Hello, thanks for calling.", 1_000),
            turn(
                Speaker::Caller,
                "My api key is sk-proj-abcdefghijklmnopqrstuv, where is order A1?",
                3_000,
            ),
            cut,
        ],
        tool_calls: vec![ToolInvocation {
            name: "lookup_order".into(),
            arguments: json!({"order_id": "A1", "password": "hunter2"}),
            status: FunctionCallStatus::Succeeded,
            result: Some(json!({"status": "shipped", "token": "abc"})),
            error: None,
            started_ms: 3_500,
            finished_ms: Some(3_600),
        }],
        end_reason: Some("caller_hangup".into()),
        ..EvaluationInput::default()
    }
}

const QUESTIONS: [(&str, &str, JudgePass); 2] = [
    ("resolved", "Did the agent resolve it?", JudgePass::Yes),
    ("tone", "How polite was the agent?", JudgePass::MinScore(4)),
];

#[test]
fn the_judge_sees_numbered_redacted_turns_and_tool_results() {
    let built = JudgeInput::build(&input(), &QUESTIONS, 10_000);
    assert_eq!(built.turn_count, 3);
    assert_eq!(built.turns.len(), 3);
    assert_eq!(built.turns[1].turn, 1);
    assert_eq!(built.turns[1].speaker, "caller");
    assert!(built.turns[2].interrupted);
    assert!(
        built.turns[2].text.ends_with("is"),
        "what the caller heard: {}",
        built.turns[2].text
    );
    assert_eq!(built.criteria[1].answer, AnswerScale::Score1To5);
    assert_eq!(built.tool_calls[0].after_turn, Some(1));
    assert_eq!(built.ended_because.as_deref(), Some("caller_hangup"));
    let sent = serde_json::to_string(&built).expect("json");
    for secret in [
        "sk-proj-abcdefghijklmnopqrstuv",
        "4111 1111",
        "hunter2",
        "\"abc\"",
    ] {
        assert!(!sent.contains(secret), "{secret} leaked: {sent}");
    }
    assert!(sent.contains("[redacted]"));
    // The same JSON is what the simulator parses back.
    let back: JudgeInput = serde_json::from_str(&sent).expect("parses back");
    assert_eq!(back, built);
}

#[test]
fn a_long_transcript_loses_its_middle_and_says_so() {
    let mut long = EvaluationInput::default();
    for i in 0..40 {
        let speaker = if i % 2 == 0 {
            Speaker::Agent
        } else {
            Speaker::Caller
        };
        long.turns.push(turn(
            speaker,
            &format!("turn {i} {}", "x".repeat(84)),
            i * 1000,
        ));
    }
    let built = JudgeInput::build(&long, &[], 1_000);
    let omitted = built.omitted_turns.expect("omitted");
    assert!(omitted.from > 0 && omitted.to < 39 && omitted.from <= omitted.to);
    assert_eq!(built.turns.first().map(|t| t.turn), Some(0));
    assert_eq!(built.turns.last().map(|t| t.turn), Some(39));
    assert!(
        built
            .turns
            .iter()
            .all(|t| t.turn < omitted.from || t.turn > omitted.to)
    );
    assert_eq!(built.turns.len() + (omitted.to - omitted.from + 1), 40);
    let text: usize = built.turns.iter().map(|t| t.text.len() + 16).sum();
    assert!(text <= 1_000, "{text}");
    assert!(SYSTEM_PROMPT.contains("omitted_turns"));
    let short = JudgeInput::build(&input(), &[], 100_000);
    assert_eq!(short.omitted_turns, None);
}

#[test]
fn the_request_asks_for_strict_structured_output() {
    let built = JudgeInput::build(&input(), &QUESTIONS, 10_000);
    let body = request_body("gpt-test", &built);
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["messages"][0]["role"], "system");
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    let item = &format["json_schema"]["schema"]["properties"]["judgments"]["items"];
    assert_eq!(
        item["properties"]["key"]["enum"],
        json!(["resolved", "tone"])
    );
    assert_eq!(item["additionalProperties"], false);
    let summary_only = response_format(&[]);
    assert_eq!(
        summary_only["json_schema"]["schema"]["properties"]["judgments"]["items"]["properties"]["key"],
        json!({"type": "string"})
    );
}

fn completion(content: &Value) -> Vec<u8> {
    json!({
        "model": "gpt-x-2026",
        "choices": [{"message": {"role": "assistant", "content": content.to_string()}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn answers_are_checked() {
    let good = json!({
        "summary": "  The caller asked about an order.  ",
        "tags": ["Order Status", "order-status", "", "refund", "a", "b", "c", "d", "e", "f"],
        "judgments": [
            {"key": "resolved", "verdict": "yes", "score": 5, "evidence_turns": [1, 1, 7, -2], "rationale": "ok"},
            {"key": "tone", "verdict": "no", "score": 2, "evidence_turns": [], "rationale": "curt"},
            {"key": "extra", "verdict": "no", "score": 2, "evidence_turns": [], "rationale": "ignored"}
        ]
    });
    let (out, model, prompt, completion_tokens) =
        parse_completion(&completion(&good), &["resolved", "tone"], 3).expect("valid");
    assert_eq!(model, "gpt-x-2026");
    assert_eq!((prompt, completion_tokens), (10, 5));
    assert_eq!(out.summary, "The caller asked about an order.");
    assert_eq!(out.tags.len(), 8);
    assert_eq!(&out.tags[..2], ["order_status", "refund"]);
    assert_eq!(out.judgments.len(), 2);
    assert_eq!(out.judgments[0].evidence_turns, vec![1]);

    let missing = json!({"summary": "", "tags": [], "judgments": [
        {"key": "resolved", "verdict": "yes", "score": 5, "evidence_turns": [], "rationale": ""}
    ]});
    let bad_score = json!({"summary": "", "tags": [], "judgments": [
        {"key": "resolved", "verdict": "yes", "score": 9, "evidence_turns": [], "rationale": ""}
    ]});
    let bad_verdict = json!({"summary": "", "tags": [], "judgments": [
        {"key": "resolved", "verdict": "maybe", "score": 3, "evidence_turns": [], "rationale": ""}
    ]});
    for (body, keys) in [
        (completion(&missing), vec!["resolved", "tone"]),
        (completion(&bad_score), vec!["resolved"]),
        (completion(&bad_verdict), vec!["resolved"]),
        (b"not json".to_vec(), vec![]),
        (json!({"choices": []}).to_string().into_bytes(), vec![]),
        (
            json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that"}}]})
                .to_string()
                .into_bytes(),
            vec![],
        ),
    ] {
        let err = parse_completion(&body, &keys, 3).expect_err("invalid");
        assert!(matches!(err, JudgeError::Invalid(_)), "{err}");
        assert_eq!(err.label(), "invalid");
        assert!(err.is_retryable());
    }
}

fn settings(base_url: &str, timeout: Duration) -> JudgeSettings {
    JudgeSettings {
        base_url: base_url.to_owned(),
        model: "judge-model".into(),
        timeout,
        max_transcript_chars: 10_000,
        api_key: Some("sk-service-key-0123456789".into()),
        summaries: true,
    }
}

#[tokio::test]
async fn the_client_reports_answers_and_each_failure() {
    let judge_server = FakeJudge::start(JudgeMode::Answer(HashMap::from([(
        "tone".to_owned(),
        (Answer::No, 2),
    )])))
    .await;
    let judge =
        Judge::new(settings(&judge_server.base_url, Duration::from_secs(5))).expect("client");
    let request = JudgeInput::build(&input(), &QUESTIONS, 10_000);
    let key = judge.key(None).expect("service key");
    let call = judge.ask(key, &request).await.expect("answer");
    assert_eq!(call.model, "fake-judge-1");
    assert_eq!((call.input_tokens, call.output_tokens), (321, 45));
    assert!(call.latency_ms >= 0);
    assert_eq!(call.output.summary, "A call of 3 turns.");
    assert_eq!(call.output.tags, vec!["order_status", "test"]);
    assert_eq!(call.output.judgments[1].verdict, Answer::No);
    assert_eq!(
        call.output.judgments[0].evidence_turns,
        vec![0],
        "a turn that does not exist is dropped"
    );
    let sent: Value = serde_json::from_str(&judge_server.bodies()[0]).expect("body");
    assert_eq!(sent["model"], "judge-model");
    assert!(!judge_server.bodies()[0].contains("hunter2"));
    assert_eq!(judge.key(Some("tenant-key")), Some("tenant-key"));

    judge_server.set_mode(JudgeMode::Status(503));
    let err = judge.ask(key, &request).await.expect_err("503");
    assert_eq!(
        err,
        JudgeError::Status {
            status: 503,
            message: "simulated failure".into()
        }
    );
    assert_eq!(err.label(), "http_error");

    judge_server.set_mode(JudgeMode::InvalidJson);
    let err = judge.ask(key, &request).await.expect_err("invalid");
    assert_eq!(err.label(), "invalid");

    judge_server.set_mode(JudgeMode::Hang);
    let quick =
        Judge::new(settings(&judge_server.base_url, Duration::from_millis(200))).expect("client");
    let err = quick.ask(key, &request).await.expect_err("timeout");
    assert_eq!(err, JudgeError::Timeout(200));

    // Nobody listens on a port that was just released.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let unreachable = Judge::new(settings(
        &format!("http://{addr}/v1"),
        Duration::from_secs(2),
    ))
    .expect("client");
    let err = unreachable.ask(key, &request).await.expect_err("refused");
    assert_eq!(err.label(), "transport", "{err}");
    assert!(!err.to_string().contains("sk-service-key"));

    let no_key = Judge::new(JudgeSettings {
        api_key: None,
        ..settings(&judge_server.base_url, Duration::from_secs(1))
    })
    .expect("client");
    assert_eq!(no_key.key(None), None);
    assert!(!JudgeError::NoKey.is_retryable());
    assert!(!format!("{:?}", settings("x", Duration::ZERO)).contains("sk-service-key"));
}
