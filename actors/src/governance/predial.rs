//! The pre-dial policy: what every outbound call passes before anything is dialed, in this
//! order, stopping at the first refusal.
//!
//! 1. `do_not_call`: the callee is not on the tenant's do-not-call list ([`super::dnc`]).
//! 2. `calling_window`: the moment is inside the calling hours, read as wall-clock times in
//!    the callee's time zone — the zone of the request when it names one, else the zone of
//!    the calling hours in force (the route's, else the tenant's). Days and hours come from
//!    the route's dial policy, else the tenant's; none configured: no window. Wall-clock
//!    windows are DST-correct (the same local hours before and after a change).
//! 3. `attempt_limit`: fewer than the daily limit of attempts to this number today (the
//!    callee's local day, as above, else UTC). The attempt is counted by one conditional
//!    upsert, so concurrent placements never exceed the limit; a placement refused after
//!    the policy (admission) gives its attempt back.
//!
//! Every decision is recorded with its rule and every check's detail
//! (`predial_decisions`, keyed by the call, shown on the call log). A dial policy exists per
//! tenant and per route (the route's fields override the tenant's one by one); each change is
//! audited.

use chrono::{DateTime, Datelike as _, TimeZone as _};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::GovernanceError;
use crate::ids::{CallId, RouteId, TenantId};
use crate::operator::{BusinessHours, BusinessHoursSpec};
use crate::store::{NewAudit, Store, StoreError};
use crate::tenant::AuditMeta;
use crate::time::now_ms;

/// Largest daily attempt limit.
pub const MAX_DAILY_ATTEMPTS: u32 = 100;

/// A pre-dial rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The do-not-call list.
    DoNotCall,
    /// Calling hours in the callee's zone.
    CallingWindow,
    /// Attempts per number and day.
    AttemptLimit,
}

impl Rule {
    /// Every rule, in the order they are checked.
    pub const ALL: [Rule; 3] = [Rule::DoNotCall, Rule::CallingWindow, Rule::AttemptLimit];

    /// The stored and wire form (also the error code of a refusal).
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::DoNotCall => "do_not_call",
            Rule::CallingWindow => "calling_window",
            Rule::AttemptLimit => "attempt_limit",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Where a dial policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyScope {
    /// The tenant's default.
    Tenant,
    /// One route (overrides the tenant's fields it sets).
    Route(RouteId),
}

impl PolicyScope {
    /// The stored form (`tenant` or the route id).
    pub fn as_str(&self) -> &str {
        match self {
            PolicyScope::Tenant => "tenant",
            PolicyScope::Route(id) => id.as_str(),
        }
    }
}

/// A dial policy: calling hours and a daily attempt limit, each optional.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DialPolicy {
    /// Calling hours (zone and windows); `None`: no window.
    pub calling_hours: Option<BusinessHours>,
    /// Attempts per number and local day; `None`: no limit.
    pub daily_attempt_limit: Option<u32>,
    /// Unix ms of the last change (`None`: never set).
    pub updated_at: Option<i64>,
}

/// The wire form of a [`DialPolicy`]:
/// `{"calling_hours": {"timezone": "America/New_York", "windows": [{"days": ["mon"], "open": "09:00", "close": "20:00"}]}, "daily_attempt_limit": 3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DialPolicySpec {
    /// Calling hours; absent or null: no window.
    #[serde(default)]
    pub calling_hours: Option<BusinessHoursSpec>,
    /// Attempts per number and day (1–100); absent or null: no limit.
    #[serde(default)]
    pub daily_attempt_limit: Option<i64>,
}

impl DialPolicy {
    /// Validates the wire form; errors name the field (`calling_hours.windows[0].open`).
    pub fn parse(spec: &DialPolicySpec) -> Result<Self, GovernanceError> {
        let calling_hours = match &spec.calling_hours {
            None => None,
            Some(h) => Some(BusinessHours::parse(h).map_err(|e| {
                GovernanceError::invalid(format!("calling_hours.{}", e.field), e.message)
            })?),
        };
        let daily_attempt_limit = match spec.daily_attempt_limit {
            None => None,
            Some(n) => Some(
                u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_DAILY_ATTEMPTS).contains(n))
                    .ok_or_else(|| {
                        GovernanceError::invalid(
                            "daily_attempt_limit",
                            format!("must be between 1 and {MAX_DAILY_ATTEMPTS}"),
                        )
                    })?,
            ),
        };
        Ok(DialPolicy {
            calling_hours,
            daily_attempt_limit,
            updated_at: None,
        })
    }

    /// The wire form.
    pub fn to_spec(&self) -> DialPolicySpec {
        DialPolicySpec {
            calling_hours: self.calling_hours.as_ref().map(BusinessHours::to_spec),
            daily_attempt_limit: self.daily_attempt_limit.map(i64::from),
        }
    }

    /// This policy with the fields `over` sets replacing its own.
    fn overridden_by(self, over: Option<DialPolicy>) -> DialPolicy {
        match over {
            None => self,
            Some(o) => DialPolicy {
                calling_hours: o.calling_hours.or(self.calling_hours),
                daily_attempt_limit: o.daily_attempt_limit.or(self.daily_attempt_limit),
                updated_at: o.updated_at.or(self.updated_at),
            },
        }
    }
}

