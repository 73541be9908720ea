//! The second wall: SQLite itself enforces each module's scope.
//!
//! [`super::scoped_sql`] rewrites a module's SQL into the module's namespace
//! and refuses what it can see is out of scope. That rewriter is a parser
//! and a printer, and a parser can be fooled; this file makes such a bug
//! harmless. Every connection to a tenant database is hardened when it
//! opens ([`harden`]):
//!
//! - an **authorizer** (`sqlite3_set_authorizer`) is asked by SQLite at
//!   prepare time for every table and column read or written, every
//!   function, PRAGMA, ATTACH/DETACH, DDL and transaction statement — for
//!   what SQLite actually compiled, not for what our parser thought the text
//!   said;
//! - a **progress handler** interrupts a module statement at its deadline,
//!   and a **busy handler** stops it waiting for a lock there (host
//!   statements wait [`HOST_BUSY_TIMEOUT`], as on every host database);
//! - **limits**: no attached databases, bounded value, SQL and expression
//!   sizes ([`LIMITS`]);
//! - **configuration**: defensive mode, untrusted schema, no extension
//!   loading.
//!
//! The authorizer and the progress handler consult the connection's
//! [`Guard`], which SQLite itself owns (client data, freed when the
//! connection closes). Host statements run with the guard idle: the host is
//! trusted and its own bookkeeping shares the module call's transaction.
//! A module statement runs inside an [`ArmedSpan`], during which the
//! module's [`Policy`] decides every request.
//!
//! Why the raw handle and not rusqlite: tenant databases are sqlx pools, and
//! a module's statements must run in the same transaction as the host's
//! usage bookkeeping. sqlx exposes the connection's `sqlite3*` while its
//! worker is parked ([`sqlx::sqlite::LockedSqliteHandle`]) but no
//! authorizer; setting one through the C API keeps one connection, one
//! transaction and one driver.
//!
//! Cancellation: a module statement runs to its end on the calling thread
//! while that thread holds the connection's lock (`statement.rs`), so a
//! dropped call leaves none of its statements in flight. A span still never
//! returns to idle on drop — a statement the host stopped reading part-way
//! (too many rows) or a panic mid-statement leaves the connection in a
//! state the call cannot vouch for: dropping the span *poisons* the guard,
//! which denies everything but a `ROLLBACK` and interrupts whatever runs,
//! and the pool closes a poisoned connection instead of reusing it
//! ([`release`]).

use std::collections::HashSet;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use libsqlite3_sys as ffi;

/// The name of the guard in the connection's client data.
const CLIENT_DATA: &CStr = c"souk.sandbox.guard";

/// How long a host statement on a tenant connection waits for another
/// connection's lock: the busy timeout every host database has
/// (`control_plane::sqlite_options`).
pub const HOST_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// SQLite virtual-machine steps between deadline checks.
const PROGRESS_OPS: c_int = 10_000;

/// The largest string or blob (and row) a tenant database holds: 8 MiB, the
/// size of the largest module response.
pub const MAX_VALUE_BYTES: c_int = 8 * 1024 * 1024;

/// The longest SQL text SQLite accepts on a tenant connection, per
/// statement as the rewriter printed it. Module text is capped at 64 KiB
/// before parsing ([`MAX_SQL_BYTES`](super::scoped_sql::MAX_SQL_BYTES)); the
/// rewritten text is longer (quoted, prefixed names), and this leaves it
/// four times the room. A rewrite longer still is refused by SQLite.
pub const MAX_SQL_BYTES: c_int = 256 * 1024;

/// The deepest expression tree SQLite compiles (its default is 1000).
pub const MAX_EXPR_DEPTH: c_int = 500;

/// Per-connection limits set by [`harden`]: `(limit, value)`.
pub const LIMITS: [(c_int, c_int); 6] = [
    (ffi::SQLITE_LIMIT_ATTACHED, 0),
    (ffi::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES),
    (ffi::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES),
    (ffi::SQLITE_LIMIT_EXPR_DEPTH, MAX_EXPR_DEPTH),
    (ffi::SQLITE_LIMIT_TRIGGER_DEPTH, 16),
    (ffi::SQLITE_LIMIT_COMPOUND_SELECT, 100),
];

