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
//! and [`archives`]; the people tables: [`users`] (with invitations),
//! [`sessions`] and [`api_keys`]; [`webhooks`] (webhook endpoints). The
//! services (tenancy, auth, catalog, installer, archive, registry, people,
//! events) call these functions and write no SQL against the
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

pub mod api_keys;
pub mod archives;
pub mod audit;
pub mod cache;
pub mod installations;
pub mod mail_notices;
pub mod sessions;
pub mod sso;
pub mod tenants;
pub mod tokens;
pub mod touches;
pub mod users;
pub mod versions;
pub mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

pub use cache::{Generation, GenerationCache, Watch};

/// The host's own database.
#[derive(Clone)]
pub struct ControlPlane {
    pool: SqlitePool,
    /// The request path's reads, kept until the database changes.
    reads: Arc<Reads>,
}

/// The answers the request path asks for on every request, each kept in a
/// [`GenerationCache`] until [`Watch`] sees a commit (see [`cache`]).
struct Reads {
    watch: Watch,
    tokens: GenerationCache<String, tokens::ActiveToken>,
    tenants: GenerationCache<String, tenants::Tenant>,
    installations: GenerationCache<(String, String), Option<installations::Installation>>,
}

impl Reads {
    fn new(watch: Watch) -> Arc<Self> {
        Arc::new(Reads {
            watch,
            tokens: GenerationCache::new(cache::DEFAULT_CAPACITY),
            tenants: GenerationCache::new(cache::DEFAULT_CAPACITY),
            installations: GenerationCache::new(cache::DEFAULT_CAPACITY),
        })
    }
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
        let watch = Watch::open(path)?;
        Ok(ControlPlane {
            pool,
            reads: Reads::new(watch),
        })
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
        // No second connection can see an in-memory database: nothing is
        // cached.
        Ok(ControlPlane {
            pool,
            reads: Reads::new(Watch::unwatched()),
        })
    }

    /// The connection pool: acquire a connection (or begin a transaction)
    /// from it and hand it to the repositories.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The unrevoked token whose secret hashes to `hash`, as
    /// [`tokens::active_by_hash`] reads it; answered from memory while the
    /// control plane is unchanged (unknown hashes are always read).
    ///
    /// # Errors
    /// Database errors.
    pub async fn active_token(
        &self,
        hash: &str,
    ) -> Result<Option<tokens::ActiveToken>, sqlx::Error> {
        let now = self.reads.watch.generation();
        if let Some(token) = self.reads.tokens.get(now, hash) {
            return Ok(Some(token));
        }
        let mut conn = self.pool.acquire().await?;
        let token = tokens::active_by_hash(&mut conn, hash).await?;
        if let Some(token) = &token {
            self.reads.tokens.put(now, hash.to_owned(), token.clone());
        }
        Ok(token)
    }

    /// The tenant with `slug`, as [`tenants::by_slug`] reads it; answered
    /// from memory while the control plane is unchanged (unknown slugs are
    /// always read).
    ///
    /// # Errors
    /// Database errors.
    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Option<tenants::Tenant>, sqlx::Error> {
        let now = self.reads.watch.generation();
        if let Some(tenant) = self.reads.tenants.get(now, slug) {
            return Ok(Some(tenant));
        }
        let mut conn = self.pool.acquire().await?;
        let tenant = tenants::by_slug(&mut conn, slug).await?;
        if let Some(tenant) = &tenant {
            self.reads.tenants.put(now, slug.to_owned(), tenant.clone());
        }
        Ok(tenant)
    }

    /// The installation of `module` for `tenant_id`, with its version's
    /// revocation and its subscription's revision, as
    /// [`installations::find`] reads it; answered from memory while the
    /// control plane is unchanged.
    ///
    /// # Errors
    /// Database errors.
    pub async fn installation(
        &self,
        tenant_id: &str,
        module: &str,
    ) -> Result<Option<installations::Installation>, sqlx::Error> {
        let now = self.reads.watch.generation();
        let key = (tenant_id.to_owned(), module.to_owned());
        if let Some(found) = self.reads.installations.get(now, &key) {
            return Ok(found);
        }
        let mut conn = self.pool.acquire().await?;
        let found = installations::find(&mut conn, tenant_id, module).await?;
        self.reads.installations.put(now, key, found.clone());
        Ok(found)
    }

    /// The control plane's generation now: equal to an earlier one exactly
    /// when nothing was committed in between (see [`cache`]). Services that
    /// keep their own answers derived from the control plane key them by
    /// it.
    pub fn generation(&self) -> Generation {
        self.reads.watch.generation()
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
