//! What the media task does with a frame from Twilio: caller audio to the model socket (or
//! kept until a model session is ready), mark echoes accounted in the playback, and the few
//! control events cast to the actor.

use std::time::Instant;

use metrics::{Counter, counter};

use super::super::frames::{CallerFrame, sniff_caller, valid_audio};
use super::super::playback::MarkEcho;
use super::super::{CallMsg, TwilioFrame};
use super::{EARLY_AUDIO_FRAMES, Media};
use crate::ending::EndReason;
use crate::media::TwilioInbound;

/// The metric handles of Twilio's frames, registered once per call.
pub(super) struct CallerMetrics {
    pub(super) relayed: Counter,
    pub(super) dropped: Counter,
    early: Counter,
    bad: Counter,
    unknown: Counter,
    unexpected: Counter,
}

impl CallerMetrics {
    pub(super) fn new() -> Self {
        Self {
            relayed: counter!("media_frames_total", "leg" => "twilio", "direction" => "inbound"),
            dropped: counter!("media_frames_dropped_total", "leg" => "ai"),
            early: counter!("media_frames_early_total", "leg" => "twilio"),
            bad: counter!("media_bad_frames_total", "leg" => "twilio"),
            unknown: counter!("media_unknown_events_total", "leg" => "twilio"),
            unexpected: counter!("media_unexpected_events_total", "leg" => "twilio"),
        }
    }
}

/// The reason a Twilio socket went away, as the media route reports it.
pub(super) fn gone_reason(reason: &str) -> (EndReason, Option<String>) {
    match reason {
        "socket_closed" => (EndReason::SocketClosed, None),
        "socket_error" => (EndReason::SocketError, None),
        other => (EndReason::SocketError, Some(other.to_owned())),
    }
}

impl Media {
    /// One frame from Twilio, or the end of its stream.
    pub(super) fn on_caller(&mut self, frame: Option<TwilioFrame>) {
        let text = match frame {
            Some(TwilioFrame::Text(text)) => text,
            Some(TwilioFrame::Closed(reason)) => {
                let (reason, detail) = gone_reason(&reason);
                self.caller_gone(CallMsg::TwilioGone(reason, detail));
                return;
            }
            None => {
                self.caller_gone(CallMsg::TwilioGone(EndReason::SocketClosed, None));
                return;
            }
        };
        // Media and mark echoes (the hot path) are read borrowed; the rest in full.
        match sniff_caller(text.as_str()) {
            Ok(CallerFrame::Media(payload)) => {
                if valid_audio(payload.as_str()) {
                    self.caller_audio(payload.as_str());
                } else {
                    self.metrics.caller.bad.increment(1);
                }
                return;
            }
            Ok(CallerFrame::Mark(name)) => {
                let echo = self
                    .playback
                    .lock()
                    .map(|mut p| p.on_mark(name.as_str(), Instant::now()))
                    .unwrap_or(MarkEcho::Ignored);
                if echo == MarkEcho::Drained {
                    let _ = self.actor.cast(CallMsg::PlaybackDrained);
                }
                return;
            }
            Ok(CallerFrame::Other) | Err(_) => {}
        }
        match TwilioInbound::parse(text.as_str()) {
            Ok(TwilioInbound::Dtmf { dtmf, .. }) => {
                let _ = self.actor.cast(CallMsg::Dtmf(dtmf.digit));
            }
            Ok(TwilioInbound::Stop { .. }) => self.caller_gone(CallMsg::Stop),
            Ok(TwilioInbound::Unknown) => self.metrics.caller.unknown.increment(1),
            Ok(TwilioInbound::Connected { .. } | TwilioInbound::Start { .. }) => {
                self.metrics.caller.unexpected.increment(1);
            }
            // A media or mark frame the sniff did not take is malformed.
            Ok(TwilioInbound::Media { .. } | TwilioInbound::Mark { .. }) | Err(_) => {
                self.metrics.caller.bad.increment(1);
            }
        }
    }

    /// Twilio's stream is over (`stop`, closed): nothing more is read from it; the write
    /// half stays until the actor closes it.
    fn caller_gone(&mut self, msg: CallMsg) {
        self.incoming = None;
        let _ = self.actor.cast(msg);
    }

    /// One validated base64 payload: to the model socket when a session is ready (written
    /// at the next flush), otherwise kept (bounded, the oldest dropped) until one is.
    fn caller_audio(&mut self, payload: &str) {
        if let Some(model) = self.model.as_mut().filter(|m| m.ready()) {
            model.feed_audio(payload, &self.metrics.caller);
            return;
        }
        if self.early.len() == EARLY_AUDIO_FRAMES {
            self.early.pop_front();
            self.metrics.caller.dropped.increment(1);
        }
        self.early.push_back(payload.to_owned());
        self.metrics.caller.early.increment(1);
    }
}
