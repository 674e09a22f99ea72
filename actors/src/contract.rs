//! The agent contract of an agent version (DESIGN §4): its tools (tenant webhooks or
//! built-ins), its escalation rules and its identity check, as stored (JSON columns of
//! `agent_versions`) and as validated when a version is written.
//!
//! Validation names the offending field (`tools[2].parameters`, `escalation.rules[0].patterns`)
//! so the admin API can answer 400 with it. The call runtime compiles a validated contract
//! into a [`Toolbox`] once per call: JSON-Schema validators for the arguments, case-insensitive
//! patterns for the caller-asks-for-a-human rule, and the `session.tools` list for the model.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest tool name the model accepts.
const MAX_NAME: usize = 64;
/// Most tools on one version.
const MAX_TOOLS: usize = 32;
/// Tool timeouts (ms).
const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 100..=30_000;

/// How a tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolType {
    /// A tenant HTTPS endpoint, called signed.
    Webhook,
    /// Implemented by the runtime.
    Builtin,
}

/// The runtime's own tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Hand the caller to a human queue.
    TransferToHuman,
    /// Say goodbye, then hang up once the goodbye has played.
    EndCall,
    /// Create a callback task for a human to call back.
    CreateCallbackTask,
    /// Text the caller through the carrier.
    SendFollowupSms,
    /// Check caller-provided facts through the tenant's identity webhook.
    VerifyIdentity,
    /// The model reports a named intent (escalation rules may act on it).
    ReportIntent,
    /// The caller asks not to be called again: their number joins the tenant's do-not-call
    /// list, with this call as evidence.
    OptOut,
}

impl Builtin {
    /// Every built-in.
    pub const ALL: [Builtin; 7] = [
        Builtin::TransferToHuman,
        Builtin::EndCall,
        Builtin::CreateCallbackTask,
        Builtin::SendFollowupSms,
        Builtin::VerifyIdentity,
        Builtin::ReportIntent,
        Builtin::OptOut,
    ];

    /// The tool name the model sees.
    pub const fn name(self) -> &'static str {
        match self {
            Builtin::TransferToHuman => "transfer_to_human",
            Builtin::EndCall => "end_call",
            Builtin::CreateCallbackTask => "create_callback_task",
            Builtin::SendFollowupSms => "send_followup_sms",
            Builtin::VerifyIdentity => "verify_identity",
            Builtin::ReportIntent => "report_intent",
            Builtin::OptOut => "opt_out",
        }
    }

    /// The built-in with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    fn description(self) -> &'static str {
        match self {
            Builtin::TransferToHuman => {
                "Transfer the caller to a human colleague. Use when the caller asks for a person or you cannot help."
            }
            Builtin::EndCall => {
                "End the call after saying goodbye. Use only when the conversation is finished."
            }
            Builtin::CreateCallbackTask => {
                "Schedule a human to call the caller back about something you cannot resolve now."
            }
            Builtin::SendFollowupSms => "Send the caller a short text message (SMS) with details.",
            Builtin::VerifyIdentity => {
                "Verify the caller's identity with facts they give you. Required before account-specific tools."
            }
            Builtin::ReportIntent => {
                "Report the caller's intent when it matches one of the listed intents."
            }
            Builtin::OptOut => {
                "Record that the caller asks not to be called again. Use when they say so; their number will not be called by us again."
            }
        }
    }
}

/// One tool of an agent version, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Name the model calls (`[a-zA-Z0-9_-]`, 1–64).
    pub name: String,
    /// Webhook or built-in.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// What the model is told the tool does.
    pub description: String,
    /// JSON Schema of the arguments (an object schema). Built-ins have the runtime's own.
    pub parameters: Value,
    /// Refused until `verify_identity` succeeded in this call.
    #[serde(default)]
    pub requires_identity: bool,
    /// Webhook: the tenant's HTTPS endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Webhook: how long the call may take (ms).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Webhook: what the agent says when the tool is slower than `filler_after_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filler: Option<String>,
    /// Webhook: when the filler is spoken (ms after the call started).
    #[serde(default = "default_filler_after")]
    pub filler_after_ms: u64,
    /// Webhook: whether the caller speaking cancels the call (an error result is given).
    #[serde(default)]
    pub cancel_on_interrupt: bool,
}

const fn default_timeout() -> u64 {
    5_000
}
const fn default_filler_after() -> u64 {
    1_500
}

