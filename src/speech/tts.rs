//! Speech synthesis: a Piper voice (VITS, ONNX) run through ONNX Runtime, phonemes from espeak-ng.
//!
//! Not `piper-rs`: it pins another `ort` release with build-time binary downloads and builds
//! espeak-ng from source with a git clone, neither of which works offline. Its core is small, so
//! the voice is driven here directly: espeak-ng (Debian's `libespeak-ng.so.1`, loaded at run time,
//! GPL-3) turns each clause into IPA, the voice's `phoneme_id_map` turns IPA into ids, and the ONNX
//! model turns ids into 22.05 kHz audio, resampled to the call's rate. Text is synthesized sentence
//! by sentence so the first sentence can play while the next is made; fixed prompts are cached.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use super::audio::{self, AudioError, Framer};
use super::onnx::{self, OnnxError};
use super::text;

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("{}: bad piper voice config: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("espeak-ng: {0}")]
    Espeak(String),
    #[error("piper inference failed: {0}")]
    Inference(String),
    #[error(transparent)]
    Audio(#[from] AudioError),
}

#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    #[serde(default)]
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

type InitFn = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceFn = unsafe extern "C" fn(*const c_char) -> c_int;
type ToPhonemesFn = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;

/// espeak-ng, loaded once; it is not thread-safe, so every use holds the lock.
struct Espeak {
    _lib: libloading::Library,
    set_voice: SetVoiceFn,
    to_phonemes: ToPhonemesFn,
    voice: Option<String>,
}

static ESPEAK: OnceLock<Result<Mutex<Espeak>, String>> = OnceLock::new();

const ESPEAK_LIBS: [&str; 2] = ["libespeak-ng.so.1", "libespeak-ng.so"];

fn espeak() -> Result<&'static Mutex<Espeak>, TtsError> {
    ESPEAK
        .get_or_init(|| {
            let mut last = String::new();
            for name in ESPEAK_LIBS {
                // SAFETY: loading a C library whose initializers have no preconditions.
                match unsafe { libloading::Library::new(name) } {
                    Ok(lib) => {
                        // SAFETY: the symbols have these C signatures in espeak-ng's speak_lib.h.
                        unsafe {
                            let init: InitFn = *lib
                                .get::<InitFn>(b"espeak_Initialize\0")
                                .map_err(|e| e.to_string())?;
                            let set_voice: SetVoiceFn = *lib
                                .get::<SetVoiceFn>(b"espeak_SetVoiceByName\0")
                                .map_err(|e| e.to_string())?;
                            let to_phonemes: ToPhonemesFn = *lib
                                .get::<ToPhonemesFn>(b"espeak_TextToPhonemes\0")
                                .map_err(|e| e.to_string())?;
                            // AUDIO_OUTPUT_SYNCHRONOUS, no buffer, default data path, no options.
                            if init(2, 0, std::ptr::null(), 0) < 0 {
                                return Err(format!(
                                    "{name}: espeak_Initialize failed (is espeak-ng-data installed?)"
                                ));
                            }
                            return Ok(Mutex::new(Espeak {
                                _lib: lib,
                                set_voice,
                                to_phonemes,
                                voice: None,
                            }));
                        }
                    }
                    Err(e) => last = format!("{name}: {e}"),
                }
            }
            Err(format!(
                "cannot load the espeak-ng library ({last}); install the Debian package libespeak-ng1"
            ))
        })
        .as_ref()
        .map_err(|e| TtsError::Espeak(e.clone()))
}

/// IPA phonemes of `text` in espeak `voice`, clause punctuation kept.
pub fn phonemize(voice: &str, text: &str) -> Result<String, TtsError> {
    let lock = espeak()?;
    let mut es = lock.lock().unwrap_or_else(|e| e.into_inner());
    if es.voice.as_deref() != Some(voice) {
        let name = CString::new(voice).map_err(|_| TtsError::Espeak("bad voice name".into()))?;
        // SAFETY: a valid NUL-terminated string; espeak is locked.
        if unsafe { (es.set_voice)(name.as_ptr()) } != 0 {
            return Err(TtsError::Espeak(format!("unknown espeak voice {voice:?}")));
        }
        es.voice = Some(voice.to_string());
    }
    let mut out = String::new();
    // Clauses: espeak drops punctuation, which the voice uses for prosody; put it back.
    let mut clause = String::new();
    let flush = |clause: &mut String, punct: Option<char>, out: &mut String| {
        let trimmed = clause.trim();
        if !trimmed.is_empty() {
            let Ok(c) = CString::new(trimmed) else {
                clause.clear();
                return;
            };
            let mut ptr = c.as_ptr() as *const c_void;
            loop {
                // SAFETY: `ptr` points into `c` (NUL-terminated UTF-8); espeak advances it and
                // sets it to NULL at the end. espeak is locked. espeakCHARS_UTF8 = 1, IPA = 0x02.
                let ph = unsafe { (es.to_phonemes)(&mut ptr, 1, 0x02) };
                if !ph.is_null() {
                    // SAFETY: espeak returns a NUL-terminated string valid until the next call.
                    let s = unsafe { CStr::from_ptr(ph) }.to_string_lossy();
                    if !out.is_empty() && !out.ends_with(' ') {
                        out.push(' ');
                    }
                    out.push_str(s.trim());
                }
                if ptr.is_null() {
                    break;
                }
            }
        }
        if let Some(p) = punct {
            out.push(p);
            out.push(' ');
        }
        clause.clear();
    };
    for c in text.chars() {
        if matches!(c, ',' | '.' | ';' | ':' | '?' | '!') {
            flush(&mut clause, Some(c), &mut out);
        } else {
            clause.push(c);
        }
    }
    flush(&mut clause, None, &mut out);
    Ok(out.trim().to_string())
}

