//! Process faults (`--fault kill|term`, run by `scripts/faults`): once every call of the run
//! is live (its stream open and the agent heard), the load generator signals the server
//! (`--server-pid`) itself, so the instant of the fault is its own, and measures what follows.
//!
//! - `kill` (`SIGKILL`): `scripts/faults` restarts the server at once on the same database
//!   and port. The callers see their sockets close; the carrier simulator keeps every call
//!   and answers the restarted server's reconciler. The load generator waits for
//!   `/health/ready`, then polls the call logs (a `read` key) and the `voice.call.completed`
//!   events it receives itself ([`EventSink`]) until every call has a terminal record, one
//!   completion event, and admission's count of live calls is 0 ([`Recovery`]).
//! - `term` (`SIGTERM`, the server started with `SHUTDOWN_GRACE_SECONDS`): the load
//!   generator waits for the process to exit, takes its exit code from the file
//!   `scripts/faults` writes after `wait` (`--exit-code-file`; only the parent can reap it),
//!   and reads the records left open directly from the stopped server's database
//!   (`--database-url`, the same SQL the store runs: no server start reconciles them
//!   first). Callers who heard an application error are the carrier simulator's: an
//!   application error event, or a webhook that failed or answered an error ([`Drain`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::LoadTestError;
use super::chaos::{Fate, classify, heard_application_error};
use super::reader::{CompletionEvents, EventSink, Reader, RecordCounts, count_records, poll_until};
use crate::sim::carrier::{CallSnapshot, CallStatus, CarrierSimHandle, WebhookKind};

/// Between two polls of the server or the process.
pub const POLL: Duration = Duration::from_millis(200);
/// After the last completion event arrived, how long duplicates are waited for.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(5);

/// The signal sent to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProcessFault {
    /// `kill -9`, then the script restarts the server.
    Kill,
    /// `SIGTERM`: the graceful drain.
    Term,
}

impl ProcessFault {
    fn signal(self) -> &'static str {
        match self {
            Self::Kill => "-KILL",
            Self::Term => "-TERM",
        }
    }
}

