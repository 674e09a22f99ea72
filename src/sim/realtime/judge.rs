//! The simulator's deterministic LLM judge: what `POST /v1/chat/completions` answers to an
//! evaluation request ([`actors::evaluation::judge::JudgeInput`] as the user message), so
//! the sandbox and the tests score calls without an account.
//!
//! **Rules**, per criterion, first match wins (the question is compared in lower case):
//!
//! 1. a verdict configured for the criterion's key
//!    ([`RealtimeSimHandle::set_judge_verdict`](super::RealtimeSimHandle::set_judge_verdict));
//! 2. the question mentions resolving or handing off (`resolve`, `hand off`, `handoff`,
//!    `transfer`): **yes** when a tool call succeeded or the call was handed to a human;
//! 3. it mentions a greeting (`greet`, `welcome`, `introduc`): **yes** when the first agent
//!    turn says hello, hi, welcome, good morning/afternoon/evening or thanks for calling;
//! 4. it mentions tone (`polite`, `courteous`, `professional`, `friendly`, `tone`): **yes**
//!    unless an agent turn is rude (`stupid`, `idiot`, `shut up`, `whatever`);
//! 5. otherwise by keywords: **yes** when a word of five letters or more from the question
//!    (common words such as `agent`, `caller`, `would` left out) appears in a turn; a
//!    question without such words is **yes** when the agent spoke at all.
//!
//! A yes is score 5 and a no score 1. Evidence names the turns that decided it. The summary
//! is the first agent sentence and the first caller sentence; tags come from keywords
//! (`order`, `refund`, `cancellation`, `billing`, `booking`, `handoff`, else `general`).

use actors::evaluation::judge::{Answer, JudgeInput, JudgeOutput, JudgeTurn, Judgment};

/// A verdict set for a criterion key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVerdict {
    /// Yes or no.
    pub verdict: Answer,
    /// 1–5.
    pub score: u8,
    /// The rationale given.
    pub rationale: String,
}

impl SimVerdict {
    /// A yes (score 5).
    pub fn yes() -> Self {
        Self {
            verdict: Answer::Yes,
            score: 5,
            rationale: "configured verdict".into(),
        }
    }

    /// A no (score 1).
    pub fn no() -> Self {
        Self {
            verdict: Answer::No,
            score: 1,
            rationale: "configured verdict".into(),
        }
    }
}

const RESOLVE: [&str; 5] = ["resolve", "hand off", "handoff", "hand-off", "transfer"];
const GREET: [&str; 3] = ["greet", "welcome", "introduc"];
const GREETINGS: [&str; 8] = [
    "hello",
    "hi ",
    "hi,",
    "welcome",
    "good morning",
    "good afternoon",
    "good evening",
    "for calling",
];
const TONE: [&str; 5] = ["polite", "courteous", "professional", "friendly", "tone"];
const RUDE: [&str; 4] = ["stupid", "idiot", "shut up", "whatever"];
const COMMON: [&str; 14] = [
    "agent",
    "caller",
    "customer",
    "conversation",
    "would",
    "should",
    "could",
    "their",
    "there",
    "which",
    "about",
    "answer",
    "correctly",
    "question",
];
const TAGS: [(&[&str], &str); 5] = [
    (&["order", "package", "shipping", "delivery"], "order"),
    (&["refund", "money back"], "refund"),
    (&["cancel"], "cancellation"),
    (&["bill", "invoice", "payment", "charge"], "billing"),
    (&["appointment", "booking", "reschedule"], "booking"),
];

fn mentions(text: &str, words: &[&str]) -> bool {
    words.iter().any(|w| text.contains(w))
}

fn first_sentence(text: &str) -> String {
    let end = text
        .char_indices()
        .find(|(_, c)| matches!(c, '.' | '?' | '!'))
        .map_or(text.len(), |(i, c)| i + c.len_utf8());
    text[..end].trim().to_owned()
}

fn turn_no(t: &JudgeTurn) -> i64 {
    i64::try_from(t.turn).unwrap_or(i64::MAX)
}

