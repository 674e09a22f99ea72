//! Tests of rubric validation, the stored form and the hash.

use super::*;
use serde_json::json;

fn rubric(criteria: Value) -> Result<Rubric, RubricError> {
    let r: Rubric = serde_json::from_value(json!({"pass_score": 0.7, "criteria": criteria}))
        .map_err(|e| bad("json", e.to_string()))?;
    r.validate()
}

#[test]
fn every_kind_parses_validates_and_round_trips() {
    let r = rubric(json!([
        {"key": "greeting", "kind": "required_phrase", "pattern": "thanks? for calling", "within_seconds": 10, "critical": true},
        {"key": "no_promises", "kind": "forbidden_phrase", "pattern": "guarantee"},
        {"key": "order_lookup", "kind": "tool_called", "tool": "lookup_order", "when_caller_says": "\\border\\b"},
        {"key": "cancel_flow", "kind": "tool_called", "tool": "cancel_order", "when_intent": "cancel"},
        {"key": "lookup_ok", "kind": "tool_succeeded", "tool": "lookup_order"},
        {"key": "verified_first", "kind": "identity_before", "tool": "lookup_order", "weight": 3},
        {"key": "handoff", "kind": "handoff_when_asked", "patterns": ["human", "real person"]},
        {"key": "first_audio", "kind": "max_first_audio_ms", "max_ms": 1500},
        {"key": "gaps", "kind": "max_response_gap_ms", "max_ms": 1200},
        {"key": "short", "kind": "max_duration_s", "max_seconds": 600},
        {"key": "intent", "kind": "outcome", "intent": "cancel"},
        {"key": "found", "kind": "outcome", "tool": "lookup_order", "field": "/status", "equals": "found"},
        {"key": "resolved", "kind": "llm_judge", "question": "Did the agent resolve the caller's question?"},
        {"key": "tone", "kind": "llm_judge", "question": "How polite was the agent?", "min_score": 4, "weight": 0.5}
    ]))
    .expect("valid");
    assert_eq!(r.criteria.len(), 14);
    assert_eq!(r.criteria[5].weight, 3.0);
    assert_eq!(r.criteria[1].weight, 1.0);
    assert!(r.criteria[0].critical);
    let text = r.to_json();
    let back = Rubric::from_json(&text).expect("stored form parses");
    assert_eq!(back, r);
    assert_eq!(back.hash(), r.hash());
    let compiled = CompiledRubric::compile(r).expect("compiles");
    assert_eq!(compiled.judge_questions().len(), 2);
    assert_eq!(compiled.judge_questions()[1].2, JudgePass::MinScore(4));
    assert_eq!(compiled.criteria[6].kind, "handoff_when_asked");
    assert!(matches!(
        compiled.criteria[6].check,
        Check::HandoffWhenAsked {
            within_ms: 30_000,
            ..
        }
    ));
}

#[test]
fn the_hash_ignores_spelling_and_sees_every_change() {
    let a: Rubric = serde_json::from_str(
        r#"{"criteria":[{"weight":1,"kind":"forbidden_phrase","pattern":"x","key":"k"}],"pass_score":0.5}"#,
    )
    .expect("a");
    let b: Rubric = serde_json::from_str(
        r#"{"pass_score":0.50,"criteria":[{"key":"k","kind":"forbidden_phrase","pattern":"x","critical":false,"weight":1.0}]}"#,
    )
    .expect("b");
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
    let mut c = b.clone();
    c.criteria[0].critical = true;
    assert_ne!(a.hash(), c.hash());
    let mut d = b;
    d.pass_score = 0.6;
    assert_ne!(a.hash(), d.hash());
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let v = json!({"b": {"z": 1, "a": [ {"y": true, "x": null} ]}, "a": "s\"q"});
    assert_eq!(
        canonical_json(&v),
        r#"{"a":"s\"q","b":{"a":[{"x":null,"y":true}],"z":1}}"#
    );
}

