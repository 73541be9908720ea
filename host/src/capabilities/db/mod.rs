//! The `db` capability: a module's scoped access to its tenant's database.
//!
//! Per-call state: a [`ModuleDb`]; the `db` interface (and the type-only
//! `types` one) reach it, and the call's context for their debug lines,
//! through a [`DbView`] (the WIT implementation is in `host.rs`).
//!
//! Each call gets a [`ModuleDb`]: the module's [`SqlScope`] and, when the
//! call may touch data, an open transaction on the tenant database. Every
//! statement passes two walls:
//!
//! 1. [`SqlScope::rewrite`] parses it (on a big-stack thread,
//!    [`big_stack`]), maps its table names into the module's namespace and
//!    refuses what is visibly out of scope — or [`rewrite_cache`] answers
//!    what it answered before for the same scope and text;
//! 2. SQLite's authorizer ([`sandbox`]) then checks what SQLite actually
//!    compiled against the module's [`sandbox::Policy`], with the
//!    connection's limits and the call's deadline, and the text must be
//!    exactly one statement.
//!
//! The statement is prepared once, with the sandbox armed, and run to its
//! end on the connection's raw handle on the calling thread
//! (`statement.rs`). Parameters are always bound, never spliced. Epoch
//! interruption cannot stop a guest blocked in a host call, so the
//! statement is bounded inside SQLite: the progress handler interrupts it
//! at the call's deadline, and the busy handler stops waiting for a lock
//! there.

pub mod big_stack;
mod host;
pub mod rewrite_cache;
pub mod sandbox;
pub mod scoped_sql;
mod statement;
#[cfg(test)]
mod tests;
pub mod transaction;
pub mod write_phase;

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Sqlite, SqliteConnection, Transaction};
use wasmtime::component::{HasData, Linker};

pub use scoped_sql::{RewrittenStatement, SqlRefusal, SqlScope, StatementSource};
pub use transaction::CallTransaction;
pub use write_phase::WritePhase;

use rewrite_cache::{Lookup, RewriteCache};
use statement::Ran;

use sandbox::{ArmedSpan, Guard, Policy, SandboxError};

use crate::capabilities::context::CallContext;

/// Most rows one query may return to a module.
pub const MAX_ROWS: usize = 10_000;

/// Most bytes of values one query may return to a module (16 MiB: twice the
/// largest response, a quarter of a module's default memory).
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// What the `db` and `types` interfaces reach of a call's state.
pub struct DbView<'a> {
    /// The call's database handle.
    pub db: &'a mut ModuleDb,
    /// The call's context, to tag the debug line of a failed statement.
    pub context: &'a CallContext,
}

/// The [`HasData`] of the `db` and `types` interfaces: their host
/// functions get a [`DbView`].
struct DbData;

impl HasData for DbData {
    type Data<'a> = DbView<'a>;
}

/// Links the `db` interface, and the `types` interface its values come
/// from, of every API version; `view` picks the database handle and the
/// context out of the store data.
///
/// # Errors
/// When the linker already defines the interfaces.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> DbView<'_>,
) -> wasmtime::Result<()> {
    use crate::wit::{v0_1_0, v0_2_0, v0_3_0};
    v0_1_0::souk::module::types::add_to_linker::<T, DbData>(linker, view)?;
    v0_1_0::souk::module::db::add_to_linker::<T, DbData>(linker, view)?;
    v0_2_0::souk::module::types::add_to_linker::<T, DbData>(linker, view)?;
    v0_2_0::souk::module::db::add_to_linker::<T, DbData>(linker, view)?;
    v0_3_0::souk::module::types::add_to_linker::<T, DbData>(linker, view)?;
    v0_3_0::souk::module::db::add_to_linker::<T, DbData>(linker, view)?;
    Ok(())
}

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

impl SqlValue {
    /// Bytes this value occupies in a result.
    fn size(&self) -> usize {
        match self {
            SqlValue::Null => 1,
            SqlValue::Integer(_) | SqlValue::Real(_) => 8,
            SqlValue::Text(t) => t.len(),
            SqlValue::Blob(b) => b.len(),
        }
    }
}

