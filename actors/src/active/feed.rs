//! The feed: one task per node that reads `live_call_events` after the last one it saw, in
//! `seq` order, and fans them out to this node's readers (SSE clients) on a local broadcast.
//! It reads when woken — by this node's publisher after a commit, on PostgreSQL by
//! `LISTEN live_calls` ([`listen`]; after a reconnect of the listener it reads everything
//! after its last `seq`, so nothing is lost) — and at least every `poll` otherwise.
//! [`prune`] deletes events older than the retention (never the newest one, which keeps
//! `seq` a high-water mark).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, broadcast, watch};

use super::LiveEvent;
use crate::store::Store;
use crate::time::now_ms;

/// Events read per query.
const PAGE: u32 = 500;
/// The PostgreSQL channel the publishers notify.
pub const CHANNEL: &str = "live_calls";
/// Wait before connecting a failed listener again.
const LISTENER_RETRY: Duration = Duration::from_secs(1);

/// The feed task's state.
pub struct Feed {
    /// The store.
    pub store: Store,
    /// The local fan-out.
    pub fanout: broadcast::Sender<Arc<LiveEvent>>,
    /// Woken by the publisher and the listener.
    pub wake: Arc<Notify>,
    /// Read at least this often.
    pub poll: Duration,
}

impl Feed {
    /// Runs until `stop`, from the events after `last`.
    pub async fn run(self, mut last: i64, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = self.wake.notified() => {}
                _ = tick.tick() => {}
            }
            last = self.read_after(last).await;
        }
    }

    /// Fans out every event after `last`; returns the new last.
    async fn read_after(&self, mut last: i64) -> i64 {
        loop {
            let page = match self.store.live_events_after(None, last, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(error = %error, "live-call feed could not read: retried");
                    return last;
                }
            };
            let full = page.len() == PAGE as usize;
            for event in page {
                last = event.seq;
                let _ = self.fanout.send(Arc::new(event));
            }
            if !full {
                return last;
            }
        }
    }
}

/// Wakes the feed on every `NOTIFY live_calls`, and once each (re)connected listener
/// listens (notifications sent while it was away are lost; the feed's read after its last
/// `seq` then finds their events).
pub async fn listen(pool: PgPool, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        let mut listener = match connect(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for live-call changes: retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(LISTENER_RETRY) => continue,
                }
            }
        };
        // Whatever was written while nobody listened.
        wake.notify_one();
        loop {
            let received = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    // The connection was lost: listen again on a new one, then read what
                    // was written in between.
                    metrics::counter!("live_registry_listener_reconnects_total").increment(1);
                    tracing::info!("live-call listener lost its connection: reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "live-call listener failed: reconnecting");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(LISTENER_RETRY) => break,
                    }
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Deletes events older than `retention`, every `every`, until `stop`.
pub async fn prune(
    store: Store,
    retention: Duration,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match store
            .prune_live_events(now_ms().saturating_sub(retention_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(events = n, "old live-call events pruned"),
            Err(error) => tracing::warn!(error = %error, "could not prune live-call events"),
        }
    }
}
