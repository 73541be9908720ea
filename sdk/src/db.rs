//! SQL against the module's own tables in the tenant's database.
//!
//! Write table names as the module knows them (`members`); the host maps them
//! into the module's namespace. A table a dependency exports is read as
//! `<dependency>.<table>` (e.g. `membership.members`) and is never writable.
//! DDL is refused outside migrations. Parameters are bound positionally
//! (`?1`, `?2`, ... or `?`), never spliced into the SQL:
//!
//! ```no_run
//! use souk_sdk::db::{self, DecodeError, FromRow, Row};
//! use souk_sdk::params;
//!
//! struct Member {
//!     number: String,
//!     name: String,
//!     notes: Option<String>,
//! }
//!
//! impl FromRow for Member {
//!     fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
//!         Ok(Self {
//!             number: row.get("number")?,
//!             name: row.get("name")?,
//!             notes: row.get("notes")?,
//!         })
//!     }
//! }
//!
//! # fn main() -> Result<(), db::QueryError> {
//! db::execute(
//!     "INSERT INTO members (number, name) VALUES (?1, ?2)",
//!     params!["M-001", "Ada Lovelace"],
//! )?;
//! let member: Option<Member> = db::query_optional(
//!     "SELECT number, name, notes FROM members WHERE number = ?1",
//!     params!["M-001"],
//! )?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use crate::runtime;

/// A SQL value: bound to a statement parameter or read from a column.
///
/// SQLite has no boolean type: `bool` is stored as the integers `0` and `1`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// The SQL storage class of the value: `null`, `integer`, `real`, `text`
    /// or `blob`. Used in decode errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }

    /// Whether the value is SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Decodes the value into a Rust type.
    ///
    /// # Errors
    ///
    /// [`ValueError`] when the value's storage class or range does not fit
    /// `T`.
    pub fn decode<T: FromValue>(&self) -> Result<T, ValueError> {
        T::from_value(self)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Integer(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Integer(i64::from(value))
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Integer(i64::from(value))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Real(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Integer(i64::from(value))
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Blob(value.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Value::Blob(value)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// Binds a borrowed value (`&String`, `&i64`, `&Option<String>`, ...) by
/// cloning it, so `params![&member.name]` works without moving.
impl<T: Clone + Into<Value>> From<&T> for Value {
    fn from(value: &T) -> Self {
        value.clone().into()
    }
}

/// Builds the parameter list of a statement: `params![number, &name, None::<String>]`
/// is a `&[Value]` with each argument converted by [`Value::from`].
///
/// `params![]` is the empty list.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[$crate::db::Value]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::db::Value::from($value)),+] as &[$crate::db::Value]
    };
}

/// Why a [`Value`] does not decode into a Rust type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value's storage class cannot become the requested type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The Rust type that was requested.
        expected: &'static str,
        /// The value's storage class (see [`Value::kind_name`]).
        found: &'static str,
    },
    /// The value is an integer outside the requested type's range.
    #[error("expected {expected}, found the out-of-range integer {value}")]
    OutOfRange {
        /// The Rust type that was requested.
        expected: &'static str,
        /// The integer that was found.
        value: i64,
    },
    /// The value has a fitting storage class but is not a valid `expected`:
    /// for a module's own [`FromValue`] types (e.g. a status stored as text).
    #[error("expected {expected}, found {reason}")]
    Invalid {
        /// The type that was requested.
        expected: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
}

/// A Rust type a single SQL value decodes into.
///
/// Implemented for `i64`, `i32`, `u32`, `f64`, `bool`, `String`, `Vec<u8>`,
/// [`Value`] itself, and `Option<T>` (which maps `NULL` to `None`; every
/// other type refuses `NULL`). Implement it for a module's own column types
/// (a status enum stored as text, say) to read them with [`Row::get`].
pub trait FromValue: Sized {
    /// Decodes `value`.
    ///
    /// # Errors
    ///
    /// [`ValueError`] when the storage class or range does not fit.
    fn from_value(value: &Value) -> Result<Self, ValueError>;
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        Ok(value.clone())
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Integer(integer) => Ok(*integer),
            other => Err(wrong_type("i64", other)),
        }
    }
}