/// Rows returned by a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// Result column names as SQLite prepared the statement (an `AS` alias
    /// when given); empty for a statement that returns no columns.
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
    /// Too many bytes.
    #[error("the query returned more than {MAX_RESULT_BYTES} bytes; select less")]
    ResultTooLarge,
    /// Any other database error.
    #[error("{0}")]
    Other(String),
}

/// A module's database handle for one call.
pub struct ModuleDb {
    scope: Option<Arc<SqlScope>>,
    policy: Arc<Policy>,
    tx: Option<CallTransaction>,
    guard: Option<Arc<Guard>>,
    timeout: Duration,
    /// The end of the call this handle serves: no statement runs past it.
    /// Brought forward to the end of the write phase when one begins.
    deadline: Instant,
    /// A background call's write-phase budget ([`WritePhase`]): begun at
    /// the transaction's first write.
    write_phase: Option<WritePhase>,
    /// Set (for good) when SQLite refused a deferred transaction's lock
    /// upgrade because its snapshot went stale ([`ModuleDb::conflicted`]).
    conflicted: bool,
}

impl ModuleDb {
    /// A handle with no database: every statement fails with
    /// [`DbFailure::Unavailable`].
    pub fn detached() -> Self {
        ModuleDb {
            scope: None,
            policy: Arc::new(Policy::new("", [], false)),
            tx: None,
            guard: None,
            timeout: Duration::from_secs(1),
            deadline: Instant::now(),
            write_phase: None,
            conflicted: false,
        }
    }

    /// A handle that runs the module's statements in `tx`, a transaction on
    /// a hardened tenant connection ([`sandbox::harden`]; statements on any
    /// other connection are refused), for a call whose budget `timeout`
    /// starts now: every statement is interrupted at the call's end, so a
    /// statement begun late cannot hold the tenant's lock past it.
    pub fn new(scope: Arc<SqlScope>, tx: Transaction<'static, Sqlite>, timeout: Duration) -> Self {
        Self::with(scope, CallTransaction::Open(tx), timeout)
    }

    /// As [`ModuleDb::new`], in `tx` however it was begun (a read request's
    /// [`CallTransaction::deferred`] included).
    pub fn with(scope: Arc<SqlScope>, tx: CallTransaction, timeout: Duration) -> Self {
        ModuleDb {
            policy: scope.runtime_policy().clone(),
            scope: Some(scope),
            tx: Some(tx),
            guard: None,
            timeout,
            deadline: Instant::now() + timeout,
            write_phase: None,
            conflicted: false,
        }
    }

    /// This handle with a write-phase budget: from the transaction's first
    /// write the call has `budget` left (see [`write_phase`]); statements
    /// are interrupted at the phase's end, and the runtime stops the call
    /// there ([`ModuleDb::write_phase`]).
    #[must_use]
    pub fn with_write_budget(mut self, budget: Duration) -> Self {
        self.write_phase = Some(WritePhase::new(budget));
        if matches!(self.tx, Some(CallTransaction::Open(_))) {
            // Begun `BEGIN IMMEDIATE`: the call holds the write lock from
            // its start, so its write phase starts now.
            self.wrote();
        }
        self
    }

    /// Whether SQLite refused this call's deferred transaction the write
    /// lock because another connection committed after the call's first
    /// read (`SQLITE_BUSY_SNAPSHOT`, or `SQLITE_BUSY` on its first write
    /// while another writer held the lock). Sticky: whatever the module
    /// did with the error it got, the call's answer is void and the
    /// dispatcher runs it again (see `dispatch.rs`). Every statement after
    /// the refusal fails at once.
    pub fn conflicted(&self) -> bool {
        self.conflicted
    }

    /// The call's write phase, if it has a budget: for the runtime to stop
    /// the call at its end.
    pub fn write_phase(&self) -> Option<WritePhase> {
        self.write_phase.clone()
    }

    /// Notes that the transaction now holds the write lock: begins the
    /// write phase (once) and brings the statements' deadline forward to
    /// its end.
    fn wrote(&mut self) {
        if let Some(phase) = &self.write_phase {
            self.deadline = self.deadline.min(phase.begin());
        }
    }

