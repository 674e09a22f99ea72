//! Table-driven tests of scoring: every criterion kind with a passing and a failing
//! conversation (and where it has one, the case where it does not apply), critical
//! criteria, the judge's part, and the call's score.

use serde_json::{Value, json};

use super::*;
use crate::evaluation::input::{HandoffEvent, ReportedIntent, ToolInvocation};
use crate::evaluation::rubric::Rubric;

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

fn agent(text: &str, end_ms: i64) -> Turn {
    turn(Speaker::Agent, text, end_ms)
}

fn caller(text: &str, end_ms: i64) -> Turn {
    turn(Speaker::Caller, text, end_ms)
}

fn tool(name: &str, status: FunctionCallStatus, at: i64, result: Option<Value>) -> ToolInvocation {
    ToolInvocation {
        name: name.into(),
        arguments: json!({}),
        status,
        result,
        error: None,
        started_ms: at,
        finished_ms: Some(at + 50),
    }
}

fn handoff(at_ms: i64) -> HandoffEvent {
    HandoffEvent {
        rule: "caller_asks_for_human".into(),
        queue: Some("support".into()),
        reason: "asked".into(),
        status: "dialing".into(),
        at_ms,
    }
}

/// A typical conversation: greeting with disclosure, an order question answered by a
/// successful lookup after identity verification, a request for a human and a handoff.
fn conversation() -> EvaluationInput {
    let mut greeting = agent(
        "Thanks for calling Acme, this call is recorded. How can I help?",
        2_000,
    );
    greeting.response_gap_ms = None;
    let mut order_answer = agent("Your order A1 shipped yesterday.", 9_000);
    order_answer.response_gap_ms = Some(800);
    let mut handoff_line = agent("Sure, connecting you to a colleague now.", 14_000);
    handoff_line.response_gap_ms = Some(1_100);
    EvaluationInput {
        turns: vec![
            greeting,
            caller("Where is my order A1?", 5_000),
            order_answer,
            caller("Can I talk to a real person?", 12_000),
            handoff_line,
        ],
        tool_calls: vec![
            tool(
                "verify_identity",
                FunctionCallStatus::Succeeded,
                5_500,
                Some(json!({"verified": true})),
            ),
            tool(
                "lookup_order",
                FunctionCallStatus::Succeeded,
                6_000,
                Some(json!({"status": "shipped", "eta": {"days": 2}})),
            ),
            tool("report_intent", FunctionCallStatus::Succeeded, 6_500, None),
        ],
        handoffs: vec![handoff(13_000)],
        identity_verified_ms: Some(5_550),
        intents: vec![ReportedIntent {
            intent: "order_status".into(),
            at_ms: 6_500,
        }],
        first_audio_ms: Some(900),
        duration_ms: Some(15_000),
        end_reason: Some("escalated".into()),
        outcome: None,
        errored: false,
        answered_by_machine: None,
    }
}

fn compiled(criteria: Value) -> CompiledRubric {
    let rubric: Rubric =
        serde_json::from_value(json!({"pass_score": 0.8, "criteria": criteria})).expect("json");
    CompiledRubric::compile(rubric).expect("valid")
}

fn one(criterion: Value, input: &EvaluationInput) -> CriterionResult {
    let card = score(
        &compiled(json!([criterion])),
        input,
        &JudgeAnswer::Answered(Vec::new()),
    );
    card.criteria.into_iter().next().expect("one criterion")
}

/// (criterion, expected verdict on [`conversation`], expected verdict on the variant).
type Case = (Value, Verdict, fn(&mut EvaluationInput), Verdict);

