//! Wall-clock helpers: the store keeps every timestamp as Unix milliseconds; [`Clock`] is
//! the settable source of "now" for wall-clock decisions.

use chrono::{DateTime, TimeZone, Utc};

/// Where "now" comes from for decisions that depend on the wall clock (the pre-dial policy's
/// calling windows and daily attempts): the system clock, or a clock a test sets (to cross a
/// daylight-saving change, say) and moves explicitly.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that stands still at the value last set.
    Manual(std::sync::Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// A clock standing at `ms` (Unix milliseconds) until set again.
    pub fn manual(ms: i64) -> Self {
        Clock::Manual(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(ms)))
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(at) => at.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Moves a manual clock to `ms`; the system clock cannot be set (false).
    pub fn set(&self, ms: i64) -> bool {
        match self {
            Clock::System => false,
            Clock::Manual(at) => {
                at.store(ms, std::sync::atomic::Ordering::SeqCst);
                true
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Renders a stored millisecond timestamp as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    // RFC 3339 `date-time` separates date and time with `T` (chrono also takes a space,
    // which the API documents' `format: date-time` does not).
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_where_it_was_set() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        assert!(clock.clone().set(2_000));
        assert_eq!(clock.now_ms(), 2_000);
        assert!(!Clock::System.set(5));
    }

    #[test]
    fn round_trips_milliseconds() {
        let ms = 1_764_000_000_123;
        assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("not a time"), None);
    }
}
