//! Speech recognition: whisper.cpp (whisper-rs) with one loaded model shared by all calls.
//!
//! `Whisper` is the engine (load once, transcribe from any thread with a per-thread state);
//! `AsrService` puts it behind a bounded queue served by worker threads, so a burst of calls waits
//! (back-pressure) instead of oversubscribing the CPU; the queue depth is in /metrics.
//! Short turns pay only for their length: `audio_ctx` is fitted to the utterance instead of
//! whisper's fixed 30 s window.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::audio::{Audio, AudioError};

/// Whisper's input rate.
pub const RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("{}: cannot load the whisper model (not a ggml whisper file, or damaged): {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("the utterance is {secs:.1} s long; the limit is {limit} s (speech.asr_max_secs)")]
    TooLong { secs: f64, limit: u32 },
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("the speech recognizer has stopped")]
    Stopped,
}

/// Engine settings (from `[speech]`).
#[derive(Debug, Clone)]
pub struct AsrOptions {
    pub threads: u32,
    pub max_secs: u32,
    /// Clinic vocabulary for the initial prompt.
    pub vocabulary: Vec<String>,
}

impl Default for AsrOptions {
    fn default() -> Self {
        Self {
            threads: 2,
            max_secs: 120,
            vocabulary: Vec::new(),
        }
    }
}

/// One recognized segment, times in ms from the start of the utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub no_speech_prob: f32,
}

/// What the recognizer heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    /// Mean probability of the text tokens (0-1); low means "ask again".
    pub confidence: f32,
    /// Highest no-speech probability of the segments (1 when nothing was recognized).
    pub no_speech_prob: f32,
    pub audio_ms: u64,
}

/// The loaded model.
pub struct Whisper {
    ctx: WhisperContext,
    options: AsrOptions,
    prompt: String,
}

impl Whisper {
    pub fn load(path: &Path, options: AsrOptions) -> Result<Whisper, AsrError> {
        whisper_rs::install_logging_hooks();
        let err = |message: String| AsrError::Load {
            path: path.to_path_buf(),
            message,
        };
        let mut head = [0u8; 4];
        std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .map_err(|e| err(e.to_string()))?;
        if u32::from_le_bytes(head) != 0x6767_6d6c {
            return Err(err("bad magic (expected ggml)".into()));
        }
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| err(e.to_string()))?;
        let prompt = prompt_for(&options.vocabulary);
        Ok(Whisper {
            ctx,
            options,
            prompt,
        })
    }

    /// A decoding state; keep one per worker thread.
    pub fn state(&self) -> Result<WhisperState, AsrError> {
        self.ctx
            .create_state()
            .map_err(|e| AsrError::Whisper(e.to_string()))
    }

    /// Transcribes audio at any rate (resampled to 16 kHz) with a fresh state.
    pub fn transcribe(&self, audio: &Audio) -> Result<Transcript, AsrError> {
        let mut state = self.state()?;
        self.transcribe_with(&mut state, audio)
    }

    /// Transcribes with a caller-kept state.
    pub fn transcribe_with(
        &self,
        state: &mut WhisperState,
        audio: &Audio,
    ) -> Result<Transcript, AsrError> {
        let secs = audio.duration_secs();
        if secs > self.options.max_secs as f64 {
            return Err(AsrError::TooLong {
                secs,
                limit: self.options.max_secs,
            });
        }
        let audio_ms = (secs * 1000.0) as u64;
        let mut pcm = audio.resampled(RATE)?.samples;
        let silent = pcm.iter().all(|s| s.abs() < 1e-4);
        if pcm.is_empty() || silent {
            return Ok(Transcript {
                text: String::new(),
                segments: Vec::new(),
                confidence: 0.0,
                no_speech_prob: 1.0,
                audio_ms,
            });
        }
        // whisper.cpp skips input under 1 s; pad short turns with silence.
        let min = RATE as usize * 3 / 2;
        if pcm.len() < min {
            pcm.resize(min, 0.0);
        }
        // Half a second of trailing silence helps the last word out.
        pcm.extend(std::iter::repeat_n(0.0, RATE as usize / 2));

        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.options.threads as i32);
        params.set_audio_ctx(if FIT_AUDIO_CTX {
            audio_ctx_for(pcm.len())
        } else {
            0
        });
        // English-only models ignore it; multilingual ones would otherwise guess per utterance.
        params.set_language(Some("en"));
        params.set_no_context(true);
        // A turn shorter than whisper's 30 s window is one segment. Letting the decoder seek on
        // past it with a fitted audio_ctx makes it decode the same audio again (the sentence comes
        // out two or three times).
        params.set_single_segment(secs < 29.0);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_temperature(0.0);
        // Bound each segment's decode (about 3 words/s are spoken): a hallucination loop on noise
        // cannot run to the 224-token limit and through every temperature fallback.
        params.set_max_tokens(max_tokens_for(secs));
        if !self.prompt.is_empty() {
            params.set_initial_prompt(&self.prompt);
        }
        state
            .full(params, &pcm)
            .map_err(|e| AsrError::Whisper(e.to_string()))?;
        let eot = self.ctx.token_eot();
        let mut segments = Vec::new();
        let mut text = String::new();
        let (mut prob_sum, mut prob_n) = (0f32, 0usize);
        let mut no_speech = 0f32;
        for seg in state.as_iter() {
            let seg_text = seg
                .to_str_lossy()
                .map(|s| s.into_owned())
                .unwrap_or_default();
            for i in 0..seg.n_tokens() {
                if let Some(tok) = seg.get_token(i)
                    && tok.token_id() < eot
                {
                    prob_sum += tok.token_probability();
                    prob_n += 1;
                }
            }
            no_speech = no_speech.max(seg.no_speech_probability());
            let trimmed = seg_text.trim();
            if !trimmed.is_empty() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(trimmed);
            }
            segments.push(Segment {
                start_ms: (seg.start_timestamp().max(0) as u64) * 10,
                end_ms: ((seg.end_timestamp().max(0) as u64) * 10).min(audio_ms.max(1)),
                text: trimmed.to_string(),
                no_speech_prob: seg.no_speech_probability(),
            });
        }
        Ok(Transcript {
            text,
            confidence: if prob_n == 0 {
                0.0
            } else {
                prob_sum / prob_n as f32
            },
            no_speech_prob: if segments.is_empty() { 1.0 } else { no_speech },
            segments,
            audio_ms,
        })
    }
}