/// SQL functions a module may call (lowercase). Everything else — above all
/// `load_extension`, `sqlite_*` introspection and FTS/R-tree internals — is
/// refused. Sizes are bounded by [`MAX_VALUE_BYTES`], time by the deadline.
const ALLOWED_FUNCTIONS: &[&str] = &[
    // core scalar functions
    "abs",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "ifnull",
    "iif",
    "instr",
    "last_insert_rowid",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "octet_length",
    "printf",
    "quote",
    "random",
    "randomblob",
    "replace",
    "round",
    "rtrim",
    "sign",
    "soundex",
    "substr",
    "substring",
    "total_changes",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unlikely",
    "upper",
    "zeroblob",
    // date and time
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
    "current_date",
    "current_time",
    "current_timestamp",
    // aggregates
    "avg",
    "count",
    "group_concat",
    "string_agg",
    "sum",
    "total",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // math
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // JSON
    "json",
    "jsonb",
    "json_array",
    "jsonb_array",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "jsonb_extract",
    "->",
    "->>",
    "json_insert",
    "jsonb_insert",
    "json_object",
    "jsonb_object",
    "json_patch",
    "jsonb_patch",
    "json_pretty",
    "json_remove",
    "jsonb_remove",
    "json_replace",
    "jsonb_replace",
    "json_set",
    "jsonb_set",
    "json_type",
    "json_valid",
    "json_quote",
    "json_group_array",
    "jsonb_group_array",
    "json_group_object",
    "jsonb_group_object",
];

/// SQLite's internal functions that `ALTER TABLE` runs to rewrite the
/// schema; SQL text cannot call them (they are internal), but the rewrite
/// asks the authorizer, so a DDL statement's policy allows them.
const ALTER_FUNCTIONS: &[&str] = &[
    "sqlite_rename_column",
    "sqlite_rename_table",
    "sqlite_rename_test",
    "sqlite_rename_quotefix",
    "sqlite_drop_column",
];

/// What one module's statements may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The module's physical table prefix, lowercase (`digital_card__`).
    prefix: String,
    /// Physical names (lowercase) of the dependency tables it may read.
    readable: HashSet<String>,
    /// Whether this is a migration's DDL statement: DDL on its own tables
    /// is allowed, and so is SQLite's bookkeeping in the schema table.
    ddl: bool,
}

impl Policy {
    /// A policy for the module whose tables start with `prefix`, which may
    /// read the physical tables `readable` and, when `ddl`, create, alter
    /// and drop its own tables and indexes.
    pub fn new(prefix: &str, readable: impl IntoIterator<Item = String>, ddl: bool) -> Self {
        Policy {
            prefix: prefix.to_ascii_lowercase(),
            readable: readable
                .into_iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            ddl,
        }
    }

    fn owns(&self, table: &str) -> bool {
        table.len() > self.prefix.len()
            && table
                .get(..self.prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(&self.prefix))
    }

    fn reads(&self, table: &str) -> bool {
        self.readable.contains(&table.to_ascii_lowercase())
    }

    /// Decides one authorization request.
    ///
    /// # Errors
    /// Why the request is refused, in words for the module's author.
    pub fn decide(&self, request: &Request<'_>) -> Result<(), String> {
        use Action::*;
        let arg1 = request.arg1.unwrap_or("");
        let arg2 = request.arg2.unwrap_or("");
        // A DDL statement's own bookkeeping in the schema tables, the temp
        // schema's included (ALTER TABLE ... RENAME rewrites both).
        if self.ddl
            && matches!(request.action, Read | Insert | Update | Delete)
            && is_schema_table(arg1)
        {
            return Ok(());
        }
        // ALTER TABLE names the database first and passes a column name
        // where other actions pass the database.
        let database = if request.action == AlterTable {
            request.arg1
        } else {
            request.database
        };
        if let Some(db) = database
            && !db.eq_ignore_ascii_case("main")
        {
            return Err(format!(
                "database {db:?} is not reachable: modules use only their tenant's main database"
            ));
        }
        match request.action {
            Select | Recursive => Ok(()),
            Read => {
                if self.owns(arg1) || self.reads(arg1) {
                    Ok(())
                } else {
                    Err(outside(arg1))
                }
            }
            Insert | Update | Delete => {
                if self.owns(arg1) {
                    Ok(())
                } else if self.reads(arg1) {
                    Err(format!(
                        "table {arg1} belongs to another module and is read-only here"
                    ))
                } else {
                    Err(outside(arg1))
                }
            }
            // The first AUTOINCREMENT table creates SQLite's sequence table.
            CreateTable if self.ddl && arg1.eq_ignore_ascii_case("sqlite_sequence") => Ok(()),
            CreateTable | DropTable if self.ddl => self.own_name(arg1),
            CreateIndex | DropIndex if self.ddl => {
                self.own_index(arg1).and_then(|()| self.own_name(arg2))
            }
            // ALTER TABLE: the first argument is the database, the second the table.
            AlterTable if self.ddl => self.own_name(arg2),
            // CREATE INDEX fills the new index under this code, and so does a
            // UNIQUE or PRIMARY KEY constraint its automatic index.
            Reindex if self.ddl => {
                self.own_name(strip_prefix_ignore_case(arg1, "sqlite_autoindex_").unwrap_or(arg1))
            }
            CreateTable | DropTable | CreateIndex | DropIndex | AlterTable => Err(format!(
                "{} is only allowed in migrations",
                request.action.describe()
            )),
            Function => {
                let listed = |list: &[&str]| list.iter().any(|f| f.eq_ignore_ascii_case(arg2));
                if listed(ALLOWED_FUNCTIONS) || (self.ddl && listed(ALTER_FUNCTIONS)) {
                    Ok(())
                } else {
                    Err(format!("function {arg2}() is not available to modules"))
                }
            }
            _ => Err(format!(
                "{} may not be run by modules",
                request.action.describe()
            )),
        }
    }

