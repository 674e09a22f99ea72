//! Auth-transport alerts: Twilio signature failures (per route and account) and stream-token
//! rejections (per reason) of every node, recorded off the request path into the cluster
//! views ([`actors::views`]: a bounded queue, dropped and counted when full) and counted over
//! a window when the alerts are asked for, with the nodes that saw them.

use std::collections::{BTreeMap, BTreeSet};

use actors::domain::AccountSid;
use actors::store::{AuthFailure, Store, StoreError};
use actors::time::now_ms;
use actors::views::ClusterViews;

pub use actors::views::ALERT_WINDOW;

/// Failures read for one report at most (the views keep no more).
const MAX_READ: i64 = 10_000;

/// Records authentication failures on the Twilio transport (cheap to clone).
#[derive(Debug, Clone)]
pub struct AuthTransportLog {
    views: ClusterViews,
}

/// Counted signature failures of one route and claimed account in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFailureCount {
    /// Route template.
    pub route: String,
    /// `AccountSid` claimed by the request (unverified), if any.
    pub account_sid: Option<String>,
    /// Failures in the window.
    pub count: usize,
    /// The nodes that saw them.
    pub node_ids: Vec<String>,
}

/// Counted stream-token rejections of one reason in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejectionCount {
    /// `missing`, `forged`, `expired`, `reused`.
    pub reason: String,
    /// Rejections in the window.
    pub count: usize,
    /// The nodes that saw them.
    pub node_ids: Vec<String>,
}

#[derive(Default)]
struct Tally {
    count: usize,
    nodes: BTreeSet<String>,
}

impl Tally {
    fn add(&mut self, node: &str) {
        self.count += 1;
        if !self.nodes.contains(node) {
            self.nodes.insert(node.to_owned());
        }
    }
}

impl AuthTransportLog {
    /// Records into `views`.
    pub fn new(views: ClusterViews) -> Self {
        Self { views }
    }

    /// Records a webhook whose signature did not verify.
    pub fn signature_failure(&self, route: &'static str, account_sid: Option<&str>) {
        metrics::counter!("twilio_signature_failures_total", "route" => route).increment(1);
        // An account SID is only echoed back when it looks like one (the value is unverified).
        let account_sid = account_sid
            .filter(|a| AccountSid::is_valid(a))
            .map(str::to_owned);
        self.views.auth_failure(AuthFailure::Signature {
            route: route.to_owned(),
            account_sid,
        });
    }

    /// Records a refused media stream.
    pub fn token_rejection(&self, reason: &'static str) {
        metrics::counter!("media_stream_rejections_total", "reason" => reason).increment(1);
        self.views.auth_failure(AuthFailure::StreamToken {
            reason: reason.to_owned(),
        });
    }

    /// Counts of every node in the window, by kind.
    pub async fn counts(
        &self,
        store: &Store,
    ) -> Result<(Vec<SignatureFailureCount>, Vec<TokenRejectionCount>), StoreError> {
        let window = i64::try_from(ALERT_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let failures = store
            .auth_failures_since(now_ms().saturating_sub(window), MAX_READ)
            .await?;
        let mut sig: BTreeMap<(String, Option<String>), Tally> = BTreeMap::new();
        let mut tok: BTreeMap<String, Tally> = BTreeMap::new();
        for f in &failures {
            match &f.failure {
                AuthFailure::Signature { route, account_sid } => sig
                    .entry((route.clone(), account_sid.clone()))
                    .or_default()
                    .add(&f.node_id),
                AuthFailure::StreamToken { reason } => {
                    tok.entry(reason.clone()).or_default().add(&f.node_id)
                }
            }
        }
        Ok((
            sig.into_iter()
                .map(|((route, account_sid), t)| SignatureFailureCount {
                    route,
                    account_sid,
                    count: t.count,
                    node_ids: t.nodes.into_iter().collect(),
                })
                .collect(),
            tok.into_iter()
                .map(|(reason, t)| TokenRejectionCount {
                    reason,
                    count: t.count,
                    node_ids: t.nodes.into_iter().collect(),
                })
                .collect(),
        ))
    }
}
