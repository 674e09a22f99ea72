//! Playback accounting for barge-in (PROTOCOLS §5.2): what audio of which assistant item was
//! sent to Twilio, what Twilio reported played (mark echoes), which responses were
//! interrupted, and how much of the current item the caller heard.
//!
//! Shared by the call's two readers, behind a `std::sync::Mutex` held for microseconds and
//! never across an `.await`: the AI reader records sent audio, drops deltas of interrupted
//! responses and cuts playback at barge-in; the Twilio reader accounts mark echoes. The call
//! actor never sees a mark: it asks to be told once playback has drained
//! ([`Playback::watch_drain`]), and the Twilio reader tells it when a mark echo drains it.

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
    /// The actor waits to hear when playback has drained.
    drain_watched: bool,
}

/// What a mark echo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkEcho {
    /// A flush echo of an older epoch, or not one of ours: ignored.
    Ignored,
    /// Counted; audio is still playing or nobody waits for the drain.
    Counted,
    /// Counted, and it drained the playback the actor waits for (told once).
    Drained,
}

/// What to send after a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaVerdict {
    /// Forward the audio, then a mark named [`mark_name`]`(epoch, cumulative_ms, item)`.
    Forward {
        /// The playback epoch the audio belongs to (a later barge-in discards it).
        epoch: u64,
        /// Audio sent for the item so far, this delta included (ms).
        cumulative_ms: u64,
        /// Whether this is the first audio of the item.
        first_of_item: bool,
    },
    /// Drop it: its response was interrupted.
    Drop,
}

/// The name of the mark sent after audio of `item` (epoch, cumulative ms, item), written
/// without an intermediate allocation.
pub fn mark_name(epoch: u64, cumulative_ms: u64, item: &str) -> impl std::fmt::Display + '_ {
    struct Name<'a>(u64, u64, &'a str);
    impl std::fmt::Display for Name<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}:{}:{}", self.0, self.1, self.2)
        }
    }
    Name(epoch, cumulative_ms, item)
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
    /// Records a delta of `bytes` μ-law bytes for (`response_id`, `item_id`). Allocates only
    /// for the first delta of an item.
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
        if !self.sent_ms.contains_key(item_id) {
            self.sent_ms.insert(item_id.to_owned(), 0);
        }
        let mut cumulative_ms = (bytes / 8) as u64;
        if let Some(sent) = self.sent_ms.get_mut(item_id) {
            *sent += cumulative_ms;
            cumulative_ms = *sent;
        }
        self.pending_marks += 1;
        self.marks += 1;
        DeltaVerdict::Forward {
            epoch: self.epoch,
            cumulative_ms,
            first_of_item,
        }
    }

    /// Records a mark echo.
    pub fn on_mark(&mut self, name: &str, now: Instant) -> MarkEcho {
        let Some((epoch, item, cumulative)) = parse_mark(name) else {
            return MarkEcho::Ignored;
        };
        if epoch != self.epoch {
            return MarkEcho::Ignored;
        }
        self.pending_marks = self.pending_marks.saturating_sub(1);
        match self.played.get_mut(item) {
            Some(entry) if cumulative >= entry.0 => *entry = (cumulative, now),
            Some(_) => {}
            None => {
                self.played.insert(item.to_owned(), (cumulative, now));
            }
        }
        if self.drain_watched && !self.is_playing() {
            self.drain_watched = false;
            return MarkEcho::Drained;
        }
        MarkEcho::Counted
    }

    /// The actor waits for playback to drain: true when nothing is playing now (it is not
    /// told later); otherwise the mark echo that drains it reports [`MarkEcho::Drained`].
    pub fn watch_drain(&mut self) -> bool {
        if self.is_playing() {
            self.drain_watched = true;
            false
        } else {
            self.drain_watched = false;
            true
        }
    }

    /// The epoch of the audio being sent (bumped by every barge-in).
    pub fn epoch(&self) -> u64 {
        self.epoch
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
        if self.drain_watched {
            // Nothing plays any more: whoever waits hears it from the barge-in path (the
            // actor learns of the barge-in before the next mark could tell it).
            self.drain_watched = false;
        }
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

    /// Records a delta that must be forwarded; returns its mark's name.
    fn forward(p: &mut Playback, response: &str, item: &str, bytes: usize, first: bool) -> String {
        match p.on_delta(response, item, bytes) {
            DeltaVerdict::Forward {
                epoch,
                cumulative_ms,
                first_of_item,
            } => {
                assert_eq!(first_of_item, first);
                mark_name(epoch, cumulative_ms, item).to_string()
            }
            DeltaVerdict::Drop => panic!("forward"),
        }
    }

    #[test]
    fn marks_track_played_audio_and_barge_in_truncates_within_what_was_sent() {
        let mut p = Playback::default();
        let t0 = Instant::now();
        let m1 = forward(&mut p, "r1", "i1", 800, true);
        let m2 = forward(&mut p, "r1", "i1", 800, false);
        assert_eq!(p.sent_ms("i1"), 200);
        assert_eq!(p.on_mark(&m1, t0), MarkEcho::Counted);
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
        assert_eq!(p.on_mark(&m2, t0), MarkEcho::Ignored);
        assert!(!p.is_playing());
        // A long silence after the last echo never pushes past what was sent.
        let mut q = Playback::default();
        let mark = forward(&mut q, "r2", "i2", 160, true);
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
        let mark = forward(&mut p, "r1", "i1", 160, true);
        p.on_mark(&mark, t0);
        assert!(!p.is_playing());
        assert_eq!(p.interrupt(t0), None);
        assert_eq!(p.on_mark("garbage", t0), MarkEcho::Ignored);
        assert!(!p.was_dropped("r1"));
    }

    #[test]
    fn the_mark_that_drains_a_watched_playback_says_so_once() {
        let mut p = Playback::default();
        let t0 = Instant::now();
        assert!(p.watch_drain(), "nothing playing: drained at once");
        let m1 = forward(&mut p, "r1", "i1", 160, true);
        let m2 = forward(&mut p, "r1", "i1", 160, false);
        assert!(!p.watch_drain(), "two marks outstanding");
        assert_eq!(p.on_mark(&m1, t0), MarkEcho::Counted);
        assert_eq!(p.on_mark(&m2, t0), MarkEcho::Drained);
        // Not watched any more: later echoes only count.
        let m3 = forward(&mut p, "r2", "i2", 160, true);
        assert_eq!(p.on_mark(&m3, t0), MarkEcho::Counted);
    }
}