#[test]
fn every_kind_passes_and_fails() {
    let cases: Vec<Case> = vec![
        (
            json!({"key": "k", "kind": "required_phrase", "pattern": "call is recorded", "within_seconds": 5}),
            Verdict::Passed,
            |i| i.turns[0].end_ms = Some(9_000),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "required_phrase", "pattern": "SHIPPED"}),
            Verdict::Passed,
            |i| {
                i.turns[2].interrupted = true;
                i.turns[2].heard_text = Some("Your order A1".into());
            },
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "forbidden_phrase", "pattern": "guarantee"}),
            Verdict::Passed,
            |i| {
                i.turns[2].text = "I guarantee it arrives tomorrow".into();
                i.turns[2].interrupted = true;
                i.turns[2].heard_text = Some("I".into());
            },
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "tool_called", "tool": "lookup_order", "when_caller_says": "\\border\\b"}),
            Verdict::Passed,
            |i| i.tool_calls.retain(|c| c.name != "lookup_order"),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "tool_called", "tool": "lookup_order", "when_caller_says": "refund"}),
            Verdict::NotApplicable,
            |i| i.turns[1].text = "I want a refund for A1".into(),
            Verdict::Passed,
        ),
        (
            json!({"key": "k", "kind": "tool_called", "tool": "lookup_order", "when_intent": "order_status"}),
            Verdict::Passed,
            |i| i.intents.clear(),
            Verdict::NotApplicable,
        ),
        (
            json!({"key": "k", "kind": "tool_succeeded", "tool": "lookup_order"}),
            Verdict::Passed,
            |i| {
                i.tool_calls.push(tool(
                    "lookup_order",
                    FunctionCallStatus::TimedOut,
                    10_000,
                    None,
                ));
            },
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "tool_succeeded", "tool": "cancel_order"}),
            Verdict::NotApplicable,
            |i| {
                i.tool_calls.push(tool(
                    "cancel_order",
                    FunctionCallStatus::Failed,
                    10_000,
                    None,
                ));
            },
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "identity_before", "tool": "lookup_order"}),
            Verdict::Passed,
            |i| i.identity_verified_ms = Some(7_000),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "identity_before", "tool": "lookup_order"}),
            Verdict::Passed,
            |i| i.identity_verified_ms = None,
            Verdict::Failed,
        ),
        (
            // A refused call did not run: nothing ran before verification.
            json!({"key": "k", "kind": "identity_before", "tool": "close_account"}),
            Verdict::NotApplicable,
            |i| {
                i.tool_calls.push(tool(
                    "close_account",
                    FunctionCallStatus::Refused,
                    1_000,
                    None,
                ));
            },
            Verdict::NotApplicable,
        ),
        (
            json!({"key": "k", "kind": "handoff_when_asked", "patterns": ["real person", "human"], "within_seconds": 5}),
            Verdict::Passed,
            |i| i.handoffs[0].at_ms = 30_000,
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "handoff_when_asked", "patterns": ["real person"]}),
            Verdict::Passed,
            |i| i.handoffs.clear(),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "handoff_when_asked", "patterns": ["supervisor"]}),
            Verdict::NotApplicable,
            |i| i.turns[3].text = "Get me a supervisor".into(),
            Verdict::Passed,
        ),
        (
            json!({"key": "k", "kind": "max_first_audio_ms", "max_ms": 1000}),
            Verdict::Passed,
            |i| i.first_audio_ms = Some(1_500),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "max_first_audio_ms", "max_ms": 1000}),
            Verdict::Passed,
            |i| {
                i.first_audio_ms = None;
                i.turns.retain(|t| t.speaker != Speaker::Agent);
            },
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "max_response_gap_ms", "max_ms": 1200}),
            Verdict::Passed,
            |i| i.turns[4].response_gap_ms = Some(2_500),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "max_response_gap_ms", "max_ms": 1200}),
            Verdict::Passed,
            |i| {
                for t in &mut i.turns {
                    t.response_gap_ms = None;
                }
            },
            Verdict::NotApplicable,
        ),
        (
            json!({"key": "k", "kind": "max_duration_s", "max_seconds": 20}),
            Verdict::Passed,
            |i| i.duration_ms = Some(20_001),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "outcome", "intent": "order_status"}),
            Verdict::Passed,
            |i| i.intents[0].intent = "billing".into(),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "outcome", "tool": "lookup_order", "field": "/eta/days", "equals": 2.0}),
            Verdict::Passed,
            |i| i.tool_calls[1].result = Some(json!({"status": "shipped", "eta": {"days": 5}})),
            Verdict::Failed,
        ),
        (
            json!({"key": "k", "kind": "outcome", "tool": "lookup_order", "field": "/status", "equals": "shipped"}),
            Verdict::Passed,
            |i| i.tool_calls[1].status = FunctionCallStatus::Failed,
            Verdict::Failed,
        ),
    ];
    for (criterion, first, vary, second) in cases {
        let base = conversation();
        let got = one(criterion.clone(), &base);
        assert_eq!(
            got.verdict, first,
            "{criterion} on the conversation: {got:?}"
        );
        let mut varied = conversation();
        vary(&mut varied);
        let got = one(criterion.clone(), &varied);
        assert_eq!(got.verdict, second, "{criterion} on the variant: {got:?}");
        assert!(
            got.evidence.note.is_some() || !got.evidence.turns.is_empty(),
            "{criterion}: evidence says something"
        );
    }
}

