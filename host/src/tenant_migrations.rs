//! The host's own schema in every tenant database, as an ordered list of
//! versioned migrations applied when the database is opened.
//!
//! A tenant database holds the modules' tables (each module migrates its own,
//! see the installer) and, beside them, the host's bookkeeping tables (usage
//! counters, idempotency keys, metered events). The host's tables are created
//! and changed only here: [`MIGRATIONS`] lists every change in order, and
//! [`migrate`] applies those a database has not seen yet, in one transaction,
//! recording each in the ledger table [`LEDGER`].
//!
//! Every host table's name, the ledger's included, starts with `_souk_`. A
//! module's SQL can only name tables under its own prefix (a module slug,
//! which starts with a letter), so no module statement can read or write the
//! ledger or the tables it describes.
//!
//! A migration must be safe on a database that already has its effect: the
//! ledger came after the first tenant databases, which hold the usage tables
//! without any record of how they got there.

use futures_util::future::BoxFuture;
use sqlx::{Connection as _, SqliteConnection, SqlitePool};

use crate::entitlements::usage_db;

/// The table recording which of [`MIGRATIONS`] a tenant database has applied:
/// one row per version, written in the transaction that applied it.
pub const LEDGER: &str = "_souk_schema_migrations";

/// One change to the host's schema in a tenant database.
pub struct Migration {
    /// Position in [`MIGRATIONS`], from 1, without gaps; recorded in the
    /// [`LEDGER`] once applied. Never reused or renumbered.
    pub version: i64,
    /// What the migration does, recorded beside its version for whoever
    /// reads the ledger.
    pub name: &'static str,
    /// Applies the change inside the migration transaction it is given.
    apply: for<'c> fn(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), sqlx::Error>>,
}

/// The host's schema changes, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "usage tables",
        apply: |conn| Box::pin(usage_db::create_tables(conn)),
    },
    Migration {
        version: 2,
        name: "files table",
        apply: |conn| Box::pin(crate::capabilities::files::rows::create_table(conn)),
    },
    Migration {
        version: 3,
        name: "events outbox and delivery logs",
        apply: |conn| Box::pin(crate::event_store::create_tables(conn)),
    },
    Migration {
        version: 4,
        name: "mail outbox",
        apply: |conn| Box::pin(crate::capabilities::notify::outbox::create_tables(conn)),
    },
    Migration {
        version: 5,
        name: "jobs queue",
        apply: |conn| Box::pin(crate::job_queue::store::create_tables(conn)),
    },
    Migration {
        version: 6,
        name: "retention indexes",
        apply: |conn| Box::pin(crate::event_store::create_event_indexes(conn)),
    },
];

/// Why a tenant database could not be brought to the host's schema.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database could not be read or written; nothing was applied.
    #[error("tenant database migration failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The database was migrated by a newer host, whose schema this one does
    /// not know; it is left untouched.
    #[error(
        "the tenant database is at host schema version {found}, newer than the {known} this host knows"
    )]
    NewerSchema {
        /// The highest version in the database's ledger.
        found: i64,
        /// The last version of [`MIGRATIONS`].
        known: i64,
    },
}

