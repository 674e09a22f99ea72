//! Outbound campaigns (issue 16): the domain — a campaign's validated definition, its status
//! machine (`draft → running ⇄ paused`, `→ cancelled`, `running → completed`), the outcome of
//! an attempt read from its completed call, and what the retry policy makes of it — plus the
//! API operations ([`ops`]) and the per-node dialer ([`dialer`]).
//!
//! Everything lives in the database (`store/campaigns.rs`): a campaign, its contacts and every
//! attempt. This module does no I/O except in [`ops`] and [`dialer`].

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, CampaignAttemptId, CampaignContactId, CampaignId, TenantId};
use crate::operator::{BusinessHours, BusinessHoursSpec, FieldError};
use crate::store::CallRecord;

pub mod dialer;
pub mod ops;

pub use dialer::{Dialer, DialerSettings};
pub use ops::CampaignError;

/// Most contacts in one campaign.
pub const MAX_CONTACTS: usize = 1_000;
/// Highest pacing.
pub const MAX_CALLS_PER_MINUTE: i64 = 600;
/// Most attempts per contact a retry rule allows.
pub const MAX_ATTEMPTS: i64 = 10;
/// Longest spacing between two attempts (seconds): a week.
pub const MAX_SPACING_SECONDS: i64 = 7 * 24 * 3600;
/// Largest `variables` object of one contact (bytes of JSON).
pub const MAX_VARIABLES_BYTES: usize = 4096;
/// How long a contact refused by the pre-dial policy's window or daily limit waits.
pub const POLICY_LATER_MS: i64 = 15 * 60 * 1000;

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    /// Created, not started (`resume` starts it).
    Draft,
    /// The dialer places its calls.
    Running,
    /// No new attempts until resumed (live calls finish).
    Paused,
    /// No new attempts, ever (live calls finish).
    Cancelled,
    /// Every contact is finished.
    Completed,
}

impl CampaignStatus {
    /// Every status.
    pub const ALL: [CampaignStatus; 5] = [
        CampaignStatus::Draft,
        CampaignStatus::Running,
        CampaignStatus::Paused,
        CampaignStatus::Cancelled,
        CampaignStatus::Completed,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Cancelled => "cancelled",
            CampaignStatus::Completed => "completed",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A change a tenant asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    /// `running → paused`.
    Pause,
    /// `draft | paused → running`.
    Resume,
    /// `draft | running | paused → cancelled`.
    Cancel,
}

impl CampaignAction {
    /// The statuses the action applies to, and the status it leads to.
    pub fn transition(self) -> (&'static [CampaignStatus], CampaignStatus) {
        match self {
            CampaignAction::Pause => (&[CampaignStatus::Running], CampaignStatus::Paused),
            CampaignAction::Resume => (
                &[CampaignStatus::Draft, CampaignStatus::Paused],
                CampaignStatus::Running,
            ),
            CampaignAction::Cancel => (
                &[
                    CampaignStatus::Draft,
                    CampaignStatus::Running,
                    CampaignStatus::Paused,
                ],
                CampaignStatus::Cancelled,
            ),
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignAction::Pause => "pause",
            CampaignAction::Resume => "resume",
            CampaignAction::Cancel => "cancel",
        }
    }
}

/// Where a contact stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// An attempt is claimed or its call is live.
    InProgress,
    /// Answered by a human.
    Completed,
    /// Never to be called: refused by do-not-call (the rule recorded).
    Skipped,
    /// Its last outcome allows no more attempts.
    Exhausted,
}

