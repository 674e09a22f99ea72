//! What the load generator reads back from the server about its own tenant: call logs
//! (through a `read` API key it creates for the run) and the `voice.call.completed` events
//! (through an event webhook it registers, served by [`EventSink`] on a loopback port; the
//! server must run with `OUTBOUND_ALLOW_PRIVATE=true` to deliver to it).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use warp::Filter;

use super::LoadTestError;
use super::setup::Admin;

/// Call-log statuses the admission query counts as live (`LIVE_SQL` of the store).
pub const LIVE_STATUSES: [&str; 4] = ["queued", "initiated", "ringing", "in-progress"];

/// A tenant API client with the `read` scope.
pub struct Reader<'a> {
    /// HTTP client.
    pub client: &'a reqwest::Client,
    /// Base URL of the server.
    pub server: &'a str,
    /// The key's secret.
    pub key: String,
}

impl<'a> Reader<'a> {
    /// Creates a `read` key for `tenant_id`.
    pub async fn create(admin: &Admin<'a>, tenant_id: &str) -> Result<Self, LoadTestError> {
        let created = admin
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/admin/tenants/{tenant_id}/api-keys"),
                Some(json!({"name": "loadtest reader", "scopes": ["read"]})),
            )
            .await?;
        let key = created["secret"]
            .as_str()
            .ok_or_else(|| LoadTestError::Admin {
                step: String::from("create a read API key"),
                status: 200,
                body: format!("no secret in {created}"),
            })?
            .to_owned();
        Ok(Self {
            client: admin.client,
            server: admin.server,
            key,
        })
    }

    async fn get(&self, path: &str) -> Result<Option<Value>, LoadTestError> {
        let step = format!("GET {path}");
        let response = self
            .client
            .get(format!("{}{path}", self.server))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|source| LoadTestError::Http {
                step: step.clone(),
                source,
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response
            .text()
            .await
            .map_err(|source| LoadTestError::Http {
                step: step.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(LoadTestError::Admin {
                step,
                status: status.as_u16(),
                body: text,
            });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LoadTestError::Admin {
                step,
                status: status.as_u16(),
                body: format!("unreadable JSON ({e}): {text}"),
            })
    }

    /// One call log (`None`: unknown).
    pub async fn call_log(&self, id: &str) -> Result<Option<Value>, LoadTestError> {
        self.get(&format!("/api/v1/call-logs/{id}")).await
    }

    /// Every call log of the tenant.
    pub async fn call_logs(&self) -> Result<Vec<Value>, LoadTestError> {
        let mut all = Vec::new();
        loop {
            let page = self
                .get(&format!("/api/v1/call-logs?limit=200&offset={}", all.len()))
                .await?
                .unwrap_or(Value::Null);
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let n = data.len();
            all.extend(data);
            if n < 200 {
                return Ok(all);
            }
        }
    }
}

/// What the call logs say, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordCounts {
    /// Call logs of the tenant.
    pub calls: u64,
    /// With `completed_at` (a terminal record whose `voice.call.completed` was written).
    pub completed: u64,
    /// Without `completed_at`.
    pub open: u64,
    /// Counted by admission against the concurrency limit (live status, no `ended_at`).
    pub live: u64,
}

/// Counts call logs.
pub fn count_records(logs: &[Value]) -> RecordCounts {
    let mut c = RecordCounts::default();
    for log in logs {
        c.calls += 1;
        if log["completed_at"].is_string() {
            c.completed += 1;
        } else {
            c.open += 1;
        }
        let live_status = log["status"]
            .as_str()
            .is_some_and(|s| LIVE_STATUSES.contains(&s));
        if live_status && log["ended_at"].is_null() {
            c.live += 1;
        }
    }
    c
}

/// The `voice.call.completed` events received, by call id (distinct event ids: a delivery
/// retried with the same event id counts once).
#[derive(Debug, Default)]
pub struct EventSink {
    completed: Mutex<BTreeMap<String, HashSet<String>>>,
    addr: Mutex<Option<SocketAddr>>,
}

