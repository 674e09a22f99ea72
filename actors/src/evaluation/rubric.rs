//! The evaluation rubric of an agent version (DESIGN §5): a pass score and weighted
//! criteria, as stored (JSON, immutable with the version) and as validated when a version is
//! written, plus its canonical hash and its compiled form.
//!
//! Validation names the offending field (`rubric.criteria[2].pattern`) in the style of
//! [`crate::contract::ContractError`], so the admin API can answer 400 with it. A validated
//! rubric always compiles ([`CompiledRubric`]): patterns are case-insensitive regular
//! expressions with a size limit, like the contract's escalation patterns.
//!
//! The **rubric hash** is the SHA-256 of the canonical JSON of the validated rubric (object
//! keys sorted, defaults filled in, numbers in their typed form), so two spellings of one
//! rubric hash alike and an evaluation names exactly what it was scored against.
//!
//! This module knows nothing about the store, the actor or the judge's wire format.

use std::collections::HashSet;
use std::fmt::Write as _;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Most criteria in one rubric.
pub const MAX_CRITERIA: usize = 32;
/// Most `llm_judge` criteria in one rubric (they share one judge request).
pub const MAX_JUDGE_CRITERIA: usize = 10;
/// Most patterns in one `handoff_when_asked` criterion.
const MAX_PATTERNS: usize = 32;
/// Longest pattern.
const MAX_PATTERN_LEN: usize = 200;
/// Longest judge question.
const MAX_QUESTION_LEN: usize = 500;
/// Largest rubric, as canonical JSON.
const MAX_RUBRIC_BYTES: usize = 32 * 1024;
/// Compiled size limit of one pattern (the same as the contract's escalation patterns).
const REGEX_SIZE_LIMIT: usize = 1 << 16;

/// A rubric: what a finished conversation of the version is scored against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rubric {
    /// The weighted score (0–1) a call needs to pass.
    pub pass_score: f64,
    /// The criteria, scored in order.
    pub criteria: Vec<Criterion>,
}

/// One criterion of a rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// Unique within the rubric (`[A-Za-z0-9_-]`, 1–64); results and aggregates use it.
    pub key: String,
    /// What is checked, with its parameters.
    #[serde(flatten)]
    pub kind: CriterionKind,
    /// Weight in the call's score (> 0, default 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// A failed critical criterion fails the call whatever its score.
    #[serde(default)]
    pub critical: bool,
}

const fn default_weight() -> f64 {
    1.0
}

const fn default_handoff_within() -> u32 {
    30
}

/// The kinds of criteria (DESIGN §5) and their parameters. Everything but `llm_judge` is
/// computed from the stored call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CriterionKind {
    /// An agent turn the caller heard matches `pattern` (optionally one starting within
    /// the first `within_seconds` of the conversation, e.g. a recording disclosure).
    RequiredPhrase {
        /// Case-insensitive regular expression.
        pattern: String,
        /// Only turns within this many seconds of the start count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within_seconds: Option<u32>,
    },
    /// No agent turn (what the model generated, heard or not) matches `pattern`.
    ForbiddenPhrase {
        /// Case-insensitive regular expression.
        pattern: String,
    },
    /// `tool` was called. With a condition, the criterion applies only when a caller turn
    /// matched `when_caller_says` or the agent reported `when_intent`.
    ToolCalled {
        /// Tool name.
        tool: String,
        /// Case-insensitive regular expression over caller turns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when_caller_says: Option<String>,
        /// An intent reported through `report_intent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        when_intent: Option<String>,
    },
    /// Every invocation of `tool` succeeded (not applicable when it was never called).
    ToolSucceeded {
        /// Tool name.
        tool: String,
    },
    /// `tool` never ran before the caller's identity was verified (not applicable when it
    /// never ran; a call the runtime refused did not run).
    IdentityBefore {
        /// Tool name.
        tool: String,
    },
    /// A caller turn asking for a human (any of `patterns`) is followed by a handoff within
    /// `within_seconds` (not applicable when nobody asked).
    HandoffWhenAsked {
        /// Case-insensitive regular expressions over caller turns.
        patterns: Vec<String>,
        /// Seconds allowed between the request and the handoff (default 30).
        #[serde(default = "default_handoff_within")]
        within_seconds: u32,
    },
    /// The model's first audio came within `max_ms` of the session start.
    MaxFirstAudioMs {
        /// Threshold (ms).
        max_ms: u64,
    },
    /// The 95th percentile of the response gaps (end of a caller turn to the agent's first
    /// audio) is at most `max_ms`.
    MaxResponseGapMs {
        /// Threshold (ms).
        max_ms: u64,
    },
    /// The conversation lasted at most `max_seconds`.
    MaxDurationS {
        /// Threshold (s).
        max_seconds: u64,
    },
    /// The conversation reached an expected outcome: the agent reported `intent`, or the
    /// last successful result of `tool` has `equals` at `field` (a JSON pointer).
    Outcome {
        /// An intent reported through `report_intent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<String>,
        /// A tool whose result is checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        /// JSON pointer into the tool's result (`/status`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// The expected value at `field`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<Value>,
    },
    /// A question about the transcript answered by the LLM judge: passes on "yes", or, with
    /// `min_score`, on a 1–5 score of at least `min_score`.
    LlmJudge {
        /// The question (1–500 characters).
        question: String,
        /// Pass on a score of at least this (1–5) instead of on "yes".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_score: Option<u8>,
    },
}

