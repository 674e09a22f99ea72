//! The readiness review of a tenant (DESIGN §6): every launch gate, each with a status
//! (`pass`, `fail`, `warn`), the reason, the team that owns fixing it, the evidence it was
//! decided on and when it was checked. Computed when asked (nothing stored): the carrier is
//! asked about the credentials, the store about routes, versions, evaluations, deliveries
//! and the launch, and the edge hands in what only it sees (the last verified signed
//! webhook, the last metrics scrape).
//!
//! A route goes `staged → live` only when the review has no failing gate; the HTTP edge
//! calls [`review`] and refuses otherwise (or records an admin's override).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::{GovernanceError, launch};
use crate::carrier::{Carrier, CarrierAuth};
use crate::evaluation::summary::version_summary;
use crate::ids::TenantId;
use crate::providers::{CheckStatus, check_carrier};
use crate::store::{DeliveryFilter, DeliveryStatus, PhoneRoute, Store};
use crate::time::{now_ms, rfc3339};

/// How recent the last verified signed webhook must be.
pub const SIGNED_WEBHOOK_MAX_AGE_MS: i64 = 24 * 60 * 60 * 1000;
/// How recent the last metrics scrape must be.
pub const METRICS_SCRAPE_MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// How long the carrier may take to answer the credential check.
pub const CARRIER_CHECK_DEADLINE: Duration = Duration::from_secs(3);

/// A gate's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateStatus {
    /// Met.
    Pass,
    /// Not met: blocks `staged → live`.
    Fail,
    /// Met, with something to look at.
    Warn,
}

impl GateStatus {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            GateStatus::Pass => "pass",
            GateStatus::Fail => "fail",
            GateStatus::Warn => "warn",
        }
    }
}

/// The team that owns a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOwner {
    /// Credentials, webhooks, telemetry.
    Engineering,
    /// Routes, fallbacks.
    Operations,
    /// Agents' quality, the launch and its approvals.
    Business,
}

impl GateOwner {
    /// The wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            GateOwner::Engineering => "engineering",
            GateOwner::Operations => "operations",
            GateOwner::Business => "business",
        }
    }
}

/// One gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Stable key (`carrier_credentials`, …).
    pub key: &'static str,
    /// Its outcome.
    pub status: GateStatus,
    /// Why, in a sentence.
    pub reason: String,
    /// Who fixes it.
    pub owner: GateOwner,
    /// What it was decided on.
    pub evidence: Value,
    /// When (Unix ms).
    pub checked_at: i64,
}

/// The review.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// The tenant.
    pub tenant_id: TenantId,
    /// No gate fails.
    pub ready: bool,
    /// Every gate, in a fixed order.
    pub gates: Vec<Gate>,
    /// When (Unix ms).
    pub checked_at: i64,
}

impl Readiness {
    /// The keys of the failing gates.
    pub fn failing(&self) -> Vec<&'static str> {
        self.gates
            .iter()
            .filter(|g| g.status == GateStatus::Fail)
            .map(|g| g.key)
            .collect()
    }
}

/// What the review needs beyond the store.
pub struct ReviewInputs<'a> {
    /// The carrier the credentials are checked at.
    pub carrier: &'a dyn Carrier,
    /// The tenant's Twilio credentials, if any.
    pub carrier_auth: Option<&'a CarrierAuth>,
    /// Ask the carrier about them (`false`: the gate is `warn`, not checked — an admin's
    /// override records the review without waiting on the carrier).
    pub ask_carrier: bool,
    /// When a signed webhook of the tenant last verified (Unix ms).
    pub last_signed_webhook_ms: Option<i64>,
    /// Every node serving now with its last scrape of `/metrics` (each node is scraped on
    /// its own: the gate passes when every one was scraped recently).
    pub metrics_scrapes: Vec<crate::store::NodeScrape>,
    /// Evaluated calls a routed version needs.
    pub min_evaluated_calls: u32,
    /// The pass rate those calls need (0–1).
    pub min_pass_rate: f64,
    /// A route as a change would leave it (reviewed in place of its stored form, or added):
    /// the gate on `staged → live` reviews the tenant as it would be after the change.
    pub prospect: Option<&'a PhoneRoute>,
}

struct Gates {
    at: i64,
    gates: Vec<Gate>,
}

impl Gates {
    fn add(
        &mut self,
        key: &'static str,
        owner: GateOwner,
        status: GateStatus,
        reason: impl Into<String>,
        evidence: Value,
    ) {
        self.gates.push(Gate {
            key,
            status,
            reason: reason.into(),
            owner,
            evidence,
            checked_at: self.at,
        });
    }
}

fn pass_or_fail(ok: bool) -> GateStatus {
    if ok {
        GateStatus::Pass
    } else {
        GateStatus::Fail
    }
}