    /// An index of the module's: named with its prefix, or SQLite's
    /// automatic index of one of its tables (`sqlite_autoindex_<table>_N`,
    /// made for UNIQUE and PRIMARY KEY constraints).
    fn own_index(&self, name: &str) -> Result<(), String> {
        self.own_name(strip_prefix_ignore_case(name, "sqlite_autoindex_").unwrap_or(name))
    }

    fn own_name(&self, name: &str) -> Result<(), String> {
        if self.owns(name) {
            Ok(())
        } else {
            Err(outside(name))
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &text[prefix.len()..])
}

fn outside(table: &str) -> String {
    if table.is_empty() {
        "a table outside this module's scope is not reachable".into()
    } else {
        format!(
            "table {table} is not reachable: a module may use only its own tables and the \
             tables its declared dependencies export"
        )
    }
}

/// The schema tables SQLite reads and writes while it compiles DDL. Only a
/// DDL statement's policy allows it, and a DDL statement cannot carry a
/// query of its own (the rewriter refuses `CREATE TABLE ... AS SELECT`;
/// SQLite refuses sub-queries in CHECK, DEFAULT and index expressions);
/// direct writes are refused by SQLite itself (the table is read-only
/// without `writable_schema`, which defensive mode keeps off).
fn is_schema_table(table: &str) -> bool {
    [
        "sqlite_master",
        "sqlite_schema",
        "sqlite_temp_master",
        "sqlite_temp_schema",
        "sqlite_sequence",
    ]
    .iter()
    .any(|t| t.eq_ignore_ascii_case(table))
}

/// An authorizer action code, named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `CREATE INDEX` (index, table).
    CreateIndex,
    /// `CREATE TABLE` (table).
    CreateTable,
    /// `CREATE TRIGGER` (trigger, table).
    CreateTrigger,
    /// `CREATE VIEW` (view).
    CreateView,
    /// Any `CREATE TEMP ...`.
    CreateTemp,
    /// `DELETE` (table).
    Delete,
    /// `DROP INDEX` (index, table).
    DropIndex,
    /// `DROP TABLE` (table).
    DropTable,
    /// `DROP TRIGGER` / `DROP VIEW` / any `DROP TEMP ...`.
    DropOther,
    /// `INSERT` (table).
    Insert,
    /// `PRAGMA` (name, argument).
    Pragma,
    /// A column read (table, column; column `""` when none is used).
    Read,
    /// `SELECT`.
    Select,
    /// `BEGIN`/`COMMIT`/`ROLLBACK` (operation).
    Transaction,
    /// `UPDATE` (table, column).
    Update,
    /// `ATTACH` (file).
    Attach,
    /// `DETACH` (database).
    Detach,
    /// `ALTER TABLE` (database, table).
    AlterTable,
    /// `REINDEX`.
    Reindex,
    /// `ANALYZE`.
    Analyze,
    /// `CREATE VIRTUAL TABLE` / `DROP VIRTUAL TABLE`.
    VirtualTable,
    /// A function call (-, function name).
    Function,
    /// `SAVEPOINT`/`RELEASE`/`ROLLBACK TO` (operation, name).
    Savepoint,
    /// A recursive common table expression.
    Recursive,
    /// A code this host does not know (refused).
    Unknown(i32),
}

