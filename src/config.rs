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
    pub emr: EmrConfig,
    pub audit: AuditConfig,
    pub keys: KeysConfig,
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub clinic: ClinicConfig,
    pub dialog: DialogConfig,
    pub speech: SpeechConfig,
    pub call: CallConfig,
    pub console: ConsoleConfig,
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

/// SIP signalling: where carevoice answers calls from a trunk, a PBX or a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Answer SIP calls. Off by default: `serve` then runs without telephony.
    pub enabled: bool,
    /// Address the SIP transports listen on.
    pub bind: IpAddr,
    /// SIP port for UDP and TCP (1-65535).
    #[serde(deserialize_with = "port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Transports to listen on: any of `udp`, `tcp`, `tls` (TLS 1.2+ on `sip.tls_port`).
    pub transports: Vec<SipTransport>,
    /// IP address put in Via and Contact. Empty means `sip.bind` (set it when binding 0.0.0.0).
    pub contact_ip: String,
    /// Most calls at once (1-10000); further INVITEs get 503 with Retry-After.
    pub max_calls: u32,
    /// Seconds put in Retry-After when refusing a call for load (1-3600).
    pub retry_after_secs: u32,
    /// Milliseconds to ring (180) before answering (0-60000).
    pub answer_after_ms: u64,
    /// SIP over TLS port (1-65535), used when `transports` has `tls`.
    #[serde(deserialize_with = "port")]
    #[schemars(range(min = 1, max = 65535))]
    pub tls_port: u16,
    /// PEM certificate chain for SIP over TLS.
    pub tls_cert: PathBuf,
    /// PEM private key for SIP over TLS.
    pub tls_key: PathBuf,
    /// SIP URI of a registrar (PBX or trunk) to REGISTER with over UDP, e.g.
    /// `sip:pbx.example:5060`. Empty: no registration.
    pub registrar: crate::net::SipUri,
    /// User part of the address of record we register (and digest username).
    pub register_user: String,
    /// Domain of the address of record. Empty: the registrar's host.
    pub register_domain: String,
    /// Digest password for the registrar (MD5 or SHA-256).
    pub register_password: Secret,
    /// Registration lifetime asked for, seconds (60-86400); refreshed before it ends.
    pub register_expires: u32,
    /// Sources allowed to send SIP requests: IPs or CIDR ranges of the trunk / PBX, e.g.
    /// `["203.0.113.0/28"]`. Others get 403. Empty: anyone.
    pub allow_from: Vec<crate::net::Cidr>,
    /// Digest user name callers outside `allow_from` (everyone when it is empty) must
    /// authenticate with (401 challenge, MD5 or SHA-256). Empty: no challenge.
    pub auth_user: String,
    /// Digest password for `auth_user`.
    pub auth_password: Secret,
    /// Realm of the inbound digest challenge.
    pub auth_realm: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 5060,
            transports: vec![SipTransport::Udp, SipTransport::Tcp],
            contact_ip: String::new(),
            max_calls: 100,
            retry_after_secs: 30,
            answer_after_ms: 0,
            tls_port: 5061,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            registrar: crate::net::SipUri::default(),
            register_user: String::new(),
            register_domain: String::new(),
            register_password: Secret::default(),
            register_expires: 600,
            allow_from: Vec::new(),
            auth_user: String::new(),
            auth_password: Secret::default(),
            auth_realm: "carevoice".into(),
        }
    }
}

impl SipConfig {
    /// `contact_ip` parsed, or the bind address when empty.
    pub fn contact_ip(&self) -> IpAddr {
        self.contact_ip.parse().unwrap_or(self.bind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

/// Call media: RTP ports and, until the live call pipeline lands, the greeting played to callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address RTP sockets bind to (and that SDP answers carry unless `sip.contact_ip` is set).
    pub bind: IpAddr,
    /// Lowest RTP port (1024-65534); each call takes one even port.
    pub rtp_port_min: u16,
    /// Highest RTP port (1024-65535, at least `rtp_port_min`).
    pub rtp_port_max: u16,
    /// WAV file (any rate, mono or stereo) played to each caller after answer. Empty: silence.
    pub greeting_wav: PathBuf,
    /// Seconds after the greeting ends before carevoice hangs up (0-3600; 0: wait for the caller).
    pub hangup_after_greeting_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            rtp_port_min: 20000,
            rtp_port_max: 20999,
            greeting_wav: PathBuf::new(),
            hangup_after_greeting_secs: 0,
        }
    }
}

