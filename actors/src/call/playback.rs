//! Playback accounting for barge-in (PROTOCOLS §5.2): what audio of which assistant item was
//! sent to Twilio, what Twilio reported played (mark echoes), which responses were
//! interrupted, and how much of the current item the caller heard.
//!
//! Shared between the AI→Twilio pump (which records sent audio and drops deltas of
//! interrupted responses) and the call actor (which handles mark echoes and barge-in), behind
//! a `std::sync::Mutex` held for microseconds and never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Accounting of the audio of one call.
#[derive(Debug, Default)]
pub struct Playback {
    /// Bumped at every barge-in; marks of an older epoch are flush echoes and ignored.
    epoch: u64,
    /// The assistant item whose audio is being forwarded.
    current_item: Option<String>,
    /// Its response.
    current_response: Option<String>,
    /// Milliseconds of audio sent, per item.
    sent_ms: HashMap<String, u64>,
    /// Milliseconds reported played (from mark echoes), per item, and when.
    played: HashMap<String, (u64, Instant)>,
    /// Marks sent and not yet echoed.
    pending_marks: u32,
    /// Responses whose further deltas must not reach the caller.
    dropped: HashSet<String>,
    /// Mark counter (part of the name, for uniqueness).
    marks: u64,
}

/// What to send after a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaVerdict {
    /// Forward the audio, then this mark.
    Forward {
        /// Mark name to send after the audio.
        mark: String,
        /// Whether this is the first audio of the item.
        first_of_item: bool,
    },
    /// Drop it: its response was interrupted.
    Drop,
}

/// What a barge-in does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    /// The assistant item to truncate.
    pub item_id: String,
    /// Its response (its further deltas are dropped).
    pub response_id: String,
    /// `audio_end_ms` for `conversation.item.truncate` (never beyond what was sent).
    pub audio_end_ms: u64,
    /// Audio sent for the item.
    pub sent_ms: u64,
}

fn parse_mark(name: &str) -> Option<(u64, &str, u64)> {
    let mut parts = name.splitn(3, ':');
    let epoch = parts.next()?.parse().ok()?;
    let cumulative = parts.next()?.parse().ok()?;
    let item = parts.next()?;
    Some((epoch, item, cumulative))
}

impl Playback {
    /// Records a delta of `bytes` μ-law bytes for (`response_id`, `item_id`).
    pub fn on_delta(&mut self, response_id: &str, item_id: &str, bytes: usize) -> DeltaVerdict {
        if self.dropped.contains(response_id) {
            return DeltaVerdict::Drop;
        }
        let first_of_item = self.current_item.as_deref() != Some(item_id);
        if first_of_item {
            self.current_item = Some(item_id.to_owned());
        }
        if self.current_response.as_deref() != Some(response_id) {
            self.current_response = Some(response_id.to_owned());
        }
        let sent = self.sent_ms.entry(item_id.to_owned()).or_default();
        *sent += (bytes / 8) as u64;
        let cumulative = *sent;
        self.pending_marks += 1;
        self.marks += 1;
        DeltaVerdict::Forward {
            mark: format!("{}:{cumulative}:{item_id}", self.epoch),
            first_of_item,
        }
    }

    /// Records a mark echo; returns true when it counted (not a flush echo).
    pub fn on_mark(&mut self, name: &str, now: Instant) -> bool {
        let Some((epoch, item, cumulative)) = parse_mark(name) else {
            return false;
        };
        if epoch != self.epoch {
            return false;
        }
        self.pending_marks = self.pending_marks.saturating_sub(1);
        let entry = self.played.entry(item.to_owned()).or_insert((0, now));
        if cumulative >= entry.0 {
            *entry = (cumulative, now);
        }
        true
    }

    /// Whether assistant audio is queued or playing at Twilio.
    pub fn is_playing(&self) -> bool {
        self.current_item.is_some() && self.pending_marks > 0
    }

    /// The caller started speaking: when assistant audio is playing, stop its response and
    /// say how much of the item was heard (mark-based, plus the time since the last echo,
    /// never beyond what was sent). Starts a new epoch either way.
    pub fn interrupt(&mut self, now: Instant) -> Option<Interruption> {
        let result = if self.is_playing() {
            match (self.current_item.clone(), self.current_response.clone()) {
                (Some(item_id), Some(response_id)) => {
                    let sent_ms = self.sent_ms.get(&item_id).copied().unwrap_or(0);
                    let heard = match self.played.get(&item_id) {
                        Some((played, at)) => played + duration_ms(now.duration_since(*at)),
                        None => 0,
                    };
                    self.dropped.insert(response_id.clone());
                    Some(Interruption {
                        item_id,
                        response_id,
                        audio_end_ms: heard.min(sent_ms),
                        sent_ms,
                    })
                }
                _ => None,
            }
        } else {
            None
        };
        self.epoch += 1;
        self.pending_marks = 0;
        self.current_item = None;
        self.current_response = None;
        result
    }

    /// Milliseconds of audio sent for `item`.
    pub fn sent_ms(&self, item: &str) -> u64 {
        self.sent_ms.get(item).copied().unwrap_or(0)
    }

    /// Whether a response was interrupted.
    pub fn was_dropped(&self, response_id: &str) -> bool {
        self.dropped.contains(response_id)
    }

    /// Marks sent so far.
    pub fn marks_sent(&self) -> u64 {
        self.marks
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_track_played_audio_and_barge_in_truncates_within_what_was_sent() {
        let mut p = Playback::default();
        let t0 = Instant::now();
        let DeltaVerdict::Forward {
            mark: m1,
            first_of_item,
        } = p.on_delta("r1", "i1", 800)
        else {
            panic!("forward")
        };
        assert!(first_of_item);
        let DeltaVerdict::Forward {
            mark: m2,
            first_of_item,
        } = p.on_delta("r1", "i1", 800)
        else {
            panic!("forward")
        };
        assert!(!first_of_item);
        assert_eq!(p.sent_ms("i1"), 200);
        assert!(p.on_mark(&m1, t0));
        assert!(p.is_playing());
        // 30 ms after the first echo (100 ms played), the caller speaks.
        let cut = p
            .interrupt(t0 + Duration::from_millis(30))
            .expect("interrupted");
        assert_eq!(cut.item_id, "i1");
        assert_eq!(cut.audio_end_ms, 130);
        assert_eq!(cut.sent_ms, 200);
        // Further deltas of that response are dropped; the old epoch's flush echo is ignored.
        assert_eq!(p.on_delta("r1", "i1", 800), DeltaVerdict::Drop);
        assert!(!p.on_mark(&m2, t0));
        assert!(!p.is_playing());
        // A long silence after the last echo never pushes past what was sent.
        let mut q = Playback::default();
        let DeltaVerdict::Forward { mark, .. } = q.on_delta("r2", "i2", 160) else {
            panic!("forward")
        };
        q.on_delta("r2", "i2", 160);
        q.on_mark(&mark, t0);
        let cut = q
            .interrupt(t0 + Duration::from_secs(5))
            .expect("interrupted");
        assert_eq!(cut.audio_end_ms, 40);
    }

    #[test]
    fn nothing_to_truncate_when_everything_played() {
        let mut p = Playback::default();
        let t0 = Instant::now();
        let DeltaVerdict::Forward { mark, .. } = p.on_delta("r1", "i1", 160) else {
            panic!("forward")
        };
        p.on_mark(&mark, t0);
        assert!(!p.is_playing());
        assert_eq!(p.interrupt(t0), None);
        assert!(!p.on_mark("garbage", t0));
        assert!(!p.was_dropped("r1"));
    }
}