impl CriterionKind {
    /// The kind's wire name.
    pub const fn name(&self) -> &'static str {
        match self {
            CriterionKind::RequiredPhrase { .. } => "required_phrase",
            CriterionKind::ForbiddenPhrase { .. } => "forbidden_phrase",
            CriterionKind::ToolCalled { .. } => "tool_called",
            CriterionKind::ToolSucceeded { .. } => "tool_succeeded",
            CriterionKind::IdentityBefore { .. } => "identity_before",
            CriterionKind::HandoffWhenAsked { .. } => "handoff_when_asked",
            CriterionKind::MaxFirstAudioMs { .. } => "max_first_audio_ms",
            CriterionKind::MaxResponseGapMs { .. } => "max_response_gap_ms",
            CriterionKind::MaxDurationS { .. } => "max_duration_s",
            CriterionKind::Outcome { .. } => "outcome",
            CriterionKind::LlmJudge { .. } => "llm_judge",
        }
    }

    /// Whether the LLM judge answers it.
    pub const fn is_judge(&self) -> bool {
        matches!(self, CriterionKind::LlmJudge { .. })
    }
}

/// A rubric field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RubricError {
    /// The field (`rubric.criteria[1].pattern`).
    pub field: String,
    /// Why.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> RubricError {
    RubricError {
        field: field.into(),
        message: message.into(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Compiles one rubric pattern: case-insensitive, 1–200 characters, size-limited.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.trim().is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("patterns are 1 to {MAX_PATTERN_LEN} characters"));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid pattern {pattern:?}: {e}"))
}

impl Rubric {
    /// Validates the rubric; the error names the field at fault (`rubric.…`).
    pub fn validate(self) -> Result<Self, RubricError> {
        CompiledRubric::compile(self).map(|c| c.rubric)
    }

    /// Parses and validates the stored JSON form.
    pub fn from_json(text: &str) -> Result<Self, RubricError> {
        let rubric: Rubric = serde_json::from_str(text)
            .map_err(|e| bad("rubric", format!("is not a valid rubric: {e}")))?;
        rubric.validate()
    }