impl ContactState {
    /// Every state.
    pub const ALL: [ContactState; 5] = [
        ContactState::Pending,
        ContactState::InProgress,
        ContactState::Completed,
        ContactState::Skipped,
        ContactState::Exhausted,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::Pending => "pending",
            ContactState::InProgress => "in_progress",
            ContactState::Completed => "completed",
            ContactState::Skipped => "skipped",
            ContactState::Exhausted => "exhausted",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A human answered.
    Answered,
    /// Nobody answered (or the call was cancelled before it was).
    NoAnswer,
    /// The line was busy.
    Busy,
    /// An answering machine or fax answered.
    Machine,
    /// The call failed (carrier error, unreachable, lost).
    Failed,
    /// The pre-dial policy refused it; nothing was dialed.
    Refused,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Answered,
        AttemptOutcome::NoAnswer,
        AttemptOutcome::Busy,
        AttemptOutcome::Machine,
        AttemptOutcome::Failed,
        AttemptOutcome::Refused,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Answered => "answered",
            AttemptOutcome::NoAnswer => "no_answer",
            AttemptOutcome::Busy => "busy",
            AttemptOutcome::Machine => "machine",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Refused => "refused",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The outcome of a completed call: a machine (AMD `machine_*` or `fax`) first, then
    /// a policy refusal, then the carrier's final status, then the call's outcome.
    pub fn of_call(call: &CallRecord) -> Self {
        use crate::ending::Outcome;
        let answered_by = call.answered_by.as_deref().unwrap_or("");
        if answered_by.starts_with("machine") || answered_by.starts_with("fax") {
            return AttemptOutcome::Machine;
        }
        if call.outcome == Some(Outcome::Refused) || call.status == "refused" {
            return AttemptOutcome::Refused;
        }
        match call.status.as_str() {
            "busy" => return AttemptOutcome::Busy,
            "no-answer" | "canceled" => return AttemptOutcome::NoAnswer,
            "failed" => return AttemptOutcome::Failed,
            _ => {}
        }
        match call.outcome {
            Some(Outcome::NotAnswered) => AttemptOutcome::NoAnswer,
            Some(Outcome::Failed) | None if call.started_at.is_none() => AttemptOutcome::Failed,
            _ => AttemptOutcome::Answered,
        }
    }
}

/// How often and how far apart one outcome is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Attempts (dialed ones) a contact may have in all when its last attempt ended this
    /// way (1: no retry).
    pub max_attempts: i64,
    /// Seconds between the end of one attempt and the next.
    pub spacing_seconds: i64,
}

impl Default for RetryRule {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            spacing_seconds: 0,
        }
    }
}

/// The retry policy of a campaign, per outcome (stored as JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Nobody answered.
    #[serde(default)]
    pub no_answer: RetryRule,
    /// Busy.
    #[serde(default)]
    pub busy: RetryRule,
    /// A machine answered.
    #[serde(default)]
    pub machine: RetryRule,
    /// The call failed.
    #[serde(default)]
    pub failed: RetryRule,
}

impl RetryPolicy {
    /// The rule of `outcome` (none for answered and refused).
    pub fn rule(&self, outcome: AttemptOutcome) -> Option<RetryRule> {
        match outcome {
            AttemptOutcome::NoAnswer => Some(self.no_answer),
            AttemptOutcome::Busy => Some(self.busy),
            AttemptOutcome::Machine => Some(self.machine),
            AttemptOutcome::Failed => Some(self.failed),
            AttemptOutcome::Answered | AttemptOutcome::Refused => None,
        }
    }

    fn validate(&self) -> Result<(), FieldError> {
        for (name, rule) in [
            ("no_answer", self.no_answer),
            ("busy", self.busy),
            ("machine", self.machine),
            ("failed", self.failed),
        ] {
            if !(1..=MAX_ATTEMPTS).contains(&rule.max_attempts) {
                return Err(field(
                    format!("retry.{name}.max_attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS}"),
                ));
            }
            if !(0..=MAX_SPACING_SECONDS).contains(&rule.spacing_seconds) {
                return Err(field(
                    format!("retry.{name}.spacing_seconds"),
                    format!("must be between 0 and {MAX_SPACING_SECONDS}"),
                ));
            }
        }
        Ok(())
    }
}

/// What follows an attempt for its contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Another attempt at this time.
    Retry {
        /// Unix milliseconds.
        at: i64,
    },
    /// The contact is finished in this state (`completed`, `exhausted`, `skipped`).
    Finish(ContactState),
}

