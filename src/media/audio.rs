//! Audio files: WAV (any rate, mono or stereo, 8/16/24/32-bit PCM or float) to mono `f32` and
//! back to 16-bit PCM. The one WAV reader of the crate: the speech engines, the CLI and the SIP
//! greeting ([`super::load_wav_16k`]) all read through it.

use std::path::{Path, PathBuf};

use super::resample::{ResampleError, resample};

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
    #[error(transparent)]
    Resample(#[from] ResampleError),
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

#[cfg(test)]
mod tests {
    use super::*;

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
