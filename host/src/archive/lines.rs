//! Format `souk-archive/2`: JSON Lines, written and read one line at a
//! time so an archive of any size costs the host one row of memory.
//!
//! ```text
//! {"format":"souk-archive/2","tenant":…,"module":…,"version":…,"migrations":[…],"created_at":…,"usage":{…}}
//! {"table":{"name":"notes","columns":["id","body"],"rowid":"rowid","sequence":null}}
//! [1,1,"first note"]
//! [2,2,{"text_bytes":"/w=="}]
//! {"end":{"rows":2,"sha256":"…"}}
//! … one block per table …
//! {"archive_end":{"tables":1,"sha256":"…"}}
//! ```
//!
//! A row is a JSON array of [`StoredValue`]s: the rowid first when the
//! table block names one, then one value per column. Each table block ends
//! with its row count and the sha256 of its canonical encoding (see
//! [`TableDigest`]); the last line carries the sha256 over the header and
//! every table's checksum, so a missing, added or reordered table, a changed
//! header (usage counters, version) and a cut-off file are all noticed.
//! [`ArchiveReader`] checks all of it as it reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

use super::ArchiveError;
use super::value::{StoredValue, digest_bytes};

/// The format identifier.
pub const FORMAT: &str = "souk-archive/2";

/// The longest line a reader accepts: SQLite's largest row (10⁹ bytes by
/// default) at the worst JSON escaping of text (six bytes for one), with
/// room to spare. A longer line is not one this host wrote.
pub const MAX_LINE_BYTES: u64 = 8 << 30;

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
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
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// Units held of each count limit.
    pub usage: BTreeMap<String, u64>,
    /// The module's stored files, oldest first (their bytes are beside the
    /// archive, see `archive::files`). Left out when there are none, so
    /// archives without files read, and hash, as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<super::files::ArchivedFile>,
}

/// Opens a table block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableStart {
    /// The module's (unprefixed) name for the table.
    pub name: String,
    /// The columns each row supplies, in order; generated columns are not
    /// archived (SQLite recomputes them).
    pub columns: Vec<String>,
    /// The rowid alias the first value of each row is written to, for a
    /// table with a rowid; `None` for a `WITHOUT ROWID` table.
    pub rowid: Option<String>,
    /// The table's AUTOINCREMENT counter, when it has one.
    pub sequence: Option<i64>,
}

/// Closes a table block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEnd {
    /// Rows in the block.
    pub rows: u64,
    /// [`TableDigest`] of the block, hex.
    pub sha256: String,
}

/// The last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveEnd {
    /// Table blocks in the archive.
    pub tables: u64,
    /// [`ArchiveDigest`] of the archive, hex.
    pub sha256: String,
}

/// A line that is not a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Marker {
    /// Opens a table block.
    Table(TableStart),
    /// Closes it.
    End(TableEnd),
    /// Ends the archive.
    ArchiveEnd(ArchiveEnd),
}

/// The sha256 of one table block's canonical encoding: the table's name,
/// columns, rowid alias and AUTOINCREMENT counter, then each row (its
/// value count and each value's [`StoredValue::digest_into`]), then the row
/// count; every string length-prefixed. It depends only on the values, not
/// on how the JSON spells them.
pub struct TableDigest {
    hasher: Sha256,
    rows: u64,
}

impl TableDigest {
    /// Starts the digest of the block `start` opens.
    pub fn new(start: &TableStart) -> Self {
        let mut hasher = Sha256::new();
        digest_bytes(&mut hasher, b"souk-archive/2 table");
        digest_bytes(&mut hasher, start.name.as_bytes());
        hasher.update((start.columns.len() as u64).to_be_bytes());
        for column in &start.columns {
            digest_bytes(&mut hasher, column.as_bytes());
        }
        match &start.rowid {
            Some(alias) => {
                hasher.update([1]);
                digest_bytes(&mut hasher, alias.as_bytes());
            }
            None => hasher.update([0]),
        }
        match start.sequence {
            Some(seq) => {
                hasher.update([1]);
                hasher.update(seq.to_be_bytes());
            }
            None => hasher.update([0]),
        }
        TableDigest { hasher, rows: 0 }
    }

