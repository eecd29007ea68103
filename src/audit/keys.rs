//! At-rest encryption: AES-256-GCM envelope encryption shared by the audit log and every PHI
//! column of the store.
//!
//! - A **master key** (32 bytes) comes from the key file (`keys.file`, mode 0600, refused when
//!   group or others may read it) or from the standard output of `keys.kms_command`. Both hold
//!   lines `ID BASE64`; the first line is the current key, later lines are older keys still needed
//!   to unwrap (present only while a rotation runs).
//! - **Data keys** (32 bytes, one per [`Purpose`] and calendar month, UTC) live in `data_keys`,
//!   wrapped by the master key. `keys rotate` re-wraps them (and the checkpoint signing key) under
//!   a new master key; prune destroys expired ones (crypto-shredding).
//! - A sealed value is the text `v1.KEYID.BASE64(nonce || ciphertext || tag)`. The associated data
//!   is the [`Binding`] (table, row, column) plus the key id, so a ciphertext copied to another
//!   row or column fails to open.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use sqlx::Row;
use zeroize::Zeroizing;

use crate::config::KeysConfig;
use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "keys.file {}: not found; create one with `carevoice keys init` (or restore the clinic's key file)",
        .0.display()
    )]
    Missing(PathBuf),
    #[error(
        "keys.file {}: mode {mode:04o} lets group or others read it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{origin}:{line}: {message}")]
    Parse {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: holds no key")]
    Empty { origin: String },
    #[error("keys.file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keys.kms_command: {0}")]
    Kms(String),
    #[error(
        "{what} is wrapped by master key {master_id:?}, which the key source ({origin}) does not hold: wrong key file?"
    )]
    UnknownMaster {
        what: String,
        master_id: String,
        origin: String,
    },
    #[error(
        "master key {master_id:?} cannot unwrap {what}: wrong key, or the database was altered"
    )]
    Unwrap { what: String, master_id: String },
    #[error("data key {0} was destroyed (its retention expired); what it sealed is unreadable")]
    Destroyed(String),
    #[error("sealed value for {binding}: {reason}")]
    Open { binding: String, reason: String },
    #[error("sealed value: malformed ({0})")]
    Malformed(String),
    #[error("encryption failed")]
    Seal,
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for KeyError {
    fn from(e: sqlx::Error) -> Self {
        KeyError::Store(StoreError::Query(e))
    }
}

/// What a data key protects; each purpose has its own keys and its own retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// PHI fields of audit records (patient and resource ids): kept as long as the audit log.
    Audit,
    /// Call transcripts and reply texts: usually kept for less time.
    Transcript,
    /// Other PHI columns of the store (escalation summaries, messages).
    Phi,
    /// Sign-in secrets of console accounts (TOTP seeds): never pruned, since shredding them would
    /// lock every account out; `users reset-mfa` replaces one.
    Credential,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Purpose::Audit,
        Purpose::Transcript,
        Purpose::Phi,
        Purpose::Credential,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Audit => "audit",
            Purpose::Transcript => "transcript",
            Purpose::Phi => "phi",
            Purpose::Credential => "credential",
        }
    }
}

/// Where a ciphertext lives: it opens only there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub table: String,
    pub row: String,
    pub column: String,
}

impl Binding {
    pub fn new(table: &str, row: impl ToString, column: &str) -> Self {
        Self {
            table: table.into(),
            row: row.to_string(),
            column: column.into(),
        }
    }

    fn aad(&self, key_id: &str) -> Vec<u8> {
        let mut aad = b"carevoice/seal/v1".to_vec();
        for part in [&self.table, &self.row, &self.column] {
            aad.push(0);
            aad.extend_from_slice(part.as_bytes());
        }
        aad.push(0);
        aad.extend_from_slice(key_id.as_bytes());
        aad
    }
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.table, self.row, self.column)
    }
}

type Secret = Zeroizing<[u8; 32]>;

pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyError> {
    let mut out = Zeroizing::new([0u8; N]);
    getrandom::fill(out.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(out)
}

fn aead(key: &[u8; 32], nonce: &[u8; 12], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let nonce = aes_gcm::Nonce::from(*nonce);
    cipher
        .encrypt(&nonce, Payload { msg, aad })
        .map_err(|_| KeyError::Seal)
}

/// `nonce || ciphertext || tag`, fresh random nonce.
fn encrypt(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let nonce = random_bytes::<12>()?;
    let mut out = nonce.to_vec();
    out.extend(aead(key, &nonce, msg, aad)?);
    Ok(out)
}

fn decrypt(key: &[u8; 32], data: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if data.len() < 12 + 16 {
        return None;
    }
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&data[..12]);
    cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: &data[12..],
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// The master keys from the key file or the KMS command. The first is current.
pub struct MasterKeys {
    keys: Vec<(String, Secret)>,
    origin: String,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("ids", &self.ids())
            .field("origin", &self.origin)
            .finish()
    }
}

impl MasterKeys {
    /// A fresh random key.
    pub fn generate() -> Result<MasterKeys, KeyError> {
        let id = format!("mk-{}", hex::encode(*random_bytes::<6>()?));
        Ok(MasterKeys {
            keys: vec![(id, random_bytes::<32>()?)],
            origin: "a new key".into(),
        })
    }

    /// Parses `ID BASE64` lines (`#` comments and blank lines skipped).
    pub fn parse(text: &str, origin: &str) -> Result<MasterKeys, KeyError> {
        let mut keys: Vec<(String, Secret)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| KeyError::Parse {
                origin: origin.into(),
                line: n + 1,
                message,
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("expected `ID BASE64-KEY`".into()));
            };
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(format!("key id {id:?}: only letters, digits, - and _")));
            }
            let raw = Zeroizing::new(
                B64.decode(b64)
                    .map_err(|e| bad(format!("key is not base64: {e}")))?,
            );
            let Ok(bytes) = <[u8; 32]>::try_from(raw.as_slice()) else {
                return Err(bad(format!("key is {} bytes, expected 32", raw.len())));
            };
            if keys.iter().any(|(other, _)| other == id) {
                return Err(bad(format!("key id {id:?} appears twice")));
            }
            keys.push((id.to_string(), Zeroizing::new(bytes)));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                origin: origin.into(),
            });
        }
        Ok(MasterKeys {
            keys,
            origin: origin.into(),
        })
    }

    /// Reads the key file, refusing one that group or others can access.
    pub fn from_file(path: &Path) -> Result<MasterKeys, KeyError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing(path.to_path_buf()));
            }
            Err(source) => {
                return Err(KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        Self::parse(&text, &format!("keys.file {}", path.display()))
    }

    /// Runs the KMS command (`sh -c`) and reads the keys from its standard output.
    pub fn from_kms(command: &str) -> Result<MasterKeys, KeyError> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| KeyError::Kms(format!("cannot run {command:?}: {e}")))?;
        if !out.status.success() {
            // Its stderr may say why; its stdout may hold key material and is never shown.
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(KeyError::Kms(format!(
                "{command:?} failed ({}): {}",
                out.status,
                err.trim()
            )));
        }
        let text = Zeroizing::new(String::from_utf8(out.stdout).map_err(|_| {
            KeyError::Kms(format!("{command:?} printed something that is not UTF-8"))
        })?);
        Self::parse(&text, "keys.kms_command output")
    }

    /// From the config: the KMS command when set, else the key file.
    pub fn load(config: &KeysConfig, data_dir: &Path) -> Result<MasterKeys, KeyError> {
        if config.kms_command.trim().is_empty() {
            Self::from_file(&config.resolved_file(data_dir))
        } else {
            Self::from_kms(&config.kms_command)
        }
    }

    /// The key file text.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# carevoice master key file: keep it mode 0600 and back it up apart from the database.\n\
             # Without it, the encrypted audit payloads and PHI columns cannot be read.\n",
        ));
        for (id, key) in &self.keys {
            text.push_str(id);
            text.push(' ');
            text.push_str(&B64.encode(key.as_slice()));
            text.push('\n');
        }
        text
    }

    /// Writes the key file atomically with mode 0600 (a temp file beside it, then rename).
    pub fn write_file(&self, path: &Path, create_new: bool) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(self.to_file_text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        drop(file);
        if create_new {
            // hard_link fails when the target exists: two processes racing both get one key.
            let linked = std::fs::hard_link(&tmp, path);
            let _ = std::fs::remove_file(&tmp);
            linked.map_err(io)
        } else {
            std::fs::rename(&tmp, path).map_err(io)
        }
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn get(&self, id: &str, what: &str) -> Result<&[u8; 32], KeyError> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| &**key)
            .ok_or_else(|| KeyError::UnknownMaster {
                what: what.into(),
                master_id: id.into(),
                origin: self.origin.clone(),
            })
    }

    /// `new` first, then these keys: the file written during a rotation.
    pub fn with_new_current(&self, new: MasterKeys) -> MasterKeys {
        let mut keys = new.keys;
        keys.extend(self.keys.iter().map(|(id, k)| (id.clone(), k.clone())));
        MasterKeys {
            keys,
            origin: self.origin.clone(),
        }
    }

    /// Only the current key.
    pub fn current_only(&self) -> MasterKeys {
        MasterKeys {
            keys: vec![self.keys[0].clone()],
            origin: self.origin.clone(),
        }
    }

    fn wrap(&self, what: &str, secret: &[u8]) -> Result<(String, String), KeyError> {
        let (id, key) = &self.keys[0];
        let sealed = encrypt(key, secret, &wrap_aad(what, id))?;
        Ok((id.clone(), B64.encode(sealed)))
    }

    fn unwrap(&self, what: &str, master_id: &str, wrapped: &str) -> Result<Secret, KeyError> {
        let key = self.get(master_id, what)?;
        let fail = || KeyError::Unwrap {
            what: what.into(),
            master_id: master_id.into(),
        };
        let data = B64.decode(wrapped).map_err(|_| fail())?;
        let plain = decrypt(key, &data, &wrap_aad(what, master_id)).ok_or_else(fail)?;
        let bytes = <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| fail())?;
        Ok(Zeroizing::new(bytes))
    }
}

