//! The pre-dial policy against a real database (SQLite and PostgreSQL): each rule's
//! refusal with its detail, the route's policy over the tenant's, calling windows across a
//! daylight-saving change, the zone of the request, and an attempt limit that concurrent
//! placements never exceed.

use chrono::{TimeZone as _, Utc};
use chrono_tz::Tz;

use super::*;
use crate::domain::E164;
use crate::evaluation::fixtures::{Backend, TestDb, backend_tests};
use crate::governance::dnc;
use crate::operator::{BusinessHoursSpec, HoursWindowSpec};
use crate::store::fixtures::tenant;

backend_tests!(
    a_listed_number_is_refused_with_the_entry_as_evidence,
    calling_hours_are_wall_clock_times_across_a_dst_change,
    the_zone_of_the_request_wins_and_a_route_overrides_the_tenant,
    concurrent_attempts_never_exceed_the_daily_limit,
);

const CALLEE: &str = "+12125550123";
const ALL_DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn meta() -> AuditMeta {
    AuditMeta {
        actor: "test".into(),
        request_id: None,
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("a valid time")
        .timestamp_millis()
}

fn hours(zone: &str, open: &str, close: &str) -> DialPolicy {
    DialPolicy::parse(&DialPolicySpec {
        calling_hours: Some(BusinessHoursSpec {
            timezone: zone.into(),
            windows: vec![HoursWindowSpec {
                days: ALL_DAYS.iter().map(|d| (*d).to_owned()).collect(),
                open: open.into(),
                close: close.into(),
            }],
        }),
        daily_attempt_limit: None,
    })
    .expect("a valid policy")
}

fn dial(tenant: &TenantId, route: &RouteId, at_ms: i64, zone: Option<Tz>) -> Dial {
    Dial {
        call_id: CallId::generate(),
        tenant_id: tenant.clone(),
        route_id: route.clone(),
        to: CALLEE.into(),
        time_zone: zone,
        at_ms,
    }
}

async fn a_listed_number_is_refused_with_the_entry_as_evidence(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(2).await;
    let t = tenant(&store).await;
    let other = tenant(&store).await;
    let route = RouteId::generate();
    let number = E164::parse(CALLEE).expect("e164");
    let call = CallId::generate();
    assert!(
        dnc::opt_out(&store, &t, &number, &call, Some("stop calling".into()))
            .await
            .expect("opt out")
    );

    let d = decide(&store, &dial(&t, &route, 0, None))
        .await
        .expect("decide");
    assert!(!d.allowed);
    assert_eq!(d.rule, Some(Rule::DoNotCall));
    assert_eq!(d.checks.len(), 1, "later rules are not checked");
    assert_eq!(d.checks[0].detail["source"], "opt_out");
    assert_eq!(d.checks[0].detail["call_id"], call.as_str());
    assert!(d.reason().contains("do-not-call"), "{}", d.reason());

    // Another tenant's list says nothing about this tenant's calls.
    let d = decide(&store, &dial(&other, &route, 0, None))
        .await
        .expect("decide");
    assert!(d.allowed, "{d:?}");
    let rules: Vec<_> = d.checks.iter().map(|c| (c.rule, c.passed)).collect();
    assert_eq!(
        rules,
        [
            (Rule::DoNotCall, true),
            (Rule::CallingWindow, true),
            (Rule::AttemptLimit, true)
        ]
    );

    // Recorded, and read back by tenant only.
    record(&store, &d).await.expect("record");
    let back = decision_of(&store, &other, &d.call_id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(back.checks, d.checks);
    assert!(back.allowed);
    assert!(
        decision_of(&store, &t, &d.call_id)
            .await
            .expect("read")
            .is_none()
    );
}

async fn calling_hours_are_wall_clock_times_across_a_dst_change(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(2).await;
    let t = tenant(&store).await;
    let route = RouteId::generate();
    put_policy(
        &store,
        &t,
        &PolicyScope::Tenant,
        hours("America/New_York", "09:00", "20:00"),
        &meta(),
    )
    .await
    .expect("policy");
    // New York moves from EST (UTC-5) to EDT (UTC-4) at 2026-03-08 02:00 local.
    let cases = [
        // Saturday, EST: 13:59 UTC is 08:59 local, 14:00 UTC is 09:00.
        (utc(2026, 3, 7, 13, 59), false, "2026-03-07T08:59 EST"),
        (utc(2026, 3, 7, 14, 0), true, "2026-03-07T09:00 EST"),
        // Sunday, after the change: 13:00 UTC is already 09:00 local.
        (utc(2026, 3, 8, 12, 59), false, "2026-03-08T08:59 EDT"),
        (utc(2026, 3, 8, 13, 0), true, "2026-03-08T09:00 EDT"),
        // The evening end moves with it: 20:00 EDT is 00:00 UTC.
        (utc(2026, 3, 8, 23, 59), true, "2026-03-08T19:59 EDT"),
        (utc(2026, 3, 9, 0, 0), false, "2026-03-08T20:00 EDT"),
    ];
    for (at, open, local) in cases {
        let d = decide(&store, &dial(&t, &route, at, None))
            .await
            .expect("decide");
        assert_eq!(d.allowed, open, "{local}: {d:?}");
        let window = d
            .checks
            .iter()
            .find(|c| c.rule == Rule::CallingWindow)
            .expect("window checked");
        assert!(
            window.detail["local_time"]
                .as_str()
                .is_some_and(|l| l.starts_with(local)),
            "{local}: {}",
            window.detail
        );
        assert_eq!(window.detail["time_zone"], "America/New_York");
        if !open {
            assert_eq!(d.rule, Some(Rule::CallingWindow));
        }
    }
}

async fn the_zone_of_the_request_wins_and_a_route_overrides_the_tenant(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(2).await;
    let t = tenant(&store).await;
    let route = RouteId::generate();
    put_policy(
        &store,
        &t,
        &PolicyScope::Tenant,
        hours("America/New_York", "09:00", "20:00"),
        &meta(),
    )
    .await
    .expect("policy");
    // 15:00 UTC: 10:00 in New York (open), 07:00 in Los Angeles (closed).
    let at = utc(2026, 6, 10, 15, 0);
    let la: Tz = "America/Los_Angeles".parse().expect("zone");
    assert!(
        decide(&store, &dial(&t, &route, at, None))
            .await
            .expect("decide")
            .allowed
    );
    let d = decide(&store, &dial(&t, &route, at, Some(la)))
        .await
        .expect("decide");
    assert_eq!(d.rule, Some(Rule::CallingWindow));
    assert_eq!(d.checks[1].detail["zone_from"], "request");
    assert_eq!(d.checks[1].detail["time_zone"], "America/Los_Angeles");

    // The route's hours replace the tenant's; its limit adds to them.
    let mut route_policy = hours("America/New_York", "06:00", "09:00");
    route_policy.daily_attempt_limit = Some(1);
    put_policy(
        &store,
        &t,
        &PolicyScope::Route(route.clone()),
        route_policy,
        &meta(),
    )
    .await
    .expect("route policy");
    let d = decide(&store, &dial(&t, &route, at, Some(la)))
        .await
        .expect("decide");
    assert!(d.allowed, "07:00 in LA is inside the route's hours: {d:?}");
    assert_eq!(d.checks[2].detail["limit"], 1);
    assert_eq!(d.checks[2].detail["day"], "2026-06-10");
    let d = decide(&store, &dial(&t, &route, at, Some(la)))
        .await
        .expect("decide");
    assert_eq!(d.rule, Some(Rule::AttemptLimit));
    // Another route of the tenant keeps the tenant's policy.
    assert!(
        decide(&store, &dial(&t, &RouteId::generate(), at, None))
            .await
            .expect("decide")
            .allowed
    );
}

async fn concurrent_attempts_never_exceed_the_daily_limit(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = db.store(8).await;
    let t = tenant(&store).await;
    let attempts = (0..12).map(|_| {
        let store = store.clone();
        let t = t.clone();
        tokio::spawn(async move {
            store
                .count_dial_attempt(&t, CALLEE, "2026-06-10", 3)
                .await
                .expect("count")
        })
    });
    let mut counted: Vec<i64> = Vec::new();
    for a in attempts {
        if let Some(n) = a.await.expect("task") {
            counted.push(n);
        }
    }
    counted.sort_unstable();
    assert_eq!(counted, [1, 2, 3]);
    // A given-back attempt can be used again; another day or number has its own count.
    store
        .release_dial_attempt(&t, CALLEE, "2026-06-10")
        .await
        .expect("release");
    assert_eq!(
        store
            .count_dial_attempt(&t, CALLEE, "2026-06-10", 3)
            .await
            .expect("count"),
        Some(3)
    );
    assert_eq!(
        store
            .count_dial_attempt(&t, CALLEE, "2026-06-11", 3)
            .await
            .expect("count"),
        Some(1)
    );
    assert_eq!(
        store
            .count_dial_attempt(&t, "+12125550199", "2026-06-10", 3)
            .await
            .expect("count"),
        Some(1)
    );
}

#[test]
fn policies_are_validated_naming_the_field() {
    let err = DialPolicy::parse(&DialPolicySpec {
        calling_hours: Some(BusinessHoursSpec {
            timezone: "Mars/Olympus".into(),
            windows: vec![],
        }),
        daily_attempt_limit: None,
    })
    .expect_err("bad zone");
    assert!(
        matches!(&err, GovernanceError::Invalid { field, .. } if field == "calling_hours.timezone"),
        "{err:?}"
    );
    let err = DialPolicy::parse(&DialPolicySpec {
        calling_hours: Some(BusinessHoursSpec {
            timezone: "Europe/Paris".into(),
            windows: vec![HoursWindowSpec {
                days: vec!["mon".into()],
                open: "9am".into(),
                close: "17:00".into(),
            }],
        }),
        daily_attempt_limit: None,
    })
    .expect_err("bad time");
    assert!(
        matches!(&err, GovernanceError::Invalid { field, .. } if field == "calling_hours.windows[0].open"),
        "{err:?}"
    );
    for bad in [0, -1, 101] {
        let err = DialPolicy::parse(&DialPolicySpec {
            calling_hours: None,
            daily_attempt_limit: Some(bad),
        })
        .expect_err("bad limit");
        assert!(
            matches!(&err, GovernanceError::Invalid { field, .. } if field == "daily_attempt_limit"),
            "{bad}: {err:?}"
        );
    }
}