impl Action {
    /// The action for SQLite's code.
    pub fn from_code(code: c_int) -> Self {
        use Action::*;
        match code {
            ffi::SQLITE_CREATE_INDEX => CreateIndex,
            ffi::SQLITE_CREATE_TABLE => CreateTable,
            ffi::SQLITE_CREATE_TEMP_INDEX
            | ffi::SQLITE_CREATE_TEMP_TABLE
            | ffi::SQLITE_CREATE_TEMP_TRIGGER
            | ffi::SQLITE_CREATE_TEMP_VIEW => CreateTemp,
            ffi::SQLITE_CREATE_TRIGGER => CreateTrigger,
            ffi::SQLITE_CREATE_VIEW => CreateView,
            ffi::SQLITE_DELETE => Delete,
            ffi::SQLITE_DROP_INDEX => DropIndex,
            ffi::SQLITE_DROP_TABLE => DropTable,
            ffi::SQLITE_DROP_TEMP_INDEX
            | ffi::SQLITE_DROP_TEMP_TABLE
            | ffi::SQLITE_DROP_TEMP_TRIGGER
            | ffi::SQLITE_DROP_TEMP_VIEW
            | ffi::SQLITE_DROP_TRIGGER
            | ffi::SQLITE_DROP_VIEW => DropOther,
            ffi::SQLITE_INSERT => Insert,
            ffi::SQLITE_PRAGMA => Pragma,
            ffi::SQLITE_READ => Read,
            ffi::SQLITE_SELECT => Select,
            ffi::SQLITE_TRANSACTION => Transaction,
            ffi::SQLITE_UPDATE => Update,
            ffi::SQLITE_ATTACH => Attach,
            ffi::SQLITE_DETACH => Detach,
            ffi::SQLITE_ALTER_TABLE => AlterTable,
            ffi::SQLITE_REINDEX => Reindex,
            ffi::SQLITE_ANALYZE => Analyze,
            ffi::SQLITE_CREATE_VTABLE | ffi::SQLITE_DROP_VTABLE => VirtualTable,
            ffi::SQLITE_FUNCTION => Function,
            ffi::SQLITE_SAVEPOINT => Savepoint,
            ffi::SQLITE_RECURSIVE => Recursive,
            other => Unknown(other),
        }
    }

    /// The statement kind in words.
    pub fn describe(self) -> String {
        use Action::*;
        match self {
            CreateIndex => "CREATE INDEX".into(),
            CreateTable => "CREATE TABLE".into(),
            CreateTrigger => "CREATE TRIGGER".into(),
            CreateView => "CREATE VIEW".into(),
            CreateTemp => "CREATE TEMP".into(),
            Delete => "DELETE".into(),
            DropIndex => "DROP INDEX".into(),
            DropTable => "DROP TABLE".into(),
            DropOther => "DROP TRIGGER/VIEW".into(),
            Insert => "INSERT".into(),
            Pragma => "PRAGMA".into(),
            Read => "reading a table".into(),
            Select => "SELECT".into(),
            Transaction => "a transaction statement".into(),
            Update => "UPDATE".into(),
            Attach => "ATTACH".into(),
            Detach => "DETACH".into(),
            AlterTable => "ALTER TABLE".into(),
            Reindex => "REINDEX".into(),
            Analyze => "ANALYZE".into(),
            VirtualTable => "a virtual table statement".into(),
            Function => "a function call".into(),
            Savepoint => "SAVEPOINT/RELEASE".into(),
            Recursive => "a recursive query".into(),
            Unknown(code) => format!("operation {code}"),
        }
    }
}

/// One request SQLite put to the authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The authorizer's action code; each [`Action`] says what `arg1` and
    /// `arg2` then hold.
    pub action: Action,
    /// First detail (usually a table or index name).
    pub arg1: Option<&'a str>,
    /// Second detail (a column, a table, a function name).
    pub arg2: Option<&'a str>,
    /// The database (`main`, `temp`, an attached name), when there is one.
    pub database: Option<&'a str>,
}

/// A request as recorded in the audit log, with the decision taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// As in [`Request::action`].
    pub action: Action,
    /// As in [`Request::arg1`] (usually a table or index name).
    pub arg1: Option<String>,
    /// As in [`Request::arg2`] (a column, a table, a function name).
    pub arg2: Option<String>,
    /// As in [`Request::database`] (`main`, `temp`, an attached name).
    pub database: Option<String>,
    /// Whether it was allowed.
    pub allowed: bool,
}

#[derive(Debug)]
enum State {
    /// Host statements: everything allowed.
    Idle,
    /// A module statement is being prepared or run.
    Armed {
        policy: Arc<Policy>,
        deadline: Instant,
        denial: Option<String>,
    },
    /// A module statement was abandoned mid-flight: deny everything but a
    /// rollback, interrupt whatever runs.
    Poisoned,
}

/// The sandbox state of one connection, consulted by its authorizer and its
/// progress handler.
#[derive(Debug)]
pub struct Guard {
    state: Mutex<State>,
    log: Mutex<Option<Vec<LoggedRequest>>>,
}

