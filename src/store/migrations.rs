//! The one migration set, embedded in the binary and run on SQLite and PostgreSQL alike.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(version, description, SQL)`, ascending. Append only: an applied migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/0001_foundation.sql"),
    ),
    (2, "audit", include_str!("../../migrations/0002_audit.sql")),
    (
        3,
        "escalations",
        include_str!("../../migrations/0003_escalations.sql"),
    ),
    (
        4,
        "console",
        include_str!("../../migrations/0004_console.sql"),
    ),
];

pub fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sqlx::SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}
