//! The registry's store on disk: packages, module logs, the trust root
//! chain and the current snapshot, kept with `std::fs` alone.
//!
//! Layout under the store directory:
//!
//! ```text
//! trust/<version>.root.json   every signed trust root, 1.root.json, 2.root.json, …
//! logs/<slug>.json            each module's log: a JSON array of signed entries
//! blobs/sha256/<hex>          package files, named by the sha256 of their bytes
//! snapshot.json               the current signed snapshot
//! tmp/                        files being written (same file system, then renamed)
//! lock                        held (flock) while an operation changes the store
//! ```
//!
//! Every file is written to `tmp/` and renamed into place, so a reader sees
//! either the old or the new file, never half of one; trust roots and blobs
//! are linked into place instead, which never replaces an existing file.
//! Mutating operations hold an exclusive lock on `lock`, so two processes
//! (the registry service and an operator's CLI) cannot interleave appends
//! to one log. Reads take no lock.
//!
//! The store trusts nothing it reads back: blobs are re-hashed and
//! size-checked, logs are re-validated against the trust chain, and the
//! trust chain is re-verified from its first root.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use semver::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::canonical::CanonicalError;
use crate::keys::KeyPair;
use crate::layout::{self, Layout, ReadError};
use crate::manifest::Slug;
use crate::package::{Digest, Package, PackageError, PackageLimits};
use crate::records::{EntryHash, EntryRejection, LogError, ModuleAction, ModuleLog, SignedEntry};
use crate::snapshot::{SignedSnapshot, Snapshot, SnapshotError};
use crate::trust::{SignedTrustRoot, TrustError, TrustState};

/// Room for the tar headers, padding and end-of-archive blocks around a
/// package's two files.
const TAR_OVERHEAD_BYTES: u64 = 16 * 1024;

