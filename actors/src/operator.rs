//! Operator queues and callback tasks: the domain types, their validation, and the
//! business-hours rule ([`OperatorQueue::is_open`]).
//!
//! An operator queue is a tenant's named group of human numbers that a call is handed to
//! (rung simultaneously), with optional business hours and what happens when the queue is
//! closed or nobody answers. A callback task is a caller a human should call back; it moves
//! `open → claimed → completed`, or `open | claimed → cancelled`, and nothing else.
//!
//! Storage lives in `store/queues.rs` and `store/callbacks.rs`. The operations the API
//! performs are plain functions: [`queues`] (each change audited in one transaction) and
//! [`crate::callbacks`] (tasks); the rest of this module does no I/O.

use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::{CallId, CallbackTaskId, QueueId, TenantId};

mod error;
pub mod queues;

pub use error::OperatorError;

/// Most numbers a queue rings at once.
pub const MAX_QUEUE_NUMBERS: usize = 10;
/// Shortest ring timeout (seconds).
pub const MIN_RING_TIMEOUT_SECONDS: i64 = 5;
/// Longest ring timeout (seconds).
pub const MAX_RING_TIMEOUT_SECONDS: i64 = 120;
/// Ring timeout when none is given (seconds).
pub const DEFAULT_RING_TIMEOUT_SECONDS: i64 = 25;
/// Most opening windows in one week of business hours.
pub const MAX_HOURS_WINDOWS: usize = 50;
/// Longest callback reason (characters).
pub const MAX_REASON_CHARS: usize = 500;

const MINUTES_PER_DAY: u32 = 24 * 60;

/// An input value that breaks a rule: the field (relative to the value checked) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field at fault, e.g. `windows[0].open`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Whether `s` is an E.164 number (`+` then 2–15 digits, no leading zero).
pub fn is_e164(s: &str) -> bool {
    crate::domain::E164::is_valid(s)
}

/// Whether `s` can be a conference's hold audio: an absolute `http(s)` URL with a host, no
/// whitespace or control characters, at most 2048 characters.
pub fn is_hold_music_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    s.len() <= 2048
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Whether `s` is a valid queue name: 1–64 of `a-z`, `0-9`, `_` and `-`.
pub fn is_queue_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

// === QueueFallback ===

/// What a queue does with a call when it is closed, or when nobody answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFallback {
    /// Record a callback task for the caller.
    CallbackTask,
    /// Say the queue's voicemail message, then record (or hang up).
    Voicemail,
    /// Hand the caller back to the agent.
    Agent,
}

impl QueueFallback {
    /// Every value.
    pub const ALL: [QueueFallback; 3] = [
        QueueFallback::CallbackTask,
        QueueFallback::Voicemail,
        QueueFallback::Agent,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueFallback::CallbackTask => "callback_task",
            QueueFallback::Voicemail => "voicemail",
            QueueFallback::Agent => "agent",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

// === TransferMode ===

/// How a queue takes a handed-over caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferMode {
    /// `<Dial>` the queue's numbers: whoever answers is bridged at once.
    #[default]
    Cold,
    /// The caller waits in a conference with hold audio while the queue's first number is
    /// called, hears a whispered summary and accepts (1) or declines (2).
    Warm,
}

impl TransferMode {
    /// Every value.
    pub const ALL: [TransferMode; 2] = [TransferMode::Cold, TransferMode::Warm];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::Cold => "cold",
            TransferMode::Warm => "warm",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

// === Business hours ===

/// One opening window: the days it opens on and its local opening and closing times.
/// A window whose close is before its open crosses midnight: it opens on one of `days` and
/// closes the next morning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoursWindow {
    /// The days the window opens on, Monday first, no duplicates.
    pub days: Vec<Weekday>,
    /// Opening time, minutes after local midnight (0–1439).
    pub open: u32,
    /// Closing time, minutes after local midnight (0–1440; 1440 is `24:00`).
    pub close: u32,
}

/// Opening hours in one time zone. Times are wall-clock times of that zone, so a window
/// opens at the same local time before and after a daylight-saving change.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    /// IANA time zone.
    pub timezone: Tz,
    /// Opening windows (open when any covers the moment).
    pub windows: Vec<HoursWindow>,
}

