//! Module data archives: everything a module stored for a tenant, exported
//! to a JSON file before an uninstall drops it, and restorable by
//! reinstalling the same version from the archive.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use souk_module_registry::TableName;
use sqlx::{Column, Row, Sqlite, Transaction};

use crate::control_plane::{ControlPlane, now};
use crate::db::{SqlValue, decode_row, map_error};
use crate::secrets::write_private_file;
use crate::souk::SoukError;
use crate::tenancy::Tenant;

/// The archive format identifier.
pub const FORMAT: &str = "souk-archive/1";

/// The archived content of one module for one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleArchive {
    /// Always [`FORMAT`].
    pub format: String,
    /// Tenant slug.
    pub tenant: String,
    /// Module slug.
    pub module: String,
    /// Module version whose schema the data has.
    pub version: String,
    /// Migration ids applied when archived, in order.
    pub migrations: Vec<String>,
    /// When it was written.
    pub created_at: String,
    /// One entry per table, by the module's own (unprefixed) table name.
    pub tables: Vec<ArchivedTable>,
    /// Units held of each count limit (`max_cards`) when archived, restored
    /// with the rows that hold them. Absent in archives written before
    /// entitlements existed.
    #[serde(default)]
    pub usage: std::collections::BTreeMap<String, u64>,
}

/// One table's rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedTable {
    /// The module's name for the table.
    pub name: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<ArchivedValue>>,
}

/// A value in an archive (tagged, so integers, reals, text and blobs
/// round-trip exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchivedValue {
    /// NULL.
    Null,
    /// Integer.
    Integer(i64),
    /// Real.
    Real(f64),
    /// Text.
    Text(String),
    /// Blob, base64.
    Blob(String),
}

impl From<SqlValue> for ArchivedValue {
    fn from(v: SqlValue) -> Self {
        use base64::Engine as _;
        match v {
            SqlValue::Null => ArchivedValue::Null,
            SqlValue::Integer(i) => ArchivedValue::Integer(i),
            SqlValue::Real(r) => ArchivedValue::Real(r),
            SqlValue::Text(t) => ArchivedValue::Text(t),
            SqlValue::Blob(b) => {
                ArchivedValue::Blob(base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
    }
}

impl ArchivedValue {
    fn into_sql(self) -> Result<SqlValue, SoukError> {
        use base64::Engine as _;
        Ok(match self {
            ArchivedValue::Null => SqlValue::Null,
            ArchivedValue::Integer(i) => SqlValue::Integer(i),
            ArchivedValue::Real(r) => SqlValue::Real(r),
            ArchivedValue::Text(t) => SqlValue::Text(t),
            ArchivedValue::Blob(b) => SqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| SoukError::Invalid(format!("archive blob is not base64: {e}")))?,
            ),
        })
    }
}

/// A stored archive, as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ArchiveInfo {
    /// Archive id (pass it to a reinstall to restore).
    pub id: String,
    /// Module slug.
    pub module_slug: String,
    /// Module version.
    pub version: String,
    /// File path.
    pub path: String,
    /// When it was written.
    pub created_at: String,
}

/// The physical tables of the module with `prefix` in a tenant database.
pub async fn module_tables(
    tx: &mut Transaction<'static, Sqlite>,
    prefix: &str,
) -> Result<Vec<String>, SoukError> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ? ORDER BY name",
    )
    .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
    .bind(prefix)
    .fetch_all(&mut **tx)
    .await?;
    Ok(names.into_iter().map(|(n,)| n).collect())
}