impl ToolSpec {
    /// The built-in this tool is, if it is one.
    pub fn builtin(&self) -> Option<Builtin> {
        match self.kind {
            ToolType::Builtin => Builtin::from_name(&self.name),
            ToolType::Webhook => None,
        }
    }
}

/// The tenant endpoint `verify_identity` asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityCheck {
    /// HTTPS endpoint (signed request `{call, facts}`, answer `{"verified": bool}`).
    pub url: String,
    /// Facts the caller is asked for (argument names of `verify_identity`).
    pub fields: Vec<String>,
    /// Request timeout (ms).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

/// What fires an escalation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EscalationTrigger {
    /// A caller turn matches one of the patterns (case-insensitive regular expressions).
    CallerAsksForHuman {
        /// Patterns.
        patterns: Vec<String>,
    },
    /// This many tool calls failed (error, timeout, refused) in the call.
    ToolFailures {
        /// Threshold.
        count: u32,
    },
    /// The call lasted this long.
    CallDuration {
        /// Seconds.
        seconds: u64,
    },
    /// The model reported one of these intents through `report_intent`.
    Intent {
        /// Intent names.
        intents: Vec<String>,
    },
}

impl EscalationTrigger {
    /// The rule's kind, as recorded.
    pub const fn kind(&self) -> &'static str {
        match self {
            EscalationTrigger::CallerAsksForHuman { .. } => "caller_asks_for_human",
            EscalationTrigger::ToolFailures { .. } => "tool_failures",
            EscalationTrigger::CallDuration { .. } => "call_duration",
            EscalationTrigger::Intent { .. } => "intent",
        }
    }
}

/// One escalation rule: a trigger and the queue it sends the caller to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRule {
    /// What fires it.
    #[serde(flatten)]
    pub trigger: EscalationTrigger,
    /// Queue name (else the contract's default queue; with none, a callback task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// Escalation settings of an agent version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Escalation {
    /// Queue used when a rule or `transfer_to_human` names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue: Option<String>,
    /// What the agent says before the transfer (default: a short line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_line: Option<String>,
    /// Rules, checked in order.
    #[serde(default)]
    pub rules: Vec<EscalationRule>,
}

/// The whole contract of a version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contract {
    /// Tools.
    pub tools: Vec<ToolSpec>,
    /// Escalation.
    pub escalation: Escalation,
    /// Identity check.
    pub identity: Option<IdentityCheck>,
}

/// A contract field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ContractError {
    /// The field (`tools[1].url`).
    pub field: String,
    /// Why.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ContractError {
    ContractError {
        field: field.into(),
        message: message.into(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The fixed argument schema of a built-in.
pub fn builtin_parameters(builtin: Builtin, contract: &Contract) -> Value {
    match builtin {
        Builtin::TransferToHuman => json!({
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why the caller needs a human.", "maxLength": 500},
                "queue": {"type": "string", "description": "Queue name, when the caller's need matches a specific team.", "maxLength": 64}
            },
            "required": ["reason"],
            "additionalProperties": false
        }),
        Builtin::EndCall => json!({
            "type": "object",
            "properties": {"reason": {"type": "string", "maxLength": 200}},
            "additionalProperties": false
        }),
        Builtin::CreateCallbackTask => json!({
            "type": "object",
            "properties": {
                "reason": {"type": "string", "minLength": 1, "maxLength": 500},
                "phone": {"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$", "description": "E.164 number to call back; default the caller's number."},
                "due_at": {"type": "string", "description": "RFC 3339 time the callback is due."}
            },
            "required": ["reason"],
            "additionalProperties": false
        }),
        Builtin::OptOut => json!({
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "What the caller said.", "maxLength": 500}},
            "additionalProperties": false
        }),
        Builtin::SendFollowupSms => json!({
            "type": "object",
            "properties": {"body": {"type": "string", "minLength": 1, "maxLength": 480}},
            "required": ["body"],
            "additionalProperties": false
        }),
        Builtin::VerifyIdentity => {
            let fields: Vec<&str> = contract
                .identity
                .as_ref()
                .map(|i| i.fields.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let properties: serde_json::Map<String, Value> = fields
                .iter()
                .map(|f| ((*f).to_owned(), json!({"type": "string", "maxLength": 200})))
                .collect();
            json!({
                "type": "object",
                "properties": properties,
                "required": fields,
                "additionalProperties": false
            })
        }
        Builtin::ReportIntent => {
            let intents: Vec<&str> = contract
                .escalation
                .rules
                .iter()
                .filter_map(|r| match &r.trigger {
                    EscalationTrigger::Intent { intents } => Some(intents),
                    _ => None,
                })
                .flatten()
                .map(String::as_str)
                .collect();
            json!({
                "type": "object",
                "properties": {"intent": {"type": "string", "enum": intents}},
                "required": ["intent"],
                "additionalProperties": false
            })
        }
    }
}

