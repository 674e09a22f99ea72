//! The probe: one object observing both simulators ([`MediaObserver`] for the carrier,
//! [`TagObserver`] for the realtime model), which live in the load generator's process and
//! so share one clock.
//!
//! Every caller frame carries a tag `call_index << TAG_SHIFT | chunk` (the runtime passes
//! payload bytes through untouched); every 20 ms of model audio carries a tag at or above
//! [`OUTPUT_TAG_BASE`]. A tag is put in flight when it is sent and taken out when it arrives
//! at the other simulator, and the difference of the two instants is the relay latency of
//! that direction: what the runtime (plus two loopback hops and the simulators' own socket
//! handling) adds.
//!
//! What is still in flight at the end is classified, so that the loss figure counts only
//! real losses:
//! - *before AI ready* (caller → AI): sent before the first frame of the same call reached
//!   the model, i.e. while the runtime was still connecting the AI session;
//! - *at hang-up*: sent within [`TEARDOWN_WINDOW`] of the call's last caller frame (caller →
//!   AI), or of the end of the model session or after the last caller frame of its call
//!   (AI → caller: audio the model produced once the caller was gone);
//! - *cleared* (AI → caller): sent at most [`TEARDOWN_WINDOW`] before a `clear` of its call
//!   reached the caller: audio the runtime discarded at a barge-in, as it must;
//! - *lost*: everything else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;

use super::histogram::{Histogram, LatencySummary};
use crate::sim::carrier::MediaObserver;
use crate::sim::realtime::{OUTPUT_TAG_BASE, TagObserver};

/// Bits of a caller tag holding the chunk number; the call index is above them.
pub const TAG_SHIFT: u32 = 17;
/// Most calls one run can tag distinctly (caller tags stay below [`OUTPUT_TAG_BASE`]).
pub const MAX_CALLS: u32 = OUTPUT_TAG_BASE >> TAG_SHIFT;
/// Most frames one call can tag (43 minutes of 20 ms frames).
pub const MAX_FRAMES_PER_CALL: u32 = (1 << TAG_SHIFT) - 1;
/// Frames still in flight this close to the end of their call count as "at hang-up".
pub const TEARDOWN_WINDOW: Duration = Duration::from_secs(1);

/// The tag base of call `index` (its frames are tagged base + 1, base + 2, …).
pub fn tag_base(index: u32) -> u32 {
    index << TAG_SHIFT
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    sent: Instant,
    /// Call index (caller → AI) or model session index (AI → caller).
    owner: u32,
}

/// One direction's counters.
#[derive(Debug, Default)]
struct Direction {
    in_flight: DashMap<u32, Flight>,
    sent: AtomicU64,
    relayed: AtomicU64,
    unexpected: AtomicU64,
    latency: Histogram,
}