impl Guard {
    fn new() -> Self {
        Guard {
            state: Mutex::new(State::Idle),
            log: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a module statement under `policy` until `deadline`.
    pub fn arm(self: &Arc<Self>, policy: Arc<Policy>, deadline: Instant) -> ArmedSpan {
        *self.state() = State::Armed {
            policy,
            deadline,
            denial: None,
        };
        ArmedSpan {
            guard: self.clone(),
            finished: false,
        }
    }

    /// Whether no module statement is armed or was abandoned.
    pub fn is_idle(&self) -> bool {
        matches!(*self.state(), State::Idle)
    }

    /// Starts recording every request decided while armed (for tests and
    /// audits: the log is the oracle of what SQLite was allowed to do).
    pub fn start_log(&self) {
        *self.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// Stops recording and returns what was recorded.
    pub fn take_log(&self) -> Vec<LoggedRequest> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    }

    fn authorize(&self, request: &Request<'_>) -> bool {
        let mut state = self.state();
        let allowed = match &mut *state {
            State::Idle => return true,
            State::Poisoned => {
                request.action == Action::Transaction
                    && request
                        .arg1
                        .is_some_and(|op| op.eq_ignore_ascii_case("ROLLBACK"))
            }
            State::Armed { policy, denial, .. } => match policy.decide(request) {
                Ok(()) => true,
                Err(reason) => {
                    denial.get_or_insert(reason);
                    false
                }
            },
        };
        drop(state);
        if let Some(log) = self.log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            log.push(LoggedRequest {
                action: request.action,
                arg1: request.arg1.map(str::to_owned),
                arg2: request.arg2.map(str::to_owned),
                database: request.database.map(str::to_owned),
                allowed,
            });
        }
        allowed
    }

    /// Sleeps a little and answers whether SQLite should try the lock
    /// again, after `count` earlier tries: a module statement waits until
    /// its deadline, a host statement about [`HOST_BUSY_TIMEOUT`], a
    /// poisoned connection not at all.
    fn wait_for_lock(&self, count: c_int) -> bool {
        let pause = |millis: u64| std::time::Duration::from_millis(millis);
        // 1 ms for the first tries (locks are usually held briefly), then
        // 10 ms.
        let (nap, waited) = if count < 10 {
            (pause(1), pause(u64::try_from(count).unwrap_or(0)))
        } else {
            (
                pause(10),
                pause(10 + (u64::try_from(count).unwrap_or(0) - 10) * 10),
            )
        };
        let nap = match &*self.state() {
            State::Poisoned => return false,
            State::Idle if waited >= HOST_BUSY_TIMEOUT => return false,
            State::Idle => nap,
            State::Armed { deadline, .. } => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                nap.min(left)
            }
        };
        std::thread::sleep(nap);
        true
    }

    fn should_interrupt(&self) -> bool {
        match &*self.state() {
            State::Idle => false,
            State::Armed { deadline, .. } => Instant::now() >= *deadline,
            State::Poisoned => true,
        }
    }
}

/// One module statement's time under its policy. [`ArmedSpan::finish`]
/// returns the guard to idle once the statement is done; dropping the span
/// unfinished poisons the connection (see the module docs).
#[derive(Debug)]
pub struct ArmedSpan {
    guard: Arc<Guard>,
    finished: bool,
}

impl ArmedSpan {
    /// The first refusal the policy gave during this span.
    pub fn denial(&self) -> Option<String> {
        match &*self.guard.state() {
            State::Armed { denial, .. } => denial.clone(),
            _ => None,
        }
    }

    /// Whether the span's deadline has passed.
    pub fn expired(&self) -> bool {
        match &*self.guard.state() {
            State::Armed { deadline, .. } => Instant::now() >= *deadline,
            _ => true,
        }
    }

    /// The statement is done (it completed, failed, or was refused, and
    /// nothing of it is still queued): host statements may run again.
    pub fn finish(mut self) {
        self.finished = true;
        *self.guard.state() = State::Idle;
    }
}

impl Drop for ArmedSpan {
    fn drop(&mut self) {
        if !self.finished {
            *self.guard.state() = State::Poisoned;
        }
    }
}

/// Why hardening a connection or checking a statement failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// SQLite refused a setting or a statement.
    #[error("{message}")]
    Sqlite {
        /// SQLite's primary result code.
        code: c_int,
        /// SQLite's message.
        message: String,
    },
    /// The text holds no statement.
    #[error("no statement")]
    Empty,
    /// The text holds more than one statement.
    #[error("expected exactly one statement; the text continues after the first")]
    Multiple,
    /// The connection was not hardened (fails closed).
    #[error("this database connection is not sandboxed")]
    NotHardened,
}

