//! Speech engines on real models, shared by all calls: voice activity detection and endpointing
//! (`vad`, Silero through ONNX Runtime with an energy fallback), recognition (`asr`, whisper.cpp
//! through whisper-rs) and synthesis (`tts`, a Piper voice through ONNX Runtime, phonemes from
//! espeak-ng). `audio` reads/writes WAV and resamples; `text` turns numbers, dates and times into
//! words before synthesis.
//!
//! Models are named as in `models/manifest.toml` (installed by `carevoice models install`) or given
//! as paths; a missing model is an error that names the command that installs it.

pub mod asr;
pub mod audio;
pub mod onnx;
pub mod text;
pub mod tts;
pub mod vad;

use std::path::{Path, PathBuf};

use crate::models::{Manifest, ModelError};

/// Where a configured model lives: a manifest name (checked against its sha256) or a path.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{key}: {message}")]
    Missing { key: String, message: String },
    #[error("{key}: {source}")]
    Manifest { key: String, source: ModelError },
}

/// Resolves `value` (config key `key`) to a file: a manifest name must be installed and intact
/// (the error names `carevoice models install NAME`); anything with a `/` or a `.` is a path that
/// must exist.
pub fn locate(key: &str, value: &str, models_dir: &Path) -> Result<PathBuf, LocateError> {
    if value.contains('/') || value.ends_with(".onnx") || value.ends_with(".bin") {
        let path = PathBuf::from(value);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LocateError::Missing {
                key: key.into(),
                message: format!("model file {} does not exist", path.display()),
            })
        };
    }
    let manifest = Manifest::embedded().map_err(|source| LocateError::Manifest {
        key: key.into(),
        source,
    })?;
    let entry = manifest
        .get(value)
        .map_err(|source| LocateError::Manifest {
            key: key.into(),
            source,
        })?;
    entry
        .require(models_dir)
        .map_err(|message| LocateError::Missing {
            key: key.into(),
            message,
        })
}

/// Everything that can stop the speech engines from loading.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error(transparent)]
    Asr(#[from] asr::AsrError),
    #[error(transparent)]
    Tts(#[from] tts::TtsError),
    #[error(transparent)]
    Vad(#[from] vad::VadError),
}

/// The three engines, loaded once and shared by all calls.
pub struct Engines {
    pub whisper: std::sync::Arc<asr::Whisper>,
    pub asr: asr::AsrService,
    pub tts: std::sync::Arc<tts::Tts>,
    /// `None`: Silero is missing and the energy VAD is used.
    pub silero: Option<vad::SileroModel>,
    pub endpoint: vad::EndpointParams,
}

impl Engines {
    /// Loads every engine `config` names. Whisper and the voice are required; a missing Silero
    /// model falls back to the energy VAD, loudly (warning + `carevoice_vad_fallback` = 1).
    pub fn load(
        config: &crate::config::SpeechConfig,
        models_dir: &Path,
        mut registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<Engines, SpeechError> {
        use std::sync::Arc;
        let runtime = locate("speech.onnxruntime", &config.onnxruntime, models_dir)?;
        let whisper_path = locate("speech.asr_model", &config.asr_model, models_dir)?;
        let voice_path = locate("speech.tts_voice", &config.tts_voice, models_dir)?;
        let whisper = Arc::new(asr::Whisper::load(
            &whisper_path,
            asr::AsrOptions {
                threads: config.asr_threads,
                max_secs: config.asr_max_secs,
                vocabulary: config.vocabulary.clone(),
            },
        )?);
        let asr = asr::AsrService::start(
            whisper.clone(),
            config.asr_queue as usize,
            1,
            registry.as_deref_mut(),
        )?;
        let voice = Arc::new(tts::Voice::load(
            &runtime,
            &voice_path,
            config.tts_threads as usize,
        )?);
        let tts = Arc::new(tts::Tts::new(
            voice,
            config.tts_cache as usize,
            config.date_order.day_first(),
        ));
        let silero = match locate("speech.vad_model", &config.vad_model, models_dir) {
            Ok(path) => match vad::SileroModel::load(&runtime, &path) {
                Ok(model) => Some(model),
                Err(e) => {
                    tracing::error!(error = %e, "Silero VAD failed to load; FALLING BACK to the energy VAD");
                    None
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "Silero VAD missing; FALLING BACK to the energy VAD");
                None
            }
        };
        let fallback = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        fallback.set(i64::from(silero.is_none()));
        if let Some(r) = registry {
            r.register(
                "carevoice_vad_fallback",
                "1 when the Silero VAD model is missing and the weaker energy VAD is in use",
                fallback,
            );
        }
        Ok(Engines {
            whisper,
            asr,
            tts,
            silero,
            endpoint: vad::EndpointParams {
                end_of_turn_ms: config.end_of_turn_ms as u64,
                barge_in_min_ms: config.barge_in_min_ms as u64,
                threshold: config.vad_threshold,
                ..Default::default()
            },
        })
    }

    /// A VAD for one call's stream.
    pub fn vad(&self) -> vad::Vad {
        vad::Vad::new(self.classifier(), self.endpoint)
    }

    /// A fresh classifier stream (Silero, or the energy fallback) for one call's voice scorer.
    pub fn voice_scorer(&self) -> vad::VoiceScorer {
        vad::VoiceScorer::new(self.classifier())
    }

    fn classifier(&self) -> Box<dyn vad::Classifier> {
        match &self.silero {
            Some(model) => Box::new(model.stream()),
            None => Box::<vad::Energy>::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call shares the engines across tasks and runs synthesis on `spawn_blocking`.
    #[test]
    fn the_engines_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Engines>();
        shared::<tts::Tts>();
        shared::<asr::AsrService>();
        shared::<asr::Whisper>();
    }
}
