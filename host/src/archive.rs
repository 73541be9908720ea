//! Module data archives: everything a module stored for a tenant, written to
//! a file before an uninstall drops it, and restored by reinstalling the same
//! version from the archive.
//!
//! An archive keeps every value exactly as SQLite stored it (integers; each
//! double as its bit pattern, ±Inf, -0.0 and subnormals included; text as
//! its bytes, UTF-8 or not; blobs), and restoring gives back the same values,
//! rowids and AUTOINCREMENT counters. The format, `souk-archive/2`, is JSON
//! Lines (see `lines` and `docs/archives.md`): written and read a row at a
//! time, so the host's memory does not grow with the archive, and checked
//! with a sha256 per table and one over the whole archive. Files are named by
//! archive id. Archives in the older `souk-archive/1` (one JSON document)
//! are still read.
//!
//! Restoring runs in the install's transaction with foreign keys deferred
//! (`PRAGMA defer_foreign_keys`) and checked table by table at the end
//! (`pragma_foreign_key_check`), rather than inserting tables in a
//! dependency order: references may go both ways between two tables, or
//! from a table to itself, where no order of tables (or even of rows) works.

pub mod files;
mod legacy;
mod lines;
mod schema;
mod value;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use souk_module_registry::TableName;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row, Sqlite, SqliteConnection, Transaction, TypeInfo, ValueRef};

use crate::capabilities::db;
use crate::clock::rfc3339;
use crate::control_plane::ControlPlane;
use crate::control_plane::archives::{self as records, ArchiveRecord};
use crate::error::SoukError;
use crate::tenancy::Tenant;

pub use lines::Header;
use lines::{
    ArchiveDigest, ArchiveEnd, ArchiveReader, Event, LineReader, LineWriter, Marker, TableDigest,
    TableEnd, TableStart,
};
pub use value::StoredValue;

/// The format archives are written in.
pub const FORMAT: &str = lines::FORMAT;

/// The older format, still read.
pub const FORMAT_V1: &str = legacy::FORMAT;

/// Why an archive could not be written, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The control plane records the archive but its file is gone.
    #[error("archive {archive} is recorded but its file is missing on the server")]
    Missing {
        /// Archive id.
        archive: String,
    },
    /// The file is in a format this host does not read.
    #[error(
        "archive {archive} has format {format:?}, which this host does not read \
         (it reads {FORMAT_V1} and {FORMAT})"
    )]
    UnknownFormat {
        /// Archive id.
        archive: String,
        /// The format the file names.
        format: String,
    },
    /// The file does not parse, or its structure is broken (cut off, a row
    /// outside a table, a row of the wrong length, ...).
    #[error("archive {archive} is damaged: {reason}; nothing was restored")]
    Damaged {
        /// Archive id.
        archive: String,
        /// Where and what.
        reason: String,
    },
    /// A table's rows do not match the checksum written with them.
    #[error(
        "archive {archive}: table {table} does not match its checksum (the file was changed \
         or damaged); nothing was restored"
    )]
    TableChecksum {
        /// Archive id.
        archive: String,
        /// The module's name for the table.
        table: String,
    },
    /// The header or the list of tables does not match the archive's
    /// checksum.
    #[error(
        "archive {archive}: its header or its list of tables does not match the archive \
         checksum (the file was changed or damaged); nothing was restored"
    )]
    ArchiveChecksum {
        /// Archive id.
        archive: String,
    },
    /// A table of the archive does not fit the freshly migrated schema.
    #[error(
        "archive {archive}: table {table} does not fit the installed schema: {reason}; \
         nothing was restored"
    )]
    Schema {
        /// Archive id.
        archive: String,
        /// The module's name for the table.
        table: String,
        /// What does not fit.
        reason: String,
    },
    /// A row could not be inserted.
    #[error("archive {archive}: table {table}, row {row}: {reason}; nothing was restored")]
    Row {
        /// Archive id.
        archive: String,
        /// The module's name for the table.
        table: String,
        /// The row's position in the table (1-based).
        row: u64,
        /// Why it was refused: a wrong number of values, a NaN real, or
        /// SQLite's error on insert.
        reason: String,
    },
    /// After every row was in, a table holds a reference to a missing row.
    #[error(
        "archive {archive}: table {table} refers to rows of {parent} that the archive does \
         not hold; nothing was restored"
    )]
    ForeignKey {
        /// Archive id.
        archive: String,
        /// The referring table.
        table: String,
        /// The table referred to.
        parent: String,
    },
    /// Reading or writing the file failed.
    #[error("archive file: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding a line failed.
    #[error("archive encoding: {0}")]
    Encode(serde_json::Error),
    /// The tenant or control-plane database failed.
    #[error("archive database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ArchiveError {
    fn damaged(archive: &str, line: u64, reason: impl std::fmt::Display) -> Self {
        ArchiveError::Damaged {
            archive: archive.to_owned(),
            reason: format!("line {line}: {reason}"),
        }
    }

    fn encode(error: serde_json::Error) -> Self {
        ArchiveError::Encode(error)
    }
}