/// What follows an attempt that ended with `outcome` (with `detail`, for a refusal the
/// pre-dial rule and reason), the contact having had `dialed` dialed attempts.
pub fn next_step(
    policy: &RetryPolicy,
    outcome: AttemptOutcome,
    detail: Option<&str>,
    dialed: i64,
    now: i64,
) -> NextStep {
    match outcome {
        AttemptOutcome::Answered => NextStep::Finish(ContactState::Completed),
        AttemptOutcome::Refused => {
            if detail.is_some_and(|d| d.starts_with("do_not_call")) {
                NextStep::Finish(ContactState::Skipped)
            } else {
                // A calling window or the daily limit: later, not a retry.
                NextStep::Retry {
                    at: now + POLICY_LATER_MS,
                }
            }
        }
        other => match policy.rule(other) {
            Some(rule) if dialed < rule.max_attempts => NextStep::Retry {
                at: now + rule.spacing_seconds.saturating_mul(1000),
            },
            _ => NextStep::Finish(ContactState::Exhausted),
        },
    }
}

/// What a campaign's calls do when a machine answers: make-call's answering-machine action
/// (`machine_detection.action`), stored as its API form.
pub use crate::telephony::amd::AmdAction as MachineAction;

/// One contact to call.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    /// E.164.
    pub phone: String,
    /// Passed into the call's metadata (`variables`).
    pub variables: serde_json::Value,
    /// The tenant's reference.
    pub external_id: Option<String>,
}

/// A contact as given (before validation).
#[derive(Debug, Clone)]
pub struct ContactSpec {
    /// Callee.
    pub phone: String,
    /// A JSON object (default `{}`).
    pub variables: Option<serde_json::Value>,
    /// The tenant's reference.
    pub external_id: Option<String>,
}

/// A campaign as given (before validation).
#[derive(Debug, Clone)]
pub struct CampaignSpec {
    /// Name.
    pub name: String,
    /// Agent key (default: the outbound route's).
    pub agent_key: Option<String>,
    /// Pinned version.
    pub agent_version_id: Option<String>,
    /// Caller id.
    pub from: Option<String>,
    /// Contacts.
    pub contacts: Vec<ContactSpec>,
    /// Weekly windows in a time zone (none: any time the pre-dial policy allows).
    pub calling_windows: Option<BusinessHoursSpec>,
    /// Pacing: calls started per minute.
    pub calls_per_minute: i64,
    /// Pacing: attempts live at once.
    pub max_concurrent: i64,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Answering-machine detection.
    pub machine_detection: Option<MachineAction>,
    /// Start at once.
    pub start: bool,
}

/// A validated campaign, ready to store.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    /// Id.
    pub id: CampaignId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Name.
    pub name: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Pinned version.
    pub agent_version_id: Option<String>,
    /// Caller id.
    pub from: Option<String>,
    /// Contacts, in order.
    pub contacts: Vec<NewContact>,
    /// Calling windows.
    pub calling_windows: Option<BusinessHours>,
    /// Pacing.
    pub calls_per_minute: i64,
    /// Pacing.
    pub max_concurrent: i64,
    /// Retries.
    pub retry: RetryPolicy,
    /// AMD.
    pub machine_detection: Option<MachineAction>,
    /// `running` or `draft`.
    pub status: CampaignStatus,
}

fn field(name: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        message: message.into(),
    }
}

fn short_text(name: &str, v: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(field(name, "must not be empty")),
        Some(s) if s.chars().count() > max => {
            Err(field(name, format!("must be at most {max} characters")))
        }
        Some(s) if s.chars().any(char::is_control) => {
            Err(field(name, "must not contain control characters"))
        }
        other => Ok(other),
    }
}

