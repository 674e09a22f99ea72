//! The pre-dial policy in the placement task, against a clock the test sets: calling hours
//! in New York are wall-clock hours on both sides of the 2026 daylight-saving change, a call
//! outside them is refused with the rule and recorded refused, and the carrier is never asked.

use actors::carrier::PlacedCall;
use actors::ending::{EndReason, Outcome};
use actors::governance::predial::{self, DialPolicy, DialPolicySpec, PolicyScope, Rule};
use actors::ids::TenantId;
use actors::operator::{BusinessHoursSpec, HoursWindowSpec};
use actors::telephony::outbound::{self, OutboundRequest};
use actors::telephony::{PlacementSettings, TelephonyError};
use actors::time::Clock;
use chrono::{TimeZone as _, Utc};

use crate::support::{meta, start_with, telephony_tenant};

fn utc(d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(2026, 3, d, h, mi, 0)
        .single()
        .expect("a valid time")
        .timestamp_millis()
}

fn request(tenant: &TenantId) -> OutboundRequest {
    OutboundRequest {
        tenant_id: tenant.clone(),
        to: "+12125550123".into(),
        from: None,
        agent_key: None,
        agent_version_id: None,
        greeting: None,
        org_id: None,
        metadata: None,
        machine_detection: None,
        time_zone: None,
        draining: false,
    }
}

#[tokio::test]
async fn calling_hours_hold_in_local_time_across_the_dst_change() {
    // Saturday 2026-03-07 13:30 UTC is 08:30 EST in New York: before the 09:00 opening.
    let clock = Clock::manual(utc(7, 13, 30));
    let set = clock.clone();
    let tree = start_with(PlacementSettings::default(), move |c| c.clock = clock).await;
    let (tenant, _) = telephony_tenant(&tree).await;
    let policy = DialPolicy::parse(&DialPolicySpec {
        calling_hours: Some(BusinessHoursSpec {
            timezone: "America/New_York".into(),
            windows: vec![HoursWindowSpec {
                days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .map(String::from)
                    .to_vec(),
                open: "09:00".into(),
                close: "20:00".into(),
            }],
        }),
        daily_attempt_limit: None,
    })
    .expect("policy");
    predial::put_policy(&tree.store, &tenant, &PolicyScope::Tenant, policy, &meta())
        .await
        .expect("put policy");
    let telephony = &tree.actors.telephony;

    let refused = outbound::start(telephony, request(&tenant), None)
        .outcome()
        .await;
    let call_id = match refused {
        Err(TelephonyError::PolicyRefused {
            rule,
            call_id,
            message,
        }) => {
            assert_eq!(rule, Rule::CallingWindow);
            assert!(message.contains("08:30 EST"), "{message}");
            call_id
        }
        other => panic!("refused by the window: {other:?}"),
    };
    assert_eq!(tree.carrier.placed(), 0, "the carrier was never asked");
    let call = tree
        .store
        .get_call_by_id(&call_id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(call.status, "refused");
    assert_eq!(
        call.end_reason.as_deref(),
        Some(EndReason::PredialRefused.as_str())
    );
    assert_eq!(call.outcome, Some(Outcome::Refused));
    let decision = predial::decision_of(&tree.store, &tenant, &call_id)
        .await
        .expect("read")
        .expect("decision recorded");
    assert_eq!(decision.rule, Some(Rule::CallingWindow));

    // Sunday after the change, the same 13:30 UTC is 09:30 EDT: open.
    assert!(set.set(utc(8, 13, 30)));
    tree.carrier.on_place(Ok(PlacedCall {
        call_sid: "CA00000000000000000000000000000042".into(),
        status: "queued".into(),
    }));
    let placed = outbound::start(telephony, request(&tenant), None)
        .outcome()
        .await
        .expect("placed");
    assert_eq!(
        placed.call_sid.as_deref(),
        Some("CA00000000000000000000000000000042")
    );
    assert_eq!(tree.carrier.placed(), 1);
    let decision = predial::decision_of(&tree.store, &tenant, &placed.id)
        .await
        .expect("read")
        .expect("decision recorded");
    assert!(decision.allowed);
    assert!(
        decision.checks[1].detail["local_time"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-03-08T09:30 EDT")),
        "{:?}",
        decision.checks
    );
}