impl From<ArchiveError> for SoukError {
    fn from(error: ArchiveError) -> Self {
        match error {
            ArchiveError::Missing { .. } => SoukError::NotFound(error.to_string()),
            ArchiveError::Io(_) | ArchiveError::Encode(_) | ArchiveError::Database(_) => {
                SoukError::Internal(anyhow::Error::new(error))
            }
            _ => SoukError::Invalid(error.to_string()),
        }
    }
}

/// An archive found and checked, ready to restore. Its rows stay in the file
/// until [`restore`] streams them (archives in the older format are held in
/// memory).
#[derive(Debug, Clone)]
pub struct ModuleArchive {
    /// What the archive says of itself: its format ([`FORMAT`] or
    /// [`FORMAT_V1`]), tenant, module, version, migrations, when it was
    /// written and the usage (`max_cards`) restored with the rows that hold
    /// it.
    pub header: Header,
    id: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// `souk-archive/1`: the tables, read whole.
    Legacy(Vec<legacy::Table>),
    /// `souk-archive/2`: the file, whose header was
    /// [`ModuleArchive::header`] when it was checked.
    Lines { path: PathBuf },
}

impl ModuleArchive {
    /// The archive id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directory beside the archive file holding the bytes of the
    /// files its header lists (`None` for the first format, which has
    /// none).
    pub fn blobs_dir(&self) -> Option<PathBuf> {
        match &self.body {
            Body::Lines { path } => Some(files::blobs_dir(path)),
            Body::Legacy(_) => None,
        }
    }
}

/// A stored archive, as listed and as an uninstall reports it: no server
/// path ever leaves the host.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveInfo {
    /// Archive id (pass it to a reinstall to restore).
    pub id: String,
    /// Module slug.
    pub module_slug: String,
    /// The module version that wrote the data (whose schema it has).
    pub version: String,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// Size of the file in bytes; `None` when the file is gone.
    pub size_bytes: Option<u64>,
    /// Where the file is on the server, for the operator's CLI; never
    /// serialized.
    #[serde(skip)]
    pub path: String,
}

/// What the archive list shows of `record`: the size of its file (`None`
/// when the file is gone), never its path.
async fn info(record: ArchiveRecord) -> ArchiveInfo {
    let size_bytes = tokio::fs::metadata(&record.path)
        .await
        .ok()
        .map(|m| m.len());
    ArchiveInfo {
        id: record.id,
        module_slug: record.module_slug,
        version: record.version,
        created_at: record.created_at,
        size_bytes,
        path: record.path,
    }
}

/// The physical tables of the module with `prefix` in a tenant database.
///
/// # Errors
/// Database errors.
pub async fn module_tables(
    tx: &mut Transaction<'static, Sqlite>,
    prefix: &str,
) -> Result<Vec<String>, SoukError> {
    Ok(tables_with_prefix(tx, prefix).await?)
}

async fn tables_with_prefix(
    conn: &mut SqliteConnection,
    prefix: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ? ORDER BY name",
    )
    .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
    .bind(prefix)
    .fetch_all(conn)
    .await
}

