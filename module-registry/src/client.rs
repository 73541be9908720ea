//! The host's side of the registry: a client that downloads trust roots,
//! snapshots, module logs and packages from a registry's HTTP API
//! ([`crate::http`]), verifies all of it, and caches only what verified.
//!
//! What the client guarantees to its caller:
//!
//! - **trust** starts at a root the host pinned and follows only rotations
//!   signed by the old and the new root keys ([`TrustState::update`]);
//! - **snapshots** verify under the trusted snapshot keys, never go back in
//!   version (the last accepted snapshot is persisted, so a restart does
//!   not reopen the window) and are refused once expired;
//! - **module logs** verify entry by entry and must end at the head the
//!   snapshot lists (no mix-and-match);
//! - **packages** are read with a hard byte limit while streaming, must
//!   hash to the digest of the signed publish record, parse, and carry a
//!   manifest that says what the record says;
//! - **revoked** versions are never handed out for running.
//!
//! Cache layout under the cache directory (everything in it is
//! re-verified when read back):
//!
//! ```text
//! trust/<version>.root.json   roots accepted after the pinned one
//! snapshot.json               the last accepted signed snapshot
//! logs/<slug>.json            each module's log as of that snapshot
//! blobs/sha256/<hex>          verified package files
//! tmp/                        files being written, then renamed
//! ```
//!
//! The client speaks plain HTTP: the workspace builds `reqwest` without a
//! TLS backend, which suits a registry on loopback or a private network.
//! Reaching an `https://` registry needs a TLS feature of `reqwest`
//! (`rustls-tls`) enabled in this crate.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt as _;
use semver::Version;
use serde::de::DeserializeOwned;

use crate::http::{API_PREFIX, AppendReceipt, ENTRY_HEADER, ProblemDocument};
use crate::layout::{self, Layout, ReadError};
use crate::manifest::{Dependency, Slug};
use crate::package::{Digest, Package, PackageError, PackageLimits};
use crate::records::{LogError, ModuleLog, Publish, SignedEntry, VersionStatus};
use crate::resolve::{OfferedVersion, RegistryIndex};
use crate::snapshot::{SignedSnapshot, Snapshot, SnapshotError, SnapshotGuard};
use crate::store::StoreLimits;
use crate::trust::{SignedTrustRoot, TrustError, TrustState};

/// Upload chunk size: small enough for a smooth progress bar, large
/// enough not to cost a syscall per few bytes.
const UPLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// Limits and timeouts of a [`RegistryClient`].
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Largest package download accepted; a download is cut off as soon as
    /// it passes this. Default: the store's default package limit (the
    /// package limits plus 16 KiB of tar framing, about 32 MiB).
    pub max_package_bytes: u64,
    /// Largest trust chain, snapshot or log response accepted. Default
    /// 16 MiB, the store's own metadata limit.
    pub max_metadata_bytes: u64,
    /// Limits applied when parsing a downloaded package.
    pub package_limits: PackageLimits,
    /// Timeout of each whole request, body included. Default 60 s, which a
    /// 32 MiB package needs only on a link slower than ~5 Mbit/s.
    pub timeout: Duration,
    /// How many times a publish answered 503 `too-many-uploads` (the
    /// registry is receiving as many packages as it allows) is sent again,
    /// each after the answer's `Retry-After` (at most
    /// [`MAX_RETRY_AFTER`]). Default 3.
    pub busy_retries: u32,
}

/// The longest `Retry-After` a publish waits before sending again; a
/// registry asking for longer gets its refusal returned instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Default for ClientOptions {
    fn default() -> Self {
        let store = StoreLimits::default();
        ClientOptions {
            max_package_bytes: store.max_package_bytes,
            max_metadata_bytes: store.max_metadata_bytes,
            package_limits: store.package,
            timeout: Duration::from_secs(60),
            busy_retries: 3,
        }
    }
}

