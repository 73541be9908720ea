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

use std::path::{Path, PathBuf};

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
