//! Running one module statement on the connection's raw handle, on the
//! calling thread.
//!
//! The statement is prepared once — with the sandbox armed, so SQLite's
//! authorizer decides what it compiled — checked to be exactly one
//! statement, bound, stepped to its end and finalized, all while the
//! caller holds the connection's lock ([`sqlx::sqlite::LockedSqliteHandle`]).
//! Nothing is handed to sqlx's worker thread, so nothing of the statement
//! can outlive the call that sent it, and a query costs one prepare and no
//! thread hop. Work inside SQLite is bounded by the armed span's deadline
//! (the progress handler interrupts it, the busy handler stops waiting for
//! a lock at it; see [`super::sandbox`]).

use std::ffi::{CStr, c_char, c_int};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

use super::sandbox::SandboxError;
use super::{DbFailure, MAX_RESULT_BYTES, MAX_ROWS, Rows, SqlValue};

/// How a statement's run ended, short of SQLite's own error.
pub enum Ran {
    /// Rows of a query (empty for a statement that returns none), with the
    /// rows changed and the last insert rowid of a write.
    Done {
        /// The result rows.
        rows: Rows,
        /// Rows the statement changed (`sqlite3_changes64`).
        changed: u64,
        /// The connection's last insert rowid after the statement.
        last_insert: i64,
    },
    /// The host stopped reading (too many rows or bytes): the statement
    /// was finalized part-way, so the connection must not be trusted for
    /// the rest of the call (the caller poisons it, as for an abandoned
    /// statement).
    Stopped(DbFailure),
}

/// Prepares, binds and runs `sql` on `db` (whose lock the caller holds,
/// with the sandbox armed), reading at most [`MAX_ROWS`] rows and
/// [`MAX_RESULT_BYTES`] bytes of values.
///
/// # Errors
/// [`SandboxError::Sqlite`] with SQLite's extended code and message
/// (`SQLITE_AUTH` for an authorizer refusal, `SQLITE_INTERRUPT` at the
/// deadline); [`SandboxError::Empty`] or [`SandboxError::Multiple`] for a
/// text that is not exactly one statement.
pub fn run(db: NonNull<ffi::sqlite3>, sql: &str, params: &[SqlValue]) -> Result<Ran, SandboxError> {
    let stmt = Statement::prepare(db, sql)?;
    stmt.bind(params)?;
    let mut rows = Rows {
        columns: stmt.column_names(),
        rows: Vec::new(),
    };
    let mut bytes = 0usize;
    loop {
        // SAFETY: `stmt` is a live statement of `db`, whose lock the caller
        // holds.
        let rc = unsafe { ffi::sqlite3_step(stmt.raw.as_ptr()) };
        match rc {
            ffi::SQLITE_ROW => {
                if rows.rows.len() == MAX_ROWS {
                    return Ok(Ran::Stopped(DbFailure::TooManyRows));
                }
                let values = stmt.row(rows.columns.len());
                bytes = bytes.saturating_add(values.iter().map(SqlValue::size).sum::<usize>());
                if bytes > MAX_RESULT_BYTES {
                    return Ok(Ran::Stopped(DbFailure::ResultTooLarge));
                }
                rows.rows.push(values);
            }
            ffi::SQLITE_DONE => break,
            _ => return Err(failure(db)),
        }
    }
    // SAFETY: `db` is the statement's connection, locked by the caller.
    let (changed, last_insert) = unsafe {
        (
            u64::try_from(ffi::sqlite3_changes64(db.as_ptr())).unwrap_or(0),
            ffi::sqlite3_last_insert_rowid(db.as_ptr()),
        )
    };
    Ok(Ran::Done {
        rows,
        changed,
        last_insert,
    })
}

/// A prepared statement, finalized on drop.
struct Statement {
    raw: NonNull<ffi::sqlite3_stmt>,
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful prepare and is finalized
        // once, here; finalizing a statement part-way through stops it.
        unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
    }
}