/// Quotes an identifier for SQLite.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Exports every table of the module with `prefix`, inside `tx`, writes the
/// archive file under `dir` and records it.
///
/// # Errors
/// Database or I/O errors.
#[allow(clippy::too_many_arguments)]
pub async fn export(
    control: &ControlPlane,
    dir: &Path,
    tx: &mut Transaction<'static, Sqlite>,
    tenant: &Tenant,
    module: &str,
    version: &str,
    prefix: &str,
    migrations: Vec<String>,
) -> Result<ArchiveInfo, SoukError> {
    let mut tables = Vec::new();
    for physical in module_tables(tx, prefix).await? {
        let rows = sqlx::query(&format!("SELECT * FROM {}", quote(&physical)))
            .fetch_all(&mut **tx)
            .await?;
        let columns = match rows.first() {
            Some(row) => row.columns().iter().map(|c| c.name().to_owned()).collect(),
            None => table_columns(tx, &physical).await?,
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let values =
                decode_row(row).map_err(|e| SoukError::Internal(anyhow::anyhow!("{e}")))?;
            out.push(values.into_iter().map(ArchivedValue::from).collect());
        }
        tables.push(ArchivedTable {
            name: physical[prefix.len()..].to_owned(),
            columns,
            rows: out,
        });
    }
    let usage = crate::entitlements::usage_db::counters(tx, module).await?;
    let created_at = now();
    let archive = ModuleArchive {
        format: FORMAT.into(),
        tenant: tenant.slug.clone(),
        module: module.to_owned(),
        version: version.to_owned(),
        migrations,
        created_at: created_at.clone(),
        tables,
        usage,
    };
    let id = format!("arc_{}", hex::encode(rand::random::<[u8; 8]>()));
    let path: PathBuf = dir
        .join(&tenant.id)
        .join(format!("{module}-{version}-{id}.json"));
    let json = serde_json::to_vec_pretty(&archive).map_err(|e| SoukError::Internal(e.into()))?;
    write_private_file(&path, &json).map_err(|e| SoukError::Internal(e.into()))?;
    let info = ArchiveInfo {
        id,
        module_slug: module.to_owned(),
        version: version.to_owned(),
        path: path.to_string_lossy().into_owned(),
        created_at,
    };
    sqlx::query("INSERT INTO archives (id, tenant_id, module_slug, version, path, created_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&info.id)
        .bind(&tenant.id)
        .bind(&info.module_slug)
        .bind(&info.version)
        .bind(&info.path)
        .bind(&info.created_at)
        .execute(control.pool())
        .await?;
    Ok(info)
}

async fn table_columns(
    tx: &mut Transaction<'static, Sqlite>,
    physical: &str,
) -> Result<Vec<String>, SoukError> {
    let rows = sqlx::query("SELECT name FROM pragma_table_info(?) ORDER BY cid")
        .bind(physical)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(SoukError::from))
        .collect()
}

/// Loads an archive recorded for `tenant`.
///
/// # Errors
/// [`SoukError::NotFound`] when the tenant has no such archive;
/// [`SoukError::Invalid`] when the file does not parse.
pub async fn load(
    control: &ControlPlane,
    tenant: &Tenant,
    id: &str,
) -> Result<ModuleArchive, SoukError> {
    let info: Option<ArchiveInfo> = sqlx::query_as(
        "SELECT id, module_slug, version, path, created_at FROM archives WHERE id = ? AND tenant_id = ?",
    )
    .bind(id)
    .bind(&tenant.id)
    .fetch_optional(control.pool())
    .await?;
    let info = info.ok_or_else(|| {
        SoukError::NotFound(format!("tenant {} has no archive {id:?}", tenant.slug))
    })?;
    let bytes = std::fs::read(&info.path)
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("archive {}: {e}", info.path)))?;
    let archive: ModuleArchive = serde_json::from_slice(&bytes)
        .map_err(|e| SoukError::Invalid(format!("archive {id} is not readable: {e}")))?;
    if archive.format != FORMAT {
        return Err(SoukError::Invalid(format!(
            "archive {id} has unknown format {:?}",
            archive.format
        )));
    }
    Ok(archive)
}

/// Lists a tenant's archives, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(control: &ControlPlane, tenant: &Tenant) -> Result<Vec<ArchiveInfo>, SoukError> {
    Ok(sqlx::query_as(
        "SELECT id, module_slug, version, path, created_at FROM archives WHERE tenant_id = ? ORDER BY created_at DESC, id",
    )
    .bind(&tenant.id)
    .fetch_all(control.pool())
    .await?)
}

/// Inserts an archive's rows into freshly migrated tables, inside `tx`.
///
/// # Errors
/// [`SoukError::Invalid`] when a table or column in the archive does not fit
/// the schema; nothing is kept because the caller rolls `tx` back.
pub async fn restore(
    tx: &mut Transaction<'static, Sqlite>,
    prefix: &str,
    archive: ModuleArchive,
) -> Result<u64, SoukError> {
    let mut restored = 0;
    crate::entitlements::usage_db::set_counters(tx, &archive.module, &archive.usage).await?;
    for table in archive.tables {
        let name = TableName::parse(&table.name)
            .map_err(|e| SoukError::Invalid(format!("archive table {:?} {e}", table.name)))?;
        let physical = format!("{prefix}{name}");
        if table.columns.is_empty() {
            continue;
        }
        let columns: Vec<String> = table.columns.iter().map(|c| quote(c)).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(&physical),
            columns.join(", "),
            placeholders.join(", ")
        );
        for row in table.rows {
            if row.len() != columns.len() {
                return Err(SoukError::Invalid(format!(
                    "archive table {name} has a row with {} values for {} columns",
                    row.len(),
                    columns.len()
                )));
            }
            let values = row
                .into_iter()
                .map(ArchivedValue::into_sql)
                .collect::<Result<Vec<_>, _>>()?;
            sqlx::query_with(&sql, crate::db::bind(values))
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    SoukError::Invalid(format!("restoring table {name}: {}", map_error(e)))
                })?;
            restored += 1;
        }
    }
    Ok(restored)
}
