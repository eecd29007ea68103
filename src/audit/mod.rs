//! The audit log and encryption at rest (HIPAA 164.312 (b) audit controls, (c) integrity,
//! (a)(2)(iv) encryption).
//!
//! # Public API (what other modules call)
//!
//! ```text
//! let crypto = Crypto::open(&store, &config.keys, &config.server.data_dir, true).await?;
//! let audit  = AuditLog::start(store.clone(), crypto.clone(), &config.audit);
//! let seq    = audit.append(AuditEvent::CallTurn(CallTurn { .. })).await?;   // durable when Ok
//! let receipt = audit.submit(event).await?;    // queued; the turn goes on (back-pressure only)
//! let seq    = receipt.committed().await?;     // later: durable
//! audit.shutdown().await?;                     // flush + signed checkpoint (server shutdown)
//!
//! // PHI columns of other tables (escalation summaries, messages):
//! let sealed: String = crypto.seal(Purpose::Phi, now_ms(), &Binding::new("messages", id, "body"), text).await?;
//! let text = crypto.open_sealed(&Binding::new("messages", id, "body"), &sealed).await?;
//! ```
//!
//! - [`AuditLog`] is a cheap, cloneable handle on one writer task per process. `append` returns the
//!   record's sequence number once the record is committed. Appends arriving together are written
//!   in one transaction (group commit). Each transaction locks the chain head (`audit_head`:
//!   `SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so several processes on
//!   one database still form one chain.
//! - [`AuditEvent`] covers every kind of record: call turns, FHIR reads/writes, staff views, admin
//!   changes, logins/logouts/failed logins, break-glass, config and flow changes, key rotations,
//!   exports and prunes. PHI fields are [`Confidential`] and are sealed; the record schema and the
//!   canonical encoding are documented in [`record`].
//! - Signed checkpoints (Ed25519, [`checkpoint`]) are written every `audit.checkpoint_every_records`
//!   records, every `audit.checkpoint_every_minutes` and at shutdown.
//! - [`verify::verify`], [`export::export`], [`prune::prune`] back `carevoice audit verify|export|
//!   prune`; [`keys`] backs `carevoice keys init|rotate`.
//!
//! Nothing here logs PHI: tracing sees sequence numbers, kinds and counts only.

mod emr;
pub mod export;
pub mod keys;
pub mod prune;
pub mod record;
pub mod turns;
pub mod verify;

use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

pub use keys::{Binding, Crypto, KeyError, MasterKeys, Purpose};
pub use record::{
    AdminChange, AuditEvent, Auth, AuthAction, BreakGlass, CallTurn, Confidential, ConfigChange,
    ConfigTarget, Export, FhirAccess, KeyRotation, Prune, Record, StaffView, TurnAction,
};

use crate::config::AuditConfig;
use crate::store::{Engine, Store, StoreError, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit writer has stopped")]
    Closed,
    #[error("audit record: {0}")]
    Encode(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Usage(String),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Store(StoreError::Query(e))
    }
}

/// Most records written in one transaction.
const MAX_BATCH: usize = 512;

enum Cmd {
    Append(Box<AuditEvent>, oneshot::Sender<Result<i64, String>>),
    Checkpoint(oneshot::Sender<Result<Option<i64>, String>>),
    Shutdown(oneshot::Sender<Result<Option<i64>, String>>),
}

