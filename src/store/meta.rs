//! Installation facts as key/value pairs (`app_meta`).

use super::{Store, StoreError, now_ms};

impl Store {
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM app_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Inserts or replaces (same statement on both engines).
    pub async fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO app_meta (key, value, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// This installation's id, made on first use and stable afterwards.
    pub async fn instance_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.meta_get("instance_id").await? {
            return Ok(id);
        }
        // Two processes starting at once on one database: the first insert wins, both read it.
        let fresh = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO app_meta (key, value, updated_ms) VALUES ('instance_id', $1, $2) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&fresh)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(self.meta_get("instance_id").await?.unwrap_or(fresh))
    }
}
