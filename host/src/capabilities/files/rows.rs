//! The host table `_souk_files` in each tenant database: one row per file a
//! module stored (its bytes live outside the database, see `blobs`).
//!
//! Rows are written in the module call's transaction, so a call that rolls
//! back leaves no row; `seq` (the rowid; no AUTOINCREMENT, which would add
//! `sqlite_sequence` to every tenant database) orders a module's files
//! newest first and is the `list` cursor. Module SQL can never name this table (its name is
//! outside every module's prefix).

use sqlx::{Row as _, SqliteConnection};

/// The table's name.
pub const TABLE: &str = "_souk_files";

/// Creates the table and its indexes (tenant migration; safe to repeat).
///
/// # Errors
/// Database errors.
pub async fn create_table(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS _souk_files (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            module TEXT NOT NULL,
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("CREATE INDEX IF NOT EXISTS _souk_files_by_module ON _souk_files (module, seq)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("CREATE INDEX IF NOT EXISTS _souk_files_by_sha ON _souk_files (sha256)")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One stored file, as its row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// Insertion order (newest is largest); the `list` cursor.
    pub seq: i64,
    /// The opaque id modules see (`f_` and 32 hex digits).
    pub id: String,
    /// The module that stored it.
    pub module: String,
    /// The sanitised name given at `put`.
    pub name: String,
    /// The sniffed MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex: the blob's name.
    pub sha256: String,
    /// RFC 3339, UTC, by the host clock.
    pub created_at: String,
}

const COLUMNS: &str = "seq, id, module, name, content_type, size, sha256, created_at";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<FileRow, sqlx::Error> {
    let size: i64 = row.try_get("size")?;
    Ok(FileRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        module: row.try_get("module")?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        size: u64::try_from(size).unwrap_or_default(),
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Inserts `file` (its `seq` is ignored); answers the `seq` given.
///
/// # Errors
/// Database errors.
pub async fn insert(conn: &mut SqliteConnection, file: &FileRow) -> Result<i64, sqlx::Error> {
    let size = i64::try_from(file.size).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let done = sqlx::query(
        "INSERT INTO _souk_files (id, module, name, content_type, size, sha256, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&file.id)
    .bind(&file.module)
    .bind(&file.name)
    .bind(&file.content_type)
    .bind(size)
    .bind(&file.sha256)
    .bind(&file.created_at)
    .execute(conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// The file `id` of `module`; `None` for another module's file or none.
///
/// # Errors
/// Database errors.
pub async fn get(
    conn: &mut SqliteConnection,
    module: &str,
    id: &str,
) -> Result<Option<FileRow>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM _souk_files WHERE id = ? AND module = ?"
    ))
    .bind(id)
    .bind(module)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Up to `limit` files of `module` with `seq` below `before` (all when
/// `None`), newest first.
///
/// # Errors
/// Database errors.
pub async fn page(
    conn: &mut SqliteConnection,
    module: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<FileRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM _souk_files WHERE module = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
    ))
    .bind(module)
    .bind(before.unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every file of `module`, oldest first (archives).
///
/// # Errors
/// Database errors.
pub async fn all_of(
    conn: &mut SqliteConnection,
    module: &str,
) -> Result<Vec<FileRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM _souk_files WHERE module = ? ORDER BY seq"
    ))
    .bind(module)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Deletes the file `id` of `module`; answers whether there was one.
///
/// # Errors
/// Database errors.
pub async fn delete(
    conn: &mut SqliteConnection,
    module: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM _souk_files WHERE id = ? AND module = ?")
        .bind(id)
        .bind(module)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes every file row of `module` (uninstall); answers the blobs they
/// named, each once.
///
/// # Errors
/// Database errors.
pub async fn delete_all_of(
    conn: &mut SqliteConnection,
    module: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let shas: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT sha256 FROM _souk_files WHERE module = ?")
            .bind(module)
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM _souk_files WHERE module = ?")
        .bind(module)
        .execute(conn)
        .await?;
    Ok(shas)
}

/// Whether any committed row (any module's) names blob `sha256`.
///
/// # Errors
/// Database errors.
pub async fn referenced(conn: &mut SqliteConnection, sha256: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM _souk_files WHERE sha256 = ? LIMIT 1")
            .bind(sha256)
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}
