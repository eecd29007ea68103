//! Typed configuration: one struct tree, loaded from a TOML file plus `CAREVOICE_<SECTION>__<KEY>`
//! environment overrides, validated at start-up.
//!
//! Every key has a default (the `Default` impls below) and a doc comment; the README's configuration
//! table is generated from both (`carevoice config docs`) and a test fails when they disagree.
//! Errors always name the key (`admin.port: expected an integer 1-65535, got "abc"`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of environment overrides: `CAREVOICE_ADMIN__PORT=9000` sets `admin.port`.
pub const ENV_PREFIX: &str = "CAREVOICE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key with a bad value, an unknown key, or a failed validation rule.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<KeyError>),
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted key, e.g. `admin.port`.
    pub key: String,
    pub message: String,
    /// The environment variable the value came from, when it came from one.
    pub from_env: Option<String>,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(var) = &self.from_env {
            write!(f, " (from {var})")?;
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub models: ModelsConfig,
    pub speech: SpeechConfig,
}

/// The server process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Directory for the server's own files: the SQLite database, keys, state. Created if missing;
    /// must be writable.
    pub data_dir: PathBuf,
    /// Seconds that live work may take to finish after a shutdown signal (1-3600).
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 10,
        }
    }
}

/// Operational logs (`tracing`). They never carry PHI, whatever the level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format: `pretty` for people, `json` for a log collector.
    pub format: LogFormat,
    /// Filter in `tracing` directive syntax, e.g. `info` or `info,carevoice::sip=debug`.
    /// `RUST_LOG` overrides it when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The admin HTTP port: Prometheus `/metrics`, `/healthz`, and (later) the staff console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Keep it on loopback or a management network.
    pub bind: IpAddr,
    /// TCP port (1-65535).
    #[serde(deserialize_with = "port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
        }
    }
}

/// The database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database URL: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. Empty means the
    /// embedded default, `carevoice.db` (SQLite, WAL mode) in `server.data_dir`.
    pub url: DatabaseUrl,
    /// Largest number of pooled connections (1-1000).
    pub max_connections: u32,
    /// Seconds to wait for a connection before giving up (1-600).
    pub connect_timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::default(),
            max_connections: 8,
            connect_timeout_secs: 5,
        }
    }
}

/// Model files (speech recognition, synthesis, VAD, language model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Directory the installed models live in. Empty means `$CAREVOICE_CACHE/models`, where
    /// `CAREVOICE_CACHE` defaults to `~/.cache/carevoice`.
    pub dir: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
        }
    }
}

impl ModelsConfig {
    /// The models directory with the default filled in.
    pub fn resolved_dir(&self) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            cache_dir().join("models")
        } else {
            self.dir.clone()
        }
    }
}

/// Speech engines: voice activity detection, recognition (whisper) and synthesis (piper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// Load the speech engines at `serve` start-up (a missing model is then a start-up error).
    pub enabled: bool,
    /// Whisper model: a name from `carevoice models list` (`whisper-tiny.en`, `whisper-base`) or a
    /// path to a ggml file.
    pub asr_model: String,
    /// Piper voice: a manifest name (`piper-joe`) or a path to a `.onnx` with its `.onnx.json`
    /// beside it.
    pub tts_voice: String,
    /// Silero VAD model: a manifest name or a path. Missing: the energy VAD is used instead (logged
    /// and shown as `carevoice_vad_fallback` in /metrics).
    pub vad_model: String,
    /// ONNX Runtime library for Silero and Piper: a manifest name or a path to `libonnxruntime.so`.
    pub onnxruntime: String,
    /// CPU threads per whisper decode (1-64).
    pub asr_threads: u32,
    /// Utterances that may wait for the recognizer before callers are held back (1-1000).
    pub asr_queue: u32,
    /// Longest utterance the recognizer accepts, in seconds (1-3600).
    pub asr_max_secs: u32,
    /// Words the recognizer is biased towards (provider names, clinic terms), sent as its prompt.
    pub vocabulary: Vec<String>,
    /// CPU threads for the piper voice (1-64).
    pub tts_threads: u32,
    /// Synthesized fixed prompts kept in memory (0-10000).
    pub tts_cache: u32,
    /// Default silence that ends a caller's turn, in ms; the dialog can change it per step (100-10000).
    pub end_of_turn_ms: u32,
    /// Speech needed while the agent talks before it counts as barge-in, in ms (0-5000).
    pub barge_in_min_ms: u32,
    /// Silero speech probability above which a frame is speech (0.05-0.95).
    pub vad_threshold: f32,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            asr_model: "whisper-tiny.en".into(),
            tts_voice: "piper-joe".into(),
            vad_model: "silero-vad".into(),
            onnxruntime: "onnxruntime".into(),
            asr_threads: 2,
            asr_queue: 8,
            asr_max_secs: 120,
            vocabulary: vec![
                "appointment".into(),
                "reschedule".into(),
                "cancel".into(),
                "date of birth".into(),
            ],
            tts_threads: 1,
            tts_cache: 64,
            end_of_turn_ms: 700,
            barge_in_min_ms: 300,
            vad_threshold: 0.5,
        }
    }
}

