//! Audio for the simulators: G.711 μ-law (PCMU, 8 kHz, mono) conversion, frame energy,
//! synthetic speech-like and silent 20 ms frames, and frame tagging.
//!
//! Speech is a deterministic sequence of voiced "syllables": 200 ms each, a 160 ms tone
//! burst (fundamental 150–250 Hz plus three harmonics) under a half-sine amplitude envelope,
//! then 40 ms of silence. It carries enough energy for an energy-based VAD to fire, and the
//! gaps keep it from looking like a constant tone. Silence is μ-law `0xFF` (linear zero).
//!
//! # Frame tags
//!
//! A load generator needs to match audio that comes back with the frame that caused it.
//! [`tag_frame`] overwrites the first [`TAG_LEN`] bytes of a frame with
//! `b"SVT"` + the id as 4 bytes big-endian + a check byte (`0x5A` XOR the four id bytes).
//! [`read_tag`] recognises the marker and the check byte and returns the id. A tag costs
//! 1 ms of audio per frame (an audible click, harmless for tests).

/// Samples per second.
pub const SAMPLE_RATE: u32 = 8000;
/// Milliseconds per frame.
pub const FRAME_MS: u64 = 20;
/// Bytes (= samples) per 20 ms frame.
pub const FRAME_BYTES: usize = 160;
/// μ-law byte of linear zero (digital silence).
pub const MULAW_SILENCE: u8 = 0xFF;
/// Length of a frame tag in bytes.
pub const TAG_LEN: usize = 8;

const TAG_MARKER: [u8; 3] = *b"SVT";
const TAG_CHECK_SEED: u8 = 0x5A;
const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;
/// Samples per syllable (200 ms).
const SYLLABLE_SAMPLES: u64 = 1600;
/// Voiced samples per syllable (160 ms); the rest is a gap.
const VOICED_SAMPLES: u64 = 1280;
/// Peak amplitude of the speech signal (of 32767).
const SPEECH_PEAK: f64 = 9000.0;
/// Relative amplitudes of the fundamental and its harmonics.
const HARMONICS: [f64; 4] = [1.0, 0.5, 0.3, 0.2];

/// One 20 ms frame of μ-law audio.
pub type Frame = [u8; FRAME_BYTES];

/// Encodes a 16-bit linear sample as G.711 μ-law.
pub fn linear_to_mulaw(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign: u8 = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0
    };
    magnitude = magnitude.min(CLIP) + BIAS;
    let mut exponent: u8 = 7;
    let mut mask: i32 = 0x4000;
    while exponent > 0 && magnitude & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0F) as u8;
    !(sign | (exponent << 4) | mantissa)
}

/// Decodes a G.711 μ-law byte to a 16-bit linear sample.
pub fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    let value = if u & 0x80 != 0 { -magnitude } else { magnitude };
    value as i16
}

/// Root-mean-square amplitude (0 to 32767) of μ-law audio; 0 for an empty slice.
pub fn frame_energy(frame: &[u8]) -> f64 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum: f64 = frame
        .iter()
        .map(|&b| {
            let s = f64::from(mulaw_to_linear(b));
            s * s
        })
        .sum();
    (sum / frame.len() as f64).sqrt()
}

/// One 20 ms frame of digital silence.
pub fn silence_frame() -> Frame {
    [MULAW_SILENCE; FRAME_BYTES]
}

/// Number of 20 ms frames covering `duration` (rounded up).
pub fn frames_for(duration: std::time::Duration) -> usize {
    let ms = duration.as_millis();
    usize::try_from(ms.div_ceil(u128::from(FRAME_MS))).unwrap_or(usize::MAX)
}

/// Speech-like frames covering `duration` (rounded up to whole frames).
pub fn speech_frames(duration: std::time::Duration) -> Vec<Frame> {
    let mut synth = SpeechSynth::new();
    (0..frames_for(duration))
        .map(|_| synth.next_frame())
        .collect()
}

/// Embeds `id` in the first [`TAG_LEN`] bytes of `frame` (see the module docs). Frames
/// shorter than [`TAG_LEN`] are left unchanged.
pub fn tag_frame(frame: &mut [u8], id: u32) {
    let Some(head) = frame.get_mut(..TAG_LEN) else {
        return;
    };
    let id_bytes = id.to_be_bytes();
    head[..3].copy_from_slice(&TAG_MARKER);
    head[3..7].copy_from_slice(&id_bytes);
    head[7] = tag_check(id_bytes);
}

/// The id embedded by [`tag_frame`], if `frame` starts with a valid tag.
pub fn read_tag(frame: &[u8]) -> Option<u32> {
    let head = frame.get(..TAG_LEN)?;
    if head[..3] != TAG_MARKER {
        return None;
    }
    let id_bytes = [head[3], head[4], head[5], head[6]];
    (head[7] == tag_check(id_bytes)).then(|| u32::from_be_bytes(id_bytes))
}

fn tag_check(id_bytes: [u8; 4]) -> u8 {
    id_bytes.iter().fold(TAG_CHECK_SEED, |acc, b| acc ^ b)
}

/// Frames of every generator's output computed once and shared (60 s): every
/// [`SpeechSynth`] starts in the same state, so its first frames are always these, and a
/// load generator running thousands of callers need not compute sines for each.
const CACHED_FRAMES: usize = 3000;

/// The shared start of every generator's output, and the generator's state after it.
struct SpeechCache {
    frames: Vec<Frame>,
    after: SpeechSynth,
}

fn speech_cache() -> &'static SpeechCache {
    static CACHE: std::sync::OnceLock<SpeechCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        let mut synth = SpeechSynth::new();
        let frames = (0..CACHED_FRAMES).map(|_| synth.compute_frame()).collect();
        SpeechCache {
            frames,
            after: synth,
        }
    })
}