/// Size limits the store enforces on what it accepts and reads back.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Limits applied when parsing a package.
    pub package: PackageLimits,
    /// Largest package file accepted or read back. Default: the manifest
    /// and component limits plus 16 KiB of tar framing.
    pub max_package_bytes: u64,
    /// Largest log, snapshot or trust root file read back. Default 16 MiB.
    pub max_metadata_bytes: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        let package = PackageLimits::default();
        StoreLimits {
            package,
            max_package_bytes: package.max_manifest_bytes
                + package.max_component_bytes
                + TAR_OVERHEAD_BYTES,
            max_metadata_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("registry store file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A stored metadata file does not parse or is out of place.
    #[error("registry store file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The directory already holds a store.
    #[error("{dir} already holds a registry store (it has a trust root)")]
    AlreadyInitialised { dir: PathBuf },
    /// The directory holds no store.
    #[error("{dir} holds no registry store (no trust root in trust/); create one first")]
    NotInitialised { dir: PathBuf },
    /// The trust chain or a new root was refused.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A log entry was refused, or a stored log no longer validates.
    #[error(transparent)]
    Log(#[from] Box<LogError>),
    /// An entry's signer may not sign for its module, or its signature
    /// does not verify (checked before the log is read).
    #[error("the entry for module `{module}` is refused: {rejection}")]
    EntryRefused {
        /// The module the entry is about.
        module: Slug,
        rejection: Box<EntryRejection>,
    },
    /// A snapshot could not be issued.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A document could not be encoded.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The entry is of the wrong kind for the operation.
    #[error("expected {expected} entry, got a {found} entry")]
    WrongEntryKind {
        /// The kind the operation takes.
        expected: &'static str,
        /// The kind given.
        found: &'static str,
    },
    /// The package is larger than the store accepts.
    #[error("the package is {size} bytes, larger than the limit of {limit} bytes")]
    PackageTooLarge {
        /// In bytes.
        size: u64,
        /// In bytes.
        limit: u64,
    },
    /// The package bytes do not hash to the digest in the signed record.
    #[error(
        "the package's sha256 is {package}, but the signed record says {record}: the package was altered or is not the one signed"
    )]
    DigestMismatch {
        /// The digest in the record.
        record: Digest,
        /// The digest of the bytes received.
        package: Digest,
    },
    /// The package does not parse.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The package's manifest disagrees with the signed record.
    #[error("the package's manifest says {field} {package}, but the signed record says {record}")]
    PackageMismatch {
        /// The field that differs.
        field: &'static str,
        /// The record's value.
        record: String,
        /// The manifest's value.
        package: String,
    },
    /// The caller's validator refused the package.
    #[error("{module} {version} was refused: {reason}")]
    Rejected {
        module: Slug,
        version: Version,
        /// The validator's reason.
        reason: String,
    },
    /// The module has no log.
    #[error("module `{0}` has never been published to this registry")]
    UnknownModule(Slug),
    /// The version was never published.
    #[error("module `{module}` has no version {version}")]
    UnknownVersion { module: Slug, version: Version },
    /// No blob has the digest.
    #[error("no package with digest {0} is stored")]
    BlobMissing(Digest),
    /// A stored blob is larger than the package limit.
    #[error("stored package {digest} is {size} bytes, larger than the limit of {limit} bytes")]
    BlobTooLarge {
        /// The blob's name.
        digest: Digest,
        /// In bytes.
        size: u64,
        /// In bytes.
        limit: u64,
    },
    /// A stored blob does not hash to its name (truncated or altered).
    #[error("stored package {digest} is damaged: its bytes hash to {found}")]
    BlobCorrupt {
        /// The blob's name.
        digest: Digest,
        /// The digest of what is on disk.
        found: Digest,
    },
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        StoreError::Log(Box::new(e))
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A registry store rooted at one directory.
#[derive(Debug, Clone)]
pub struct RegistryStore {
    dir: PathBuf,
    limits: StoreLimits,
}

impl Layout for RegistryStore {
    fn root(&self) -> &Path {
        &self.dir
    }
}

impl RegistryStore {
    /// Creates a store in `dir` (created if missing) whose trust starts at
    /// `root`, which must be validly self-signed.
    ///
    /// # Errors
    /// [`StoreError::AlreadyInitialised`] when `dir` already has a trust
    /// root; [`StoreError::Trust`] when `root` does not verify;
    /// [`StoreError::Io`] when the directories cannot be created.
    pub fn create(
        dir: &Path,
        root: SignedTrustRoot,
        limits: StoreLimits,
    ) -> Result<Self, StoreError> {
        TrustState::pin(root.clone())?;
        let store = RegistryStore {
            dir: dir.to_owned(),
            limits,
        };
        for sub in [
            store.trust_dir(),
            store.logs_dir(),
            store.blobs_dir(),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&sub).map_err(io_at(&sub))?;
        }
        let _lock = store.lock()?;
        if !store.root_files()?.is_empty() {
            return Err(StoreError::AlreadyInitialised {
                dir: dir.to_owned(),
            });
        }
        store.write_new(&store.root_path(root.root.version), &to_json(&root)?)?;
        Ok(store)
    }

    /// Opens an existing store.
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`] when `dir` holds no trust root;
    /// [`StoreError::Io`] when it cannot be read.
    pub fn open(dir: &Path, limits: StoreLimits) -> Result<Self, StoreError> {
        let store = RegistryStore {
            dir: dir.to_owned(),
            limits,
        };
        if !store.trust_dir().is_dir() || store.root_files()?.is_empty() {
            return Err(StoreError::NotInitialised {
                dir: dir.to_owned(),
            });
        }
        for sub in [store.logs_dir(), store.blobs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&sub).map_err(io_at(&sub))?;
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The limits in force.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    // ----- trust -----

    /// Every stored trust root, oldest first: what a client pinned to an
    /// older root needs to follow to the current one.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a root file does not parse, its name
    /// disagrees with its version, or a version is missing.
    pub fn trust_chain(&self) -> Result<Vec<SignedTrustRoot>, StoreError> {
        let mut chain: Vec<SignedTrustRoot> = Vec::new();
        for (version, path) in self.root_files()? {
            let root: SignedTrustRoot = self.read_json(&path)?;
            if root.root.version != version {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("it holds trust root {}", root.root.version),
                });
            }
            if let Some(prev) = chain.last()
                && prev.root.version + 1 != version
            {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("trust root {} is missing", prev.root.version + 1),
                });
            }
            chain.push(root);
        }
        if chain.is_empty() {
            return Err(StoreError::NotInitialised {
                dir: self.dir.clone(),
            });
        }
        Ok(chain)
    }

    /// The current trust, verified from the first stored root through
    /// every rotation. Expiry is not checked: that is the clients' concern,
    /// and the operator must be able to rotate an expired root.
    ///
    /// # Errors
    /// [`StoreError::Trust`] when the stored chain does not verify, or any
    /// error of [`RegistryStore::trust_chain`].
    pub fn trust(&self) -> Result<TrustState, StoreError> {
        let chain = self.trust_chain()?;
        let (first, rest) = chain
            .split_first()
            .ok_or_else(|| StoreError::NotInitialised {
                dir: self.dir.clone(),
            })?;
        let mut state = TrustState::pin(first.clone())?;
        state.follow(rest)?;
        Ok(state)
    }

    /// Adds `next` to the trust chain after checking it is a valid rotation
    /// of the current root (next version, signed by the old and the new
    /// root keys). Returns the new version.
    ///
    /// # Errors
    /// [`StoreError::Trust`] when the rotation is refused.
    pub fn rotate_trust_root(&self, next: SignedTrustRoot) -> Result<u64, StoreError> {
        let _lock = self.lock()?;
        let current = self.trust()?;
        next.verify_rotation_from(current.root())?;
        let version = next.root.version;
        self.write_new(&self.root_path(version), &to_json(&next)?)?;
        Ok(version)
    }

    // ----- logs -----

    /// Every module that has a log, sorted.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a file in `logs/` is not named
    /// `<slug>.json`; [`StoreError::Io`] when the directory cannot be read.
    pub fn modules(&self) -> Result<Vec<Slug>, StoreError> {
        let dir = self.logs_dir();
        let mut modules = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = entry.map_err(io_at(&dir))?.path();
            match layout::log_file_module(&path) {
                Some(slug) => modules.push(slug),
                None => {
                    return Err(StoreError::Corrupt {
                        path,
                        reason: "files in logs/ must be named <module slug>.json".into(),
                    });
                }
            }
        }
        modules.sort();
        Ok(modules)
    }

    /// The stored entries of `module`'s log as they are on disk, without
    /// validation (for serving to clients, which validate themselves);
    /// empty if the module has no log.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] or [`StoreError::Io`] when the log cannot be
    /// read.
    pub fn log_entries(&self, module: &Slug) -> Result<Vec<SignedEntry>, StoreError> {
        let path = self.log_path(module);
        if !path.exists() {
            return Ok(Vec::new());
        }
        self.read_json(&path)
    }

    /// `module`'s log, validated under the current trust.
    ///
    /// # Errors
    /// [`StoreError::UnknownModule`] when it has no log;
    /// [`StoreError::Log`] when the stored log no longer validates (for
    /// example because its publisher key was revoked).
    pub fn module_log(&self, module: &Slug) -> Result<ModuleLog, StoreError> {
        self.module_log_under(module, &self.trust()?)
    }

    fn module_log_under(&self, module: &Slug, trust: &TrustState) -> Result<ModuleLog, StoreError> {
        if !self.log_path(module).exists() {
            return Err(StoreError::UnknownModule(module.clone()));
        }
        let entries = self.log_entries(module)?;
        Ok(ModuleLog::validate(module.clone(), entries, trust)?)
    }

    /// Checks, without reading any package, that `entry` is a publish
    /// record the store would append now: its signer is a key the current
    /// trust root grants the module (not revoked), its signature verifies,
    /// it follows the log head, and its version is new. The signer is
    /// checked first, so an unauthenticated entry costs one signature
    /// check and never a read of the module's log. Takes no lock: the same
    /// checks run again when the package is committed
    /// ([`RegistryStore::publish_received`]).
    ///
    /// # Errors
    /// [`StoreError::WrongEntryKind`], [`StoreError::EntryRefused`]
    /// (unknown, ungranted or revoked key, bad signature),
    /// [`StoreError::Log`] (broken chain, existing version), or an error
    /// reading the trust chain or the log.
    pub fn authorise_publish(&self, entry: &SignedEntry) -> Result<(), StoreError> {
        let record = publish_record(entry)?;
        let trust = self.trust()?;
        entry
            .verify_signer(&trust)
            .map_err(|rejection| StoreError::EntryRefused {
                module: record.module.clone(),
                rejection: Box::new(rejection),
            })?;
        let mut log = self.log_or_empty(&record.module, &trust)?;
        log.append(entry.clone(), &trust)?;
        Ok(())
    }

    /// A fresh file in `tmp/` to receive a package into, hashed and
    /// bounded by [`StoreLimits::max_package_bytes`] as it is written. The
    /// file is removed when the [`PendingPackage`] (or the
    /// [`ReceivedPackage`] it becomes) is dropped without being published.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be created.
    pub fn receive_package(&self) -> Result<PendingPackage, StoreError> {
        let path = self.tmp_dir().join(format!(
            "{UPLOAD_PREFIX}{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok(PendingPackage {
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
            limit: self.limits.max_package_bytes,
            temp: TempFile(path),
        })
    }

    /// Publishes a version from package bytes in memory: the bytes are
    /// received into a temporary file as an upload is
    /// ([`RegistryStore::receive_package`]), then published with
    /// [`RegistryStore::publish_received`].
    ///
    /// # Errors
    /// [`StoreError::PackageTooLarge`] before anything is written, and
    /// every error of [`RegistryStore::publish_received`].
    pub fn publish(
        &self,
        entry: SignedEntry,
        package_bytes: &[u8],
        validate: impl FnOnce(&Package) -> Result<(), String>,
    ) -> Result<EntryHash, StoreError> {
        publish_record(&entry)?;
        let size = package_bytes.len() as u64;
        if size > self.limits.max_package_bytes {
            return Err(StoreError::PackageTooLarge {
                size,
                limit: self.limits.max_package_bytes,
            });
        }
        let mut pending = self.receive_package()?;
        pending.write(package_bytes)?;
        self.publish_received(entry, pending.finish()?, validate)
    }

    /// Publishes a received package under the store's lock: checks that
    /// `entry` is a publish record signed by a key granted the module and
    /// follows the log head, that the version is new, that the package
    /// hashes to the record's digest, parses and matches the record (slug,
    /// version, dependencies, API version), and that `validate` accepts it
    /// (the host checks the component there). Only then is the file linked
    /// into `blobs/` and the entry appended. The temporary file is removed
    /// whatever the outcome. Returns the new log head.
    ///
    /// # Errors
    /// [`StoreError::WrongEntryKind`], [`StoreError::Log`] (bad signature,
    /// unauthorised key, broken chain, existing version),
    /// [`StoreError::DigestMismatch`], [`StoreError::PackageTooLarge`],
    /// [`StoreError::Package`], [`StoreError::PackageMismatch`],
    /// [`StoreError::Rejected`], or an I/O error.
    pub fn publish_received(
        &self,
        entry: SignedEntry,
        received: ReceivedPackage,
        validate: impl FnOnce(&Package) -> Result<(), String>,
    ) -> Result<EntryHash, StoreError> {
        let record = publish_record(&entry)?.clone();
        if received.size > self.limits.max_package_bytes {
            return Err(StoreError::PackageTooLarge {
                size: received.size,
                limit: self.limits.max_package_bytes,
            });
        }

        let _lock = self.lock()?;
        let trust = self.trust()?;
        let mut log = self.log_or_empty(&record.module, &trust)?;
        let head = log.append(entry, &trust)?;

        if received.digest != record.digest {
            return Err(StoreError::DigestMismatch {
                record: record.digest,
                package: received.digest,
            });
        }
        // Read back from our own temporary file and hashed again: what is
        // parsed, validated and linked is what the record signs.
        let bytes = self.read_package_file(&received.temp.0, &record.digest)?;
        let package = Package::read(&bytes, self.limits.package)?;
        record.check_package(&package)?;
        validate(&package).map_err(|reason| StoreError::Rejected {
            module: record.module.clone(),
            version: record.version.clone(),
            reason,
        })?;
        drop(package);
        drop(bytes);

        self.link_blob(&record.digest, &received.temp.0)?;
        self.write_log(&log)?;
        Ok(head)
    }

    /// Appends a yank, deprecate or revoke entry to its module's log after
    /// the same checks [`ModuleLog::append`] makes. Returns the new head.
    ///
    /// # Errors
    /// [`StoreError::WrongEntryKind`] for a publish entry;
    /// [`StoreError::UnknownModule`]; [`StoreError::Log`] when the entry is
    /// refused.
    pub fn append_state(&self, entry: SignedEntry) -> Result<EntryHash, StoreError> {
        if let ModuleAction::Publish(_) = entry.entry.action {
            return Err(StoreError::WrongEntryKind {
                expected: "a yank, deprecate or revoke",
                found: "publish",
            });
        }
        let _lock = self.lock()?;
        let trust = self.trust()?;
        let mut log = self.module_log_under(entry.entry.action.module(), &trust)?;
        let head = log.append(entry, &trust)?;
        self.write_log(&log)?;
        Ok(head)
    }

    // ----- snapshots -----

    /// Issues the next snapshot over the heads of every module's log,
    /// signed by `keys`, expiring `expires_in` seconds after `now`. Every
    /// log is re-validated first, and the signatures must meet the trust
    /// root's snapshot threshold; otherwise nothing is written.
    ///
    /// # Errors
    /// [`StoreError::Log`] naming a log that no longer validates;
    /// [`StoreError::Snapshot`] when `keys` do not meet the snapshot
    /// threshold; an I/O error.
    pub fn snapshot(
        &self,
        keys: &[&KeyPair],
        expires_in: u64,
        now: u64,
    ) -> Result<SignedSnapshot, StoreError> {
        let _lock = self.lock()?;
        let trust = self.trust()?;
        let mut heads = BTreeMap::new();
        for module in self.modules()? {
            let log = self.module_log_under(&module, &trust)?;
            if let Some(head) = log.head() {
                heads.insert(module, head);
            }
        }
        let version = match self.current_snapshot()? {
            Some(previous) => previous.snapshot.version.saturating_add(1),
            None => 1,
        };
        let signed = Snapshot {
            version,
            expires: now.saturating_add(expires_in),
            heads,
        }
        .sign(keys)?;
        signed.verify(&trust)?;
        self.write_replacing(&self.snapshot_path(), &to_json(&signed)?)?;
        Ok(signed)
    }

    /// The current snapshot, if one was issued.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] or [`StoreError::Io`] when it cannot be read.
    pub fn current_snapshot(&self) -> Result<Option<SignedSnapshot>, StoreError> {
        let path = self.snapshot_path();
        if !path.exists() {
            return Ok(None);
        }
        self.read_json(&path).map(Some)
    }

    // ----- blobs -----

    /// The package file with `digest`, after checking its size and that its
    /// bytes still hash to `digest`.
    ///
    /// # Errors
    /// [`StoreError::BlobMissing`], [`StoreError::BlobTooLarge`],
    /// [`StoreError::BlobCorrupt`] or an I/O error.
    pub fn blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        self.read_package_file(&self.blob_path(digest), digest)
    }

    /// Reads a package file after checking its size, and checks that its
    /// bytes hash to `digest`.
    fn read_package_file(&self, path: &Path, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobMissing(*digest));
            }
            Err(e) => return Err(io_at(path)(e)),
        };
        let limit = self.limits.max_package_bytes;
        let size = file.metadata().map_err(io_at(path))?.len();
        if size > limit {
            return Err(StoreError::BlobTooLarge {
                digest: *digest,
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_at(path))?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::BlobTooLarge {
                digest: *digest,
                size: bytes.len() as u64,
                limit,
            });
        }
        let found = Digest::of(&bytes);
        if &found != digest {
            return Err(StoreError::BlobCorrupt {
                digest: *digest,
                found,
            });
        }
        Ok(bytes)
    }

    /// The package of `module` at `version`, read from its verified blob.
    ///
    /// # Errors
    /// [`StoreError::UnknownModule`], [`StoreError::UnknownVersion`], any
    /// error of [`RegistryStore::blob`], or [`StoreError::Package`].
    pub fn package(&self, module: &Slug, version: &Version) -> Result<Package, StoreError> {
        let log = self.module_log(module)?;
        let published = log
            .version(version)
            .ok_or_else(|| StoreError::UnknownVersion {
                module: module.clone(),
                version: version.clone(),
            })?;
        let bytes = self.blob(&published.publish.digest)?;
        Ok(Package::read(&bytes, self.limits.package)?)
    }

    // ----- files -----

    /// The stored root files as (version, path), sorted by version.
    fn root_files(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let dir = self.trust_dir();
        let mut roots = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = entry.map_err(io_at(&dir))?.path();
            match layout::root_file_version(&path) {
                Some(version) => roots.push((version, path)),
                None => {
                    return Err(StoreError::Corrupt {
                        path,
                        reason: "files in trust/ must be named <version>.root.json".into(),
                    });
                }
            }
        }
        roots.sort();
        Ok(roots)
    }

    fn log_or_empty(&self, module: &Slug, trust: &TrustState) -> Result<ModuleLog, StoreError> {
        match self.module_log_under(module, trust) {
            Err(StoreError::UnknownModule(_)) => Ok(ModuleLog::new(module.clone())),
            other => other,
        }
    }

    fn write_log(&self, log: &ModuleLog) -> Result<(), StoreError> {
        self.write_replacing(&self.log_path(log.module()), &to_json(&log.entries())?)
    }

    /// Links the verified file `received` (in `tmp/`) into `blobs/` as
    /// `digest`, unless an intact blob is already there; a damaged one is
    /// replaced. The caller removes `received`.
    fn link_blob(&self, digest: &Digest, received: &Path) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        match self.blob(digest) {
            Ok(_) => return Ok(()),
            Err(StoreError::BlobMissing(_)) => {}
            // A damaged blob is replaced by the verified bytes.
            Err(StoreError::BlobCorrupt { .. } | StoreError::BlobTooLarge { .. }) => {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
            Err(e) => return Err(e),
        }
        match fs::hard_link(received, &path) {
            // Another writer stored the same content first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other.map_err(io_at(&path)),
        }?;
        sync_dir(&self.blobs_dir())
    }

    /// Writes `bytes` to a fresh file in `tmp/`, flushed to disk.
    fn write_tmp(&self, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp_dir().join(format!(
            "{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(&tmp)(e));
        }
        Ok(tmp)
    }

    /// Replaces `path` atomically with `bytes`.
    fn write_replacing(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.write_tmp(bytes)?;
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(path)(e));
        }
        sync_parent(path)
    }

    /// Creates `path` atomically with `bytes`; never replaces a file.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.write_tmp(bytes)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        linked.map_err(io_at(path))?;
        sync_parent(path)
    }

    fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<T, StoreError> {
        layout::read_json(path, self.limits.max_metadata_bytes).map_err(|e| match e {
            ReadError::Io(source) => io_at(path)(source),
            ReadError::Corrupt(reason) => StoreError::Corrupt {
                path: path.to_owned(),
                reason,
            },
        })
    }

    /// Takes the store's exclusive lock until the returned file is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        file.lock().map_err(io_at(&path))?;
        Ok(file)
    }
}

/// The name prefix of files that receive packages in `tmp/`.
const UPLOAD_PREFIX: &str = "upload-";

/// The publish record of `entry`, or [`StoreError::WrongEntryKind`].
fn publish_record(entry: &SignedEntry) -> Result<&crate::records::Publish, StoreError> {
    match &entry.entry.action {
        ModuleAction::Publish(record) => Ok(record),
        other => Err(StoreError::WrongEntryKind {
            expected: "a publish",
            found: kind_of(other),
        }),
    }
}

/// A file in the store's `tmp/`, removed when dropped.
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A package being received into a temporary file of the store (see
/// [`RegistryStore::receive_package`]): each chunk is hashed and counted
/// as it is written, and a write past the size limit is refused. Dropped
/// before [`PendingPackage::finish`], the file is removed.
#[derive(Debug)]
pub struct PendingPackage {
    file: Option<File>,
    hasher: Sha256,
    size: u64,
    limit: u64,
    temp: TempFile,
}

impl PendingPackage {
    /// Appends `chunk` to the file. Blocking.
    ///
    /// # Errors
    /// [`StoreError::PackageTooLarge`] when the package would exceed the
    /// store's limit (nothing of `chunk` is written);
    /// [`StoreError::Io`] when the file cannot be written.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let size = self.size.saturating_add(chunk.len() as u64);
        if size > self.limit {
            return Err(StoreError::PackageTooLarge {
                size,
                limit: self.limit,
            });
        }
        let file = self.file.as_mut().ok_or_else(|| StoreError::Io {
            path: self.temp.0.clone(),
            source: io::Error::other("the package file was already finished"),
        })?;
        file.write_all(chunk).map_err(io_at(&self.temp.0))?;
        self.hasher.update(chunk);
        self.size = size;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes the file to disk and closes it. Blocking.
    ///
    /// # Errors
    /// [`StoreError::Io`] when it cannot be flushed.
    pub fn finish(self) -> Result<ReceivedPackage, StoreError> {
        let PendingPackage {
            file,
            hasher,
            size,
            temp,
            ..
        } = self;
        if let Some(file) = file {
            file.sync_all().map_err(io_at(&temp.0))?;
        }
        Ok(ReceivedPackage {
            digest: Digest::from_sha256(hasher.finalize().into()),
            size,
            temp,
        })
    }
}

/// A package received completely into a temporary file of the store, with
/// the sha256 and size of what was written. Dropped without being
/// published, the file is removed.
#[derive(Debug)]
pub struct ReceivedPackage {
    digest: Digest,
    size: u64,
    temp: TempFile,
}

impl ReceivedPackage {
    /// The sha256 of the bytes received.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The number of bytes received.
    pub fn size(&self) -> u64 {
        self.size
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(CanonicalError::from)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Flushes a directory so a rename or link into it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

fn kind_of(action: &ModuleAction) -> &'static str {
    match action {
        ModuleAction::Publish(_) => "publish",
        ModuleAction::Yank(_) => "yank",
        ModuleAction::Deprecate(_) => "deprecate",
        ModuleAction::Revoke(_) => "revoke",
    }
}

impl From<crate::records::ManifestMismatch> for StoreError {
    fn from(m: crate::records::ManifestMismatch) -> Self {
        StoreError::PackageMismatch {
            field: m.field,
            record: m.record,
            package: m.package,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ApiVersion;
    use crate::records::Publish;
    use crate::records::tests::slug;
    use crate::records::{Revoke, VersionState, Yank};
    use crate::snapshot::SnapshotGuard;
    use crate::trust::tests::Operator;

    const WASM: &[u8] = b"\0asm\x0d\0\x01\0";

    struct Fixture {
        dir: tempfile::TempDir,
        op: Operator,
        store: RegistryStore,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let op = Operator::new();
        let store = RegistryStore::create(
            dir.path(),
            op.root_v1().sign(&[&op.root]).unwrap(),
            StoreLimits::default(),
        )
        .unwrap();
        Fixture { dir, op, store }
    }

    fn package_bytes(version: &str, deps: &str) -> Vec<u8> {
        let manifest = format!(
            "slug: membership\nname: Membership\nversion: {version}\ncategory: tools\napi: 0.1.0\n{deps}"
        );
        Package::build(&manifest, WASM).unwrap()
    }

    fn publish_record(version: &str, bytes: &[u8]) -> Publish {
        Publish {
            module: slug("membership"),
            version: Version::parse(version).unwrap(),
            digest: Digest::of(bytes),
            dependencies: BTreeMap::new(),
            api: ApiVersion::V0_1_0,
            published_at: 1_700_000_000,
        }
    }

    impl Fixture {
        fn head(&self) -> Option<EntryHash> {
            self.store.module_log(&slug("membership")).ok()?.head()
        }

        fn sign(&self, action: ModuleAction, key: &KeyPair) -> SignedEntry {
            SignedEntry::sign(self.head(), action, key).unwrap()
        }

        /// A publish entry for `bytes` as `version`, signed by `key`.
        fn sign_publish(&self, version: &str, bytes: &[u8], key: &KeyPair) -> SignedEntry {
            self.sign(ModuleAction::Publish(publish_record(version, bytes)), key)
        }

        fn publish(&self, version: &str) -> Result<EntryHash, StoreError> {
            let bytes = package_bytes(version, "");
            let entry = self.sign_publish(version, &bytes, &self.op.publisher);
            self.store.publish(entry, &bytes, |_| Ok(()))
        }
    }

    fn accept_all(_: &Package) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn published_package_is_stored_and_read_back_verified() {
        let f = fixture();
        let head = f.publish("1.0.0").unwrap();
        let log = f.store.module_log(&slug("membership")).unwrap();
        assert_eq!(log.head(), Some(head));
        let version = Version::parse("1.0.0").unwrap();
        let package = f.store.package(&slug("membership"), &version).unwrap();
        assert_eq!(package.manifest.version, version);
        assert_eq!(package.digest, Digest::of(&package_bytes("1.0.0", "")));
        assert!(
            f.dir
                .path()
                .join("blobs/sha256")
                .join(package.digest.hex())
                .is_file()
        );
        assert!(f.dir.path().join("logs/membership.json").is_file());
        assert_eq!(fs::read_dir(f.dir.path().join("tmp")).unwrap().count(), 0);
        // A reopened store sees the same state.
        let reopened = RegistryStore::open(f.dir.path(), StoreLimits::default()).unwrap();
        assert_eq!(reopened.modules().unwrap(), vec![slug("membership")]);
        assert_eq!(
            reopened.module_log(&slug("membership")).unwrap().head(),
            Some(head)
        );
    }

    #[test]
    fn tampered_package_bytes_are_refused() {
        let f = fixture();
        let bytes = package_bytes("1.0.0", "");
        let entry = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = f.store.publish(entry, &tampered, accept_all).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(f.store.module_log(&slug("membership")).is_err());
        assert_eq!(
            fs::read_dir(f.dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn publish_signed_by_an_unknown_key_is_refused() {
        let f = fixture();
        let bytes = package_bytes("1.0.0", "");
        let stranger = KeyPair::generate();
        let entry = f.sign_publish("1.0.0", &bytes, &stranger);
        let err = f.store.publish(entry, &bytes, accept_all).unwrap_err();
        assert!(err.to_string().contains("is not a publisher key"), "{err}");
    }

    #[test]
    fn republishing_an_existing_version_is_refused() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        // Different bytes under the same version.
        let bytes = package_bytes("1.0.0", "description: changed\n");
        let entry = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        let err = f.store.publish(entry, &bytes, accept_all).unwrap_err();
        assert!(err.to_string().contains("already published"), "{err}");
        let log = f.store.module_log(&slug("membership")).unwrap();
        assert_eq!(log.entries().len(), 1);
    }

    #[test]
    fn package_whose_manifest_differs_from_the_record_is_refused() {
        let f = fixture();
        let bytes = package_bytes("1.0.0", "dependencies:\n  acme-crm: \">=1.2, <2\"\n");
        // The record omits the dependency the manifest declares.
        let entry = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        let err = f.store.publish(entry, &bytes, accept_all).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::PackageMismatch {
                    field: "dependencies",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("acme-crm >=1.2, <2"), "{err}");

        let bytes = package_bytes("1.0.1", "");
        let entry = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        assert!(matches!(
            f.store.publish(entry, &bytes, accept_all),
            Err(StoreError::PackageMismatch {
                field: "version",
                ..
            })
        ));
    }

    #[test]
    fn validator_refusal_stores_nothing() {
        let f = fixture();
        let bytes = package_bytes("1.0.0", "");
        let entry = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        let err = f
            .store
            .publish(entry, &bytes, |_| {
                Err("component does not export souk:module/http@0.1.0".into())
            })
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("membership 1.0.0 was refused: component does not export"),
            "{err}"
        );
        assert!(matches!(
            f.store.module_log(&slug("membership")),
            Err(StoreError::UnknownModule(_))
        ));
    }

    #[test]
    fn oversized_package_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let op = Operator::new();
        let limits = StoreLimits {
            max_package_bytes: 1024,
            ..StoreLimits::default()
        };
        let store =
            RegistryStore::create(dir.path(), op.root_v1().sign(&[&op.root]).unwrap(), limits)
                .unwrap();
        let bytes = package_bytes("1.0.0", "");
        assert!(bytes.len() > 1024);
        let entry = SignedEntry::sign(
            None,
            ModuleAction::Publish(publish_record("1.0.0", &bytes)),
            &op.publisher,
        )
        .unwrap();
        let err = store.publish(entry, &bytes, accept_all).unwrap_err();
        assert!(
            matches!(err, StoreError::PackageTooLarge { limit: 1024, .. }),
            "{err}"
        );
    }

    fn tmp_count(f: &Fixture) -> usize {
        fs::read_dir(f.dir.path().join("tmp")).unwrap().count()
    }

    #[test]
    fn every_refused_publish_removes_its_received_file() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        let bytes = package_bytes("1.1.0", "");
        let good = f.sign_publish("1.1.0", &bytes, &f.op.publisher);
        let receive = |bytes: &[u8]| {
            let mut pending = f.store.receive_package().unwrap();
            pending.write(bytes).unwrap();
            assert_eq!(tmp_count(&f), 1);
            pending.finish().unwrap()
        };
        let mut tampered = bytes.clone();
        tampered[0] ^= 1;
        let stale = SignedEntry::sign(
            None,
            ModuleAction::Publish(publish_record("1.1.0", &bytes)),
            &f.op.publisher,
        )
        .unwrap();
        let stranger = f.sign_publish("1.1.0", &bytes, &KeyPair::generate());
        let cases: Vec<(&str, SignedEntry, Vec<u8>, bool)> = vec![
            ("digest mismatch", good.clone(), tampered, true),
            ("stale head", stale, bytes.clone(), true),
            ("unknown key", stranger, bytes.clone(), true),
            ("validator refusal", good.clone(), bytes.clone(), false),
        ];
        for (name, entry, body, accept) in cases {
            let received = receive(&body);
            let result = f.store.publish_received(entry, received, |_| {
                if accept { Ok(()) } else { Err("no".into()) }
            });
            assert!(result.is_err(), "{name}");
            assert_eq!(tmp_count(&f), 0, "{name}");
            assert_eq!(
                f.store
                    .module_log(&slug("membership"))
                    .unwrap()
                    .entries()
                    .len(),
                1,
                "{name}"
            );
        }
        // A pending package dropped before it is finished goes too.
        let mut pending = f.store.receive_package().unwrap();
        pending.write(&bytes[..10]).unwrap();
        drop(pending);
        assert_eq!(tmp_count(&f), 0);
        // Writes past the limit are refused and nothing past it is kept.
        let small = RegistryStore::open(
            f.dir.path(),
            StoreLimits {
                max_package_bytes: 100,
                ..StoreLimits::default()
            },
        )
        .unwrap();
        let mut pending = small.receive_package().unwrap();
        pending.write(&[0; 60]).unwrap();
        assert!(matches!(
            pending.write(&[0; 41]),
            Err(StoreError::PackageTooLarge { limit: 100, .. })
        ));
        assert_eq!(pending.size(), 60);
        drop(pending);
        assert_eq!(tmp_count(&f), 0);
        // The good one is stored, its file linked into blobs/.
        let received = receive(&bytes);
        assert_eq!(received.digest(), Digest::of(&bytes));
        f.store
            .publish_received(good, received, accept_all)
            .unwrap();
        assert_eq!(tmp_count(&f), 0);
        assert_eq!(f.store.blob(&Digest::of(&bytes)).unwrap(), bytes);
    }

    #[test]
    fn authorise_publish_checks_signer_signature_head_and_version_without_a_package() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        let bytes = package_bytes("1.1.0", "");
        let action = ModuleAction::Publish(publish_record("1.1.0", &bytes));
        assert!(
            f.store
                .authorise_publish(&f.sign(action.clone(), &f.op.publisher))
                .is_ok()
        );
        let err = f
            .store
            .authorise_publish(&f.sign(action.clone(), &KeyPair::generate()))
            .unwrap_err();
        assert!(matches!(err, StoreError::EntryRefused { .. }), "{err}");
        let mut forged = f.sign(action.clone(), &f.op.publisher);
        forged.signature = KeyPair::generate().sign(b"x");
        assert!(matches!(
            f.store.authorise_publish(&forged),
            Err(StoreError::EntryRefused { .. })
        ));
        let stale = SignedEntry::sign(None, action, &f.op.publisher).unwrap();
        assert!(matches!(
            f.store.authorise_publish(&stale),
            Err(StoreError::Log(_))
        ));
        let again = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        assert!(matches!(
            f.store.authorise_publish(&again),
            Err(StoreError::Log(_))
        ));
        // Nothing was written by any of it.
        assert_eq!(
            f.store
                .module_log(&slug("membership"))
                .unwrap()
                .entries()
                .len(),
            1
        );
        assert_eq!(tmp_count(&f), 0);
    }

    #[test]
    fn truncated_blob_on_disk_is_refused() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        let digest = Digest::of(&package_bytes("1.0.0", ""));
        let path = f.dir.path().join("blobs/sha256").join(digest.hex());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = f.store.blob(&digest).unwrap_err();
        assert!(matches!(err, StoreError::BlobCorrupt { .. }), "{err}");
        assert!(
            f.store
                .package(&slug("membership"), &Version::parse("1.0.0").unwrap())
                .is_err()
        );
    }

    #[test]
    fn oversized_blob_on_disk_is_refused() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        let digest = Digest::of(&package_bytes("1.0.0", ""));
        let path = f.dir.path().join("blobs/sha256").join(digest.hex());
        let small = RegistryStore::open(
            f.dir.path(),
            StoreLimits {
                max_package_bytes: 100,
                ..StoreLimits::default()
            },
        )
        .unwrap();
        assert!(fs::metadata(&path).unwrap().len() > 100);
        assert!(matches!(
            small.blob(&digest),
            Err(StoreError::BlobTooLarge { limit: 100, .. })
        ));
    }

    #[test]
    fn yank_and_revoke_are_appended_and_change_status() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        f.publish("1.1.0").unwrap();
        let v100 = Version::parse("1.0.0").unwrap();
        let v110 = Version::parse("1.1.0").unwrap();
        f.store
            .append_state(f.sign(
                ModuleAction::Yank(Yank {
                    module: slug("membership"),
                    version: v100.clone(),
                    reason: "loses notes".into(),
                }),
                &f.op.publisher,
            ))
            .unwrap();
        f.store
            .append_state(f.sign(
                ModuleAction::Revoke(Revoke {
                    module: slug("membership"),
                    version: v110.clone(),
                    reason: "malicious".into(),
                }),
                &f.op.publisher,
            ))
            .unwrap();
        let log = f.store.module_log(&slug("membership")).unwrap();
        assert_eq!(log.status(&v100).unwrap().state(), VersionState::Yanked);
        assert_eq!(log.status(&v110).unwrap().state(), VersionState::Revoked);
    }

    #[test]
    fn append_state_refuses_a_publish_entry() {
        let f = fixture();
        let bytes = package_bytes("1.0.0", "");
        let entry = f.sign_publish("1.0.0", &bytes, &f.op.publisher);
        assert!(matches!(
            f.store.append_state(entry),
            Err(StoreError::WrongEntryKind { .. })
        ));
    }

    #[test]
    fn snapshots_grow_cover_every_head_and_are_accepted_by_a_client() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        let first = f.store.snapshot(&[&f.op.snapshot], 3600, 1000).unwrap();
        assert_eq!(first.snapshot.version, 1);
        assert_eq!(first.snapshot.expires, 4600);
        f.publish("1.1.0").unwrap();
        let second = f.store.snapshot(&[&f.op.snapshot], 3600, 2000).unwrap();
        assert_eq!(second.snapshot.version, 2);
        assert_eq!(f.store.current_snapshot().unwrap(), Some(second.clone()));

        let trust = f.op.trust();
        let mut guard = SnapshotGuard::new();
        guard.accept(&second, &trust, 2001).unwrap();
        let log = f.store.module_log(&slug("membership")).unwrap();
        assert!(guard.check_log(&log).is_ok());
        assert!(matches!(
            guard.accept(&first, &trust, 2001),
            Err(SnapshotError::Rollback { .. })
        ));
    }

    #[test]
    fn snapshot_signed_without_a_snapshot_key_is_not_issued() {
        let f = fixture();
        f.publish("1.0.0").unwrap();
        let err = f
            .store
            .snapshot(&[&f.op.publisher], 3600, 1000)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Snapshot(SnapshotError::BadSignature { .. })
            ),
            "{err}"
        );
        assert_eq!(f.store.current_snapshot().unwrap(), None);
    }

    #[test]
    fn trust_root_rotations_are_stored_and_followed_by_a_pinned_client() {
        let f = fixture();
        let pinned = f.store.trust().unwrap();
        let root2 = KeyPair::generate();
        let mut doc2 = f.op.root_v1();
        doc2.version = 2;
        doc2.root = crate::trust::KeySet::single(root2.public());
        f.store
            .rotate_trust_root(doc2.clone().sign(&[&f.op.root, &root2]).unwrap())
            .unwrap();
        let mut doc3 = doc2;
        doc3.version = 3;
        let root3 = KeyPair::generate();
        doc3.root = crate::trust::KeySet::single(root3.public());
        f.store
            .rotate_trust_root(doc3.clone().sign(&[&root2, &root3]).unwrap())
            .unwrap();

        // A rotation signed only by the new key is refused.
        let mut doc4 = doc3;
        doc4.version = 4;
        let root4 = KeyPair::generate();
        doc4.root = crate::trust::KeySet::single(root4.public());
        assert!(matches!(
            f.store.rotate_trust_root(doc4.sign(&[&root4]).unwrap()),
            Err(StoreError::Trust(TrustError::RotationNotSigned { .. }))
        ));

        let chain = f.store.trust_chain().unwrap();
        assert_eq!(chain.len(), 3);
        let mut client = pinned;
        assert_eq!(client.update(&chain, 5).unwrap(), 3);
        assert_eq!(f.store.trust().unwrap().version(), 3);
    }

    #[test]
    fn creating_a_store_twice_is_refused() {
        let f = fixture();
        let err = RegistryStore::create(
            f.dir.path(),
            f.op.root_v1().sign(&[&f.op.root]).unwrap(),
            StoreLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyInitialised { .. }),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            RegistryStore::open(empty.path(), StoreLimits::default()),
            Err(StoreError::NotInitialised { .. })
        ));
    }
}
