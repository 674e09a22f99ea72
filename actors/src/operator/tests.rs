use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;

fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid UTC time")
        .timestamp_millis()
}

fn hours(tz: &str, windows: &[(&[&str], &str, &str)]) -> BusinessHours {
    BusinessHours::parse(&BusinessHoursSpec {
        timezone: tz.to_owned(),
        windows: windows
            .iter()
            .map(|(days, open, close)| HoursWindowSpec {
                days: days.iter().map(|d| (*d).to_owned()).collect(),
                open: (*open).to_owned(),
                close: (*close).to_owned(),
            })
            .collect(),
    })
    .expect("valid business hours")
}

fn queue(business_hours: Option<BusinessHours>) -> OperatorQueue {
    OperatorQueue {
        id: QueueId::generate(),
        tenant_id: TenantId::generate(),
        name: "billing".into(),
        numbers: vec!["+14155550100".into()],
        caller_id: None,
        ring_timeout_seconds: DEFAULT_RING_TIMEOUT_SECONDS,
        business_hours,
        when_closed: QueueFallback::CallbackTask,
        when_unanswered: QueueFallback::CallbackTask,
        voicemail_message: None,
        announcement: None,
        transfer_mode: TransferMode::Cold,
        hold_music_url: None,
        created_at: 0,
        updated_at: 0,
    }
}

const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri"];

#[test]
fn without_business_hours_a_queue_is_always_open() {
    let q = queue(None);
    for at in [i64::MIN, -1, 0, ms(2026, 3, 8, 7, 0), i64::MAX] {
        assert!(q.is_open(at));
    }
}

#[test]
fn weekday_office_hours_in_new_york() {
    let q = queue(Some(hours(
        "America/New_York",
        &[(WEEKDAYS, "09:00", "17:00")],
    )));
    // Wednesday 2026-01-14, EST (UTC-5): 09:00 local is 14:00Z, 17:00 local is 22:00Z.
    assert!(!q.is_open(ms(2026, 1, 14, 13, 59)));
    assert!(q.is_open(ms(2026, 1, 14, 14, 0)));
    assert!(q.is_open(ms(2026, 1, 14, 21, 59)));
    assert!(!q.is_open(ms(2026, 1, 14, 22, 0)));
    // Saturday 2026-01-17 at local noon: closed.
    assert!(!q.is_open(ms(2026, 1, 17, 17, 0)));
    // Wednesday 2026-07-15, EDT (UTC-4): 09:00 local is 13:00Z.
    assert!(!q.is_open(ms(2026, 7, 15, 12, 59)));
    assert!(q.is_open(ms(2026, 7, 15, 13, 0)));
    assert!(!q.is_open(ms(2026, 7, 15, 21, 0)));
}

#[test]
fn opening_follows_the_wall_clock_on_the_spring_forward_day() {
    // 2026-03-08 is the Sunday clocks go from 02:00 EST to 03:00 EDT in New York.
    let q = queue(Some(hours(
        "America/New_York",
        &[(&["sun"], "09:00", "17:00")],
    )));
    // The Sunday before (EST): 09:00 local is 14:00Z.
    assert!(!q.is_open(ms(2026, 3, 1, 13, 30)));
    assert!(q.is_open(ms(2026, 3, 1, 14, 0)));
    // On the change day (EDT from 02:00): 09:00 local is 13:00Z, an hour earlier in UTC.
    assert!(!q.is_open(ms(2026, 3, 8, 12, 59)));
    assert!(q.is_open(ms(2026, 3, 8, 13, 0)));
    assert!(q.is_open(ms(2026, 3, 8, 20, 59)));
    assert!(!q.is_open(ms(2026, 3, 8, 21, 0)));
}

#[test]
fn a_window_in_the_skipped_hour_never_opens() {
    // 02:00–03:00 local does not exist on 2026-03-08 in New York.
    let q = queue(Some(hours(
        "America/New_York",
        &[(&["sun"], "02:00", "03:00")],
    )));
    for minute in (0..180).step_by(5) {
        let at = ms(2026, 3, 8, 5, 0) + minute * 60_000; // 00:00 EST .. 04:55 EDT
        assert!(!q.is_open(at), "open at +{minute} min");
    }
    // A week later the hour exists again (EDT): 02:00 local is 06:00Z.
    assert!(q.is_open(ms(2026, 3, 15, 6, 30)));
}