/// Quotes an identifier for SQLite.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Exports every table of the module with `prefix`, inside `tx`, to a new
/// archive file under `dir/<tenant id>/<archive id>.jsonl`, and records it
/// as written at `at` (the host clock's instant).
/// Rows are streamed from SQLite to the file; the file appears under its
/// name only once complete and synced.
///
/// # Errors
/// Database or I/O errors; no file is left behind.
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
    at: time::OffsetDateTime,
) -> Result<ArchiveInfo, SoukError> {
    let usage = crate::entitlements::usage_db::counters(tx, module).await?;
    let header = Header {
        format: FORMAT.to_owned(),
        tenant: tenant.slug.clone(),
        module: module.to_owned(),
        version: version.to_owned(),
        migrations,
        created_at: rfc3339(at),
        usage,
        files: files::list(tx, module).await?,
    };
    let id = format!("arc_{}", hex::encode(rand::random::<[u8; 8]>()));
    let folder = dir.join(&tenant.id);
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(ArchiveError::from)?;
    let path = folder.join(format!("{id}.jsonl"));
    let partial = folder.join(format!(".{id}.jsonl.partial"));
    let written = match write_archive(tx, prefix, &header, &partial).await {
        Ok(()) => tokio::fs::rename(&partial, &path)
            .await
            .map_err(ArchiveError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e.into());
    }
    let record = ArchiveRecord {
        id,
        module_slug: module.to_owned(),
        version: version.to_owned(),
        path: path.to_string_lossy().into_owned(),
        created_at: header.created_at,
    };
    let recorded = async {
        let mut conn = control.pool().acquire().await?;
        records::insert(&mut conn, &tenant.id, &record).await
    }
    .await;
    if let Err(e) = recorded {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    Ok(info(record).await)
}

async fn write_archive(
    tx: &mut Transaction<'static, Sqlite>,
    prefix: &str,
    header: &Header,
    partial: &Path,
) -> Result<(), ArchiveError> {
    use futures_util::TryStreamExt as _;

    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .await?;
    let mut out = LineWriter::new(file);
    out.write(header).await?;
    let mut digest = ArchiveDigest::new(header)?;
    for physical in tables_with_prefix(tx, prefix).await? {
        let shape = schema::shape(tx, &physical).await?;
        let start = TableStart {
            name: physical[prefix.len()..].to_owned(),
            columns: shape.columns.clone(),
            rowid: shape.rowid.map(str::to_owned),
            sequence: schema::sequence(tx, &physical).await?,
        };
        let mut table = TableDigest::new(&start);
        out.write(&Marker::Table(start.clone())).await?;
        let select = select_rows(&physical, &start);
        let mut rows = sqlx::query(&select).fetch(&mut **tx);
        while let Some(row) = rows.try_next().await? {
            let values = read_row(&row)?;
            table.row(&values);
            out.write(&values).await?;
        }
        drop(rows);
        let rows = table.rows();
        let sha256 = table.finish();
        digest.table(&start.name, &sha256);
        out.write(&Marker::End(TableEnd { rows, sha256 })).await?;
    }
    out.write(&Marker::ArchiveEnd(ArchiveEnd {
        tables: digest.tables(),
        sha256: digest.finish(),
    }))
    .await?;
    out.finish().await
}

/// `SELECT [rowid,] columns... FROM table [ORDER BY rowid]`: the values a
/// row line holds, in rowid order so that a restore hands out the same
/// rowids in the same order.
fn select_rows(physical: &str, start: &TableStart) -> String {
    let mut columns: Vec<String> = Vec::with_capacity(start.columns.len() + 1);
    if let Some(alias) = &start.rowid {
        columns.push(alias.clone());
    }
    columns.extend(start.columns.iter().map(|c| quote(c)));
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), quote(physical));
    if let Some(alias) = &start.rowid {
        sql.push_str(" ORDER BY ");
        sql.push_str(alias);
    }
    sql
}

/// Reads a row by the storage class of each value, converting nothing.
fn read_row(row: &SqliteRow) -> Result<Vec<StoredValue>, sqlx::Error> {
    (0..row.len()).map(|i| read_value(row, i)).collect()
}