/// carevoice's cache directory (models, downloads, test peers): `$CAREVOICE_CACHE`, else
/// `$XDG_CACHE_HOME/carevoice`, else `~/.cache/carevoice`. Kept outside the clone on purpose.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAREVOICE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("carevoice");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("carevoice")
}

/// A database URL. It may hold a password, so `config show` prints it with the password masked.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, safe for logs and error messages.
    pub fn masked(&self) -> String {
        mask_url_password(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.masked())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`; other strings unchanged.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    ranged_int(d, 1, 65535).map(|v| v as u16)
}

/// Accepts an integer in `min..=max`; the error says what is allowed and what was given.
fn ranged_int<'de, D: Deserializer<'de>>(d: D, min: i64, max: i64) -> Result<i64, D::Error> {
    let value = toml::Value::deserialize(d)?;
    let expected = format!("expected an integer {min}-{max}");
    match value {
        toml::Value::Integer(i) if (min..=max).contains(&i) => Ok(i),
        other => Err(serde::de::Error::custom(format!(
            "{expected}, got {}",
            describe(&other)
        ))),
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Table(_) => "a table".into(),
        toml::Value::Array(_) => "an array".into(),
        other => other.to_string(),
    }
}

impl Config {
    /// Loads `path` (a missing file is fine only when `required` is false: the defaults apply),
    /// applies the environment overrides in `env`, and validates the result.
    pub fn load(
        path: &Path,
        required: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::from_toml(&text, path, env)
    }

    /// Parses TOML text (`origin` names it in errors), applies env overrides, validates.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                path: origin.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let overrides = apply_env(&mut table, env)?;
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(vec![key_error_from_serde(e, &overrides)]))?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Rules beyond types. Returns every problem, not just the first.
    pub fn validate(&self) -> Vec<KeyError> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, message: String| {
            errors.push(KeyError {
                key: key.into(),
                message,
                from_env: None,
            })
        };
        if self.server.data_dir.as_os_str().is_empty() {
            bad("server.data_dir", "must not be empty".into());
        }
        if !(1..=3600).contains(&self.server.shutdown_grace_secs) {
            bad(
                "server.shutdown_grace_secs",
                format!(
                    "expected an integer 1-3600, got {}",
                    self.server.shutdown_grace_secs
                ),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            bad(
                "log.level",
                format!(
                    "expected a tracing filter such as \"info\" or \"info,carevoice=debug\", got {:?}: {e}",
                    self.log.level
                ),
            );
        }
        let url = self.store.url.expose();
        if !url.is_empty()
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            bad(
                "store.url",
                format!(
                    "expected empty, sqlite://PATH or postgres://USER@HOST:PORT/DB, got {:?}",
                    self.store.url.masked()
                ),
            );
        }
        if !(1..=1000).contains(&self.store.max_connections) {
            bad(
                "store.max_connections",
                format!(
                    "expected an integer 1-1000, got {}",
                    self.store.max_connections
                ),
            );
        }
        if !(1..=600).contains(&self.store.connect_timeout_secs) {
            bad(
                "store.connect_timeout_secs",
                format!(
                    "expected an integer 1-600, got {}",
                    self.store.connect_timeout_secs
                ),
            );
        }
        let sp = &self.speech;
        for (key, value, lo, hi) in [
            ("speech.asr_threads", sp.asr_threads, 1, 64),
            ("speech.asr_queue", sp.asr_queue, 1, 1000),
            ("speech.asr_max_secs", sp.asr_max_secs, 1, 3600),
            ("speech.tts_threads", sp.tts_threads, 1, 64),
            ("speech.tts_cache", sp.tts_cache, 0, 10000),
            ("speech.end_of_turn_ms", sp.end_of_turn_ms, 100, 10000),
            ("speech.barge_in_min_ms", sp.barge_in_min_ms, 0, 5000),
        ] {
            if !(lo..=hi).contains(&value) {
                bad(key, format!("expected an integer {lo}-{hi}, got {value}"));
            }
        }
        if !(0.05..=0.95).contains(&sp.vad_threshold) {
            bad(
                "speech.vad_threshold",
                format!("expected a number 0.05-0.95, got {}", sp.vad_threshold),
            );
        }
        for (key, value) in [
            ("speech.asr_model", &sp.asr_model),
            ("speech.tts_voice", &sp.tts_voice),
            ("speech.vad_model", &sp.vad_model),
            ("speech.onnxruntime", &sp.onnxruntime),
        ] {
            if value.trim().is_empty() {
                bad(key, "must name a model or a file".into());
            }
        }
        errors
    }

    /// The configuration as TOML with secrets masked, for `carevoice config show`.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// Applies `CAREVOICE_<SECTION>__<KEY>` variables to `table`. A variable's text is read as the type
/// the key has by default (integer, boolean, float, string), so `CAREVOICE_ADMIN__PORT=abc` fails
/// with the same message as `port = "abc"` in the file. Returns which key each variable set.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let defaults = toml::Value::try_from(Config::default()).expect("defaults serialize to TOML");
    let mut applied = Vec::new();
    let mut errors = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let key = path.join(".");
        let Some(default) = lookup(&defaults, &path) else {
            errors.push(KeyError {
                key,
                message: format!("unknown key; known keys: {}", known_keys().join(", ")),
                from_env: Some(name),
            });
            continue;
        };
        let value = match default {
            toml::Value::Integer(_) => raw
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .unwrap_or(toml::Value::String(raw)),
            toml::Value::Boolean(_) => match raw.trim() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => toml::Value::String(raw),
            },
            toml::Value::Float(_) => raw
                .trim()
                .parse::<f64>()
                .map(toml::Value::Float)
                .unwrap_or(toml::Value::String(raw)),
            _ => toml::Value::String(raw),
        };
        insert(table, &path, value);
        applied.push((key, name));
    }
    if errors.is_empty() {
        Ok(applied)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

fn lookup<'a>(value: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter()
        .try_fold(value, |v, part| v.as_table()?.get(part.as_str()))
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("path has at least one part");
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.clone(), value);
}

fn key_error_from_serde(
    e: serde_path_to_error::Error<toml::de::Error>,
    overrides: &[(String, String)],
) -> KeyError {
    let path = e.path().to_string();
    let message = e.inner().message().to_string();
    let (key, message) = match message.strip_prefix("unknown field `") {
        Some(rest) => {
            let field = rest.split('`').next().unwrap_or_default();
            // serde_path_to_error already ends the path with the unknown field.
            let key = if path == "." || path.is_empty() {
                field.to_string()
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path.clone()
            } else {
                format!("{path}.{field}")
            };
            let allowed = rest
                .split_once("expected ")
                .map(|(_, list)| list.replace('`', ""))
                .unwrap_or_default();
            (key, format!("unknown key; expected {allowed}"))
        }
        None => (path, message),
    };
    let from_env = overrides
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, var)| var.clone());
    KeyError {
        key,
        message,
        from_env,
    }
}