#[test]
fn the_repeated_hour_on_the_fall_back_day_is_open_both_times() {
    // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST, so 01:00–02:00 happens twice.
    let q = queue(Some(hours(
        "America/New_York",
        &[(&["sun"], "01:00", "02:00")],
    )));
    assert!(!q.is_open(ms(2026, 11, 1, 4, 59))); // 00:59 EDT
    assert!(q.is_open(ms(2026, 11, 1, 5, 0))); // 01:00 EDT
    assert!(q.is_open(ms(2026, 11, 1, 5, 59))); // 01:59 EDT
    assert!(q.is_open(ms(2026, 11, 1, 6, 0))); // 01:00 EST, again
    assert!(q.is_open(ms(2026, 11, 1, 6, 59))); // 01:59 EST
    assert!(!q.is_open(ms(2026, 11, 1, 7, 0))); // 02:00 EST
}

#[test]
fn overnight_windows_close_the_next_morning() {
    // Friday 22:00 to Saturday 06:00, Berlin (CET, UTC+1 in January).
    let q = queue(Some(hours(
        "Europe/Berlin",
        &[(&["fri"], "22:00", "06:00")],
    )));
    // Friday 2026-01-16.
    assert!(!q.is_open(ms(2026, 1, 16, 20, 59))); // 21:59 Fri
    assert!(q.is_open(ms(2026, 1, 16, 21, 0))); // 22:00 Fri
    assert!(q.is_open(ms(2026, 1, 16, 23, 30))); // 00:30 Sat
    assert!(q.is_open(ms(2026, 1, 17, 4, 59))); // 05:59 Sat
    assert!(!q.is_open(ms(2026, 1, 17, 5, 0))); // 06:00 Sat
    // Thursday night is not Friday night, and Saturday night is not either.
    assert!(!q.is_open(ms(2026, 1, 15, 22, 0))); // 23:00 Thu
    assert!(!q.is_open(ms(2026, 1, 16, 1, 0))); // 02:00 Fri
    assert!(!q.is_open(ms(2026, 1, 17, 22, 0))); // 23:00 Sat
}

#[test]
fn an_overnight_window_spanning_the_spring_forward_is_an_hour_shorter() {
    // Saturday 22:00 EST (03:00Z Sunday) to Sunday 06:00 EDT (10:00Z): seven real hours.
    let q = queue(Some(hours(
        "America/New_York",
        &[(&["sat"], "22:00", "06:00")],
    )));
    assert!(!q.is_open(ms(2026, 3, 8, 2, 59)));
    assert!(q.is_open(ms(2026, 3, 8, 3, 0)));
    assert!(q.is_open(ms(2026, 3, 8, 9, 59)));
    assert!(!q.is_open(ms(2026, 3, 8, 10, 0)));
    assert!(!q.is_open(ms(2026, 3, 8, 10, 30)));
}

#[test]
fn a_sunday_night_window_wraps_into_monday() {
    let q = queue(Some(hours("UTC", &[(&["sun"], "23:00", "01:00")])));
    // 2026-01-18 is a Sunday.
    assert!(q.is_open(ms(2026, 1, 18, 23, 30)));
    assert!(q.is_open(ms(2026, 1, 19, 0, 30)));
    assert!(!q.is_open(ms(2026, 1, 19, 1, 0)));
    assert!(!q.is_open(ms(2026, 1, 19, 23, 30)));
}

#[test]
fn end_of_day_closing_and_several_windows() {
    let q = queue(Some(hours(
        "Asia/Tokyo",
        &[(&["mon"], "00:00", "24:00"), (&["tue"], "09:00", "12:00")],
    )));
    // Monday 2026-01-19 in Tokyo (UTC+9): the whole day, 2026-01-18T15:00Z to 2026-01-19T15:00Z.
    assert!(!q.is_open(ms(2026, 1, 18, 14, 59)));
    assert!(q.is_open(ms(2026, 1, 18, 15, 0)));
    assert!(q.is_open(ms(2026, 1, 19, 14, 59)));
    assert!(!q.is_open(ms(2026, 1, 19, 15, 0)));
    assert!(q.is_open(ms(2026, 1, 20, 0, 0))); // Tuesday 09:00
    assert!(!q.is_open(ms(2026, 1, 20, 3, 0))); // Tuesday 12:00
}