/// Facts about the clinic that the phone line tells any caller, no identity needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClinicConfig {
    /// The clinic's name, as the greeting says it.
    pub name: String,
    /// Opening hours, as a sentence the agent reads out.
    pub hours: String,
    /// Street address, as a sentence the agent reads out.
    pub address: String,
    /// Where to park, as a sentence the agent reads out.
    pub parking: String,
    /// Insurance plans accepted, as a sentence the agent reads out.
    pub insurance: String,
    /// How to get medical records, as a sentence the agent reads out.
    pub records: String,
    /// Time zone of the clinic (IANA name), for "tomorrow at 2:30" and reading times out.
    pub timezone: String,
}

impl Default for ClinicConfig {
    fn default() -> Self {
        Self {
            name: "the clinic".into(),
            hours: "We are open Monday to Friday, 8 a.m. to 5 p.m.".into(),
            address: "Please check the address on your appointment letter.".into(),
            parking: "Free parking is available next to the building.".into(),
            insurance: "We accept most major insurance plans; please bring your card.".into(),
            records: "To request your medical records, fill in the records release form at the front desk or on our website.".into(),
            timezone: "America/New_York".into(),
        }
    }
}

/// The conversation: which flow runs, emergency numbers, identity checks, retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DialogConfig {
    /// The intake flow file (YAML, see `flows/README.md`).
    pub flow: PathBuf,
    /// Number to call in a medical emergency, said at once when a caller describes one.
    pub emergency_number: String,
    /// Crisis line for a caller who may hurt themselves (988 in the US).
    pub crisis_number: String,
    /// What must match before anything about a patient is said: `name_dob` (full name and date
    /// of birth) or `name_dob_phone` (also the calling number or a phone number on file).
    pub identity_factors: IdentityFactors,
    /// Failed identity attempts allowed before the call goes to staff (1-10).
    pub identity_attempts: u32,
    /// Least milliseconds an identity check takes, found or not, so timing tells nothing (0-10000).
    pub identity_min_ms: u64,
    /// Times a step re-prompts after input it cannot use before the call goes to staff (0-10).
    pub max_retries: u32,
    /// Longest caller turn in characters that is looked at; longer turns are re-prompted (100-100000).
    pub max_turn_chars: usize,
    /// Language model (a name from `carevoice models list`) for turns the keyword rules cannot
    /// decide; empty for keyword rules only.
    pub understanding_model: String,
    /// Tokenizer of the understanding model (a name from `carevoice models list`).
    pub understanding_tokenizer: String,
}

impl Default for DialogConfig {
    fn default() -> Self {
        Self {
            flow: PathBuf::from("flows/clinic.yaml"),
            emergency_number: "911".into(),
            crisis_number: "988".into(),
            identity_factors: IdentityFactors::NameDob,
            identity_attempts: 3,
            identity_min_ms: 600,
            max_retries: 2,
            max_turn_chars: 2000,
            understanding_model: "qwen2.5-coder-0.5b".into(),
            understanding_tokenizer: "qwen2.5-tokenizer".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityFactors {
    NameDob,
    NameDobPhone,
}

/// Speech engines: voice activity detection, recognition (whisper) and synthesis (piper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// Load the speech engines at `serve` start-up (a missing model is then a start-up error).
    pub enabled: bool,
    /// Whisper model: a name from `carevoice models list` (`whisper-tiny.en-q8`, `whisper-tiny.en`,
    /// `whisper-base`) or a path to a ggml file.
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
    /// How the agent reads numeric dates aloud: `month_first` ("03/04" is March 4th, as in the
    /// US) or `day_first` ("03/04" is the 3rd of April, as in most other countries).
    pub date_order: DateOrder,
}

/// Order of day and month in a numeric date such as "03/04".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// Month, day, year (US).
    #[default]
    MonthFirst,
    /// Day, month, year.
    DayFirst,
}

impl DateOrder {
    /// True when the day comes first (what the text normalizer takes).
    pub fn day_first(self) -> bool {
        self == DateOrder::DayFirst
    }
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            asr_model: "whisper-tiny.en-q8".into(),
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
            date_order: DateOrder::MonthFirst,
        }
    }
}

