//! Format `souk-archive/1`: one JSON document per archive, written by hosts
//! before `souk-archive/2`. Read only, so archives taken before an upgrade
//! of the host can still be restored; what it lost when it was written
//! (±Inf and NaN as `null`, text that was not UTF-8) it cannot give back.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use super::value::StoredValue;

/// The format identifier.
pub const FORMAT: &str = "souk-archive/1";

/// A whole `souk-archive/1` document.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    /// Always [`FORMAT`].
    pub format: String,
    /// Tenant slug.
    pub tenant: String,
    /// Module slug.
    pub module: String,
    /// Module version whose schema the data has.
    pub version: String,
    /// Migration ids applied when archived.
    pub migrations: Vec<String>,
    /// When it was written.
    pub created_at: String,
    /// One entry per table.
    pub tables: Vec<Table>,
    /// Units held of each count limit; absent in the oldest archives.
    #[serde(default)]
    pub usage: BTreeMap<String, u64>,
}

/// One table's rows. Its columns are every column `SELECT *` returned,
/// generated ones included.
#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    /// The module's name for the table.
    pub name: String,
    /// Column names, in the order of each row's values.
    pub columns: Vec<String>,
    /// One entry per row, its values in `columns` order.
    pub rows: Vec<Vec<Value>>,
}

/// A value as `souk-archive/1` wrote it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// NULL.
    Null,
    /// Integer.
    Integer(i64),
    /// Real (a JSON number; ±Inf and NaN were written as `null`).
    Real(Option<f64>),
    /// Text.
    Text(String),
    /// Blob, base64.
    Blob(String),
}

impl Value {
    /// The stored value this stands for.
    ///
    /// # Errors
    /// A blob that is not base64.
    pub fn into_stored(self) -> Result<StoredValue, String> {
        Ok(match self {
            Value::Null | Value::Real(None) => StoredValue::Null,
            Value::Integer(v) => StoredValue::Integer(v),
            Value::Real(Some(v)) => StoredValue::real(v),
            Value::Text(t) => StoredValue::Text(t.into_bytes()),
            Value::Blob(b) => StoredValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("a blob is not base64: {e}"))?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_one_document_parses_as_the_old_host_wrote_it() {
        let text = r#"{
  "format": "souk-archive/1",
  "tenant": "acme",
  "module": "notes",
  "version": "2.0.0",
  "migrations": ["0001_notes", "0002_tags"],
  "created_at": "2026-01-01T00:00:00Z",
  "tables": [
    {"name": "note_tags", "columns": ["note_id", "tag"], "rows": [[{"integer": 1}, {"text": "x"}]]},
    {"name": "notes", "columns": ["id", "body"],
     "rows": [[{"integer": 1}, {"real": 1.5}], [{"integer": 2}, {"real": null}],
              [{"integer": 3}, {"blob": "AAE="}], [{"integer": 4}, "null"]]}
  ]
}"#;
        let doc: Document = serde_json::from_str(text).expect("parses");
        assert_eq!(doc.format, FORMAT);
        assert!(doc.usage.is_empty());
        let values: Vec<StoredValue> = doc.tables[1]
            .rows
            .iter()
            .map(|r| r[1].clone().into_stored().unwrap())
            .collect();
        assert_eq!(
            values,
            vec![
                StoredValue::real(1.5),
                StoredValue::Null,
                StoredValue::Blob(vec![0, 1]),
                StoredValue::Null,
            ]
        );
    }
}