    /// The call's transaction for the host's own bookkeeping (usage
    /// counters) in the same transaction as the module's writes; unscoped,
    /// so never handed to module code. `None` for a detached handle.
    ///
    /// # Errors
    /// The database's error beginning a deferred transaction.
    pub async fn host_connection(
        &mut self,
    ) -> Option<Result<&mut sqlx::SqliteConnection, sqlx::Error>> {
        if self.conflicted {
            return Some(Err(sqlx::Error::Protocol(STALE_SNAPSHOT.into())));
        }
        let tx = self.tx.as_mut()?;
        if tx.holds_read_snapshot()
            && let Err(Some(code)) = take_write_lock(tx.for_statement().0).await
            && is_upgrade_refusal(code, true)
        {
            // The host's own write (an event, a job's outcome, usage) would
            // be refused the lock as a module's statement would be.
            self.conflicted = true;
            return Some(Err(sqlx::Error::Protocol(STALE_SNAPSHOT.into())));
        }
        let tx = self.tx.as_mut()?;
        let conn = tx.for_host_write().await;
        if conn.is_ok()
            && let Some(phase) = &self.write_phase
        {
            self.deadline = self.deadline.min(phase.begin());
        }
        Some(conn)
    }

    /// Takes the transaction back (to commit, roll back or continue with it).
    pub fn take_transaction(&mut self) -> Option<CallTransaction> {
        self.tx.take()
    }

    /// Rewrites `sql` into the one statement to run and runs it under this
    /// call's policy and deadline.
    async fn run(&mut self, sql: &str, params: &[SqlValue]) -> Result<Executed, DbFailure> {
        if self.conflicted {
            return Err(DbFailure::Other(STALE_SNAPSHOT.into()));
        }
        let (Some(scope), Some(tx)) = (&self.scope, &mut self.tx) else {
            return Err(DbFailure::Unavailable);
        };
        // A deferred transaction begun by an earlier statement and not
        // writing yet holds a read snapshot: its first write must upgrade.
        let upgrading = tx.holds_read_snapshot();
        let statements = rewrite(scope.clone(), sql.to_owned(), StatementSource::Runtime).await?;
        let statement = statements.first().ok_or(DbFailure::Unavailable)?;
        let (conn, must_begin) = tx.for_statement();
        let mut handle = conn.lock_handle().await.map_err(map_error)?;
        let db = handle.as_raw_handle();
        if must_begin {
            // A deferred BEGIN takes no lock and never waits; run with the
            // guard idle, as the host's own statement.
            sandbox::exec_host(db, c"BEGIN").map_err(sandbox_failure)?;
        }
        let mut code = None;
        let executed = run_locked(
            db,
            &mut self.guard,
            self.policy.clone(),
            (self.deadline, self.timeout),
            (&statement.sql, params),
            &mut code,
        );
        let wrote = sandbox::writes_pending(db);
        drop(handle);
        let deferred = tx.is_deferred();
        tx.mark(must_begin, wrote);
        if wrote {
            self.wrote();
        }
        if let Err(failure) = &executed
            && deferred
            && !matches!(failure, DbFailure::Timeout(_))
            && code.is_some_and(|code| is_upgrade_refusal(code, upgrading))
        {
            self.conflicted = true;
            return Err(DbFailure::Other(STALE_SNAPSHOT.into()));
        }
        let executed = executed?;
        Ok(Executed {
            last_insert: executed.last_insert.filter(|_| statement.is_insert),
            ..executed
        })
    }

    /// Runs a query and returns its rows.
    ///
    /// # Errors
    /// See [`DbFailure`].
    pub async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Rows, DbFailure> {
        Ok(self.run(sql, &params).await?.rows)
    }

    /// Runs a statement that changes data; answers the rows it changed and,
    /// for an insert, the last insert rowid.
    ///
    /// # Errors
    /// See [`DbFailure`].
    pub async fn execute(
        &mut self,
        sql: &str,
        params: Vec<SqlValue>,
    ) -> Result<(u64, Option<i64>), DbFailure> {
        let executed = self.run(sql, &params).await?;
        Ok((executed.changed, executed.last_insert))
    }
}