fn read_value(row: &SqliteRow, index: usize) -> Result<StoredValue, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(StoredValue::Null);
    }
    // The type of a value (not of its column) is its storage class.
    Ok(match raw.type_info().name() {
        "INTEGER" => StoredValue::Integer(row.try_get_unchecked::<i64, _>(index)?),
        "REAL" => StoredValue::real(row.try_get_unchecked::<f64, _>(index)?),
        // The bytes as stored: no UTF-8 check, no conversion.
        "TEXT" => StoredValue::Text(row.try_get_unchecked::<&[u8], _>(index)?.to_vec()),
        "BLOB" => StoredValue::Blob(row.try_get_unchecked::<&[u8], _>(index)?.to_vec()),
        other => {
            return Err(sqlx::Error::Decode(
                format!("value of unknown storage class {other}").into(),
            ));
        }
    })
}

async fn find(
    control: &ControlPlane,
    tenant: &Tenant,
    id: &str,
) -> Result<ArchiveRecord, SoukError> {
    let mut conn = control.pool().acquire().await?;
    records::find(&mut conn, &tenant.id, id)
        .await?
        .ok_or_else(|| SoukError::NotFound(format!("tenant {} has no archive {id:?}", tenant.slug)))
}

/// Loads an archive recorded for `tenant` and checks it whole (every
/// table's checksum and the archive's) before anything is restored; the
/// rows are not kept in memory.
///
/// # Errors
/// [`SoukError::NotFound`] when the tenant has no such archive (or its file
/// is gone); [`SoukError::Invalid`] when the file is damaged, changed or in
/// an unknown format.
pub async fn load(
    control: &ControlPlane,
    tenant: &Tenant,
    id: &str,
) -> Result<ModuleArchive, SoukError> {
    let record = find(control, tenant, id).await?;
    Ok(open(id, Path::new(&record.path)).await?)
}

async fn open(id: &str, path: &Path) -> Result<ModuleArchive, ArchiveError> {
    /// Just the format of the first line (or of a whole older document).
    #[derive(Deserialize)]
    struct Probe {
        format: String,
    }

    let mut lines = match LineReader::open(path).await {
        Ok(lines) => lines,
        Err(ArchiveError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArchiveError::Missing {
                archive: id.to_owned(),
            });
        }
        Err(e) => return Err(e),
    };
    let first = match lines.next(id).await {
        Ok(Some((_, line))) => line.to_vec(),
        Ok(None) => return Err(ArchiveError::damaged(id, 1, "the file is empty")),
        // Not a line: a `souk-archive/1` document need not end in `\n`.
        Err(ArchiveError::Damaged { .. }) => {
            drop(lines);
            return open_legacy(id, path).await;
        }
        Err(e) => return Err(e),
    };
    match serde_json::from_slice::<Probe>(&first) {
        Ok(probe) if probe.format == FORMAT => {
            let mut reader = ArchiveReader::new(id, lines, &first)?;
            while !matches!(reader.next().await?, Event::Finished) {}
            Ok(ModuleArchive {
                header: reader.header().clone(),
                id: id.to_owned(),
                body: Body::Lines {
                    path: path.to_owned(),
                },
            })
        }
        Ok(probe) if probe.format != FORMAT_V1 => Err(ArchiveError::UnknownFormat {
            archive: id.to_owned(),
            format: probe.format,
        }),
        // A `souk-archive/1` document on one line, or pretty-printed over
        // many (its first line is then just `{`).
        _ => {
            drop(lines);
            open_legacy(id, path).await
        }
    }
}

async fn open_legacy(id: &str, path: &Path) -> Result<ModuleArchive, ArchiveError> {
    #[derive(Deserialize)]
    struct Probe {
        format: String,
    }

    let bytes = tokio::fs::read(path).await?;
    let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Damaged {
        archive: id.to_owned(),
        reason: format!("not an archive this host reads: {e}"),
    })?;
    if probe.format != FORMAT_V1 {
        return Err(ArchiveError::UnknownFormat {
            archive: id.to_owned(),
            format: probe.format,
        });
    }
    let doc: legacy::Document =
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Damaged {
            archive: id.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(ModuleArchive {
        header: Header {
            format: doc.format,
            tenant: doc.tenant,
            module: doc.module,
            version: doc.version,
            migrations: doc.migrations,
            created_at: doc.created_at,
            usage: doc.usage,
            files: Vec::new(),
        },
        id: id.to_owned(),
        body: Body::Legacy(doc.tables),
    })
}

