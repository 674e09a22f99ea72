//! Scoring, as pure functions: every criterion of a [`CompiledRubric`] against an
//! [`EvaluationInput`] (and the judge's answer for `llm_judge` criteria) yields a
//! [`CriterionResult`] — `passed | failed | not_applicable | error`, a score 0–1 and its
//! evidence — and the call's [`Scorecard`]:
//!
//! - `score`: the weighted mean of the scores of the criteria that applied (`passed` or
//!   `failed`); 1 when none applied;
//! - `passed`: `score ≥ pass_score`, no critical criterion `failed`, and no critical
//!   criterion in `error` (a critical check that could not be made is not a pass).
//!
//! Times are compared as recorded: a turn counts from its start, or from its end when its
//! start is unknown. Required phrases are matched on what the caller heard; forbidden
//! phrases on everything the model generated (a forbidden line cut off by the caller was
//! still produced).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::input::{EvaluationInput, Speaker, Turn};
use super::judge::{Answer, Judgment};
use super::rubric::{Check, CompiledCriterion, CompiledRubric, JudgePass};
use super::stats::percentile;
use crate::store::FunctionCallStatus;

/// Longest quote kept as evidence.
const QUOTE_CHARS: usize = 160;
/// Most turns quoted for one criterion.
const MAX_QUOTES: usize = 5;

/// The result of one criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Met.
    Passed,
    /// Not met.
    Failed,
    /// Did not apply to this conversation (its condition never occurred).
    NotApplicable,
    /// Could not be decided (the judge failed, or no judge was available).
    Error,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 4] = [
        Verdict::Passed,
        Verdict::Failed,
        Verdict::NotApplicable,
        Verdict::Error,
    ];

    /// Stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotApplicable => "not_applicable",
            Verdict::Error => "error",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A quoted turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnQuote {
    /// The turn's number.
    pub turn: usize,
    /// Who spoke.
    pub speaker: String,
    /// The relevant part of what was said.
    pub quote: String,
}

/// Why a criterion got its verdict.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Turns that show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnQuote>,
    /// The measured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<f64>,
    /// The threshold it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Unit of `measured` and `threshold` (`ms`, `s`, `score`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A sentence saying what was found (or the judge's rationale, or the error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The result of one criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionResult {
    /// Key.
    pub key: String,
    /// Kind name.
    pub kind: String,
    /// Weight.
    pub weight: f64,
    /// Critical.
    pub critical: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// Score 0–1 (0 for `not_applicable` and `error`).
    pub score: f64,
    /// Why.
    pub evidence: Evidence,
}

/// The judge's part of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgeAnswer {
    /// The judge answered (one judgment per `llm_judge` criterion, checked by the client).
    Answered(Vec<Judgment>),
    /// The judge could not answer (after the last retry, or no judge is available): the
    /// `llm_judge` criteria are `error` with this note.
    Failed(String),
}

/// The scored call.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    /// Every criterion, in rubric order.
    pub criteria: Vec<CriterionResult>,
    /// Weighted mean over the criteria that applied.
    pub score: f64,
    /// Whether the call passed.
    pub passed: bool,
    /// Keys of the criteria that failed.
    pub failed_criteria: Vec<String>,
}

/// Scores every criterion of `rubric` and the call.
pub fn score(rubric: &CompiledRubric, input: &EvaluationInput, judge: &JudgeAnswer) -> Scorecard {
    let criteria: Vec<CriterionResult> = rubric
        .criteria
        .iter()
        .map(|c| {
            let (verdict, score, evidence) = check(c, input, judge);
            CriterionResult {
                key: c.key.clone(),
                kind: c.kind.to_owned(),
                weight: c.weight,
                critical: c.critical,
                verdict,
                score: if matches!(verdict, Verdict::Passed | Verdict::Failed) {
                    score.clamp(0.0, 1.0)
                } else {
                    0.0
                },
                evidence,
            }
        })
        .collect();
    combine(rubric.rubric.pass_score, criteria)
}

/// The call's score and verdict from its criteria results.
pub fn combine(pass_score: f64, criteria: Vec<CriterionResult>) -> Scorecard {
    let applied = criteria
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Passed | Verdict::Failed));
    let (weighted, weights) = applied.fold((0.0, 0.0), |(s, w), c| {
        (s + c.weight * c.score, w + c.weight)
    });
    let score = if weights > 0.0 {
        weighted / weights
    } else {
        1.0
    };
    let critical_miss = criteria
        .iter()
        .any(|c| c.critical && matches!(c.verdict, Verdict::Failed | Verdict::Error));
    let failed_criteria = criteria
        .iter()
        .filter(|c| c.verdict == Verdict::Failed)
        .map(|c| c.key.clone())
        .collect();
    Scorecard {
        passed: !critical_miss && score + 1e-9 >= pass_score,
        score,
        criteria,
        failed_criteria,
    }
}

