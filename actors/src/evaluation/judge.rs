//! The LLM judge: one request per evaluation to an OpenAI-compatible Chat Completions
//! endpoint (`POST {base_url}/chat/completions`), answering every `llm_judge` criterion of
//! the rubric and writing the session's summary and tags.
//!
//! **What the judge sees** ([`JudgeInput`], sent as the user message, JSON): the criteria
//! (key, question, answer scale), the numbered transcript turns, the tool calls with their
//! status, arguments and results (placed after the turn they followed), the handoffs and why
//! the conversation ended. Every text is redacted first ([`super::redact`]): the judge never
//! sees secrets. The transcript is bounded (`max_transcript_chars`): when it is longer,
//! turns are dropped from the middle, `omitted_turns` says which, and the system prompt tells
//! the judge so.
//!
//! **What it answers** (`response_format` `json_schema`, `strict`): `{summary, tags,
//! judgments: [{key, verdict: "yes"|"no", score: 1–5, evidence_turns, rationale}]}`. The
//! answer is checked: one judgment per criterion key, a score in 1–5, evidence turns that
//! exist. Anything else is [`JudgeError::Invalid`], retried like a timeout or an HTTP error.
//!
//! The client records the model that answered, the latency and the tokens (`usage`). It
//! never logs the key.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::input::{EvaluationInput, Speaker};
use super::redact::{redact, redact_json};
use super::rubric::JudgePass;

/// Largest answer read from the endpoint.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Longest single turn sent (characters).
const MAX_TURN_CHARS: usize = 2_000;
/// Longest tool argument or result sent (characters of JSON).
const MAX_TOOL_CHARS: usize = 600;
/// Most tool calls sent (the first and the last halves are kept).
const MAX_TOOL_CALLS: usize = 24;
/// Longest summary kept.
const MAX_SUMMARY_CHARS: usize = 1_000;
/// Most tags kept.
const MAX_TAGS: usize = 8;
/// Longest tag kept.
const MAX_TAG_CHARS: usize = 40;
/// Longest rationale kept.
const MAX_RATIONALE_CHARS: usize = 1_000;

/// Settings of the judge.
#[derive(Clone)]
pub struct JudgeSettings {
    /// Base URL of the OpenAI-compatible API (`JUDGE_BASE_URL`, default
    /// `https://api.openai.com/v1`); requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Model (`JUDGE_MODEL`).
    pub model: String,
    /// Deadline of one request (`JUDGE_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Bound of the transcript sent, in characters (`JUDGE_MAX_TRANSCRIPT_CHARS`).
    pub max_transcript_chars: usize,
    /// The key used when the tenant has no model key of its own (`OPENAI_API_KEY`).
    pub api_key: Option<String>,
    /// Ask the judge for a summary and tags even when the rubric has no `llm_judge`
    /// criterion (`JUDGE_SUMMARIES`).
    pub summaries: bool,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            base_url: String::from("https://api.openai.com/v1"),
            model: String::from("gpt-4o-mini"),
            timeout: Duration::from_secs(30),
            max_transcript_chars: 24_000,
            api_key: None,
            summaries: true,
        }
    }
}

impl std::fmt::Debug for JudgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_transcript_chars", &self.max_transcript_chars)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("summaries", &self.summaries)
            .finish()
    }
}

/// Why the judge gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JudgeError {
    /// No answer within the deadline.
    #[error("the judge did not answer within {0} ms")]
    Timeout(u64),
    /// The endpoint answered an error status.
    #[error("the judge answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error message of the answer (bounded).
        message: String,
    },
    /// The answer was not the JSON asked for.
    #[error("the judge's answer is invalid: {0}")]
    Invalid(String),
    /// The request could not be made (connection refused, reset …).
    #[error("the judge could not be reached: {0}")]
    Transport(String),
    /// No model key: neither the tenant nor the service has one.
    #[error("no model key for the judge")]
    NoKey,
}

impl JudgeError {
    /// The `outcome` label of `judge_requests_total`.
    pub const fn label(&self) -> &'static str {
        match self {
            JudgeError::Timeout(_) => "timeout",
            JudgeError::Status { .. } => "http_error",
            JudgeError::Invalid(_) => "invalid",
            JudgeError::Transport(_) => "transport",
            JudgeError::NoKey => "no_key",
        }
    }

    /// Whether trying again may help.
    pub const fn is_retryable(&self) -> bool {
        !matches!(self, JudgeError::NoKey)
    }
}

// === What the judge sees ===

/// How a question is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerScale {
    /// Yes or no (the score is 5 for yes, 1 for no).
    YesNo,
    /// A score from 1 (worst) to 5 (best).
    Score1To5,
}

/// A question for the judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeCriterion {
    /// The criterion's key (echoed in the judgment).
    pub key: String,
    /// The question.
    pub question: String,
    /// How it is answered.
    pub answer: AnswerScale,
}