/// What a module learns of a statement refused for a stale snapshot (and
/// of every statement after it in the call): the call is run again.
const STALE_SNAPSHOT: &str =
    "the database changed since this call's first read; the host runs the call again";

/// Whether SQLite's extended result `code` for a statement of a deferred
/// transaction is a refused lock upgrade: `SQLITE_BUSY_SNAPSHOT` (another
/// connection committed after the transaction's first read), or plain
/// `SQLITE_BUSY` when the transaction held a read snapshot and had not
/// written (`upgrading`): SQLite then refuses at once, without the busy
/// handler, because waiting could not help.
pub fn is_upgrade_refusal(code: std::ffi::c_int, upgrading: bool) -> bool {
    code == libsqlite3_sys::SQLITE_BUSY_SNAPSHOT
        || (upgrading && code & 0xff == libsqlite3_sys::SQLITE_BUSY)
}

/// Takes the write lock for a deferred transaction holding a read snapshot,
/// with a write that changes nothing, so that a refusal is seen as one
/// (the host's own writes run through sqlx, which keeps no result code).
/// `Err(Some(code))` is SQLite's refusal; `Err(None)` another failure, left
/// for the real write to report.
async fn take_write_lock(conn: &mut SqliteConnection) -> Result<(), Option<std::ffi::c_int>> {
    let mut handle = conn.lock_handle().await.map_err(|_| None)?;
    // The host's migration ledger (`tenant_migrations::LEDGER`) is in
    // every tenant database; `WHERE 0` deletes nothing, but a DELETE
    // takes the write lock before looking at any row.
    match sandbox::exec_host(
        handle.as_raw_handle(),
        c"DELETE FROM _souk_schema_migrations WHERE 0",
    ) {
        Ok(()) => Ok(()),
        Err(SandboxError::Sqlite { code, .. }) => Err(Some(code)),
        Err(_) => Err(None),
    }
}

/// What one statement did.
struct Executed {
    rows: Rows,
    changed: u64,
    /// The last insert rowid: set by [`run_armed`], kept by
    /// [`ModuleDb::run`] only for an insert.
    last_insert: Option<i64>,
}

/// Rewrites `sql` for `scope`: from the [`rewrite_cache`] when this scope's
/// key saw the same text before, else on a big-stack thread
/// ([`big_stack`]), keeping the answer.
async fn rewrite(
    scope: Arc<SqlScope>,
    sql: String,
    source: StatementSource,
) -> Result<Arc<[RewrittenStatement]>, DbFailure> {
    let cache = RewriteCache::global();
    let answer = match cache.get(&scope, source, sql) {
        Lookup::Hit(answer) => answer,
        Lookup::Miss(key) => {
            let (key, answer) = big_stack::run(move || {
                let answer = scope.rewrite(key.sql(), source).map(Arc::from);
                (key, answer)
            })
            .await
            .map_err(|e| DbFailure::Other(e.to_string()))?;
            cache.put(key, answer.clone());
            answer
        }
    };
    answer.map_err(DbFailure::Refused)
}

/// Arms the connection's sandbox for one statement under `policy` until
/// `deadline` and runs `sql` with `params` on the connection's raw handle
/// ([`statement::run`]), all while holding the connection's lock. The span
/// is finished when SQLite is done with the statement; a statement the host
/// stopped reading part-way leaves it unfinished, which poisons the
/// connection (see [`sandbox`]).
async fn run_armed(
    conn: &mut SqliteConnection,
    cached: &mut Option<Arc<Guard>>,
    policy: Arc<Policy>,
    (deadline, budget): (Instant, Duration),
    sql: &str,
    params: &[SqlValue],
) -> Result<Executed, DbFailure> {
    let mut handle = conn.lock_handle().await.map_err(map_error)?;
    run_locked(
        handle.as_raw_handle(),
        cached,
        policy,
        (deadline, budget),
        (sql, params),
        &mut None,
    )
}

