//! Speech recognition: whisper.cpp (whisper-rs) with one loaded model shared by all calls.
//!
//! `Whisper` is the engine (load once, transcribe from any thread with a per-thread state);
//! `AsrService` puts it behind a bounded queue served by worker threads, so a burst of calls waits
//! (back-pressure) instead of oversubscribing the CPU; the queue depth is in /metrics.
//! Short turns pay only for their length: `audio_ctx` is fitted to the utterance (with a floor of
//! about 10 s) instead of whisper's fixed 30 s window; on a CPU the encoder's cost is linear in it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    #[error("the utterance was no longer wanted")]
    Cancelled,
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

/// How much of whisper's 30 s encoder window a turn uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Fitted to the turn plus its trailing silence and a margin (`audio_ctx_for`).
    Fitted,
    /// Whisper's full 30 s window (1500 encoder positions), whatever the turn's length.
    Full,
}

/// The loaded model.
pub struct Whisper {
    ctx: WhisperContext,
    options: AsrOptions,
    prompt: String,
    fallbacks: std::sync::atomic::AtomicU64,
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
            fallbacks: Default::default(),
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

    /// Transcribes with a caller-kept state. Short turns use an encoder window fitted to their
    /// length. A fitted result that is one phrase said over and over (the cut window's typical
    /// failure: the decoder misses the end of speech) keeps one copy; any other result that looks
    /// wrong (a repeated phrase inside it, more words than the audio can hold) is decoded again
    /// with the full window, so only the rare retry pays twice (counted in `fallbacks`).
    pub fn transcribe_with(
        &self,
        state: &mut WhisperState,
        audio: &Audio,
    ) -> Result<Transcript, AsrError> {
        self.transcribe_cancellable(state, audio, None)
    }