/// Lists a tenant's archives, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(control: &ControlPlane, tenant: &Tenant) -> Result<Vec<ArchiveInfo>, SoukError> {
    let mut conn = control.pool().acquire().await?;
    let records = records::list(&mut conn, &tenant.id).await?;
    drop(conn);
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        out.push(info(record).await);
    }
    Ok(out)
}

/// Removes an archive: its file and its record. For an uninstall that wrote
/// its archive and then did not go through.
///
/// # Errors
/// [`SoukError::NotFound`] when the tenant has no such archive; I/O or
/// database errors.
pub async fn discard(control: &ControlPlane, tenant: &Tenant, id: &str) -> Result<(), SoukError> {
    let record = find(control, tenant, id).await?;
    match tokio::fs::remove_file(&record.path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ArchiveError::from(e).into()),
    }
    match tokio::fs::remove_dir_all(files::blobs_dir(Path::new(&record.path))).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ArchiveError::from(e).into()),
    }
    let mut conn = control.pool().acquire().await?;
    records::remove(&mut conn, &tenant.id, id).await?;
    Ok(())
}

/// Restores an archive into freshly migrated tables, inside `tx`: each
/// archived table is emptied (of rows a migration may have seeded) and
/// refilled with exactly the archived rows, rowids and AUTOINCREMENT
/// counters; generated columns are left to SQLite. Foreign keys are
/// deferred and checked at the end. The file is read again, a row at a
/// time, and checked again as it is read. Returns the rows restored.
///
/// # Errors
/// [`SoukError::Invalid`] when the archive is damaged or changed, or does
/// not fit the schema (a table, column or rowid it does not have, a
/// constraint or a foreign key that fails); nothing is kept because the
/// caller rolls `tx` back.
pub async fn restore(
    tx: &mut Transaction<'static, Sqlite>,
    prefix: &str,
    archive: ModuleArchive,
) -> Result<u64, SoukError> {
    Ok(restore_into(tx, prefix, archive).await?)
}