impl Direction {
    fn sent(&self, tag: u32, at: Instant, owner: u32) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if self
            .in_flight
            .insert(tag, Flight { sent: at, owner })
            .is_some()
        {
            // A tag reused before it arrived: the earlier frame can no longer be matched.
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn arrived(&self, tag: u32, at: Instant) -> Option<Flight> {
        match self.in_flight.remove(&tag) {
            Some((_, flight)) => {
                self.relayed.fetch_add(1, Ordering::Relaxed);
                self.latency
                    .record(at.saturating_duration_since(flight.sent));
                Some(flight)
            }
            None => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Per-call instants, as nanoseconds since the probe's epoch.
#[derive(Debug)]
struct CallTrack {
    /// Last caller frame sent, plus one (0: none yet).
    last_sent: AtomicU64,
    /// Earliest send instant of a caller frame that reached the model (`u64::MAX`: none).
    first_relayed: AtomicU64,
}

/// Frame counts and relay latency of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DirectionReport {
    /// Tagged frames sent.
    pub frames_sent: u64,
    /// Tagged frames that arrived at the other end.
    pub frames_relayed: u64,
    /// Frames that never arrived, mid-call.
    pub frames_lost: u64,
    /// Caller frames sent before the model received any frame of the call (the runtime was
    /// still connecting the AI session); 0 for AI → caller.
    pub frames_before_ai_ready: u64,
    /// Frames still in flight when their call ended (see the module docs).
    pub frames_at_hang_up: u64,
    /// Model frames sent before a `clear` of their call and never delivered: discarded by the
    /// runtime at a barge-in (0 for caller → AI).
    pub frames_cleared: u64,
    /// Tags that arrived without being in flight (duplicates, or reused tags).
    pub frames_unexpected: u64,
    /// Relay latency (send instant to arrival instant).
    pub latency: LatencySummary,
}

impl DirectionReport {
    /// Lost frames as a percentage of the frames sent (0 when nothing was sent).
    pub fn lost_percent(&self) -> f64 {
        if self.frames_sent == 0 {
            0.0
        } else {
            100.0 * self.frames_lost as f64 / self.frames_sent as f64
        }
    }
}

/// Observes both simulators (see the module docs).
pub struct Probe {
    epoch: Instant,
    caller: Direction,
    ai: Direction,
    calls: Vec<CallTrack>,
    session_ends: DashMap<u32, Instant>,
    /// The call index of each model session (from the first caller tag it received).
    session_calls: DashMap<u32, u32>,
    /// The call index of each `CA…` (from its caller tags).
    sid_calls: DashMap<String, u32>,
    /// When each call received a `clear` (barge-ins).
    clears: DashMap<u32, Vec<Instant>>,
}

/// Where a frame still in flight at the end is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    BeforeAiReady,
    AtHangUp,
    Cleared,
    Lost,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("calls", &self.calls.len())
            .field("caller_sent", &self.caller.sent.load(Ordering::Relaxed))
            .field("ai_sent", &self.ai.sent.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// A probe for calls `0..calls` (at most [`MAX_CALLS`]).
    pub fn new(calls: u32) -> Self {
        let calls = calls.min(MAX_CALLS);
        Self {
            epoch: Instant::now(),
            caller: Direction::default(),
            ai: Direction::default(),
            calls: (0..calls)
                .map(|_| CallTrack {
                    last_sent: AtomicU64::new(0),
                    first_relayed: AtomicU64::new(u64::MAX),
                })
                .collect(),
            session_ends: DashMap::new(),
            session_calls: DashMap::new(),
            sid_calls: DashMap::new(),
            clears: DashMap::new(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Model sessions that have ended so far.
    pub fn sessions_ended(&self) -> usize {
        self.session_ends.len()
    }

    fn caller_leftover(&self, flight: &Flight) -> Leftover {
        let track = self.calls.get(flight.owner as usize);
        let first = track
            .map(|t| t.first_relayed.load(Ordering::Relaxed))
            .filter(|n| *n != u64::MAX)
            .map(|n| self.instant(n));
        let last = track
            .map(|t| t.last_sent.load(Ordering::Relaxed))
            .filter(|n| *n != 0)
            .map(|n| self.instant(n - 1));
        if first.is_none_or(|first| flight.sent < first) {
            Leftover::BeforeAiReady
        } else if last.is_some_and(|last| flight.sent + TEARDOWN_WINDOW >= last) {
            Leftover::AtHangUp
        } else {
            Leftover::Lost
        }
    }

    fn ai_leftover(&self, flight: &Flight) -> Leftover {
        let ended = self.session_ends.get(&flight.owner).map(|e| *e.value());
        // The caller's last frame: model audio sent after the caller hung up has nobody to
        // reach, however long the runtime takes to close the model session.
        let call = self.session_calls.get(&flight.owner).map(|c| *c.value());
        // Sent before a `clear` of its call and not arrived: the runtime discarded it at a
        // barge-in, as it should.
        let cleared = call
            .and_then(|c| self.clears.get(&c))
            .is_some_and(|clears| {
                clears
                    .iter()
                    .any(|c| flight.sent <= *c && *c <= flight.sent + TEARDOWN_WINDOW)
            });
        if cleared {
            return Leftover::Cleared;
        }
        let hung_up = call
            .and_then(|c| self.calls.get(c as usize))
            .map(|t| t.last_sent.load(Ordering::Relaxed))
            .filter(|n| *n != 0)
            .map(|n| self.instant(n - 1));
        if ended.is_some_and(|end| flight.sent + TEARDOWN_WINDOW >= end)
            || hung_up.is_some_and(|last| flight.sent + TEARDOWN_WINDOW >= last)
        {
            Leftover::AtHangUp
        } else {
            Leftover::Lost
        }
    }

    /// Classifies what is still in flight and reports both directions: (caller → AI,
    /// AI → caller).
    pub fn report(&self) -> (DirectionReport, DirectionReport) {
        let mut caller = self.base_report(&self.caller);
        for entry in self.caller.in_flight.iter() {
            match self.caller_leftover(entry.value()) {
                Leftover::BeforeAiReady => caller.frames_before_ai_ready += 1,
                Leftover::AtHangUp => caller.frames_at_hang_up += 1,
                Leftover::Cleared | Leftover::Lost => caller.frames_lost += 1,
            }
        }
        let mut ai = self.base_report(&self.ai);
        for entry in self.ai.in_flight.iter() {
            match self.ai_leftover(entry.value()) {
                Leftover::AtHangUp => ai.frames_at_hang_up += 1,
                Leftover::Cleared => ai.frames_cleared += 1,
                Leftover::BeforeAiReady | Leftover::Lost => ai.frames_lost += 1,
            }
        }
        (caller, ai)
    }

    /// Frames lost per call index: (caller → AI, AI → caller). Model audio is attributed to
    /// the call whose caller frames its session received; a session that received none is
    /// left out (`u32::MAX`).
    pub fn lost_by_call(&self) -> std::collections::BTreeMap<u32, (u64, u64)> {
        let mut lost = std::collections::BTreeMap::<u32, (u64, u64)>::new();
        for entry in self.caller.in_flight.iter() {
            let flight = entry.value();
            if self.caller_leftover(flight) == Leftover::Lost {
                lost.entry(flight.owner).or_default().0 += 1;
            }
        }
        for entry in self.ai.in_flight.iter() {
            let flight = entry.value();
            if self.ai_leftover(flight) == Leftover::Lost {
                let call = self
                    .session_calls
                    .get(&flight.owner)
                    .map_or(u32::MAX, |c| *c.value());
                lost.entry(call).or_default().1 += 1;
            }
        }
        lost
    }

    fn base_report(&self, d: &Direction) -> DirectionReport {
        DirectionReport {
            frames_sent: d.sent.load(Ordering::Relaxed),
            frames_relayed: d.relayed.load(Ordering::Relaxed),
            frames_lost: 0,
            frames_before_ai_ready: 0,
            frames_at_hang_up: 0,
            frames_cleared: 0,
            frames_unexpected: d.unexpected.load(Ordering::Relaxed),
            latency: d.latency.summary(),
        }
    }
}

impl MediaObserver for Probe {
    fn caller_frame_sent(&self, call_sid: &str, tag: u32, at: Instant) {
        if tag >= OUTPUT_TAG_BASE {
            return;
        }
        let call = tag >> TAG_SHIFT;
        if !self.sid_calls.contains_key(call_sid) {
            self.sid_calls.insert(call_sid.to_owned(), call);
        }
        self.caller.sent(tag, at, call);
        if let Some(track) = self.calls.get(call as usize) {
            let n = self.nanos(at).saturating_add(1);
            track.last_sent.fetch_max(n, Ordering::Relaxed);
        }
    }

    fn clear_received(&self, call_sid: &str, at: Instant) {
        if let Some(call) = self.sid_calls.get(call_sid).map(|c| *c.value()) {
            self.clears.entry(call).or_default().push(at);
        }
    }

    fn server_audio_received(&self, _call_sid: &str, tags: &[u32], at: Instant) {
        for &tag in tags {
            if tag >= OUTPUT_TAG_BASE {
                self.ai.arrived(tag, at);
            } else {
                // A caller frame echoed back: not something this runtime does.
                self.ai.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl TagObserver for Probe {
    fn input_tags_received(&self, session: usize, tags: &[u32], at: Instant) {
        for &tag in tags {
            if tag >= OUTPUT_TAG_BASE {
                self.caller.unexpected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let session = u32::try_from(session).unwrap_or(u32::MAX);
            if !self.session_calls.contains_key(&session) {
                self.session_calls.insert(session, tag >> TAG_SHIFT);
            }
            if let Some(flight) = self.caller.arrived(tag, at)
                && let Some(track) = self.calls.get(flight.owner as usize)
            {
                track
                    .first_relayed
                    .fetch_min(self.nanos(flight.sent), Ordering::Relaxed);
            }
        }
    }

    fn output_tags_sent(&self, session: usize, tags: &[u32], at: Instant) {
        let owner = u32::try_from(session).unwrap_or(u32::MAX);
        for &tag in tags {
            self.ai.sent(tag, at, owner);
        }
    }

    fn session_ended(&self, session: usize, at: Instant) {
        let owner = u32::try_from(session).unwrap_or(u32::MAX);
        self.session_ends.insert(owner, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "CA00";

    #[test]
    fn tags_are_matched_across_the_two_simulators_and_leftovers_classified() {
        let probe = Probe::new(4);
        let t0 = probe.epoch + Duration::from_secs(1);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let base = tag_base(2);
        // Call 2: frames 1–3 are dropped while the AI connects, 4–100 arrive 2 ms later,
        // except 40 (lost mid-call) and 99–100 (in flight at hang-up).
        for chunk in 1..=100_u32 {
            probe.caller_frame_sent(SID, base + chunk, ms(u64::from(chunk) * 20));
        }
        for chunk in (4..=98_u32).filter(|c| *c != 40) {
            probe.input_tags_received(0, &[base + chunk], ms(u64::from(chunk) * 20 + 2));
        }
        // A frame nobody sent, and an output tag arriving at the model.
        probe.input_tags_received(0, &[base + 500, OUTPUT_TAG_BASE], ms(0));
        // The model speaks 10 frames; 9 arrive 1 ms later, 1 is still in flight when the
        // session ends 100 ms later; the session of another 5 frames never ends (lost).
        let tags: Vec<u32> = (0..10).map(|i| OUTPUT_TAG_BASE + i).collect();
        probe.output_tags_sent(0, &tags, ms(5000));
        probe.server_audio_received(SID, &tags[..9], ms(5001));
        probe.session_ended(0, ms(5100));
        let others: Vec<u32> = (10..15).map(|i| OUTPUT_TAG_BASE + i).collect();
        probe.output_tags_sent(1, &others, ms(6000));
        probe.server_audio_received(SID, &[7], ms(6000));

        let (caller, ai) = probe.report();
        assert_eq!(caller.frames_sent, 100);
        assert_eq!(caller.frames_relayed, 94);
        assert_eq!(caller.frames_before_ai_ready, 3);
        assert_eq!(caller.frames_lost, 1);
        assert_eq!(caller.frames_at_hang_up, 2);
        assert_eq!(caller.frames_unexpected, 2);
        assert_eq!(caller.latency.count, 94);
        assert_eq!(caller.latency.p50_ms, Some(2.0));
        assert_eq!(caller.latency.max_ms, Some(2.0));
        assert!((caller.lost_percent() - 1.0).abs() < 1e-9);

        assert_eq!(ai.frames_sent, 15);
        assert_eq!(ai.frames_relayed, 9);
        assert_eq!(ai.frames_at_hang_up, 1);
        assert_eq!(ai.frames_lost, 5);
        assert_eq!(ai.frames_before_ai_ready, 0);
        assert_eq!(ai.frames_unexpected, 1);
        assert_eq!(ai.latency.p99_ms, Some(1.0));
        assert_eq!(probe.sessions_ended(), 1);
        // Per call: call 2 lost caller frame 40; session 1 (which never heard a caller) lost
        // 5 model frames.
        let lost = probe.lost_by_call();
        assert_eq!(lost.get(&2), Some(&(1, 0)));
        assert_eq!(lost.get(&u32::MAX), Some(&(0, 5)));
    }

    #[test]
    fn model_audio_sent_after_the_caller_hung_up_is_not_lost() {
        let probe = Probe::new(2);
        let t0 = probe.epoch;
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Call 1 speaks until 3 s; its session (3) hears it, and keeps sending audio at 5 s
        // (after the hang-up) and never ends before the report; at 0.5 s a frame is lost
        // mid-call.
        let base = tag_base(1);
        for chunk in 1..=150_u32 {
            probe.caller_frame_sent(SID, base + chunk, ms(u64::from(chunk) * 20));
            probe.input_tags_received(3, &[base + chunk], ms(u64::from(chunk) * 20 + 1));
        }
        probe.output_tags_sent(3, &[OUTPUT_TAG_BASE + 1], ms(500));
        probe.output_tags_sent(3, &[OUTPUT_TAG_BASE + 2], ms(5000));
        let (_, ai) = probe.report();
        assert_eq!((ai.frames_lost, ai.frames_at_hang_up), (1, 1));
        assert_eq!(probe.lost_by_call().get(&1), Some(&(0, 1)));
        // A barge-in at 1.2 s: the frame of 0.5 s was discarded with the queue.
        probe.clear_received(SID, ms(1200));
        let (_, ai) = probe.report();
        assert_eq!((ai.frames_lost, ai.frames_cleared), (0, 1));
        assert!(probe.lost_by_call().is_empty());
    }

    #[test]
    fn a_call_whose_audio_never_reached_the_model_counts_as_not_ready() {
        let probe = Probe::new(1);
        let t0 = probe.epoch;
        for chunk in 1..=10 {
            probe.caller_frame_sent(SID, chunk, t0 + Duration::from_millis(u64::from(chunk)));
        }
        let (caller, _) = probe.report();
        assert_eq!(caller.frames_before_ai_ready, 10);
        assert_eq!(caller.frames_lost, 0);
        assert_eq!(caller.lost_percent(), 0.0);
        assert_eq!(tag_base(1), 1 << TAG_SHIFT);
        assert!(tag_base(MAX_CALLS - 1) + MAX_FRAMES_PER_CALL < OUTPUT_TAG_BASE);
    }
}