#[test]
fn business_hours_round_trip_through_their_spec() {
    let h = hours(
        "America/New_York",
        &[
            (&["fri", "mon"], "09:05", "17:30"),
            (&["sat"], "22:00", "24:00"),
        ],
    );
    let spec = h.to_spec();
    assert_eq!(spec.timezone, "America/New_York");
    assert_eq!(spec.windows[0].days, vec!["mon", "fri"]);
    assert_eq!(spec.windows[0].open, "09:05");
    assert_eq!(spec.windows[1].close, "24:00");
    assert_eq!(BusinessHours::parse(&spec), Ok(h));
}

#[test]
fn invalid_business_hours_name_the_field() {
    let spec = |tz: &str, days: &[&str], open: &str, close: &str| BusinessHoursSpec {
        timezone: tz.to_owned(),
        windows: vec![HoursWindowSpec {
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            open: open.to_owned(),
            close: close.to_owned(),
        }],
    };
    let field = |s: BusinessHoursSpec| BusinessHours::parse(&s).expect_err("invalid").field;
    assert_eq!(
        field(spec("Mars/Olympus", &["mon"], "09:00", "17:00")),
        "timezone"
    );
    assert_eq!(field(spec("UTC", &[], "09:00", "17:00")), "windows[0].days");
    assert_eq!(
        field(spec("UTC", &["mon", "funday"], "09:00", "17:00")),
        "windows[0].days[1]"
    );
    assert_eq!(
        field(spec("UTC", &["mon", "mon"], "09:00", "17:00")),
        "windows[0].days[1]"
    );
    for bad in ["9:00", "09:60", "24:00", "0900", "ab:cd", "", "+9:00"] {
        assert_eq!(
            field(spec("UTC", &["mon"], bad, "17:00")),
            "windows[0].open",
            "{bad}"
        );
    }
    for bad in ["25:00", "24:01", "17"] {
        assert_eq!(
            field(spec("UTC", &["mon"], "09:00", bad)),
            "windows[0].close",
            "{bad}"
        );
    }
    assert_eq!(
        field(spec("UTC", &["mon"], "09:00", "09:00")),
        "windows[0].close"
    );
    let empty = BusinessHoursSpec {
        timezone: "UTC".into(),
        windows: vec![],
    };
    assert_eq!(field(empty), "windows");
}

#[test]
fn queue_spec_rules() {
    let ok = QueueSpec {
        name: "billing-2".into(),
        numbers: vec!["+14155550100".into(), "+14155550101".into()],
        caller_id: Some("+14155550199".into()),
        ring_timeout_seconds: 25,
        business_hours: None,
        when_closed: QueueFallback::Voicemail,
        when_unanswered: QueueFallback::Agent,
        voicemail_message: Some("Leave a message.".into()),
        announcement: Some("Connecting you.".into()),
        transfer_mode: TransferMode::Warm,
        hold_music_url: Some("https://music.example/hold.mp3".into()),
    };
    assert_eq!(ok.validate(), Ok(()));
    let field = |change: &dyn Fn(&mut QueueSpec)| {
        let mut s = ok.clone();
        change(&mut s);
        s.validate().expect_err("invalid").field
    };
    assert_eq!(field(&|s| s.name = "Billing".into()), "name");
    assert_eq!(field(&|s| s.name = "a".repeat(65)), "name");
    assert_eq!(field(&|s| s.name = String::new()), "name");
    assert_eq!(field(&|s| s.numbers.clear()), "numbers");
    assert_eq!(
        field(&|s| s.hold_music_url = Some("ftp://x.example/a".into())),
        "hold_music_url"
    );
    assert_eq!(
        field(&|s| s.numbers = vec!["+14155550100".into(); 11]),
        "numbers"
    );
    assert_eq!(field(&|s| s.numbers[1] = "555".into()), "numbers[1]");
    assert_eq!(
        field(&|s| s.numbers[1] = "+14155550100".into()),
        "numbers[1]"
    );
    assert_eq!(field(&|s| s.caller_id = Some("x".into())), "caller_id");
    assert_eq!(
        field(&|s| s.ring_timeout_seconds = 4),
        "ring_timeout_seconds"
    );
    assert_eq!(
        field(&|s| s.ring_timeout_seconds = 121),
        "ring_timeout_seconds"
    );
    assert_eq!(field(&|s| s.voicemail_message = None), "voicemail_message");
    assert_eq!(
        field(&|s| s.voicemail_message = Some(" ".into())),
        "voicemail_message"
    );
    assert_eq!(
        field(&|s| s.announcement = Some("a".repeat(501))),
        "announcement"
    );
    let mut no_voicemail = ok.clone();
    no_voicemail.when_closed = QueueFallback::CallbackTask;
    no_voicemail.voicemail_message = None;
    assert_eq!(no_voicemail.validate(), Ok(()));
}

