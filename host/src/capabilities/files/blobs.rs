//! File bytes on disk: content-addressed blobs per tenant, beside the
//! tenant's database (`<data>/tenants/<tenant id>.files/<aa>/<sha256>`).
//!
//! A blob is written once per tenant whatever number of files hold the same
//! bytes, atomically (a temporary file in `tmp/`, `fsync`, `rename`, `fsync`
//! of the directory), so a reader never sees a partial blob. Rows in
//! `_souk_files` name blobs by sha256; a blob no committed row names is
//! garbage.
//!
//! Collection races with puts of the same bytes: a put *pins* its blob
//! (in this process's memory) before it looks for or writes it, and keeps
//! the pin until its call is settled. [`BlobStore::collect`] removes a blob
//! only when it is not pinned and no committed row names it, holding one
//! lock for the check and the removal, which [`BlobStore::pin`] takes too:
//! a put either pins first (the blob is kept) or finds it gone (and writes
//! it again). Blobs left behind by a process that stopped mid-call are
//! removed by [`BlobStore::sweep`] (run once at `souk serve` start).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;

use super::rows;

/// The blob stores of every tenant, and the pins of calls in flight.
pub struct BlobStore {
    /// `<data>/tenants`: the directory of the tenant databases.
    root: PathBuf,
    /// (tenant id, sha256) → number of unsettled calls that put it.
    pins: Mutex<HashMap<(String, String), usize>>,
    /// Held across a collection's check and removal, and by a pin.
    collecting: tokio::sync::Mutex<()>,
}

/// Whether `text` is a lower-case hex sha256.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A tenant id is used in a path: only `[a-z0-9_]` is accepted.
fn check_tenant(tenant_id: &str) -> std::io::Result<()> {
    if tenant_id.is_empty()
        || !tenant_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a tenant id",
        ));
    }
    Ok(())
}

impl BlobStore {
    /// Blob stores under `tenants_dir` (where the tenant databases live).
    pub fn new(tenants_dir: PathBuf) -> Arc<Self> {
        Arc::new(BlobStore {
            root: tenants_dir,
            pins: Mutex::new(HashMap::new()),
            collecting: tokio::sync::Mutex::new(()),
        })
    }

    fn dir(&self, tenant_id: &str) -> std::io::Result<PathBuf> {
        check_tenant(tenant_id)?;
        Ok(self.root.join(format!("{tenant_id}.files")))
    }