/// Checks a URL a tenant gave (scheme, host; literal addresses under the egress policy).
pub type UrlCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

impl Contract {
    /// Validates a contract and fills the built-ins' descriptions and schemas. `check_url`
    /// applies the egress policy to every tenant URL.
    pub fn validate(mut self, check_url: UrlCheck<'_>) -> Result<Self, ContractError> {
        if self.tools.len() > MAX_TOOLS {
            return Err(bad("tools", format!("at most {MAX_TOOLS} tools")));
        }
        let mut names = HashSet::new();
        let snapshot = self.clone();
        for (i, tool) in self.tools.iter_mut().enumerate() {
            let at = |f: &str| format!("tools[{i}].{f}");
            if !valid_name(&tool.name) {
                return Err(bad(
                    at("name"),
                    "must be 1 to 64 of letters, digits, _ and -",
                ));
            }
            if !names.insert(tool.name.clone()) {
                return Err(bad(at("name"), "is used by another tool of this version"));
            }
            match tool.kind {
                ToolType::Builtin => {
                    let Some(builtin) = Builtin::from_name(&tool.name) else {
                        return Err(bad(
                            at("name"),
                            "is not a built-in (transfer_to_human, end_call, create_callback_task, send_followup_sms, verify_identity, report_intent, opt_out)",
                        ));
                    };
                    if tool.url.is_some() {
                        return Err(bad(at("url"), "a built-in has no url"));
                    }
                    if builtin == Builtin::VerifyIdentity && snapshot.identity.is_none() {
                        return Err(bad(
                            "identity",
                            "verify_identity needs an identity check (url and fields)",
                        ));
                    }
                    if builtin == Builtin::ReportIntent
                        && !snapshot
                            .escalation
                            .rules
                            .iter()
                            .any(|r| matches!(r.trigger, EscalationTrigger::Intent { .. }))
                    {
                        return Err(bad(
                            at("name"),
                            "report_intent needs an intent escalation rule",
                        ));
                    }
                    if tool.description.trim().is_empty() {
                        tool.description = builtin.description().to_owned();
                    }
                    tool.parameters = builtin_parameters(builtin, &snapshot);
                }
                ToolType::Webhook => {
                    let Some(url) = tool.url.as_deref() else {
                        return Err(bad(at("url"), "a webhook tool needs a url"));
                    };
                    check_url(url).map_err(|m| bad(at("url"), m))?;
                    if Builtin::from_name(&tool.name).is_some() {
                        return Err(bad(at("name"), "is the name of a built-in"));
                    }
                    if tool.description.trim().is_empty() || tool.description.len() > 1024 {
                        return Err(bad(at("description"), "must be 1 to 1024 characters"));
                    }
                    check_schema(&tool.parameters).map_err(|m| bad(at("parameters"), m))?;
                    if !TIMEOUT_RANGE.contains(&tool.timeout_ms) {
                        return Err(bad(at("timeout_ms"), "must be between 100 and 30000"));
                    }
                    if let Some(filler) = &tool.filler
                        && (filler.trim().is_empty() || filler.len() > 300)
                    {
                        return Err(bad(at("filler"), "must be 1 to 300 characters"));
                    }
                    // The threshold only matters with a filler: a tool without one may have a
                    // timeout below the default threshold.
                    if tool.filler.is_some()
                        && (tool.filler_after_ms < 200 || tool.filler_after_ms >= tool.timeout_ms)
                    {
                        return Err(bad(
                            at("filler_after_ms"),
                            "must be at least 200 and less than timeout_ms",
                        ));
                    }
                }
            }
        }
        if let Some(identity) = &self.identity {
            check_url(&identity.url).map_err(|m| bad("identity.url", m))?;
            if identity.fields.is_empty() || identity.fields.len() > 8 {
                return Err(bad("identity.fields", "must list 1 to 8 facts"));
            }
            if identity.fields.iter().any(|f| !valid_name(f)) {
                return Err(bad(
                    "identity.fields",
                    "fact names are 1 to 64 of letters, digits, _ and -",
                ));
            }
            if !TIMEOUT_RANGE.contains(&identity.timeout_ms) {
                return Err(bad("identity.timeout_ms", "must be between 100 and 30000"));
            }
        }
        let esc = &self.escalation;
        for (field, queue) in
            std::iter::once(("escalation.default_queue".to_owned(), &esc.default_queue)).chain(
                esc.rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("escalation.rules[{i}].queue"), &r.queue)),
            )
        {
            if let Some(q) = queue
                && !valid_name(q)
            {
                return Err(bad(
                    field,
                    "must be a queue name (1 to 64 of letters, digits, _ and -)",
                ));
            }
        }
        if let Some(line) = &esc.handoff_line
            && (line.trim().is_empty() || line.len() > 300)
        {
            return Err(bad(
                "escalation.handoff_line",
                "must be 1 to 300 characters",
            ));
        }
        if esc.rules.len() > 16 {
            return Err(bad("escalation.rules", "at most 16 rules"));
        }
        for (i, rule) in esc.rules.iter().enumerate() {
            let at = |f: &str| format!("escalation.rules[{i}].{f}");
            match &rule.trigger {
                EscalationTrigger::CallerAsksForHuman { patterns } => {
                    if patterns.is_empty() || patterns.len() > 32 {
                        return Err(bad(at("patterns"), "must list 1 to 32 patterns"));
                    }
                    for p in patterns {
                        compile_pattern(p).map_err(|m| bad(at("patterns"), m))?;
                    }
                }
                EscalationTrigger::ToolFailures { count } => {
                    if !(1..=20).contains(count) {
                        return Err(bad(at("count"), "must be between 1 and 20"));
                    }
                }
                EscalationTrigger::CallDuration { seconds } => {
                    if !(10..=14_400).contains(seconds) {
                        return Err(bad(at("seconds"), "must be between 10 and 14400"));
                    }
                }
                EscalationTrigger::Intent { intents } => {
                    if intents.is_empty() || intents.iter().any(|n| !valid_name(n)) {
                        return Err(bad(
                            at("intents"),
                            "must list intent names (letters, digits, _ and -)",
                        ));
                    }
                }
            }
        }
        Ok(self)
    }

    /// The tools as the model sees them (`session.tools`).
    pub fn session_tools(&self) -> Vec<crate::realtime::Tool> {
        self.tools
            .iter()
            .map(|t| crate::realtime::Tool::function(&t.name, &t.description, t.parameters.clone()))
            .collect()
    }
}

