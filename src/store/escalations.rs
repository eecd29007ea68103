//! Escalations: calls handed to staff (see `migrations/0003_escalations.sql`).

use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRecord {
    pub id: String,
    pub call_id: String,
    pub created_ms: i64,
    /// The flow step that escalated (`human`, `emergency`, `identity_failed`, ...): no PHI.
    pub reason: String,
    pub urgent: bool,
    /// `verified` or `unverified`.
    pub identity: String,
    /// `pending` (transfer under way), `transferred`, `callback` (no transfer target, or the
    /// transfer failed), `called_back` (staff marked the callback done in the console).
    pub outcome: String,
    /// Sealed summary (PHI), only for verified callers.
    pub summary_sealed: Option<String>,
}

impl Store {
    pub async fn insert_escalation(&self, e: &EscalationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO escalations (id, call_id, created_ms, reason, urgent, identity, outcome, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&e.id)
        .bind(&e.call_id)
        .bind(e.created_ms)
        .bind(&e.reason)
        .bind(i64::from(e.urgent))
        .bind(&e.identity)
        .bind(&e.outcome)
        .bind(e.summary_sealed.as_deref())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets the outcome once the transfer is known.
    pub async fn set_escalation_outcome(&self, id: &str, outcome: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE escalations SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Escalations still waiting for staff (outcome `pending` or `callback`), oldest first: the
    /// console's queue order.
    pub async fn open_escalations(&self, limit: i64) -> Result<Vec<EscalationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, call_id, created_ms, reason, urgent, identity, outcome, summary \
             FROM escalations WHERE outcome IN ('pending', 'callback') \
             ORDER BY created_ms, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(escalation_from_row).collect()
    }

    pub async fn escalation(&self, id: &str) -> Result<Option<EscalationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, call_id, created_ms, reason, urgent, identity, outcome, summary \
             FROM escalations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(escalation_from_row).transpose()
    }

    /// The newest escalations first.
    pub async fn recent_escalations(
        &self,
        limit: i64,
    ) -> Result<Vec<EscalationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, call_id, created_ms, reason, urgent, identity, outcome, summary \
             FROM escalations ORDER BY created_ms DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(escalation_from_row).collect()
    }
}

fn escalation_from_row(r: &sqlx::any::AnyRow) -> Result<EscalationRecord, StoreError> {
    Ok(EscalationRecord {
        id: r.try_get(0)?,
        call_id: r.try_get(1)?,
        created_ms: r.try_get(2)?,
        reason: r.try_get(3)?,
        urgent: r.try_get::<i64, _>(4)? != 0,
        identity: r.try_get(5)?,
        outcome: r.try_get(6)?,
        summary_sealed: r.try_get(7)?,
    })
}