#[test]
fn bad_rubrics_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "rubric.criteria"),
        (
            json!([{"key": "a b", "kind": "forbidden_phrase", "pattern": "x"}]),
            "rubric.criteria[0].key",
        ),
        (
            json!([
                {"key": "a", "kind": "forbidden_phrase", "pattern": "x"},
                {"key": "a", "kind": "forbidden_phrase", "pattern": "y"}
            ]),
            "rubric.criteria[1].key",
        ),
        (
            json!([{"key": "a", "kind": "forbidden_phrase", "pattern": "x"}, {"key": "b", "kind": "required_phrase", "pattern": "(unclosed"}]),
            "rubric.criteria[1].pattern",
        ),
        (
            json!([{"key": "a", "kind": "forbidden_phrase", "pattern": "x", "weight": 0}]),
            "rubric.criteria[0].weight",
        ),
        (
            json!([{"key": "a", "kind": "required_phrase", "pattern": "x", "within_seconds": 0}]),
            "rubric.criteria[0].within_seconds",
        ),
        (
            json!([{"key": "a", "kind": "tool_called", "tool": "bad tool"}]),
            "rubric.criteria[0].tool",
        ),
        (
            json!([{"key": "a", "kind": "tool_called", "tool": "t", "when_caller_says": "x", "when_intent": "y"}]),
            "rubric.criteria[0].when_intent",
        ),
        (
            json!([{"key": "a", "kind": "handoff_when_asked", "patterns": []}]),
            "rubric.criteria[0].patterns",
        ),
        (
            json!([{"key": "a", "kind": "handoff_when_asked", "patterns": ["ok", "[z-a]"]}]),
            "rubric.criteria[0].patterns",
        ),
        (
            json!([{"key": "a", "kind": "max_first_audio_ms", "max_ms": 0}]),
            "rubric.criteria[0].max_ms",
        ),
        (
            json!([{"key": "a", "kind": "max_duration_s", "max_seconds": 100000}]),
            "rubric.criteria[0].max_seconds",
        ),
        (
            json!([{"key": "a", "kind": "outcome"}]),
            "rubric.criteria[0].intent",
        ),
        (
            json!([{"key": "a", "kind": "outcome", "tool": "t", "equals": 1}]),
            "rubric.criteria[0].field",
        ),
        (
            json!([{"key": "a", "kind": "outcome", "tool": "t", "field": "/x"}]),
            "rubric.criteria[0].equals",
        ),
        (
            json!([{"key": "a", "kind": "llm_judge", "question": "  "}]),
            "rubric.criteria[0].question",
        ),
        (
            json!([{"key": "a", "kind": "llm_judge", "question": "q", "min_score": 6}]),
            "rubric.criteria[0].min_score",
        ),
    ];
    for (criteria, field) in cases {
        let err = rubric(criteria.clone()).expect_err(field);
        assert_eq!(err.field, field, "{criteria}: {err}");
    }
    let score: Rubric = serde_json::from_value(json!({
        "pass_score": 1.5,
        "criteria": [{"key": "a", "kind": "forbidden_phrase", "pattern": "x"}]
    }))
    .expect("json");
    assert_eq!(
        score.validate().expect_err("pass_score").field,
        "rubric.pass_score"
    );
    let judges: Vec<Value> = (0..=MAX_JUDGE_CRITERIA)
        .map(|i| json!({"key": format!("j{i}"), "kind": "llm_judge", "question": "q"}))
        .collect();
    assert_eq!(
        rubric(Value::Array(judges)).expect_err("judges").field,
        "rubric.criteria"
    );
    assert_eq!(
        Rubric::from_json("{\"pass_score\": 0.5}")
            .expect_err("no criteria")
            .field,
        "rubric"
    );
}

#[test]
fn tools_are_checked_against_the_contract() {
    let r = rubric(json!([
        {"key": "a", "kind": "tool_called", "tool": "lookup_order"},
        {"key": "b", "kind": "outcome", "tool": "cancel_order", "field": "/ok", "equals": true}
    ]))
    .expect("valid");
    assert!(r.check_tools(&["lookup_order", "cancel_order"]).is_ok());
    let err = r.check_tools(&["lookup_order"]).expect_err("unknown tool");
    assert_eq!(err.field, "rubric.criteria[1].tool");
}

proptest::proptest! {
    /// Whatever an admin sends, validation answers (a field or a rubric); it never
    /// panics, and what it accepts compiles, and so does its stored form.
    #[test]
    fn validation_never_panics(
        key in ".{0,70}",
        pattern in ".{0,80}",
        tool in ".{0,70}",
        question in ".{0,80}",
        pass_score in proptest::num::f64::ANY,
        weight in proptest::num::f64::ANY,
        within in proptest::option::of(0u32..5000),
        max_ms in 0u64..1_000_000,
        min_score in proptest::option::of(0u8..10),
    ) {
        let r = Rubric {
            pass_score,
            criteria: vec![
                Criterion { key: key.clone(), kind: CriterionKind::RequiredPhrase { pattern: pattern.clone(), within_seconds: within }, weight, critical: false },
                Criterion { key: format!("{key}2"), kind: CriterionKind::HandoffWhenAsked { patterns: vec![pattern.clone()], within_seconds: within.unwrap_or(30) }, weight: 1.0, critical: true },
                Criterion { key: format!("{key}3"), kind: CriterionKind::ToolCalled { tool: tool.clone(), when_caller_says: Some(pattern), when_intent: None }, weight: 1.0, critical: false },
                Criterion { key: format!("{key}4"), kind: CriterionKind::MaxResponseGapMs { max_ms }, weight: 1.0, critical: false },
                Criterion { key: format!("{key}5"), kind: CriterionKind::LlmJudge { question, min_score }, weight: 1.0, critical: false },
                Criterion { key: format!("{key}6"), kind: CriterionKind::Outcome { intent: None, tool: Some(tool), field: Some("/x".into()), equals: Some(json!(1)) }, weight: 1.0, critical: false },
            ],
        };
        if let Ok(valid) = r.validate() {
            let stored = valid.to_json();
            let back = Rubric::from_json(&stored).expect("a valid rubric's stored form is valid");
            proptest::prop_assert_eq!(back.criteria.len(), 6);
            let compiled = CompiledRubric::compile(valid).expect("a valid rubric compiles");
            proptest::prop_assert_eq!(compiled.criteria.len(), 6);
        }
    }
}