async fn restore_into(
    conn: &mut SqliteConnection,
    prefix: &str,
    archive: ModuleArchive,
) -> Result<u64, ArchiveError> {
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(&mut *conn)
        .await?;
    crate::entitlements::usage_db::set_counters(
        conn,
        &archive.header.module,
        &archive.header.usage,
    )
    .await?;
    files::restore_rows(conn, &archive.header.module, &archive.header.files).await?;
    let mut restorer = Restorer {
        archive: &archive.id,
        prefix,
        existing: tables_with_prefix(conn, prefix)
            .await?
            .into_iter()
            .collect(),
        restored: HashSet::new(),
        rows: 0,
    };
    match &archive.body {
        Body::Legacy(tables) => {
            for table in tables {
                // What an old host wrote for a table it could not describe.
                if table.columns.is_empty() {
                    continue;
                }
                let start = TableStart {
                    name: table.name.clone(),
                    columns: table.columns.clone(),
                    rowid: None,
                    sequence: None,
                };
                let mut loader = restorer.open(conn, &start, Origin::Legacy).await?;
                for row in &table.rows {
                    if row.len() != start.columns.len() {
                        return Err(ArchiveError::Damaged {
                            archive: archive.id.clone(),
                            reason: format!(
                                "table {} has a row with {} values for {} columns",
                                table.name,
                                row.len(),
                                start.columns.len()
                            ),
                        });
                    }
                    let values = row
                        .iter()
                        .map(|v| v.clone().into_stored())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|reason| ArchiveError::Damaged {
                            archive: archive.id.clone(),
                            reason: format!("table {}: {reason}", table.name),
                        })?;
                    loader.insert(conn, values).await?;
                }
                restorer.close(conn, loader).await?;
            }
        }
        Body::Lines { path } => {
            let mut reader = match ArchiveReader::open(&archive.id, path).await {
                Err(ArchiveError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ArchiveError::Missing {
                        archive: archive.id.clone(),
                    });
                }
                other => other?,
            };
            if *reader.header() != archive.header {
                return Err(ArchiveError::damaged(
                    &archive.id,
                    1,
                    "the header changed since the archive was checked",
                ));
            }
            // A table block SQLite or the schema refused is still read to
            // its end, so that a file changed since it was checked is
            // reported as such rather than as whatever its change broke.
            let mut open: Option<Block> = None;
            let mut refused: Option<ArchiveError> = None;
            loop {
                match (reader.next().await?, open.take()) {
                    (Event::Table(start), None) => {
                        open = Some(match restorer.open(conn, &start, Origin::Current).await {
                            Ok(loader) => Block::Loading(loader),
                            Err(e @ (ArchiveError::Io(_) | ArchiveError::Database(_))) => {
                                return Err(e);
                            }
                            Err(e) => {
                                refused = Some(e);
                                Block::Refused
                            }
                        });
                    }
                    (Event::Row(values), Some(Block::Loading(mut loader))) => {
                        open = Some(match loader.insert(conn, values).await {
                            Ok(()) => Block::Loading(loader),
                            Err(e) => {
                                refused = Some(e);
                                Block::Refused
                            }
                        });
                    }
                    (Event::Row(_), Some(Block::Refused)) => open = Some(Block::Refused),
                    (Event::TableEnd, Some(block)) => {
                        if let Some(e) = refused.take() {
                            return Err(e);
                        }
                        if let Block::Loading(loader) = block {
                            restorer.close(conn, loader).await?;
                        }
                    }
                    (Event::Finished, None) => break,
                    // The reader checks the block structure; a mismatch here
                    // is a reader bug, refused all the same.
                    _ => {
                        return Err(ArchiveError::Damaged {
                            archive: archive.id.clone(),
                            reason: "table blocks do not nest".into(),
                        });
                    }
                }
            }
        }
    }
    restorer.check_foreign_keys(conn).await?;
    sqlx::query("PRAGMA defer_foreign_keys = OFF")
        .execute(&mut *conn)
        .await?;
    Ok(restorer.rows)
}

/// The table block a restore is reading.
enum Block {
    /// Its rows go in.
    Loading(TableLoader),
    /// It was refused; its rows are read (and checked) but not inserted.
    Refused,
}

/// Where a table block comes from: the older format archived generated
/// columns (it wrote what `SELECT *` returned); they are skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Legacy,
    Current,
}

/// The state of one restore across its tables.
struct Restorer<'a> {
    archive: &'a str,
    prefix: &'a str,
    /// The module's physical tables after its migrations ran.
    existing: HashSet<String>,
    /// Physical tables restored so far.
    restored: HashSet<String>,
    rows: u64,
}

