//! Cursor pagination: every list answers `{"items", "next"}`; `next` is an
//! opaque cursor to pass as `after`, `null` on the last page. A cursor is
//! the sort key of the last item given, so rows added while a client pages
//! never make an item appear twice.

use souk_sdk::{Problem, Request};

/// The default and the largest page size.
pub const DEFAULT_LIMIT: i64 = 25;
/// The largest page size.
pub const MAX_LIMIT: i64 = 100;

/// `limit` from the query: 1..=100, default 25.
///
/// # Errors
///
/// 400 for anything else.
pub fn limit(request: &Request) -> Result<i64, Problem> {
    match request.query("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(Problem::bad_request(
                "`limit` must be a number from 1 to 100",
            )),
        },
    }
}

/// The `after` cursor: a list of integers joined by `.`, exactly `parts`
/// of them; `None` without one.
///
/// # Errors
///
/// 400 for a cursor this module did not make.
pub fn after(request: &Request, parts: usize) -> Result<Option<Vec<i64>>, Problem> {
    let Some(text) = request.query("after") else {
        return Ok(None);
    };
    let values: Result<Vec<i64>, _> = text.split('.').map(str::parse::<i64>).collect();
    match values {
        Ok(values) if values.len() == parts => Ok(Some(values)),
        _ => Err(Problem::bad_request(
            "`after` is not a cursor this list gave",
        )),
    }
}

/// The cursor of a sort key.
pub fn cursor(key: &[i64]) -> String {
    key.iter().map(i64::to_string).collect::<Vec<_>>().join(".")
}

#[cfg_attr(not(feature = "premium"), allow(dead_code))]
/// Rows of `sql` as JSON objects keyed by column name; the columns named
/// in `booleans` (SQLite's 0 and 1) become `false` and `true`.
///
/// # Errors
///
/// Database errors.
pub fn objects(
    sql: &str,
    params: &[souk_sdk::db::Value],
    booleans: &[&str],
) -> Result<Vec<serde_json::Value>, Problem> {
    use souk_sdk::db::Value;
    let rows = souk_sdk::db::query(sql, params)?;
    Ok(rows
        .iter()
        .map(|row| {
            let object = row
                .columns()
                .iter()
                .zip(row.values())
                .map(|(column, value)| {
                    let json = match value {
                        Value::Integer(n) if booleans.contains(&column.as_str()) => {
                            serde_json::Value::Bool(*n != 0)
                        }
                        Value::Null => serde_json::Value::Null,
                        Value::Integer(n) => serde_json::Value::from(*n),
                        Value::Real(x) => serde_json::Value::from(*x),
                        Value::Text(text) => serde_json::Value::from(text.as_str()),
                        Value::Blob(_) => serde_json::Value::Null,
                    };
                    (column.clone(), json)
                })
                .collect();
            serde_json::Value::Object(object)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Request {
        Request::new("GET", "/x", query, vec![], vec![])
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(limit(&request("")).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(&request("limit=100")).unwrap(), 100);
        assert!(limit(&request("limit=0")).is_err());
        assert!(limit(&request("limit=101")).is_err());
        assert!(limit(&request("limit=x")).is_err());
        assert_eq!(after(&request("after=1.42"), 2).unwrap(), Some(vec![1, 42]));
        assert!(after(&request("after=1.42"), 1).is_err());
        assert!(after(&request("after=a.b"), 2).is_err());
        assert_eq!(after(&request(""), 2).unwrap(), None);
        assert_eq!(cursor(&[0, 7]), "0.7");
    }
}