/// Why the client refused or could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry URL is not usable.
    #[error("registry URL {url:?} is invalid: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        reason: String,
    },
    /// The registry could not be reached, or the request failed or timed
    /// out.
    #[error(
        "registry request {url} failed: {source}; check that the registry is running and reachable"
    )]
    Http { url: String, source: reqwest::Error },
    /// The registry answered with an error problem document.
    #[error("the registry refused {url}: {problem}")]
    Refused {
        url: String,
        /// The registry's problem document.
        problem: ProblemDocument,
    },
    /// The registry answered with an error status and no problem document.
    #[error("the registry answered {url} with status {status}")]
    Status {
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// A response is larger than the limit; it was not read further.
    #[error(
        "{what} from {url} is larger than the limit of {limit} bytes; the registry may be hostile or the limit too low"
    )]
    TooLarge {
        /// What was being downloaded (`package`, `metadata`).
        what: &'static str,
        url: String,
        /// In bytes.
        limit: u64,
    },
    /// A response body ended before its announced length, or differs from
    /// it.
    #[error(
        "{what} from {url} was cut off or mis-sized: {received} bytes received, {announced} announced"
    )]
    Truncated {
        /// What was being downloaded.
        what: &'static str,
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes the Content-Length announced (`unknown` if none).
        announced: String,
    },
    /// A metadata response does not parse.
    #[error("the registry's answer to {url} is not valid: {reason}")]
    Malformed { url: String, reason: String },
    /// The trust chain was refused (bad rotation, expired root, fork).
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The snapshot was refused (rollback, freeze, bad signature,
    /// mix-and-match).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A module log does not verify.
    #[error(transparent)]
    Log(#[from] Box<LogError>),
    /// No verified index yet: call [`RegistryClient::refresh`] or
    /// [`RegistryClient::offline_index`] first.
    #[error(
        "no verified registry index yet: refresh from the registry (or load the cached index) first"
    )]
    NotRefreshed,
    /// The module is not in the verified index.
    #[error("module `{0}` is not in the registry's snapshot")]
    UnknownModule(Slug),
    /// The version was never published.
    #[error("module `{module}` has no version {version} in the registry")]
    UnknownVersion { module: Slug, version: Version },
    /// The version is revoked: it must not run.
    #[error("{module} {version} is revoked ({reason}); it must not be installed or run")]
    Revoked {
        module: Slug,
        version: Version,
        /// The revocation's reason.
        reason: String,
    },
    /// The package does not hash to the signed digest.
    #[error(
        "the package for {package} hashes to {found}, but the signed record says {expected}: it was altered in transit or by the registry"
    )]
    DigestMismatch {
        /// The module and version, `membership 1.2.0`.
        package: String,
        /// The signed digest.
        expected: Digest,
        /// The digest of what was received.
        found: Digest,
    },
    /// The package does not parse.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The package's manifest disagrees with the signed record.
    #[error("the package's manifest says {field} {package}, but the signed record says {record}")]
    PackageMismatch {
        field: &'static str,
        /// The record's value.
        record: String,
        /// The manifest's value.
        package: String,
    },
    /// The package is not in the cache (offline).
    #[error(
        "{module} {version} is not in the local registry cache; fetch it while the registry is reachable"
    )]
    NotCached { module: Slug, version: Version },
    /// Nothing verified is cached yet (offline).
    #[error(
        "the registry cache at {0} holds no verified snapshot; refresh from the registry once first"
    )]
    EmptyCache(PathBuf),
    /// A cache file could not be read or written.
    #[error("registry cache file {path}: {source}")]
    CacheIo { path: PathBuf, source: io::Error },
    /// A cache file does not parse or verify.
    #[error(
        "registry cache file {path} is corrupt: {reason}; remove the cache directory and refresh"
    )]
    CacheCorrupt { path: PathBuf, reason: String },
}

impl From<LogError> for ClientError {
    fn from(e: LogError) -> Self {
        ClientError::Log(Box::new(e))
    }
}

impl From<crate::records::ManifestMismatch> for ClientError {
    fn from(m: crate::records::ManifestMismatch) -> Self {
        ClientError::PackageMismatch {
            field: m.field,
            record: m.record,
            package: m.package,
        }
    }
}

impl ClientError {
    /// The problem kind (`version-exists`, `unknown-key`, ...) when the
    /// registry refused the request with a problem document.
    pub fn problem_kind(&self) -> Option<&str> {
        match self {
            ClientError::Refused { problem, .. } => Some(problem.kind_name()),
            _ => None,
        }
    }
}

/// The registry's state as verified at one snapshot: every module's log,
/// checked against the snapshot and the trust root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIndex {
    snapshot: Snapshot,
    trust_version: u64,
    logs: BTreeMap<Slug, ModuleLog>,
}