#[test]
fn new_callback_task_rules() {
    let ok = NewCallbackTask {
        tenant_id: TenantId::generate(),
        phone: "+14155550100".into(),
        reason: "wants a refund".into(),
        source_call_id: None,
        queue_id: None,
        priority: CallbackPriority::Normal,
        due_at: None,
        created_by: CallbackSource::Tool,
    };
    assert_eq!(ok.validate(), Ok(()));
    let mut bad = ok.clone();
    bad.phone = "4155550100".into();
    assert_eq!(bad.validate().expect_err("invalid").field, "phone");
    let mut bad = ok.clone();
    bad.reason = "x".repeat(501);
    assert_eq!(bad.validate().expect_err("invalid").field, "reason");
    let mut bad = ok;
    bad.reason = "  ".into();
    assert_eq!(bad.validate().expect_err("invalid").field, "reason");
}

#[test]
fn wire_forms_round_trip() {
    for v in QueueFallback::ALL {
        assert_eq!(QueueFallback::parse(v.as_str()), Some(v));
    }
    for v in CallbackStatus::ALL {
        assert_eq!(CallbackStatus::parse(v.as_str()), Some(v));
    }
    for v in CallbackPriority::ALL {
        assert_eq!(CallbackPriority::parse(v.as_str()), Some(v));
    }
    for v in CallbackSource::ALL {
        assert_eq!(CallbackSource::parse(v.as_str()), Some(v));
    }
    assert_eq!(CallbackStatus::parse("done"), None);
}

fn arb_hhmm(allow_end: bool) -> impl Strategy<Value = String> {
    let max: u32 = if allow_end { 24 * 60 } else { 24 * 60 - 1 };
    (0..=max).prop_map(format_hhmm)
}

fn arb_hours() -> impl Strategy<Value = BusinessHours> {
    let zones = prop::sample::select(vec![
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kathmandu",
        "America/St_Johns",
        "Pacific/Kiritimati",
    ]);
    let window = (
        prop::sample::subsequence(vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 1..=7),
        arb_hhmm(false),
        arb_hhmm(true),
    );
    (zones, prop::collection::vec(window, 1..5)).prop_filter_map(
        "open equals close",
        |(tz, windows)| {
            BusinessHours::parse(&BusinessHoursSpec {
                timezone: tz.to_owned(),
                windows: windows
                    .into_iter()
                    .map(|(days, open, close)| HoursWindowSpec {
                        days: days.into_iter().map(str::to_owned).collect(),
                        open,
                        close,
                    })
                    .collect(),
            })
            .ok()
        },
    )
}

proptest! {
    #[test]
    fn is_open_never_panics(hours in arb_hours(), at in any::<i64>()) {
        let q = queue(Some(hours));
        let _ = q.is_open(at);
    }

    #[test]
    fn is_open_never_panics_near_the_edges_of_time(
        hours in arb_hours(),
        delta in 0i64..=(86_400_000 * 3),
    ) {
        let q = queue(Some(hours));
        for edge in [i64::MIN, i64::MAX, -8_334_632_851_200_000, 8_210_298_412_799_999] {
            let _ = q.is_open(edge.saturating_add(delta));
            let _ = q.is_open(edge.saturating_sub(delta));
        }
    }

    #[test]
    fn a_week_of_whole_days_is_always_open(
        tz in prop::sample::select(vec!["UTC", "America/New_York", "Australia/Lord_Howe"]),
        at in -5_000_000_000_000i64..5_000_000_000_000i64,
    ) {
        let q = queue(Some(hours(tz, &[(&["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "00:00", "24:00")])));
        prop_assert!(q.is_open(at));
    }

    #[test]
    fn specs_round_trip(hours in arb_hours()) {
        prop_assert_eq!(BusinessHours::parse(&hours.to_spec()), Ok(hours));
    }
}
