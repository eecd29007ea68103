//! The database: SQLite (embedded default, one file in the data dir, WAL mode) or PostgreSQL by URL,
//! through one `sqlx` Any pool so every repository runs the same SQL on both engines.
//!
//! Portability rules for `migrations/` and the repositories: `$N` placeholders (SQLite accepts
//! them too), `BIGINT` millisecond timestamps, `TEXT` ids assigned by the application (no
//! autoincrement: the two engines spell it differently), and binary data as base64 `TEXT` (their
//! blob types differ).

pub mod calls;
pub mod console;
pub mod escalations;
pub mod meta;
mod migrations;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::config::{StoreConfig, mask_url_password};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {}: {reason}", path.display())]
    DataDir { path: PathBuf, reason: String },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A connected, migrated database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .finish()
    }
}

/// The URL the store connects to: the configured one, or the embedded SQLite file in `data_dir`.
pub fn effective_url(config: &StoreConfig, data_dir: &Path) -> String {
    let url = config.url.expose();
    if url.is_empty() {
        return format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("carevoice.db").display()
        );
    }
    if url.starts_with("sqlite:") && !url.contains('?') {
        return format!("{url}?mode=rwc");
    }
    url.to_string()
}

impl Store {
    /// Connects (creating the SQLite file if needed) and applies pending migrations.
    pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
        let url = effective_url(config, data_dir);
        let store = Self::connect(&url, config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<Store, StoreError> {
        install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        };
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_secs(config.connect_timeout_secs))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers run beside the one writer; busy_timeout makes writers
                        // queue instead of failing under concurrent calls.
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                             PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: mask_url_password(url),
                source,
            })?;
        Ok(Store { pool, engine })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Versions of the migrations applied so far, ascending.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT version FROM _sqlx_migrations WHERE success = $1 ORDER BY version",
        )
        .bind(true)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A cheap round trip, for `/healthz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Checks that `dir` exists (creating it) and that this process can write there.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), StoreError> {
    let fail = |reason: String| StoreError::DataDir {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create: {e}")))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("not writable: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Milliseconds since the Unix epoch, the timestamp unit of every table.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