impl VerifiedIndex {
    /// The version of the snapshot this index was verified against.
    pub fn snapshot_version(&self) -> u64 {
        self.snapshot.version
    }

    /// When that snapshot expires (unix seconds).
    pub fn expires(&self) -> u64 {
        self.snapshot.expires
    }

    /// The version of the trust root the logs were verified under.
    pub fn trust_version(&self) -> u64 {
        self.trust_version
    }

    /// Every module, sorted.
    pub fn modules(&self) -> impl Iterator<Item = &Slug> {
        self.logs.keys()
    }

    /// A module's verified log.
    pub fn log(&self, module: &Slug) -> Option<&ModuleLog> {
        self.logs.get(module)
    }

    /// The signed publish record of a version.
    pub fn publish(&self, module: &Slug, version: &Version) -> Option<&Publish> {
        Some(&self.logs.get(module)?.version(version)?.publish)
    }

    /// A version's status (yanked, deprecated, revoked), module-wide
    /// deprecation included; `None` if it was never published.
    pub fn status(&self, module: &Slug, version: &Version) -> Option<VersionStatus> {
        self.logs.get(module)?.status(version)
    }

    /// The versions of `module` a new resolution may choose (neither
    /// yanked nor revoked), oldest first.
    pub fn choosable_versions(&self, module: &Slug) -> Vec<&Publish> {
        let Some(log) = self.logs.get(module) else {
            return Vec::new();
        };
        log.versions()
            .filter(|v| {
                log.status(&v.publish.version)
                    .is_some_and(|s| s.may_be_chosen())
            })
            .map(|v| &v.publish)
            .collect()
    }

    /// The index for the resolver: every version that may run, yanked ones
    /// flagged (installable from a lockfile, never chosen anew); revoked
    /// versions are left out.
    pub fn registry_index(&self) -> RegistryIndex {
        let mut index = RegistryIndex::new();
        for (module, log) in &self.logs {
            for published in log.versions() {
                let record = &published.publish;
                let Some(status) = log.status(&record.version) else {
                    continue;
                };
                if !status.may_run() {
                    continue;
                }
                let offered = OfferedVersion {
                    version: record.version.clone(),
                    dependencies: record
                        .dependencies
                        .iter()
                        .map(|(slug, requirement)| Dependency {
                            slug: slug.clone(),
                            requirement: requirement.clone(),
                        })
                        .collect(),
                    digest: record.digest,
                    yanked: status.yanked.is_some(),
                };
                // Versions in a verified log are unique; a duplicate
                // cannot occur.
                let _ = index.offer(module.clone(), offered);
            }
        }
        index
    }
}

/// A package that verified against its signed publish record.
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    /// The parsed package.
    pub package: Package,
    /// The signed publish record it matches.
    pub publish: Publish,
    /// The version's status when it was verified (never revoked).
    pub status: VersionStatus,
    /// The verified package file in the cache.
    pub path: PathBuf,
}

/// What the client has verified so far.
#[derive(Debug)]
struct Verified {
    trust: TrustState,
    guard: SnapshotGuard,
    index: Option<VerifiedIndex>,
}

/// A verifying client of one registry, for a host.
#[derive(Debug)]
pub struct RegistryClient {
    api: String,
    cache: Cache,
    pinned: SignedTrustRoot,
    options: ClientOptions,
    http: reqwest::Client,
    verified: tokio::sync::Mutex<Verified>,
}