/// Hardens a freshly opened tenant-database connection: limits,
/// configuration, and the authorizer and progress handler with a new idle
/// [`Guard`] owned by the connection.
///
/// # Errors
/// [`SandboxError::Sqlite`] when SQLite refuses a setting; the connection
/// must then not be used.
pub fn harden(db: NonNull<ffi::sqlite3>) -> Result<(), SandboxError> {
    let db = db.as_ptr();
    // SAFETY: `db` is an open connection parked by sqlx for the caller (the
    // caller holds its lock), so nothing else uses it during these calls.
    unsafe {
        for (limit, value) in LIMITS {
            ffi::sqlite3_limit(db, limit, value);
        }
        for (op, value) in [
            (ffi::SQLITE_DBCONFIG_DEFENSIVE, 1),
            (ffi::SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0),
            (ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0),
            (ffi::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0),
            (ffi::SQLITE_DBCONFIG_WRITABLE_SCHEMA, 0),
            // A tenant database is closed whenever it leaves the host's open
            // set (`--open-tenants`) and opened again on its next request:
            // closing must not checkpoint (and fsync) the WAL each time.
            // The WAL keeps what was committed; a later commit's automatic
            // checkpoint moves it into the database file.
            (ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1),
        ] {
            let mut now: c_int = -1;
            let rc = ffi::sqlite3_db_config(db, op, value, &mut now as *mut c_int);
            if rc != ffi::SQLITE_OK || now != value {
                return Err(SandboxError::Sqlite {
                    code: rc,
                    message: format!("sqlite3_db_config({op}) was refused"),
                });
            }
        }
        // Keep the WAL file when the last connection closes, so reopening
        // does not delete and create it again.
        let mut persist: c_int = 1;
        let rc = ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut persist as *mut c_int).cast::<c_void>(),
        );
        if rc != ffi::SQLITE_OK {
            return Err(SandboxError::Sqlite {
                code: rc,
                message: "SQLITE_FCNTL_PERSIST_WAL was refused".into(),
            });
        }
        let guard = Arc::new(Guard::new());
        // The connection holds one strong reference, released by
        // `release_guard` when it closes; the callbacks borrow it.
        let raw = Arc::into_raw(guard).cast_mut().cast::<c_void>();
        let rc = ffi::sqlite3_set_clientdata(db, CLIENT_DATA.as_ptr(), raw, Some(release_guard));
        if rc != ffi::SQLITE_OK {
            release_guard(raw);
            return Err(SandboxError::Sqlite {
                code: rc,
                message: "sqlite3_set_clientdata failed".into(),
            });
        }
        let rc = ffi::sqlite3_set_authorizer(db, Some(authorize), raw);
        if rc != ffi::SQLITE_OK {
            return Err(SandboxError::Sqlite {
                code: rc,
                message: "sqlite3_set_authorizer failed".into(),
            });
        }
        ffi::sqlite3_progress_handler(db, PROGRESS_OPS, Some(progress), raw);
        // Replaces the connection's busy timeout: a module statement runs on
        // the calling thread and must not wait for a lock past its deadline.
        let rc = ffi::sqlite3_busy_handler(db, Some(busy), raw);
        if rc != ffi::SQLITE_OK {
            return Err(SandboxError::Sqlite {
                code: rc,
                message: "sqlite3_busy_handler failed".into(),
            });
        }
    }
    Ok(())
}

/// Pool options for tenant databases: every connection is hardened before
/// first use, and one whose module statement was abandoned mid-flight is
/// closed rather than reused.
pub fn pool_options() -> sqlx::sqlite::SqlitePoolOptions {
    sqlx::sqlite::SqlitePoolOptions::new()
        .after_connect(|conn, _| {
            Box::pin(async move {
                let mut handle = conn.lock_handle().await?;
                harden(handle.as_raw_handle()).map_err(|e| sqlx::Error::Configuration(Box::new(e)))
            })
        })
        .after_release(|conn, _| {
            Box::pin(async move {
                let sqlx_transaction = sqlx::Connection::is_in_transaction(&*conn);
                let mut handle = conn.lock_handle().await?;
                Ok(release(handle.as_raw_handle(), !sqlx_transaction))
            })
        })
}

/// The guard of a hardened connection.
///
/// # Errors
/// [`SandboxError::NotHardened`] for a connection [`harden`] never saw.
pub fn guard(db: NonNull<ffi::sqlite3>) -> Result<Arc<Guard>, SandboxError> {
    // SAFETY: the caller holds the connection's lock; client data set by
    // `harden` is an `Arc<Guard>` pointer that stays valid until the
    // connection closes, and taking another strong reference keeps the
    // guard alive for as long as the returned `Arc` lives.
    unsafe {
        let raw = ffi::sqlite3_get_clientdata(db.as_ptr(), CLIENT_DATA.as_ptr());
        if raw.is_null() {
            return Err(SandboxError::NotHardened);
        }
        let ptr = raw.cast_const().cast::<Guard>();
        Arc::increment_strong_count(ptr);
        Ok(Arc::from_raw(ptr))
    }
}