type Checked = (Verdict, f64, Evidence);

fn passed(evidence: Evidence) -> Checked {
    (Verdict::Passed, 1.0, evidence)
}

fn failed(evidence: Evidence) -> Checked {
    (Verdict::Failed, 0.0, evidence)
}

fn not_applicable(note: impl Into<String>) -> Checked {
    (Verdict::NotApplicable, 0.0, noted(note))
}

fn noted(note: impl Into<String>) -> Evidence {
    Evidence {
        note: Some(note.into()),
        ..Evidence::default()
    }
}

fn measured(value: f64, threshold: f64, unit: &str, note: String) -> Evidence {
    Evidence {
        turns: Vec::new(),
        measured: Some(value),
        threshold: Some(threshold),
        unit: Some(unit.to_owned()),
        note: Some(note),
    }
}

/// Up to [`QUOTE_CHARS`] characters of `text` around the byte range `start..end`.
fn excerpt(text: &str, start: usize, end: usize) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let first = chars.iter().position(|(i, _)| *i >= start).unwrap_or(0);
    let last = chars
        .iter()
        .position(|(i, _)| *i >= end)
        .unwrap_or(chars.len());
    let span = last.saturating_sub(first);
    let room = QUOTE_CHARS.saturating_sub(span) / 2;
    let from = first.saturating_sub(room);
    let to = (last + room).min(chars.len());
    let to = to.min(from + QUOTE_CHARS.max(span));
    let mut quote: String = chars[from..to].iter().map(|(_, c)| c).collect();
    if from > 0 {
        quote.insert(0, '…');
    }
    if to < chars.len() {
        quote.push('…');
    }
    quote
}

fn quote(turns: &[Turn], index: usize, text: &str, range: Option<(usize, usize)>) -> TurnQuote {
    let (start, end) = range.unwrap_or((0, 0));
    TurnQuote {
        turn: index,
        speaker: turns
            .get(index)
            .map_or("agent", |t| t.speaker.as_str())
            .to_owned(),
        quote: excerpt(text, start, end),
    }
}

fn seconds(ms: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    format!("{s:.1} s")
}

#[allow(clippy::cast_precision_loss)]
fn as_f64(v: i64) -> f64 {
    v as f64
}

fn turns_of(input: &EvaluationInput, speaker: Speaker) -> impl Iterator<Item = (usize, &Turn)> {
    input
        .turns
        .iter()
        .enumerate()
        .filter(move |(_, t)| t.speaker == speaker)
}