/// Every leaf key, dotted, in declaration order.
pub fn known_keys() -> Vec<String> {
    docs().into_iter().map(|row| row.key).collect()
}

/// One row of the configuration reference.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    pub key: String,
    pub default: String,
    pub doc: String,
    pub env: String,
}

/// The configuration reference, from the doc comments (via `schemars`) and the `Default` impls.
pub fn docs() -> Vec<KeyDoc> {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).expect("schema is JSON");
    let defaults = toml::Value::try_from(Config::default()).expect("defaults serialize to TOML");
    let mut rows = Vec::new();
    let sections = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (section, section_schema) in sections {
        let section_def = resolve(&schema, &section_schema);
        let fields = section_def["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (field, field_schema) in fields {
            let field_def = resolve(&schema, &field_schema);
            let mut doc = field_schema["description"]
                .as_str()
                .or_else(|| field_def["description"].as_str())
                .unwrap_or_default()
                .replace('\n', " ");
            if let Some(choices) = field_def["enum"].as_array() {
                let names: Vec<String> = choices
                    .iter()
                    .filter_map(|c| c.as_str().map(|s| format!("`{s}`")))
                    .collect();
                if !names.is_empty() && !doc.contains(&names[0]) {
                    doc = format!("{doc} One of {}.", names.join(", "));
                }
            }
            let default = lookup(&defaults, &[section.clone(), field.clone()])
                .map(|v| match v {
                    toml::Value::String(s) if s.is_empty() => "(empty)".to_string(),
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            rows.push(KeyDoc {
                key: format!("{section}.{field}"),
                env: format!(
                    "{ENV_PREFIX}{}__{}",
                    section.to_ascii_uppercase(),
                    field.to_ascii_uppercase()
                ),
                default,
                doc,
            });
        }
    }
    rows
}

fn resolve(root: &serde_json::Value, schema: &serde_json::Value) -> serde_json::Value {
    // schemars writes `{"$ref": "#/$defs/Name"}`, sometimes inside `allOf`.
    let reference = schema["$ref"]
        .as_str()
        .or_else(|| schema["allOf"][0]["$ref"].as_str());
    match reference.and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => root["$defs"][name].clone(),
        None => schema.clone(),
    }
}