/// Whether a connection may go back into the pool: hardened and idle.
///
/// With `end_transaction` (sqlx began no transaction on it), a transaction
/// left open — a read request's deferred one, ended here rather than by a
/// round trip of its own (see `transaction.rs`) — is rolled back first,
/// and a connection where that fails is not clean. A transaction sqlx
/// began is sqlx's to end: its rollback may still be queued for the
/// connection's worker behind this hook, and ending it here would make
/// that rollback fail and leave sqlx counting a transaction that is gone.
pub fn release(db: NonNull<ffi::sqlite3>, end_transaction: bool) -> bool {
    if !guard(db).is_ok_and(|g| g.is_idle()) {
        return false;
    }
    if !end_transaction {
        return true;
    }
    // SAFETY: the caller holds the connection's lock.
    let in_transaction = unsafe { ffi::sqlite3_get_autocommit(db.as_ptr()) } == 0;
    !in_transaction || exec_host(db, c"ROLLBACK").is_ok()
}

/// Runs one of the host's own fixed statements (`BEGIN`, `ROLLBACK`) on a
/// connection whose lock the caller holds, with the guard as it is (idle:
/// the host's trust).
///
/// # Errors
/// [`SandboxError::Sqlite`] with SQLite's code and message.
pub fn exec_host(db: NonNull<ffi::sqlite3>, sql: &CStr) -> Result<(), SandboxError> {
    let mut message: *mut c_char = std::ptr::null_mut();
    // SAFETY: the caller holds the connection's lock; `sql` is
    // NUL-terminated; SQLite's message is copied and freed below.
    let rc = unsafe {
        ffi::sqlite3_exec(
            db.as_ptr(),
            sql.as_ptr(),
            None,
            std::ptr::null_mut(),
            &mut message,
        )
    };
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: a non-null message was allocated by SQLite for this call.
    let text = unsafe {
        if message.is_null() {
            format!("SQLite error {rc}")
        } else {
            let text = CStr::from_ptr(message).to_string_lossy().into_owned();
            ffi::sqlite3_free(message.cast::<c_void>());
            text
        }
    };
    Err(SandboxError::Sqlite {
        code: rc,
        message: text,
    })
}

/// Whether the connection's open transaction has written (so it must be
/// committed, not just let go). The caller holds the connection's lock.
pub fn writes_pending(db: NonNull<ffi::sqlite3>) -> bool {
    // SAFETY: the caller holds the connection's lock; a null schema name
    // asks about every attached database (only `main` here).
    unsafe { ffi::sqlite3_txn_state(db.as_ptr(), std::ptr::null()) == ffi::SQLITE_TXN_WRITE }
}

/// Frees the connection's reference to its guard (SQLite calls this when
/// the connection closes).
unsafe extern "C" fn release_guard(raw: *mut c_void) {
    if !raw.is_null() {
        // SAFETY: `raw` is the pointer `harden` made with `Arc::into_raw`.
        drop(unsafe { Arc::from_raw(raw.cast_const().cast::<Guard>()) });
    }
}

/// Reads an optional C string argument.
///
/// # Safety
/// `ptr` is null or a NUL-terminated string valid for the callback.
unsafe fn text<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        None
    } else {
        // A name SQLite hands over that is not UTF-8 is refused as "\u{FFFD}".
        Some(
            unsafe { CStr::from_ptr(ptr) }
                .to_str()
                .unwrap_or("\u{FFFD}"),
        )
    }
}

unsafe extern "C" fn authorize(
    user: *mut c_void,
    action: c_int,
    arg1: *const c_char,
    arg2: *const c_char,
    database: *const c_char,
    _context: *const c_char,
) -> c_int {
    // SAFETY: `user` is the guard registered by `harden`, alive until the
    // connection closes; the strings are valid for this call.
    let guard = unsafe { &*user.cast_const().cast::<Guard>() };
    let request = Request {
        action: Action::from_code(action),
        arg1: unsafe { text(arg1) },
        arg2: unsafe { text(arg2) },
        database: unsafe { text(database) },
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard.authorize(&request))) {
        Ok(true) => ffi::SQLITE_OK,
        _ => ffi::SQLITE_DENY,
    }
}

/// SQLite's busy handler on a hardened connection: asked whether to keep
/// waiting for another connection's lock after `count` earlier waits.
unsafe extern "C" fn busy(user: *mut c_void, count: c_int) -> c_int {
    // SAFETY: as for `authorize`.
    let guard = unsafe { &*user.cast_const().cast::<Guard>() };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard.wait_for_lock(count))) {
        Ok(true) => 1,
        _ => 0,
    }
}