fn wrap_aad(what: &str, master_id: &str) -> Vec<u8> {
    format!("carevoice/wrap/v1\0{what}\0{master_id}").into_bytes()
}

/// The calendar month (UTC) holding `at_ms`: `(label, start_ms, end_ms)`.
pub(crate) fn month_of(at_ms: i64) -> (String, i64, i64) {
    let ts = jiff::Timestamp::from_millisecond(at_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let date = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    let start = date.first_of_month();
    let next = start
        .checked_add(jiff::Span::new().months(1))
        .unwrap_or(start);
    let ms = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0)
    };
    (
        format!("{:04}-{:02}", start.year(), start.month()),
        ms(start),
        ms(next),
    )
}

/// One checkpoint signing key, unwrapped.
pub struct Signer {
    pub id: String,
    key: SigningKey,
}

impl Signer {
    pub fn sign(&self, message: &[u8]) -> String {
        use ed25519_dalek::Signer as _;
        B64.encode(self.key.sign(message).to_bytes())
    }
}

/// Encryption at rest: seals and opens PHI for any table. Cheap to clone.
#[derive(Clone)]
pub struct Crypto {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    masters: MasterKeys,
    cache: Mutex<HashMap<String, Secret>>,
    signer: Signer,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto")
            .field("masters", &self.inner.masters)
            .finish()
    }
}

const SIGNING_KEY_COLUMNS: &str = "id, public_key, wrapped_secret, master_id";