/// The live call: timing of the conversation and where calls go when staff must take over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CallConfig {
    /// Seconds of caller silence (after the agent stops speaking) before the step re-prompts
    /// (1-120).
    pub no_input_secs: u32,
    /// Milliseconds an EMR action may take before the caller hears "one moment" (100-10000).
    pub one_moment_ms: u64,
    /// Longest call in seconds; the agent then says goodbye and hangs up (30-36000).
    pub max_call_secs: u64,
    /// SIP URI that calls are transferred to when the caller wants a person or the agent cannot
    /// help (`sip:frontdesk@pbx.clinic.local`): by SIP REFER, or, when the caller's phone refuses
    /// REFER, by the server calling this URI and bridging the two calls. Empty: no transfer; the
    /// caller is told that the front desk will call back and a callback is recorded.
    pub transfer_uri: String,
    /// SIP URI for urgent transfers (emergencies). Empty: `transfer_uri`.
    pub urgent_transfer_uri: String,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            no_input_secs: 8,
            one_moment_ms: 700,
            max_call_secs: 1800,
            transfer_uri: String::new(),
            urgent_transfer_uri: String::new(),
        }
    }
}

/// The clinic's EMR, reached through FHIR R4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EmrConfig {
    /// FHIR base URL, e.g. `https://emr.example.org/fhir/R4`.
    pub base_url: String,
    /// How to authenticate: `none` (a local test server), `bearer` (a static token) or `smart`
    /// (SMART backend services: client_credentials with a signed private_key_jwt assertion).
    pub auth: EmrAuth,
    /// Static bearer token, for `auth = "bearer"`.
    pub bearer_token: Secret,
    /// OAuth2 token endpoint, for `auth = "smart"`.
    pub token_url: String,
    /// Client id registered with the EMR, for `auth = "smart"`.
    pub client_id: String,
    /// PKCS#8 PEM private key that signs the client assertion, for `auth = "smart"`.
    pub private_key: PathBuf,
    /// Assertion signing algorithm: `RS384` (RSA key) or `ES384` (P-384 key).
    pub jwt_alg: JwtAlgorithm,
    /// Key id (`kid`) to put in the assertion header, if the EMR's JWKS needs it.
    pub jwt_kid: String,
    /// Scopes to ask for.
    pub scope: String,
    /// Extra CA certificates (PEM file) to trust for the EMR's TLS, e.g. a clinic's own CA.
    pub ca_bundle: PathBuf,
    /// Milliseconds one EMR operation may take before the caller hears the fallback (100-60000).
    pub timeout_ms: u64,
    /// Retries of a failed read, with backoff (0-5). Writes are never retried blindly.
    pub read_retries: u32,
    /// Consecutive failures that open the circuit breaker (1-100): calls then get the spoken
    /// fallback at once instead of waiting.
    pub breaker_failures: u32,
    /// Seconds the breaker stays open before one trial request (1-3600).
    pub breaker_cooldown_secs: u64,
}