/// A numbered turn as the judge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeTurn {
    /// Its number (evidence refers to it).
    pub turn: usize,
    /// `caller`, `agent` or `system`.
    pub speaker: String,
    /// What was said (heard part for an interrupted agent turn), redacted.
    pub text: String,
    /// The caller cut the agent off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// A tool call as the judge sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeToolCall {
    /// The turn it followed (none: before the first turn).
    pub after_turn: Option<usize>,
    /// Tool name.
    pub name: String,
    /// `succeeded`, `failed`, `refused`, …
    pub status: String,
    /// Arguments (redacted, bounded).
    pub arguments: Value,
    /// Result or error given to the model (redacted, bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// A handoff as the judge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeHandoff {
    /// What fired it.
    pub rule: String,
    /// Queue.
    pub queue: Option<String>,
    /// Why (redacted).
    pub reason: String,
    /// Where it stands.
    pub status: String,
}

/// Turns left out of the middle of a long transcript (inclusive range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OmittedTurns {
    /// First turn left out.
    pub from: usize,
    /// Last turn left out.
    pub to: usize,
}

/// The user message of a judge request (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeInput {
    /// The questions, one per `llm_judge` criterion (may be empty: summary only).
    pub criteria: Vec<JudgeCriterion>,
    /// Turns in the whole transcript.
    pub turn_count: usize,
    /// The turns sent.
    pub turns: Vec<JudgeTurn>,
    /// Turns left out because the transcript was too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted_turns: Option<OmittedTurns>,
    /// Tool calls.
    pub tool_calls: Vec<JudgeToolCall>,
    /// Handoffs to humans.
    pub handoffs: Vec<JudgeHandoff>,
    /// Why the conversation ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_because: Option<String>,
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

fn bounded_json(value: &Value) -> Value {
    let redacted = redact_json(value);
    let text = redacted.to_string();
    if text.chars().count() <= MAX_TOOL_CHARS {
        redacted
    } else {
        Value::String(truncate_chars(&text, MAX_TOOL_CHARS))
    }
}

impl JudgeInput {
    /// What the judge is shown of `input` for `questions` (key, question, pass rule),
    /// redacted, with at most about `max_chars` characters of turn text.
    pub fn build(
        input: &EvaluationInput,
        questions: &[(&str, &str, JudgePass)],
        max_chars: usize,
    ) -> Self {
        let all: Vec<JudgeTurn> = input
            .turns
            .iter()
            .enumerate()
            .map(|(i, t)| JudgeTurn {
                turn: i,
                speaker: t.speaker.as_str().to_owned(),
                text: truncate_chars(&redact(t.said()), MAX_TURN_CHARS),
                interrupted: t.interrupted && t.speaker == Speaker::Agent,
            })
            .collect();
        let (turns, omitted_turns) = keep_ends(all, max_chars);
        let mut tool_calls: Vec<JudgeToolCall> = input
            .tool_calls
            .iter()
            .map(|c| JudgeToolCall {
                after_turn: input
                    .turns
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.at_ms().is_some_and(|at| at <= c.started_ms))
                    .map(|(i, _)| i)
                    .next_back(),
                name: c.name.clone(),
                status: c.status.as_str().to_owned(),
                arguments: bounded_json(&c.arguments),
                result: c
                    .result
                    .as_ref()
                    .map(bounded_json)
                    .or_else(|| c.error.as_ref().map(|e| bounded_json(&json!({"error": e})))),
            })
            .collect();
        if tool_calls.len() > MAX_TOOL_CALLS {
            let tail = tool_calls.split_off(tool_calls.len() - MAX_TOOL_CALLS / 2);
            tool_calls.truncate(MAX_TOOL_CALLS / 2);
            tool_calls.extend(tail);
        }
        Self {
            criteria: questions
                .iter()
                .map(|(key, question, pass)| JudgeCriterion {
                    key: (*key).to_owned(),
                    question: (*question).to_owned(),
                    answer: match pass {
                        JudgePass::Yes => AnswerScale::YesNo,
                        JudgePass::MinScore(_) => AnswerScale::Score1To5,
                    },
                })
                .collect(),
            turn_count: input.turns.len(),
            turns,
            omitted_turns,
            tool_calls,
            handoffs: input
                .handoffs
                .iter()
                .map(|h| JudgeHandoff {
                    rule: h.rule.clone(),
                    queue: h.queue.clone(),
                    reason: truncate_chars(&redact(&h.reason), 300),
                    status: h.status.clone(),
                })
                .collect(),
            ended_because: input.end_reason.clone(),
        }
    }
}