fn decide(input: &JudgeInput, question: &str) -> (bool, Vec<i64>, String) {
    let q = question.to_lowercase();
    let agent_turns = || input.turns.iter().filter(|t| t.speaker == "agent");
    if mentions(&q, &RESOLVE) {
        let succeeded = input.tool_calls.iter().find(|c| c.status == "succeeded");
        return match (succeeded, input.handoffs.first()) {
            (Some(call), _) => (
                true,
                call.after_turn
                    .and_then(|t| i64::try_from(t + 1).ok())
                    .into_iter()
                    .filter(|t| usize::try_from(*t).is_ok_and(|t| t < input.turn_count))
                    .collect(),
                format!("the tool {} answered successfully", call.name),
            ),
            (None, Some(handoff)) => (
                true,
                input.turns.last().map(turn_no).into_iter().collect(),
                format!("the caller was handed off ({})", handoff.rule),
            ),
            (None, None) => (
                false,
                Vec::new(),
                "no tool succeeded and nobody was handed off".into(),
            ),
        };
    }
    if mentions(&q, &GREET) {
        return match agent_turns().next() {
            Some(t) if mentions(&format!("{} ", t.text.to_lowercase()), &GREETINGS) => (
                true,
                vec![turn_no(t)],
                "the agent opened with a greeting".into(),
            ),
            Some(t) => (
                false,
                vec![turn_no(t)],
                "the first agent turn has no greeting".into(),
            ),
            None => (false, Vec::new(), "the agent never spoke".into()),
        };
    }
    if mentions(&q, &TONE) {
        return match agent_turns().find(|t| mentions(&t.text.to_lowercase(), &RUDE)) {
            Some(t) => (false, vec![turn_no(t)], "the agent was rude".into()),
            None => (
                true,
                agent_turns().next().map(turn_no).into_iter().collect(),
                "no rude agent turn".into(),
            ),
        };
    }
    let keywords: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 5 && !COMMON.contains(w))
        .map(str::to_owned)
        .collect();
    if keywords.is_empty() {
        let spoke = agent_turns().next();
        return (
            spoke.is_some(),
            spoke.map(turn_no).into_iter().collect(),
            "no keywords in the question; judged on whether the agent spoke".into(),
        );
    }
    let hits: Vec<i64> = input
        .turns
        .iter()
        .filter(|t| {
            let text = t.text.to_lowercase();
            keywords.iter().any(|k| text.contains(k.as_str()))
        })
        .map(turn_no)
        .take(5)
        .collect();
    let found = !hits.is_empty();
    (
        found,
        hits,
        if found {
            format!("the transcript mentions {}", keywords.join(", "))
        } else {
            format!("the transcript never mentions {}", keywords.join(", "))
        },
    )
}