impl Restorer<'_> {
    fn schema_error(&self, table: &str, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Schema {
            archive: self.archive.to_owned(),
            table: table.to_owned(),
            reason: reason.into(),
        }
    }

    /// Checks a table block against the installed table, empties the
    /// table, and returns the loader for its rows.
    async fn open(
        &mut self,
        conn: &mut SqliteConnection,
        start: &TableStart,
        origin: Origin,
    ) -> Result<TableLoader, ArchiveError> {
        let name = TableName::parse(&start.name)
            .map_err(|e| self.schema_error(&start.name, format!("not a table name: it {e}")))?;
        let physical = format!("{}{name}", self.prefix);
        if !self.existing.contains(&physical) {
            return Err(self.schema_error(name.as_str(), "the installed version has no such table"));
        }
        if !self.restored.insert(physical.clone()) {
            return Err(ArchiveError::Damaged {
                archive: self.archive.to_owned(),
                reason: format!("table {name} appears twice"),
            });
        }
        let shape = schema::shape(conn, &physical).await?;
        let mut columns = Vec::with_capacity(start.columns.len() + 1);
        let mut keep = Vec::with_capacity(start.columns.len() + 1);
        if let Some(alias) = &start.rowid {
            let known = schema::ROWID_ALIASES
                .iter()
                .any(|a| a.eq_ignore_ascii_case(alias));
            if !known || shape.rowid.is_none() || shape.has_column(alias) {
                return Err(self.schema_error(
                    name.as_str(),
                    format!("its rows carry rowids as {alias:?}, which the installed table does not have"),
                ));
            }
            columns.push(alias.clone());
            keep.push(true);
        }
        let mut seen: HashSet<String> = HashSet::new();
        for column in &start.columns {
            if !seen.insert(column.to_ascii_lowercase()) {
                return Err(ArchiveError::Damaged {
                    archive: self.archive.to_owned(),
                    reason: format!("table {name} names column {column:?} twice"),
                });
            }
            if shape.columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                columns.push(quote(column));
                keep.push(true);
            } else if shape
                .generated
                .iter()
                .any(|c| c.eq_ignore_ascii_case(column))
            {
                if origin == Origin::Current {
                    return Err(self.schema_error(
                        name.as_str(),
                        format!("column {column:?} is generated in the installed table"),
                    ));
                }
                keep.push(false);
            } else {
                return Err(self.schema_error(
                    name.as_str(),
                    format!("the installed table has no column {column:?}"),
                ));
            }
        }
        // Rows a migration seeded give way to the archived ones.
        sqlx::query(&format!("DELETE FROM {}", quote(&physical)))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                self.schema_error(
                    name.as_str(),
                    format!(
                        "the rows the migrations put there cannot be removed: {}",
                        db::map_error(e)
                    ),
                )
            })?;
        Ok(TableLoader::new(
            self.archive,
            name.to_string(),
            physical,
            columns,
            keep,
            start.sequence,
        ))
    }

    /// Finishes a table: its AUTOINCREMENT counter, its row count.
    async fn close(
        &mut self,
        conn: &mut SqliteConnection,
        mut loader: TableLoader,
    ) -> Result<(), ArchiveError> {
        loader.flush(conn).await?;
        if let Some(seq) = loader.sequence
            && !schema::set_sequence(conn, &loader.physical, seq).await?
        {
            return Err(self.schema_error(
                &loader.name,
                "the archive holds an AUTOINCREMENT counter but the installed table does not use AUTOINCREMENT",
            ));
        }
        self.rows += loader.rows;
        Ok(())
    }

    /// Checks every foreign key of the module's tables now that all rows
    /// are in (they were deferred).
    async fn check_foreign_keys(&self, conn: &mut SqliteConnection) -> Result<(), ArchiveError> {
        let mut tables: Vec<&String> = self.existing.iter().collect();
        tables.sort();
        for physical in tables {
            if let Some(parent) = schema::foreign_key_violation(conn, physical).await? {
                let module_name = |t: &str| t.strip_prefix(self.prefix).unwrap_or(t).to_owned();
                return Err(ArchiveError::ForeignKey {
                    archive: self.archive.to_owned(),
                    table: module_name(physical),
                    parent: module_name(&parent),
                });
            }
        }
        Ok(())
    }
}

/// Most parameters one INSERT binds (SQLite's historical default limit, so
/// any build accepts it).
const MAX_BATCH_PARAMETERS: usize = 999;

/// Most rows one INSERT carries.
const MAX_BATCH_ROWS: usize = 100;

/// Most bytes of text and blob values held for one INSERT.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Inserts one table's rows, a batch of rows per INSERT.
struct TableLoader {
    archive: String,
    /// The module's name for the table.
    name: String,
    physical: String,
    /// Quoted target columns (the rowid alias first, if any).
    columns: Vec<String>,
    /// For each value of a row: inserted, or dropped (a generated column
    /// an older archive holds).
    keep: Vec<bool>,
    sequence: Option<i64>,
    /// Rows per INSERT.
    batch: usize,
    /// Rows waiting for the next INSERT (their inserted values only).
    pending: Vec<Vec<StoredValue>>,
    pending_bytes: usize,
    /// Rows inserted so far.
    rows: u64,
}

impl TableLoader {
    fn new(
        archive: &str,
        name: String,
        physical: String,
        columns: Vec<String>,
        keep: Vec<bool>,
        sequence: Option<i64>,
    ) -> Self {
        let batch = (MAX_BATCH_PARAMETERS / columns.len().max(1)).clamp(1, MAX_BATCH_ROWS);
        TableLoader {
            archive: archive.to_owned(),
            name,
            physical,
            columns,
            keep,
            sequence,
            batch,
            pending: Vec::with_capacity(batch),
            pending_bytes: 0,
            rows: 0,
        }
    }

