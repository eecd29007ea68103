//! `carevoice audit verify`: walks the chain and names the first bad sequence number.
//!
//! Checks, in order: every checkpoint signature (with signing keys authenticated by the master
//! key); that the records form the gap-free run `first..=head`; each record's `prev_hash` against
//! its predecessor (or, after a prune, against the signed checkpoint anchoring the pruned prefix);
//! each record's hash against its canonical encoding; each checkpoint's hash against its record;
//! that no record or checkpoint lies beyond the head; and, when keys are given, that every sealed
//! column opens at its own row (a ciphertext moved between rows fails even if the attacker
//! recomputed the hashes).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;

use super::AuditError;
use super::keys::{self, Binding, Crypto, KeyError};
use super::record::{GENESIS_HASH, Record, checkpoint_message};
use crate::store::Store;

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: i64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit record {}: {}", self.seq, self.what)
    }
}

/// What verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub first: i64,
    pub last: i64,
    pub records: u64,
    pub checkpoints: u64,
    /// Records `1..=pruned_through` were pruned (anchored by a checkpoint).
    pub pruned_through: i64,
    pub sealed_opened: u64,
    /// Sealed values whose data key was destroyed by prune (unreadable by design).
    pub sealed_shredded: u64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    pub problem: Option<Problem>,
}

struct Checkpoint {
    hash: String,
}

const PAGE: i64 = 5000;

pub(crate) fn record_from_row(row: &sqlx::any::AnyRow) -> Result<Record, sqlx::Error> {
    Ok(Record {
        seq: row.try_get("seq")?,
        ts_ms: row.try_get("ts_ms")?,
        kind: row.try_get("kind")?,
        version: row.try_get("version")?,
        body: row.try_get("body")?,
        phi: row.try_get("phi")?,
        transcript: row.try_get("transcript")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

pub(crate) const RECORD_COLUMNS: &str =
    "seq, ts_ms, kind, version, body, phi, transcript, prev_hash, hash";

/// One page of stored records, `from..=to` in sequence order, at most `limit` rows (shared by
/// verify and export so both read the chain the same way).
pub(crate) async fn record_rows(
    store: &Store,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<sqlx::any::AnyRow>, AuditError> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3"
    )))
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(store.pool())
    .await?)
}