impl Default for EmrConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8104/fhir".into(),
            auth: EmrAuth::None,
            bearer_token: Secret::default(),
            token_url: String::new(),
            client_id: String::new(),
            private_key: PathBuf::new(),
            jwt_alg: JwtAlgorithm::RS384,
            jwt_kid: String::new(),
            scope: "system/Patient.rs system/Practitioner.rs system/Location.rs system/Schedule.rs system/Slot.rus system/Appointment.cruds system/Communication.c system/Task.c".into(),
            ca_bundle: PathBuf::new(),
            timeout_ms: 2000,
            read_retries: 2,
            breaker_failures: 5,
            breaker_cooldown_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmrAuth {
    None,
    Bearer,
    Smart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JwtAlgorithm {
    RS384,
    ES384,
}

/// A secret (token, password): `config show` and `Debug` print `***`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
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

/// The front-desk console (`src/console/`): staff sign in (password + TOTP) and see the escalation
/// queue, callbacks and call history over HTTPS on its own port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console. Off by default (`make run` turns it on).
    pub enabled: bool,
    /// Address the console listens on.
    pub bind: IpAddr,
    /// TCP port (1-65535).
    #[serde(deserialize_with = "port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// PEM certificate chain for HTTPS. Empty (with `tls_key` empty) means a self-signed
    /// certificate made at first start in `server.data_dir`/console-tls; its SHA-256 fingerprint
    /// is printed at start-up.
    pub tls_cert: PathBuf,
    /// PEM private key for HTTPS (see `tls_cert`).
    pub tls_key: PathBuf,
    /// Serve plain HTTP instead of HTTPS. Allowed only when `console.bind` is a loopback address
    /// (for development and tests behind nothing else); session cookies then lose `Secure`.
    pub plain_http: bool,
    /// Seconds without a request after which a session ends: automatic logoff, 164.312(a)(2)(iii)
    /// (1-86400; 15 minutes by default). Live queue updates do not count as requests.
    pub idle_timeout_secs: u64,
    /// Hours a session may last at most, however active (1-168).
    pub session_max_hours: u64,
    /// Failed sign-ins (password or code) in a row that lock an account (1-100).
    pub lockout_failures: u32,
    /// Minutes an account stays locked after `lockout_failures` failures (1-10080).
    pub lockout_mins: u64,
    /// Sign-in attempts one client address may make per minute (1-10000); more get 429.
    pub sign_in_per_minute: u32,
    /// Minutes after which an open callback is shown as overdue (1-10080).
    pub callback_overdue_mins: u64,
    /// Directory holding the browser assets (`htmx.org/dist`, `htmx-ext-sse/dist`) installed by
    /// `scripts/setup` from `console/package.json`. Empty means
    /// `$CAREVOICE_CACHE/console/node/node_modules`. When they are missing, pages still work
    /// without live updates.
    pub assets_dir: PathBuf,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8443,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            plain_http: false,
            idle_timeout_secs: 900,
            session_max_hours: 12,
            lockout_failures: 5,
            lockout_mins: 15,
            sign_in_per_minute: 30,
            callback_overdue_mins: 120,
            assets_dir: PathBuf::new(),
        }
    }
}

impl ConsoleConfig {
    /// The assets directory with the default filled in.
    pub fn resolved_assets_dir(&self) -> PathBuf {
        if self.assets_dir.as_os_str().is_empty() {
            cache_dir()
                .join("console")
                .join("node")
                .join("node_modules")
        } else {
            self.assets_dir.clone()
        }
    }

    fn validate(&self, errors: &mut Vec<KeyError>) {
        let mut bad = |key: &str, message: String| {
            errors.push(KeyError {
                key: key.into(),
                message,
                from_env: None,
            })
        };
        for (key, value, min, max) in [
            (
                "console.idle_timeout_secs",
                self.idle_timeout_secs,
                1,
                86400,
            ),
            ("console.session_max_hours", self.session_max_hours, 1, 168),
            (
                "console.lockout_failures",
                u64::from(self.lockout_failures),
                1,
                100,
            ),
            ("console.lockout_mins", self.lockout_mins, 1, 10080),
            (
                "console.sign_in_per_minute",
                u64::from(self.sign_in_per_minute),
                1,
                10000,
            ),
            (
                "console.callback_overdue_mins",
                self.callback_overdue_mins,
                1,
                10080,
            ),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("expected an integer {min}-{max}, got {value}"));
            }
        }
        if self.plain_http && !self.bind.is_loopback() {
            bad(
                "console.plain_http",
                format!(
                    "plain HTTP is allowed only on a loopback address, but console.bind is {}; \
                     configure console.tls_cert/tls_key (or leave them empty for a self-signed certificate)",
                    self.bind
                ),
            );
        }
        let (cert, key) = (
            self.tls_cert.as_os_str().is_empty(),
            self.tls_key.as_os_str().is_empty(),
        );
        if cert != key {
            let missing = if cert {
                "console.tls_cert"
            } else {
                "console.tls_key"
            };
            bad(
                missing,
                "must be set together with console.tls_cert and console.tls_key (or both left empty for a self-signed certificate)".into(),
            );
        }
        if self.enabled && !cert && !self.tls_cert.is_file() {
            bad(
                "console.tls_cert",
                format!("{}: no such file", self.tls_cert.display()),
            );
        }
        if self.enabled && !key && !self.tls_key.is_file() {
            bad(
                "console.tls_key",
                format!("{}: no such file", self.tls_key.display()),
            );
        }
    }
}