impl RegistryClient {
    /// A client of the registry at `base_url` (`http://host:port`; the API
    /// lives under [`API_PREFIX`]) that trusts `pinned` and the rotations
    /// from it already in `cache_dir` (created if missing), and resumes
    /// the rollback guard from the cached snapshot.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`]; [`ClientError::Trust`] when `pinned`
    /// is not validly self-signed; [`ClientError::CacheCorrupt`] when the
    /// cached chain or snapshot does not verify from `pinned`;
    /// [`ClientError::CacheIo`].
    pub fn new(
        base_url: &str,
        cache_dir: &Path,
        pinned: SignedTrustRoot,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: e.to_string(),
        })?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_owned(),
                reason: "the scheme must be http or https".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(|source| ClientError::Http {
                url: base_url.to_owned(),
                source,
            })?;
        let cache = Cache::open(cache_dir)?;
        let trust = cache.trust_from(&pinned, options.max_metadata_bytes)?;
        let guard = match cache.read_snapshot(options.max_metadata_bytes)? {
            Some(signed) => {
                signed
                    .verify(&trust)
                    .map_err(|e| ClientError::CacheCorrupt {
                        path: cache.snapshot_path(),
                        reason: e.to_string(),
                    })?;
                SnapshotGuard::resume(signed.snapshot.version)
            }
            None => SnapshotGuard::new(),
        };
        Ok(RegistryClient {
            api: format!("{base}{API_PREFIX}"),
            cache,
            pinned,
            options,
            http,
            verified: tokio::sync::Mutex::new(Verified {
                trust,
                guard,
                index: None,
            }),
        })
    }

    /// Like [`RegistryClient::new`], trusting the root in `root_file` (a
    /// signed trust root as JSON, e.g. copied from the operator): trust on
    /// first use from that file.
    ///
    /// # Errors
    /// [`ClientError::CacheIo`] or [`ClientError::CacheCorrupt`] when the
    /// file cannot be read or parsed; any error of [`RegistryClient::new`].
    pub fn from_root_file(
        base_url: &str,
        cache_dir: &Path,
        root_file: &Path,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let root = read_json(root_file, options.max_metadata_bytes)?;
        RegistryClient::new(base_url, cache_dir, root, options)
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache.dir
    }

    /// The version of the trust root currently trusted.
    pub async fn trust_version(&self) -> u64 {
        self.verified.lock().await.trust.version()
    }

    /// Fetches the trust chain, the snapshot and every module log the
    /// snapshot lists, verifies them at time `now` (unix seconds) and, only
    /// if all of it verifies, caches it and returns the index. On error
    /// nothing the client trusts changes.
    ///
    /// # Errors
    /// [`ClientError::Trust`] (rotation not signed, expired root, fork),
    /// [`ClientError::Snapshot`] (rollback, expired, bad signature,
    /// mix-and-match), [`ClientError::Log`], network and size errors,
    /// [`ClientError::CacheIo`].
    pub async fn refresh(&self, now: u64) -> Result<VerifiedIndex, ClientError> {
        let mut verified = self.verified.lock().await;

        let chain: Vec<SignedTrustRoot> = self.get_json("/trust").await?;
        let mut trust = verified.trust.clone();
        let before = trust.version();
        trust.update(&chain, now)?;
        let new_roots: Vec<&SignedTrustRoot> = chain
            .iter()
            .filter(|r| r.root.version > before && r.root.version <= trust.version())
            .collect();

        let signed: SignedSnapshot = self.get_json("/snapshot").await?;
        let mut guard = verified.guard.clone();
        guard.accept(&signed, &trust, now)?;

        let mut logs = BTreeMap::new();
        for module in signed.snapshot.heads.keys() {
            let entries: Vec<SignedEntry> = self
                .get_json(&format!("/modules/{}/log", module.as_str()))
                .await?;
            let log = ModuleLog::validate(module.clone(), entries, &trust)?;
            guard.check_log(&log)?;
            logs.insert(module.clone(), log);
        }

        // Roots first, snapshot last: a crash in between leaves a cache
        // whose snapshot still verifies under the cached roots.
        for root in new_roots {
            self.cache.write_root(root)?;
        }
        for log in logs.values() {
            self.cache.write_log(log)?;
        }
        self.cache.remove_logs_except(&logs)?;
        self.cache.write_snapshot(&signed)?;

        let index = VerifiedIndex {
            snapshot: signed.snapshot,
            trust_version: trust.version(),
            logs,
        };
        verified.trust = trust;
        verified.guard = guard;
        verified.index = Some(index.clone());
        Ok(index)
    }

    /// The package of `module` at `version` from the last verified index:
    /// from the cache when a verified copy is there, else downloaded with
    /// the package limit enforced while streaming, checked against the
    /// signed record, and cached. A yanked version is still returned (a
    /// lockfile may name it); check [`VerifiedPackage::status`].
    ///
    /// # Errors
    /// [`ClientError::NotRefreshed`], [`ClientError::UnknownModule`],
    /// [`ClientError::UnknownVersion`], [`ClientError::Revoked`],
    /// [`ClientError::TooLarge`], [`ClientError::Truncated`],
    /// [`ClientError::DigestMismatch`], [`ClientError::Package`],
    /// [`ClientError::PackageMismatch`], network and cache errors.
    pub async fn fetch_package(
        &self,
        module: &Slug,
        version: &Version,
    ) -> Result<VerifiedPackage, ClientError> {
        let (publish, status) = {
            let verified = self.verified.lock().await;
            let index = verified.index.as_ref().ok_or(ClientError::NotRefreshed)?;
            runnable(index, module, version)?
        };
        if let Some(bytes) = self
            .cache
            .read_blob(&publish.digest, self.options.max_package_bytes)?
            && let Ok(package) = self.verify_package(&publish, &bytes)
        {
            return Ok(VerifiedPackage {
                package,
                publish: publish.clone(),
                status,
                path: self.cache.blob_path(&publish.digest),
            });
        }
        let path = format!("/blobs/sha256/{}", publish.digest.hex());
        let (url, response) = self.get(&path).await?;
        let bytes = read_limited(response, &url, self.options.max_package_bytes, "package").await?;
        let package = self.verify_package(&publish, &bytes)?;
        self.cache.write_blob(&publish.digest, &bytes)?;
        Ok(VerifiedPackage {
            package,
            path: self.cache.blob_path(&publish.digest),
            publish,
            status,
        })
    }

    /// The index as last cached by [`RegistryClient::refresh`], without the
    /// network: the cached snapshot must verify under the cached trust
    /// (reached from the pinned root), and every cached log must verify and
    /// end at the snapshot's head. The snapshot's expiry is not checked, so
    /// a host can still install what it verified earlier while the
    /// registry is unreachable; it cannot learn of yanks or revocations
    /// made since.
    ///
    /// # Errors
    /// [`ClientError::EmptyCache`], [`ClientError::CacheCorrupt`],
    /// [`ClientError::Log`], [`ClientError::Snapshot`],
    /// [`ClientError::CacheIo`].
    pub async fn offline_index(&self) -> Result<VerifiedIndex, ClientError> {
        let mut verified = self.verified.lock().await;
        let max = self.options.max_metadata_bytes;
        let trust = self.cache.trust_from(&self.pinned, max)?;
        let signed = self
            .cache
            .read_snapshot(max)?
            .ok_or_else(|| ClientError::EmptyCache(self.cache.dir.clone()))?;
        signed.verify(&trust)?;
        if let Some(last) = verified.guard.last_accepted_version()
            && signed.snapshot.version < last
        {
            return Err(SnapshotError::Rollback {
                offered: signed.snapshot.version,
                last_accepted: last,
            }
            .into());
        }
        let mut logs = BTreeMap::new();
        for (module, head) in &signed.snapshot.heads {
            let entries = self.cache.read_log(module, max)?;
            let log = ModuleLog::validate(module.clone(), entries, &trust)?;
            if log.head() != Some(*head) {
                return Err(SnapshotError::HeadMismatch {
                    module: module.clone(),
                    version: signed.snapshot.version,
                    expected: *head,
                    found: log.head().map_or("none".to_owned(), |h| h.to_string()),
                }
                .into());
            }
            logs.insert(module.clone(), log);
        }
        let index = VerifiedIndex {
            snapshot: signed.snapshot,
            trust_version: trust.version(),
            logs,
        };
        verified.index = Some(index.clone());
        Ok(index)
    }

    /// The package of `module` at `version` from the cache alone, checked
    /// against the cached, re-verified index ([`RegistryClient::offline_index`]).
    ///
    /// # Errors
    /// Any error of [`RegistryClient::offline_index`];
    /// [`ClientError::UnknownModule`], [`ClientError::UnknownVersion`],
    /// [`ClientError::Revoked`], [`ClientError::NotCached`],
    /// [`ClientError::DigestMismatch`], [`ClientError::Package`],
    /// [`ClientError::PackageMismatch`].
    pub async fn offline_package(
        &self,
        module: &Slug,
        version: &Version,
    ) -> Result<VerifiedPackage, ClientError> {
        let index = self.offline_index().await?;
        let (publish, status) = runnable(&index, module, version)?;
        let bytes = self
            .cache
            .read_blob(&publish.digest, self.options.max_package_bytes)?
            .ok_or_else(|| ClientError::NotCached {
                module: module.clone(),
                version: version.clone(),
            })?;
        let package = self.verify_package(&publish, &bytes)?;
        Ok(VerifiedPackage {
            package,
            path: self.cache.blob_path(&publish.digest),
            publish,
            status,
        })
    }

    /// Uploads a signed publish entry and its package, streaming the body in
    /// 64 KiB chunks and calling `progress(sent, total)` as they go (first
    /// with 0). The entry travels in the [`ENTRY_HEADER`] header: it names
    /// the signing key and carries the signature over the package digest,
    /// module, version and log head, which the registry checks before it
    /// reads the body. A publish the registry is too busy to take (503
    /// `too-many-uploads`) is sent again after its `Retry-After`, up to
    /// [`ClientOptions::busy_retries`] times; progress then starts again
    /// from 0.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the registry's problem (for example
    /// `version-exists`, `unknown-key`, `key-not-granted`, `revoked-key`,
    /// `bad-signature`, `digest-mismatch`, `invalid-package`,
    /// `package-too-large`, `too-many-uploads`); network errors.
    pub async fn publish(
        &self,
        entry: &SignedEntry,
        package: Vec<u8>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<AppendReceipt, ClientError> {
        let url = format!("{}/publish", self.api);
        let json = serde_json::to_vec(entry).map_err(|e| ClientError::Malformed {
            url: url.clone(),
            reason: format!("the entry cannot be encoded: {e}"),
        })?;
        let entry_header = BASE64.encode(json);
        let body = bytes::Bytes::from(package);
        let mut retries = self.options.busy_retries;
        loop {
            let response = self
                .upload(&url, &entry_header, &body, &mut progress)
                .await?;
            if retries > 0
                && let Some(wait) = busy_retry_after(&response)
            {
                retries -= 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return self.receipt(&url, response).await;
        }
    }

    /// Sends one publish request, reporting progress as the body goes out.
    async fn upload(
        &self,
        url: &str,
        entry_header: &str,
        body: &bytes::Bytes,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<reqwest::Response, ClientError> {
        let total = body.len() as u64;
        let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let chunks: Vec<bytes::Bytes> = (0..body.len())
            .step_by(UPLOAD_CHUNK_BYTES)
            .map(|start| body.slice(start..(start + UPLOAD_CHUNK_BYTES).min(body.len())))
            .collect();
        // The stream reports each chunk as the connection takes it; the
        // progress callback runs here, so it need not be Send or 'static.
        let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
            let _ = sent_tx.send(chunk.len() as u64);
            Ok::<_, io::Error>(chunk)
        }));
        let request = self
            .http
            .post(url)
            .header(ENTRY_HEADER, entry_header)
            .header(reqwest::header::CONTENT_LENGTH, total)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send();
        tokio::pin!(request);
        let mut sent = 0u64;
        progress(0, total);
        let response = loop {
            tokio::select! {
                response = &mut request => break response,
                Some(n) = sent_rx.recv() => {
                    sent += n;
                    progress(sent, total);
                }
            }
        };
        while let Ok(n) = sent_rx.try_recv() {
            sent += n;
            progress(sent, total);
        }
        response.map_err(|source| ClientError::Http {
            url: url.to_owned(),
            source,
        })
    }

    /// Appends a signed yank, deprecate or revoke entry.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the registry's problem (for example
    /// `unknown-version`, `invalid-transition`, `stale-head`,
    /// `key-not-granted`); network errors.
    pub async fn append_state(&self, entry: &SignedEntry) -> Result<AppendReceipt, ClientError> {
        let url = format!("{}/state", self.api);
        let response = send(&url, self.http.post(&url).json(entry)).await?;
        self.receipt(&url, response).await
    }

    // ----- internals -----

    fn verify_package(&self, publish: &Publish, bytes: &[u8]) -> Result<Package, ClientError> {
        let found = Digest::of(bytes);
        if found != publish.digest {
            return Err(ClientError::DigestMismatch {
                package: format!("{} {}", publish.module, publish.version),
                expected: publish.digest,
                found,
            });
        }
        let package = Package::read(bytes, self.options.package_limits)?;
        publish.check_package(&package)?;
        Ok(package)
    }

    /// The receipt of an append: the response's status checked, then its
    /// body read as JSON.
    async fn receipt(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<AppendReceipt, ClientError> {
        let response = check_status(url, response, self.options.max_metadata_bytes).await?;
        self.read_metadata(url, response).await
    }

    /// Sends a GET for `path` below the API and checks the status; returns
    /// the full URL with the response, for errors that name it.
    async fn get(&self, path: &str) -> Result<(String, reqwest::Response), ClientError> {
        let url = format!("{}{path}", self.api);
        let response = send(&url, self.http.get(&url)).await?;
        let response = check_status(&url, response, self.options.max_metadata_bytes).await?;
        Ok((url, response))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (url, response) = self.get(path).await?;
        self.read_metadata(&url, response).await
    }

    /// Reads a successful response's body, at most the metadata limit, as
    /// JSON.
    async fn read_metadata<T: DeserializeOwned>(
        &self,
        url: &str,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let bytes =
            read_limited(response, url, self.options.max_metadata_bytes, "metadata").await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Sends `request` (to `url`); a failure to get any response is
/// [`ClientError::Http`].
async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ClientError> {
    request.send().await.map_err(|source| ClientError::Http {
        url: url.to_owned(),
        source,
    })
}

/// The publish record and status of a version that may run.
fn runnable(
    index: &VerifiedIndex,
    module: &Slug,
    version: &Version,
) -> Result<(Publish, VersionStatus), ClientError> {
    let log = index
        .log(module)
        .ok_or_else(|| ClientError::UnknownModule(module.clone()))?;
    let (Some(published), Some(status)) = (log.version(version), log.status(version)) else {
        return Err(ClientError::UnknownVersion {
            module: module.clone(),
            version: version.clone(),
        });
    };
    if let Some(reason) = &status.revoked {
        return Err(ClientError::Revoked {
            module: module.clone(),
            version: version.clone(),
            reason: reason.clone(),
        });
    }
    Ok((published.publish.clone(), status))
}

/// How long to wait before sending a publish again, when `response` says
/// the registry is receiving as many packages as it allows (503 with a
/// `Retry-After` in seconds of at most [`MAX_RETRY_AFTER`]).
fn busy_retry_after(response: &reqwest::Response) -> Option<Duration> {
    if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    let wait = Duration::from_secs(seconds);
    (wait <= MAX_RETRY_AFTER).then_some(wait)
}

/// Passes a success response through; turns an error status into
/// [`ClientError::Refused`] (with the problem document) or
/// [`ClientError::Status`].
async fn check_status(
    url: &str,
    response: reqwest::Response,
    limit: u64,
) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_limited(response, url, limit, "problem document")
        .await
        .unwrap_or_default();
    match serde_json::from_slice::<ProblemDocument>(&body) {
        Ok(problem) => Err(ClientError::Refused {
            url: url.to_owned(),
            problem,
        }),
        Err(_) => Err(ClientError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        }),
    }
}