/// Validates `spec` for `tenant`; errors name the field (`contacts[3].phone`).
pub fn validate(tenant: &TenantId, spec: CampaignSpec) -> Result<NewCampaign, FieldError> {
    let name = short_text("name", Some(spec.name), 200)?.unwrap_or_default();
    let agent_key = short_text("agent_key", spec.agent_key, 100)?;
    let agent_version_id = short_text("agent_version_id", spec.agent_version_id, 100)?;
    if let Some(v) = &agent_version_id
        && crate::ids::AgentVersionId::parse(v).is_none()
    {
        return Err(field("agent_version_id", "is not an agent version id"));
    }
    let from = match spec.from {
        Some(f) => Some(
            crate::domain::E164::parse(&f)
                .map_err(|e| field("from", e.to_string()))?
                .into_string(),
        ),
        None => None,
    };
    if spec.contacts.is_empty() || spec.contacts.len() > MAX_CONTACTS {
        return Err(field(
            "contacts",
            format!("must hold 1 to {MAX_CONTACTS} contacts"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(spec.contacts.len());
    let mut contacts = Vec::with_capacity(spec.contacts.len());
    for (i, c) in spec.contacts.into_iter().enumerate() {
        let phone = crate::domain::E164::parse(&c.phone)
            .map_err(|e| field(format!("contacts[{i}].phone"), e.to_string()))?
            .into_string();
        if !seen.insert(phone.clone()) {
            return Err(field(
                format!("contacts[{i}].phone"),
                "is listed twice in this campaign",
            ));
        }
        let variables = c
            .variables
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        if !variables.is_object() || variables.to_string().len() > MAX_VARIABLES_BYTES {
            return Err(field(
                format!("contacts[{i}].variables"),
                format!("must be a JSON object of at most {MAX_VARIABLES_BYTES} bytes"),
            ));
        }
        let external_id = short_text(&format!("contacts[{i}].external_id"), c.external_id, 200)?;
        contacts.push(NewContact {
            phone,
            variables,
            external_id,
        });
    }
    let calling_windows = match &spec.calling_windows {
        Some(w) => Some(BusinessHours::parse(w).map_err(|e| FieldError {
            field: format!("calling_windows.{}", e.field),
            message: e.message,
        })?),
        None => None,
    };
    if !(1..=MAX_CALLS_PER_MINUTE).contains(&spec.calls_per_minute) {
        return Err(field(
            "pacing.calls_per_minute",
            format!("must be between 1 and {MAX_CALLS_PER_MINUTE}"),
        ));
    }
    if !(1..=1000).contains(&spec.max_concurrent) {
        return Err(field("pacing.max_concurrent", "must be between 1 and 1000"));
    }
    spec.retry.validate()?;
    Ok(NewCampaign {
        id: CampaignId::generate(),
        tenant_id: tenant.clone(),
        name,
        agent_key,
        agent_version_id,
        from,
        contacts,
        calling_windows,
        calls_per_minute: spec.calls_per_minute,
        max_concurrent: spec.max_concurrent,
        retry: spec.retry,
        machine_detection: spec.machine_detection,
        status: if spec.start {
            CampaignStatus::Running
        } else {
            CampaignStatus::Draft
        },
    })
}

/// A stored campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Id.
    pub id: CampaignId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Name.
    pub name: String,
    /// Agent key.
    pub agent_key: Option<String>,
    /// Pinned version.
    pub agent_version_id: Option<String>,
    /// Caller id.
    pub from: Option<String>,
    /// AMD.
    pub machine_detection: Option<MachineAction>,
    /// Calling windows.
    pub calling_windows: Option<BusinessHours>,
    /// Pacing.
    pub calls_per_minute: i64,
    /// Pacing.
    pub max_concurrent: i64,
    /// Retries.
    pub retry: RetryPolicy,
    /// Status.
    pub status: CampaignStatus,
    /// Contacts.
    pub contacts_total: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms, when every contact was finished.
    pub completed_at: Option<i64>,
    /// Why the dialer paused it: its calls cannot be placed as it is configured (fix, then
    /// resume).
    pub paused_reason: Option<String>,
}

/// Counts of a campaign's contacts and attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Waiting for an attempt.
    pub pending: i64,
    /// An attempt claimed or live.
    pub in_progress: i64,
    /// Answered.
    pub completed: i64,
    /// Refused by do-not-call.
    pub skipped: i64,
    /// Out of attempts.
    pub exhausted: i64,
    /// Attempts made.
    pub attempts: i64,
    /// Finished contacts by their last outcome (`answered`, `no_answer`, `busy`, `machine`,
    /// `failed`, `refused`).
    pub outcomes: std::collections::BTreeMap<String, i64>,
}

/// A stored contact.
#[derive(Debug, Clone)]
pub struct Contact {
    /// Id.
    pub id: CampaignContactId,
    /// Campaign.
    pub campaign_id: CampaignId,
    /// Order in the campaign.
    pub position: i64,
    /// E.164.
    pub phone: String,
    /// Call variables.
    pub variables: serde_json::Value,
    /// Tenant reference.
    pub external_id: Option<String>,
    /// State.
    pub state: ContactState,
    /// Attempts made (dialed or refused).
    pub attempts: i64,
    /// Last outcome.
    pub last_outcome: Option<AttemptOutcome>,
    /// The pre-dial rule that made it `skipped`.
    pub skip_rule: Option<String>,
    /// When the next attempt is due (pending).
    pub next_attempt_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A stored attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Id.
    pub id: CampaignAttemptId,
    /// Contact.
    pub contact_id: CampaignContactId,
    /// 1-based.
    pub attempt: i64,
    /// `claimed`, `placed` or `settled`.
    pub state: String,
    /// Its call, once placed.
    pub call_id: Option<CallId>,
    /// Outcome, once settled.
    pub outcome: Option<AttemptOutcome>,
    /// Detail (the pre-dial rule and reason of a refusal, the end reason).
    pub detail: Option<String>,
    /// Unix ms, claimed.
    pub started_at: i64,
    /// Unix ms, settled.
    pub settled_at: Option<i64>,
    /// When the next attempt of the contact was scheduled by this one.
    pub next_attempt_at: Option<i64>,
}

/// The idempotency key of an attempt: one per (campaign, contact, attempt number), so an
/// attempt claimed again after a crash finds the placement made under it.
pub fn attempt_key(campaign: &CampaignId, contact: &CampaignContactId, attempt: i64) -> String {
    format!("campaign:{campaign}:{contact}:{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CampaignSpec {
        CampaignSpec {
            name: "Renewals".into(),
            agent_key: None,
            agent_version_id: None,
            from: None,
            contacts: vec![ContactSpec {
                phone: "+15551230001".into(),
                variables: None,
                external_id: None,
            }],
            calling_windows: None,
            calls_per_minute: 60,
            max_concurrent: 2,
            retry: RetryPolicy::default(),
            machine_detection: None,
            start: false,
        }
    }

    #[test]
    fn validation_names_the_field() {
        let t = TenantId::generate();
        assert!(validate(&t, spec()).is_ok());
        let mut s = spec();
        s.contacts.push(ContactSpec {
            phone: "12".into(),
            variables: None,
            external_id: None,
        });
        assert_eq!(
            validate(&t, s).expect_err("bad phone").field,
            "contacts[1].phone"
        );
        let mut s = spec();
        s.calls_per_minute = 601;
        assert_eq!(
            validate(&t, s).expect_err("pace").field,
            "pacing.calls_per_minute"
        );
        let mut s = spec();
        s.retry.busy.max_attempts = 0;
        assert_eq!(
            validate(&t, s).expect_err("retry").field,
            "retry.busy.max_attempts"
        );
        let mut s = spec();
        s.contacts[0].variables = Some(serde_json::json!([1]));
        assert_eq!(
            validate(&t, s).expect_err("vars").field,
            "contacts[0].variables"
        );
    }

    #[test]
    fn retries_follow_the_policy() {
        let p = RetryPolicy {
            no_answer: RetryRule {
                max_attempts: 3,
                spacing_seconds: 60,
            },
            ..RetryPolicy::default()
        };
        assert_eq!(
            next_step(&p, AttemptOutcome::NoAnswer, None, 1, 1_000),
            NextStep::Retry { at: 61_000 }
        );
        assert_eq!(
            next_step(&p, AttemptOutcome::NoAnswer, None, 3, 1_000),
            NextStep::Finish(ContactState::Exhausted)
        );
        assert_eq!(
            next_step(&p, AttemptOutcome::Busy, None, 1, 0),
            NextStep::Finish(ContactState::Exhausted)
        );
        assert_eq!(
            next_step(&p, AttemptOutcome::Answered, None, 1, 0),
            NextStep::Finish(ContactState::Completed)
        );
        assert_eq!(
            next_step(
                &p,
                AttemptOutcome::Refused,
                Some("do_not_call: listed"),
                1,
                0
            ),
            NextStep::Finish(ContactState::Skipped)
        );
        assert_eq!(
            next_step(&p, AttemptOutcome::Refused, Some("calling_window: x"), 1, 0),
            NextStep::Retry {
                at: POLICY_LATER_MS
            }
        );
    }

    #[test]
    fn transitions() {
        let (from, to) = CampaignAction::Resume.transition();
        assert!(from.contains(&CampaignStatus::Draft));
        assert_eq!(to, CampaignStatus::Running);
        let (from, _) = CampaignAction::Pause.transition();
        assert!(!from.contains(&CampaignStatus::Completed));
    }
}
