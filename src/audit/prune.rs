//! `carevoice audit prune`: retention and disposal.
//!
//! - Audit records older than `audit.retention_days` are deleted, but only up to a signed
//!   checkpoint: the checkpoint at the last deleted record anchors what remains, so `verify` still
//!   passes. The prune first appends a `prune` record announcing the boundary, then deletes.
//! - Data keys whose month ended more than the purpose's retention ago are destroyed
//!   (crypto-shredding): `audit` keys after `audit.retention_days`, `transcript` keys after
//!   `audit.transcript_retention_days`, `phi` keys (other tables' PHI columns) after
//!   `audit.phi_retention_days`. Ciphertexts under a destroyed key stay in place (the chain hashes
//!   them) and can never be read again.

use sqlx::Row;

use super::keys::Purpose;
use super::{AuditError, AuditEvent, AuditLog, Prune};
use crate::config::AuditConfig;
use crate::store::{Store, now_ms};

const DAY_MS: i64 = 86_400_000;

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub pruned_through: i64,
    pub records_deleted: u64,
    pub data_keys_destroyed: Vec<String>,
}

/// Days the data keys of `purpose` stay readable; `None`: kept (credentials are replaced, not
/// expired).
fn retention_days(config: &AuditConfig, purpose: Purpose) -> Option<u64> {
    match purpose {
        Purpose::Audit => Some(config.retention_days),
        Purpose::Transcript => Some(config.transcript_retention_days),
        Purpose::Phi => Some(config.phi_retention_days),
        Purpose::Credential => None,
    }
}

/// Prunes as of `now_ms` (the current time, or another time for a disposal drill).
pub async fn prune(
    store: &Store,
    log: &AuditLog,
    config: &AuditConfig,
    actor: &str,
    as_of_ms: i64,
) -> Result<Summary, AuditError> {
    let audit_cutoff = as_of_ms.saturating_sub(config.retention_days as i64 * DAY_MS);
    // The first record that must stay; everything before it has expired.
    let row = sqlx::query("SELECT MIN(seq) AS seq FROM audit_log WHERE ts_ms >= $1")
        .bind(audit_cutoff)
        .fetch_one(store.pool())
        .await?;
    let keep_from: Option<i64> = row.try_get("seq")?;
    let row = sqlx::query("SELECT MIN(seq) AS lo FROM audit_log")
        .fetch_one(store.pool())
        .await?;
    let lo: Option<i64> = row.try_get("lo")?;
    let already = lo.map_or(0, |lo| lo - 1);
    // Records up to the last checkpoint before `keep_from` can go (all of them when every record
    // expired: the checkpoint at the head then anchors an empty remainder, plus the prune record).
    if keep_from.is_none() {
        log.checkpoint().await?;
    }
    let limit = keep_from.unwrap_or(i64::MAX);
    let row = sqlx::query("SELECT MAX(seq) AS seq FROM audit_checkpoints WHERE seq < $1")
        .bind(limit)
        .fetch_one(store.pool())
        .await?;
    let anchor: i64 = row.try_get::<Option<i64>, _>("seq")?.unwrap_or(0);
    let pruned_through = anchor.max(already);

    let mut expired_keys = Vec::new();
    for purpose in Purpose::ALL {
        let Some(days) = retention_days(config, purpose) else {
            continue;
        };
        let cutoff = as_of_ms.saturating_sub(days as i64 * DAY_MS);
        let rows = sqlx::query(
            "SELECT id FROM data_keys WHERE purpose = $1 AND period_end_ms <= $2 \
             AND wrapped IS NOT NULL ORDER BY id",
        )
        .bind(purpose.as_str())
        .bind(cutoff)
        .fetch_all(store.pool())
        .await?;
        for row in &rows {
            expired_keys.push(row.try_get::<String, _>("id")?);
        }
    }
    let to_delete = if pruned_through > already {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE seq <= $1")
            .bind(pruned_through)
            .fetch_one(store.pool())
            .await?;
        row.try_get::<i64, _>("n")? as u64
    } else {
        0
    };
    if to_delete == 0 && expired_keys.is_empty() {
        return Ok(Summary {
            pruned_through: already,
            ..Summary::default()
        });
    }

    // Announce, then act: a crash in between leaves more data than announced, never less.
    log.append(AuditEvent::Prune(Prune {
        actor: actor.into(),
        pruned_through: pruned_through.max(0) as u64,
        records_deleted: to_delete,
        data_keys_destroyed: expired_keys.clone(),
    }))
    .await?;
    let mut tx = store.pool().begin().await?;
    let deleted = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
        .bind(pruned_through)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    for id in &expired_keys {
        sqlx::query("UPDATE data_keys SET wrapped = NULL, destroyed_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    log.crypto().forget_cached_keys();
    tracing::info!(
        pruned_through,
        records = deleted,
        keys = expired_keys.len(),
        "audit prune done"
    );
    Ok(Summary {
        pruned_through,
        records_deleted: deleted,
        data_keys_destroyed: expired_keys,
    })
}
