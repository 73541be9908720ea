//! The `db` host interface: a module's scoped access to its tenant's
//! database.
//!
//! Each call gets a [`ModuleDb`]: the module's [`SqlScope`] and, when the
//! call may touch data, an open transaction on the tenant database. Every
//! statement goes through [`SqlScope::rewrite`] first; parameters are always
//! bound, never spliced. Statements run under a timeout, because epoch
//! interruption cannot stop a guest that is blocked in a host call.

pub mod scoped_sql;

use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Column, Row, Sqlite, Transaction, TypeInfo, ValueRef};

pub use scoped_sql::{RewrittenStatement, SqlRefusal, SqlScope, StatementSource};

/// SQLite virtual-machine steps between deadline checks.
const PROGRESS_OPS: i32 = 10_000;

/// Most rows one query may return to a module.
pub const MAX_ROWS: usize = 10_000;

/// A SQL value crossing the host/module boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// 64-bit integer.
    Integer(i64),
    /// 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Rows returned by a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Values, row by row.
    pub rows: Vec<Vec<SqlValue>>,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbFailure {
    /// Refused by the scope check.
    #[error(transparent)]
    Refused(#[from] SqlRefusal),
    /// A constraint was violated.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The statement ran longer than allowed.
    #[error("the statement did not finish within {0:?}")]
    Timeout(Duration),
    /// This call has no database (e.g. `gates()` while loading a package).
    #[error("no database is available during this call")]
    Unavailable,
    /// Too many rows.
    #[error("the query returned more than {MAX_ROWS} rows; add a LIMIT")]
    TooManyRows,
    /// Any other database error.
    #[error("{0}")]
    Other(String),
}

/// A module's database handle for one call.
pub struct ModuleDb {
    scope: Option<SqlScope>,
    tx: Option<Transaction<'static, Sqlite>>,
    timeout: Duration,
}

impl ModuleDb {
    /// A handle with no database: every statement fails with
    /// [`DbFailure::Unavailable`].
    pub fn detached() -> Self {
        ModuleDb {
            scope: None,
            tx: None,
            timeout: Duration::from_secs(1),
        }
    }

    /// A handle that runs the module's statements in `tx`.
    pub fn new(scope: SqlScope, tx: Transaction<'static, Sqlite>, timeout: Duration) -> Self {
        ModuleDb {
            scope: Some(scope),
            tx: Some(tx),
            timeout,
        }
    }

    /// The call's transaction for the host's own bookkeeping (usage
    /// counters) in the same transaction as the module's writes; unscoped,
    /// so never handed to module code. `None` for a detached handle.
    pub fn host_connection(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        self.tx.as_deref_mut()
    }

    /// Takes the transaction back (to commit, roll back or continue with it).
    pub fn take_transaction(&mut self) -> Option<Transaction<'static, Sqlite>> {
        self.tx.take()
    }

    fn prepare(
        &mut self,
        sql: &str,
    ) -> Result<(RewrittenStatement, &mut Transaction<'static, Sqlite>), DbFailure> {
        let (Some(scope), Some(tx)) = (&self.scope, &mut self.tx) else {
            return Err(DbFailure::Unavailable);
        };
        let mut statements = scope.rewrite(sql, StatementSource::Runtime)?;
        let statement = statements.pop().ok_or(DbFailure::Unavailable)?;
        Ok((statement, tx))
    }

    /// Arms SQLite's progress handler so a statement still running at the
    /// deadline is interrupted inside SQLite (a timed-out future alone would
    /// leave a runaway statement, e.g. an endless recursive CTE, holding the
    /// connection).
    async fn arm_deadline(
        tx: &mut Transaction<'static, Sqlite>,
        timeout: Duration,
    ) -> Result<Instant, DbFailure> {
        let deadline = Instant::now() + timeout;
        let mut handle = tx.lock_handle().await.map_err(map_error)?;
        handle.set_progress_handler(PROGRESS_OPS, move || Instant::now() < deadline);
        Ok(deadline)
    }

    /// Reports an error that happened at or after the deadline as a timeout
    /// (SQLite says "interrupted").
    fn timed<T>(
        result: Result<T, DbFailure>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<T, DbFailure> {
        match result {
            Err(_) if Instant::now() >= deadline => Err(DbFailure::Timeout(timeout)),
            other => other,
        }
    }

    async fn disarm_deadline(tx: &mut Transaction<'static, Sqlite>) {
        if let Ok(mut handle) = tx.lock_handle().await {
            handle.remove_progress_handler();
        }
    }

    /// Runs a query and returns its rows.
    ///
    /// # Errors
    /// See [`DbFailure`].
    pub async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Rows, DbFailure> {
        let timeout = self.timeout;
        let (statement, tx) = self.prepare(sql)?;
        let deadline = Self::arm_deadline(tx, timeout).await?;
        let result = Self::fetch_rows(tx, &statement, params, timeout).await;
        Self::disarm_deadline(tx).await;
        Self::timed(result, deadline, timeout)
    }

    async fn fetch_rows(
        tx: &mut Transaction<'static, Sqlite>,
        statement: &RewrittenStatement,
        params: Vec<SqlValue>,
        timeout: Duration,
    ) -> Result<Rows, DbFailure> {
        let query = sqlx::query_with(&statement.sql, bind(params));
        let mut stream = query.fetch(&mut **tx);
        let work = async {
            use futures_util::StreamExt;
            let mut rows = Rows::default();
            while let Some(row) = stream.next().await {
                let row = row.map_err(map_error)?;
                if rows.columns.is_empty() {
                    rows.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                if rows.rows.len() == MAX_ROWS {
                    return Err(DbFailure::TooManyRows);
                }
                rows.rows.push(decode_row(&row)?);
            }
            Ok(rows)
        };
        let mut rows = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| DbFailure::Timeout(timeout))??;
        drop(stream);
        if rows.columns.is_empty() {
            // No row to read names from: ask the prepared statement.
            use sqlx::{Executor, Statement};
            let prepared = (&mut **tx)
                .prepare(&statement.sql)
                .await
                .map_err(map_error)?;
            rows.columns = prepared
                .columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
        }
        Ok(rows)
    }

    /// Runs a statement that changes data.
    ///
    /// # Errors
    /// See [`DbFailure`].
    pub async fn execute(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<(u64, Option<i64>), DbFailure> {
        let timeout = self.timeout;
        let (statement, tx) = self.prepare(sql)?;
        let deadline = Self::arm_deadline(tx, timeout).await?;
        let query = sqlx::query_with(&statement.sql, bind(params));
        let result = tokio::time::timeout(timeout, query.execute(&mut **tx)).await;
        Self::disarm_deadline(tx).await;
        let result = result
            .map_err(|_| DbFailure::Timeout(timeout))?
            .map_err(map_error);
        let result = Self::timed(result, deadline, timeout)?;
        let last = statement.is_insert.then(|| result.last_insert_rowid());
        Ok((result.rows_affected(), last))
    }
}

/// Binds module values as statement arguments.
pub fn bind(params: Vec<SqlValue>) -> SqliteArguments<'static> {
    use sqlx::Arguments;
    let mut args = SqliteArguments::default();
    for value in params {
        // Adding a value to SQLite arguments cannot fail for these types.
        let _ = match value {
            SqlValue::Null => args.add(Option::<i64>::None),
            SqlValue::Integer(v) => args.add(v),
            SqlValue::Real(v) => args.add(v),
            SqlValue::Text(v) => args.add(v),
            SqlValue::Blob(v) => args.add(v),
        };
    }
    args
}

/// Decodes a row by the storage class of each value.
pub fn decode_row(row: &SqliteRow) -> Result<Vec<SqlValue>, DbFailure> {
    let mut out = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i).map_err(map_error)?;
        if raw.is_null() {
            out.push(SqlValue::Null);
            continue;
        }
        let kind = raw.type_info().name().to_owned();
        let value = match kind.as_str() {
            "INTEGER" => SqlValue::Integer(row.try_get_unchecked(i).map_err(map_error)?),
            "REAL" => SqlValue::Real(row.try_get_unchecked(i).map_err(map_error)?),
            "BLOB" => SqlValue::Blob(row.try_get_unchecked(i).map_err(map_error)?),
            _ => SqlValue::Text(row.try_get_unchecked(i).map_err(map_error)?),
        };
        out.push(value);
    }
    Ok(out)
}

