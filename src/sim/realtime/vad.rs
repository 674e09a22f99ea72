//! The simulator's energy VAD over decoded μ-law input, on the input-buffer timeline
//! (milliseconds of audio received since the session started, 8 bytes per ms).
//!
//! Audio is judged in 20 ms frames. A frame is speech when its RMS (ignoring a frame tag's
//! bytes) reaches a level derived from `threshold`: −60 dBFS at 0, rising 5 dB per 0.1, so
//! the default 0.5 is −35 dBFS (RMS ≈ 580 of 32767). The carrier simulator's voiced
//! syllables sit around −25 to −20 dBFS; μ-law `0xFF` silence is −∞.
//! Speech starts after 40 ms of consecutive speech frames (`audio_start_ms` is the onset
//! minus `prefix_padding_ms`, not before the start of the uncommitted buffer) and stops
//! after `silence_duration_ms` of non-speech frames (`audio_end_ms` is the position then,
//! as the real server reports it).

use crate::sim::audio::{self, FRAME_BYTES, TAG_LEN};

use super::effective::VadSettings;

/// Bytes of μ-law per millisecond.
pub(crate) const BYTES_PER_MS: u64 = 8;
/// Consecutive speech frames before speech is declared.
const MIN_SPEECH_FRAMES: u32 = 2;
const FRAME_MS: u64 = audio::FRAME_MS;

/// What the VAD saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VadEvent {
    /// `input_audio_buffer.speech_started`.
    Started {
        /// Timeline position, ms.
        audio_start_ms: u64,
    },
    /// `input_audio_buffer.speech_stopped` (then a commit).
    Stopped {
        /// Timeline position, ms.
        audio_end_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle { run: u32, onset_ms: u64 },
    Speaking { silence_ms: u64 },
}

/// Energy VAD state of one session.
#[derive(Debug)]
pub(crate) struct Vad {
    bytes: u64,
    partial: Vec<u8>,
    state: State,
    floor_ms: u64,
}

impl Default for Vad {
    fn default() -> Self {
        Self {
            bytes: 0,
            partial: Vec::with_capacity(FRAME_BYTES),
            state: State::Idle {
                run: 0,
                onset_ms: 0,
            },
            floor_ms: 0,
        }
    }
}

/// RMS level (of 32767) a frame must reach to count as speech.
pub(crate) fn speech_level(threshold: f64) -> f64 {
    let db = -60.0 + 50.0 * threshold.clamp(0.0, 1.0);
    32767.0 * 10f64.powf(db / 20.0)
}

/// True when `frame` is speech at `threshold`.
pub(crate) fn is_speech(frame: &[u8], threshold: f64) -> bool {
    let body = if audio::read_tag(frame).is_some() {
        frame.get(TAG_LEN..).unwrap_or_default()
    } else {
        frame
    };
    audio::frame_energy(body) >= speech_level(threshold)
}

impl Vad {
    /// Position of the end of the audio received, ms.
    pub fn position_ms(&self) -> u64 {
        self.bytes / BYTES_PER_MS
    }

    /// True while the caller is talking.
    pub fn speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Forgets any speech in progress; the next turn starts at the current position
    /// (after a commit or a clear).
    pub fn reset(&mut self) {
        self.state = State::Idle {
            run: 0,
            onset_ms: 0,
        };
        self.floor_ms = self.position_ms();
    }