/// The wire and storage form of [`BusinessHours`]:
/// `{"timezone": "America/New_York", "windows": [{"days": ["mon"], "open": "09:00", "close": "17:00"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursSpec {
    /// IANA time zone name.
    pub timezone: String,
    /// Opening windows.
    pub windows: Vec<HoursWindowSpec>,
}

/// The wire and storage form of [`HoursWindow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursWindowSpec {
    /// `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    pub days: Vec<String>,
    /// `HH:MM`, 24-hour local time.
    pub open: String,
    /// `HH:MM` (`24:00` allowed); before `open` means the window ends the next day.
    pub close: String,
}

const DAY_NAMES: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn day_name(day: Weekday) -> &'static str {
    DAY_NAMES
        .iter()
        .find(|(_, d)| *d == day)
        .map_or("mon", |(name, _)| name)
}

/// Parses `HH:MM` into minutes after midnight; `24:00` only when `allow_end_of_day`.
fn parse_hhmm(s: &str, allow_end_of_day: bool) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 60 + m),
        (24, 0) if allow_end_of_day => Some(MINUTES_PER_DAY),
        _ => None,
    }
}

fn format_hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl BusinessHours {
    /// Validates the wire form. Errors name the field relative to the spec
    /// (`timezone`, `windows[1].days[0]`, `windows[0].close`).
    pub fn parse(spec: &BusinessHoursSpec) -> Result<Self, FieldError> {
        let timezone: Tz = spec.timezone.parse().map_err(|_| {
            FieldError::new(
                "timezone",
                "must be an IANA time zone such as America/New_York",
            )
        })?;
        if spec.windows.is_empty() || spec.windows.len() > MAX_HOURS_WINDOWS {
            return Err(FieldError::new(
                "windows",
                format!(
                    "must hold 1 to {MAX_HOURS_WINDOWS} windows (omit business_hours to be always open)"
                ),
            ));
        }
        let mut windows = Vec::with_capacity(spec.windows.len());
        for (i, w) in spec.windows.iter().enumerate() {
            if w.days.is_empty() {
                return Err(FieldError::new(
                    format!("windows[{i}].days"),
                    "must name at least one day",
                ));
            }
            let mut days = Vec::with_capacity(w.days.len());
            for (j, d) in w.days.iter().enumerate() {
                let day = DAY_NAMES
                    .iter()
                    .find(|(name, _)| *name == d.as_str())
                    .map(|(_, day)| *day)
                    .ok_or_else(|| {
                        FieldError::new(
                            format!("windows[{i}].days[{j}]"),
                            "must be one of mon, tue, wed, thu, fri, sat, sun",
                        )
                    })?;
                if days.contains(&day) {
                    return Err(FieldError::new(
                        format!("windows[{i}].days[{j}]"),
                        "is listed twice",
                    ));
                }
                days.push(day);
            }
            days.sort_by_key(|d| d.num_days_from_monday());
            let open = parse_hhmm(&w.open, false).ok_or_else(|| {
                FieldError::new(
                    format!("windows[{i}].open"),
                    "must be a time HH:MM between 00:00 and 23:59",
                )
            })?;
            let close = parse_hhmm(&w.close, true).ok_or_else(|| {
                FieldError::new(
                    format!("windows[{i}].close"),
                    "must be a time HH:MM between 00:00 and 24:00",
                )
            })?;
            if open == close {
                return Err(FieldError::new(
                    format!("windows[{i}].close"),
                    "must differ from open (use 00:00 to 24:00 for a whole day)",
                ));
            }
            windows.push(HoursWindow { days, open, close });
        }
        Ok(Self { timezone, windows })
    }

    /// The wire and storage form.
    pub fn to_spec(&self) -> BusinessHoursSpec {
        BusinessHoursSpec {
            timezone: self.timezone.name().to_owned(),
            windows: self
                .windows
                .iter()
                .map(|w| HoursWindowSpec {
                    days: w.days.iter().map(|d| day_name(*d).to_owned()).collect(),
                    open: format_hhmm(w.open),
                    close: format_hhmm(w.close),
                })
                .collect(),
        }
    }

    /// Whether the moment `at_ms` (Unix milliseconds) falls in a window. A moment outside
    /// the calendar's range is closed.
    pub fn is_open(&self, at_ms: i64) -> bool {
        let Some(local) = self.local_time(at_ms) else {
            return false;
        };
        let day = local.weekday();
        let minute = local.hour() * 60 + local.minute();
        self.windows.iter().any(|w| w.covers(day, minute))
    }

    /// The wall-clock time of the zone at `at_ms`, without any arithmetic that can panic.
    fn local_time(&self, at_ms: i64) -> Option<NaiveDateTime> {
        let utc = DateTime::from_timestamp_millis(at_ms)?.naive_utc();
        let offset = self.timezone.offset_from_utc_datetime(&utc).fix();
        utc.checked_add_signed(TimeDelta::try_seconds(i64::from(offset.local_minus_utc()))?)
    }
}