/// The tamper-evident audit log and retention (see `src/audit/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Write a signed checkpoint after this many records (1-1000000). Checkpoints are also written
    /// every `checkpoint_every_minutes` and at shutdown.
    pub checkpoint_every_records: u64,
    /// Write a signed checkpoint at least this often while records arrive, in minutes (1-1440).
    pub checkpoint_every_minutes: u64,
    /// Days audit records are kept before `carevoice audit prune` may delete them (1-36500).
    /// Six years by default (HIPAA documentation retention).
    pub retention_days: u64,
    /// Days call transcripts and reply texts stay readable; after that prune destroys their data
    /// keys (crypto-shredding) while the audit records themselves remain (1-36500).
    pub transcript_retention_days: u64,
    /// Days other encrypted PHI columns (escalation summaries, messages) stay readable before prune
    /// destroys their data keys (1-36500).
    pub phi_retention_days: u64,
    /// Appends that may wait for the audit writer before callers are held back (1-1000000).
    pub queue_depth: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_records: 1000,
            checkpoint_every_minutes: 5,
            retention_days: 2190,
            transcript_retention_days: 365,
            phi_retention_days: 365,
            queue_depth: 8192,
        }
    }
}

/// Encryption keys at rest: the master key that wraps the data keys (see `src/audit/keys.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Master key file (lines `ID BASE64`), mode 0600; refused when group or others can read it.
    /// Empty means `master.key` in `server.data_dir`. Made by `carevoice keys init` (or on the
    /// first start of a fresh installation). Back it up apart from the database.
    pub file: PathBuf,
    /// Instead of the key file: a shell command (run with `sh -c`) that prints the master key(s)
    /// in the key file format on standard output, e.g. a KMS or vault client. Empty means unused.
    pub kms_command: String,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::new(),
            kms_command: String::new(),
        }
    }
}

