//! The agent contract as the admin API reads and writes it (tools, escalation rules, identity
//! check of an agent version), mapped to and from [`actors::contract`], which validates it.

use actors::contract::{
    Contract, Escalation, EscalationRule, EscalationTrigger, IdentityCheck, ToolSpec, ToolType,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::ApiError;

/// A tool of an agent version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolDto {
    /// Name the model calls (letters, digits, `_`, `-`). For a built-in, one of
    /// `transfer_to_human`, `end_call`, `create_callback_task`, `send_followup_sms`,
    /// `verify_identity`, `report_intent`, `opt_out`.
    pub name: String,
    /// `webhook` (the tenant's HTTPS endpoint, called signed) or `builtin`.
    #[serde(rename = "type")]
    #[schema(example = "webhook")]
    pub kind: String,
    /// What the tool does (built-ins have a default).
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema (type object) of the arguments; built-ins have their own.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    /// Refused until `verify_identity` succeeded in the call.
    #[serde(default)]
    pub requires_identity: bool,
    /// Webhook: HTTPS endpoint (public address; no redirects followed).
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook: timeout in ms (100–30000, default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Webhook: line the agent says when the tool is slower than `filler_after_ms`.
    #[serde(default)]
    pub filler: Option<String>,
    /// Webhook: ms before the filler (default 1500, below `timeout_ms`).
    #[serde(default)]
    pub filler_after_ms: Option<u64>,
    /// Webhook: the caller speaking cancels the call (the model gets an error result).
    #[serde(default)]
    pub cancel_on_interrupt: bool,
}

/// An escalation rule: a trigger (`kind` and its setting) and the queue it sends the caller to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationRuleDto {
    /// `caller_asks_for_human` (with `patterns`), `tool_failures` (with `count`),
    /// `call_duration` (with `seconds`) or `intent` (with `intents`).
    pub kind: String,
    /// Case-insensitive regular expressions matched against caller turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
    /// Failed tool calls in one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Call length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// Intent names the model reports through `report_intent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intents: Option<Vec<String>>,
    /// Operator queue name (default: `default_queue`; none → a callback task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// Escalation settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationDto {
    /// Queue for `transfer_to_human` and rules that name none.
    #[serde(default)]
    pub default_queue: Option<String>,
    /// What the agent says before a transfer.
    #[serde(default)]
    pub handoff_line: Option<String>,
    /// Rules, checked in order; the first that fires is recorded.
    #[serde(default)]
    pub rules: Vec<EscalationRuleDto>,
}

/// The tenant endpoint `verify_identity` asks: a signed POST `{call, facts}` answered with
/// `{"verified": true|false}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityDto {
    /// HTTPS endpoint.
    pub url: String,
    /// Facts the caller is asked for (the arguments of `verify_identity`).
    pub fields: Vec<String>,
    /// Timeout in ms (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn tool_from(dto: ToolDto, i: usize) -> Result<ToolSpec, ApiError> {
    let kind = match dto.kind.as_str() {
        "webhook" => ToolType::Webhook,
        "builtin" => ToolType::Builtin,
        _ => {
            return Err(ApiError::invalid(
                format!("tools[{i}].type"),
                "must be webhook or builtin",
            ));
        }
    };
    Ok(ToolSpec {
        name: dto.name,
        kind,
        description: dto.description.unwrap_or_default(),
        parameters: dto.parameters.unwrap_or(serde_json::Value::Null),
        requires_identity: dto.requires_identity,
        url: dto.url,
        timeout_ms: dto.timeout_ms.unwrap_or(5_000),
        filler: dto.filler,
        filler_after_ms: dto.filler_after_ms.unwrap_or(1_500),
        cancel_on_interrupt: dto.cancel_on_interrupt,
    })
}