impl HoursWindow {
    fn opens_on(&self, day: Weekday) -> bool {
        self.days.contains(&day)
    }

    /// Whether local `minute` of `day` is inside this window.
    fn covers(&self, day: Weekday, minute: u32) -> bool {
        if self.open < self.close {
            self.opens_on(day) && self.open <= minute && minute < self.close
        } else {
            // Crosses midnight: the evening part on an opening day, the morning part on
            // the day after one.
            (self.opens_on(day) && minute >= self.open)
                || (self.opens_on(day.pred()) && minute < self.close)
        }
    }
}

// === OperatorQueue ===

/// A tenant's operator queue.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorQueue {
    /// Identifier (`oq_…`).
    pub id: QueueId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Name, unique per tenant (`[a-z0-9_-]{1,64}`); agent versions refer to it.
    pub name: String,
    /// E.164 numbers rung simultaneously (1–10).
    pub numbers: Vec<String>,
    /// Caller id shown to the operators (E.164); the call's own number when absent.
    pub caller_id: Option<String>,
    /// How long the numbers ring (5–120 s).
    pub ring_timeout_seconds: i64,
    /// Opening hours; `None` is always open.
    pub business_hours: Option<BusinessHours>,
    /// What happens to a call while the queue is closed.
    pub when_closed: QueueFallback,
    /// What happens when nobody answers.
    pub when_unanswered: QueueFallback,
    /// Said before recording or hanging up, when either fallback is `voicemail`.
    pub voicemail_message: Option<String>,
    /// Said to the caller before dialing.
    pub announcement: Option<String>,
    /// Cold (`<Dial>`) or warm (conference, whisper, accept or decline).
    pub transfer_mode: TransferMode,
    /// What a warm transfer's caller hears while waiting (an audio file or TwiML URL, the
    /// conference's `waitUrl`); the carrier's default hold music when absent.
    pub hold_music_url: Option<String>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

impl OperatorQueue {
    /// Whether the queue takes calls at `at_ms` (Unix ms). Without business hours it is
    /// always open. Pure: DST-correct through the zone's rules, never panics.
    pub fn is_open(&self, at_ms: i64) -> bool {
        self.business_hours
            .as_ref()
            .is_none_or(|hours| hours.is_open(at_ms))
    }
}