    /// A row error; `row` is the row's position in the table (1-based).
    fn row_error(&self, row: u64, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Row {
            archive: self.archive.clone(),
            table: self.name.clone(),
            row,
            reason: reason.into(),
        }
    }

    /// Takes a row: checks it, and inserts it with the rows before it once
    /// a batch is full.
    async fn insert(
        &mut self,
        conn: &mut SqliteConnection,
        values: Vec<StoredValue>,
    ) -> Result<(), ArchiveError> {
        let position = self.rows + self.pending.len() as u64 + 1;
        if values.len() != self.keep.len() {
            return Err(self.row_error(
                position,
                format!("{} values where {} belong", values.len(), self.keep.len()),
            ));
        }
        let mut row = Vec::with_capacity(self.columns.len());
        for (value, keep) in values.into_iter().zip(self.keep.iter().copied()) {
            if !keep {
                continue;
            }
            match &value {
                StoredValue::Real(bits) if f64::from_bits(*bits).is_nan() => {
                    return Err(self.row_error(
                        position,
                        "it holds a NaN real, which SQLite cannot store (it would become NULL)",
                    ));
                }
                StoredValue::Text(bytes) | StoredValue::Blob(bytes) => {
                    self.pending_bytes += bytes.len();
                }
                _ => {}
            }
            row.push(value);
        }
        self.pending.push(row);
        if self.pending.len() >= self.batch || self.pending_bytes >= MAX_BATCH_BYTES {
            self.flush(conn).await?;
        }
        Ok(())
    }

    /// Inserts the pending rows. When SQLite refuses the batch (the
    /// statement is undone), its rows are inserted one by one to name the
    /// row it refuses.
    async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), ArchiveError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if let Err(batch_error) = self.execute(conn, &rows).await {
            if rows.len() > 1 {
                for (i, row) in rows.iter().enumerate() {
                    if let Err(e) = self.execute(conn, std::slice::from_ref(row)).await {
                        return Err(
                            self.row_error(self.rows + i as u64 + 1, db::map_error(e).to_string())
                        );
                    }
                }
            }
            return Err(self.row_error(self.rows + 1, db::map_error(batch_error).to_string()));
        }
        self.rows += rows.len() as u64;
        self.pending = rows;
        self.pending.clear();
        Ok(())
    }

    /// One `INSERT INTO t (columns) VALUES (...), (...)` for `rows`. Text
    /// that is not UTF-8 is bound as a blob and cast back to TEXT, which
    /// keeps its bytes.
    async fn execute(
        &self,
        conn: &mut SqliteConnection,
        rows: &[Vec<StoredValue>],
    ) -> Result<(), sqlx::Error> {
        let mut args = SqliteArguments::default();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote(&self.physical),
            self.columns.join(", ")
        );
        let mut cast = false;
        let mut n = 0;
        for (r, row) in rows.iter().enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for (c, value) in row.iter().enumerate() {
                n += 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                let (added, as_text) = match value {
                    StoredValue::Null => (args.add(Option::<i64>::None), false),
                    StoredValue::Integer(v) => (args.add(*v), false),
                    StoredValue::Real(bits) => (args.add(f64::from_bits(*bits)), false),
                    StoredValue::Text(bytes) => match std::str::from_utf8(bytes) {
                        Ok(text) => (args.add(text), false),
                        Err(_) => (args.add(bytes.as_slice()), true),
                    },
                    StoredValue::Blob(bytes) => (args.add(bytes.as_slice()), false),
                };
                added.map_err(sqlx::Error::Encode)?;
                if as_text {
                    cast = true;
                    sql.push_str(&format!("CAST(?{n} AS TEXT)"));
                } else {
                    sql.push_str(&format!("?{n}"));
                }
            }
            sql.push(')');
        }
        // Statements with casts vary row by row: not worth caching.
        sqlx::query_with(&sql, args)
            .persistent(!cast)
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