/// A deterministic generator of speech-like μ-law audio (see the module docs); successive
/// frames continue the signal without discontinuities.
#[derive(Debug, Clone)]
pub struct SpeechSynth {
    sample: u64,
    phase: f64,
    f0: f64,
    rng: u32,
    /// Frames produced so far (the first [`CACHED_FRAMES`] come from the shared cache).
    frame: usize,
}

impl Default for SpeechSynth {
    fn default() -> Self {
        Self::new()
    }
}

impl SpeechSynth {
    /// A generator starting at the beginning of a syllable.
    pub fn new() -> Self {
        Self {
            sample: 0,
            phase: 0.0,
            f0: 180.0,
            rng: 0x2545_F491,
            frame: 0,
        }
    }

    /// The next 20 ms frame.
    pub fn next_frame(&mut self) -> Frame {
        if self.frame < CACHED_FRAMES {
            let cache = speech_cache();
            let frame = cache.frames[self.frame];
            self.frame += 1;
            if self.frame == CACHED_FRAMES {
                *self = cache.after.clone();
            }
            return frame;
        }
        self.compute_frame()
    }

    /// Computes the next frame from the generator's state.
    fn compute_frame(&mut self) -> Frame {
        self.frame += 1;
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        for byte in &mut frame {
            *byte = linear_to_mulaw(self.next_sample());
        }
        frame
    }

    fn next_sample(&mut self) -> i16 {
        let pos = self.sample % SYLLABLE_SAMPLES;
        if pos == 0 {
            // xorshift32: a new fundamental in 150–250 Hz for every syllable.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            self.f0 = 150.0 + f64::from(self.rng % 101);
        }
        self.sample += 1;
        if pos >= VOICED_SAMPLES {
            return 0;
        }
        let envelope = (std::f64::consts::PI * pos as f64 / VOICED_SAMPLES as f64).sin();
        self.phase += std::f64::consts::TAU * self.f0 / f64::from(SAMPLE_RATE);
        if self.phase > std::f64::consts::TAU {
            self.phase -= std::f64::consts::TAU;
        }
        let total: f64 = HARMONICS.iter().sum();
        let wave: f64 = HARMONICS
            .iter()
            .enumerate()
            .map(|(k, a)| a * ((k as f64 + 1.0) * self.phase).sin())
            .sum::<f64>()
            / total;
        (wave * envelope * SPEECH_PEAK) as i16
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn mulaw_round_trips_within_quantisation_error() {
        assert_eq!(mulaw_to_linear(MULAW_SILENCE), 0);
        assert_eq!(linear_to_mulaw(0), MULAW_SILENCE);
        for sample in (-32768_i32..=32767).step_by(97) {
            let s = sample as i16;
            let back = i32::from(mulaw_to_linear(linear_to_mulaw(s)));
            let error = (back - sample.clamp(-CLIP, CLIP)).abs();
            // μ-law steps grow with magnitude: at most 1/16 of the value plus the bias.
            assert!(error <= sample.abs() / 16 + 8, "{sample} -> {back}");
        }
        // Every byte decodes and re-encodes to itself (except the duplicate zero, 0x7F).
        for byte in 0..=255_u8 {
            if byte == 0x7F {
                continue;
            }
            assert_eq!(linear_to_mulaw(mulaw_to_linear(byte)), byte, "{byte:#x}");
        }
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(mulaw_to_linear(0x80), 32124);
    }

    #[test]
    fn speech_has_energy_and_silence_has_none() {
        assert_eq!(frame_energy(&silence_frame()), 0.0);
        assert_eq!(frame_energy(&[]), 0.0);
        let frames = speech_frames(Duration::from_millis(1000));
        assert_eq!(frames.len(), 50);
        let loud = frames
            .iter()
            .filter(|f| frame_energy(&f[..]) > 1000.0)
            .count();
        // Most of every syllable is voiced; the gaps are quiet.
        assert!(loud >= 30, "{loud} loud frames");
        let quiet = frames
            .iter()
            .filter(|f| frame_energy(&f[..]) < 100.0)
            .count();
        assert!(quiet >= 5, "{quiet} quiet frames");
        assert_eq!(frames_for(Duration::from_millis(21)), 2);
        assert_eq!(frames_for(Duration::ZERO), 0);
        // Deterministic.
        assert_eq!(frames, speech_frames(Duration::from_millis(1000)));
    }

    #[test]
    fn the_shared_cache_is_exactly_what_the_generator_computes() {
        let mut cached = SpeechSynth::new();
        let mut computed = SpeechSynth::new();
        for i in 0..CACHED_FRAMES + 200 {
            assert_eq!(cached.next_frame(), computed.compute_frame(), "frame {i}");
        }
        assert_eq!(cached.frame, computed.frame);
    }

    #[test]
    fn tags_round_trip_and_are_not_found_in_plain_audio() {
        let mut frame = silence_frame();
        assert_eq!(read_tag(&frame), None);
        tag_frame(&mut frame, 0xDEAD_BEEF);
        assert_eq!(read_tag(&frame), Some(0xDEAD_BEEF));
        assert_eq!(&frame[..3], b"SVT");
        assert!(frame[TAG_LEN..].iter().all(|&b| b == MULAW_SILENCE));
        frame[7] ^= 1;
        assert_eq!(read_tag(&frame), None);
        let mut short = [0_u8; 4];
        tag_frame(&mut short, 7);
        assert_eq!(short, [0; 4]);
        assert_eq!(read_tag(&short), None);
        for f in speech_frames(Duration::from_millis(2000)) {
            assert_eq!(read_tag(&f), None);
        }
    }
}