/// The content of a queue: what a create or a full replace sets.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// Name (unique per tenant).
    pub name: String,
    /// Numbers rung simultaneously.
    pub numbers: Vec<String>,
    /// Caller id.
    pub caller_id: Option<String>,
    /// Ring timeout (seconds).
    pub ring_timeout_seconds: i64,
    /// Opening hours (`None`: always open).
    pub business_hours: Option<BusinessHours>,
    /// When closed.
    pub when_closed: QueueFallback,
    /// When unanswered.
    pub when_unanswered: QueueFallback,
    /// Voicemail message.
    pub voicemail_message: Option<String>,
    /// Announcement.
    pub announcement: Option<String>,
    /// Cold or warm.
    pub transfer_mode: TransferMode,
    /// Hold audio of a warm transfer (`http(s)` URL).
    pub hold_music_url: Option<String>,
}

fn check_text(field: &str, v: &str, max: usize) -> Result<(), FieldError> {
    if v.trim().is_empty() || v.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

impl QueueSpec {
    /// Checks every rule of a queue; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !is_queue_name(&self.name) {
            return Err(FieldError::new(
                "name",
                "must be 1 to 64 of lowercase letters, digits, _ and -",
            ));
        }
        if self.numbers.is_empty() || self.numbers.len() > MAX_QUEUE_NUMBERS {
            return Err(FieldError::new(
                "numbers",
                format!("must hold 1 to {MAX_QUEUE_NUMBERS} numbers"),
            ));
        }
        for (i, n) in self.numbers.iter().enumerate() {
            if !is_e164(n) {
                return Err(FieldError::new(
                    format!("numbers[{i}]"),
                    "must be an E.164 phone number such as +14155550100",
                ));
            }
            if self.numbers[..i].contains(n) {
                return Err(FieldError::new(format!("numbers[{i}]"), "is listed twice"));
            }
        }
        if let Some(c) = &self.caller_id
            && !is_e164(c)
        {
            return Err(FieldError::new(
                "caller_id",
                "must be an E.164 phone number such as +14155550100",
            ));
        }
        if !(MIN_RING_TIMEOUT_SECONDS..=MAX_RING_TIMEOUT_SECONDS)
            .contains(&self.ring_timeout_seconds)
        {
            return Err(FieldError::new(
                "ring_timeout_seconds",
                format!(
                    "must be between {MIN_RING_TIMEOUT_SECONDS} and {MAX_RING_TIMEOUT_SECONDS}"
                ),
            ));
        }
        let wants_voicemail = self.when_closed == QueueFallback::Voicemail
            || self.when_unanswered == QueueFallback::Voicemail;
        match &self.voicemail_message {
            Some(m) => check_text("voicemail_message", m, 500)?,
            None if wants_voicemail => {
                return Err(FieldError::new(
                    "voicemail_message",
                    "is required when when_closed or when_unanswered is voicemail",
                ));
            }
            None => {}
        }
        if let Some(a) = &self.announcement {
            check_text("announcement", a, 500)?;
        }
        if let Some(u) = &self.hold_music_url
            && !is_hold_music_url(u)
        {
            return Err(FieldError::new(
                "hold_music_url",
                "must be an http or https URL of at most 2048 characters",
            ));
        }
        Ok(())
    }
}

// === Callback tasks ===

/// Where a callback task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackStatus {
    /// Waiting for an operator.
    Open,
    /// An operator took it.
    Claimed,
    /// Done (final).
    Completed,
    /// Withdrawn (final).
    Cancelled,
}

