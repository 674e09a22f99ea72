//! Auth-transport alerts: recent Twilio signature failures (per route and account) and
//! stream-token rejections (per reason), kept in memory on this node for a window, and
//! turned into alerts with a severity and a suggested action.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actors::domain::AccountSid;

/// How far back alerts look.
pub const ALERT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most failures remembered (older ones are dropped first).
const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    kind: FailureKind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum FailureKind {
    Signature {
        route: &'static str,
        account_sid: Option<String>,
    },
    StreamToken {
        reason: &'static str,
    },
}

/// Recent authentication failures on the Twilio transport.
#[derive(Debug, Default)]
pub struct AuthTransportLog {
    failures: Mutex<VecDeque<Failure>>,
}

/// Counted failures of one kind in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFailureCount {
    /// Route template.
    pub route: &'static str,
    /// `AccountSid` claimed by the request (unverified), if any.
    pub account_sid: Option<String>,
    /// Failures in the window.
    pub count: usize,
}

/// Counted stream-token rejections in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejectionCount {
    /// `missing`, `forged`, `expired`, `reused`.
    pub reason: &'static str,
    /// Rejections in the window.
    pub count: usize,
}

impl AuthTransportLog {
    fn push(&self, kind: FailureKind) {
        let mut q = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_REMEMBERED {
            q.pop_front();
        }
        q.push_back(Failure {
            at: Instant::now(),
            kind,
        });
    }

    /// Records a webhook whose signature did not verify.
    pub fn signature_failure(&self, route: &'static str, account_sid: Option<&str>) {
        metrics::counter!("twilio_signature_failures_total", "route" => route).increment(1);
        // An account SID is only echoed back when it looks like one (the value is unverified).
        let account_sid = account_sid
            .filter(|a| AccountSid::is_valid(a))
            .map(str::to_owned);
        self.push(FailureKind::Signature { route, account_sid });
    }

    /// Records a refused media stream.
    pub fn token_rejection(&self, reason: &'static str) {
        metrics::counter!("media_stream_rejections_total", "reason" => reason).increment(1);
        self.push(FailureKind::StreamToken { reason });
    }

    /// Counts in the window, by kind.
    pub fn counts(&self) -> (Vec<SignatureFailureCount>, Vec<TokenRejectionCount>) {
        let now = Instant::now();
        let mut q = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        while q
            .front()
            .is_some_and(|f| now.duration_since(f.at) > ALERT_WINDOW)
        {
            q.pop_front();
        }
        let mut sig: BTreeMap<(&'static str, Option<String>), usize> = BTreeMap::new();
        let mut tok: BTreeMap<&'static str, usize> = BTreeMap::new();
        for f in q.iter() {
            match &f.kind {
                FailureKind::Signature { route, account_sid } => {
                    *sig.entry((route, account_sid.clone())).or_default() += 1
                }
                FailureKind::StreamToken { reason } => *tok.entry(reason).or_default() += 1,
            }
        }
        (
            sig.into_iter()
                .map(|((route, account_sid), count)| SignatureFailureCount {
                    route,
                    account_sid,
                    count,
                })
                .collect(),
            tok.into_iter()
                .map(|(reason, count)| TokenRejectionCount { reason, count })
                .collect(),
        )
    }
}