/// Keeps the first and last turns within `max_chars` of text (half the budget each) and
/// says which were left out of the middle.
fn keep_ends(turns: Vec<JudgeTurn>, max_chars: usize) -> (Vec<JudgeTurn>, Option<OmittedTurns>) {
    let size = |t: &JudgeTurn| t.text.chars().count() + 16;
    let total: usize = turns.iter().map(size).sum();
    if total <= max_chars || turns.len() < 2 {
        return (turns, None);
    }
    let half = max_chars / 2;
    let mut head = 0;
    let mut used = 0;
    while head < turns.len() && used + size(&turns[head]) <= half {
        used += size(&turns[head]);
        head += 1;
    }
    let mut tail = turns.len();
    let mut used = 0;
    while tail > head && used + size(&turns[tail - 1]) <= half {
        used += size(&turns[tail - 1]);
        tail -= 1;
    }
    if tail <= head {
        return (turns, None);
    }
    let omitted = OmittedTurns {
        from: head,
        to: tail - 1,
    };
    let kept = turns
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i < head || *i >= tail)
        .map(|(_, t)| t)
        .collect();
    (kept, Some(omitted))
}

/// The system message: the judge's task and rules.
pub const SYSTEM_PROMPT: &str = "You evaluate one phone conversation between a caller and an AI voice agent. \
The user message is JSON: `criteria` (questions with their answer scale), `turns` (the numbered transcript; \
`interrupted` marks agent turns the caller cut off, showing only what the caller heard), `tool_calls` (what the \
agent's tools were asked and answered, after the turn they followed), `handoffs` (transfers to humans) and \
`ended_because`. If `omitted_turns` is present, the transcript was too long and those turns were left out of the \
middle: judge from what you see and do not guess what was omitted. Secrets and card numbers appear as [redacted]. \
Answer every criterion, using its key: for `yes_no` give verdict \"yes\" or \"no\" and score 5 for yes or 1 for no; \
for `score_1_5` give a score from 1 (worst) to 5 (best) and verdict \"yes\" when the score is 3 or more. \
`evidence_turns` lists the numbers of the turns that support your answer; `rationale` is one or two sentences. \
Also write `summary`: at most three sentences on what the caller wanted and what happened; and `tags`: up to five \
short lowercase topic tags (for example `order_status`, `refund`, `handoff`). Use only the conversation.";

/// The `response_format` asking for the structured answer, with the judgment keys
/// restricted to `keys` (strict JSON schema).
pub fn response_format(keys: &[&str]) -> Value {
    let key_schema = if keys.is_empty() {
        json!({"type": "string"})
    } else {
        json!({"type": "string", "enum": keys})
    };
    json!({
        "type": "json_schema",
        "json_schema": {
            "name": "call_evaluation",
            "strict": true,
            "schema": {
                "type": "object",
                "properties": {
                    "summary": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "judgments": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "key": key_schema,
                                "verdict": {"type": "string", "enum": ["yes", "no"]},
                                "score": {"type": "integer"},
                                "evidence_turns": {"type": "array", "items": {"type": "integer"}},
                                "rationale": {"type": "string"}
                            },
                            "required": ["key", "verdict", "score", "evidence_turns", "rationale"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["summary", "tags", "judgments"],
                "additionalProperties": false
            }
        }
    })
}

/// The request body for `model` and `input`.
pub fn request_body(model: &str, input: &JudgeInput) -> Value {
    let keys: Vec<&str> = input.criteria.iter().map(|c| c.key.as_str()).collect();
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": serde_json::to_string(input).unwrap_or_default()}
        ],
        "response_format": response_format(&keys),
    })
}

// === What the judge answers ===

/// A yes/no verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Yes.
    Yes,
    /// No.
    No,
}

/// The judge's answer to one criterion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgment {
    /// The criterion's key.
    pub key: String,
    /// Yes or no.
    pub verdict: Answer,
    /// 1–5.
    pub score: u8,
    /// Turn numbers supporting the answer.
    pub evidence_turns: Vec<i64>,
    /// Why, briefly.
    pub rationale: String,
}

/// The structured answer (the assistant message's content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeOutput {
    /// What happened, briefly.
    pub summary: String,
    /// Topic tags.
    pub tags: Vec<String>,
    /// One per criterion.
    pub judgments: Vec<Judgment>,
}

/// A judge answer with what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeCall {
    /// The checked answer.
    pub output: JudgeOutput,
    /// The model that answered (as the endpoint reported it).
    pub model: String,
    /// Request latency (ms).
    pub latency_ms: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
}

fn clean_tag(tag: &str) -> Option<String> {
    let t: String = tag
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '-' {
                '_'
            } else {
                c
            }
        })
        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .take(MAX_TAG_CHARS)
        .collect();
    (!t.is_empty()).then_some(t)
}