    /// Where blob `sha256` of `tenant_id` lives.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed tenant id or hash.
    pub fn path(&self, tenant_id: &str, sha256: &str) -> std::io::Result<PathBuf> {
        if !is_sha256(sha256) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a sha256",
            ));
        }
        Ok(self.dir(tenant_id)?.join(&sha256[..2]).join(sha256))
    }

    /// Pins blob `sha256` of `tenant_id` for a call in flight: no
    /// collection removes it until [`BlobStore::unpin`].
    pub async fn pin(&self, tenant_id: &str, sha256: &str) {
        let _collecting = self.collecting.lock().await;
        let mut pins = self
            .pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *pins
            .entry((tenant_id.to_owned(), sha256.to_owned()))
            .or_default() += 1;
    }

    /// Gives back one pin of [`BlobStore::pin`].
    pub fn unpin(&self, tenant_id: &str, sha256: &str) {
        let mut pins = self
            .pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (tenant_id.to_owned(), sha256.to_owned());
        if let Some(count) = pins.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&key);
            }
        }
    }

    fn pinned(&self, tenant_id: &str, sha256: &str) -> bool {
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&(tenant_id.to_owned(), sha256.to_owned()))
    }

    /// Makes sure blob `sha256` holds `bytes` (whose hash the caller
    /// computed): written atomically unless it exists. Pin it first.
    ///
    /// # Errors
    /// I/O errors; nothing partial is left under the blob's name.
    pub async fn write(
        &self,
        tenant_id: &str,
        sha256: &str,
        bytes: Arc<[u8]>,
    ) -> std::io::Result<()> {
        let path = self.path(tenant_id, sha256)?;
        let tmp_dir = self.dir(tenant_id)?.join("tmp");
        let tmp = tmp_dir.join(format!(
            "{sha256}.{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        tokio::task::spawn_blocking(move || write_atomically(&path, &tmp_dir, &tmp, &bytes))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Opens blob `sha256` of `tenant_id` for reading.
    ///
    /// # Errors
    /// `NotFound` when it is missing; other I/O errors.
    pub async fn open(&self, tenant_id: &str, sha256: &str) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(tenant_id, sha256)?).await
    }

    /// Removes each of `shas` of `tenant_id` that no call pins and no
    /// committed row of the tenant database (`pool`) names. Answers how many
    /// were removed.
    ///
    /// # Errors
    /// Database errors (nothing more is removed).
    pub async fn collect(
        &self,
        pool: &SqlitePool,
        tenant_id: &str,
        shas: impl IntoIterator<Item = String>,
    ) -> Result<usize, sqlx::Error> {
        let _collecting = self.collecting.lock().await;
        let mut conn = pool.acquire().await?;
        let mut removed = 0;
        for sha in shas {
            if self.pinned(tenant_id, &sha) || rows::referenced(&mut conn, &sha).await? {
                continue;
            }
            let Ok(path) = self.path(tenant_id, &sha) else {
                continue;
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(tenant = tenant_id, error = %e, "cannot remove a file blob")
                }
            }
        }
        Ok(removed)
    }

    /// Removes every blob of `tenant_id` no committed row names and no call
    /// pins, and temporary files of writes no call pins (left by a stopped
    /// process). Answers how many files were removed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn sweep(&self, pool: &SqlitePool, tenant_id: &str) -> Result<usize, sqlx::Error> {
        let Ok(dir) = self.dir(tenant_id) else {
            return Ok(0);
        };
        let (blobs, temps) = tokio::task::spawn_blocking(move || list_blobs(&dir))
            .await
            .unwrap_or_default();
        let mut removed = self.collect(pool, tenant_id, blobs).await?;
        for (sha, path) in temps {
            if !self.pinned(tenant_id, &sha) && tokio::fs::remove_file(&path).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Tenants that have a blob directory.
    pub fn tenants_with_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".files").map(str::to_owned)
            })
            .filter(|t| check_tenant(t).is_ok())
            .collect()
    }
}

/// The blobs (by sha) and temporary files (sha, path) under `dir`.
fn list_blobs(dir: &Path) -> (Vec<String>, Vec<(String, PathBuf)>) {
    let mut blobs = Vec::new();
    let mut temps = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (blobs, temps);
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(inner) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in inner.filter_map(|e| e.ok()) {
            let file_name = file.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if name == "tmp" {
                let sha = file_name.split('.').next().unwrap_or_default().to_owned();
                temps.push((sha, file.path()));
            } else if is_sha256(file_name) {
                blobs.push(file_name.to_owned());
            }
        }
    }
    (blobs, temps)
}

fn write_atomically(path: &Path, tmp_dir: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(tmp_dir)?;
    let written = (|| {
        let mut file = std::fs::File::create_new(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_written_once_and_kept_while_pinned_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().to_owned());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        rows::create_table(&mut conn).await.unwrap();
        drop(conn);
        let sha = "ab".repeat(32);
        store.pin("t_1", &sha).await;
        store
            .write("t_1", &sha, Arc::from(&b"hello"[..]))
            .await
            .unwrap();
        store
            .write("t_1", &sha, Arc::from(&b"other"[..]))
            .await
            .unwrap();
        let path = store.path("t_1", &sha).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(store.collect(&pool, "t_1", [sha.clone()]).await.unwrap(), 0);
        store.unpin("t_1", &sha);
        assert_eq!(store.tenants_with_files(), vec!["t_1".to_owned()]);
        assert_eq!(store.sweep(&pool, "t_1").await.unwrap(), 1);
        assert!(!path.exists());
        assert!(store.path("../x", &sha).is_err());
        assert!(store.path("t_1", "../../etc").is_err());
    }
}