impl Crypto {
    /// Loads the master key(s) from the config and checks them against the database by
    /// unwrapping the checkpoint signing key (made on first use). With `create_if_fresh`, a
    /// missing key file is created when the database holds no wrapped key yet (first start).
    pub async fn open(
        store: &Store,
        config: &KeysConfig,
        data_dir: &Path,
        create_if_fresh: bool,
    ) -> Result<Crypto, KeyError> {
        let masters = match MasterKeys::load(config, data_dir) {
            Err(KeyError::Missing(path)) if create_if_fresh && !has_wrapped_keys(store).await? => {
                let fresh = MasterKeys::generate()?;
                match fresh.write_file(&path, true) {
                    Ok(()) => tracing::warn!(
                        path = %path.display(),
                        "created a new master key file: back it up apart from the database"
                    ),
                    Err(KeyError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                MasterKeys::from_file(&path)?
            }
            other => other?,
        };
        Self::with_masters(store, masters).await
    }

    /// As [`Crypto::open`], with master keys already loaded.
    pub async fn with_masters(store: &Store, masters: MasterKeys) -> Result<Crypto, KeyError> {
        let signer = load_or_create_signer(store, &masters).await?;
        Ok(Crypto {
            inner: Arc::new(Inner {
                store: store.clone(),
                masters,
                cache: Mutex::new(HashMap::new()),
                signer,
            }),
        })
    }

    pub fn masters(&self) -> &MasterKeys {
        &self.inner.masters
    }

    pub(crate) fn signer(&self) -> &Signer {
        &self.inner.signer
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Seals `plaintext` under the data key of `purpose` for the month of `at_ms`, bound to
    /// `binding`. Returns the text to store.
    pub async fn seal(
        &self,
        purpose: Purpose,
        at_ms: i64,
        binding: &Binding,
        plaintext: &[u8],
    ) -> Result<String, KeyError> {
        let (key_id, key) = self.data_key_for(purpose, at_ms).await?;
        seal_with(&key_id, &key, binding, plaintext)
    }

    /// Opens a value made by [`Crypto::seal`] for the same binding.
    pub async fn open_sealed(
        &self,
        binding: &Binding,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let (key_id, data) = split_sealed(sealed)?;
        let key = self.data_key_by_id(key_id).await?;
        decrypt(&key, &data, &binding.aad(key_id)).ok_or_else(|| KeyError::Open {
            binding: binding.to_string(),
            reason: format!(
                "does not authenticate under data key {key_id} (altered, or copied from another row)"
            ),
        })
    }

    /// The data key of `purpose` for the month of `at_ms`, made on first use.
    pub(crate) async fn data_key_for(
        &self,
        purpose: Purpose,
        at_ms: i64,
    ) -> Result<(String, Secret), KeyError> {
        let (label, start, end) = month_of(at_ms);
        let id = format!("{}-{label}", purpose.as_str());
        if let Some(key) = self.cached(&id) {
            return Ok((id, key));
        }
        if self.load_data_key(&id).await?.is_none() {
            let fresh = random_bytes::<32>()?;
            let (master_id, wrapped) = self
                .inner
                .masters
                .wrap(&format!("data key {id}"), fresh.as_slice())?;
            // Two processes may race here: the first insert wins and both use it.
            sqlx::query(
                "INSERT INTO data_keys (id, purpose, period_start_ms, period_end_ms, wrapped, \
                 master_id, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&id)
            .bind(purpose.as_str())
            .bind(start)
            .bind(end)
            .bind(&wrapped)
            .bind(&master_id)
            .bind(now_ms())
            .execute(self.inner.store.pool())
            .await?;
        }
        let key = self.data_key_by_id(&id).await?;
        Ok((id, key))
    }

    fn cached(&self, id: &str) -> Option<Secret> {
        self.inner
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(id).cloned())
    }

    async fn data_key_by_id(&self, id: &str) -> Result<Secret, KeyError> {
        if let Some(key) = self.cached(id) {
            return Ok(key);
        }
        match self.load_data_key(id).await? {
            Some(key) => Ok(key),
            None => Err(KeyError::Malformed(format!("unknown data key {id:?}"))),
        }
    }

    /// Reads and unwraps one data key; `None` when there is no such row.
    async fn load_data_key(&self, id: &str) -> Result<Option<Secret>, KeyError> {
        let row = sqlx::query("SELECT wrapped, master_id FROM data_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(self.inner.store.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let wrapped: Option<String> = row.try_get("wrapped")?;
        let master_id: String = row.try_get("master_id")?;
        let Some(wrapped) = wrapped else {
            return Err(KeyError::Destroyed(id.into()));
        };
        let key = self
            .inner
            .masters
            .unwrap(&format!("data key {id}"), &master_id, &wrapped)?;
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.insert(id.to_string(), key.clone());
        }
        Ok(Some(key))
    }

    /// Forgets cached data keys (after prune destroyed some).
    pub fn forget_cached_keys(&self) {
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.clear();
        }
    }
}

pub(crate) fn seal_with(
    key_id: &str,
    key: &[u8; 32],
    binding: &Binding,
    plaintext: &[u8],
) -> Result<String, KeyError> {
    let data = encrypt(key, plaintext, &binding.aad(key_id))?;
    Ok(format!("v1.{key_id}.{}", B64.encode(data)))
}

fn split_sealed(sealed: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(key_id), Some(b64)) if !key_id.is_empty() => {
            let data = B64
                .decode(b64)
                .map_err(|e| KeyError::Malformed(format!("not base64: {e}")))?;
            Ok((key_id, data))
        }
        _ => Err(KeyError::Malformed("expected v1.KEY.BASE64".into())),
    }
}

