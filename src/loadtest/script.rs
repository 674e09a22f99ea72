//! What each simulated caller does: a real-time conversation of the requested length.
//!
//! The caller listens to the greeting, then takes turns: it speaks for 0.8–1.8 s and either
//! waits 4–5 s for the agent's whole answer, or (every third turn) starts speaking again
//! 1.0–1.4 s after it stopped, while the answer is playing: a barge-in. The call ends with
//! at least 2 s of silence (so the last answer is over) and a hang-up. Timings are jittered
//! per call with a deterministic generator, so calls do not speak in lockstep and a run is
//! reproducible. Every frame is tagged (see [`super::probe`]).

use std::time::Duration;

use crate::sim::carrier::CallerScript;

use super::probe::tag_base;

/// What one caller's script contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScriptPlan {
    /// Caller turns.
    pub turns: u32,
    /// Turns that start while the agent's previous answer should still be playing.
    pub barge_ins: u32,
}

/// xorshift32, seeded per call.
struct Jitter(u32);

impl Jitter {
    fn new(seed: u32) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9) | 1)
    }

    /// A duration uniformly in `[low, high]` ms (10 ms steps).
    fn ms(&mut self, low: u64, high: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        let steps = (high.saturating_sub(low)) / 10 + 1;
        Duration::from_millis(low + u64::from(self.0) % steps * 10)
    }
}

/// The script of call `index`, lasting `length` from the start of its media stream.
pub fn caller_script(index: u32, length: Duration) -> (CallerScript, ScriptPlan) {
    let mut jitter = Jitter::new(index.wrapping_add(1));
    let tail = Duration::from_secs(2).min(length / 3);
    let mut script = CallerScript::default();
    let mut plan = ScriptPlan::default();
    let mut t = jitter.ms(2000, 3000).min(length / 3);
    script = script.silence(t);
    loop {
        let speak = jitter.ms(800, 1800);
        let barge_in = plan.turns % 3 == 2;
        let pause = if barge_in {
            jitter.ms(1000, 1400)
        } else {
            jitter.ms(4000, 5000)
        };
        if t + speak + pause + tail > length {
            break;
        }
        plan.turns += 1;
        if barge_in {
            plan.barge_ins += 1;
        }
        script = script
            .speak(speak, format!("caller {index} turn {}", plan.turns))
            .silence(pause);
        t += speak + pause;
    }
    let script = script
        .silence(length.saturating_sub(t))
        .hang_up()
        .with_max_duration(length + Duration::from_secs(30))
        .with_tag_base(tag_base(index));
    (script, plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::carrier::CallerStep;

    fn total(script: &CallerScript) -> Duration {
        script
            .steps
            .iter()
            .map(|s| match s {
                CallerStep::Silence(d) => *d,
                CallerStep::Speak { duration, .. } => *duration,
                CallerStep::Dtmf(_) | CallerStep::HangUp => Duration::ZERO,
            })
            .sum()
    }

    #[test]
    fn scripts_fill_the_call_with_turns_and_barge_ins_and_end_quietly() {
        let length = Duration::from_secs(60);
        let (script, plan) = caller_script(7, length);
        assert_eq!(total(&script), length);
        assert_eq!(script.steps.last(), Some(&CallerStep::HangUp));
        assert!(matches!(
            script.steps[script.steps.len() - 2],
            CallerStep::Silence(d) if d >= Duration::from_secs(2)
        ));
        assert!((8..=14).contains(&plan.turns), "{plan:?}");
        assert_eq!(plan.barge_ins, plan.turns / 3);
        assert!(script.tag_frames);
        assert_eq!(script.tag_base, tag_base(7));
        // Deterministic per call, different across calls.
        assert_eq!(caller_script(7, length), (script.clone(), plan));
        assert_ne!(caller_script(8, length).0.steps, script.steps);
    }

    #[test]
    fn short_calls_just_listen() {
        let length = Duration::from_secs(3);
        let (script, plan) = caller_script(0, length);
        assert_eq!(plan, ScriptPlan::default());
        assert_eq!(total(&script), length);
        assert!(
            !script
                .steps
                .iter()
                .any(|s| matches!(s, CallerStep::Speak { .. }))
        );
    }
}