/// Handle on the audit writer. Clone it freely.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Cmd>,
    crypto: Crypto,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer task (needs a tokio runtime).
    pub fn start(store: Store, crypto: Crypto, config: &AuditConfig) -> AuditLog {
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1) as usize);
        let writer = Writer {
            store,
            crypto: crypto.clone(),
            every_records: config.checkpoint_every_records.max(1) as i64,
            every: Duration::from_secs(config.checkpoint_every_minutes.max(1) * 60),
        };
        tokio::spawn(writer.run(rx));
        AuditLog { tx, crypto }
    }

    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    /// Appends one record; returns its sequence number once it is committed.
    pub async fn append(&self, event: AuditEvent) -> Result<i64, AuditError> {
        self.submit(event).await?.committed().await
    }

    /// Queues one record and returns at once (waiting only when the queue is full: back-pressure).
    /// The call path uses this so that a turn's reply is not held up by the database; it awaits
    /// the [`Receipt`] later (before the next turn or at hang-up) to know the record is durable.
    pub async fn submit(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Cmd::Append(Box::new(event), done))
            .await
            .map_err(|_| AuditError::Closed)?;
        Ok(Receipt(wait))
    }

    /// Queues one record without waiting, from synchronous code. Queued records are written before
    /// a later [`AuditLog::shutdown`], so nothing queued here is lost on exit. Gives the event back
    /// when the queue is full (the caller then waits with [`AuditLog::submit`]).
    pub fn try_submit(&self, event: AuditEvent) -> Result<Receipt, TrySubmitError> {
        let (done, wait) = oneshot::channel();
        match self.tx.try_send(Cmd::Append(Box::new(event), done)) {
            Ok(()) => Ok(Receipt(wait)),
            Err(mpsc::error::TrySendError::Full(Cmd::Append(event, _))) => {
                Err(TrySubmitError::Full(event))
            }
            Err(_) => Err(TrySubmitError::Closed),
        }
    }

    /// Writes a signed checkpoint at the head now (if the head moved since the last one).
    pub async fn checkpoint(&self) -> Result<Option<i64>, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Cmd::Checkpoint(done))
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await
            .map_err(|_| AuditError::Closed)?
            .map_err(AuditError::Io)
    }

    /// Writes what is queued, a final signed checkpoint, and stops the writer. Later appends fail
    /// with [`AuditError::Closed`].
    pub async fn shutdown(&self) -> Result<Option<i64>, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Cmd::Shutdown(done))
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await
            .map_err(|_| AuditError::Closed)?
            .map_err(AuditError::Io)
    }
}

/// Why [`AuditLog::try_submit`] did not queue a record.
#[derive(Debug)]
pub enum TrySubmitError {
    /// The queue is full; here is the event back.
    Full(Box<AuditEvent>),
    /// The writer has stopped.
    Closed,
}

/// A queued record; resolves to its sequence number once committed.
#[derive(Debug)]
pub struct Receipt(oneshot::Receiver<Result<i64, String>>);

impl Receipt {
    pub async fn committed(self) -> Result<i64, AuditError> {
        self.0
            .await
            .map_err(|_| AuditError::Closed)?
            .map_err(AuditError::Io)
    }
}

/// An event ready to write: clear JSON and the plaintext of its sealed columns.
struct Prepared {
    ts_ms: i64,
    kind: &'static str,
    body: String,
    phi: Option<Zeroizing<Vec<u8>>>,
    transcript: Option<Zeroizing<Vec<u8>>>,
}

