//! The one Server-Sent Events reader of the black-box tests (`tests/api`, and
//! `tests/cluster` through `#[path]`): events of a streaming response with their id, name
//! and JSON data, in order; keep-alive comments are skipped.

use std::time::Duration;

use serde_json::Value;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its `id:` line, if any.
    pub id: Option<String>,
    /// Its `event:` name.
    pub name: String,
    /// Its `data:`, as JSON.
    pub data: Value,
}

/// A reader over a `text/event-stream` response; remembers every event it returned.
pub struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Every event read so far, in order.
    pub seen: Vec<Event>,
}

impl Sse {
    /// Reads `resp`, which must be a 200 `text/event-stream`.
    pub fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.status(), 200, "an event stream");
        assert!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream")),
            "{:?}",
            resp.headers()
        );
        Self {
            resp,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The next event, or `None` once the server closed the stream.
    pub async fn next_or_end(&mut self) -> Option<Event> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..at + 2).collect();
                let block = String::from_utf8(block).expect("utf-8");
                let (mut id, mut name, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if let Some(name) = name {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    let event = Event { id, name, data };
                    self.seen.push(event.clone());
                    return Some(event);
                }
                continue;
            }
            let chunk = self.resp.chunk().await.expect("sse read")?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next event of a stream that stays open.
    pub async fn next(&mut self) -> Event {
        self.next_or_end().await.expect("the stream stays open")
    }

    /// Events until (and with) the first that satisfies `pred`, within `wait`.
    pub async fn until(
        &mut self,
        wait: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Vec<Event> {
        tokio::time::timeout(wait, async {
            let mut read = Vec::new();
            loop {
                let event = self.next().await;
                let done = pred(&event);
                read.push(event);
                if done {
                    return read;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no such event within {wait:?}; seen {:?}", self.seen))
    }

    /// The data of the first event (from here) that satisfies `pred`, within `wait`.
    pub async fn data_of(&mut self, wait: Duration, pred: impl FnMut(&Event) -> bool) -> Value {
        let read = self.until(wait, pred).await;
        read.last().map(|e| e.data.clone()).unwrap_or_default()
    }

    /// Every event until the server closes the stream, within `wait`.
    pub async fn read_to_end(&mut self, wait: Duration) -> Vec<Event> {
        tokio::time::timeout(wait, async {
            let mut read = Vec::new();
            while let Some(event) = self.next_or_end().await {
                read.push(event);
            }
            read
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the stream did not end within {wait:?}; seen {:?}",
                self.seen
            )
        })
    }
}