/// A recency gate: `at` within `max_age_ms` of `now`.
fn recency(now: i64, at: Option<i64>, max_age_ms: i64, what: &str) -> (GateStatus, String) {
    match at {
        None => (GateStatus::Fail, format!("no {what} yet")),
        Some(at) if now - at <= max_age_ms => (
            GateStatus::Pass,
            format!("the last {what} was at {}", rfc3339(at)),
        ),
        Some(at) => (
            GateStatus::Fail,
            format!(
                "the last {what} was at {}, more than {} minutes ago",
                rfc3339(at),
                max_age_ms / 60_000
            ),
        ),
    }
}

/// The oldest of the nodes' last scrapes (`None` when a node was never scraped).
fn oldest_scrape(nodes: &[crate::store::NodeScrape]) -> Option<i64> {
    nodes
        .iter()
        .map(|n| n.last_scrape)
        .try_fold(i64::MAX, |oldest, at| at.map(|at| oldest.min(at)))
        .filter(|at| *at != i64::MAX)
}

/// The telemetry gate: every node serving was scraped within the window; the reason names
/// the node that was not.
fn telemetry(now: i64, nodes: &[crate::store::NodeScrape]) -> (GateStatus, String) {
    let stalest = nodes
        .iter()
        .min_by_key(|n| n.last_scrape.unwrap_or(i64::MIN));
    match stalest {
        None => (GateStatus::Fail, String::from("no node is serving")),
        Some(n) => {
            let (status, reason) = recency(
                now,
                n.last_scrape,
                METRICS_SCRAPE_MAX_AGE_MS,
                "scrape of /metrics",
            );
            if nodes.len() == 1 || status == GateStatus::Pass {
                let reason = if nodes.len() == 1 {
                    reason
                } else {
                    format!(
                        "every one of {} nodes scraped; {reason} (the oldest)",
                        nodes.len()
                    )
                };
                (status, reason)
            } else {
                (status, format!("node {}: {reason}", n.node_id))
            }
        }
    }
}