/// [`run_armed`] on a connection whose lock the caller holds; a failure
/// SQLite reported leaves its extended result code in `code`.
fn run_locked(
    db: NonNull<libsqlite3_sys::sqlite3>,
    cached: &mut Option<Arc<Guard>>,
    policy: Arc<Policy>,
    (deadline, budget): (Instant, Duration),
    (sql, params): (&str, &[SqlValue]),
    code: &mut Option<std::ffi::c_int>,
) -> Result<Executed, DbFailure> {
    let guard = match cached {
        Some(guard) => guard.clone(),
        None => {
            let guard = sandbox::guard(db).map_err(sandbox_failure)?;
            *cached = Some(guard.clone());
            guard
        }
    };
    let span = guard.arm(policy, deadline);
    match statement::run(db, sql, params) {
        Ok(Ran::Done {
            rows,
            changed,
            last_insert,
        }) => {
            span.finish();
            Ok(Executed {
                rows,
                changed,
                last_insert: Some(last_insert),
            })
        }
        Ok(Ran::Stopped(failure)) => {
            drop(span);
            Err(failure)
        }
        Err(e) => {
            if let SandboxError::Sqlite { code: sqlite, .. } = &e {
                *code = Some(*sqlite);
            }
            let failure = span_failure(&span, budget).unwrap_or_else(|| sqlite_failure(e));
            span.finish();
            Err(failure)
        }
    }
}

/// What a failed statement's span says of it: the authorizer's refusal, or
/// the deadline (`budget`, for the message); `None` when neither, and
/// SQLite's own error stands.
fn span_failure(span: &ArmedSpan, budget: Duration) -> Option<DbFailure> {
    match span.denial() {
        Some(reason) => Some(DbFailure::Refused(SqlRefusal::Forbidden(reason))),
        None => span.expired().then_some(DbFailure::Timeout(budget)),
    }
}

fn sandbox_failure(error: SandboxError) -> DbFailure {
    match error {
        SandboxError::Empty => DbFailure::Refused(SqlRefusal::Syntax("no statement".into())),
        SandboxError::Multiple => {
            DbFailure::Refused(SqlRefusal::Syntax("expected exactly one statement".into()))
        }
        SandboxError::NotHardened => DbFailure::Other(error.to_string()),
        SandboxError::Sqlite { message, .. } => DbFailure::Other(message),
    }
}

/// Words SQLite's failure of a module statement as the module learns it.
fn sqlite_failure(error: SandboxError) -> DbFailure {
    match error {
        SandboxError::Sqlite { code, message }
            if code & 0xff == libsqlite3_sys::SQLITE_CONSTRAINT =>
        {
            DbFailure::Constraint(message)
        }
        other => sandbox_failure(other),
    }
}

/// Checks a migration's SQL against `scope` as [`run_migration`] would
/// rewrite it, without running it (on a big-stack thread, like every
/// rewrite).
///
/// # Errors
/// [`DbFailure::Refused`] naming the rule a statement breaks.
pub async fn check_migration(scope: &SqlScope, sql: &str) -> Result<(), DbFailure> {
    rewrite(
        Arc::new(scope.clone()),
        sql.to_owned(),
        StatementSource::Migration,
    )
    .await
    .map(|_| ())
}

/// Runs a migration's SQL (its up or down text, one or more statements) in
/// `tx` for the module of `scope`: rewritten into the module's namespace,
/// each statement checked by SQLite's authorizer with DDL on the module's
/// own tables allowed, the whole text bound to one deadline `timeout` from
/// now.
///
/// # Errors
/// [`DbFailure::Refused`] naming the rule a statement breaks,
/// [`DbFailure::Timeout`] past the deadline, or the database's error.
pub async fn run_migration(
    tx: &mut Transaction<'static, Sqlite>,
    scope: &SqlScope,
    sql: &str,
    timeout: Duration,
) -> Result<(), DbFailure> {
    let deadline = Instant::now() + timeout;
    let statements = rewrite(
        Arc::new(scope.clone()),
        sql.to_owned(),
        StatementSource::Migration,
    )
    .await?;
    let ddl = Arc::new(scope.policy(true));
    let dml = scope.runtime_policy().clone();
    let mut guard = None;
    for statement in statements.iter() {
        let policy = if statement.is_ddl { &ddl } else { &dml };
        run_armed(
            tx,
            &mut guard,
            policy.clone(),
            (deadline, timeout),
            &statement.sql,
            &[],
        )
        .await?;
    }
    Ok(())
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