    /// The stored JSON form (canonical: sorted keys, defaults written out).
    pub fn to_json(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// The rubric hash: hex SHA-256 of [`Rubric::to_json`].
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.to_json().as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// Whether any criterion is answered by the LLM judge.
    pub fn has_judge_criteria(&self) -> bool {
        self.criteria.iter().any(|c| c.kind.is_judge())
    }

    /// Checks that every tool a criterion names is one of `tools` (the version's contract),
    /// naming the field of the first that is not.
    pub fn check_tools(&self, tools: &[&str]) -> Result<(), RubricError> {
        for (i, criterion) in self.criteria.iter().enumerate() {
            let tool = match &criterion.kind {
                CriterionKind::ToolCalled { tool, .. }
                | CriterionKind::ToolSucceeded { tool }
                | CriterionKind::IdentityBefore { tool } => Some(tool),
                CriterionKind::Outcome { tool, .. } => tool.as_ref(),
                _ => None,
            };
            if let Some(tool) = tool
                && !tools.contains(&tool.as_str())
            {
                return Err(bad(
                    format!("rubric.criteria[{i}].tool"),
                    format!("{tool} is not a tool of this version"),
                ));
            }
        }
        Ok(())
    }
}

/// Writes `value` as JSON with object keys sorted at every level (independent of how
/// `serde_json` orders maps in this build).
pub fn canonical_json(value: &Value) -> String {
    fn write(out: &mut String, value: &Value) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(v) = map.get(key) {
                        write(out, v);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(out, item);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(&mut out, value);
    out
}

// === CompiledRubric ===

/// How the judge's answer to a question decides the criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgePass {
    /// Passes on "yes".
    Yes,
    /// Passes on a 1–5 score of at least this.
    MinScore(u8),
}

/// A criterion ready to score: patterns compiled, thresholds in milliseconds.
#[derive(Debug, Clone)]
pub enum Check {
    /// See [`CriterionKind::RequiredPhrase`].
    RequiredPhrase {
        /// The pattern.
        pattern: Regex,
        /// Window from the start (ms).
        within_ms: Option<i64>,
    },
    /// See [`CriterionKind::ForbiddenPhrase`].
    ForbiddenPhrase {
        /// The pattern.
        pattern: Regex,
    },
    /// See [`CriterionKind::ToolCalled`].
    ToolCalled {
        /// Tool name.
        tool: String,
        /// Caller-turn condition.
        when_caller_says: Option<Regex>,
        /// Intent condition.
        when_intent: Option<String>,
    },
    /// See [`CriterionKind::ToolSucceeded`].
    ToolSucceeded {
        /// Tool name.
        tool: String,
    },
    /// See [`CriterionKind::IdentityBefore`].
    IdentityBefore {
        /// Tool name.
        tool: String,
    },
    /// See [`CriterionKind::HandoffWhenAsked`].
    HandoffWhenAsked {
        /// Caller-turn patterns.
        patterns: Vec<Regex>,
        /// Allowed delay (ms).
        within_ms: i64,
    },
    /// See [`CriterionKind::MaxFirstAudioMs`].
    MaxFirstAudio {
        /// Threshold (ms).
        max_ms: i64,
    },
    /// See [`CriterionKind::MaxResponseGapMs`].
    MaxResponseGap {
        /// Threshold (ms).
        max_ms: i64,
    },
    /// See [`CriterionKind::MaxDurationS`].
    MaxDuration {
        /// Threshold (ms).
        max_ms: i64,
    },
    /// An `outcome` criterion on a reported intent.
    OutcomeIntent {
        /// The expected intent.
        intent: String,
    },
    /// An `outcome` criterion on a tool result field.
    OutcomeToolField {
        /// Tool name.
        tool: String,
        /// JSON pointer.
        field: String,
        /// Expected value.
        equals: Value,
    },
    /// See [`CriterionKind::LlmJudge`].
    Judge {
        /// The question.
        question: String,
        /// The pass rule.
        pass: JudgePass,
    },
}

/// A compiled criterion.
#[derive(Debug, Clone)]
pub struct CompiledCriterion {
    /// Key.
    pub key: String,
    /// Kind name (`required_phrase`, …).
    pub kind: &'static str,
    /// Weight.
    pub weight: f64,
    /// Critical.
    pub critical: bool,
    /// What to check.
    pub check: Check,
}

/// A validated rubric with its patterns compiled and its hash: what scoring runs on.
#[derive(Debug, Clone)]
pub struct CompiledRubric {
    /// The rubric.
    pub rubric: Rubric,
    /// Its hash ([`Rubric::hash`]).
    pub hash: String,
    /// Its criteria, in order.
    pub criteria: Vec<CompiledCriterion>,
}

impl CompiledRubric {
    /// Validates and compiles; the error names the field at fault.
    pub fn compile(rubric: Rubric) -> Result<Self, RubricError> {
        if !rubric.pass_score.is_finite() || !(0.0..=1.0).contains(&rubric.pass_score) {
            return Err(bad("rubric.pass_score", "must be between 0 and 1"));
        }
        if rubric.criteria.is_empty() || rubric.criteria.len() > MAX_CRITERIA {
            return Err(bad(
                "rubric.criteria",
                format!("must list 1 to {MAX_CRITERIA} criteria"),
            ));
        }
        let judges = rubric.criteria.iter().filter(|c| c.kind.is_judge()).count();
        if judges > MAX_JUDGE_CRITERIA {
            return Err(bad(
                "rubric.criteria",
                format!("at most {MAX_JUDGE_CRITERIA} llm_judge criteria"),
            ));
        }
        let mut keys = HashSet::new();
        let mut criteria = Vec::with_capacity(rubric.criteria.len());
        for (i, criterion) in rubric.criteria.iter().enumerate() {
            let at = |f: &str| format!("rubric.criteria[{i}].{f}");
            if !valid_name(&criterion.key) {
                return Err(bad(
                    at("key"),
                    "must be 1 to 64 of letters, digits, _ and -",
                ));
            }
            if !keys.insert(criterion.key.as_str()) {
                return Err(bad(at("key"), "is used by another criterion"));
            }
            if !criterion.weight.is_finite() || criterion.weight <= 0.0 || criterion.weight > 1000.0
            {
                return Err(bad(at("weight"), "must be greater than 0 and at most 1000"));
            }
            let check = compile_check(&criterion.kind, &at)?;
            criteria.push(CompiledCriterion {
                key: criterion.key.clone(),
                kind: criterion.kind.name(),
                weight: criterion.weight,
                critical: criterion.critical,
                check,
            });
        }
        let json = rubric.to_json();
        if json.len() > MAX_RUBRIC_BYTES {
            return Err(bad(
                "rubric",
                format!("must be at most {} KiB", MAX_RUBRIC_BYTES / 1024),
            ));
        }
        let hash = rubric.hash();
        Ok(Self {
            rubric,
            hash,
            criteria,
        })
    }

