//! Scripted callers: what the person on the phone "says" into a media stream, as a list of
//! steps played in 20 ms frames (speech-like tone bursts, silence, key presses, hang-up).

use std::collections::VecDeque;
use std::time::Duration;

use crate::sim::audio::{self, Frame, SpeechSynth};

/// One step of a caller script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerStep {
    /// Silence for this long.
    Silence(Duration),
    /// Speech-like audio for `duration`; `text` is what the caller "means" (for reports).
    Speak {
        /// How long the caller speaks.
        duration: Duration,
        /// The words, recorded but not synthesised.
        text: String,
    },
    /// Key presses, sent as one `dtmf` event per character.
    Dtmf(String),
    /// The caller hangs up: the stream gets `stop` and the call ends `completed`.
    HangUp,
}

/// What a simulated caller does once a media stream is open.
///
/// The steps play in order. When they run out without [`CallerStep::HangUp`], the caller
/// stays on the line sending silence until the server ends the stream or `max_duration`
/// (measured from the start of the stream) passes, at which point the caller hangs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerScript {
    /// The steps.
    pub steps: Vec<CallerStep>,
    /// The longest the caller stays on a stream (default 60 s).
    pub max_duration: Duration,
    /// Tag every frame sent with its chunk number (see [`audio::tag_frame`]) so returned
    /// audio can be matched with the frame that caused it.
    pub tag_frames: bool,
    /// Added to the chunk number in every tag (default 0), so the tags of concurrent calls
    /// differ: a load generator gives each call its own range.
    pub tag_base: u32,
}

impl Default for CallerScript {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            max_duration: Duration::from_secs(60),
            tag_frames: false,
            tag_base: 0,
        }
    }
}

impl CallerScript {
    /// A script of `steps` with the default limits.
    pub fn new(steps: Vec<CallerStep>) -> Self {
        Self {
            steps,
            ..Self::default()
        }
    }

    /// Appends silence.
    pub fn silence(mut self, duration: Duration) -> Self {
        self.steps.push(CallerStep::Silence(duration));
        self
    }

    /// Appends speech.
    pub fn speak(mut self, duration: Duration, text: impl Into<String>) -> Self {
        self.steps.push(CallerStep::Speak {
            duration,
            text: text.into(),
        });
        self
    }

    /// Appends key presses.
    pub fn dtmf(mut self, digits: impl Into<String>) -> Self {
        self.steps.push(CallerStep::Dtmf(digits.into()));
        self
    }

    /// Appends a hang-up.
    pub fn hang_up(mut self) -> Self {
        self.steps.push(CallerStep::HangUp);
        self
    }

    /// Sets the longest time on a stream.
    pub fn with_max_duration(mut self, max_duration: Duration) -> Self {
        self.max_duration = max_duration;
        self
    }

    /// Tags every frame (for a load generator).
    pub fn with_tagged_frames(mut self) -> Self {
        self.tag_frames = true;
        self
    }

    /// Tags every frame with `base` + its chunk number.
    pub fn with_tag_base(mut self, base: u32) -> Self {
        self.tag_frames = true;
        self.tag_base = base;
        self
    }
}

/// The caller's output for one 20 ms tick.
#[derive(Debug, Default)]
pub(crate) struct Tick {
    /// Digits pressed now, in order.
    pub dtmf: Vec<String>,
    /// The audio frame, unless the caller hangs up.
    pub frame: Option<Frame>,
    /// A `Speak` step started with this text.
    pub started_speaking: Option<String>,
    /// The last frame of a `Speak` step.
    pub stopped_speaking: bool,
    /// The caller hangs up (no frame).
    pub hang_up: bool,
}

#[derive(Debug)]
enum Active {
    Silence(usize),
    Speech(usize),
}

/// Position in a script; survives across streams of the same call.
#[derive(Debug)]
pub(crate) struct CallerCursor {
    steps: VecDeque<CallerStep>,
    current: Option<Active>,
    synth: SpeechSynth,
}

impl CallerCursor {
    /// A cursor at the start of `script`.
    pub fn new(script: &CallerScript) -> Self {
        Self {
            steps: script.steps.iter().cloned().collect(),
            current: None,
            synth: SpeechSynth::new(),
        }
    }

    /// The output for the next tick.
    pub fn tick(&mut self) -> Tick {
        let mut tick = Tick::default();
        loop {
            match self.current.take() {
                Some(Active::Silence(left)) if left > 0 => {
                    tick.frame = Some(audio::silence_frame());
                    if left > 1 {
                        self.current = Some(Active::Silence(left - 1));
                    }
                    return tick;
                }
                Some(Active::Speech(left)) if left > 0 => {
                    tick.frame = Some(self.synth.next_frame());
                    if left > 1 {
                        self.current = Some(Active::Speech(left - 1));
                    } else {
                        tick.stopped_speaking = true;
                    }
                    return tick;
                }
                _ => {}
            }
            match self.steps.pop_front() {
                None => {
                    tick.frame = Some(audio::silence_frame());
                    return tick;
                }
                Some(CallerStep::Silence(d)) => {
                    self.current = Some(Active::Silence(audio::frames_for(d)))
                }
                Some(CallerStep::Speak { duration, text }) => {
                    tick.started_speaking = Some(text);
                    self.current = Some(Active::Speech(audio::frames_for(duration)));
                }
                Some(CallerStep::Dtmf(digits)) => {
                    tick.dtmf.extend(digits.chars().map(String::from));
                }
                Some(CallerStep::HangUp) => {
                    tick.hang_up = true;
                    return tick;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_plays_steps_in_frames() {
        let script = CallerScript::default()
            .silence(Duration::from_millis(40))
            .speak(Duration::from_millis(60), "hello")
            .dtmf("1#")
            .hang_up();
        let mut cursor = CallerCursor::new(&script);
        let t = cursor.tick();
        assert_eq!(t.frame, Some(audio::silence_frame()));
        assert!(cursor.tick().frame.is_some());
        let t = cursor.tick();
        assert_eq!(t.started_speaking.as_deref(), Some("hello"));
        assert!(audio::frame_energy(&t.frame.expect("frame")) > 0.0);
        assert!(!cursor.tick().stopped_speaking);
        assert!(cursor.tick().stopped_speaking);
        let t = cursor.tick();
        assert_eq!(t.dtmf, vec!["1", "#"]);
        assert!(t.hang_up);
        assert!(t.frame.is_none());
        assert!(cursor.steps.is_empty() && cursor.current.is_none());
        // After the script: silence forever.
        assert_eq!(cursor.tick().frame, Some(audio::silence_frame()));
    }
}