/// The dial policy of `scope` (the defaults when never set).
pub async fn get_policy(
    store: &Store,
    tenant: &TenantId,
    scope: &PolicyScope,
) -> Result<DialPolicy, GovernanceError> {
    Ok(store
        .dial_policy(tenant, scope.as_str())
        .await?
        .unwrap_or_default())
}

/// Replaces the dial policy of `scope`, audited.
pub async fn put_policy(
    store: &Store,
    tenant: &TenantId,
    scope: &PolicyScope,
    policy: DialPolicy,
    meta: &AuditMeta,
) -> Result<DialPolicy, GovernanceError> {
    let before = get_policy(store, tenant, scope).await?;
    let after = DialPolicy {
        updated_at: Some(now_ms()),
        ..policy
    };
    let row = NewAudit {
        actor: meta.actor.clone(),
        action: "dial_policy.update",
        tenant_id: Some(tenant.clone()),
        target_type: match scope {
            PolicyScope::Tenant => "tenant",
            PolicyScope::Route(_) => "phone_route",
        },
        target_id: match scope {
            PolicyScope::Tenant => tenant.to_string(),
            PolicyScope::Route(id) => id.to_string(),
        },
        before: serde_json::to_value(before.to_spec()).ok(),
        after: serde_json::to_value(after.to_spec()).ok(),
        request_id: meta.request_id.clone(),
    };
    store
        .put_dial_policy(tenant, scope.as_str(), &after, &row)
        .await?;
    Ok(after)
}

/// What a placement asks the policy.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The call being placed (its id is final).
    pub call_id: CallId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The route it is placed from.
    pub route_id: RouteId,
    /// The callee (E.164).
    pub to: String,
    /// The callee's zone, when the request named one.
    pub time_zone: Option<Tz>,
    /// Now (Unix ms), from the placement's clock.
    pub at_ms: i64,
}

/// One rule's check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The rule.
    pub rule: Rule,
    /// Whether it let the call through.
    pub passed: bool,
    /// What it looked at (listed entry, local time and windows, attempts and limit).
    pub detail: Value,
}

/// The decision for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The call.
    pub call_id: CallId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The callee.
    pub to: String,
    /// Dial or not.
    pub allowed: bool,
    /// The refusing rule.
    pub rule: Option<Rule>,
    /// Every rule checked, in order (the refusing one last).
    pub checks: Vec<Check>,
    /// Unix ms.
    pub decided_at: i64,
    /// The local day an attempt was counted on (given back if the placement is refused
    /// later).
    pub attempt_day: Option<String>,
}