    /// The judge criteria: (key, question, pass rule), in rubric order.
    pub fn judge_questions(&self) -> Vec<(&str, &str, JudgePass)> {
        self.criteria
            .iter()
            .filter_map(|c| match &c.check {
                Check::Judge { question, pass } => Some((c.key.as_str(), question.as_str(), *pass)),
                _ => None,
            })
            .collect()
    }
}

fn pattern_at(
    pattern: &str,
    field: &dyn Fn(&str) -> String,
    name: &str,
) -> Result<Regex, RubricError> {
    compile_pattern(pattern).map_err(|m| bad(field(name), m))
}

fn tool_at(tool: &str, field: &dyn Fn(&str) -> String) -> Result<String, RubricError> {
    if valid_name(tool) {
        Ok(tool.to_owned())
    } else {
        Err(bad(
            field("tool"),
            "must be a tool name (1 to 64 of letters, digits, _ and -)",
        ))
    }
}

fn millis(value: u64, max: u64, field: String) -> Result<i64, RubricError> {
    if value == 0 || value > max {
        return Err(bad(field, format!("must be between 1 and {max}")));
    }
    i64::try_from(value).map_err(|_| bad("rubric", "value out of range"))
}

fn compile_check(kind: &CriterionKind, at: &dyn Fn(&str) -> String) -> Result<Check, RubricError> {
    Ok(match kind {
        CriterionKind::RequiredPhrase {
            pattern,
            within_seconds,
        } => Check::RequiredPhrase {
            pattern: pattern_at(pattern, at, "pattern")?,
            within_ms: match within_seconds {
                None => None,
                Some(s) => Some(millis(u64::from(*s), 3_600, at("within_seconds"))? * 1000),
            },
        },
        CriterionKind::ForbiddenPhrase { pattern } => Check::ForbiddenPhrase {
            pattern: pattern_at(pattern, at, "pattern")?,
        },
        CriterionKind::ToolCalled {
            tool,
            when_caller_says,
            when_intent,
        } => {
            if when_caller_says.is_some() && when_intent.is_some() {
                return Err(bad(
                    at("when_intent"),
                    "give when_caller_says or when_intent, not both",
                ));
            }
            if let Some(intent) = when_intent
                && !valid_name(intent)
            {
                return Err(bad(
                    at("when_intent"),
                    "must be an intent name (letters, digits, _ and -)",
                ));
            }
            Check::ToolCalled {
                tool: tool_at(tool, at)?,
                when_caller_says: when_caller_says
                    .as_deref()
                    .map(|p| pattern_at(p, at, "when_caller_says"))
                    .transpose()?,
                when_intent: when_intent.clone(),
            }
        }
        CriterionKind::ToolSucceeded { tool } => Check::ToolSucceeded {
            tool: tool_at(tool, at)?,
        },
        CriterionKind::IdentityBefore { tool } => Check::IdentityBefore {
            tool: tool_at(tool, at)?,
        },
        CriterionKind::HandoffWhenAsked {
            patterns,
            within_seconds,
        } => {
            if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
                return Err(bad(
                    at("patterns"),
                    format!("must list 1 to {MAX_PATTERNS} patterns"),
                ));
            }
            Check::HandoffWhenAsked {
                patterns: patterns
                    .iter()
                    .map(|p| pattern_at(p, at, "patterns"))
                    .collect::<Result<_, _>>()?,
                within_ms: millis(u64::from(*within_seconds), 600, at("within_seconds"))? * 1000,
            }
        }
        CriterionKind::MaxFirstAudioMs { max_ms } => Check::MaxFirstAudio {
            max_ms: millis(*max_ms, 600_000, at("max_ms"))?,
        },
        CriterionKind::MaxResponseGapMs { max_ms } => Check::MaxResponseGap {
            max_ms: millis(*max_ms, 600_000, at("max_ms"))?,
        },
        CriterionKind::MaxDurationS { max_seconds } => Check::MaxDuration {
            max_ms: millis(*max_seconds, 86_400, at("max_seconds"))? * 1000,
        },
        CriterionKind::Outcome {
            intent,
            tool,
            field,
            equals,
        } => match (intent, tool) {
            (Some(intent), None) => {
                if !valid_name(intent) {
                    return Err(bad(
                        at("intent"),
                        "must be an intent name (letters, digits, _ and -)",
                    ));
                }
                if field.is_some() || equals.is_some() {
                    return Err(bad(
                        at("field"),
                        "field and equals go with tool, not with intent",
                    ));
                }
                Check::OutcomeIntent {
                    intent: intent.clone(),
                }
            }
            (None, Some(tool)) => {
                let tool = tool_at(tool, at)?;
                let Some(field) = field else {
                    return Err(bad(
                        at("field"),
                        "a tool outcome needs a field (a JSON pointer such as /status)",
                    ));
                };
                if !field.starts_with('/') || field.len() > 200 {
                    return Err(bad(
                        at("field"),
                        "must be a JSON pointer such as /status (at most 200 characters)",
                    ));
                }
                let Some(equals) = equals else {
                    return Err(bad(at("equals"), "a tool outcome needs the expected value"));
                };
                if serde_json::to_string(equals).map_or(0, |s| s.len()) > 1024 {
                    return Err(bad(at("equals"), "must be at most 1 KiB of JSON"));
                }
                Check::OutcomeToolField {
                    tool,
                    field: field.clone(),
                    equals: equals.clone(),
                }
            }
            (Some(_), Some(_)) => {
                return Err(bad(at("intent"), "give intent or tool, not both"));
            }
            (None, None) => {
                return Err(bad(
                    at("intent"),
                    "give the expected intent, or a tool with field and equals",
                ));
            }
        },
        CriterionKind::LlmJudge {
            question,
            min_score,
        } => {
            if question.trim().is_empty() || question.chars().count() > MAX_QUESTION_LEN {
                return Err(bad(
                    at("question"),
                    format!("must be 1 to {MAX_QUESTION_LEN} characters"),
                ));
            }
            let pass = match min_score {
                None => JudgePass::Yes,
                Some(s) if (1..=5).contains(s) => JudgePass::MinScore(*s),
                Some(_) => return Err(bad(at("min_score"), "must be between 1 and 5")),
            };
            Check::Judge {
                question: question.clone(),
                pass,
            }
        }
    })
}

#[cfg(test)]
#[path = "rubric_tests.rs"]
mod tests;
