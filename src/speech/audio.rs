//! Audio in and out of the engines: WAV files (any rate, mono or stereo, 8/16/24/32-bit PCM or
//! float) to mono `f32`, resampling (rubato's FFT resampler), G.711 μ-law for telephone audio.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::audioadapter_buffers::owned::InterleavedOwned;
use rubato::{Fft, FixedSync, Resampler};

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{}: not a readable WAV file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: truncated WAV file: the header promises {expected} samples, the file holds {got}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("{}: {message}", path.display())]
    Write { path: PathBuf, message: String },
    #[error("cannot resample from {from} Hz to {to} Hz: {message}")]
    Resample { from: u32, to: u32, message: String },
}

/// Mono audio, samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<f32>,
}

impl Audio {
    pub fn duration_secs(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.samples.len() as f64 / self.rate as f64
        }
    }

    /// The same audio at `rate`.
    pub fn resampled(&self, rate: u32) -> Result<Audio, AudioError> {
        Ok(Audio {
            rate,
            samples: resample(&self.samples, self.rate, rate)?,
        })
    }
}

/// Reads a WAV file and mixes its channels down to mono.
pub fn read_wav(path: &Path) -> Result<Audio, AudioError> {
    let format = |message: String| AudioError::Format {
        path: path.to_path_buf(),
        message,
    };
    let reader = hound::WavReader::open(path).map_err(|e| format(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate < 1000 || spec.sample_rate > 384_000 {
        return Err(format(format!(
            "unsupported layout: {} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    let expected = reader.len() as u64;
    let channels = spec.channels as usize;
    let mut interleaved: Vec<f32> = Vec::with_capacity(expected.min(1 << 28) as usize);
    let mut truncated = false;
    match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(format(format!(
                    "{}-bit float samples are not supported",
                    spec.bits_per_sample
                )));
            }
            for s in reader.into_samples::<f32>() {
                match s {
                    Ok(v) => interleaved.push(if v.is_finite() {
                        v.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }),
                    Err(_) => {
                        truncated = true;
                        break;
                    }
                }
            }
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(8..=32).contains(&bits) {
                return Err(format(format!("{bits}-bit samples are not supported")));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in reader.into_samples::<i32>() {
                match s {
                    Ok(v) => interleaved.push(v as f32 * scale),
                    Err(_) => {
                        truncated = true;
                        break;
                    }
                }
            }
        }
    }
    let got = interleaved.len() as u64;
    if truncated || got < expected {
        return Err(AudioError::Truncated {
            path: path.to_path_buf(),
            expected,
            got,
        });
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    Ok(Audio {
        rate: spec.sample_rate,
        samples,
    })
}

/// Writes mono 16-bit PCM.
pub fn write_wav(path: &Path, audio: &Audio) -> Result<(), AudioError> {
    let err = |e: hound::Error| AudioError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in &audio.samples {
        writer.write_sample(to_i16(s)).map_err(err)?;
    }
    writer.finalize().map_err(err)
}

pub fn to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// Resamples mono audio; the output has `len * to / from` samples (rounded).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let err = |message: String| AudioError::Resample { from, to, message };
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

/// Cuts audio that arrives in pieces of any length (a sentence from the synthesizer) into frames of
/// a fixed size (20 ms for RTP), keeping the remainder for the next piece. Sans-IO: the caller
/// sends the frames.
#[derive(Debug, Clone)]
pub struct Framer {
    frame: usize,
    pending: Vec<f32>,
}

impl Framer {
    /// Frames of `frame` samples (at least 1).
    pub fn new(frame: usize) -> Framer {
        let frame = frame.max(1);
        Framer {
            frame,
            pending: Vec::with_capacity(frame),
        }
    }

    /// Frames of `ms` milliseconds at `rate`, e.g. 20 ms at 8 kHz = 160 samples.
    pub fn for_duration(rate: u32, ms: u32) -> Framer {
        Framer::new((rate as u64 * ms as u64 / 1000) as usize)
    }

    pub fn frame_len(&self) -> usize {
        self.frame
    }

    /// Samples waiting for a full frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds `samples` and calls `out` with every frame now complete; stops early (leaving the
    /// rest unsent and dropped) when `out` breaks, e.g. on barge-in.
    pub fn push(
        &mut self,
        mut samples: &[f32],
        out: &mut impl FnMut(&[f32]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if !self.pending.is_empty() {
            let take = (self.frame - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < self.frame {
                return ControlFlow::Continue(());
            }
            let frame = std::mem::take(&mut self.pending);
            let flow = out(&frame);
            self.pending = frame;
            self.pending.clear();
            flow?;
        }
        let mut chunks = samples.chunks_exact(self.frame);
        for frame in &mut chunks {
            out(frame)?;
        }
        self.pending.extend_from_slice(chunks.remainder());
        ControlFlow::Continue(())
    }

    /// The last partial frame, padded with silence; nothing when no samples wait.
    pub fn finish(&mut self, out: &mut impl FnMut(&[f32]) -> ControlFlow<()>) -> ControlFlow<()> {
        if self.pending.is_empty() {
            return ControlFlow::Continue(());
        }
        self.pending.resize(self.frame, 0.0);
        let frame = std::mem::take(&mut self.pending);
        out(&frame)
    }
}

/// G.711 μ-law encode of one sample.
pub fn mulaw_encode(sample: f32) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut pcm = to_i16(sample) as i32;
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(CLIP) + BIAS;
    let exponent = (7 - ((pcm as u32) << 17).leading_zeros().min(7)) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// G.711 μ-law decode of one byte.
pub fn mulaw_decode(byte: u8) -> f32 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let v = if sign != 0 { -magnitude } else { magnitude };
    v as f32 / 32768.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulaw_round_trip_is_close() {
        for i in -100..=100 {
            let x = i as f32 / 100.0;
            let y = mulaw_decode(mulaw_encode(x));
            assert!((x - y).abs() < 0.03, "{x} -> {y}");
        }
        assert_eq!(mulaw_encode(0.0), 0xff);
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
    fn framer_cuts_pieces_into_fixed_frames_and_pads_the_last() {
        let mut f = Framer::for_duration(8000, 20);
        assert_eq!(f.frame_len(), 160);
        let mut frames: Vec<Vec<f32>> = Vec::new();
        let mut out = |fr: &[f32]| {
            frames.push(fr.to_vec());
            ControlFlow::Continue(())
        };
        // 100 + 300 + 50 samples: two full frames, 130 left, padded to one more.
        let pieces = [vec![1.0; 100], vec![2.0; 300], vec![3.0; 50]];
        for p in &pieces {
            assert!(f.push(p, &mut out).is_continue());
        }
        assert_eq!(f.pending(), 130);
        assert!(f.finish(&mut out).is_continue());
        // Nothing waits any more: a second finish sends nothing.
        assert!(f.finish(&mut out).is_continue());
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|fr| fr.len() == 160));
        let flat: Vec<f32> = frames.concat();
        let input: Vec<f32> = pieces.concat();
        assert_eq!(&flat[..input.len()], &input[..]);
        assert!(flat[input.len()..].iter().all(|s| *s == 0.0));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn framer_stops_when_the_sink_breaks() {
        let mut f = Framer::new(10);
        let mut sent = 0;
        let mut out = |_: &[f32]| {
            sent += 1;
            if sent == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        assert!(f.push(&[0.5; 5], &mut out).is_continue());
        assert!(f.push(&[0.5; 100], &mut out).is_break());
        assert_eq!(sent, 2);
        assert!(Framer::new(0).frame_len() == 1);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.wav");
        std::fs::write(&p, b"RIFF1234WAVEnot really").unwrap();
        let e = read_wav(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.wav") && e.contains("not a readable WAV"),
            "{e}"
        );
        let audio = Audio {
            rate: 16000,
            samples: vec![0.25; 16000],
        };
        write_wav(&p, &audio).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_wav(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