impl KeysConfig {
    /// The key file with the default filled in.
    pub fn resolved_file(&self, data_dir: &Path) -> PathBuf {
        if self.file.as_os_str().is_empty() {
            data_dir.join("master.key")
        } else {
            self.file.clone()
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
        if !self.emr.base_url.starts_with("http://") && !self.emr.base_url.starts_with("https://") {
            bad(
                "emr.base_url",
                format!(
                    "expected an http:// or https:// URL, got {:?}",
                    self.emr.base_url
                ),
            );
        }
        match self.emr.auth {
            EmrAuth::Bearer if self.emr.bearer_token.expose().is_empty() => bad(
                "emr.bearer_token",
                "must be set when emr.auth = \"bearer\"".into(),
            ),
            EmrAuth::Smart => {
                for (key, empty) in [
                    ("emr.token_url", self.emr.token_url.is_empty()),
                    ("emr.client_id", self.emr.client_id.is_empty()),
                    (
                        "emr.private_key",
                        self.emr.private_key.as_os_str().is_empty(),
                    ),
                ] {
                    if empty {
                        bad(key, "must be set when emr.auth = \"smart\"".into());
                    }
                }
            }
            _ => {}
        }
        for (key, value, min, max) in [
            ("emr.timeout_ms", self.emr.timeout_ms, 100, 60_000),
            ("emr.read_retries", u64::from(self.emr.read_retries), 0, 5),
            (
                "emr.breaker_failures",
                u64::from(self.emr.breaker_failures),
                1,
                100,
            ),
            (
                "emr.breaker_cooldown_secs",
                self.emr.breaker_cooldown_secs,
                1,
                3600,
            ),
            (
                "audit.checkpoint_every_records",
                self.audit.checkpoint_every_records,
                1,
                1_000_000,
            ),
            (
                "audit.checkpoint_every_minutes",
                self.audit.checkpoint_every_minutes,
                1,
                1440,
            ),
            ("audit.retention_days", self.audit.retention_days, 1, 36500),
            (
                "audit.transcript_retention_days",
                self.audit.transcript_retention_days,
                1,
                36500,
            ),
            (
                "audit.phi_retention_days",
                self.audit.phi_retention_days,
                1,
                36500,
            ),
            ("audit.queue_depth", self.audit.queue_depth, 1, 1_000_000),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("expected an integer {min}-{max}, got {value}"));
            }
        }
        if jiff::tz::TimeZone::get(&self.clinic.timezone).is_err() {
            bad(
                "clinic.timezone",
                format!(
                    "expected an IANA time zone such as \"America/New_York\", got {:?}",
                    self.clinic.timezone
                ),
            );
        }
        if self.dialog.emergency_number.trim().is_empty() {
            bad("dialog.emergency_number", "must not be empty".into());
        }
        if self.dialog.crisis_number.trim().is_empty() {
            bad("dialog.crisis_number", "must not be empty".into());
        }
        if !(1..=10).contains(&self.dialog.identity_attempts) {
            bad(
                "dialog.identity_attempts",
                format!(
                    "expected an integer 1-10, got {}",
                    self.dialog.identity_attempts
                ),
            );
        }
        if self.dialog.identity_min_ms > 10_000 {
            bad(
                "dialog.identity_min_ms",
                format!(
                    "expected an integer 0-10000, got {}",
                    self.dialog.identity_min_ms
                ),
            );
        }
        if self.dialog.max_retries > 10 {
            bad(
                "dialog.max_retries",
                format!("expected an integer 0-10, got {}", self.dialog.max_retries),
            );
        }
        if !(100..=100_000).contains(&self.dialog.max_turn_chars) {
            bad(
                "dialog.max_turn_chars",
                format!(
                    "expected an integer 100-100000, got {}",
                    self.dialog.max_turn_chars
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
        self.validate_telephony(&mut errors);
        self.validate_call(&mut errors);
        self.console.validate(&mut errors);
        errors
    }

    fn validate_call(&self, errors: &mut Vec<KeyError>) {
        let mut bad = |key: &str, message: String| {
            errors.push(KeyError {
                key: key.into(),
                message,
                from_env: None,
            })
        };
        let c = &self.call;
        for (key, value, min, max) in [
            ("call.no_input_secs", u64::from(c.no_input_secs), 1, 120),
            ("call.one_moment_ms", c.one_moment_ms, 100, 10000),
            ("call.max_call_secs", c.max_call_secs, 30, 36000),
        ] {
            if !(min..=max).contains(&value) {
                bad(key, format!("expected {min}-{max}, got {value}"));
            }
        }
        for (key, uri) in [
            ("call.transfer_uri", &c.transfer_uri),
            ("call.urgent_transfer_uri", &c.urgent_transfer_uri),
        ] {
            let lower = uri.to_ascii_lowercase();
            let scheme_ok = ["sip:", "sips:", "tel:"]
                .iter()
                .any(|s| lower.starts_with(s));
            if !uri.is_empty() && !scheme_ok {
                bad(
                    key,
                    format!("expected a sip:, sips: or tel: URI (or empty), got {uri:?}"),
                );
            }
        }
    }

    fn validate_telephony(&self, errors: &mut Vec<KeyError>) {
        let mut bad = |key: &str, message: String| {
            errors.push(KeyError {
                key: key.into(),
                message,
                from_env: None,
            })
        };
        if self.sip.transports.is_empty() {
            bad(
                "sip.transports",
                "expected at least one of \"udp\", \"tcp\"".into(),
            );
        }
        if !self.sip.contact_ip.is_empty() && self.sip.contact_ip.parse::<IpAddr>().is_err() {
            bad(
                "sip.contact_ip",
                format!("expected an IP address, got {:?}", self.sip.contact_ip),
            );
        }
        if !(1..=10000).contains(&self.sip.max_calls) {
            bad(
                "sip.max_calls",
                format!("expected an integer 1-10000, got {}", self.sip.max_calls),
            );
        }
        if !(1..=3600).contains(&self.sip.retry_after_secs) {
            bad(
                "sip.retry_after_secs",
                format!(
                    "expected an integer 1-3600, got {}",
                    self.sip.retry_after_secs
                ),
            );
        }
        // sip.registrar and sip.allow_from are typed: a bad value fails to parse, naming its key.
        if !self.sip.registrar.is_empty()
            && (self.sip.register_user.is_empty()
                || !self
                    .sip
                    .register_user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c)))
        {
            bad(
                "sip.register_user",
                format!(
                    "expected a SIP user name (letters, digits, -_.) when sip.registrar is set, got {:?}",
                    self.sip.register_user
                ),
            );
        }
        if !self.sip.auth_user.is_empty() && self.sip.auth_password.expose().is_empty() {
            bad(
                "sip.auth_password",
                "must be set when sip.auth_user is set".into(),
            );
        }
        if !self.sip.auth_user.is_empty()
            && (self.sip.auth_realm.is_empty() || self.sip.auth_realm.contains(['"', '\\']))
        {
            bad(
                "sip.auth_realm",
                format!(
                    "expected a non-empty realm without quotes or backslashes, got {:?}",
                    self.sip.auth_realm
                ),
            );
        }
        if !(60..=86400).contains(&self.sip.register_expires) {
            bad(
                "sip.register_expires",
                format!(
                    "expected an integer 60-86400, got {}",
                    self.sip.register_expires
                ),
            );
        }
        if self.sip.answer_after_ms > 60000 {
            bad(
                "sip.answer_after_ms",
                format!(
                    "expected an integer 0-60000, got {}",
                    self.sip.answer_after_ms
                ),
            );
        }
        if !(1024..=65534).contains(&self.media.rtp_port_min) {
            bad(
                "media.rtp_port_min",
                format!(
                    "expected an integer 1024-65534, got {}",
                    self.media.rtp_port_min
                ),
            );
        }
        if self.media.rtp_port_max < self.media.rtp_port_min.saturating_add(1) {
            bad(
                "media.rtp_port_max",
                format!(
                    "expected at least media.rtp_port_min + 1 ({}), got {}",
                    self.media.rtp_port_min.saturating_add(1),
                    self.media.rtp_port_max
                ),
            );
        }
        if self.media.hangup_after_greeting_secs > 3600 {
            bad(
                "media.hangup_after_greeting_secs",
                format!(
                    "expected an integer 0-3600, got {}",
                    self.media.hangup_after_greeting_secs
                ),
            );
        }
        if self.sip.enabled
            && !self.media.greeting_wav.as_os_str().is_empty()
            && !self.media.greeting_wav.is_file()
        {
            bad(
                "media.greeting_wav",
                format!("{}: no such file", self.media.greeting_wav.display()),
            );
        }
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
    fn date_order_is_read_from_file_and_env() {
        assert!(!Config::default().speech.date_order.day_first());
        let c = load("[speech]\ndate_order = \"day_first\"\n", &[]).unwrap();
        assert_eq!(c.speech.date_order, DateOrder::DayFirst);
        assert!(c.speech.date_order.day_first());
        let c = load("", &[("CAREVOICE_SPEECH__DATE_ORDER", "month_first")]).unwrap();
        assert_eq!(c.speech.date_order, DateOrder::MonthFirst);
        let e = load("[speech]\ndate_order = \"dmy\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("speech.date_order: unknown variant `dmy`"),
            "{e}"
        );
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
    fn console_plain_http_only_on_loopback_and_tls_files_in_pairs() {
        assert!(load("[console]\nplain_http = true\n", &[]).is_ok());
        let err = load("[console]\nplain_http = true\nbind = \"0.0.0.0\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("console.plain_http: plain HTTP is allowed only on a loopback"),
            "{err}"
        );
        let err = load("[console]\ntls_cert = \"/x.pem\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("console.tls_key: must be set together"),
            "{err}"
        );
        let err = load("[console]\nidle_timeout_secs = 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("console.idle_timeout_secs: expected an integer 1-86400, got 0"),
            "{err}"
        );
        let err = load("", &[("CAREVOICE_CONSOLE__PORT", "abc")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("console.port"), "{err}");
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