/// The deterministic answer to `input`; `verdict_for` gives a configured verdict per key.
pub fn judge(input: &JudgeInput, verdict_for: impl Fn(&str) -> Option<SimVerdict>) -> JudgeOutput {
    let judgments = input
        .criteria
        .iter()
        .map(|c| match verdict_for(&c.key) {
            Some(v) => Judgment {
                key: c.key.clone(),
                verdict: v.verdict,
                score: v.score,
                evidence_turns: Vec::new(),
                rationale: v.rationale,
            },
            None => {
                let (yes, evidence_turns, rationale) = decide(input, &c.question);
                Judgment {
                    key: c.key.clone(),
                    verdict: if yes { Answer::Yes } else { Answer::No },
                    score: if yes { 5 } else { 1 },
                    evidence_turns,
                    rationale,
                }
            }
        })
        .collect();
    let first = |speaker: &str| {
        input
            .turns
            .iter()
            .find(|t| t.speaker == speaker)
            .map(|t| first_sentence(&t.text))
            .filter(|s| !s.is_empty())
    };
    let summary = match (first("agent"), first("caller")) {
        (Some(a), Some(c)) => format!("Agent: {a} Caller: {c}"),
        (Some(a), None) => format!("Agent: {a}"),
        (None, Some(c)) => format!("Caller: {c}"),
        (None, None) => "No conversation.".to_owned(),
    };
    let text = input
        .turns
        .iter()
        .map(|t| t.text.to_lowercase())
        .chain(input.tool_calls.iter().map(|c| c.name.to_lowercase()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tags: Vec<String> = TAGS
        .iter()
        .filter(|(words, _)| mentions(&text, words))
        .map(|(_, tag)| (*tag).to_owned())
        .collect();
    if !input.handoffs.is_empty() {
        tags.push("handoff".into());
    }
    if tags.is_empty() {
        tags.push("general".into());
    }
    JudgeOutput {
        summary,
        tags,
        judgments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::evaluation::judge::{
        AnswerScale, JudgeCriterion, JudgeHandoff, JudgeToolCall, OmittedTurns,
    };
    use serde_json::json;

    fn input(turns: &[(&str, &str)]) -> JudgeInput {
        JudgeInput {
            criteria: [
                (
                    "resolved",
                    "Did the agent resolve the caller's question or hand off correctly?",
                ),
                ("greeting", "Did the agent greet the caller?"),
                ("tone", "Was the agent polite?"),
                ("refund", "Was a refund discussed?"),
                ("vague", "Was it ok?"),
            ]
            .iter()
            .map(|(key, question)| JudgeCriterion {
                key: (*key).into(),
                question: (*question).into(),
                answer: AnswerScale::YesNo,
            })
            .collect(),
            turn_count: turns.len(),
            turns: turns
                .iter()
                .enumerate()
                .map(|(i, (speaker, text))| JudgeTurn {
                    turn: i,
                    speaker: (*speaker).into(),
                    text: (*text).into(),
                    interrupted: false,
                })
                .collect(),
            omitted_turns: None::<OmittedTurns>,
            tool_calls: Vec::new(),
            handoffs: Vec::new(),
            ended_because: None,
        }
    }

    fn verdicts(out: &JudgeOutput) -> Vec<(String, Answer)> {
        out.judgments
            .iter()
            .map(|j| (j.key.clone(), j.verdict))
            .collect()
    }

    #[test]
    fn keywords_decide_and_configured_verdicts_win() {
        let mut call = input(&[
            ("agent", "Hello, thanks for calling Acme. How can I help?"),
            ("caller", "Where is my order A1? I may want a refund."),
            ("agent", "Your order shipped yesterday."),
        ]);
        call.tool_calls.push(JudgeToolCall {
            after_turn: Some(1),
            name: "lookup_order".into(),
            status: "succeeded".into(),
            arguments: json!({"order_id": "A1"}),
            result: Some(json!({"status": "shipped"})),
        });
        let out = judge(&call, |_| None);
        assert_eq!(
            verdicts(&out),
            vec![
                ("resolved".into(), Answer::Yes),
                ("greeting".into(), Answer::Yes),
                ("tone".into(), Answer::Yes),
                ("refund".into(), Answer::Yes),
                ("vague".into(), Answer::Yes),
            ]
        );
        assert_eq!(out.judgments[0].evidence_turns, vec![2]);
        assert_eq!(out.judgments[0].score, 5);
        assert_eq!(
            out.summary,
            "Agent: Hello, thanks for calling Acme. Caller: Where is my order A1?"
        );
        assert_eq!(out.tags, vec!["order", "refund"]);

        let rude = input(&[
            ("agent", "What do you want?"),
            ("caller", "A person please"),
            ("agent", "Whatever."),
        ]);
        let out = judge(&rude, |k| (k == "vague").then(SimVerdict::no));
        assert_eq!(
            verdicts(&out),
            vec![
                ("resolved".into(), Answer::No),
                ("greeting".into(), Answer::No),
                ("tone".into(), Answer::No),
                ("refund".into(), Answer::No),
                ("vague".into(), Answer::No),
            ]
        );
        assert_eq!(out.judgments[2].evidence_turns, vec![2]);
        assert_eq!(out.judgments[0].score, 1);
        assert_eq!(out.tags, vec!["general"]);

        let mut handed = rude.clone();
        handed.handoffs.push(JudgeHandoff {
            rule: "caller_asks_for_human".into(),
            queue: Some("support".into()),
            reason: "asked".into(),
            status: "dialing".into(),
        });
        let out = judge(&handed, |_| None);
        assert_eq!(out.judgments[0].verdict, Answer::Yes);
        assert!(out.tags.contains(&"handoff".to_owned()));
        assert_eq!(judge(&input(&[]), |_| None).summary, "No conversation.");
    }
}