/// Sends the fault's signal to `pid`.
pub fn signal(pid: u32, fault: ProcessFault) -> Result<(), LoadTestError> {
    let status = std::process::Command::new("kill")
        .args([fault.signal(), &pid.to_string()])
        .status()
        .map_err(|source| LoadTestError::Write {
            path: PathBuf::from("kill"),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(LoadTestError::InvalidOptions(format!(
            "kill {} {pid} failed ({status})",
            fault.signal()
        )))
    }
}

/// True while `pid` runs (a zombie, exited but not yet reaped, counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace()
                .next()
                .map(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// True when the call is live: in progress, a stream open, the agent heard.
pub fn is_live(call: &CallSnapshot) -> bool {
    call.status == CallStatus::InProgress
        && call.media.streams_opened >= 1
        && call.media.first_audio_ms.is_some()
        && !call.finished
}

/// Waits until every call in `sids` is live; false at the deadline.
pub async fn wait_all_live(
    carrier: &CarrierSimHandle,
    expected: usize,
    sids: impl Fn() -> Vec<String>,
    deadline: Instant,
) -> bool {
    poll_until(POLL, deadline, || {
        let sids = sids();
        let live = sids.len() == expected
            && sids
                .iter()
                .all(|sid| carrier.call(sid).is_some_and(|c| is_live(&c)));
        async move { live }
    })
    .await
}

/// Seconds as an `f64`, for the report.
fn s(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The figures of a `kill` run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recovery {
    /// Calls live when the server was killed.
    pub calls_live_at_fault: u64,
    /// From the fault to `/health/ready` answering 200 again, seconds.
    pub ready_after_seconds: Option<f64>,
    /// From the fault to every call log having `completed_at`, seconds.
    pub records_final_after_seconds: Option<f64>,
    /// From the fault to every call having a `voice.call.completed` received, seconds.
    pub completion_events_after_seconds: Option<f64>,
    /// From the fault to admission's count of live calls being 0, seconds.
    pub concurrency_zero_after_seconds: Option<f64>,
    /// The call logs at the end.
    pub records: RecordCounts,
    /// `voice.call.completed` per call at the end.
    pub completion_events: CompletionEvents,
    /// End reasons of the calls, counted.
    pub end_reasons: std::collections::BTreeMap<String, u64>,
    /// Whether everything was final within the deadline.
    pub recovered: bool,
}

/// Polls the restarted server until every call is final (see the module docs).
pub async fn measure_recovery(
    client: &reqwest::Client,
    server: &str,
    reader: &Reader<'_>,
    events: &EventSink,
    calls_live_at_fault: u64,
    fault: Instant,
    timeout: Duration,
) -> Recovery {
    let deadline = fault + timeout;
    let ready = poll_until(POLL, deadline, || async {
        client
            .get(format!("{server}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let ready_after = ready.then(|| fault.elapsed());
    let (mut records_final, mut events_done, mut zero) = (None, None, None);
    let mut logs = Vec::new();
    while Instant::now() < deadline && ready {
        if let Ok(now) = reader.call_logs().await {
            logs = now;
        }
        let counts = count_records(&logs);
        let ids = call_ids(&logs);
        let c = events.completions(&ids);
        if records_final.is_none() && counts.calls > 0 && counts.open == 0 {
            records_final = Some(fault.elapsed());
        }
        if events_done.is_none() && counts.calls > 0 && c.none == 0 {
            events_done = Some(fault.elapsed());
        }
        if zero.is_none() && counts.live == 0 {
            zero = Some(fault.elapsed());
        }
        if records_final.is_some() && events_done.is_some() && zero.is_some() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if events_done.is_some() {
        // Duplicates would arrive about as fast as the first event: give them a moment.
        tokio::time::sleep(DUPLICATE_WINDOW).await;
        if let Ok(now) = reader.call_logs().await {
            logs = now;
        }
    }
    let records = count_records(&logs);
    let completion_events = events.completions(&call_ids(&logs));
    Recovery {
        calls_live_at_fault,
        ready_after_seconds: ready_after.map(s),
        records_final_after_seconds: records_final.map(s),
        completion_events_after_seconds: events_done.map(s),
        concurrency_zero_after_seconds: zero.map(s),
        records,
        completion_events,
        end_reasons: end_reasons(&logs),
        recovered: records.open == 0 && records.live == 0 && completion_events.none == 0,
    }
}

fn call_ids(logs: &[serde_json::Value]) -> Vec<String> {
    logs.iter()
        .filter_map(|l| l["id"].as_str().map(str::to_owned))
        .collect()
}

/// End reasons of the call logs, counted (`none` when there is none).
pub fn end_reasons(logs: &[serde_json::Value]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for l in logs {
        let reason = l["end_reason"].as_str().unwrap_or("none").to_owned();
        *m.entry(reason).or_default() += 1;
    }
    m
}

/// What the callers of a run heard, from the carrier's snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Callers {
    /// Callers who heard an application error: the carrier met an application error, or a
    /// webhook whose answer is TwiML the caller hears (voice URL, redirect, `<Connect
    /// action>`, `<Dial action>`) failed or answered an error.
    pub application_error: u64,
    /// Callers sent to the route's fallback.
    pub fallback: u64,
    /// Callers whose conversation resumed on a further stream.
    pub resumed: u64,
    /// Callers whose call ended normally.
    pub normal: u64,
    /// Failed webhooks by kind, including those no caller hears (status callbacks, stream
    /// status): a record they would have finished is counted by the records left open.
    pub failed_webhooks: std::collections::BTreeMap<String, u64>,
    /// The callers who heard an application error: `CA…` and what the carrier met.
    pub application_error_calls: Vec<(String, String)>,
}

/// Counts what the callers heard.
pub fn callers(calls: &[CallSnapshot]) -> Callers {
    let mut c = Callers::default();
    for call in calls {
        let mut failed_webhook = None;
        for w in call.webhooks() {
            if w.status.is_none_or(|s| s >= 400) {
                let heard = matches!(
                    w.kind,
                    WebhookKind::Voice
                        | WebhookKind::Redirect
                        | WebhookKind::ConnectAction
                        | WebhookKind::DialAction
                );
                if heard && failed_webhook.is_none() {
                    failed_webhook = Some(format!(
                        "{:?} {}",
                        w.kind,
                        w.status
                            .map_or_else(|| w.error.clone().unwrap_or_default(), |s| s.to_string())
                    ));
                }
                *c.failed_webhooks
                    .entry(format!("{:?}", w.kind))
                    .or_default() += 1;
            }
        }
        let error = call.events.iter().find_map(|e| match e {
            crate::sim::carrier::CallEvent::ApplicationError { detail } => Some(detail.clone()),
            _ => None,
        });
        if heard_application_error(call) || failed_webhook.is_some() {
            c.application_error += 1;
            let what = [failed_webhook, error]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            c.application_error_calls
                .push((call.sid.clone(), what.join("; ")));
            continue;
        }
        match classify(call) {
            Fate::Fallback => c.fallback += 1,
            Fate::Resumed => c.resumed += 1,
            Fate::Normal => c.normal += 1,
            Fate::Failed => {
                c.application_error += 1;
                c.application_error_calls
                    .push((call.sid.clone(), String::from("call failed")));
            }
        }
    }
    c
}

/// The figures of a `term` run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drain {
    /// Calls live when the server got `SIGTERM`.
    pub calls_live_at_fault: u64,
    /// From `SIGTERM` to the process gone, seconds.
    pub exited_after_seconds: Option<f64>,
    /// The server's exit code (from `--exit-code-file`).
    pub exit_code: Option<i32>,
    /// What the callers heard.
    pub callers: Callers,
    /// Calls of the run without `completed_at` in the database after exit (`None`: not read).
    pub records_left_open: Option<u64>,
    /// Voice sessions still `active` in the database after exit.
    pub sessions_left_active: Option<u64>,
    /// Why the records were not read, if they were not.
    pub records_error: Option<String>,
}

/// Waits for the process to exit after `SIGTERM`; returns the time it took.
pub async fn wait_exit(pid: u32, fault: Instant, timeout: Duration) -> Option<Duration> {
    poll_until(Duration::from_millis(50), fault + timeout, || async move {
        !alive(pid)
    })
    .await
    .then(|| fault.elapsed())
}

/// Reads the exit code the script writes after `wait` (bounded).
pub async fn read_exit_code(path: &std::path::Path, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let mut code = None;
    poll_until(POLL, deadline, || {
        code = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let found = code.is_some();
        async move { found }
    })
    .await;
    code
}

/// Records of `tenant_id` left open in the stopped server's database: (calls without
/// `completed_at`, sessions still `active`).
pub async fn open_records(database_url: &str, tenant_id: &str) -> Result<(u64, u64), String> {
    const CALLS: &str = "SELECT COUNT(*) FROM calls WHERE tenant_id = $1 AND completed_at IS NULL";
    const SESSIONS: &str =
        "SELECT COUNT(*) FROM voice_sessions WHERE tenant_id = $1 AND status = 'active'";
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url)
            .await
            .map_err(|e| e.to_string())?;
        let calls: i64 = sqlx::query_scalar(CALLS)
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let sessions: i64 = sqlx::query_scalar(SESSIONS)
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        pool.close().await;
        Ok((count(calls), count(sessions)))
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = database_url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .map_err(|e| e.to_string())?
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        let calls: i64 = sqlx::query_scalar(CALLS)
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let sessions: i64 = sqlx::query_scalar(SESSIONS)
            .bind(tenant_id)
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        pool.close().await;
        Ok((count(calls), count(sessions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_does_not_exist_is_not_alive_and_this_one_is() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    fn webhook(kind: WebhookKind, status: Option<u16>) -> crate::sim::carrier::CallEvent {
        crate::sim::carrier::CallEvent::WebhookSent(crate::sim::carrier::WebhookRecord {
            kind,
            method: "POST".into(),
            url: "http://127.0.0.1:1/x".into(),
            params: Vec::new(),
            signature: String::new(),
            status,
            error: status.is_none().then(|| String::from("connection refused")),
            elapsed_ms: status.map(|_| 1),
        })
    }

    #[test]
    fn only_webhooks_a_caller_hears_count_as_an_application_error() {
        use crate::sim::carrier::{CallDirection, CallEvent, StreamCloser};
        let call = |events: Vec<CallEvent>| {
            let mut c = CallSnapshot::new(
                "CA1".into(),
                "AC1".into(),
                "+1".into(),
                "+2".into(),
                CallDirection::Inbound,
                CallStatus::Completed,
            );
            c.media.streams_opened = 1;
            c.media.first_audio_ms = Some(1);
            c.events = events;
            c
        };
        let closed = CallEvent::StreamClosed {
            stream_sid: "MZ".into(),
            by: StreamCloser::Caller,
        };
        let fallback = CallEvent::Said(actors::telephony::DEFAULT_FALLBACK_MESSAGE.into());
        let calls = [
            // Sent to the fallback; its final status callback found the server gone.
            call(vec![
                fallback.clone(),
                webhook(WebhookKind::StatusCallback, None),
            ]),
            // stream-ended refused: the carrier plays an application error.
            call(vec![
                webhook(WebhookKind::ConnectAction, Some(503)),
                CallEvent::ApplicationError {
                    detail: "503".into(),
                },
            ]),
            // A redirect that failed without the carrier noting it otherwise.
            call(vec![webhook(WebhookKind::Redirect, None), closed.clone()]),
            call(vec![closed]),
        ];
        let c = callers(&calls);
        assert_eq!(
            (c.application_error, c.fallback, c.resumed, c.normal),
            (2, 1, 0, 1)
        );
        assert_eq!(c.failed_webhooks.get("StatusCallback"), Some(&1));
        assert_eq!(c.failed_webhooks.get("ConnectAction"), Some(&1));
        assert_eq!(c.failed_webhooks.get("Redirect"), Some(&1));
    }

    #[test]
    fn end_reasons_are_counted() {
        let logs = vec![
            serde_json::json!({"end_reason": "node_lost"}),
            serde_json::json!({"end_reason": "node_lost"}),
            serde_json::json!({"end_reason": null}),
        ];
        let m = end_reasons(&logs);
        assert_eq!(m.get("node_lost"), Some(&2));
        assert_eq!(m.get("none"), Some(&1));
    }
}