/// The configuration reference as a Markdown table (the README's copy is checked against it).
pub fn docs_markdown() -> String {
    let mut out = String::from("| key | env | default | meaning |\n|---|---|---|---|\n");
    for row in docs() {
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            row.key, row.env, row.default, row.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            Path::new("carevoice.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(load("", &[]).unwrap(), Config::default());
    }

    #[test]
    fn file_values_apply() {
        let c = load(
            "[admin]\nport = 9100\n[log]\nformat = \"json\"\n[store]\nurl = \"sqlite:///tmp/x.db\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.admin.port, 9100);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.store.url.expose(), "sqlite:///tmp/x.db");
    }

    #[test]
    fn bad_port_names_key_and_range() {
        let e = load("[admin]\nport = \"abc\"\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "admin.port: expected an integer 1-65535, got \"abc\"");
        let e = load("[admin]\nport = 70000\n", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "admin.port: expected an integer 1-65535, got 70000");
        let e = load("[admin]\nport = 0\n", &[]).unwrap_err().to_string();
        assert_eq!(e, "admin.port: expected an integer 1-65535, got 0");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load("[admin]\nprot = 1\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("admin.prot: unknown key; expected"), "{e}");
        assert!(e.contains("port"), "{e}");
        let e = load("[nosuch]\nx = 1\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("nosuch: unknown key"), "{e}");
    }

    #[test]
    fn bad_enum_names_key() {
        let e = load("[log]\nformat = \"xml\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("log.format: unknown variant `xml`"), "{e}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = load("[admin]\nport = = 3\n", &[]).unwrap_err().to_string();
        assert!(e.starts_with("carevoice.toml:2:"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "[admin]\nport = 9100\n",
            &[
                ("CAREVOICE_ADMIN__PORT", "9200"),
                ("CAREVOICE_LOG__FORMAT", "json"),
                ("CAREVOICE_CACHE", "/ignored/not/a/key"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.admin.port, 9200);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn bad_env_value_names_key_and_variable() {
        let e = load("", &[("CAREVOICE_ADMIN__PORT", "abc")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "admin.port: expected an integer 1-65535, got \"abc\" (from CAREVOICE_ADMIN__PORT)"
        );
        let e = load("", &[("CAREVOICE_ADMIN__NOPE", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("admin.nope: unknown key; known keys: server.data_dir"),
            "{e}"
        );
        assert!(e.ends_with("(from CAREVOICE_ADMIN__NOPE)"), "{e}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let e = load(
            "[store]\nurl = \"mysql://x\"\nmax_connections = 0\n[log]\nlevel = \"info,=[\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines.iter().any(|l| l.starts_with("store.url: expected")));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("store.max_connections: expected an integer 1-1000"))
        );
        assert!(lines.iter().any(|l| l.starts_with("log.level: expected")));
    }

    #[test]
    fn show_masks_database_password() {
        let c = load(
            "[store]\nurl = \"postgres://cv:hunter2@db:5432/carevoice\"\n",
            &[],
        )
        .unwrap();
        let shown = c.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://cv:***@db:5432/carevoice"),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn mask_leaves_passwordless_urls_alone() {
        assert_eq!(
            mask_url_password("sqlite://data/x.db"),
            "sqlite://data/x.db"
        );
        assert_eq!(
            mask_url_password("postgres://cv@db/x"),
            "postgres://cv@db/x"
        );
        assert_eq!(mask_url_password("not a url"), "not a url");
    }

    #[test]
    fn every_key_is_documented() {
        let rows = docs();
        assert!(rows.len() >= 9);
        for row in &rows {
            assert!(!row.doc.trim().is_empty(), "{} has no doc comment", row.key);
        }
        assert!(
            rows.iter()
                .any(|r| r.key == "admin.port" && r.default == "8080")
        );
        assert!(
            rows.iter()
                .any(|r| r.key == "log.format" && r.doc.contains("`json`"))
        );
    }

    #[test]
    fn shown_config_loads_back() {
        let c = Config::default();
        assert_eq!(load(&c.to_masked_toml(), &[]).unwrap(), c);
    }
}
