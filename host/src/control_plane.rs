//! The control-plane database: the host's own state (tenants, tokens,
//! module versions, installations, the migration ledger, the audit log and
//! archives), built by the `sqlx` migrations under `migrations/sqlite/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The host's own database.
#[derive(Clone)]
pub struct ControlPlane {
    pool: SqlitePool,
}

/// Options shared by every SQLite database the host opens: WAL, a busy
/// timeout (several processes — `souk serve` and the CLI — may share a
/// data directory), foreign keys on.
pub fn sqlite_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
}

impl ControlPlane {
    /// Opens (creating and migrating if needed) the control plane at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(sqlite_options(path))
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(ControlPlane { pool })
    }

    /// An in-memory control plane (tests and benchmarks).
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn in_memory() -> anyhow::Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true))
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(ControlPlane { pool })
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The current time as RFC 3339 UTC text, the format every timestamp in the
/// control plane uses.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