/// Reads a response body of at most `limit` bytes, refusing it as soon as
/// its Content-Length or the bytes received pass the limit (nothing past
/// the limit is buffered), and refusing a body that ends short of or runs
/// past its Content-Length.
async fn read_limited(
    response: reqwest::Response,
    url: &str,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::TooLarge {
        what,
        url: url.to_owned(),
        limit,
    };
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let truncated = |received: usize| ClientError::Truncated {
        what,
        url: url.to_owned(),
        received: received as u64,
        announced: announced.map_or("unknown".to_owned(), |n| n.to_string()),
    };
    let initial = announced.unwrap_or(0).min(limit).min(1024 * 1024);
    let mut bytes = Vec::with_capacity(usize::try_from(initial).unwrap_or(0));
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) if e.is_timeout() => {
                return Err(ClientError::Http {
                    url: url.to_owned(),
                    source: e,
                });
            }
            Err(_) => return Err(truncated(bytes.len())),
        };
        let received = (bytes.len() + chunk.len()) as u64;
        if received > limit {
            return Err(too_large());
        }
        if announced.is_some_and(|n| received > n) {
            return Err(truncated(bytes.len() + chunk.len()));
        }
        bytes.extend_from_slice(&chunk);
    }
    if announced.is_some_and(|n| bytes.len() as u64 != n) {
        return Err(truncated(bytes.len()));
    }
    Ok(bytes)
}