/// The initial prompt: a short clinic-style sentence with the vocabulary, so names and terms are
/// spelled the clinic's way.
pub fn prompt_for(vocabulary: &[String]) -> String {
    let words: Vec<&str> = vocabulary
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return String::new();
    }
    format!(
        "A patient calls the clinic about an appointment. {}.",
        words.join(", ")
    )
}

/// Fitting `audio_ctx` to the utterance is the main CPU latency lever, but with tiny.en it made
/// the decoder repeat short turns two to five times (round-trip WER 0.8). Off until that is fixed
/// (e.g. a margin of real audio context, or a repetition guard); the full window is correct.
const FIT_AUDIO_CTX: bool = false;

/// Tokens allowed per segment for an utterance of `secs` seconds (at most 30 s per segment).
pub fn max_tokens_for(secs: f64) -> i32 {
    (secs.min(30.0) * 7.0) as i32 + 24
}

/// Encoder positions for `samples` of 16 kHz audio (one per 20 ms), rounded up to 64 with a
/// margin; 0 (whisper's full 1500) for 30 s or more.
pub fn audio_ctx_for(samples: usize) -> i32 {
    let positions = samples.div_ceil(320) + 32;
    let rounded = positions.div_ceil(64) * 64;
    if rounded >= 1500 { 0 } else { rounded as i32 }
}

struct Job {
    audio: Audio,
    reply: oneshot::Sender<Result<Transcript, AsrError>>,
}

/// The shared recognizer behind a bounded queue.
#[derive(Clone)]
pub struct AsrService {
    tx: mpsc::Sender<Job>,
    depth: Gauge,
}

impl AsrService {
    /// Starts `workers` threads on one shared model; at most `queue` utterances wait.
    pub fn start(
        engine: Arc<Whisper>,
        queue: usize,
        workers: usize,
        registry: Option<&mut Registry>,
    ) -> Result<AsrService, AsrError> {
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let depth = Gauge::default();
        if let Some(r) = registry {
            r.register(
                "carevoice_asr_queue_depth",
                "Utterances waiting for the speech recognizer",
                depth.clone(),
            );
        }
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let engine = engine.clone();
            let rx = rx.clone();
            let depth = depth.clone();
            let mut state = engine.state()?;
            std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let mut rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                            rx.blocking_recv()
                        };
                        let Some(job) = job else { break };
                        depth.dec();
                        let started = Instant::now();
                        let result = engine.transcribe_with(&mut state, &job.audio);
                        tracing::debug!(
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            ok = result.is_ok(),
                            "utterance transcribed"
                        );
                        let _ = job.reply.send(result);
                    }
                })
                .map_err(|e| AsrError::Whisper(format!("cannot start a worker thread: {e}")))?;
        }
        Ok(AsrService { tx, depth })
    }

    /// Queues an utterance (waiting while the queue is full) and returns its transcript.
    pub async fn transcribe(&self, audio: Audio) -> Result<Transcript, AsrError> {
        let (reply, rx) = oneshot::channel();
        self.depth.inc();
        if self.tx.send(Job { audio, reply }).await.is_err() {
            self.depth.dec();
            return Err(AsrError::Stopped);
        }
        rx.await.map_err(|_| AsrError::Stopped)?
    }

    /// Utterances waiting now.
    pub fn queue_depth(&self) -> i64 {
        self.depth.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_fits_the_utterance() {
        assert_eq!(audio_ctx_for(16_000 * 2), 192);
        assert_eq!(audio_ctx_for(16_000 * 8), 448);
        assert_eq!(audio_ctx_for(16_000 * 30), 0);
        assert!(audio_ctx_for(16_000 * 29) <= 1500);
    }

    #[test]
    fn prompt_lists_the_vocabulary() {
        assert_eq!(prompt_for(&[]), "");
        let p = prompt_for(&["Dr. Okafor".into(), " ".into(), "appointment".into()]);
        assert!(p.ends_with("Dr. Okafor, appointment."), "{p}");
    }

    #[test]
    fn a_file_that_is_not_a_model_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ggml-broken.bin");
        std::fs::write(&p, b"definitely not whisper").unwrap();
        let e = Whisper::load(&p, AsrOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("ggml-broken.bin") && e.contains("bad magic"),
            "{e}"
        );
        let e = Whisper::load(&dir.path().join("none.bin"), AsrOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("none.bin"), "{e}");
    }
}
