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
    /// `transferred`, `callback` (no transfer target, or the transfer failed).
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
        rows.iter()
            .map(|r| {
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
            })
            .collect()
    }
}