    /// Adds one row.
    pub fn row(&mut self, values: &[StoredValue]) {
        self.rows += 1;
        self.hasher.update((values.len() as u64).to_be_bytes());
        for value in values {
            value.digest_into(&mut self.hasher);
        }
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The digest, hex.
    pub fn finish(mut self) -> String {
        self.hasher.update(self.rows.to_be_bytes());
        hex::encode(self.hasher.finalize())
    }
}

/// The sha256 that closes an archive: the header (as its canonical JSON)
/// and, in order, each table's name and [`TableDigest`], then the count.
pub struct ArchiveDigest {
    hasher: Sha256,
    tables: u64,
}

impl ArchiveDigest {
    /// Starts the digest of an archive with `header`.
    pub fn new(header: &Header) -> Result<Self, ArchiveError> {
        let mut hasher = Sha256::new();
        digest_bytes(&mut hasher, FORMAT.as_bytes());
        let canonical = serde_json::to_vec(header).map_err(ArchiveError::encode)?;
        digest_bytes(&mut hasher, &canonical);
        Ok(ArchiveDigest { hasher, tables: 0 })
    }

    /// Adds one table's checksum.
    pub fn table(&mut self, name: &str, sha256: &str) {
        self.tables += 1;
        digest_bytes(&mut self.hasher, name.as_bytes());
        digest_bytes(&mut self.hasher, sha256.as_bytes());
    }

    /// Tables added so far.
    pub fn tables(&self) -> u64 {
        self.tables
    }

    /// The digest, hex.
    pub fn finish(mut self) -> String {
        self.hasher.update(self.tables.to_be_bytes());
        hex::encode(self.hasher.finalize())
    }
}

/// Writes lines to a file through one reused buffer.
pub struct LineWriter {
    file: BufWriter<tokio::fs::File>,
    line: Vec<u8>,
}

impl LineWriter {
    /// Wraps `file`.
    pub fn new(file: tokio::fs::File) -> Self {
        LineWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            line: Vec::with_capacity(4096),
        }
    }

    /// Writes `value` as one JSON line.
    ///
    /// # Errors
    /// Encoding or I/O errors.
    pub async fn write<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ArchiveError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value).map_err(ArchiveError::encode)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line).await?;
        Ok(())
    }

    /// Flushes and syncs the file to disk.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn finish(mut self) -> Result<(), ArchiveError> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        Ok(())
    }
}

/// Reads a file line by line, each line bounded by [`MAX_LINE_BYTES`].
pub struct LineReader {
    file: BufReader<tokio::fs::File>,
    line: Vec<u8>,
    number: u64,
}

impl LineReader {
    /// Opens `path`.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn open(path: &Path) -> Result<Self, ArchiveError> {
        let file = tokio::fs::File::open(path).await?;
        Ok(LineReader {
            file: BufReader::with_capacity(256 * 1024, file),
            line: Vec::with_capacity(4096),
            number: 0,
        })
    }

    /// The number of the line last read (1-based).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The next line without its `\n` and its number, or `None` at the end
    /// of the file.
    ///
    /// # Errors
    /// I/O errors; a line longer than [`MAX_LINE_BYTES`] or a last line
    /// without its `\n` (a cut-off file) as [`ArchiveError::Damaged`] with
    /// `archive` named.
    pub async fn next(&mut self, archive: &str) -> Result<Option<(u64, &[u8])>, ArchiveError> {
        self.line.clear();
        let read = (&mut self.file)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut self.line)
            .await?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.line.last() != Some(&b'\n') {
            let reason = if read as u64 > MAX_LINE_BYTES {
                format!("the line is longer than {MAX_LINE_BYTES} bytes")
            } else {
                "the file ends in the middle of a line (it was cut off)".to_owned()
            };
            return Err(ArchiveError::damaged(archive, self.number, reason));
        }
        self.line.pop();
        Ok(Some((self.number, &self.line)))
    }
}

/// What [`ArchiveReader::next`] read.
#[derive(Debug)]
pub enum Event {
    /// A table block opens.
    Table(TableStart),
    /// A row of the open table (rowid first when the block has one).
    Row(Vec<StoredValue>),
    /// The open table's block ended and matched its checksum.
    TableEnd,
    /// The archive ended and matched its checksum; nothing follows.
    Finished,
}

/// Reads a `souk-archive/2` file and checks it while reading: the shape of
/// every line, each row's arity, every table's checksum and row count, the
/// archive checksum, and that nothing follows the end. A consumer sees each
/// row before its table's checksum is known, so it must not keep what it
/// did with a table's rows until [`Event::TableEnd`] (the restore runs in
/// a transaction that any error rolls back).
pub struct ArchiveReader {
    archive: String,
    lines: LineReader,
    header: Header,
    digest: Option<ArchiveDigest>,
    table: Option<(TableStart, TableDigest)>,
}