/// Reviews every launch gate of `tenant` (`NotFound("tenant")` when there is none).
pub async fn review(
    store: &Store,
    tenant: &TenantId,
    inputs: ReviewInputs<'_>,
) -> Result<Readiness, GovernanceError> {
    let tenant_row = store
        .get_tenant(tenant)
        .await?
        .ok_or(GovernanceError::NotFound("tenant"))?;
    let at = now_ms();
    let mut g = Gates {
        at,
        gates: Vec::new(),
    };

    // Credentials, checked at the carrier.
    let account_sid = inputs.carrier_auth.map(|a| a.account_sid.clone());
    if inputs.ask_carrier {
        let check =
            check_carrier(inputs.carrier, inputs.carrier_auth, CARRIER_CHECK_DEADLINE).await;
        g.add(
            "carrier_credentials",
            GateOwner::Engineering,
            pass_or_fail(check.status == CheckStatus::Ok),
            match check.status {
                CheckStatus::Ok => format!("verified at the carrier: {}", check.detail),
                _ => check.detail.clone(),
            },
            json!({
                "check": check.status.as_str(),
                "account_sid": account_sid,
                "latency_ms": u64::try_from(check.latency.as_millis()).unwrap_or(u64::MAX),
            }),
        );
    } else {
        g.add(
            "carrier_credentials",
            GateOwner::Engineering,
            GateStatus::Warn,
            "not checked at the carrier this time",
            json!({"check": "skipped", "account_sid": account_sid}),
        );
    }

    // A signed webhook verified recently.
    let (status, reason) = recency(
        at,
        inputs.last_signed_webhook_ms,
        SIGNED_WEBHOOK_MAX_AGE_MS,
        "verified signed webhook from the carrier",
    );
    g.add(
        "signed_webhook",
        GateOwner::Engineering,
        status,
        reason,
        json!({"last_verified_at": inputs.last_signed_webhook_ms.map(rfc3339)}),
    );

    // Every route has a fallback.
    let mut routes = store.list_routes(Some(tenant), u32::MAX, 0).await?.items;
    if let Some(p) = inputs.prospect {
        routes.retain(|r| r.id != p.id);
        routes.push(p.clone());
    }
    let without: Vec<&str> = routes
        .iter()
        .filter(|r| r.fallback_number.is_none())
        .map(|r| r.number.as_str())
        .collect();
    let (status, reason) = if routes.is_empty() {
        (
            GateStatus::Fail,
            String::from("the tenant has no phone route"),
        )
    } else if without.is_empty() {
        (
            GateStatus::Pass,
            format!("all {} routes have a fallback number", routes.len()),
        )
    } else {
        (
            GateStatus::Fail,
            format!("routes without a fallback number: {}", without.join(", ")),
        )
    };
    g.add(
        "route_fallbacks",
        GateOwner::Operations,
        status,
        reason,
        json!({"routes": routes.len(), "without_fallback": without}),
    );

    // Every routed agent has an approved version with a rubric, and that version enough
    // evaluated calls passing.
    let agents: BTreeSet<&str> = routes.iter().map(|r| r.agent_key.as_str()).collect();
    let mut version_problems = Vec::new();
    let mut version_evidence = Vec::new();
    let mut eval_problems = Vec::new();
    let mut eval_evidence = Vec::new();
    for agent in &agents {
        let Some(version) = store.current_version(tenant, agent).await? else {
            version_problems.push(format!("agent {agent} has no approved version"));
            version_evidence.push(json!({"agent_key": agent, "approved_version": null}));
            eval_problems.push(format!("agent {agent} has no approved version to evaluate"));
            continue;
        };
        let has_rubric = version.rubric.is_some();
        version_evidence.push(json!({
            "agent_key": agent,
            "approved_version": version.id.as_str(),
            "version": version.version,
            "rubric": has_rubric,
        }));
        if !has_rubric {
            version_problems.push(format!(
                "agent {agent}'s approved version {} has no rubric",
                version.version
            ));
        }
        let summary = version_summary(store, version.id.as_str(), None, None).await?;
        eval_evidence.push(json!({
            "agent_key": agent,
            "agent_version_id": version.id.as_str(),
            "evaluated": summary.evaluated,
            "passed": summary.passed,
            "pass_rate": summary.pass_rate,
        }));
        let enough = summary.evaluated >= i64::from(inputs.min_evaluated_calls);
        let rate = summary.pass_rate.unwrap_or(0.0);
        if !enough {
            eval_problems.push(format!(
                "agent {agent}'s version {} has {} evaluated calls of the {} needed",
                version.version, summary.evaluated, inputs.min_evaluated_calls
            ));
        } else if rate < inputs.min_pass_rate {
            eval_problems.push(format!(
                "agent {agent}'s version {} passes {:.1}% of its evaluated calls, below {:.1}%",
                version.version,
                rate * 100.0,
                inputs.min_pass_rate * 100.0
            ));
        }
    }
    let none_routed = agents.is_empty();
    let (status, reason) = if none_routed {
        (GateStatus::Fail, String::from("no agent is routed"))
    } else if version_problems.is_empty() {
        (
            GateStatus::Pass,
            format!(
                "every routed agent ({}) has an approved version with a rubric",
                agents.len()
            ),
        )
    } else {
        (GateStatus::Fail, version_problems.join("; "))
    };
    g.add(
        "agent_versions",
        GateOwner::Business,
        status,
        reason,
        json!({"agents": version_evidence}),
    );
    let (status, reason) = if none_routed {
        (GateStatus::Fail, String::from("no agent is routed"))
    } else if eval_problems.is_empty() {
        (
            GateStatus::Pass,
            format!(
                "every routed version has at least {} evaluated calls passing at {:.1}% or more",
                inputs.min_evaluated_calls,
                inputs.min_pass_rate * 100.0
            ),
        )
    } else {
        (GateStatus::Fail, eval_problems.join("; "))
    };
    g.add(
        "evaluations",
        GateOwner::Business,
        status,
        reason,
        json!({
            "min_evaluated_calls": inputs.min_evaluated_calls,
            "min_pass_rate": inputs.min_pass_rate,
            "versions": eval_evidence,
        }),
    );

    // An event webhook configured and delivering.
    let latest = |status| DeliveryFilter {
        tenant_id: tenant.clone(),
        status: Some(status),
        event: None,
        event_id: None,
        limit: 1,
        offset: 0,
    };
    let delivered = store
        .list_deliveries(&latest(DeliveryStatus::Delivered))
        .await?
        .items
        .into_iter()
        .next();
    let failed = store
        .list_deliveries(&latest(DeliveryStatus::Failed))
        .await?
        .items
        .into_iter()
        .next();
    let delivered_at = delivered
        .as_ref()
        .map(|d| d.delivered_at.unwrap_or(d.updated_at));
    let failed_at = failed.as_ref().map(|d| d.updated_at);
    let (status, reason) = match (&tenant_row.event_webhook, delivered_at, failed_at) {
        (None, ..) => (
            GateStatus::Fail,
            String::from("no event webhook is configured"),
        ),
        (Some(_), None, _) => (
            GateStatus::Fail,
            String::from("the event webhook has not delivered an event yet"),
        ),
        (Some(_), Some(d), Some(f)) if f > d => (
            GateStatus::Fail,
            format!(
                "the last delivery failed after every attempt at {}",
                rfc3339(f)
            ),
        ),
        (Some(_), Some(d), _) => (
            GateStatus::Pass,
            format!("the last event was delivered at {}", rfc3339(d)),
        ),
    };
    g.add(
        "event_webhook",
        GateOwner::Engineering,
        status,
        reason,
        json!({
            "url": tenant_row.event_webhook.as_ref().map(|w| w.url.clone()),
            "last_delivered_at": delivered_at.map(rfc3339),
            "last_failed_at": failed_at.map(rfc3339),
        }),
    );

    // Telemetry flowing, from every node.
    let (status, reason) = telemetry(at, &inputs.metrics_scrapes);
    let nodes: Vec<Value> = inputs
        .metrics_scrapes
        .iter()
        .map(|n| json!({"node_id": n.node_id, "last_scraped_at": n.last_scrape.map(rfc3339)}))
        .collect();
    let oldest = oldest_scrape(&inputs.metrics_scrapes);
    g.add(
        "telemetry",
        GateOwner::Operations,
        status,
        reason,
        json!({"last_scraped_at": oldest.map(rfc3339), "nodes": nodes}),
    );

    // Launch owner and rollback path; approvals by every required role.
    let launch = launch::status(store, tenant).await?;
    let (status, reason, evidence) = match &launch.record {
        None => (
            GateStatus::Fail,
            String::from("no launch owner and rollback path are recorded"),
            json!(null),
        ),
        Some(r) => (
            GateStatus::Pass,
            format!("owned by {}, with a rollback path", r.owner),
            json!({"owner": r.owner, "rollback_path": r.rollback_path, "updated_by": r.updated_by}),
        ),
    };
    g.add(
        "launch_record",
        GateOwner::Business,
        status,
        reason,
        evidence,
    );
    let valid: Vec<Value> = launch
        .approvals
        .iter()
        .filter(|a| a.valid)
        .map(|a| json!({"identity": a.approval.identity, "role": a.approval.role.as_str()}))
        .collect();
    let missing: Vec<&str> = launch.missing_roles.iter().map(|r| r.as_str()).collect();
    let (status, reason) = if launch.record.is_none() {
        (
            GateStatus::Fail,
            String::from("no launch record names the roles that must approve"),
        )
    } else if launch.approved {
        (
            GateStatus::Pass,
            String::from("every required role has approved the launch as it stands"),
        )
    } else {
        (
            GateStatus::Fail,
            format!("approvals missing from: {}", missing.join(", ")),
        )
    };
    g.add(
        "launch_approvals",
        GateOwner::Business,
        status,
        reason,
        json!({"valid_approvals": valid, "missing_roles": missing}),
    );

    let ready = g.gates.iter().all(|g| g.status != GateStatus::Fail);
    Ok(Readiness {
        tenant_id: tenant.clone(),
        ready,
        gates: g.gates,
        checked_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_passes_only_when_every_node_was_scraped_recently() {
        use crate::store::NodeScrape;
        let now = 10 * 60_000;
        let node = |id: &str, at: Option<i64>| NodeScrape {
            node_id: id.to_owned(),
            last_scrape: at,
        };
        assert_eq!(telemetry(now, &[]).0, GateStatus::Fail);
        assert_eq!(telemetry(now, &[node("a", Some(now))]).0, GateStatus::Pass);
        let (status, reason) = telemetry(now, &[node("a", Some(now)), node("b", None)]);
        assert_eq!(status, GateStatus::Fail);
        assert!(reason.starts_with("node b: no scrape"), "{reason}");
        let (status, reason) = telemetry(
            now,
            &[
                node("a", Some(now)),
                node("b", Some(now - METRICS_SCRAPE_MAX_AGE_MS - 1)),
            ],
        );
        assert_eq!(status, GateStatus::Fail);
        assert!(reason.starts_with("node b: the last scrape"), "{reason}");
        let (status, reason) = telemetry(now, &[node("a", Some(now)), node("b", Some(now - 5))]);
        assert_eq!(status, GateStatus::Pass);
        assert!(
            reason.starts_with("every one of 2 nodes scraped"),
            "{reason}"
        );
        assert_eq!(
            oldest_scrape(&[node("a", Some(now)), node("b", Some(now - 5))]),
            Some(now - 5)
        );
        assert_eq!(
            oldest_scrape(&[node("a", Some(now)), node("b", None)]),
            None
        );
        assert_eq!(oldest_scrape(&[]), None);
    }

    #[test]
    fn recency_passes_within_the_window_and_fails_outside_or_without() {
        let now = 10 * 60_000;
        assert_eq!(recency(now, None, 60_000, "x").0, GateStatus::Fail);
        assert_eq!(
            recency(now, Some(now - 60_000), 60_000, "x").0,
            GateStatus::Pass
        );
        let (status, reason) = recency(now, Some(now - 60_001), 60_000, "scrape");
        assert_eq!(status, GateStatus::Fail);
        assert!(reason.contains("more than 1 minutes ago"), "{reason}");
    }
}