struct Writer {
    store: Store,
    crypto: Crypto,
    every_records: i64,
    every: Duration,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Cmd>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(10).min(self.every));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut pending: Option<Cmd> = None;
        loop {
            let cmd = match pending.take() {
                Some(cmd) => cmd,
                None => tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(cmd) => cmd,
                        None => {
                            // Every handle dropped: close the chain with a checkpoint.
                            let _ = self.checkpoint_now().await;
                            return;
                        }
                    },
                    _ = ticker.tick() => {
                        if last_checkpoint.elapsed() >= self.every {
                            match self.checkpoint_now().await {
                                Ok(_) => last_checkpoint = Instant::now(),
                                Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
                            }
                        }
                        continue;
                    }
                },
            };
            match cmd {
                Cmd::Append(event, done) => {
                    let mut batch = vec![(event, done)];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Cmd::Append(event, done)) => batch.push((event, done)),
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let (events, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    match self.write_batch(&events).await {
                        Ok((first, checkpointed)) => {
                            if checkpointed {
                                last_checkpoint = Instant::now();
                            }
                            for (i, done) in waiters.into_iter().enumerate() {
                                let _ = done.send(Ok(first + i as i64));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, records = events.len(), "audit append failed");
                            let message = e.to_string();
                            for done in waiters {
                                let _ = done.send(Err(message.clone()));
                            }
                        }
                    }
                }
                Cmd::Checkpoint(done) => {
                    let result = self.checkpoint_now().await;
                    if result.is_ok() {
                        last_checkpoint = Instant::now();
                    }
                    let _ = done.send(result.map_err(|e| e.to_string()));
                }
                Cmd::Shutdown(done) => {
                    // Write what is already queued, then close with a checkpoint.
                    rx.close();
                    let mut events = Vec::new();
                    let mut waiters = Vec::new();
                    while let Ok(cmd) = rx.try_recv() {
                        if let Cmd::Append(event, done) = cmd {
                            events.push(event);
                            waiters.push(done);
                        }
                    }
                    while !events.is_empty() {
                        let n = events.len().min(MAX_BATCH);
                        let chunk: Vec<_> = events.drain(..n).collect();
                        let result = self.write_batch(&chunk).await;
                        for (i, done) in waiters.drain(..n).enumerate() {
                            let _ = done.send(match &result {
                                Ok((first, _)) => Ok(first + i as i64),
                                Err(e) => Err(e.to_string()),
                            });
                        }
                    }
                    let result = self.checkpoint_now().await;
                    tracing::info!(checkpoint = ?result.as_ref().ok(), "audit log closed");
                    let _ = done.send(result.map_err(|e| e.to_string()));
                    return;
                }
            }
        }
    }

    async fn prepare(&self, event: &AuditEvent, ts_ms: i64) -> Result<Prepared, AuditError> {
        let parts = event.parts();
        let enc = |v: &serde_json::Value| {
            serde_json::to_vec(v)
                .map(Zeroizing::new)
                .map_err(|e| AuditError::Encode(e.to_string()))
        };
        Ok(Prepared {
            ts_ms,
            kind: parts.kind,
            body: serde_json::to_string(&parts.body)
                .map_err(|e| AuditError::Encode(e.to_string()))?,
            phi: parts.phi.as_ref().map(enc).transpose()?,
            transcript: parts.transcript.as_ref().map(enc).transpose()?,
        })
    }

    /// Writes `events` in one transaction; returns the first seq and whether a checkpoint was
    /// written with them.
    async fn write_batch(&self, events: &[Box<AuditEvent>]) -> Result<(i64, bool), AuditError> {
        let ts_ms = now_ms();
        let mut prepared = Vec::with_capacity(events.len());
        for event in events {
            prepared.push(self.prepare(event, ts_ms).await?);
        }
        let need_phi = prepared.iter().any(|p| p.phi.is_some());
        let need_transcript = prepared.iter().any(|p| p.transcript.is_some());
        let audit_key = if need_phi {
            Some(self.crypto.data_key_for(Purpose::Audit, ts_ms).await?)
        } else {
            None
        };
        let transcript_key = if need_transcript {
            Some(self.crypto.data_key_for(Purpose::Transcript, ts_ms).await?)
        } else {
            None
        };

        let mut tx = begin_locked(&self.store).await?;
        let (mut seq, mut prev, last_cp) = head(&mut tx, self.store.engine()).await?;
        let first = seq + 1;
        let mut records = Vec::with_capacity(prepared.len());
        for p in &prepared {
            seq += 1;
            let seal = |plain: &Option<Zeroizing<Vec<u8>>>,
                        key: &Option<(String, Zeroizing<[u8; 32]>)>,
                        column: &str|
             -> Result<Option<String>, AuditError> {
                match (plain, key) {
                    (Some(plain), Some((id, key))) => Ok(Some(keys::seal_with(
                        id,
                        key,
                        &Binding::new("audit_log", seq, column),
                        plain,
                    )?)),
                    _ => Ok(None),
                }
            };
            let mut record = Record {
                seq,
                ts_ms: p.ts_ms,
                kind: p.kind.to_string(),
                version: record::SCHEMA_VERSION,
                body: p.body.clone(),
                phi: seal(&p.phi, &audit_key, "phi")?,
                transcript: seal(&p.transcript, &transcript_key, "transcript")?,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            record.hash = record.compute_hash();
            prev = record.hash.clone();
            records.push(record);
        }
        // Several rows per INSERT; 9 parameters a row stays under SQLite's limit.
        for chunk in records.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO audit_log (seq, ts_ms, kind, version, body, phi, transcript, \
                 prev_hash, hash) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 9;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${},${},${},${},${},${},${},${},${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                ));
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                query = query
                    .bind(r.seq)
                    .bind(r.ts_ms)
                    .bind(r.kind.clone())
                    .bind(r.version)
                    .bind(r.body.clone())
                    .bind(r.phi.clone())
                    .bind(r.transcript.clone())
                    .bind(r.prev_hash.clone())
                    .bind(r.hash.clone());
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, updated_ms = $3 WHERE id = 'main'")
            .bind(seq)
            .bind(&prev)
            .bind(ts_ms)
            .execute(&mut *tx)
            .await?;
        let checkpointed = seq - last_cp >= self.every_records;
        if checkpointed {
            insert_checkpoint(&mut tx, &self.crypto, seq, &prev).await?;
        }
        tx.commit().await?;
        Ok((first, checkpointed))
    }

    /// A checkpoint at the current head, unless there is one there already or the log is empty.
    async fn checkpoint_now(&self) -> Result<Option<i64>, AuditError> {
        let mut tx = begin_locked(&self.store).await?;
        let (seq, hash, last_cp) = head(&mut tx, self.store.engine()).await?;
        if seq == 0 || last_cp >= seq {
            return Ok(None);
        }
        insert_checkpoint(&mut tx, &self.crypto, seq, &hash).await?;
        tx.commit().await?;
        Ok(Some(seq))
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A transaction that holds the write lock of the chain (SQLite: `BEGIN IMMEDIATE`; PostgreSQL:
/// the head row is locked by [`head`]).
async fn begin_locked(store: &Store) -> Result<Tx, AuditError> {
    Ok(match store.engine() {
        Engine::Sqlite => store.pool().begin_with("BEGIN IMMEDIATE").await?,
        Engine::Postgres => store.pool().begin().await?,
    })
}

/// The chain head `(seq, hash)` and the last checkpoint's seq, in one round trip.
async fn head(tx: &mut Tx, engine: Engine) -> Result<(i64, String, i64), AuditError> {
    let sql = match engine {
        Engine::Postgres => {
            "SELECT seq, hash, (SELECT MAX(seq) FROM audit_checkpoints) AS cp \
             FROM audit_head WHERE id = 'main' FOR UPDATE"
        }
        Engine::Sqlite => {
            "SELECT seq, hash, (SELECT MAX(seq) FROM audit_checkpoints) AS cp \
             FROM audit_head WHERE id = 'main'"
        }
    };
    let row = sqlx::query(sql).fetch_one(&mut **tx).await?;
    Ok((
        row.try_get("seq")?,
        row.try_get("hash")?,
        row.try_get::<Option<i64>, _>("cp")?.unwrap_or(0),
    ))
}

async fn insert_checkpoint(
    tx: &mut Tx,
    crypto: &Crypto,
    seq: i64,
    hash: &str,
) -> Result<(), AuditError> {
    let ts_ms = now_ms();
    let signer = crypto.signer();
    let signature = signer.sign(&record::checkpoint_message(seq, hash, ts_ms));
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, hash, ts_ms, signing_key_id, signature) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seq)
    .bind(hash)
    .bind(ts_ms)
    .bind(&signer.id)
    .bind(signature)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes a checkpoint at the head from outside the writer (CLI commands that appended).
pub async fn checkpoint(store: &Store, crypto: &Crypto) -> Result<Option<i64>, AuditError> {
    let writer = Writer {
        store: store.clone(),
        crypto: crypto.clone(),
        every_records: i64::MAX,
        every: Duration::MAX,
    };
    writer.checkpoint_now().await
}

/// Who runs a CLI command, for the records it writes.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// The shared pieces a server (or a CLI command) needs, opened from the config.
#[derive(Clone, Debug)]
pub struct Audit {
    pub crypto: Crypto,
    pub log: AuditLog,
}

impl Audit {
    pub async fn open(
        store: &Store,
        config: &crate::config::Config,
        create_key_if_fresh: bool,
    ) -> Result<Audit, AuditError> {
        let crypto = Crypto::open(
            store,
            &config.keys,
            &config.server.data_dir,
            create_key_if_fresh,
        )
        .await?;
        let log = AuditLog::start(store.clone(), crypto.clone(), &config.audit);
        Ok(Audit { crypto, log })
    }
}
