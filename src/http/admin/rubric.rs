//! The evaluation rubric of an agent version as the admin API reads and writes it, mapped to
//! and from [`actors::evaluation::Rubric`], which validates it (the 422 names the field, e.g.
//! `rubric.criteria[2].pattern`).

use actors::contract::Contract;
use actors::evaluation::{Criterion, Rubric};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::ApiError;

/// What a version's calls are scored against (DESIGN §5): a pass score and weighted
/// criteria. Stored with its hash, immutable once the version is approved.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "pass_score": 0.7,
    "criteria": [
        {"key": "greeting", "kind": "required_phrase", "pattern": "thanks for calling", "within_seconds": 10},
        {"key": "order_lookup", "kind": "tool_called", "tool": "order_status", "when_caller_says": "order", "critical": true},
        {"key": "resolved", "kind": "llm_judge", "question": "Did the agent resolve the caller's question or hand off correctly?"}
    ]
}))]
pub struct RubricDto {
    /// The weighted score (0–1) a call needs to pass.
    #[schema(minimum = 0, maximum = 1)]
    pub pass_score: f64,
    /// The criteria (1–32, keys unique), scored in order.
    #[schema(min_items = 1, max_items = 32)]
    pub criteria: Vec<CriterionDto>,
}

/// One criterion: a `key`, a `kind` with its parameters, a `weight` and `critical`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CriterionDto {
    /// Unique within the rubric (letters, digits, `_`, `-`; 1–64).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub key: String,
    /// `required_phrase` (`pattern`, optional `within_seconds`), `forbidden_phrase`
    /// (`pattern`), `tool_called` (`tool`, optional `when_caller_says` or `when_intent`),
    /// `tool_succeeded` (`tool`), `identity_before` (`tool`), `handoff_when_asked`
    /// (`patterns`, `within_seconds`, default 30), `max_first_audio_ms` (`max_ms`),
    /// `max_response_gap_ms` (`max_ms`, the p95 of the response gaps), `max_duration_s`
    /// (`max_seconds`), `outcome` (`intent`, or `tool` with `field` and `equals`),
    /// `llm_judge` (`question`, optional `min_score` 1–5; else it passes on "yes").
    #[schema(example = "required_phrase")]
    pub kind: String,
    /// Weight in the call's score (> 0, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// A failed critical criterion fails the call whatever its score.
    #[serde(default)]
    pub critical: bool,
    /// Case-insensitive regular expression (agent turns; caller turns for conditions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Case-insensitive regular expressions over caller turns (`handoff_when_asked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
    /// Seconds: only turns that start within them count (`required_phrase`), or the time
    /// allowed before the handoff (`handoff_when_asked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_seconds: Option<u32>,
    /// A tool of this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// `tool_called` applies only when a caller turn matches this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_caller_says: Option<String>,
    /// `tool_called` applies only when the agent reported this intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_intent: Option<String>,
    /// Threshold in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
    /// Threshold in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u64>,
    /// The expected reported intent (`outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// JSON pointer into the tool's last successful result (`outcome`), e.g. `/status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The expected value at `field` (`outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub equals: Option<serde_json::Value>,
    /// The judge's question (`llm_judge`, 1–500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// Pass on a 1–5 score of at least this instead of on "yes" (`llm_judge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 5)]
    pub min_score: Option<u8>,
}

/// The field a serde error about criterion `i` names: a missing parameter, an unknown kind.
fn criterion_error(i: usize, error: &serde_json::Error) -> ApiError {
    let text = error.to_string();
    let base = format!("rubric.criteria[{i}]");
    if let Some(rest) = text.strip_prefix("missing field `")
        && let Some(name) = rest.split('`').next()
    {
        return ApiError::invalid(format!("{base}.{name}"), "is required for this kind");
    }
    if text.starts_with("unknown variant") {
        return ApiError::invalid(
            format!("{base}.kind"),
            "must be one of required_phrase, forbidden_phrase, tool_called, tool_succeeded, \
             identity_before, handoff_when_asked, max_first_audio_ms, max_response_gap_ms, \
             max_duration_s, outcome, llm_judge",
        );
    }
    ApiError::invalid(base, text)
}

/// The validated rubric of a version whose contract is `contract` (every tool a criterion
/// names must be one of its tools).
pub fn rubric_from(dto: RubricDto, contract: &Contract) -> Result<Rubric, ApiError> {
    let criteria = dto
        .criteria
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let value = serde_json::to_value(&c).map_err(|e| criterion_error(i, &e))?;
            serde_json::from_value::<Criterion>(value).map_err(|e| criterion_error(i, &e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rubric = Rubric {
        pass_score: dto.pass_score,
        criteria,
    }
    .validate()
    .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let tools: Vec<&str> = contract.tools.iter().map(|t| t.name.as_str()).collect();
    rubric
        .check_tools(&tools)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    Ok(rubric)
}

/// A stored rubric as shown (defaults written out).
pub fn rubric_view(rubric: &Rubric) -> Option<RubricDto> {
    serde_json::to_value(rubric)
        .and_then(serde_json::from_value)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dto(criteria: serde_json::Value) -> RubricDto {
        serde_json::from_value(serde_json::json!({"pass_score": 0.5, "criteria": criteria}))
            .expect("dto")
    }

    fn field(e: ApiError) -> String {
        match e {
            ApiError::Validation { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_criterion_field_and_a_rubric_round_trips() {
        let contract = Contract::default();
        let e = rubric_from(
            dto(serde_json::json!([
                {"key": "a", "kind": "max_duration_s", "max_seconds": 60},
                {"key": "b", "kind": "max_first_audio_ms", "max_ms": 900},
                {"key": "c", "kind": "required_phrase"}
            ])),
            &contract,
        )
        .expect_err("missing pattern");
        assert_eq!(field(e), "rubric.criteria[2].pattern");
        let e = rubric_from(
            dto(serde_json::json!([{"key": "a", "kind": "sentiment"}])),
            &contract,
        )
        .expect_err("unknown kind");
        assert_eq!(field(e), "rubric.criteria[0].kind");
        let e = rubric_from(
            dto(serde_json::json!([{"key": "a", "kind": "forbidden_phrase", "pattern": "("}])),
            &contract,
        )
        .expect_err("bad regex");
        assert_eq!(field(e), "rubric.criteria[0].pattern");
        let e = rubric_from(
            dto(serde_json::json!([{"key": "a", "kind": "tool_called", "tool": "lookup"}])),
            &contract,
        )
        .expect_err("unknown tool");
        assert_eq!(field(e), "rubric.criteria[0].tool");
        let rubric = rubric_from(
            dto(serde_json::json!([
                {"key": "hello", "kind": "required_phrase", "pattern": "hello", "critical": true},
                {"key": "asked", "kind": "handoff_when_asked", "patterns": ["a person"]}
            ])),
            &contract,
        )
        .expect("valid");
        let view = rubric_view(&rubric).expect("view");
        assert_eq!(view.criteria[1].within_seconds, Some(30), "defaults shown");
        let again = rubric_from(view, &contract).expect("round trip");
        assert_eq!(again.hash(), rubric.hash());
    }
}