fn cache_io(path: &Path) -> impl FnOnce(io::Error) -> ClientError + '_ {
    move |source| ClientError::CacheIo {
        path: path.to_owned(),
        source,
    }
}

/// Reads a JSON file of the cache of at most `limit` bytes.
fn read_json<T: DeserializeOwned>(path: &Path, limit: u64) -> Result<T, ClientError> {
    layout::read_json(path, limit).map_err(|e| match e {
        ReadError::Io(source) => cache_io(path)(source),
        ReadError::Corrupt(reason) => ClientError::CacheCorrupt {
            path: path.to_owned(),
            reason,
        },
    })
}

/// The client's cache directory.
#[derive(Debug)]
struct Cache {
    dir: PathBuf,
}

impl Layout for Cache {
    fn root(&self) -> &Path {
        &self.dir
    }
}

impl Cache {
    fn open(dir: &Path) -> Result<Self, ClientError> {
        let cache = Cache {
            dir: dir.to_owned(),
        };
        for sub in [
            cache.trust_dir(),
            cache.logs_dir(),
            cache.blobs_dir(),
            cache.tmp_dir(),
        ] {
            fs::create_dir_all(&sub).map_err(cache_io(&sub))?;
        }
        Ok(cache)
    }

    /// The trust reached from `pinned` through the cached roots; a cached
    /// chain that does not verify from `pinned` is corrupt.
    fn trust_from(&self, pinned: &SignedTrustRoot, limit: u64) -> Result<TrustState, ClientError> {
        let mut trust = TrustState::pin(pinned.clone())?;
        let dir = self.trust_dir();
        let mut roots = Vec::new();
        for entry in fs::read_dir(&dir).map_err(cache_io(&dir))? {
            let path = entry.map_err(cache_io(&dir))?.path();
            if let Some(version) = layout::root_file_version(&path) {
                roots.push((version, path));
            }
        }
        roots.sort();
        let mut chain = Vec::new();
        for (_, path) in &roots {
            chain.push(read_json::<SignedTrustRoot>(path, limit)?);
        }
        trust
            .follow(&chain)
            .map_err(|e| ClientError::CacheCorrupt {
                path: dir,
                reason: format!("the cached trust roots do not follow from the pinned root: {e}"),
            })?;
        Ok(trust)
    }

