//! The control-plane database: the host's own state (tenants, tokens,
//! module versions, installations with their migration ledger, the audit
//! log and archives), built by the `sqlx` migrations under
//! `migrations/sqlite/`.
//!
//! # Repositories
//! Each table belongs to one repository, a module here that holds every
//! statement over it: [`tenants`], [`tokens`], [`versions`] (module
//! versions and their registry status, revocations included),
//! [`installations`] (installations and the migration ledger), [`audit`]
//! and [`archives`]. The services (tenancy, auth, catalog, installer,
//! archive, registry) call these functions and write no SQL against the
//! control plane themselves. (The subscription tables are billing's store,
//! `crate::billing::store`.)
//!
//! Every repository function takes the connection it runs on
//! (`&mut SqliteConnection`; a `Transaction` derefs to one), so the caller
//! decides what is atomic: the installer writes an installation, its ledger
//! and its audit event in one transaction. Every write has an inverse
//! (insert / remove, update / update back, record / forget), and an undo is
//! a call to the inverse, never a repeated SQL string.
//!
//! Repositories answer [`sqlx::Error`] for plain reads and writes, and
//! [`StoreError`] where a write has an outcome the caller must tell apart
//! (the key was taken, the row changed since it was read); services turn
//! those into `SoukError`s worded for the user. (This module imports no
//! service error: it sits below them.)
//!
//! # Another backend
//! Because these repositories are the only SQL over the control plane, a
//! second backend (PostgreSQL is planned) is an addition: a second set of
//! these modules over that database's connection type, with
//! [`ControlPlane`] opening one or the other. The services keep their
//! logic and change only the connection type they pass through.

pub mod archives;
pub mod audit;
pub mod installations;
pub mod tenants;
pub mod tokens;
pub mod versions;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

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

    /// The connection pool: acquire a connection (or begin a transaction)
    /// from it and hand it to the repositories.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A write a repository could not make for a reason the caller must tell
/// apart from a database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row's key is taken: another operation (possibly another process
    /// sharing the data directory) wrote it first.
    #[error("a row with this key already exists")]
    Duplicate,
    /// The row was changed or removed since the caller read it (the
    /// optimistic lock of an update or delete that names what it read).
    #[error("the row changed since it was read")]
    Changed,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// `Duplicate` for a unique-key violation, `Db` for any other failure.
fn duplicate_or_db(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Db(error),
    }
}

/// An instant as the control plane stores it: RFC 3339 text in UTC.
///
/// The instant itself always comes from the host's
/// [`Clock`](crate::clock::Clock), passed in by the caller; it is written
/// in UTC so the rows sort as text.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    crate::clock::rfc3339(at.to_offset(time::UtcOffset::UTC))
}
