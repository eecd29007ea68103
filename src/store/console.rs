//! The console's tables (see `migrations/0004_console.sql`): accounts, sessions, callback results.
//! Sealed columns come in and go out sealed: this layer never sees a TOTP seed or a note.

use sqlx::Row;

use super::{Store, StoreError};

/// One console account.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub id: String,
    pub name: String,
    /// `front_desk`, `admin` or `compliance`.
    pub role: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The password is a one-time password that must be replaced at the next sign-in.
    pub must_change: bool,
    /// The TOTP seed, sealed; `None` until enrolled.
    pub totp_sealed: Option<String>,
    pub totp_last_step: Option<i64>,
    pub failed_logins: i64,
    pub locked_until_ms: Option<i64>,
    pub disabled: bool,
    pub created_ms: i64,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the cookie token (hex).
    pub id_hash: String,
    pub user_id: String,
    pub stage: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    /// A sealed TOTP seed being enrolled.
    pub pending_totp: Option<String>,
}

/// Outcome of a failed sign-in for the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Whether this failure locked the account.
    pub locked_now: bool,
}

macro_rules! user_columns {
    () => {
        "id, name, role, password_hash, must_change, totp_secret, totp_last_step, \
         failed_logins, locked_until_ms, disabled, created_ms"
    };
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<ConsoleUser, StoreError> {
    Ok(ConsoleUser {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        password_hash: r.try_get("password_hash")?,
        must_change: r.try_get::<i64, _>("must_change")? != 0,
        totp_sealed: r.try_get("totp_secret")?,
        totp_last_step: r.try_get("totp_last_step")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until_ms: r.try_get("locked_until_ms")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_ms: r.try_get("created_ms")?,
    })
}

fn session_from_row(r: &sqlx::any::AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id_hash: r.try_get("id_hash")?,
        user_id: r.try_get("user_id")?,
        stage: r.try_get("stage")?,
        created_ms: r.try_get("created_ms")?,
        last_seen_ms: r.try_get("last_seen_ms")?,
        pending_totp: r.try_get("pending_totp")?,
    })
}

