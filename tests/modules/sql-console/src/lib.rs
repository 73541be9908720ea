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
//!
//! `POST /batch` runs several statements in one call (so, in the host's one
//! transaction for the call) and can then fail the call on purpose, so tests
//! can check that nothing a module sends escapes that transaction: a
//! `COMMIT` that got through would keep writes the host rolls back.

use serde::Deserialize;
use serde_json::{Number, json};
use souk_sdk::db::{self, Changes, DbError, Rows, Value};
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
            .post("/batch", run_batch)
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
        sql_values(&self.params, "params")
    }
}

/// JSON parameters as SQL values; `field` names them in the 422 problem.
fn sql_values(params: &[serde_json::Value], field: &str) -> Result<Vec<Value>, Problem> {
    params
        .iter()
        .enumerate()
        .map(|(index, param)| {
            to_sql(param).ok_or_else(|| {
                Problem::unprocessable(format!(
                    "{field}[{index}] must be null, a boolean, a number, a string \
                     or an array of bytes (a blob)"
                ))
            })
        })
        .collect()
}

/// `POST /query`.
fn run_query(request: &Request) -> Result<Response, Problem> {
    let statement = request.json::<Statement>()?;
    let params = statement.values()?;
    Ok(match db::query(&statement.sql, &params) {
        Ok(rows) => Response::json(200, &rows_json(rows)),
        Err(error) => db_error_response(&error),
    })
}

/// `POST /execute`.
fn run_execute(request: &Request) -> Result<Response, Problem> {
    let statement = request.json::<Statement>()?;
    let params = statement.values()?;
    Ok(match db::execute(&statement.sql, &params) {
        Ok(changes) => Response::json(200, &changes_json(&changes)),
        Err(error) => db_error_response(&error),
    })
}

/// The body of `POST /batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    statements: Vec<BatchStatement>,
    /// Answer 500 after running every statement, so the host rolls the
    /// call's transaction back.
    #[serde(default)]
    fail: bool,
}

/// One statement of a batch: run with `db::query` when `query` is true,
/// with `db::execute` otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchStatement {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
    #[serde(default)]
    query: bool,
}

/// `POST /batch`: runs every statement in order, whatever the earlier ones
/// answered, and reports each outcome as `/query` or `/execute` would (a
/// database error as `{"error_kind", "message"}`). 200 with `{"results":
/// [...]}`, or 500 with the same body when `fail` is set.
fn run_batch(request: &Request) -> Result<Response, Problem> {
    let batch = request.json::<Batch>()?;
    let mut results = Vec::with_capacity(batch.statements.len());
    for (index, item) in batch.statements.iter().enumerate() {
        let params = sql_values(&item.params, &format!("statements[{index}].params"))?;
        let result = if item.query {
            db::query(&item.sql, &params).map(rows_json)
        } else {
            db::execute(&item.sql, &params).map(|changes| changes_json(&changes))
        };
        results.push(result.unwrap_or_else(|error| db_error_json(&error)));
    }
    let status = if batch.fail { 500 } else { 200 };
    Ok(Response::json(status, &json!({ "results": results })))
}

/// A query's answer: `{"columns": [...], "rows": [[...]]}`.
fn rows_json(rows: Rows) -> serde_json::Value {
    let (columns, rows) = rows.into_parts();
    let rows: Vec<Vec<serde_json::Value>> = rows
        .into_iter()
        .map(|row| row.into_iter().map(to_json).collect())
        .collect();
    json!({ "columns": columns, "rows": rows })
}

/// A statement's answer: `{"rows_affected": N, "last_insert_id": N|null}`.
fn changes_json(changes: &Changes) -> serde_json::Value {
    json!({
        "rows_affected": changes.rows_affected,
        "last_insert_id": changes.last_insert_id,
    })
}

/// 400 with the error kind as the host reported it.
fn db_error_response(error: &DbError) -> Response {
    Response::json(400, &db_error_json(error))
}

/// A database error as the routes report it.
fn db_error_json(error: &DbError) -> serde_json::Value {
    json!({ "error_kind": error.kind.as_str(), "message": error.message })
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