    /// `transcribe_with` that stops early (with [`AsrError::Cancelled`]) once `cancel` is set.
    pub fn transcribe_cancellable(
        &self,
        state: &mut WhisperState,
        audio: &Audio,
        cancel: Option<&Arc<AtomicBool>>,
    ) -> Result<Transcript, AsrError> {
        if !FIT_AUDIO_CTX {
            return self.decode(state, audio, Window::Full, cancel);
        }
        let fitted = self.decode(state, audio, Window::Fitted, cancel)?;
        let secs = audio.duration_secs();
        if audio_ctx_for(fitted_len(secs)) == 0 || !looks_wrong(&fitted, secs) {
            return Ok(fitted);
        }
        if let Some(once) = said_once(&fitted.text) {
            let collapsed = Transcript {
                text: once,
                ..fitted
            };
            if !looks_wrong(&collapsed, secs) {
                return Ok(collapsed);
            }
        }
        self.fallbacks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            secs,
            "fitted audio window result rejected; decoding the full window"
        );
        self.decode(state, audio, Window::Full, cancel)
    }

    /// Fitted-window results that were rejected and decoded again with the full window.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Transcribes with an explicit encoder window and no fallback (for measuring the two).
    pub fn transcribe_window(
        &self,
        state: &mut WhisperState,
        audio: &Audio,
        window: Window,
    ) -> Result<Transcript, AsrError> {
        self.decode(state, audio, window, None)
    }

    fn decode(
        &self,
        state: &mut WhisperState,
        audio: &Audio,
        window: Window,
        cancel: Option<&Arc<AtomicBool>>,
    ) -> Result<Transcript, AsrError> {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(AsrError::Cancelled);
        }
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
        // Trailing silence: it helps the last word out, and in a fitted window it is what tells
        // the decoder the speech has ended (without it, it runs on and repeats the turn).
        pcm.extend(std::iter::repeat_n(0.0, TRAILING_SILENCE));

        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.options.threads as i32);
        params.set_audio_ctx(match window {
            Window::Fitted => audio_ctx_for(pcm.len()),
            Window::Full => 0,
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
        if let Some(cancel) = cancel {
            // whisper.cpp asks after the encoder and during decoding. Not whisper-rs's
            // `set_abort_callback_safe`: its trampoline casts the boxed `dyn FnMut` back to the
            // concrete closure type and reads stray memory (it aborted healthy decodes here).
            // SAFETY: the pointer is to the flag inside `cancel`, an `Arc` the caller keeps alive
            // until `full` below returns; `abort_when_set` only loads it.
            unsafe {
                params.set_abort_callback(Some(abort_when_set));
                params.set_abort_callback_user_data(Arc::as_ptr(cancel) as *mut std::ffi::c_void);
            }
        }
        let decoded = state.full(params, &pcm);
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(AsrError::Cancelled);
        }
        decoded.map_err(|e| AsrError::Whisper(e.to_string()))?;
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

/// whisper.cpp's abort callback: true once the job's cancel flag is set.
///
/// # Safety
/// `flag` must point to a live `AtomicBool`.
unsafe extern "C" fn abort_when_set(flag: *mut std::ffi::c_void) -> bool {
    // SAFETY: `decode` passes the flag of an `Arc` that outlives the call to whisper.
    unsafe { (*(flag as *const AtomicBool)).load(Ordering::Relaxed) }
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

/// Fit the encoder window to short turns (with the repeat collapse and full-window retry in
/// `transcribe_with`). Measured on this project's clinic phrases (piper at 8 kHz, tiny.en, 2-core
/// EPYC): full window 4.8 s per turn, fitted with the floor below 1.3 s, same words.
const FIT_AUDIO_CTX: bool = true;

/// Fewest encoder positions a fitted window gets (512 = 10.24 s). The stock models were trained
/// on 1500 only: cut to a turn's bare length (~300) tiny.en repeats or garbles one short turn in
/// three; from 512 up it heard the same words as the full window (one repeat in sixteen, which
/// `said_once` collapses).
const MIN_FITTED_CTX: usize = 512;

/// Silence appended to every turn, in samples (16 kHz).
const TRAILING_SILENCE: usize = RATE as usize;

/// Encoder positions (20 ms each) kept beyond the turn and its trailing silence.
const CTX_MARGIN: usize = 128;

/// Tokens allowed per segment for an utterance of `secs` seconds (at most 30 s per segment).
pub fn max_tokens_for(secs: f64) -> i32 {
    (secs.min(30.0) * 7.0) as i32 + 24
}

/// Encoder positions for `samples` of 16 kHz audio (one per 20 ms) plus a margin, rounded up to
/// 64; 0 (whisper's full 1500) when that is near the full window anyway.
pub fn audio_ctx_for(samples: usize) -> i32 {
    let positions = samples.div_ceil(320) + CTX_MARGIN;
    let rounded = (positions.div_ceil(64) * 64).max(MIN_FITTED_CTX);
    if rounded >= 1500 { 0 } else { rounded as i32 }
}

/// Samples whisper is given for a turn of `secs` seconds (the short-turn minimum and the trailing
/// silence added).
fn fitted_len(secs: f64) -> usize {
    ((secs * RATE as f64) as usize).max(RATE as usize * 3 / 2) + TRAILING_SILENCE
}

/// Signs that a fitted-window decode went wrong, as the stock models do when the window is cut:
/// a phrase repeated back to back, or more words than anyone speaks in the time (about 3 words/s
/// is normal speech).
pub fn looks_wrong(t: &Transcript, secs: f64) -> bool {
    let words: Vec<String> = plain_words(&t.text)
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return true;
    }
    if words.len() as f64 > 6.0 * secs.max(1.0) + 2.0 {
        return true;
    }
    // A word four times running, a word pair three times, or a longer phrase twice ("fail
    // again, fail better" repeats a pair once, legitimately).
    let repeated = |k: usize, copies: usize| {
        words.len() >= k * copies
            && (0..=words.len() - k * copies)
                .any(|i| (1..copies).all(|c| words[i..i + k] == words[i + c * k..i + (c + 1) * k]))
    };
    repeated(1, 4) || repeated(2, 3) || (3..=8).any(|k| repeated(k, 2))
}

/// Each whitespace-separated word of `text`, lower-cased with punctuation dropped (a word of
/// punctuation only becomes "").
fn plain_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect()
}

/// The first copy when `text` is one phrase said two or more times back to back (the last copy
/// may be cut short by the token cap), as whisper does when a cut window hides the end of speech:
/// "Yes, cancel it. Yes, cancel it. Yes, can" -> "Yes, cancel it." None otherwise.
pub fn said_once(text: &str) -> Option<String> {
    let raw: Vec<&str> = text.split_whitespace().collect();
    let words = plain_words(text);
    (1..=words.len() / 2).find_map(|k| {
        let unit = &words[..k];
        let rest = &words[k..];
        let repeats = rest.chunks(k).all(|chunk| chunk == &unit[..chunk.len()]);
        (repeats && rest.len() >= k).then(|| raw[..k].join(" "))
    })
}

struct Job {
    audio: Audio,
    reply: oneshot::Sender<Result<Transcript, AsrError>>,
    /// Set when the caller of `transcribe` stops waiting (its future dropped).
    cancel: Arc<AtomicBool>,
}