impl CallbackStatus {
    /// Every value.
    pub const ALL: [CallbackStatus; 4] = [
        CallbackStatus::Open,
        CallbackStatus::Claimed,
        CallbackStatus::Completed,
        CallbackStatus::Cancelled,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Open => "open",
            CallbackStatus::Claimed => "claimed",
            CallbackStatus::Completed => "completed",
            CallbackStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// How urgent a callback is; lists put the most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallbackPriority {
    /// Whenever convenient.
    Low,
    /// The default.
    Normal,
    /// Soon.
    High,
    /// Before anything else.
    Urgent,
}

impl CallbackPriority {
    /// Every value, least urgent first.
    pub const ALL: [CallbackPriority; 4] = [
        CallbackPriority::Low,
        CallbackPriority::Normal,
        CallbackPriority::High,
        CallbackPriority::Urgent,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackPriority::Low => "low",
            CallbackPriority::Normal => "normal",
            CallbackPriority::High => "high",
            CallbackPriority::Urgent => "urgent",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Who created a callback task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackSource {
    /// The tenant API.
    Api,
    /// The agent's `create_callback_task` tool.
    Tool,
    /// A handoff nobody answered (or a closed queue).
    Handoff,
}

impl CallbackSource {
    /// Every value.
    pub const ALL: [CallbackSource; 3] = [
        CallbackSource::Api,
        CallbackSource::Tool,
        CallbackSource::Handoff,
    ];

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackSource::Api => "api",
            CallbackSource::Tool => "tool",
            CallbackSource::Handoff => "handoff",
        }
    }

    /// Parses the stored and wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A callback task.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackTask {
    /// Identifier (`cbt_…`).
    pub id: CallbackTaskId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Number to call back (E.164).
    pub phone: String,
    /// Why (1–500 characters).
    pub reason: String,
    /// The call it came from (same tenant).
    pub source_call_id: Option<CallId>,
    /// The queue it belongs to (same tenant); cleared when the queue is deleted.
    pub queue_id: Option<QueueId>,
    /// Urgency.
    pub priority: CallbackPriority,
    /// When it should be done by (Unix ms).
    pub due_at: Option<i64>,
    /// Who claimed it.
    pub assignee: Option<String>,
    /// Where it is in its life.
    pub status: CallbackStatus,
    /// Who created it.
    pub created_by: CallbackSource,
    /// Result, given on completion.
    pub outcome: Option<String>,
    /// Operator notes, given on completion.
    pub notes: Option<String>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Claimed (Unix ms).
    pub claimed_at: Option<i64>,
    /// Completed (Unix ms).
    pub completed_at: Option<i64>,
    /// Cancelled (Unix ms).
    pub cancelled_at: Option<i64>,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// A callback task to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCallbackTask {
    /// Owner.
    pub tenant_id: TenantId,
    /// Number to call back (E.164).
    pub phone: String,
    /// Why (1–500 characters).
    pub reason: String,
    /// The call it came from; must be a call of the same tenant.
    pub source_call_id: Option<CallId>,
    /// The queue it belongs to; must be a queue of the same tenant.
    pub queue_id: Option<QueueId>,
    /// Urgency.
    pub priority: CallbackPriority,
    /// When it should be done by (Unix ms).
    pub due_at: Option<i64>,
    /// Who creates it.
    pub created_by: CallbackSource,
}

impl NewCallbackTask {
    /// Checks the values (not the references, which the store checks against the tenant).
    pub fn validate(&self) -> Result<(), FieldError> {
        if !is_e164(&self.phone) {
            return Err(FieldError::new(
                "phone",
                "must be an E.164 phone number such as +14155550100",
            ));
        }
        check_text("reason", &self.reason, MAX_REASON_CHARS)
    }
}

/// Filter of the callback-task listing (always one tenant). Results come most urgent first,
/// then by due time (tasks without one last), then oldest first.
#[derive(Debug, Clone)]
pub struct CallbackFilter {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Only this status.
    pub status: Option<CallbackStatus>,
    /// Only this queue.
    pub queue_id: Option<QueueId>,
    /// Only this assignee.
    pub assignee: Option<String>,
    /// Only tasks from this call.
    pub source_call_id: Option<CallId>,
    /// Only this priority.
    pub priority: Option<CallbackPriority>,
    /// Only tasks due before this moment (Unix ms); tasks without a due time are left out.
    pub due_before: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}

/// The result of a conditional status change of a callback task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskTransition {
    /// Changed: the task as it is now.
    Done(CallbackTask),
    /// No such task for this tenant.
    NotFound,
    /// The task's status does not allow the change: the task as it is (unchanged).
    Refused(CallbackTask),
}

#[cfg(test)]
mod tests;