    /// Feeds decoded audio. With `settings` `None` (turn detection off) the timeline
    /// advances but nothing is detected.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        settings: Option<&VadSettings>,
        out: &mut Vec<VadEvent>,
    ) {
        if !self.partial.is_empty() {
            let need = FRAME_BYTES - self.partial.len();
            let take = need.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == FRAME_BYTES {
                let frame = std::mem::take(&mut self.partial);
                self.frame(&frame, settings, out);
                self.partial = frame;
                self.partial.clear();
            }
        }
        let mut chunks = bytes.chunks_exact(FRAME_BYTES);
        for frame in &mut chunks {
            self.frame(frame, settings, out);
        }
        self.partial.extend_from_slice(chunks.remainder());
    }

    fn frame(&mut self, frame: &[u8], settings: Option<&VadSettings>, out: &mut Vec<VadEvent>) {
        let start_ms = self.position_ms();
        self.bytes += frame.len() as u64;
        let end_ms = self.position_ms();
        let Some(settings) = settings else {
            return;
        };
        let speech = is_speech(frame, settings.threshold);
        self.state = match (self.state, speech) {
            (State::Idle { run, onset_ms }, true) => {
                let onset_ms = if run == 0 { start_ms } else { onset_ms };
                if run + 1 >= MIN_SPEECH_FRAMES {
                    let audio_start_ms = onset_ms
                        .saturating_sub(settings.prefix_padding_ms)
                        .max(self.floor_ms);
                    out.push(VadEvent::Started { audio_start_ms });
                    State::Speaking { silence_ms: 0 }
                } else {
                    State::Idle {
                        run: run + 1,
                        onset_ms,
                    }
                }
            }
            (State::Idle { .. }, false) => State::Idle {
                run: 0,
                onset_ms: 0,
            },
            (State::Speaking { .. }, true) => State::Speaking { silence_ms: 0 },
            (State::Speaking { silence_ms }, false) => {
                let silence_ms = silence_ms + FRAME_MS;
                if silence_ms >= settings.silence_duration_ms {
                    out.push(VadEvent::Stopped {
                        audio_end_ms: end_ms,
                    });
                    self.floor_ms = end_ms;
                    State::Idle {
                        run: 0,
                        onset_ms: 0,
                    }
                } else {
                    State::Speaking { silence_ms }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::audio::{silence_frame, speech_frames, tag_frame};

    fn settings() -> VadSettings {
        VadSettings {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            create_response: true,
            interrupt_response: true,
        }
    }

    fn feed(vad: &mut Vad, frames: &[[u8; FRAME_BYTES]], s: &VadSettings) -> Vec<VadEvent> {
        let mut out = Vec::new();
        for f in frames {
            vad.push(f, Some(s), &mut out);
        }
        out
    }

    #[test]
    fn speech_then_silence_is_one_turn() {
        let s = settings();
        let mut vad = Vad::default();
        let silence = vec![silence_frame(); 25];
        assert!(feed(&mut vad, &silence, &s).is_empty());
        let events = feed(&mut vad, &speech_frames(Duration::from_millis(1000)), &s);
        let [VadEvent::Started { audio_start_ms }] = events[..] else {
            panic!("{events:?}")
        };
        // Onset at 500 ms (within the first syllable), minus 300 ms of padding.
        assert!((200..=260).contains(&audio_start_ms), "{audio_start_ms}");
        assert!(vad.speaking());
        let events = feed(&mut vad, &vec![silence_frame(); 30], &s);
        // The last syllable's final 40 ms are a gap: speech ends at 1460 ms, plus 500 ms.
        assert_eq!(
            events,
            vec![VadEvent::Stopped {
                audio_end_ms: 1460 + 500
            }]
        );
        assert_eq!(vad.position_ms(), 2100);
        assert!(!vad.speaking());
    }

    #[test]
    fn tagged_silence_is_silence_and_odd_chunking_is_fine() {
        let s = settings();
        let mut vad = Vad::default();
        let mut out = Vec::new();
        for id in 0..100_u32 {
            let mut f = silence_frame();
            tag_frame(&mut f, id);
            vad.push(&f, Some(&s), &mut out);
        }
        assert!(out.is_empty());
        let speech: Vec<u8> = speech_frames(Duration::from_millis(600))
            .iter()
            .flatten()
            .copied()
            .collect();
        for chunk in speech.chunks(77) {
            vad.push(chunk, Some(&s), &mut out);
        }
        assert!(matches!(out[..], [VadEvent::Started { .. }]), "{out:?}");
        assert_eq!(vad.position_ms(), 2000 + 600);
        // Without settings nothing is detected.
        let mut off = Vad::default();
        let mut none = Vec::new();
        off.push(&speech, None, &mut none);
        assert!(none.is_empty());
        assert_eq!(off.position_ms(), 600);
    }

    #[test]
    fn threshold_maps_to_levels() {
        assert!((speech_level(0.5) - 582.7).abs() < 1.0);
        assert!(speech_level(1.0) > speech_level(0.5));
        let loud = speech_frames(Duration::from_millis(1000));
        let voiced = loud.iter().filter(|f| is_speech(&f[..], 0.5)).count();
        assert!(voiced >= 35, "{voiced}");
        assert!(!is_speech(&silence_frame(), 0.0));
        assert_eq!(loud.iter().filter(|f| is_speech(&f[..], 1.0)).count(), 0);
    }
}