impl FromValue for i32 {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        narrow_integer(value, "i32")
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        narrow_integer(value, "u32")
    }
}

/// Accepts integers too: SQLite returns whole-number results of expressions
/// (and of REAL columns holding whole numbers, in some cases) as integers.
impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Real(real) => Ok(*real),
            // Precision loss above 2^53 is the documented price of reading an
            // integer as a float.
            Value::Integer(integer) => Ok(*integer as f64),
            other => Err(wrong_type("f64", other)),
        }
    }
}

/// Accepts the integers `0` and `1`, the way booleans are stored.
impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Integer(0) => Ok(false),
            Value::Integer(1) => Ok(true),
            Value::Integer(other) => Err(ValueError::OutOfRange {
                expected: "bool (0 or 1)",
                value: *other,
            }),
            other => Err(wrong_type("bool", other)),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(wrong_type("String", other)),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Blob(blob) => Ok(blob.clone()),
            other => Err(wrong_type("Vec<u8>", other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

fn wrong_type(expected: &'static str, found: &Value) -> ValueError {
    ValueError::WrongType {
        expected,
        found: found.kind_name(),
    }
}

fn narrow_integer<T: TryFrom<i64>>(value: &Value, expected: &'static str) -> Result<T, ValueError> {
    match value {
        Value::Integer(integer) => T::try_from(*integer).map_err(|_| ValueError::OutOfRange {
            expected,
            value: *integer,
        }),
        other => Err(wrong_type(expected, other)),
    }
}

/// Why a row does not decode into a Rust value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The result has no column of that name.
    #[error("the result has no column `{column}` (columns: {available})")]
    MissingColumn {
        /// The column that was asked for.
        column: String,
        /// The result's columns, comma-separated.
        available: String,
    },
    /// The result has fewer columns than the index asked for.
    #[error("the result has no column at index {index} (it has {count})")]
    MissingIndex {
        /// The index that was asked for.
        index: usize,
        /// How many columns the result has.
        count: usize,
    },
    /// The column's value does not fit the requested type.
    #[error("column `{column}`: {source}")]
    InvalidValue {
        /// The column that was read.
        column: String,
        /// What did not fit.
        #[source]
        source: ValueError,
    },
}

/// A Rust type one result row decodes into.
///
/// Implement it for a struct by reading each field with [`Row::get`].
/// Tuples of up to four [`FromValue`] types decode by column position, which
/// suits single-value queries: `db::query_one::<(i64,)>("SELECT count(*) FROM members", params![])`.
pub trait FromRow: Sized {
    /// Decodes `row`.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when a column is missing or holds a value of the
    /// wrong type.
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError>;
}

macro_rules! tuple_from_row {
    ($($index:tt => $element:ident),+) => {
        impl<$($element: FromValue),+> FromRow for ($($element,)+) {
            fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
                Ok(($(row.get_index::<$element>($index)?,)+))
            }
        }
    };
}

tuple_from_row!(0 => A);
tuple_from_row!(0 => A, 1 => B);
tuple_from_row!(0 => A, 1 => B, 2 => C);
tuple_from_row!(0 => A, 1 => B, 2 => C, 3 => D);

/// The rows a query returned, with their column names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    // Crate-visible so the bindings can lift a host row set straight into
    // `Rows` (see `runtime::bindings`).
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
}

impl Rows {
    /// A result with the given columns and rows; each row holds one value per
    /// column. Mostly useful in tests.
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Self {
        Self { columns, rows }
    }

    /// The column names, in select-list order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in result order.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    /// Decodes every row.
    ///
    /// # Errors
    ///
    /// The first [`DecodeError`] met.
    pub fn decode<T: FromRow>(&self) -> Result<Vec<T>, DecodeError> {
        self.iter().map(|row| T::from_row(&row)).collect()
    }

    /// The column names and the raw rows.
    pub fn into_parts(self) -> (Vec<String>, Vec<Vec<Value>>) {
        (self.columns, self.rows)
    }
}