#[test]
fn evidence_quotes_turns_and_measures_against_thresholds() {
    let input = conversation();
    let phrase = one(
        json!({"key": "k", "kind": "required_phrase", "pattern": "recorded"}),
        &input,
    );
    assert_eq!(phrase.evidence.turns.len(), 1);
    assert_eq!(phrase.evidence.turns[0].turn, 0);
    assert_eq!(phrase.evidence.turns[0].speaker, "agent");
    assert!(phrase.evidence.turns[0].quote.contains("recorded"));

    let audio = one(
        json!({"key": "k", "kind": "max_first_audio_ms", "max_ms": 1000}),
        &input,
    );
    assert_eq!(audio.evidence.measured, Some(900.0));
    assert_eq!(audio.evidence.threshold, Some(1000.0));
    assert_eq!(audio.evidence.unit.as_deref(), Some("ms"));

    let gaps = one(
        json!({"key": "k", "kind": "max_response_gap_ms", "max_ms": 1000}),
        &input,
    );
    assert_eq!(gaps.verdict, Verdict::Failed, "p95 of [800, 1100] is 1100");
    assert_eq!(gaps.evidence.measured, Some(1100.0));
    assert_eq!(gaps.evidence.turns[0].turn, 4, "the worst turn is quoted");

    let handoff = one(
        json!({"key": "k", "kind": "handoff_when_asked", "patterns": ["real person"], "within_seconds": 5}),
        &input,
    );
    assert_eq!(handoff.evidence.turns[0].turn, 3);
    assert_eq!(handoff.evidence.measured, Some(1.0));
    assert_eq!(handoff.evidence.threshold, Some(5.0));

    let mut partial = conversation();
    partial.tool_calls.push(tool(
        "lookup_order",
        FunctionCallStatus::Failed,
        10_000,
        None,
    ));
    let succeeded = one(
        json!({"key": "k", "kind": "tool_succeeded", "tool": "lookup_order"}),
        &partial,
    );
    assert_eq!(succeeded.verdict, Verdict::Failed);
    assert!(
        (succeeded.score - 0.5).abs() < 1e-9,
        "half the calls succeeded"
    );

    let long = "word ".repeat(200);
    let quote = excerpt(&long, 500, 504);
    assert!(quote.chars().count() <= QUOTE_CHARS + 2, "{quote}");
    assert!(quote.starts_with('…') && quote.ends_with('…'));
    assert_eq!(excerpt("héllo wörld", 0, 3), "héllo wörld");
}