async fn has_wrapped_keys(store: &Store) -> Result<bool, KeyError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM data_keys) + (SELECT COUNT(*) FROM audit_signing_keys)",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(n > 0)
}

fn signing_what(id: &str, public_key: &str) -> String {
    format!("signing key {id} {public_key}")
}

async fn load_or_create_signer(store: &Store, masters: &MasterKeys) -> Result<Signer, KeyError> {
    let newest = || {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM audit_signing_keys ORDER BY created_ms DESC, id LIMIT 1"
        )))
    };
    let mut row = newest().fetch_optional(store.pool()).await?;
    if row.is_none() {
        let secret = random_bytes::<32>()?;
        let key = SigningKey::from_bytes(&secret);
        let public_key = B64.encode(key.verifying_key().to_bytes());
        let id = format!("sk-{}", hex::encode(*random_bytes::<6>()?));
        let (master_id, wrapped) =
            masters.wrap(&signing_what(&id, &public_key), secret.as_slice())?;
        sqlx::query(
            "INSERT INTO audit_signing_keys (id, public_key, wrapped_secret, master_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(&public_key)
        .bind(&wrapped)
        .bind(&master_id)
        .bind(now_ms())
        .execute(store.pool())
        .await?;
        row = newest().fetch_optional(store.pool()).await?;
    }
    let Some(row) = row else {
        return Err(KeyError::Malformed("no checkpoint signing key".into()));
    };
    let (id, key) = unwrap_signing_row(&row, masters)?;
    Ok(Signer { id, key })
}

fn unwrap_signing_row(
    row: &sqlx::any::AnyRow,
    masters: &MasterKeys,
) -> Result<(String, SigningKey), KeyError> {
    let id: String = row.try_get("id")?;
    let public_key: String = row.try_get("public_key")?;
    let wrapped: String = row.try_get("wrapped_secret")?;
    let master_id: String = row.try_get("master_id")?;
    let what = signing_what(&id, &public_key);
    let secret = masters.unwrap(&what, &master_id, &wrapped)?;
    let key = SigningKey::from_bytes(&secret);
    if B64.encode(key.verifying_key().to_bytes()) != public_key {
        return Err(KeyError::Unwrap { what, master_id });
    }
    Ok((id, key))
}

/// The checkpoint verification keys, each authenticated by unwrapping its secret with the master
/// key (a public key swapped in the database fails here).
pub(crate) async fn verifying_keys(
    store: &Store,
    masters: &MasterKeys,
) -> Result<HashMap<String, ed25519_dalek::VerifyingKey>, KeyError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SIGNING_KEY_COLUMNS} FROM audit_signing_keys"
    )))
    .fetch_all(store.pool())
    .await?;
    let mut out = HashMap::new();
    for row in &rows {
        let (id, key) = unwrap_signing_row(row, masters)?;
        out.insert(id, key.verifying_key());
    }
    Ok(out)
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    pub data_keys: u64,
    pub signing_keys: u64,
}