unsafe extern "C" fn progress(user: *mut c_void) -> c_int {
    // SAFETY: as for `authorize`.
    let guard = unsafe { &*user.cast_const().cast::<Guard>() };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard.should_interrupt())) {
        Ok(false) => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ddl: bool) -> Policy {
        Policy::new("digital_card__", ["membership__members".to_owned()], ddl)
    }

    fn req<'a>(action: Action, arg1: Option<&'a str>, arg2: Option<&'a str>) -> Request<'a> {
        Request {
            action,
            arg1,
            arg2,
            database: Some("main"),
        }
    }

    #[test]
    fn own_tables_are_case_insensitive_and_prefix_exact() {
        let p = policy(false);
        for table in [
            "digital_card__cards",
            "DIGITAL_CARD__cards",
            "Digital_Card__X",
        ] {
            assert!(
                p.decide(&req(Action::Read, Some(table), Some("id")))
                    .is_ok(),
                "{table}"
            );
            assert!(
                p.decide(&req(Action::Insert, Some(table), None)).is_ok(),
                "{table}"
            );
        }
        for table in [
            "digital_card__",
            "digital_card_cards",
            "digital_cards__x",
            "membership__secrets",
            "sqlite_master",
            "sqlite_schema",
            "_souk_usage_counters",
            "pragma_table_list",
            "dbstat",
            "",
        ] {
            assert!(
                p.decide(&req(Action::Read, Some(table), Some("x")))
                    .is_err(),
                "{table}"
            );
            assert!(
                p.decide(&req(Action::Update, Some(table), Some("x")))
                    .is_err(),
                "{table}"
            );
        }
    }

    #[test]
    fn dependency_exports_are_read_only() {
        let p = policy(false);
        assert!(
            p.decide(&req(
                Action::Read,
                Some("MEMBERSHIP__members"),
                Some("name")
            ))
            .is_ok()
        );
        for action in [Action::Insert, Action::Update, Action::Delete] {
            let e = p
                .decide(&req(action, Some("membership__members"), None))
                .unwrap_err();
            assert!(e.contains("read-only"), "{e}");
        }
    }

    #[test]
    fn other_databases_are_unreachable() {
        let p = policy(true);
        for db in ["temp", "aux", "control", ""] {
            let r = Request {
                action: Action::Read,
                arg1: Some("digital_card__cards"),
                arg2: Some("id"),
                database: Some(db),
            };
            assert!(p.decide(&r).is_err(), "{db}");
        }
    }

    #[test]
    fn ddl_only_in_migrations_and_only_own_names() {
        let runtime = policy(false);
        let migration = policy(true);
        let create = req(Action::CreateTable, Some("digital_card__t"), None);
        assert!(runtime.decide(&create).is_err());
        assert!(migration.decide(&create).is_ok());
        let index = req(
            Action::CreateIndex,
            Some("digital_card__i"),
            Some("digital_card__t"),
        );
        assert!(migration.decide(&index).is_ok());
        let foreign = req(
            Action::CreateIndex,
            Some("digital_card__i"),
            Some("membership__members"),
        );
        assert!(migration.decide(&foreign).is_err());
        assert!(
            runtime
                .decide(&req(Action::Reindex, Some("digital_card__i"), None))
                .is_err()
        );
        assert!(
            migration
                .decide(&req(Action::Reindex, Some("digital_card__i"), None))
                .is_ok()
        );
        assert!(
            migration
                .decide(&req(Action::Reindex, Some("membership__i"), None))
                .is_err()
        );
        let alter = req(
            Action::AlterTable,
            Some("main"),
            Some("membership__members"),
        );
        assert!(migration.decide(&alter).is_err());
        assert!(
            migration
                .decide(&req(Action::Insert, Some("sqlite_master"), None))
                .is_ok()
        );
        assert!(
            runtime
                .decide(&req(Action::Insert, Some("sqlite_master"), None))
                .is_err()
        );
        for action in [
            Action::CreateTrigger,
            Action::CreateView,
            Action::CreateTemp,
            Action::DropOther,
            Action::VirtualTable,
            Action::Pragma,
            Action::Attach,
            Action::Detach,
            Action::Transaction,
            Action::Savepoint,
            Action::Analyze,
            Action::Unknown(99),
        ] {
            let r = req(action, Some("digital_card__t"), Some("digital_card__t"));
            assert!(migration.decide(&r).is_err(), "{action:?}");
            assert!(runtime.decide(&r).is_err(), "{action:?}");
        }
    }

    #[test]
    fn functions_are_allow_listed() {
        let p = policy(false);
        for f in ["count", "JSON_EXTRACT", "->>", "printf", "datetime"] {
            assert!(
                p.decide(&req(Action::Function, None, Some(f))).is_ok(),
                "{f}"
            );
        }
        for f in [
            "load_extension",
            "sqlite_version",
            "sqlite_compileoption_used",
            "fts3_tokenizer",
            "readfile",
            "writefile",
            "edit",
            "",
        ] {
            assert!(
                p.decide(&req(Action::Function, None, Some(f))).is_err(),
                "{f}"
            );
        }
    }
}