/// Two JSON values are equal, numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn check(c: &CompiledCriterion, input: &EvaluationInput, judge: &JudgeAnswer) -> Checked {
    if let Some(answered_by) = &input.answered_by_machine {
        // Nobody to talk to: every criterion needs a conversation with a person.
        return not_applicable(format!(
            "answered by an answering machine ({answered_by}): no conversation to score"
        ));
    }
    let turns = &input.turns;
    match &c.check {
        Check::RequiredPhrase { pattern, within_ms } => {
            let hit = turns_of(input, Speaker::Agent)
                .filter(|(_, t)| within_ms.is_none_or(|w| t.at_ms().is_some_and(|at| at <= w)))
                .find_map(|(i, t)| pattern.find(t.said()).map(|m| (i, t, m.start(), m.end())));
            match hit {
                Some((i, t, s, e)) => passed(Evidence {
                    turns: vec![quote(turns, i, t.said(), Some((s, e)))],
                    note: Some(format!("turn {i} matches /{}/", pattern.as_str())),
                    ..Evidence::default()
                }),
                None => failed(noted(match within_ms {
                    Some(w) => format!(
                        "no agent turn within the first {} matches /{}/",
                        seconds(*w),
                        pattern.as_str()
                    ),
                    None => format!("no agent turn matches /{}/", pattern.as_str()),
                })),
            }
        }
        Check::ForbiddenPhrase { pattern } => {
            let hits: Vec<TurnQuote> = turns_of(input, Speaker::Agent)
                .filter_map(|(i, t)| {
                    pattern
                        .find(&t.text)
                        .map(|m| quote(turns, i, &t.text, Some((m.start(), m.end()))))
                })
                .take(MAX_QUOTES)
                .collect();
            if hits.is_empty() {
                passed(noted(format!(
                    "no agent turn matches /{}/",
                    pattern.as_str()
                )))
            } else {
                let note = format!("{} agent turn(s) match /{}/", hits.len(), pattern.as_str());
                failed(Evidence {
                    turns: hits,
                    note: Some(note),
                    ..Evidence::default()
                })
            }
        }
        Check::ToolCalled {
            tool,
            when_caller_says,
            when_intent,
        } => {
            let mut evidence = Evidence::default();
            if let Some(p) = when_caller_says {
                let trigger = turns_of(input, Speaker::Caller)
                    .find_map(|(i, t)| p.find(&t.text).map(|m| (i, t, m.start(), m.end())));
                let Some((i, t, s, e)) = trigger else {
                    return not_applicable(format!("no caller turn matches /{}/", p.as_str()));
                };
                evidence.turns.push(quote(turns, i, &t.text, Some((s, e))));
            }
            if let Some(intent) = when_intent
                && !input.intents.iter().any(|r| &r.intent == intent)
            {
                return not_applicable(format!("the intent {intent} was not reported"));
            }
            let calls = input.tool_calls.iter().filter(|c| &c.name == tool).count();
            if calls > 0 {
                evidence.note = Some(format!("{tool} was called {calls} time(s)"));
                passed(evidence)
            } else {
                evidence.note = Some(format!("{tool} was never called"));
                failed(evidence)
            }
        }
        Check::ToolSucceeded { tool } => {
            let calls: Vec<_> = input
                .tool_calls
                .iter()
                .filter(|c| &c.name == tool)
                .collect();
            if calls.is_empty() {
                return not_applicable(format!("{tool} was never called"));
            }
            let ok = calls
                .iter()
                .filter(|c| c.status == FunctionCallStatus::Succeeded)
                .count();
            let statuses: Vec<&str> = calls.iter().map(|c| c.status.as_str()).collect();
            #[allow(clippy::cast_precision_loss)]
            let fraction = ok as f64 / calls.len() as f64;
            let evidence = noted(format!(
                "{ok} of {} call(s) of {tool} succeeded ({})",
                calls.len(),
                statuses.join(", ")
            ));
            if ok == calls.len() {
                passed(evidence)
            } else {
                (Verdict::Failed, fraction, evidence)
            }
        }
        Check::IdentityBefore { tool } => {
            let ran: Vec<_> = input
                .tool_calls
                .iter()
                .filter(|c| &c.name == tool && c.ran())
                .collect();
            let Some(first) = ran.iter().map(|c| c.started_ms).min() else {
                return not_applicable(format!("{tool} never ran"));
            };
            match input.identity_verified_ms {
                Some(v) if v <= first => passed(noted(format!(
                    "identity verified at {}, {tool} first ran at {}",
                    seconds(v),
                    seconds(first)
                ))),
                Some(v) => failed(noted(format!(
                    "{tool} ran at {}, before identity was verified at {}",
                    seconds(first),
                    seconds(v)
                ))),
                None => failed(noted(format!(
                    "{tool} ran at {} and identity was never verified",
                    seconds(first)
                ))),
            }
        }
        Check::HandoffWhenAsked {
            patterns,
            within_ms,
        } => {
            let ask = turns_of(input, Speaker::Caller).find_map(|(i, t)| {
                patterns
                    .iter()
                    .find_map(|p| p.find(&t.text))
                    .map(|m| (i, t, m.start(), m.end()))
            });
            let Some((i, t, s, e)) = ask else {
                return not_applicable("the caller never asked for a human");
            };
            let asked_at = t.end_ms.or(t.start_ms);
            // The request may be acted on as soon as the caller starts speaking: count
            // handoffs from the end of the turn before it.
            let earliest = i
                .checked_sub(1)
                .and_then(|p| turns.get(p))
                .and_then(|p| p.end_ms.or(p.start_ms))
                .unwrap_or(0);
            let handoff = input
                .handoffs
                .iter()
                .filter(|h| h.at_ms >= earliest)
                .min_by_key(|h| h.at_ms);
            let asked = vec![quote(turns, i, &t.text, Some((s, e)))];
            let threshold = as_f64(*within_ms) / 1000.0;
            match (handoff, asked_at) {
                (Some(h), Some(at)) => {
                    let delay = (h.at_ms - at).max(0);
                    let evidence = Evidence {
                        turns: asked,
                        ..measured(
                            as_f64(delay) / 1000.0,
                            threshold,
                            "s",
                            format!("handoff ({}) {} after the request", h.rule, seconds(delay)),
                        )
                    };
                    if delay <= *within_ms {
                        passed(evidence)
                    } else {
                        failed(evidence)
                    }
                }
                (Some(h), None) => passed(Evidence {
                    turns: asked,
                    note: Some(format!("handoff ({}) after the request", h.rule)),
                    ..Evidence::default()
                }),
                (None, _) => failed(Evidence {
                    turns: asked,
                    threshold: Some(threshold),
                    unit: Some("s".into()),
                    note: Some("no handoff followed the request".into()),
                    ..Evidence::default()
                }),
            }
        }
        Check::MaxFirstAudio { max_ms } => match input.first_audio_ms {
            Some(ms) => {
                let evidence = measured(
                    as_f64(ms),
                    as_f64(*max_ms),
                    "ms",
                    format!("first audio after {ms} ms"),
                );
                if ms <= *max_ms {
                    passed(evidence)
                } else {
                    failed(evidence)
                }
            }
            None if turns_of(input, Speaker::Agent).next().is_none() => {
                failed(noted("the agent never spoke"))
            }
            None => not_applicable("first audio was not measured"),
        },
        Check::MaxResponseGap { max_ms } => {
            let mut gaps: Vec<(i64, usize)> = turns_of(input, Speaker::Agent)
                .filter_map(|(i, t)| t.response_gap_ms.map(|g| (g, i)))
                .collect();
            if gaps.is_empty() {
                return not_applicable("no response gap was measured");
            }
            gaps.sort_unstable();
            let sorted: Vec<i64> = gaps.iter().map(|(g, _)| *g).collect();
            let p95 = percentile(&sorted, 95.0).unwrap_or(0);
            let worst = gaps.last().map(|(_, i)| *i);
            let evidence = Evidence {
                turns: worst
                    .and_then(|i| turns.get(i).map(|t| quote(turns, i, t.said(), None)))
                    .into_iter()
                    .collect(),
                ..measured(
                    as_f64(p95),
                    as_f64(*max_ms),
                    "ms",
                    format!("p95 of {} response gap(s) is {p95} ms", sorted.len()),
                )
            };
            if p95 <= *max_ms {
                passed(evidence)
            } else {
                failed(evidence)
            }
        }
        Check::MaxDuration { max_ms } => match input.duration_ms {
            Some(ms) => {
                let evidence = measured(
                    as_f64(ms) / 1000.0,
                    as_f64(*max_ms) / 1000.0,
                    "s",
                    format!("the conversation lasted {}", seconds(ms)),
                );
                if ms <= *max_ms {
                    passed(evidence)
                } else {
                    failed(evidence)
                }
            }
            None => not_applicable("the duration is unknown"),
        },
        Check::OutcomeIntent { intent } => {
            let reported: Vec<&str> = input.intents.iter().map(|r| r.intent.as_str()).collect();
            if reported.iter().any(|r| r == intent) {
                passed(noted(format!("the intent {intent} was reported")))
            } else if reported.is_empty() {
                failed(noted(format!("no intent was reported (expected {intent})")))
            } else {
                failed(noted(format!(
                    "reported {} (expected {intent})",
                    reported.join(", ")
                )))
            }
        }
        Check::OutcomeToolField {
            tool,
            field,
            equals,
        } => {
            let last = input
                .tool_calls
                .iter()
                .rev()
                .find(|c| &c.name == tool && c.status == FunctionCallStatus::Succeeded);
            let Some(call) = last else {
                return failed(noted(format!("{tool} never succeeded")));
            };
            let found = call.result.as_ref().and_then(|r| r.pointer(field));
            match found {
                Some(v) if json_equal(v, equals) => {
                    passed(noted(format!("{tool} result {field} = {v}")))
                }
                Some(v) => failed(noted(format!(
                    "{tool} result {field} = {v} (expected {equals})"
                ))),
                None => failed(noted(format!(
                    "{tool} result has no {field} (expected {equals})"
                ))),
            }
        }
        Check::Judge { pass, .. } => judged(&c.key, *pass, turns, judge),
    }
}

