//! The process-wide ONNX Runtime, loaded once from the installed library (`ort`'s `load-dynamic`),
//! shared by the Silero VAD and the Piper voice.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OnnxError {
    #[error("{}: cannot load ONNX Runtime: {message}", path.display())]
    Runtime { path: PathBuf, message: String },
    #[error("{}: cannot load ONNX model: {message}", path.display())]
    Model { path: PathBuf, message: String },
}

static ENV: OnceLock<Mutex<Option<Environment>>> = OnceLock::new();

/// The environment, loading `library` the first time (later calls reuse the first library).
pub fn environment(library: &Path) -> Result<Environment, OnnxError> {
    let slot = ENV.get_or_init(|| Mutex::new(None));
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let err = |message: String| OnnxError::Runtime {
        path: library.to_path_buf(),
        message,
    };
    if !library.is_file() {
        return Err(err("file does not exist".into()));
    }
    let env = ort::init_from(library)
        .map_err(|e| err(e.to_string()))?
        .with_name("carevoice")
        .build()
        .map_err(|e| err(e.to_string()))?;
    *slot = Some(env.clone());
    Ok(env)
}

/// A session for the model at `path` with `threads` intra-op threads.
pub fn session(library: &Path, path: &Path, threads: usize) -> Result<Session, OnnxError> {
    let env = environment(library)?;
    let err = |e: ort::Error| OnnxError::Model {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !path.is_file() {
        return Err(OnnxError::Model {
            path: path.to_path_buf(),
            message: "file does not exist".into(),
        });
    }
    Session::builder(&env)
        .map_err(err)?
        .with_intra_threads(threads)
        .map_err(|e| err(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| err(e.into()))?
        .commit_from_file(path)
        .map_err(err)
}