/// One result row, borrowed from [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The raw value of a column, matched by exact name first and then
    /// ASCII-case-insensitively (SQL identifiers are case-insensitive).
    pub fn value(&self, column: &str) -> Option<&'a Value> {
        let position = self
            .columns
            .iter()
            .position(|name| name == column)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|name| name.eq_ignore_ascii_case(column))
            })?;
        self.values.get(position)
    }

    /// Decodes a column by name.
    ///
    /// # Errors
    ///
    /// [`DecodeError::MissingColumn`] when there is no such column,
    /// [`DecodeError::InvalidValue`] when its value does not fit `T`.
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, DecodeError> {
        let value = self
            .value(column)
            .ok_or_else(|| DecodeError::MissingColumn {
                column: column.to_owned(),
                available: self.columns.join(", "),
            })?;
        T::from_value(value).map_err(|source| DecodeError::InvalidValue {
            column: column.to_owned(),
            source,
        })
    }

    /// Decodes a column by position, starting at 0.
    ///
    /// # Errors
    ///
    /// [`DecodeError::MissingIndex`] when there is no such column,
    /// [`DecodeError::InvalidValue`] when its value does not fit `T`.
    pub fn get_index<T: FromValue>(&self, index: usize) -> Result<T, DecodeError> {
        let value = self.values.get(index).ok_or(DecodeError::MissingIndex {
            index,
            count: self.values.len(),
        })?;
        T::from_value(value).map_err(|source| DecodeError::InvalidValue {
            column: self
                .columns
                .get(index)
                .cloned()
                .unwrap_or_else(|| format!("#{index}")),
            source,
        })
    }

    /// The column names of the row.
    pub fn columns(&self) -> &'a [String] {
        self.columns
    }

    /// The values of the row, one per column.
    pub fn values(&self) -> &'a [Value] {
        self.values
    }
}

/// The class of a [`DbError`], as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbErrorKind {
    /// The SQL did not parse, or is not a single statement.
    Syntax,
    /// The statement reaches a table the module does not own, writes a
    /// dependency's table, or is of a kind modules may not run.
    Forbidden,
    /// DDL (CREATE/ALTER/DROP) outside a migration.
    DdlOutsideMigration,
    /// A UNIQUE, NOT NULL, CHECK or FOREIGN KEY constraint was violated.
    Constraint,
    /// Any other database error.
    Other,
}

impl DbErrorKind {
    /// The kind's name in the module API: `syntax`, `forbidden`,
    /// `ddl-outside-migration`, `constraint` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbErrorKind::Syntax => "syntax",
            DbErrorKind::Forbidden => "forbidden",
            DbErrorKind::DdlOutsideMigration => "ddl-outside-migration",
            DbErrorKind::Constraint => "constraint",
            DbErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for DbErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host refused or failed a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} database error: {message}")]
pub struct DbError {
    /// The class of the error.
    pub kind: DbErrorKind,
    /// The host's message, naming the table and the rule.
    pub message: String,
}

impl DbError {
    /// Whether a constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY) was
    /// violated: usually the caller's fault, worth a 409 or 422.
    pub fn is_constraint(&self) -> bool {
        self.kind == DbErrorKind::Constraint
    }
}

/// What a statement that changes data did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// How many rows were inserted, updated or deleted.
    pub rows_affected: u64,
    /// The rowid of the last inserted row, when the statement inserted.
    pub last_insert_id: Option<i64>,
}

/// Why [`query_one`], [`query_optional`] or [`query_as`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The host refused or failed the statement.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A row did not decode.
    #[error("decoding a result row: {0}")]
    Decode(#[from] DecodeError),
    /// [`query_one`] found no row.
    #[error("the query returned no rows")]
    NoRows,
}

/// Runs a statement that returns rows (SELECT, or a write with RETURNING).
///
/// # Errors
///
/// [`DbError`] when the host refuses the statement (syntax, a table the
/// module may not reach, DDL) or the database fails it.
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, DbError> {
    runtime::db_query(sql, params)
}

/// Runs a statement that changes data (INSERT, UPDATE, DELETE).
///
/// # Errors
///
/// [`DbError`] when the host refuses the statement or the database fails
/// it; a violated constraint has kind [`DbErrorKind::Constraint`].
pub fn execute(sql: &str, params: &[Value]) -> Result<Changes, DbError> {
    runtime::db_execute(sql, params)
}

