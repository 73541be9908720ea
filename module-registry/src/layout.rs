//! The on-disk layout shared by a registry store and a client's cache: the
//! same files under the same names, so a cache mirrors what it verified.
//!
//! ```text
//! trust/<version>.root.json   signed trust roots
//! logs/<module>.json          signed module logs
//! blobs/sha256/<hex>          packages, by digest
//! snapshot.json               the last snapshot
//! tmp/                        writes in progress, renamed into place
//! ```

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::manifest::Slug;
use crate::package::Digest;

/// Paths inside a directory laid out as above.
pub(crate) trait Layout {
    /// The directory.
    fn root(&self) -> &Path;

    fn trust_dir(&self) -> PathBuf {
        self.root().join("trust")
    }

    fn logs_dir(&self) -> PathBuf {
        self.root().join("logs")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root().join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root().join("tmp")
    }

    fn root_path(&self, version: u64) -> PathBuf {
        self.trust_dir().join(format!("{version}.root.json"))
    }

    fn log_path(&self, module: &Slug) -> PathBuf {
        self.logs_dir().join(format!("{}.json", module.as_str()))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    fn snapshot_path(&self) -> PathBuf {
        self.root().join("snapshot.json")
    }
}

/// The version of a trust root file, read back from its name
/// (`<version>.root.json`, as [`Layout::root_path`] writes it); `None` for
/// any other name.
pub(crate) fn root_file_version(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".root.json")?
        .parse()
        .ok()
}

/// The module of a log file, read back from its name (`<slug>.json`, as
/// [`Layout::log_path`] writes it); `None` for any other name.
pub(crate) fn log_file_module(path: &Path) -> Option<Slug> {
    Slug::parse(path.file_name()?.to_str()?.strip_suffix(".json")?).ok()
}

/// Why [`read_json`] could not read a metadata file; each side turns it into
/// its own error (the store's `Io`/`Corrupt`, the cache's
/// `CacheIo`/`CacheCorrupt`).
pub(crate) enum ReadError {
    /// Opening or reading the file failed.
    Io(io::Error),
    /// The file is larger than the limit, or not the JSON expected: what is
    /// wrong, in words.
    Corrupt(String),
}

/// Reads and decodes a JSON metadata file (trust root, module log,
/// snapshot) of at most `limit` bytes, reading no more than one byte past
/// the limit.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path, limit: u64) -> Result<T, ReadError> {
    let file = File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::Corrupt(format!(
            "it is larger than the limit of {limit} bytes"
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| ReadError::Corrupt(e.to_string()))
}