/// Verifies records `from..=to` (default: everything up to the head).
pub async fn verify(
    store: &Store,
    crypto: &Crypto,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Outcome, AuditError> {
    let mut report = Report::default();
    let fail = |report: Report, seq: i64, what: String| {
        Ok(Outcome {
            report,
            problem: Some(Problem { seq, what }),
        })
    };

    // Checkpoints and their signatures.
    let verifying = keys::verifying_keys(store, crypto.masters()).await?;
    let rows = sqlx::query(
        "SELECT seq, hash, ts_ms, signing_key_id, signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await?;
    let mut checkpoints = BTreeMap::new();
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let hash: String = row.try_get("hash")?;
        let ts_ms: i64 = row.try_get("ts_ms")?;
        let key_id: String = row.try_get("signing_key_id")?;
        let signature: String = row.try_get("signature")?;
        let Some(key) = verifying.get(&key_id) else {
            return fail(
                report,
                seq,
                format!("checkpoint signed by unknown key {key_id:?}"),
            );
        };
        let good = B64
            .decode(&signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .is_some_and(|sig| {
                key.verify_strict(&checkpoint_message(seq, &hash, ts_ms), &sig)
                    .is_ok()
            });
        if !good {
            return fail(report, seq, "checkpoint signature does not verify".into());
        }
        checkpoints.insert(seq, Checkpoint { hash });
    }
    report.checkpoints = checkpoints.len() as u64;

    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 'main'")
        .fetch_one(store.pool())
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;

    let bounds = sqlx::query("SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM audit_log")
        .fetch_one(store.pool())
        .await?;
    let lo: Option<i64> = bounds.try_get("lo")?;
    let hi: Option<i64> = bounds.try_get("hi")?;

    // Records beyond the head were inserted after the fact.
    if hi.is_some_and(|hi| hi > head_seq) {
        return fail(
            report,
            head_seq + 1,
            format!("record beyond the chain head ({head_seq}): inserted"),
        );
    }
    if let Some((&cp, _)) = checkpoints.range(head_seq + 1..).next() {
        return fail(
            report,
            head_seq + 1,
            format!("a signed checkpoint exists at {cp}, beyond the head: records were truncated"),
        );
    }

    // Where the stored log starts: 1, or just after a pruned, checkpoint-anchored prefix.
    let first_stored = lo.unwrap_or(head_seq + 1);
    let pruned_through = first_stored - 1;
    if pruned_through > 0 {
        if !checkpoints.contains_key(&pruned_through) {
            return fail(
                report,
                first_stored.min(head_seq.max(1)),
                format!(
                    "records 1..={pruned_through} are gone and no signed checkpoint anchors them: deleted"
                ),
            );
        }
        // A prune announces itself with a record (kept, since it is recent) before it deletes.
        let prunes = sqlx::query("SELECT body FROM audit_log WHERE kind = 'prune'")
            .fetch_all(store.pool())
            .await?;
        let announced = prunes.iter().any(|row| {
            row.try_get::<String, _>("body")
                .ok()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| v["pruned_through"].as_i64())
                == Some(pruned_through)
        });
        if !announced {
            return fail(
                report,
                first_stored.min(head_seq.max(1)),
                format!(
                    "records 1..={pruned_through} are gone but no prune record announces it: deleted"
                ),
            );
        }
        report.pruned_through = pruned_through;
    }
    let start = from.unwrap_or(1).max(first_stored).max(1);
    let end = to.unwrap_or(head_seq).min(head_seq);
    report.first = start;
    report.last = start - 1;

    let mut prev_hash = if start == 1 {
        GENESIS_HASH.to_string()
    } else if start - 1 == pruned_through {
        checkpoints[&pruned_through].hash.clone()
    } else {
        let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(start - 1)
            .fetch_optional(store.pool())
            .await?;
        match row {
            Some(row) => row.try_get("hash")?,
            None => return fail(report, start - 1, "record is missing: deleted".into()),
        }
    };

    let mut expected = start;
    let mut shredded = std::collections::HashSet::new();
    while expected <= end {
        let rows = record_rows(store, expected, end, PAGE).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let r = record_from_row(row)?;
            if r.seq != expected {
                return fail(report, expected, "record is missing: deleted".into());
            }
            if r.prev_hash != prev_hash {
                return fail(
                    report,
                    r.seq,
                    format!(
                        "prev_hash does not match record {}: records reordered, inserted or replaced",
                        r.seq - 1
                    ),
                );
            }
            if r.compute_hash() != r.hash {
                return fail(
                    report,
                    r.seq,
                    "contents do not match the record's hash: modified".into(),
                );
            }
            if let Some(cp) = checkpoints.get(&r.seq)
                && cp.hash != r.hash
            {
                return fail(
                    report,
                    r.seq,
                    "differs from the signed checkpoint at this record: chain rewritten".into(),
                );
            }
            for (column, sealed) in [("phi", &r.phi), ("transcript", &r.transcript)] {
                let Some(sealed) = sealed else { continue };
                match crypto
                    .open_sealed(&Binding::new("audit_log", r.seq, column), sealed)
                    .await
                {
                    Ok(_) => report.sealed_opened += 1,
                    Err(KeyError::Destroyed(id)) => {
                        shredded.insert(id);
                        report.sealed_shredded += 1;
                    }
                    Err(KeyError::Open { .. } | KeyError::Malformed(_)) => {
                        return fail(
                            report,
                            r.seq,
                            format!(
                                "sealed column {column} does not open at this record: ciphertext replaced"
                            ),
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            prev_hash = r.hash.clone();
            report.records += 1;
            report.last = r.seq;
            expected += 1;
        }
    }
    if expected <= end {
        return fail(
            report,
            expected,
            format!(
                "record is missing (the log ends at {}): truncated",
                expected - 1
            ),
        );
    }
    if to.is_none_or(|to| to >= head_seq)
        && head_seq > 0
        && end == head_seq
        && prev_hash != head_hash
    {
        return fail(
            report,
            head_seq,
            "does not match the chain head's hash: modified or truncated".into(),
        );
    }
    Ok(Outcome {
        report,
        problem: None,
    })
}