/// Runs a query and decodes every row.
///
/// # Errors
///
/// [`QueryError::Db`] from the host, [`QueryError::Decode`] when a row does
/// not fit `T`.
pub fn query_as<T: FromRow>(sql: &str, params: &[Value]) -> Result<Vec<T>, QueryError> {
    Ok(query(sql, params)?.decode()?)
}

/// Runs a query and decodes its first row; further rows are ignored.
///
/// # Errors
///
/// [`QueryError::NoRows`] when there is no row, [`QueryError::Db`] from the
/// host, [`QueryError::Decode`] when the row does not fit `T`.
pub fn query_one<T: FromRow>(sql: &str, params: &[Value]) -> Result<T, QueryError> {
    query_optional(sql, params)?.ok_or(QueryError::NoRows)
}

/// Runs a query and decodes its first row, if there is one; further rows are
/// ignored.
///
/// # Errors
///
/// [`QueryError::Db`] from the host, [`QueryError::Decode`] when the row
/// does not fit `T`.
pub fn query_optional<T: FromRow>(sql: &str, params: &[Value]) -> Result<Option<T>, QueryError> {
    let rows = query(sql, params)?;
    match rows.first() {
        Some(row) => Ok(Some(T::from_row(&row)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_rows() -> Rows {
        Rows::new(
            vec![
                "number".into(),
                "Name".into(),
                "active".into(),
                "score".into(),
                "notes".into(),
            ],
            vec![
                vec![
                    Value::Text("M-1".into()),
                    Value::Text("Ada".into()),
                    Value::Integer(1),
                    Value::Integer(7),
                    Value::Null,
                ],
                vec![
                    Value::Text("M-2".into()),
                    Value::Text("Grace".into()),
                    Value::Integer(0),
                    Value::Real(2.5),
                    Value::Text("chair".into()),
                ],
            ],
        )
    }

    #[derive(Debug, PartialEq)]
    struct Member {
        number: String,
        name: String,
        active: bool,
        score: f64,
        notes: Option<String>,
    }

    impl FromRow for Member {
        fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
            Ok(Self {
                number: row.get("number")?,
                name: row.get("name")?,
                active: row.get("active")?,
                score: row.get("score")?,
                notes: row.get("notes")?,
            })
        }
    }

    #[test]
    fn rust_values_convert_into_sql_values() {
        assert_eq!(Value::from(7_i64), Value::Integer(7));
        assert_eq!(Value::from(-3_i32), Value::Integer(-3));
        assert_eq!(
            Value::from(4_000_000_000_u32),
            Value::Integer(4_000_000_000)
        );
        assert_eq!(Value::from(1.5_f64), Value::Real(1.5));
        assert_eq!(Value::from(true), Value::Integer(1));
        assert_eq!(Value::from(false), Value::Integer(0));
        assert_eq!(Value::from("a"), Value::Text("a".into()));
        assert_eq!(Value::from(String::from("b")), Value::Text("b".into()));
        assert_eq!(Value::from(vec![1_u8, 2]), Value::Blob(vec![1, 2]));
        assert_eq!(Value::from(&[3_u8][..]), Value::Blob(vec![3]));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from(Some("c")), Value::Text("c".into()));
        let borrowed = String::from("d");
        assert_eq!(Value::from(&borrowed), Value::Text("d".into()));
        assert_eq!(Value::from(&Some(5_i64)), Value::Integer(5));
    }

    #[test]
    fn params_macro_builds_a_value_slice() {
        let name = String::from("Ada");
        let params = params![1, &name, None::<String>, true, 2.5, vec![0_u8]];
        assert_eq!(
            params,
            &[
                Value::Integer(1),
                Value::Text("Ada".into()),
                Value::Null,
                Value::Integer(1),
                Value::Real(2.5),
                Value::Blob(vec![0]),
            ]
        );
        assert!(params![].is_empty());
    }

    #[test]
    fn sql_values_decode_into_matching_rust_types() {
        assert_eq!(Value::Integer(9).decode::<i64>(), Ok(9));
        assert_eq!(Value::Integer(9).decode::<i32>(), Ok(9));
        assert_eq!(Value::Integer(9).decode::<f64>(), Ok(9.0));
        assert_eq!(Value::Real(0.5).decode::<f64>(), Ok(0.5));
        assert_eq!(Value::Integer(1).decode::<bool>(), Ok(true));
        assert_eq!(Value::Integer(0).decode::<bool>(), Ok(false));
        assert_eq!(Value::Text("x".into()).decode::<String>(), Ok("x".into()));
        assert_eq!(Value::Blob(vec![1]).decode::<Vec<u8>>(), Ok(vec![1]));
        assert_eq!(Value::Null.decode::<Option<String>>(), Ok(None));
        assert_eq!(Value::Integer(2).decode::<Option<i64>>(), Ok(Some(2)));
    }

    #[test]
    fn decoding_refuses_wrong_types_null_and_out_of_range_integers() {
        assert_eq!(
            Value::Text("1".into()).decode::<i64>(),
            Err(ValueError::WrongType {
                expected: "i64",
                found: "text"
            })
        );
        assert_eq!(
            Value::Null.decode::<String>(),
            Err(ValueError::WrongType {
                expected: "String",
                found: "null"
            })
        );
        assert_eq!(
            Value::Real(1.0).decode::<i64>(),
            Err(ValueError::WrongType {
                expected: "i64",
                found: "real"
            })
        );
        assert_eq!(
            Value::Integer(2).decode::<bool>(),
            Err(ValueError::OutOfRange {
                expected: "bool (0 or 1)",
                value: 2
            })
        );
        assert_eq!(
            Value::Integer(-1).decode::<u32>(),
            Err(ValueError::OutOfRange {
                expected: "u32",
                value: -1
            })
        );
        assert_eq!(
            Value::Integer(i64::from(i32::MAX) + 1).decode::<i32>(),
            Err(ValueError::OutOfRange {
                expected: "i32",
                value: i64::from(i32::MAX) + 1
            })
        );
        assert_eq!(
            Value::Text("x".into()).decode::<Option<i64>>(),
            Err(ValueError::WrongType {
                expected: "i64",
                found: "text"
            })
        );
    }

    #[test]
    fn rows_decode_into_structs_by_column_name() {
        let members: Vec<Member> = member_rows().decode().expect("rows fit Member");
        assert_eq!(
            members,
            vec![
                Member {
                    number: "M-1".into(),
                    name: "Ada".into(),
                    active: true,
                    score: 7.0,
                    notes: None,
                },
                Member {
                    number: "M-2".into(),
                    name: "Grace".into(),
                    active: false,
                    score: 2.5,
                    notes: Some("chair".into()),
                },
            ]
        );
    }

    #[test]
    fn row_get_names_the_missing_column_and_the_bad_value() {
        let rows = member_rows();
        let row = rows.first().expect("two rows");
        assert_eq!(
            row.get::<String>("email"),
            Err(DecodeError::MissingColumn {
                column: "email".into(),
                available: "number, Name, active, score, notes".into(),
            })
        );
        let error = row.get::<i64>("name").expect_err("name is text");
        assert_eq!(
            error,
            DecodeError::InvalidValue {
                column: "name".into(),
                source: ValueError::WrongType {
                    expected: "i64",
                    found: "text"
                },
            }
        );
        assert_eq!(error.to_string(), "column `name`: expected i64, found text");
    }

    #[test]
    fn tuples_decode_by_position() {
        let rows = Rows::new(
            vec!["count(*)".into(), "max(x)".into()],
            vec![vec![Value::Integer(3), Value::Null]],
        );
        let row = rows.first().expect("one row");
        assert_eq!(<(i64,)>::from_row(&row), Ok((3,)));
        assert_eq!(<(i64, Option<i64>)>::from_row(&row), Ok((3, None)));
        assert_eq!(
            <(i64, Option<i64>, i64)>::from_row(&row),
            Err(DecodeError::MissingIndex { index: 2, count: 2 })
        );
    }
}