/// Maps a database error to what a module may learn of it.
pub fn map_error(error: sqlx::Error) -> DbFailure {
    match &error {
        sqlx::Error::Database(db) => {
            let message = db.message().to_owned();
            if matches!(
                db.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            ) {
                DbFailure::Constraint(message)
            } else {
                DbFailure::Other(message)
            }
        }
        other => DbFailure::Other(other.to_string()),
    }
}

/// Implements the `db` interface (and the empty `types` one) of one API
/// version over that version's generated types; the logic is shared, only
/// the types differ between versions.
macro_rules! db_host {
    ($version:ident) => {
        mod $version {
            use super::{DbFailure, SqlRefusal, SqlValue};
            use crate::runtime::CallState;
            use crate::runtime::bindings::$version::souk::module::{db as wit, types};

            fn from_wit(value: types::Value) -> SqlValue {
                match value {
                    types::Value::Null => SqlValue::Null,
                    types::Value::Integer(v) => SqlValue::Integer(v),
                    types::Value::Real(v) => SqlValue::Real(v),
                    types::Value::Text(v) => SqlValue::Text(v),
                    types::Value::Blob(v) => SqlValue::Blob(v),
                }
            }

            fn to_wit(value: SqlValue) -> types::Value {
                match value {
                    SqlValue::Null => types::Value::Null,
                    SqlValue::Integer(v) => types::Value::Integer(v),
                    SqlValue::Real(v) => types::Value::Real(v),
                    SqlValue::Text(v) => types::Value::Text(v),
                    SqlValue::Blob(v) => types::Value::Blob(v),
                }
            }

            fn failure_to_wit(failure: DbFailure) -> wit::DbError {
                let kind = match &failure {
                    DbFailure::Refused(SqlRefusal::Syntax(_)) => wit::ErrorKind::Syntax,
                    DbFailure::Refused(SqlRefusal::Forbidden(_)) => wit::ErrorKind::Forbidden,
                    DbFailure::Refused(SqlRefusal::DdlOutsideMigration(_)) => {
                        wit::ErrorKind::DdlOutsideMigration
                    }
                    DbFailure::Constraint(_) => wit::ErrorKind::Constraint,
                    _ => wit::ErrorKind::Other,
                };
                wit::DbError {
                    kind,
                    message: failure.to_string(),
                }
            }

            impl types::Host for CallState {}

            impl wit::Host for CallState {
                async fn query(
                    &mut self,
                    sql: String,
                    params: Vec<types::Value>,
                ) -> wasmtime::Result<Result<wit::RowSet, wit::DbError>> {
                    let params = params.into_iter().map(from_wit).collect();
                    let result = self.db.query(&sql, params).await;
                    if let Err(e) = &result {
                        tracing::debug!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "module query failed");
                    }
                    Ok(result
                        .map(|rows| wit::RowSet {
                            columns: rows.columns,
                            rows: rows
                                .rows
                                .into_iter()
                                .map(|r| r.into_iter().map(to_wit).collect())
                                .collect(),
                        })
                        .map_err(failure_to_wit))
                }

                async fn execute(
                    &mut self,
                    sql: String,
                    params: Vec<types::Value>,
                ) -> wasmtime::Result<Result<wit::ExecResult, wit::DbError>> {
                    let params = params.into_iter().map(from_wit).collect();
                    let result = self.db.execute(&sql, params).await;
                    if let Err(e) = &result {
                        tracing::debug!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "module statement failed");
                    }
                    Ok(result
                        .map(|(rows_affected, last_insert_id)| wit::ExecResult {
                            rows_affected,
                            last_insert_id,
                        })
                        .map_err(failure_to_wit))
                }
            }
        }
    };
}

db_host!(v0_1_0);
db_host!(v0_2_0);