impl Store {
    /// Adds an account; false when the name is taken.
    pub async fn insert_console_user(&self, u: &ConsoleUser) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO console_users (id, name, role, password_hash, must_change, totp_secret, \
             totp_last_step, failed_logins, locked_until_ms, disabled, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&u.id)
        .bind(&u.name)
        .bind(&u.role)
        .bind(&u.password_hash)
        .bind(i64::from(u.must_change))
        .bind(u.totp_sealed.as_deref())
        .bind(u.totp_last_step)
        .bind(u.failed_logins)
        .bind(u.locked_until_ms)
        .bind(i64::from(u.disabled))
        .bind(u.created_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn console_user_by_name(
        &self,
        name: &str,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM console_users WHERE name = $1"
        );
        let row = sqlx::query(sql)
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn console_user_by_id(&self, id: &str) -> Result<Option<ConsoleUser>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM console_users WHERE id = $1"
        );
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every account, by name.
    pub async fn console_users(&self) -> Result<Vec<ConsoleUser>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM console_users ORDER BY name"
        );
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Counts a failed sign-in; the `max_failures`-th in a row locks the account until
    /// `lock_until_ms` (and starts the count again).
    pub async fn record_login_failure(
        &self,
        user_id: &str,
        max_failures: i64,
        lock_until_ms: i64,
    ) -> Result<Failure, StoreError> {
        // Every SET expression sees the old row, so both CASEs test the same count.
        sqlx::query(
            "UPDATE console_users SET \
             locked_until_ms = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until_ms END, \
             failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END \
             WHERE id = $1",
        )
        .bind(user_id)
        .bind(max_failures)
        .bind(lock_until_ms)
        .execute(self.pool())
        .await?;
        let locked: Option<i64> =
            sqlx::query("SELECT locked_until_ms FROM console_users WHERE id = $1")
                .bind(user_id)
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        Ok(Failure {
            locked_now: locked == Some(lock_until_ms),
        })
    }

    /// A successful sign-in clears the failure count and any expired lock.
    pub async fn clear_login_failures(&self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_users SET failed_logins = 0, locked_until_ms = NULL WHERE id = $1",
        )
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_console_password(
        &self,
        user_id: &str,
        password_hash: &str,
        must_change: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_users SET password_hash = $1, must_change = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(i64::from(must_change))
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores an enrolled TOTP seed (sealed) and the step its first code used.
    pub async fn set_console_totp(
        &self,
        user_id: &str,
        sealed: Option<&str>,
        last_step: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_users SET totp_secret = $1, totp_last_step = $2 WHERE id = $3")
            .bind(sealed)
            .bind(last_step)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Accepts a TOTP code's time step once: true when `step` is later than any accepted before
    /// (one atomic UPDATE, so two requests racing with one code cannot both win).
    pub async fn accept_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE console_users SET totp_last_step = $1 \
             WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_console_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn insert_console_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_id, stage, created_ms, last_seen_ms, pending_totp) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(&s.stage)
        .bind(s.created_ms)
        .bind(s.last_seen_ms)
        .bind(s.pending_totp.as_deref())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn console_session(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id_hash, user_id, stage, created_ms, last_seen_ms, pending_totp \
             FROM console_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Marks a request on the session (the idle clock starts again).
    pub async fn touch_console_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_sessions SET last_seen_ms = $1 WHERE id_hash = $2")
            .bind(now_ms)
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn set_console_session_pending_totp(
        &self,
        id_hash: &str,
        sealed: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_sessions SET pending_totp = $1 WHERE id_hash = $2")
            .bind(sealed)
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends a session but keeps its row with `stage` saying why (see `console::session`), so the
    /// next request can be told; [`Store::purge_ended_console_sessions`] removes it later.
    pub async fn end_console_session(&self, id_hash: &str, stage: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET stage = $1, pending_totp = NULL WHERE id_hash = $2",
        )
        .bind(stage)
        .bind(id_hash)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes ended sessions last used before `before_ms`.
    pub async fn purge_ended_console_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM console_sessions WHERE stage LIKE 'ended:%' AND last_seen_ms < $1",
        )
        .bind(before_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn delete_console_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Live sessions past their time: idle since before `idle_cutoff_ms`, or made before
    /// `full_cutoff_ms` (signed in) / `pending_cutoff_ms` (half-way through signing in). Returns
    /// `(id_hash, stage, user name)`, at most 1000 at a time.
    pub async fn stale_console_sessions(
        &self,
        idle_cutoff_ms: i64,
        full_cutoff_ms: i64,
        pending_cutoff_ms: i64,
    ) -> Result<Vec<(SessionRow, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id_hash, s.user_id, s.stage, s.created_ms, s.last_seen_ms, s.pending_totp, \
             COALESCE(u.name, '') AS name FROM console_sessions s \
             LEFT JOIN console_users u ON u.id = s.user_id \
             WHERE s.stage NOT LIKE 'ended:%' AND (s.last_seen_ms < $1 \
             OR (s.stage = 'full' AND s.created_ms < $2) \
             OR (s.stage <> 'full' AND s.created_ms < $3)) LIMIT 1000",
        )
        .bind(idle_cutoff_ms)
        .bind(full_cutoff_ms)
        .bind(pending_cutoff_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((session_from_row(r)?, r.try_get("name")?)))
            .collect()
    }

    /// Ends every session of a user (disabled, MFA reset, password changed elsewhere).
    pub async fn delete_console_sessions_of(&self, user_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Marks a callback done: the escalation's outcome goes from `callback` to `called_back` and
    /// the result row is written, in one transaction. False when it was not an open callback.
    pub async fn complete_callback(
        &self,
        escalation_id: &str,
        done_ms: i64,
        done_by: &str,
        note_sealed: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let moved = sqlx::query(
            "UPDATE escalations SET outcome = 'called_back' WHERE id = $1 AND outcome = 'callback'",
        )
        .bind(escalation_id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO callback_results (escalation_id, done_ms, done_by, note) VALUES ($1, $2, $3, $4)",
        )
        .bind(escalation_id)
        .bind(done_ms)
        .bind(done_by)
        .bind(note_sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Callbacks done most recently: `(escalation id, done_ms, done_by)`.
    pub async fn recent_callback_results(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT escalation_id, done_ms, done_by FROM callback_results ORDER BY done_ms DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}