/// Re-wraps every data key and signing key under `masters`' current key, in one transaction.
/// Keys already wrapped by it are left alone; destroyed keys stay destroyed.
pub async fn rewrap_all(store: &Store, masters: &MasterKeys) -> Result<Rewrapped, KeyError> {
    let current = masters.current_id().to_string();
    let mut tx = store.pool().begin().await?;
    let rows = sqlx::query(
        "SELECT id, wrapped, master_id FROM data_keys WHERE wrapped IS NOT NULL AND master_id <> $1",
    )
    .bind(&current)
    .fetch_all(&mut *tx)
    .await?;
    let mut done = Rewrapped {
        data_keys: 0,
        signing_keys: 0,
    };
    for row in &rows {
        let id: String = row.try_get("id")?;
        let wrapped: String = row.try_get("wrapped")?;
        let master_id: String = row.try_get("master_id")?;
        let what = format!("data key {id}");
        let secret = masters.unwrap(&what, &master_id, &wrapped)?;
        let (new_master, new_wrapped) = masters.wrap(&what, secret.as_slice())?;
        sqlx::query("UPDATE data_keys SET wrapped = $1, master_id = $2 WHERE id = $3")
            .bind(&new_wrapped)
            .bind(&new_master)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        done.data_keys += 1;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SIGNING_KEY_COLUMNS} FROM audit_signing_keys WHERE master_id <> $1"
    )))
    .bind(&current)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let id: String = row.try_get("id")?;
        let public_key: String = row.try_get("public_key")?;
        let wrapped: String = row.try_get("wrapped_secret")?;
        let master_id: String = row.try_get("master_id")?;
        let what = signing_what(&id, &public_key);
        let secret = masters.unwrap(&what, &master_id, &wrapped)?;
        let (new_master, new_wrapped) = masters.wrap(&what, secret.as_slice())?;
        sqlx::query(
            "UPDATE audit_signing_keys SET wrapped_secret = $1, master_id = $2 WHERE id = $3",
        )
        .bind(&new_wrapped)
        .bind(&new_master)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        done.signing_keys += 1;
    }
    tx.commit().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_text_round_trips_and_bad_lines_are_named() {
        let keys = MasterKeys::generate().unwrap();
        let parsed = MasterKeys::parse(&keys.to_file_text(), "t").unwrap();
        assert_eq!(parsed.ids(), keys.ids());
        let err = MasterKeys::parse("# c\n\nmk-1 notbase64!!\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f:3: key is not base64"), "{err}");
        let short = MasterKeys::parse(&format!("mk-1 {}\n", B64.encode([1u8; 16])), "f")
            .unwrap_err()
            .to_string();
        assert!(short.contains("16 bytes, expected 32"), "{short}");
        assert!(matches!(
            MasterKeys::parse("# nothing\n", "f"),
            Err(KeyError::Empty { .. })
        ));
    }

    #[test]
    fn wrapping_binds_what_and_master() {
        let keys = MasterKeys::generate().unwrap();
        let (id, wrapped) = keys.wrap("data key a", &[7u8; 32]).unwrap();
        assert_eq!(
            *keys.unwrap("data key a", &id, &wrapped).unwrap(),
            [7u8; 32]
        );
        assert!(matches!(
            keys.unwrap("data key b", &id, &wrapped),
            Err(KeyError::Unwrap { .. })
        ));
        let other = MasterKeys::generate().unwrap();
        assert!(matches!(
            other.unwrap("data key a", &id, &wrapped),
            Err(KeyError::UnknownMaster { .. })
        ));
    }

    #[test]
    fn sealed_values_open_only_at_their_binding() {
        let key = [3u8; 32];
        let here = Binding::new("messages", "m1", "body");
        let sealed = seal_with("phi-2026-01", &key, &here, b"call me back").unwrap();
        assert!(!sealed.contains("call me back"));
        let (id, data) = split_sealed(&sealed).unwrap();
        assert_eq!(id, "phi-2026-01");
        assert_eq!(
            decrypt(&key, &data, &here.aad(id)).unwrap().as_slice(),
            b"call me back"
        );
        let elsewhere = Binding::new("messages", "m2", "body");
        assert!(decrypt(&key, &data, &elsewhere.aad(id)).is_none());
        assert!(split_sealed("garbage").is_err());
    }

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-11-23T02:00:00Z
        let (label, start, end) = month_of(1_795_399_200_000);
        assert_eq!(label, "2026-11");
        assert_eq!(start, 1_793_491_200_000);
        assert_eq!(end, 1_796_083_200_000);
    }
}