impl Statement {
    /// Prepares the one statement `sql` must be: a text with nothing but
    /// whitespace or comments after it.
    fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> Result<Self, SandboxError> {
        let bytes = sql.as_bytes();
        let len = c_int::try_from(bytes.len()).map_err(|_| SandboxError::Sqlite {
            code: ffi::SQLITE_TOOBIG,
            message: "statement too long".into(),
        })?;
        let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        let mut tail: *const c_char = std::ptr::null();
        // SAFETY: `bytes` is valid for `len` bytes for the call; the caller
        // holds the connection's lock; the statement is owned below.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                bytes.as_ptr().cast::<c_char>(),
                len,
                0,
                &mut raw,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(failure(db));
        }
        let Some(raw) = NonNull::new(raw) else {
            return Err(SandboxError::Empty);
        };
        let statement = Statement { raw };
        let consumed = if tail.is_null() {
            bytes.len()
        } else {
            // SAFETY: SQLite sets `tail` to a point inside `bytes`.
            usize::try_from(unsafe { tail.offset_from(bytes.as_ptr().cast::<c_char>()) })
                .unwrap_or(bytes.len())
        };
        if !rest_is_empty(db, &bytes[consumed.min(bytes.len())..])? {
            return Err(SandboxError::Multiple);
        }
        Ok(statement)
    }

    fn column_names(&self) -> Vec<String> {
        // SAFETY: a live statement; each name is copied before the next
        // call.
        unsafe {
            (0..ffi::sqlite3_column_count(self.raw.as_ptr()))
                .map(|i| {
                    let name = ffi::sqlite3_column_name(self.raw.as_ptr(), i);
                    if name.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(name).to_string_lossy().into_owned()
                    }
                })
                .collect()
        }
    }

    fn bind(&self, params: &[SqlValue]) -> Result<(), SandboxError> {
        let stmt = self.raw.as_ptr();
        for (i, value) in params.iter().enumerate() {
            let index = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            // SAFETY: a live statement; SQLITE_TRANSIENT makes SQLite copy
            // text and blobs before the call returns, so the borrowed
            // bytes need not outlive it. A parameter past the statement's
            // count answers SQLITE_RANGE, reported as SQLite's error.
            let rc = unsafe {
                match value {
                    SqlValue::Null => ffi::sqlite3_bind_null(stmt, index),
                    SqlValue::Integer(v) => ffi::sqlite3_bind_int64(stmt, index, *v),
                    SqlValue::Real(v) => ffi::sqlite3_bind_double(stmt, index, *v),
                    SqlValue::Text(v) => ffi::sqlite3_bind_text64(
                        stmt,
                        index,
                        v.as_ptr().cast::<c_char>(),
                        v.len() as u64,
                        ffi::SQLITE_TRANSIENT(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    SqlValue::Blob(v) => ffi::sqlite3_bind_blob64(
                        stmt,
                        index,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                // SAFETY: the statement's connection, locked by the caller.
                let db = unsafe { ffi::sqlite3_db_handle(stmt) };
                return Err(match NonNull::new(db) {
                    Some(db) => failure(db),
                    None => SandboxError::Sqlite {
                        code: rc,
                        message: "binding a parameter failed".into(),
                    },
                });
            }
        }
        Ok(())
    }

    /// The current row's values, by each value's storage class.
    fn row(&self, columns: usize) -> Vec<SqlValue> {
        let stmt = self.raw.as_ptr();
        (0..columns)
            .map(|i| {
                let i = c_int::try_from(i).unwrap_or(c_int::MAX);
                // SAFETY: the statement stands on a row; each value is
                // copied before the next column is read. For text and
                // blobs the pointer is read before the length, as SQLite
                // documents.
                unsafe {
                    match ffi::sqlite3_column_type(stmt, i) {
                        ffi::SQLITE_INTEGER => {
                            SqlValue::Integer(ffi::sqlite3_column_int64(stmt, i))
                        }
                        ffi::SQLITE_FLOAT => SqlValue::Real(ffi::sqlite3_column_double(stmt, i)),
                        ffi::SQLITE_BLOB => {
                            let ptr = ffi::sqlite3_column_blob(stmt, i).cast::<u8>();
                            let len =
                                usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                            SqlValue::Blob(if ptr.is_null() {
                                Vec::new()
                            } else {
                                std::slice::from_raw_parts(ptr, len).to_vec()
                            })
                        }
                        ffi::SQLITE_NULL => SqlValue::Null,
                        // Text is read as its bytes: a value that is not
                        // valid UTF-8 (SQLite stores whatever it is given)
                        // reaches the module with U+FFFD in place of the bad
                        // bytes instead of failing the query.
                        _ => {
                            let ptr = ffi::sqlite3_column_text(stmt, i);
                            let len =
                                usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                            let bytes = if ptr.is_null() {
                                &[][..]
                            } else {
                                std::slice::from_raw_parts(ptr, len)
                            };
                            SqlValue::Text(String::from_utf8_lossy(bytes).into_owned())
                        }
                    }
                }
            })
            .collect()
    }
}

/// Whether `rest` (the text after the first statement) holds no statement:
/// SQLite prepares it to nothing, as it does whitespace and comments. A
/// text that does not prepare at all is a second statement, however broken.
fn rest_is_empty(db: NonNull<ffi::sqlite3>, rest: &[u8]) -> Result<bool, SandboxError> {
    if rest.iter().all(u8::is_ascii_whitespace) {
        return Ok(true);
    }
    let len = c_int::try_from(rest.len()).unwrap_or(c_int::MAX);
    let mut raw: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    // SAFETY: as in `Statement::prepare`; a statement prepared here is
    // finalized at once.
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            db.as_ptr(),
            rest.as_ptr().cast::<c_char>(),
            len,
            0,
            &mut raw,
            std::ptr::null_mut(),
        )
    };
    if !raw.is_null() {
        // SAFETY: the statement just prepared, finalized once.
        unsafe { ffi::sqlite3_finalize(raw) };
        return Ok(false);
    }
    Ok(rc == ffi::SQLITE_OK)
}

/// SQLite's error on `db` now.
fn failure(db: NonNull<ffi::sqlite3>) -> SandboxError {
    // SAFETY: `db` is locked by the caller; the message is copied at once.
    unsafe {
        SandboxError::Sqlite {
            code: ffi::sqlite3_extended_errcode(db.as_ptr()),
            message: CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr()))
                .to_string_lossy()
                .into_owned(),
        }
    }
}