fn rule_from(dto: EscalationRuleDto, i: usize) -> Result<EscalationRule, ApiError> {
    let missing = |f: &str| {
        ApiError::invalid(
            format!("escalation.rules[{i}].{f}"),
            format!("is required for a {} rule", dto.kind),
        )
    };
    let trigger = match dto.kind.as_str() {
        "caller_asks_for_human" => EscalationTrigger::CallerAsksForHuman {
            patterns: dto.patterns.clone().ok_or_else(|| missing("patterns"))?,
        },
        "tool_failures" => EscalationTrigger::ToolFailures {
            count: dto.count.ok_or_else(|| missing("count"))?,
        },
        "call_duration" => EscalationTrigger::CallDuration {
            seconds: dto.seconds.ok_or_else(|| missing("seconds"))?,
        },
        "intent" => EscalationTrigger::Intent {
            intents: dto.intents.clone().ok_or_else(|| missing("intents"))?,
        },
        _ => {
            return Err(ApiError::invalid(
                format!("escalation.rules[{i}].kind"),
                "must be caller_asks_for_human, tool_failures, call_duration or intent",
            ));
        }
    };
    Ok(EscalationRule {
        trigger,
        queue: dto.queue,
    })
}

/// Builds and validates a contract from the request parts; `check_url` applies the egress
/// policy to tenant URLs.
pub fn contract_from(
    tools: Option<Vec<ToolDto>>,
    escalation: Option<EscalationDto>,
    identity: Option<IdentityDto>,
    check_url: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Contract, ApiError> {
    let tools = tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| tool_from(t, i))
        .collect::<Result<Vec<_>, _>>()?;
    let escalation = escalation.unwrap_or_default();
    let rules = escalation
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule_from(r, i))
        .collect::<Result<Vec<_>, _>>()?;
    let contract = Contract {
        tools,
        escalation: Escalation {
            default_queue: escalation.default_queue,
            handoff_line: escalation.handoff_line,
            rules,
        },
        identity: identity.map(|i| IdentityCheck {
            url: i.url,
            fields: i.fields,
            timeout_ms: i.timeout_ms.unwrap_or(5_000),
        }),
    };
    contract
        .validate(check_url)
        .map_err(|e| ApiError::invalid(e.field, e.message))
}

/// Tools as shown.
pub fn tools_view(c: &Contract) -> Vec<ToolDto> {
    c.tools
        .iter()
        .map(|t| ToolDto {
            name: t.name.clone(),
            kind: match t.kind {
                ToolType::Webhook => "webhook".into(),
                ToolType::Builtin => "builtin".into(),
            },
            description: Some(t.description.clone()),
            parameters: Some(t.parameters.clone()),
            requires_identity: t.requires_identity,
            url: t.url.clone(),
            timeout_ms: (t.kind == ToolType::Webhook).then_some(t.timeout_ms),
            filler: t.filler.clone(),
            filler_after_ms: (t.kind == ToolType::Webhook).then_some(t.filler_after_ms),
            cancel_on_interrupt: t.cancel_on_interrupt,
        })
        .collect()
}

/// Escalation as shown.
pub fn escalation_view(c: &Contract) -> EscalationDto {
    let e = &c.escalation;
    EscalationDto {
        default_queue: e.default_queue.clone(),
        handoff_line: e.handoff_line.clone(),
        rules: e
            .rules
            .iter()
            .map(|r| {
                let mut dto = EscalationRuleDto {
                    kind: r.trigger.kind().to_owned(),
                    patterns: None,
                    count: None,
                    seconds: None,
                    intents: None,
                    queue: r.queue.clone(),
                };
                match &r.trigger {
                    EscalationTrigger::CallerAsksForHuman { patterns } => {
                        dto.patterns = Some(patterns.clone());
                    }
                    EscalationTrigger::ToolFailures { count } => dto.count = Some(*count),
                    EscalationTrigger::CallDuration { seconds } => dto.seconds = Some(*seconds),
                    EscalationTrigger::Intent { intents } => dto.intents = Some(intents.clone()),
                }
                dto
            })
            .collect(),
    }
}

/// Identity check as shown.
pub fn identity_view(c: &Contract) -> Option<IdentityDto> {
    c.identity.as_ref().map(|i| IdentityDto {
        url: i.url.clone(),
        fields: i.fields.clone(),
        timeout_ms: Some(i.timeout_ms),
    })
}