fn compile_pattern(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.is_empty() || pattern.len() > 200 {
        return Err("patterns are 1 to 200 characters".into());
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 16)
        .build()
        .map_err(|e| format!("invalid pattern {pattern:?}: {e}"))
}

fn check_schema(schema: &Value) -> Result<(), String> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("must be a JSON Schema of type object".into());
    }
    if serde_json::to_vec(schema).map_or(0, |v| v.len()) > 16 * 1024 {
        return Err("must be at most 16 KiB".into());
    }
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

/// A contract compiled for one call: argument validators and escalation patterns.
pub struct Toolbox {
    /// The contract.
    pub contract: Contract,
    validators: HashMap<String, jsonschema::Validator>,
    patterns: Vec<(usize, Vec<regex::Regex>)>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox")
            .field("tools", &self.contract.tools.len())
            .field("rules", &self.contract.escalation.rules.len())
            .finish()
    }
}

impl Toolbox {
    /// Compiles a stored contract (invalid parts are skipped and logged: a stored contract
    /// was validated when written).
    pub fn new(contract: Contract) -> Self {
        let mut validators = HashMap::new();
        for tool in &contract.tools {
            match jsonschema::validator_for(&tool.parameters) {
                Ok(v) => {
                    validators.insert(tool.name.clone(), v);
                }
                Err(error) => {
                    tracing::warn!(tool = %tool.name, error = %error, "stored tool schema does not compile");
                }
            }
        }
        let patterns = contract
            .escalation
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.trigger {
                EscalationTrigger::CallerAsksForHuman { patterns } => Some((
                    i,
                    patterns
                        .iter()
                        .filter_map(|p| compile_pattern(p).ok())
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        Self {
            contract,
            validators,
            patterns,
        }
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.contract.tools.iter().find(|t| t.name == name)
    }

    /// Checks arguments against the tool's schema; the error lists what is wrong.
    pub fn check_arguments(&self, name: &str, arguments: &Value) -> Result<(), String> {
        let Some(validator) = self.validators.get(name) else {
            return Err(format!("tool {name} has no usable schema"));
        };
        let errors: Vec<String> = validator
            .iter_errors(arguments)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The first caller-asks-for-a-human rule matching `text`.
    pub fn caller_asks_for_human(&self, text: &str) -> Option<&EscalationRule> {
        self.patterns
            .iter()
            .find(|(_, ps)| ps.iter().any(|p| p.is_match(text)))
            .and_then(|(i, _)| self.contract.escalation.rules.get(*i))
    }

    /// The first rule of `pred`.
    pub fn rule(&self, pred: impl Fn(&EscalationTrigger) -> bool) -> Option<&EscalationRule> {
        self.contract
            .escalation
            .rules
            .iter()
            .find(|r| pred(&r.trigger))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_url(_: &str) -> Result<(), String> {
        Ok(())
    }

    fn webhook(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            kind: ToolType::Webhook,
            description: "Looks up an order".into(),
            parameters: json!({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}),
            requires_identity: false,
            url: Some("https://tools.example.com/orders".into()),
            timeout_ms: 3000,
            filler: Some("One moment.".into()),
            filler_after_ms: 1000,
            cancel_on_interrupt: false,
        }
    }

    fn builtin(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            kind: ToolType::Builtin,
            description: String::new(),
            parameters: Value::Null,
            requires_identity: false,
            url: None,
            timeout_ms: default_timeout(),
            filler: None,
            filler_after_ms: default_filler_after(),
            cancel_on_interrupt: false,
        }
    }

    #[test]
    fn a_valid_contract_gets_builtin_schemas() {
        let contract = Contract {
            tools: vec![webhook("lookup_order"), builtin("transfer_to_human")],
            ..Contract::default()
        }
        .validate(&ok_url)
        .expect("valid");
        let transfer = &contract.tools[1];
        assert_eq!(transfer.parameters["required"], json!(["reason"]));
        assert!(!transfer.description.is_empty());
        let tb = Toolbox::new(contract);
        assert!(
            tb.check_arguments("lookup_order", &json!({"order_id": "A1"}))
                .is_ok()
        );
        let err = tb
            .check_arguments("lookup_order", &json!({"order_id": 7}))
            .expect_err("invalid");
        assert!(err.contains("/order_id"), "{err}");
        assert!(tb.check_arguments("lookup_order", &json!({})).is_err());
    }

    #[test]
    fn bad_contracts_name_the_field() {
        let cases: Vec<(Contract, &str)> = vec![
            (
                Contract {
                    tools: vec![webhook("a"), webhook("a")],
                    ..Contract::default()
                },
                "tools[1].name",
            ),
            (
                Contract {
                    tools: vec![builtin("launch_rockets")],
                    ..Contract::default()
                },
                "tools[0].name",
            ),
            (
                Contract {
                    tools: vec![ToolSpec {
                        parameters: json!({"type": "string"}),
                        ..webhook("x")
                    }],
                    ..Contract::default()
                },
                "tools[0].parameters",
            ),
            (
                Contract {
                    tools: vec![ToolSpec {
                        parameters: json!({"type": "object", "properties": {"a": {"type": 12}}}),
                        ..webhook("x")
                    }],
                    ..Contract::default()
                },
                "tools[0].parameters",
            ),
            (
                Contract {
                    tools: vec![ToolSpec {
                        url: None,
                        ..webhook("x")
                    }],
                    ..Contract::default()
                },
                "tools[0].url",
            ),
            (
                Contract {
                    tools: vec![builtin("verify_identity")],
                    ..Contract::default()
                },
                "identity",
            ),
            (
                Contract {
                    escalation: Escalation {
                        rules: vec![EscalationRule {
                            trigger: EscalationTrigger::CallerAsksForHuman {
                                patterns: vec!["(unclosed".into()],
                            },
                            queue: None,
                        }],
                        ..Escalation::default()
                    },
                    ..Contract::default()
                },
                "escalation.rules[0].patterns",
            ),
            (
                Contract {
                    tools: vec![ToolSpec {
                        filler_after_ms: 5000,
                        ..webhook("x")
                    }],
                    ..Contract::default()
                },
                "tools[0].filler_after_ms",
            ),
        ];
        for (contract, field) in cases {
            let err = contract.validate(&ok_url).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
        let quick = Contract {
            tools: vec![ToolSpec {
                timeout_ms: 400,
                filler: None,
                ..webhook("x")
            }],
            ..Contract::default()
        };
        assert!(
            quick.validate(&ok_url).is_ok(),
            "a tool without a filler may time out before the default filler threshold"
        );
        let refused = Contract {
            tools: vec![webhook("x")],
            ..Contract::default()
        }
        .validate(&|_| Err("blocked".into()))
        .expect_err("url refused");
        assert_eq!(refused.field, "tools[0].url");
    }

    #[test]
    fn escalation_patterns_are_case_insensitive() {
        let contract = Contract {
            escalation: Escalation {
                default_queue: Some("support".into()),
                handoff_line: None,
                rules: vec![
                    EscalationRule {
                        trigger: EscalationTrigger::ToolFailures { count: 2 },
                        queue: None,
                    },
                    EscalationRule {
                        trigger: EscalationTrigger::CallerAsksForHuman {
                            patterns: vec![r"\b(human|real person|agent)\b".into()],
                        },
                        queue: Some("billing".into()),
                    },
                ],
            },
            ..Contract::default()
        }
        .validate(&ok_url)
        .expect("valid");
        let tb = Toolbox::new(contract);
        let rule = tb
            .caller_asks_for_human("Can I talk to a REAL PERSON please")
            .expect("matches");
        assert_eq!(rule.queue.as_deref(), Some("billing"));
        assert!(tb.caller_asks_for_human("what are your hours").is_none());
        assert!(
            tb.rule(|t| matches!(t, EscalationTrigger::ToolFailures { .. }))
                .is_some()
        );
    }

    #[test]
    fn stored_json_round_trips() {
        let esc = Escalation {
            default_queue: Some("support".into()),
            handoff_line: Some("Connecting you now.".into()),
            rules: vec![EscalationRule {
                trigger: EscalationTrigger::Intent {
                    intents: vec!["cancel".into()],
                },
                queue: Some("retention".into()),
            }],
        };
        let text = serde_json::to_string(&esc).expect("json");
        assert!(text.contains(r#""kind":"intent""#), "{text}");
        let back: Escalation = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, esc);
        let tool: ToolSpec = serde_json::from_value(json!({
            "name": "end_call", "type": "builtin", "description": "", "parameters": null
        }))
        .expect("tool");
        assert_eq!(tool.builtin(), Some(Builtin::EndCall));
    }

    proptest::proptest! {
        /// Whatever an admin sends, validation answers (a field or a contract); it never
        /// panics, and what it accepts compiles into a toolbox that checks arguments.
        #[test]
        fn validation_never_panics(
            name in ".{0,80}",
            pattern in ".{0,60}",
            url in ".{0,60}",
            schema_type in proptest::sample::select(vec!["object", "string", "array", ""]),
            prop_type in proptest::sample::select(vec!["string", "integer", "nope", "object"]),
            count in 0u32..40,
            args in ".{0,40}",
        ) {
            let contract = Contract {
                tools: vec![ToolSpec {
                    name: name.clone(),
                    parameters: json!({"type": schema_type, "properties": {"x": {"type": prop_type}}}),
                    url: Some(url),
                    ..webhook("t")
                }],
                escalation: Escalation {
                    default_queue: Some(name),
                    handoff_line: None,
                    rules: vec![
                        EscalationRule {
                            trigger: EscalationTrigger::CallerAsksForHuman { patterns: vec![pattern] },
                            queue: None,
                        },
                        EscalationRule { trigger: EscalationTrigger::ToolFailures { count }, queue: None },
                    ],
                },
                identity: None,
            };
            if let Ok(valid) = contract.validate(&ok_url) {
                let tb = Toolbox::new(valid);
                let tool = tb.contract.tools[0].name.clone();
                let _ = tb.check_arguments(&tool, &json!({"x": args.clone()}));
                let _ = tb.caller_asks_for_human(&args);
            }
        }
    }
}