impl Decision {
    /// Why the call was refused (empty when allowed): the refusing check's message.
    pub fn reason(&self) -> String {
        self.checks
            .iter()
            .find(|c| !c.passed)
            .and_then(|c| c.detail.get("reason").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned()
    }

    /// Every check as JSON (stored, shown on the call log).
    pub fn checks_json(&self) -> Value {
        Value::Array(
            self.checks
                .iter()
                .map(|c| json!({"rule": c.rule.as_str(), "passed": c.passed, "detail": c.detail}))
                .collect(),
        )
    }
}

/// The wall-clock time of `zone` at `at_ms`, as text (`2026-03-08T01:59 EST`).
fn local_text(zone: Tz, at_ms: i64) -> String {
    match DateTime::from_timestamp_millis(at_ms) {
        Some(t) => zone
            .from_utc_datetime(&t.naive_utc())
            .format("%Y-%m-%dT%H:%M %Z (%a)")
            .to_string(),
        None => String::from("out of range"),
    }
}

/// The callee's local day (`YYYY-MM-DD`) in `zone` at `at_ms`.
fn local_day(zone: Tz, at_ms: i64) -> String {
    match DateTime::from_timestamp_millis(at_ms) {
        Some(t) => {
            let d = zone.from_utc_datetime(&t.naive_utc()).date_naive();
            format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
        }
        None => String::from("out-of-range"),
    }
}

/// Marks `d` refused by `rule`, its check last.
fn refuse(d: &mut Decision, rule: Rule, detail: Value) {
    d.allowed = false;
    d.rule = Some(rule);
    d.checks.push(Check {
        rule,
        passed: false,
        detail,
    });
}

/// Checks `dial` against the policy, counting the attempt when every rule passes. Nothing is
/// written but the attempt counter; [`record`] stores the decision once the call exists.
pub async fn decide(store: &Store, dial: &Dial) -> Result<Decision, StoreError> {
    let mut decision = Decision {
        call_id: dial.call_id.clone(),
        tenant_id: dial.tenant_id.clone(),
        to: dial.to.clone(),
        allowed: true,
        rule: None,
        checks: Vec::new(),
        decided_at: dial.at_ms,
        attempt_day: None,
    };

    // 1. Do not call.
    if let Some(listed) = store.get_dnc(&dial.tenant_id, &dial.to).await? {
        refuse(
            &mut decision,
            Rule::DoNotCall,
            json!({
                "reason": format!("{} is on the tenant's do-not-call list", dial.to),
                "source": listed.source.as_str(),
                "listed_at": crate::time::rfc3339(listed.created_at),
                "call_id": listed.call_id.as_ref().map(CallId::as_str),
            }),
        );
        return Ok(decision);
    }
    decision.checks.push(Check {
        rule: Rule::DoNotCall,
        passed: true,
        detail: json!({"listed": false}),
    });

    // The policy in force: the route's fields over the tenant's.
    let tenant_policy = store
        .dial_policy(&dial.tenant_id, PolicyScope::Tenant.as_str())
        .await?
        .unwrap_or_default();
    let route_policy = store
        .dial_policy(&dial.tenant_id, dial.route_id.as_str())
        .await?;
    let policy = tenant_policy.overridden_by(route_policy);
    let zone = dial
        .time_zone
        .or_else(|| policy.calling_hours.as_ref().map(|h| h.timezone));

    // 2. Calling window.
    match &policy.calling_hours {
        None => decision.checks.push(Check {
            rule: Rule::CallingWindow,
            passed: true,
            detail: json!({"configured": false}),
        }),
        Some(hours) => {
            let zone = zone.unwrap_or(hours.timezone);
            let in_zone = BusinessHours {
                timezone: zone,
                windows: hours.windows.clone(),
            };
            let open = in_zone.is_open(dial.at_ms);
            let local = local_text(zone, dial.at_ms);
            let mut detail = json!({
                "time_zone": zone.name(),
                "zone_from": if dial.time_zone.is_some() { "request" } else { "policy" },
                "local_time": local,
                "windows": serde_json::to_value(&hours.to_spec().windows).unwrap_or_default(),
            });
            if open {
                decision.checks.push(Check {
                    rule: Rule::CallingWindow,
                    passed: true,
                    detail,
                });
            } else {
                detail["reason"] = Value::String(format!(
                    "{local} in {} is outside the calling hours",
                    zone.name()
                ));
                refuse(&mut decision, Rule::CallingWindow, detail);
                return Ok(decision);
            }
        }
    }

    // 3. Attempts per number and local day.
    match policy.daily_attempt_limit {
        None => decision.checks.push(Check {
            rule: Rule::AttemptLimit,
            passed: true,
            detail: json!({"configured": false}),
        }),
        Some(limit) => {
            let zone = zone.unwrap_or(Tz::UTC);
            let day = local_day(zone, dial.at_ms);
            let counted = store
                .count_dial_attempt(&dial.tenant_id, &dial.to, &day, i64::from(limit))
                .await?;
            match counted {
                Some(attempt) => {
                    decision.attempt_day = Some(day.clone());
                    decision.checks.push(Check {
                        rule: Rule::AttemptLimit,
                        passed: true,
                        detail: json!({"attempt": attempt, "limit": limit, "day": day, "time_zone": zone.name()}),
                    });
                }
                None => refuse(
                    &mut decision,
                    Rule::AttemptLimit,
                    json!({
                        "reason": format!("{} was already called {limit} times on {day} (the daily limit)", dial.to),
                        "limit": limit,
                        "day": day,
                        "time_zone": zone.name(),
                    }),
                ),
            }
        }
    }
    Ok(decision)
}

/// Stores the decision (the call is recorded).
pub async fn record(store: &Store, decision: &Decision) -> Result<(), StoreError> {
    store.insert_predial_decision(decision).await
}

/// Gives back the attempt a decision counted (the placement was refused after the policy).
pub async fn release_attempt(store: &Store, decision: &Decision) -> Result<(), StoreError> {
    if let Some(day) = &decision.attempt_day {
        store
            .release_dial_attempt(&decision.tenant_id, &decision.to, day)
            .await?;
    }
    Ok(())
}

/// The decision recorded for a call of `tenant`.
pub async fn decision_of(
    store: &Store,
    tenant: &TenantId,
    call: &CallId,
) -> Result<Option<Decision>, StoreError> {
    store.predial_decision(tenant, call).await
}

#[cfg(test)]
mod tests;
