//! What the archive needs to know of a module table's schema, asked of
//! SQLite itself (`pragma_table_xinfo`, `pragma_table_list`,
//! `sqlite_sequence`): which columns a row supplies, which are generated,
//! and how its rowid and AUTOINCREMENT counter are reached.

use sqlx::{Row, SqliteConnection};

/// The names SQLite accepts for a rowid, in the order the archive tries
/// them: a table may shadow one or two of them with its own columns.
pub const ROWID_ALIASES: [&str; 3] = ["rowid", "_rowid_", "oid"];

/// One table's shape.
#[derive(Debug, Clone)]
pub struct TableShape {
    /// Columns a row supplies on insert, in table order: every column but
    /// generated (and hidden) ones.
    pub columns: Vec<String>,
    /// Generated columns (virtual and stored): SQLite computes them, so
    /// they are neither archived nor inserted.
    pub generated: Vec<String>,
    /// The name the rowid is read and written by, when the table has a
    /// rowid that no column shadows. `None` for a `WITHOUT ROWID` table.
    pub rowid: Option<&'static str>,
}

impl TableShape {
    /// Whether `name` names one of the table's columns (SQLite compares
    /// column names case-insensitively).
    pub fn has_column(&self, name: &str) -> bool {
        self.columns
            .iter()
            .chain(&self.generated)
            .any(|c| c.eq_ignore_ascii_case(name))
    }
}

/// The shape of table `physical`.
///
/// # Errors
/// Database errors, or a column name SQLite holds that is not UTF-8.
pub async fn shape(conn: &mut SqliteConnection, physical: &str) -> Result<TableShape, sqlx::Error> {
    // `hidden`: 0 an ordinary column, 1 hidden (virtual tables), 2 a
    // virtual generated column, 3 a stored generated one.
    let rows = sqlx::query("SELECT name, hidden FROM pragma_table_xinfo(?) ORDER BY cid")
        .bind(physical)
        .fetch_all(&mut *conn)
        .await?;
    let mut columns = Vec::new();
    let mut generated = Vec::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let hidden: i64 = row.try_get(1)?;
        match hidden {
            0 => columns.push(name),
            2 | 3 => generated.push(name),
            _ => {}
        }
    }
    let without_rowid: Option<i64> =
        sqlx::query_scalar("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?")
            .bind(physical)
            .fetch_optional(&mut *conn)
            .await?;
    let mut shape = TableShape {
        columns,
        generated,
        rowid: None,
    };
    if without_rowid == Some(0) {
        shape.rowid = ROWID_ALIASES
            .into_iter()
            .find(|alias| !shape.has_column(alias));
    }
    Ok(shape)
}

/// The AUTOINCREMENT counter of table `physical` (the largest rowid it
/// ever handed out), when it has one.
///
/// # Errors
/// Database errors.
pub async fn sequence(
    conn: &mut SqliteConnection,
    physical: &str,
) -> Result<Option<i64>, sqlx::Error> {
    if !has_sequence_table(conn).await? {
        return Ok(None);
    }
    // `seq` has no declared type; a counter that is not an integer is not
    // one SQLite wrote, and is left behind rather than archived as one.
    let seq: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT CASE WHEN typeof(seq) = 'integer' THEN seq END FROM sqlite_sequence WHERE name = ?",
    )
    .bind(physical)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(seq.flatten())
}

/// Sets the AUTOINCREMENT counter of table `physical` to `seq`.
///
/// # Errors
/// Database errors; `Ok(false)` when the database has no AUTOINCREMENT
/// table at all (no `sqlite_sequence`).
pub async fn set_sequence(
    conn: &mut SqliteConnection,
    physical: &str,
    seq: i64,
) -> Result<bool, sqlx::Error> {
    if !has_sequence_table(conn).await? {
        return Ok(false);
    }
    let updated = sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = ?")
        .bind(seq)
        .bind(physical)
        .execute(&mut *conn)
        .await?;
    if updated.rows_affected() == 0 {
        sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
            .bind(physical)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

async fn has_sequence_table(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// The first foreign-key violation that table `physical` holds, as the
/// parent table it points to.
///
/// # Errors
/// Database errors.
pub async fn foreign_key_violation(
    conn: &mut SqliteConnection,
    physical: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT parent FROM pragma_foreign_key_check(?) LIMIT 1")
        .bind(physical)
        .fetch_optional(&mut *conn)
        .await
}