impl EventSink {
    /// Starts the receiver on a free loopback port.
    pub async fn start() -> Result<Arc<Self>, LoadTestError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| LoadTestError::Write {
                path: "127.0.0.1:0 (event receiver)".into(),
                source,
            })?;
        let addr = listener.local_addr().ok();
        let sink = Arc::new(Self {
            addr: Mutex::new(addr),
            ..Self::default()
        });
        let filter_sink = sink.clone();
        let route = warp::post()
            .and(warp::body::bytes())
            .map(move |body: Bytes| {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    filter_sink.record(&v);
                }
                warp::reply()
            });
        let service = warp::service(route);
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let connection = builder
                    .serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(service.clone()),
                    )
                    .into_owned();
                connections.spawn(async move {
                    let _ = connection.await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(sink)
    }

    /// `http://127.0.0.1:PORT/events`.
    pub fn url(&self) -> String {
        let addr = *self.addr.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "http://{}/events",
            addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
        )
    }

    /// Records one envelope.
    pub fn record(&self, envelope: &Value) {
        if envelope["event"] != "voice.call.completed" {
            return;
        }
        let (Some(id), Some(call)) = (
            envelope["id"].as_str(),
            envelope["data"]["call_id"].as_str(),
        ) else {
            return;
        };
        self.completed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(call.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    /// Distinct `voice.call.completed` events of `call_id`.
    pub fn completed_of(&self, call_id: &str) -> usize {
        self.completed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(call_id)
            .map_or(0, HashSet::len)
    }

    /// Registers the receiver as the tenant's event webhook (completions only).
    pub async fn register(&self, admin: &Admin<'_>, tenant_id: &str) -> Result<(), LoadTestError> {
        admin
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/admin/tenants/{tenant_id}/event-webhook"),
                Some(json!({"url": self.url(), "events": ["voice.call.completed"]})),
            )
            .await
            .map_err(|e| match e {
                LoadTestError::Admin { step, status, body } => LoadTestError::Admin {
                    step,
                    status,
                    body: format!(
                        "{body} (the server must run with OUTBOUND_ALLOW_PRIVATE=true to deliver events to the load generator)"
                    ),
                },
                other => other,
            })?;
        Ok(())
    }
}

/// How many call ids have 0, exactly 1 and more than 1 completion events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompletionEvents {
    /// Calls without a `voice.call.completed`.
    pub none: u64,
    /// Calls with exactly one.
    pub one: u64,
    /// Calls with more than one (duplicates).
    pub more: u64,
}

impl EventSink {
    /// Counts the completion events of `call_ids`.
    pub fn completions(&self, call_ids: &[String]) -> CompletionEvents {
        let mut c = CompletionEvents::default();
        for id in call_ids {
            match self.completed_of(id) {
                0 => c.none += 1,
                1 => c.one += 1,
                _ => c.more += 1,
            }
        }
        c
    }
}

/// Polls `check` every `every` until it is true or `deadline` passes; true when it held.
pub async fn poll_until<F, Fut>(every: Duration, deadline: std::time::Instant, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_as_admission_counts_them() {
        let logs = vec![
            json!({"status": "completed", "completed_at": "t", "ended_at": "t"}),
            json!({"status": "in-progress", "completed_at": null, "ended_at": null}),
            json!({"status": "in-progress", "completed_at": null, "ended_at": "t"}),
            json!({"status": "refused", "completed_at": "t", "ended_at": "t"}),
        ];
        assert_eq!(
            count_records(&logs),
            RecordCounts {
                calls: 4,
                completed: 2,
                open: 2,
                live: 1
            }
        );
    }

    #[test]
    fn completion_events_count_distinct_event_ids_per_call() {
        let sink = EventSink::default();
        let event = |id: &str, call: &str| json!({"id": id, "event": "voice.call.completed", "data": {"call_id": call}});
        sink.record(&event("evt_1", "call_a"));
        sink.record(&event("evt_1", "call_a")); // a redelivery
        sink.record(&event("evt_2", "call_b"));
        sink.record(&event("evt_3", "call_b"));
        sink.record(
            &json!({"id": "evt_4", "event": "voice.call.started", "data": {"call_id": "call_c"}}),
        );
        let ids = ["call_a", "call_b", "call_c"].map(String::from);
        assert_eq!(
            sink.completions(&ids),
            CompletionEvents {
                none: 1,
                one: 1,
                more: 1
            }
        );
    }
}