    fn write_root(&self, root: &SignedTrustRoot) -> Result<(), ClientError> {
        let path = self.root_path(root.root.version);
        self.write_json(&path, root)
    }

    fn read_snapshot(&self, limit: u64) -> Result<Option<SignedSnapshot>, ClientError> {
        let path = self.snapshot_path();
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path, limit).map(Some)
    }

    fn write_snapshot(&self, snapshot: &SignedSnapshot) -> Result<(), ClientError> {
        self.write_json(&self.snapshot_path(), snapshot)
    }

    fn read_log(&self, module: &Slug, limit: u64) -> Result<Vec<SignedEntry>, ClientError> {
        let path = self.log_path(module);
        if !path.exists() {
            return Err(ClientError::CacheCorrupt {
                path,
                reason: "the cached snapshot lists this module but its log is missing".into(),
            });
        }
        read_json(&path, limit)
    }

    fn write_log(&self, log: &ModuleLog) -> Result<(), ClientError> {
        self.write_json(&self.log_path(log.module()), log.entries())
    }

    /// Removes cached logs of modules the new snapshot no longer lists.
    fn remove_logs_except(&self, keep: &BTreeMap<Slug, ModuleLog>) -> Result<(), ClientError> {
        let dir = self.logs_dir();
        for entry in fs::read_dir(&dir).map_err(cache_io(&dir))? {
            let path = entry.map_err(cache_io(&dir))?.path();
            let listed =
                layout::log_file_module(&path).is_some_and(|slug| keep.contains_key(&slug));
            if !listed {
                fs::remove_file(&path).map_err(cache_io(&path))?;
            }
        }
        Ok(())
    }

    /// The cached blob with `digest`, if there; its bytes are checked by
    /// the caller against the signed record.
    fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cache_io(&path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(cache_io(&path))?;
        if bytes.len() as u64 > limit {
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ClientError> {
        self.write_atomic(&self.blob_path(digest), bytes)
    }

    fn write_json<T: serde::Serialize + ?Sized>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| ClientError::CacheCorrupt {
            path: path.to_owned(),
            reason: format!("cannot encode: {e}"),
        })?;
        self.write_atomic(path, &bytes)
    }

    /// Writes `bytes` to a temporary file, flushes it and renames it over
    /// `path`, so a reader sees the old or the new file, never half.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
        let tmp = self.tmp_dir().join(format!(
            "{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(cache_io(path)(e));
        }
        Ok(())
    }
}