#[test]
fn the_score_is_the_weighted_mean_of_what_applied_and_critical_failures_fail_the_call() {
    let input = conversation();
    let rubric = compiled(json!([
        {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "weight": 3},
        {"key": "lookup", "kind": "tool_called", "tool": "lookup_order"},
        {"key": "refund", "kind": "tool_called", "tool": "refund", "when_caller_says": "refund", "weight": 5},
        {"key": "no_promises", "kind": "forbidden_phrase", "pattern": "colleague", "critical": true}
    ]));
    let card = score(&rubric, &input, &JudgeAnswer::Answered(Vec::new()));
    // Applied: greeting (3, passed), lookup (1, passed), no_promises (1, failed): 4/5.
    assert!((card.score - 0.8).abs() < 1e-9, "{}", card.score);
    assert!(
        !card.passed,
        "a failed critical criterion fails a score at the pass mark"
    );
    assert_eq!(card.failed_criteria, vec!["no_promises".to_owned()]);
    assert_eq!(card.criteria[2].verdict, Verdict::NotApplicable);

    let mut lenient = rubric.clone();
    lenient.criteria[3].critical = false;
    let card = score(&lenient, &input, &JudgeAnswer::Answered(Vec::new()));
    assert!(
        card.passed,
        "the same score passes without the critical flag"
    );

    let nothing_applies = compiled(json!([
        {"key": "refund", "kind": "tool_called", "tool": "refund", "when_caller_says": "refund"}
    ]));
    let card = score(&nothing_applies, &input, &JudgeAnswer::Answered(Vec::new()));
    assert_eq!(card.score, 1.0);
    assert!(card.passed);
}

#[test]
fn the_judge_decides_its_criteria_and_its_failure_keeps_the_rest() {
    let input = conversation();
    let rubric = compiled(json!([
        {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling"},
        {"key": "resolved", "kind": "llm_judge", "question": "Did the agent resolve the question or hand off?", "critical": true},
        {"key": "tone", "kind": "llm_judge", "question": "How polite was the agent?", "min_score": 4}
    ]));
    let judgments = vec![
        Judgment {
            key: "resolved".into(),
            verdict: Answer::Yes,
            score: 5,
            evidence_turns: vec![2, 4],
            rationale: "It looked the order up and handed off.".into(),
        },
        Judgment {
            key: "tone".into(),
            verdict: Answer::Yes,
            score: 3,
            evidence_turns: vec![0],
            rationale: "Polite but curt.".into(),
        },
    ];
    let card = score(&rubric, &input, &JudgeAnswer::Answered(judgments));
    let resolved = &card.criteria[1];
    assert_eq!(resolved.verdict, Verdict::Passed);
    assert_eq!(resolved.evidence.turns.len(), 2);
    assert_eq!(resolved.evidence.turns[1].turn, 4);
    assert_eq!(
        resolved.evidence.note.as_deref(),
        Some("It looked the order up and handed off.")
    );
    let tone = &card.criteria[2];
    assert_eq!(tone.verdict, Verdict::Failed, "3 is below the minimum of 4");
    assert!((tone.score - 0.5).abs() < 1e-9);
    assert_eq!(tone.evidence.threshold, Some(4.0));
    // (1 + 1 + 0.5) / 3.
    assert!((card.score - 2.5 / 3.0).abs() < 1e-9);

    let failed = score(
        &rubric,
        &input,
        &JudgeAnswer::Failed("the judge did not answer within 100 ms".into()),
    );
    assert_eq!(failed.criteria[0].verdict, Verdict::Passed, "kept");
    assert_eq!(failed.criteria[1].verdict, Verdict::Error);
    assert_eq!(failed.criteria[2].verdict, Verdict::Error);
    assert_eq!(
        failed.criteria[1].evidence.note.as_deref(),
        Some("the judge did not answer within 100 ms")
    );
    assert_eq!(failed.score, 1.0, "errors do not count in the score");
    assert!(
        !failed.passed,
        "a critical criterion that could not be decided is not a pass"
    );
    assert!(failed.failed_criteria.is_empty());
}

#[test]
fn a_call_answered_by_a_machine_has_nothing_to_score() {
    let mut input = conversation();
    input.answered_by_machine = Some("machine_end_beep".into());
    let rubric = compiled(json!([
        {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "critical": true},
        {"key": "no_promises", "kind": "forbidden_phrase", "pattern": "colleague"}
    ]));
    let card = score(&rubric, &input, &JudgeAnswer::Answered(Vec::new()));
    assert!(
        card.criteria
            .iter()
            .all(|c| c.verdict == Verdict::NotApplicable),
        "{:?}",
        card.criteria
    );
    assert!(card.passed);
    assert!(
        card.criteria[0]
            .evidence
            .note
            .as_deref()
            .is_some_and(|n| n.contains("answering machine"))
    );
}