/// Applies to the database behind `pool` every migration of [`MIGRATIONS`]
/// its ledger does not record, in order, in one `BEGIN IMMEDIATE`
/// transaction (a concurrent opener waits, then finds them applied).
///
/// A database already at this host's version (every one but a new or an
/// older one) is recognised by one read of its ledger, without taking the
/// write lock: opening a tenant's database after a restart costs one
/// statement, not a write transaction.
///
/// # Errors
/// [`MigrationError::NewerSchema`] for a database ahead of this host;
/// [`MigrationError::Database`] when a statement fails (the transaction
/// rolls back: the database stays at its previous version).
pub async fn migrate(pool: &SqlitePool) -> Result<(), MigrationError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    // One connection for the read and the transaction: a second one would
    // stay open in the pool beside the first.
    let mut conn = pool.acquire().await?;
    // No ledger yet (a new database, or one from before the ledger) fails
    // this read; the transaction below then creates it.
    if let Ok(applied) = applied_version(&mut *conn).await {
        if applied == known {
            return Ok(());
        }
        if applied > known {
            return Err(MigrationError::NewerSchema {
                found: applied,
                known,
            });
        }
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {LEDGER} (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
    ))
    .execute(&mut *tx)
    .await?;
    let applied = applied_version(&mut *tx).await?;
    if applied > known {
        return Err(MigrationError::NewerSchema {
            found: applied,
            known,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
        (migration.apply)(&mut tx).await?;
        sqlx::query(&format!(
            "INSERT INTO {LEDGER} (version, name) VALUES (?, ?)"
        ))
        .bind(migration.version)
        .bind(migration.name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The highest version the ledger records (0 for an empty ledger).
async fn applied_version<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Sqlite>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT COALESCE(MAX(version), 0) FROM {LEDGER}"))
        .fetch_one(conn)
        .await
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn pool() -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    }

    async fn ledger(pool: &SqlitePool) -> Vec<(i64, String)> {
        sqlx::query_as(&format!(
            "SELECT version, name FROM {LEDGER} ORDER BY version"
        ))
        .fetch_all(pool)
        .await
        .unwrap()
    }

    /// The ledger of a database at this host's version.
    fn every_migration() -> Vec<(i64, String)> {
        MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_owned()))
            .collect()
    }

    async fn tables(pool: &SqlitePool) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[test]
    fn versions_count_up_from_one_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1, "{}", migration.name);
        }
    }

    #[tokio::test]
    async fn a_new_database_gets_every_migration_once() {
        let pool = pool().await;
        migrate(&pool).await.unwrap();
        migrate(&pool).await.unwrap();
        assert_eq!(ledger(&pool).await, every_migration());
        assert_eq!(
            tables(&pool).await,
            [
                "_souk_event_deliveries",
                "_souk_events",
                "_souk_files",
                "_souk_job_schedules",
                "_souk_jobs",
                "_souk_mail",
                LEDGER,
                "_souk_usage_counters",
                "_souk_usage_events",
                "_souk_usage_keys",
                "_souk_webhook_deliveries",
            ]
        );
    }

    #[tokio::test]
    async fn a_database_from_before_the_ledger_keeps_its_tables_and_rows() {
        let pool = pool().await;
        // What the host created in every tenant database before migrations.
        let mut conn = pool.acquire().await.unwrap();
        usage_db::create_tables(&mut conn).await.unwrap();
        sqlx::query("INSERT INTO _souk_usage_counters VALUES ('cards', 'max_cards', 7)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let schema_before: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, sql FROM sqlite_master ORDER BY name")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        drop(conn);

        migrate(&pool).await.unwrap();
        assert_eq!(ledger(&pool).await, every_migration());
        // The tables that were there are unchanged (later migrations add
        // tables of their own beside them).
        let schema_after: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, sql FROM sqlite_master ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        let kept: Vec<_> = schema_after
            .into_iter()
            .filter(|(name, _)| schema_before.iter().any(|(before, _)| before == name))
            .collect();
        assert_eq!(kept, schema_before);
        let used: i64 = sqlx::query_scalar("SELECT used FROM _souk_usage_counters")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(used, 7);
    }

    #[tokio::test]
    async fn an_empty_ledger_gets_every_migration() {
        let pool = pool().await;
        sqlx::query(&format!(
            "CREATE TABLE {LEDGER} (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        migrate(&pool).await.unwrap();
        assert_eq!(ledger(&pool).await, every_migration());
    }

    #[tokio::test]
    async fn a_database_at_this_version_is_recognised_without_a_write() {
        use sqlx::sqlite::SqliteConnectOptions;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.sqlite");
        // Another connection's write would make this one fail at once.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        migrate(&pool).await.unwrap();
        // Another connection holds the write lock: a migration that took it
        // would fail with SQLITE_BUSY; one that only reads goes through.
        let mut writer = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut writer)
            .await
            .unwrap();
        migrate(&pool).await.unwrap();
        assert_eq!(ledger(&pool).await, every_migration());
        sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
        // A newer database is still refused on that read.
        sqlx::query(&format!(
            "INSERT INTO {LEDGER} (version, name) VALUES ({}, 'from the future')",
            MIGRATIONS.len() + 1
        ))
        .execute(&mut writer)
        .await
        .unwrap();
        assert!(matches!(
            migrate(&pool).await,
            Err(MigrationError::NewerSchema { found, known })
                if found == known + 1 && known == MIGRATIONS.len() as i64
        ));
    }

    #[tokio::test]
    async fn a_database_ahead_of_this_host_is_refused_and_left_alone() {
        let pool = pool().await;
        migrate(&pool).await.unwrap();
        sqlx::query(&format!(
            "INSERT INTO {LEDGER} (version, name) VALUES (99, 'from the future')"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let refused = migrate(&pool).await.unwrap_err();
        assert!(
            matches!(refused, MigrationError::NewerSchema { found: 99, known } if known == MIGRATIONS.len() as i64),
            "{refused}"
        );
        assert_eq!(ledger(&pool).await.len(), MIGRATIONS.len() + 1);
    }
}