impl ArchiveReader {
    /// Continues reading `lines`, whose first line `header` was, as archive
    /// `archive` (its id, for messages).
    ///
    /// # Errors
    /// A header that does not parse.
    pub fn new(archive: &str, lines: LineReader, header: &[u8]) -> Result<Self, ArchiveError> {
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| ArchiveError::damaged(archive, 1, format!("header: {e}")))?;
        if header.format != FORMAT {
            return Err(ArchiveError::UnknownFormat {
                archive: archive.to_owned(),
                format: header.format,
            });
        }
        let digest = ArchiveDigest::new(&header)?;
        Ok(ArchiveReader {
            archive: archive.to_owned(),
            lines,
            header,
            digest: Some(digest),
            table: None,
        })
    }

    /// Opens `path` and reads its header.
    ///
    /// # Errors
    /// I/O errors, an empty file, a header that does not parse.
    pub async fn open(archive: &str, path: &Path) -> Result<Self, ArchiveError> {
        let mut lines = LineReader::open(path).await?;
        let header = lines
            .next(archive)
            .await?
            .ok_or_else(|| ArchiveError::damaged(archive, 1, "the file is empty"))?
            .1
            .to_vec();
        ArchiveReader::new(archive, lines, &header)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next event.
    ///
    /// # Errors
    /// [`ArchiveError::Damaged`], [`ArchiveError::TableChecksum`],
    /// [`ArchiveError::ArchiveChecksum`], I/O errors. Calling it again after
    /// [`Event::Finished`] or an error is an error.
    pub async fn next(&mut self) -> Result<Event, ArchiveError> {
        let archive = self.archive.as_str();
        let Some((number, line)) = self.lines.next(archive).await? else {
            return Err(ArchiveError::damaged(
                archive,
                self.lines.number() + 1,
                "the file ends before the archive's end line (it was cut off)",
            ));
        };
        if line.first() == Some(&b'[') {
            let Some((start, digest)) = &mut self.table else {
                return Err(ArchiveError::damaged(
                    archive,
                    number,
                    "a row outside a table block",
                ));
            };
            let values: Vec<StoredValue> = serde_json::from_slice(line).map_err(|e| {
                ArchiveError::damaged(archive, number, format!("table {}: {e}", start.name))
            })?;
            let expected = start.columns.len() + usize::from(start.rowid.is_some());
            if values.len() != expected {
                return Err(ArchiveError::damaged(
                    archive,
                    number,
                    format!(
                        "table {}: a row has {} values where {expected} belong",
                        start.name,
                        values.len()
                    ),
                ));
            }
            digest.row(&values);
            return Ok(Event::Row(values));
        }
        let marker: Marker = serde_json::from_slice(line)
            .map_err(|e| ArchiveError::damaged(archive, number, e.to_string()))?;
        match (marker, self.table.take()) {
            (Marker::Table(start), None) => {
                if self.digest.is_none() {
                    return Err(ArchiveError::damaged(
                        archive,
                        number,
                        "a table after the archive's end",
                    ));
                }
                let digest = TableDigest::new(&start);
                self.table = Some((start.clone(), digest));
                Ok(Event::Table(start))
            }
            (Marker::End(end), Some((start, digest))) => {
                let rows = digest.rows();
                let sha256 = digest.finish();
                if rows != end.rows || sha256 != end.sha256 {
                    return Err(ArchiveError::TableChecksum {
                        archive: archive.to_owned(),
                        table: start.name,
                    });
                }
                match &mut self.digest {
                    Some(archive_digest) => archive_digest.table(&start.name, &sha256),
                    None => {
                        return Err(ArchiveError::damaged(
                            archive,
                            number,
                            "a table after the archive's end",
                        ));
                    }
                }
                Ok(Event::TableEnd)
            }
            (Marker::ArchiveEnd(end), None) => {
                let Some(digest) = self.digest.take() else {
                    return Err(ArchiveError::damaged(archive, number, "a second end line"));
                };
                let tables = digest.tables();
                if tables != end.tables || digest.finish() != end.sha256 {
                    return Err(ArchiveError::ArchiveChecksum {
                        archive: archive.to_owned(),
                    });
                }
                if self.lines.next(archive).await?.is_some() {
                    return Err(ArchiveError::damaged(
                        archive,
                        number + 1,
                        "lines follow the archive's end line",
                    ));
                }
                Ok(Event::Finished)
            }
            (Marker::Table(_), Some((open, _))) => Err(ArchiveError::damaged(
                archive,
                number,
                format!("a table block opens before table {} ended", open.name),
            )),
            (Marker::ArchiveEnd(_), Some((open, _))) => Err(ArchiveError::damaged(
                archive,
                number,
                format!("the archive ends inside table {}", open.name),
            )),
            (Marker::End(_), None) => Err(ArchiveError::damaged(
                archive,
                number,
                "a table end without a table",
            )),
        }
    }
}