/// Sets the job's cancel flag when the waiting future is dropped before the transcript arrives.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The shared recognizer behind a bounded queue.
#[derive(Clone)]
pub struct AsrService {
    tx: mpsc::Sender<Job>,
    depth: Gauge,
    /// Utterances being recognized now.
    running: Arc<std::sync::atomic::AtomicUsize>,
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
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for i in 0..workers.max(1) {
            let engine = engine.clone();
            let rx = rx.clone();
            let depth = depth.clone();
            let running = running.clone();
            let mut state = engine.state()?;
            std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || {
                    crate::inference::mark_this_thread();
                    loop {
                        let job = {
                            let mut rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                            rx.blocking_recv()
                        };
                        let Some(job) = job else { break };
                        running.fetch_add(1, Ordering::AcqRel);
                        depth.dec();
                        let started = Instant::now();
                        let result = engine.transcribe_cancellable(
                            &mut state,
                            &job.audio,
                            Some(&job.cancel),
                        );
                        running.fetch_sub(1, Ordering::AcqRel);
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
        Ok(AsrService { tx, depth, running })
    }

    /// Queues an utterance (waiting while the queue is full) and returns its transcript.
    /// Dropping the future cancels the work: a queued utterance is skipped, a running one stops
    /// at the recognizer's next check (a speculative decode the caller's next words made stale).
    pub async fn transcribe(&self, audio: Audio) -> Result<Transcript, AsrError> {
        let (reply, rx) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        self.depth.inc();
        let job = Job {
            audio,
            reply,
            cancel,
        };
        if self.tx.send(job).await.is_err() {
            self.depth.dec();
            return Err(AsrError::Stopped);
        }
        rx.await.map_err(|_| AsrError::Stopped)?
    }

    /// Utterances waiting now.
    pub fn queue_depth(&self) -> i64 {
        self.depth.get()
    }

    /// Whether nothing is being recognized or waiting: a speculative job would start at once.
    pub fn idle(&self) -> bool {
        self.depth.get() <= 0 && self.running.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_fits_the_utterance() {
        // 2 s + 1 s silence = 150 positions, + 128 margin = 278 -> the 512 floor.
        assert_eq!(audio_ctx_for(fitted_len(2.0)), 512);
        assert_eq!(audio_ctx_for(fitted_len(0.3)), 512);
        // 8 s + 1 s = 450, + 128 = 578 -> 640.
        assert_eq!(audio_ctx_for(fitted_len(8.0)), 640);
        // Near or past the full window: whisper's own 1500.
        assert_eq!(audio_ctx_for(fitted_len(27.0)), 0);
        assert_eq!(audio_ctx_for(16_000 * 30), 0);
        for secs in 1..40 {
            let ctx = audio_ctx_for(fitted_len(secs as f64));
            assert!(
                ctx == 0 || (ctx % 64 == 0 && ctx < 1500),
                "{secs} s -> {ctx}"
            );
            // Never shorter than the audio it must see.
            assert!(ctx == 0 || ctx as usize * 320 >= fitted_len(secs as f64));
        }
    }

    fn heard(text: &str) -> Transcript {
        Transcript {
            text: text.into(),
            segments: Vec::new(),
            confidence: 0.9,
            no_speech_prob: 0.0,
            audio_ms: 0,
        }
    }

    #[test]
    fn a_phrase_said_over_and_over_is_kept_once() {
        for (text, once) in [
            ("Yes, cancel it. Yes, cancel it.", "Yes, cancel it."),
            ("Yes. Yes. Yes. Yes. Yes. Yes. Yes", "Yes."),
            ("no no no no no no", "no"),
            (
                "Can I talk to a real person? Can I talk to a real person? Can I talk to a",
                "Can I talk to a real person?",
            ),
            ("Yes cancel it. Yes, cancel it", "Yes cancel it."),
        ] {
            assert_eq!(said_once(text).as_deref(), Some(once), "{text}");
        }
        for text in [
            "",
            "Yes.",
            "No, that's all. No, that's all. No, no, no, no",
            "Fail again. Fail better.",
            "My name is Anna Smith.",
        ] {
            assert_eq!(said_once(text), None, "{text}");
        }
    }

    #[test]
    fn repeated_or_overlong_fitted_results_are_rejected() {
        let ok = [
            "I would like to book an appointment with Dr. Okafor.",
            "My phone number is 555-867-5309.",
            "My insurance card number ends in 4, 4, 7, 1.",
            "It was the best of times, it was the worst of times.",
            "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
        ];
        for text in ok {
            assert!(!looks_wrong(&heard(text), 3.5), "{text}");
        }
        let wrong = [
            "",
            "Thank you, goodbye. Thank you, goodbye.",
            "Yes, that works for me. Yes, that works for me. Yes, that works",
            "the the the the",
            "to the clinic to the clinic to the clinic",
        ];
        for text in wrong {
            assert!(looks_wrong(&heard(text), 2.0), "{text}");
        }
        let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen";
        assert!(looks_wrong(&heard(long), 2.0));
        assert!(!looks_wrong(&heard(long), 5.0));
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
