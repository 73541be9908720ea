//! Test module `sql-console`: runs the SQL it is sent, so host tests can
//! probe the scoped-SQL rules from inside a real module: that it reaches its
//! own `notes` table, can read the `members` table its dependency
//! `membership` exports (as `membership.members`) but not write it, cannot
//! reach any other module's tables, and cannot run DDL outside migrations.
//!
//! `POST /query` and `POST /execute` take `{"sql": "...", "params": [...]}`.
//! Success is `{"columns": [...], "rows": [[...]]}` or
//! `{"rows_affected": N, "last_insert_id": N|null}`; a database error is a
//! 400 with `{"error_kind": "forbidden|syntax|ddl-outside-migration|constraint|other",
//! "message": "..."}`.

use serde::Deserialize;
use serde_json::{Number, json};
use souk_sdk::db::{self, DbError, Value};
use souk_sdk::{Migration, Module, Problem, Request, Response, Router};

/// Runs SQL on request.
struct SqlConsole;

/// Tables in every shape an archive must restore exactly (the
/// `archive-shapes` test module): foreign keys both ways between `parents`
/// and `children` and from `parents` to itself (in name order `children`
/// comes first); virtual and stored generated columns; an untyped column
/// that keeps any value as given; a rowid table without an INTEGER PRIMARY
/// KEY; a `WITHOUT ROWID` table; a `STRICT` table; an AUTOINCREMENT table.
#[cfg(feature = "archive-shapes")]
const SHAPES: Migration = Migration::new(
    "0001_shapes",
    "CREATE TABLE parents (
        id INTEGER PRIMARY KEY,
        name TEXT,
        mentor_id INTEGER REFERENCES parents (id),
        favourite_child_id INTEGER REFERENCES children (id)
    );
    CREATE TABLE children (
        id INTEGER PRIMARY KEY,
        parent_id INTEGER NOT NULL REFERENCES parents (id),
        name TEXT
    );
    CREATE TABLE areas (
        id INTEGER PRIMARY KEY,
        width REAL,
        height REAL,
        area REAL GENERATED ALWAYS AS (width * height) VIRTUAL,
        label TEXT,
        label_length INTEGER GENERATED ALWAYS AS (length(label)) STORED
    );
    CREATE TABLE edge_values (v, note TEXT);
    CREATE TABLE keyed (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
    CREATE TABLE strict_values (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB) STRICT;
    CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT)",
    "UPDATE parents SET mentor_id = NULL, favourite_child_id = NULL;
    DROP TABLE counters;
    DROP TABLE strict_values;
    DROP TABLE keyed;
    DROP TABLE edge_values;
    DROP TABLE areas;
    DROP TABLE children;
    DROP TABLE parents",
);

impl Module for SqlConsole {
    #[cfg(not(feature = "archive-shapes"))]
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_notes",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
            "DROP TABLE notes",
        )]
    }

    #[cfg(feature = "archive-shapes")]
    fn migrations() -> Vec<Migration> {
        vec![SHAPES]
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .post("/query", run_query)
            .post("/execute", run_execute)
            .handle(request)
    }
}

/// The body of both routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

impl Statement {
    /// The parameters as SQL values.
    fn values(&self) -> Result<Vec<Value>, Problem> {
        self.params
            .iter()
            .enumerate()
            .map(|(index, param)| {
                to_sql(param).ok_or_else(|| {
                    Problem::unprocessable(format!(
                        "params[{index}] must be null, a boolean, a number, a string \
                         or an array of bytes (a blob)"
                    ))
                })
            })
            .collect()
    }
}

/// `POST /query`.
fn run_query(request: &Request) -> Result<Response, Problem> {
    let statement = request.json::<Statement>()?;
    let params = statement.values()?;
    Ok(match db::query(&statement.sql, &params) {
        Ok(rows) => {
            let (columns, rows) = rows.into_parts();
            let rows: Vec<Vec<serde_json::Value>> = rows
                .into_iter()
                .map(|row| row.into_iter().map(to_json).collect())
                .collect();
            Response::json(200, &json!({ "columns": columns, "rows": rows }))
        }
        Err(error) => db_error_response(&error),
    })
}

/// `POST /execute`.
fn run_execute(request: &Request) -> Result<Response, Problem> {
    let statement = request.json::<Statement>()?;
    let params = statement.values()?;
    Ok(match db::execute(&statement.sql, &params) {
        Ok(changes) => Response::json(
            200,
            &json!({
                "rows_affected": changes.rows_affected,
                "last_insert_id": changes.last_insert_id,
            }),
        ),
        Err(error) => db_error_response(&error),
    })
}

/// 400 with the error kind as the host reported it.
fn db_error_response(error: &DbError) -> Response {
    Response::json(
        400,
        &json!({ "error_kind": error.kind.as_str(), "message": error.message }),
    )
}

/// A JSON parameter as a SQL value; `None` for objects and for arrays that
/// are not all bytes.
fn to_sql(param: &serde_json::Value) -> Option<Value> {
    match param {
        serde_json::Value::Null => Some(Value::Null),
        serde_json::Value::Bool(flag) => Some(Value::from(*flag)),
        serde_json::Value::Number(number) => number
            .as_i64()
            .map(Value::Integer)
            .or_else(|| number.as_f64().map(Value::Real)),
        serde_json::Value::String(text) => Some(Value::Text(text.clone())),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_u64().and_then(|byte| u8::try_from(byte).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(Value::Blob),
        serde_json::Value::Object(_) => None,
    }
}

/// A SQL value as JSON; a blob is an array of bytes.
fn to_json(value: Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(integer) => integer.into(),
        Value::Real(real) => Number::from_f64(real).map_or(serde_json::Value::Null, Into::into),
        Value::Text(text) => text.into(),
        Value::Blob(bytes) => bytes.into(),
    }
}

souk_sdk::export_module!(SqlConsole);