/// A loaded Piper voice.
pub struct Voice {
    session: Mutex<Session>,
    config: VoiceConfig,
    pad: i64,
    bos: i64,
    eos: i64,
}

impl Voice {
    /// Loads `model` (.onnx) with its `model.json` config beside it.
    pub fn load(onnxruntime: &Path, model: &Path, threads: usize) -> Result<Voice, TtsError> {
        let config_path = PathBuf::from(format!("{}.json", model.display()));
        let cerr = |message: String| TtsError::Config {
            path: config_path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&config_path).map_err(|e| cerr(e.to_string()))?;
        let config: VoiceConfig = serde_json::from_str(&text).map_err(|e| cerr(e.to_string()))?;
        let id = |p: &str| {
            config
                .phoneme_id_map
                .get(p)
                .and_then(|v| v.first().copied())
                .ok_or_else(|| cerr(format!("phoneme_id_map has no {p:?}")))
        };
        let (pad, bos, eos) = (id("_")?, id("^")?, id("$")?);
        if !(8000..=48000).contains(&config.audio.sample_rate) {
            return Err(cerr(format!(
                "audio.sample_rate {} is out of range",
                config.audio.sample_rate
            )));
        }
        let session = onnx::session(onnxruntime, model, threads)?;
        Ok(Voice {
            session: Mutex::new(session),
            config,
            pad,
            bos,
            eos,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    /// Phoneme ids: BOS, each phoneme followed by PAD, EOS (Piper's layout).
    pub fn ids(&self, phonemes: &str) -> Vec<i64> {
        let mut ids = vec![self.bos, self.pad];
        for c in phonemes.chars() {
            let mut buf = [0u8; 4];
            if let Some(v) = self
                .config
                .phoneme_id_map
                .get(c.encode_utf8(&mut buf) as &str)
            {
                ids.extend_from_slice(v);
                ids.push(self.pad);
            }
        }
        ids.push(self.eos);
        ids
    }

    /// One sentence (already normalized) at the voice's own rate.
    pub fn synthesize_sentence(&self, sentence: &str) -> Result<Vec<f32>, TtsError> {
        let phonemes = phonemize(&self.config.espeak.voice, sentence)?;
        if phonemes.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.ids(&phonemes);
        let err = |e: ort::Error| TtsError::Inference(e.to_string());
        let n = ids.len();
        let inf = &self.config.inference;
        let input = Tensor::from_array(([1usize, n], ids)).map_err(err)?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(err)?;
        let scales = Tensor::from_array((
            [3usize],
            vec![inf.noise_scale, inf.length_scale, inf.noise_w],
        ))
        .map_err(err)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
            .map_err(err)?;
        let (_, samples) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        // Peak-normalize quietly loud output the way piper does (to 0.9 of full scale at most).
        let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        let gain = if peak > 0.9 { 0.9 / peak } else { 1.0 };
        Ok(samples.iter().map(|s| s * gain).collect())
    }
}

/// The synthesizer the calls share: normalization, sentence streaming, resampling, cache.
pub struct Tts {
    voice: Arc<Voice>,
    day_first: bool,
    cache: Mutex<Cache>,
}

struct Cache {
    capacity: usize,
    order: VecDeque<(String, u32)>,
    map: HashMap<(String, u32), Arc<Vec<f32>>>,
}

impl Tts {
    pub fn new(voice: Arc<Voice>, cache_entries: usize, day_first: bool) -> Tts {
        Tts {
            voice,
            day_first,
            cache: Mutex::new(Cache {
                capacity: cache_entries,
                order: VecDeque::new(),
                map: HashMap::new(),
            }),
        }
    }

    pub fn voice(&self) -> &Voice {
        &self.voice
    }

    /// Synthesizes `text` at `rate`, calling `sink` with each sentence's audio as soon as it is
    /// ready. Returns the number of samples produced.
    pub fn stream(
        &self,
        text: &str,
        rate: u32,
        mut sink: impl FnMut(&[f32]),
    ) -> Result<usize, TtsError> {
        self.stream_until(text, rate, |pcm| {
            sink(pcm);
            ControlFlow::Continue(())
        })
    }

    /// Like `stream`, but `sink` can stop the synthesis (barge-in, hang-up): when it breaks, the
    /// sentences not yet made are skipped. Returns the number of samples handed to `sink`.
    pub fn stream_until(
        &self,
        text: &str,
        rate: u32,
        mut sink: impl FnMut(&[f32]) -> ControlFlow<()>,
    ) -> Result<usize, TtsError> {
        let normalized = text::normalize(text, self.day_first);
        let mut total = 0;
        for piece in text::pieces(&normalized) {
            let raw = self.voice.synthesize_sentence(&piece.text)?;
            let mut pcm =
                audio::resample(&raw, self.voice.sample_rate(), rate).map_err(AudioError::from)?;
            // A short pause between sentences, a shorter one after a clause.
            let pause = if piece.ends_sentence {
                rate / 8
            } else {
                rate / 20
            };
            pcm.extend(std::iter::repeat_n(0.0, pause as usize));
            total += pcm.len();
            if sink(&pcm).is_break() {
                break;
            }
        }
        Ok(total)
    }

    /// Synthesizes `text` at `rate` into frames of `frame_ms` (20 for RTP), handing each to
    /// `frame` as soon as its sentence is made, so the first frame goes out while the next
    /// sentence is synthesized; the last frame is padded with silence. Blocking: a call task runs
    /// it on `tokio::task::spawn_blocking` and forwards the frames over a channel; `frame`
    /// breaking (barge-in, channel closed) stops it. Returns the number of frames handed over.
    pub fn stream_frames(
        &self,
        text: &str,
        rate: u32,
        frame_ms: u32,
        mut frame: impl FnMut(&[f32]) -> ControlFlow<()>,
    ) -> Result<usize, TtsError> {
        let mut framer = Framer::for_duration(rate, frame_ms);
        let mut sent = 0usize;
        let mut out = |f: &[f32]| {
            sent += 1;
            frame(f)
        };
        let mut stopped = false;
        self.stream_until(text, rate, |pcm| {
            let flow = framer.push(pcm, &mut out);
            stopped = flow.is_break();
            flow
        })?;
        if !stopped {
            let _ = framer.finish(&mut out);
        }
        Ok(sent)
    }

    /// The whole text at `rate`.
    pub fn synthesize(&self, text: &str, rate: u32) -> Result<Vec<f32>, TtsError> {
        let mut out = Vec::new();
        self.stream(text, rate, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// A fixed prompt (greeting, "one moment"), synthesized once and kept.
    pub fn cached(&self, text: &str, rate: u32) -> Result<Arc<Vec<f32>>, TtsError> {
        let key = (text.to_string(), rate);
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let audio = Arc::new(self.synthesize(text, rate)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.capacity > 0 {
            while cache.map.len() >= cache.capacity {
                match cache.order.pop_front() {
                    Some(old) => {
                        cache.map.remove(&old);
                    }
                    None => break,
                }
            }
            cache.order.push_back(key.clone());
            cache.map.insert(key, audio.clone());
        }
        Ok(audio)
    }

    /// Synthesizes the fixed prompts once at start-up, so the first call's greeting or "one
    /// moment" plays from the cache without waiting for the voice.
    pub fn prepare(&self, texts: &[&str], rate: u32) -> Result<(), TtsError> {
        for text in texts {
            self.cached(text, rate)?;
        }
        Ok(())
    }

    /// Prompts in the cache now.
    pub fn cache_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn espeak_phonemizes_in_ipa_with_punctuation() {
        let p = phonemize("en-us", "Hello, world.").unwrap();
        assert!(p.contains(','), "{p}");
        assert!(p.ends_with('.'), "{p}");
        assert!(p.contains('ə') || p.contains('l'), "{p}");
        assert!(phonemize("no-such-voice-xx", "hi").is_err());
    }

    #[test]
    fn a_voice_without_its_config_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("v.onnx");
        std::fs::write(&model, b"x").unwrap();
        let e = Voice::load(Path::new("/nonexistent/libonnxruntime.so"), &model, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("v.onnx.json"), "{e}");
        std::fs::write(dir.path().join("v.onnx.json"), b"{\"audio\": 1}").unwrap();
        let e = Voice::load(Path::new("/nonexistent/libonnxruntime.so"), &model, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad piper voice config"), "{e}");
    }
}
