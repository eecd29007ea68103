//! Resampling: a streaming 2x polyphase FIR for 8 kHz <-> 16 kHz, and an offline windowed-sinc
//! converter for any rate (used once per greeting file).

use std::f64::consts::PI;

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

/// Converts a whole signal from `from` Hz to `to` Hz with a windowed-sinc kernel.
pub fn resample_offline(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    let ratio = to as f64 / from as f64;
    let cutoff = 0.45 * ratio.min(1.0); // cycles per input sample
    let half_width = (16.0 / ratio.min(1.0)).ceil() as i64;
    let out_len = (input.len() as f64 * ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let center = i as f64 / ratio;
        let c = center.floor() as i64;
        let mut acc = 0f64;
        let mut norm = 0f64;
        for j in (c - half_width + 1)..=(c + half_width) {
            if j < 0 || j as usize >= input.len() {
                continue;
            }
            let x = j as f64 - center;
            let sinc = if x.abs() < 1e-9 {
                2.0 * cutoff
            } else {
                (2.0 * PI * cutoff * x).sin() / (PI * x)
            };
            let w = 0.5 + 0.5 * (PI * x / half_width as f64).cos();
            let k = sinc * w;
            acc += k * input[j as usize] as f64;
            norm += k;
        }
        out.push(sat(if norm.abs() > 1e-9 {
            (acc / norm) as f32
        } else {
            0.0
        }));
    }
    out
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
    fn offline_any_rate() {
        let input = tone(440.0, 44100, 44100);
        let out = resample_offline(&input, 44100, 8000);
        assert_eq!(out.len(), 8000);
        assert!((rms(&out[100..7900]) - 7071.0).abs() < 300.0);
        assert_eq!(resample_offline(&input[..10], 8000, 8000), input[..10]);
    }
}