/// Parses and checks a Chat Completions answer: the content must be a [`JudgeOutput`] with
/// one judgment per key of `keys` and scores in 1–5; evidence turns outside
/// `0..turn_count` are dropped, tags cleaned, texts bounded. Returns the output, the model,
/// and the (prompt, completion) tokens.
pub fn parse_completion(
    body: &[u8],
    keys: &[&str],
    turn_count: usize,
) -> Result<(JudgeOutput, String, i64, i64), JudgeError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| JudgeError::Invalid(format!("the answer is not JSON: {e}")))?;
    let message = v
        .pointer("/choices/0/message")
        .ok_or_else(|| JudgeError::Invalid("the answer has no choices[0].message".into()))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        return Err(JudgeError::Invalid(format!(
            "the model refused: {}",
            truncate_chars(refusal, 200)
        )));
    }
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| JudgeError::Invalid("the message has no content".into()))?;
    let mut output: JudgeOutput = serde_json::from_str(content)
        .map_err(|e| JudgeError::Invalid(format!("the content does not match the schema: {e}")))?;
    for key in keys {
        let n = output.judgments.iter().filter(|j| j.key == *key).count();
        if n != 1 {
            return Err(JudgeError::Invalid(format!(
                "{n} judgments for the criterion {key} (one expected)"
            )));
        }
    }
    output.judgments.retain(|j| keys.contains(&j.key.as_str()));
    for j in &mut output.judgments {
        if !(1..=5).contains(&j.score) {
            return Err(JudgeError::Invalid(format!(
                "score {} of {} is not between 1 and 5",
                j.score, j.key
            )));
        }
        j.evidence_turns
            .retain(|t| usize::try_from(*t).is_ok_and(|t| t < turn_count));
        j.evidence_turns.dedup();
        j.rationale = truncate_chars(&j.rationale, MAX_RATIONALE_CHARS);
    }
    output.summary = truncate_chars(output.summary.trim(), MAX_SUMMARY_CHARS);
    let mut tags: Vec<String> = Vec::new();
    for tag in output.tags.iter().filter_map(|t| clean_tag(t)) {
        if !tags.contains(&tag) && tags.len() < MAX_TAGS {
            tags.push(tag);
        }
    }
    output.tags = tags;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let tokens = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    Ok((
        output,
        model,
        tokens("prompt_tokens"),
        tokens("completion_tokens"),
    ))
}

// === Judge ===

/// The judge client (cheap to clone: the connection pool is shared).
#[derive(Clone)]
pub struct Judge {
    client: reqwest::Client,
    settings: JudgeSettings,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Judge {
    /// Builds the client. Installs the ring TLS provider if the process has none yet.
    pub fn new(settings: JudgeSettings) -> Result<Self, JudgeError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("stateset-voice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| JudgeError::Transport(format!("cannot build the http client: {e}")))?;
        Ok(Self { client, settings })
    }

    /// The settings.
    pub fn settings(&self) -> &JudgeSettings {
        &self.settings
    }

    /// The key to use: the tenant's own, else the service's.
    pub fn key<'a>(&'a self, tenant_key: Option<&'a str>) -> Option<&'a str> {
        tenant_key.or(self.settings.api_key.as_deref())
    }

    /// Asks the judge about `input` with `key`; the answer is checked against the criteria
    /// of `input`.
    pub async fn ask(&self, key: &str, input: &JudgeInput) -> Result<JudgeCall, JudgeError> {
        let url = format!(
            "{}/chat/completions",
            self.settings.base_url.trim_end_matches('/')
        );
        let body = request_body(&self.settings.model, input);
        let timeout = self.settings.timeout;
        let started = Instant::now();
        let exchange = async {
            let response = self
                .client
                .post(url)
                .bearer_auth(key)
                .timeout(timeout)
                .json(&body)
                .send()
                .await
                .map_err(|e| request_error(e, timeout))?;
            let status = response.status().as_u16();
            let bytes = read_limited(response, timeout).await?;
            Ok::<_, JudgeError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| JudgeError::Timeout(millis(timeout)))??;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            return Err(JudgeError::Status {
                status,
                message: truncate_chars(&redact(&message), 200),
            });
        }
        let keys: Vec<&str> = input.criteria.iter().map(|c| c.key.as_str()).collect();
        let (output, model, input_tokens, output_tokens) =
            parse_completion(&bytes, &keys, input.turn_count)?;
        Ok(JudgeCall {
            output,
            model: if model.is_empty() {
                self.settings.model.clone()
            } else {
                model
            },
            latency_ms,
            input_tokens,
            output_tokens,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn request_error(error: reqwest::Error, timeout: Duration) -> JudgeError {
    if error.is_timeout() {
        return JudgeError::Timeout(millis(timeout));
    }
    // Without the URL (it is configuration), with the causes (`connection refused`).
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    JudgeError::Transport(truncate_chars(&text, 300))
}

async fn read_limited(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, JudgeError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(JudgeError::Invalid(format!(
                        "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(request_error(e, timeout)),
        }
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
