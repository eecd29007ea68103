//! Resampling, the crate's one of each kind: a streaming 2x polyphase FIR for 8 kHz <-> 16 kHz
//! (call audio, frame by frame, keeping state), and [`resample`] for any rate on a whole signal
//! (rubato's FFT resampler: synthesized sentences, WAV files for recognition, the greeting).

use std::f64::consts::PI;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::audioadapter_buffers::owned::InterleavedOwned;
use rubato::{Fft, FixedSync, Resampler};

#[derive(Debug, thiserror::Error)]
#[error("cannot resample from {from} Hz to {to} Hz: {message}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub message: String,
}

const TAPS: usize = 32;

fn kaiser_like_window(n: usize, len: usize) -> f64 {
    // Blackman window.
    let x = n as f64 / (len - 1) as f64;
    0.42 - 0.5 * (2.0 * PI * x).cos() + 0.08 * (4.0 * PI * x).cos()
}

/// Low-pass taps at 16 kHz with cutoff `fc` (cycles per sample), unity DC gain.
fn lowpass(fc: f64) -> [f32; TAPS] {
    let mut taps = [0f64; TAPS];
    let mid = (TAPS - 1) as f64 / 2.0;
    for (n, t) in taps.iter_mut().enumerate() {
        let x = n as f64 - mid;
        let sinc = if x == 0.0 {
            2.0 * fc
        } else {
            (2.0 * PI * fc * x).sin() / (PI * x)
        };
        *t = sinc * kaiser_like_window(n, TAPS);
    }
    let sum: f64 = taps.iter().sum();
    let mut out = [0f32; TAPS];
    for (o, t) in out.iter_mut().zip(taps) {
        *o = (t / sum) as f32;
    }
    out
}

fn sat(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

/// 8 kHz -> 16 kHz, streaming (keeps filter state between frames).
pub struct Upsampler {
    /// Even and odd polyphase taps, reversed so each output is one contiguous dot product.
    even: [f32; TAPS / 2],
    odd: [f32; TAPS / 2],
    /// The last `TAPS / 2 - 1` input samples, then the current frame.
    buf: Vec<f32>,
}

impl Default for Upsampler {
    fn default() -> Self {
        let taps = lowpass(0.23);
        let half = TAPS / 2;
        let mut even = [0f32; TAPS / 2];
        let mut odd = [0f32; TAPS / 2];
        for m in 0..half {
            even[m] = 2.0 * taps[2 * (half - 1 - m)];
            odd[m] = 2.0 * taps[2 * (half - 1 - m) + 1];
        }
        Upsampler {
            even,
            odd,
            buf: vec![0.0; half - 1],
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Upsampler {
    /// Appends `2 * input.len()` samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let half = TAPS / 2;
        self.buf.extend(input.iter().map(|&s| s as f32));
        for i in 0..input.len() {
            let w = &self.buf[i..i + half];
            out.push(sat(dot(&self.even, w)));
            out.push(sat(dot(&self.odd, w)));
        }
        let keep = self.buf.len() - (half - 1);
        self.buf.drain(..keep);
    }
}

/// 16 kHz -> 8 kHz, streaming.
pub struct Downsampler {
    /// Taps reversed for contiguous dot products.
    taps: [f32; TAPS],
    /// The last `TAPS - 2` input samples, then the current frame.
    buf: Vec<f32>,
}

impl Default for Downsampler {
    fn default() -> Self {
        let mut taps = lowpass(0.23);
        taps.reverse();
        Downsampler {
            taps,
            buf: vec![0.0; TAPS - 2],
        }
    }
}

impl Downsampler {
    /// Appends `input.len() / 2` samples to `out` (an odd trailing sample is dropped).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let n = input.len() / 2;
        self.buf.extend(input[..2 * n].iter().map(|&s| s as f32));
        for j in 0..n {
            out.push(sat(dot(&self.taps, &self.buf[2 * j..2 * j + TAPS])));
        }
        let keep = self.buf.len() - (TAPS - 2);
        self.buf.drain(..keep);
    }
}

/// Resamples mono audio; the output has `len * to / from` samples (rounded).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let err = |message: String| ResampleError { from, to, message };
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| err(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| err(e.to_string()))?;
    let needed = resampler.process_all_needed_output_len(samples.len());
    let mut output = InterleavedOwned::<f32>::new(0.0, 1, needed);
    let (_, produced) = resampler
        .process_all_into_buffer(&input, &mut output, samples.len(), None)
        .map_err(|e| err(e.to_string()))?;
    let mut out = output.take_data();
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (10000.0 * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn up_and_down_keep_a_voice_tone_and_cut_aliases() {
        let input = tone(1000.0, 8000, 1600);
        let mut up = Upsampler::default();
        let mut wide = Vec::new();
        for f in input.chunks(160) {
            up.process(f, &mut wide);
        }
        assert_eq!(wide.len(), 3200);
        let r = rms(&wide[400..]);
        assert!((r - 7071.0).abs() < 500.0, "up rms {r}");
        let mut down = Downsampler::default();
        let mut narrow = Vec::new();
        for f in wide.chunks(320) {
            down.process(f, &mut narrow);
        }
        assert_eq!(narrow.len(), 1600);
        assert!((rms(&narrow[200..]) - 7071.0).abs() < 600.0);
        // A 6 kHz tone at 16 kHz has no place at 8 kHz: it must be attenuated.
        let high = tone(6000.0, 16000, 3200);
        let mut d = Downsampler::default();
        let mut o = Vec::new();
        d.process(&high, &mut o);
        assert!(rms(&o[100..]) < 300.0, "alias rms {}", rms(&o[100..]));
    }

    #[test]
    fn resample_keeps_duration_and_tone() {
        let from = 8000;
        let tone: Vec<f32> = (0..8000)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / from as f32).sin() * 0.5)
            .collect();
        let out = resample(&tone, from, 16000).unwrap();
        assert!((out.len() as i64 - 16000).abs() < 64, "{}", out.len());
        let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((0.4..0.6).contains(&peak), "{peak}");
    }

    #[test]
    fn any_rate_keeps_duration_and_level() {
        let input: Vec<f32> = tone(440.0, 44100, 44100)
            .into_iter()
            .map(|s| s as f32 / 32768.0)
            .collect();
        let out = resample(&input, 44100, 8000).unwrap();
        assert!((out.len() as i64 - 8000).abs() < 64, "{}", out.len());
        let level = (out[100..7900].iter().map(|s| s * s).sum::<f32>() / 7800.0).sqrt();
        assert!((level - 7071.0 / 32768.0).abs() < 0.01, "{level}");
        assert_eq!(resample(&input[..10], 8000, 8000).unwrap(), input[..10]);
    }
}
