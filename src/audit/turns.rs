//! One call's turns read back from the audit log, transcripts decrypted, for the console's call
//! page. The texts come out as [`Confidential`]: the caller decides who may see them (and records
//! that they did).

use serde_json::Value;
use sqlx::Row;

use super::keys::{Binding, Crypto, KeyError};
use super::{AuditError, Confidential};
use crate::store::Store;

/// Most turns read for one call (a call is capped in length; this bounds a forged id's work).
const MAX_TURNS: i64 = 500;

/// One turn as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTurn {
    pub seq: i64,
    pub turn: u64,
    /// When the turn started (ms since the epoch).
    pub ts_ms: i64,
    /// `unverified`, `verified`, `failed`.
    pub identity: String,
    pub intent: Option<String>,
    /// What the caller said; `None` when the turn had no speech.
    pub transcript: Option<Confidential>,
    pub reply: Option<Confidential>,
    /// The transcript key was destroyed by retention (crypto-shredding).
    pub shredded: bool,
}

/// Whether `id` can be a call id (uuid-like): anything else is not looked up at all, which also
/// keeps LIKE wildcards out of the query below.
pub fn plausible_call_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `call_turn` records of call `call_id`, in order.
pub async fn call_turns(
    store: &Store,
    crypto: &Crypto,
    call_id: &str,
) -> Result<Vec<StoredTurn>, AuditError> {
    if !plausible_call_id(call_id) {
        return Ok(Vec::new());
    }
    // The body is our own compact JSON with `call_id` first: a prefix match finds the call's rows
    // on both engines without JSON operators; the parsed body is checked again below.
    let pattern = format!("{{\"call_id\":\"{call_id}\",%");
    let rows = sqlx::query(
        "SELECT seq, ts_ms, body, transcript FROM audit_log \
         WHERE kind = 'call_turn' AND body LIKE $1 ORDER BY seq LIMIT $2",
    )
    .bind(pattern)
    .bind(MAX_TURNS)
    .fetch_all(store.pool())
    .await?;
    let mut turns = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let body: String = row.try_get("body")?;
        let body: Value =
            serde_json::from_str(&body).map_err(|e| AuditError::Encode(e.to_string()))?;
        if body["call_id"].as_str() != Some(call_id) {
            continue;
        }
        let sealed: Option<String> = row.try_get("transcript")?;
        let (mut transcript, mut reply, mut shredded) = (None, None, false);
        if let Some(sealed) = sealed {
            match crypto
                .open_sealed(&Binding::new("audit_log", seq, "transcript"), &sealed)
                .await
            {
                Ok(plain) => {
                    let texts: Value = serde_json::from_slice(&plain)
                        .map_err(|e| AuditError::Encode(e.to_string()))?;
                    transcript = texts["transcript"].as_str().map(Confidential::new);
                    reply = texts["reply"].as_str().map(Confidential::new);
                }
                Err(KeyError::Destroyed(_)) => shredded = true,
                Err(e) => return Err(e.into()),
            }
        }
        turns.push(StoredTurn {
            seq,
            turn: body["turn"].as_u64().unwrap_or(0),
            // When the turn happened (the record may have been written a moment later).
            ts_ms: body["started_ms"]
                .as_i64()
                .unwrap_or(row.try_get::<i64, _>("ts_ms")?),
            identity: body["identity"]
                .as_str()
                .unwrap_or("unverified")
                .to_string(),
            intent: body["intent"].as_str().map(str::to_string),
            transcript,
            reply,
            shredded,
        });
    }
    Ok(turns)
}