fn judged(key: &str, pass: JudgePass, turns: &[Turn], judge: &JudgeAnswer) -> Checked {
    let judgments = match judge {
        JudgeAnswer::Answered(j) => j,
        JudgeAnswer::Failed(why) => return (Verdict::Error, 0.0, noted(why.clone())),
    };
    let Some(j) = judgments.iter().find(|j| j.key == key) else {
        return (Verdict::Error, 0.0, noted("the judge gave no answer"));
    };
    let quotes: Vec<TurnQuote> = j
        .evidence_turns
        .iter()
        .filter_map(|n| usize::try_from(*n).ok())
        .filter_map(|i| turns.get(i).map(|t| quote(turns, i, t.said(), None)))
        .take(MAX_QUOTES)
        .collect();
    let evidence = Evidence {
        turns: quotes,
        measured: Some(f64::from(j.score)),
        threshold: match pass {
            JudgePass::Yes => None,
            JudgePass::MinScore(m) => Some(f64::from(m)),
        },
        unit: Some("score".into()),
        note: Some(j.rationale.clone()),
    };
    match pass {
        JudgePass::Yes if j.verdict == Answer::Yes => passed(evidence),
        JudgePass::Yes => failed(evidence),
        JudgePass::MinScore(m) => {
            let score = (f64::from(j.score) - 1.0) / 4.0;
            if j.score >= m {
                (Verdict::Passed, score, evidence)
            } else {
                (Verdict::Failed, score, evidence)
            }
        }
    }
}

#[cfg(test)]
#[path = "score_tests.rs"]
mod tests;
