//! The host's side of the signed module registry: operator key files and
//! the creation of a registry store with its first trust root. The format,
//! signing, verification and resolution rules live in
//! `souk_module_registry`; this module only turns operator intent (CLI
//! arguments) into calls on it.

use std::path::{Path, PathBuf};

use souk_module_registry::{
    KeyPair, KeySet, ModulePattern, PublicKey, PublisherGrant, RegistryStore, StoreLimits,
    TrustRoot,
};

use crate::catalog::Catalog;
use crate::runtime::Runtime;

/// Default lifetime of a trust root: one year. Rotate before it ends.
pub const ROOT_LIFETIME_SECS: u64 = 365 * 24 * 60 * 60;

/// Key files written by [`generate_key_pair`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyFiles {
    /// The key id (`ed25519:<hex>`).
    pub id: String,
    /// The private key file (mode 0600).
    pub private_key: PathBuf,
    /// The public key file.
    pub public_key: PathBuf,
}

/// Generates an ed25519 key pair and writes `<dir>/<name>.key` (0600) and
/// `<dir>/<name>.pub`. Refuses to overwrite an existing key.
///
/// # Errors
/// When the files exist or cannot be written.
pub fn generate_key_pair(dir: &Path, name: &str) -> anyhow::Result<KeyFiles> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        anyhow::bail!("key name {name:?} may contain only letters, digits, '-' and '_'");
    }
    std::fs::create_dir_all(dir)?;
    let private_key = dir.join(format!("{name}.key"));
    let public_key = dir.join(format!("{name}.pub"));
    if public_key.exists() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite a key",
            public_key.display()
        );
    }
    let pair = KeyPair::generate();
    pair.write_private_key(&private_key)?;
    pair.public().write(&public_key)?;
    Ok(KeyFiles {
        id: pair.id().to_string(),
        private_key,
        public_key,
    })
}

/// A publisher grant as given on the command line: `<public key file>=<pattern>[,<pattern>...]`.
pub fn parse_grant(text: &str) -> anyhow::Result<PublisherGrant> {
    let (path, patterns) = text.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("grant {text:?} must look like <public key file>=<module pattern>")
    })?;
    let key = PublicKey::read(Path::new(path))?;
    let modules = patterns
        .split(',')
        .map(ModulePattern::parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PublisherGrant { key, modules })
}

/// Creates a registry store in `dir` with trust root version 1, signed by
/// `root_key`, listing `snapshot_key` as the snapshot signer and `grants`
/// as publishers.
///
/// # Errors
/// When the store exists already or the root does not verify.
pub fn init_store(
    dir: &Path,
    root_key: &KeyPair,
    snapshot_key: &PublicKey,
    grants: Vec<PublisherGrant>,
    now: u64,
) -> anyhow::Result<RegistryStore> {
    let root = TrustRoot {
        version: 1,
        expires: now + ROOT_LIFETIME_SECS,
        root: KeySet::single(root_key.public()),
        snapshot: KeySet::single(*snapshot_key),
        publishers: grants,
        revoked: Default::default(),
    };
    root.check()?;
    let signed = root.sign(&[root_key])?;
    Ok(RegistryStore::create(dir, signed, StoreLimits::default())?)
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves a registry store over HTTP until shutdown. Packages are checked
/// with this host's runtime before they are accepted: a package that is
/// not a valid component for a supported WIT version, or whose manifest
/// disagrees with its component, is refused. At most `max_uploads`
/// authenticated publishes receive or check a package at once; more are
/// answered 503 with `Retry-After`.
///
/// # Errors
/// When the store cannot be opened, the engine cannot start, or the
/// address cannot be bound.
pub async fn serve_store(
    dir: &Path,
    snapshot_key: KeyPair,
    listen: std::net::SocketAddr,
    limits: crate::runtime::RuntimeLimits,
    max_uploads: usize,
) -> anyhow::Result<()> {
    use std::sync::Arc;

    use souk_module_registry::http::{RegistryService, standalone_router};

    let store = RegistryStore::open(dir, StoreLimits::default())?;
    let cache = crate::runtime::ComponentCache::open(&dir.join("compiled"))?;
    let runtime = Arc::new(crate::runtime::Runtime::new(limits, cache)?);
    let handle = tokio::runtime::Handle::current();
    let validator: souk_module_registry::http::PackageValidator = Arc::new(move |package| {
        let runtime = runtime.clone();
        crate::billing::plans::suggested(&package.manifest)
            .map_err(|e| format!("suggested plans: {e}"))?;
        // Called on the blocking pool, where waiting on the runtime is allowed.
        handle
            .block_on(async move { runtime.load(package).await.map(|_| ()) })
            .map_err(|e| match e {
                // The registry's own failure, not the package's: its cause
                // (which may name files of the registry) goes to the log.
                crate::runtime::LoadError::Engine(_) | crate::runtime::LoadError::Cache(_) => {
                    tracing::error!(error = %e, "checking a published component failed");
                    "the registry could not check the component; the registry operator's log has the cause".to_owned()
                }
                refusal => refusal.to_string(),
            })
    });
    let service = Arc::new(
        RegistryService::new(store, vec![snapshot_key])
            .with_validator(validator)
            .with_max_uploads(max_uploads),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("souk registry: listening on http://{addr}");
    std::io::Write::flush(&mut std::io::stdout())?;
    axum::serve(listener, standalone_router(service)).await?;
    Ok(())
}

/// Signs and uploads a package to a registry, after verifying the
/// registry's metadata against the trust root the publisher holds.
/// `progress` is called with (bytes sent, total bytes).
///
/// # Errors
/// When the package is invalid, the registry does not verify, or it
/// refuses the publish (the error carries its problem document).
pub async fn publish(
    registry: &str,
    trust_root: &Path,
    key: &KeyPair,
    package_bytes: Vec<u8>,
    progress: impl FnMut(u64, u64),
) -> anyhow::Result<souk_module_registry::http::AppendReceipt> {
    use souk_module_registry::{Package, PackageLimits, SignedEntry};

    let package = Package::read(&package_bytes, PackageLimits::default())?;
    let (client, prev, _cache) =
        verified_head(registry, trust_root, &package.manifest.slug).await?;
    let entry = SignedEntry::sign(prev, publish_record(&package), key)?;
    Ok(client.publish(&entry, package_bytes, progress).await?)
}

/// The publish record of a package: what the publisher signs.
fn publish_record(package: &souk_module_registry::Package) -> souk_module_registry::ModuleAction {
    let m = &package.manifest;
    souk_module_registry::ModuleAction::Publish(souk_module_registry::Publish {
        module: m.slug.clone(),
        version: m.version.clone(),
        digest: package.digest,
        dependencies: m
            .dependencies
            .iter()
            .map(|d| (d.slug.clone(), d.requirement.clone()))
            .collect(),
        api: m.api,
        published_at: unix_now(),
    })
}

/// A client for a registry verified against `trust_root`, with a throwaway
/// cache (publishers keep no state), and the head of `module`'s log.
async fn verified_head(
    registry: &str,
    trust_root: &Path,
    module: &souk_module_registry::Slug,
) -> anyhow::Result<(
    souk_module_registry::client::RegistryClient,
    Option<souk_module_registry::EntryHash>,
    tempfile::TempDir,
)> {
    use souk_module_registry::client::{ClientOptions, RegistryClient};
    let cache = tempfile::tempdir()?;
    let client = RegistryClient::from_root_file(
        registry,
        cache.path(),
        trust_root,
        ClientOptions::default(),
    )?;
    let index = client.refresh(unix_now()).await?;
    let head = index.log(module).and_then(|log| log.head());
    Ok((client, head, cache))
}

/// What [`pull`] made available.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PulledVersion {
    /// Module slug.
    pub module: String,
    /// Semantic version, as the catalog recorded it.
    pub version: String,
    /// Package digest (`sha256:...`) of the verified package.
    pub digest: String,
    /// The key that signed its publish record; empty when the log has no
    /// publish entry for the version.
    pub signer: String,
}

/// Verifies a registry (trust chain from the pinned root, snapshot,
/// module logs), downloads the requested modules — or the newest choosable
/// version of every module — checks each package's sha256 against its
/// signed record, and adds them to this host's catalog. With `offline`,
/// answers only from what an earlier pull verified and cached.
///
/// # Errors
/// Any verification failure; nothing unverified is added.
pub async fn pull(
    catalog: &Catalog,
    runtime: &Runtime,
    data_dir: &Path,
    registry: &str,
    trust_root: &Path,
    requests: &[String],
    offline: bool,
) -> anyhow::Result<PullReport> {
    use souk_module_registry::Slug;
    use souk_module_registry::client::{ClientOptions, RegistryClient};

    let cache = data_dir.join("registry-cache");
    let client =
        RegistryClient::from_root_file(registry, &cache, trust_root, ClientOptions::default())?;
    let index = if offline {
        client.offline_index().await?
    } else {
        client.refresh(unix_now()).await?
    };
    let revoked_installs = record_statuses(catalog, &index).await?;
    let mut wanted = Vec::new();
    if requests.is_empty() {
        for module in index.modules() {
            if let Some(newest) = index
                .choosable_versions(module)
                .into_iter()
                .max_by(|a, b| a.version.cmp(&b.version))
            {
                wanted.push((module.clone(), newest.version.clone()));
            }
        }
    } else {
        for request in requests {
            let (slug, version) = match request.split_once('@') {
                Some((s, v)) => (s, Some(v)),
                None => (request.as_str(), None),
            };
            let slug = Slug::parse(slug).map_err(|e| anyhow::anyhow!("module {slug:?} {e}"))?;
            let version = match version {
                Some(v) => semver::Version::parse(v)?,
                None => index
                    .choosable_versions(&slug)
                    .into_iter()
                    .map(|p| p.version.clone())
                    .max()
                    .ok_or_else(|| {
                        anyhow::anyhow!("the registry offers no installable version of {slug}")
                    })?,
            };
            wanted.push((slug, version));
        }
    }
    let mut pulled = Vec::new();
    for (slug, version) in wanted {
        if index
            .status(&slug, &version)
            .is_some_and(|s| s.revoked.is_some())
        {
            anyhow::bail!(
                "{slug} {version} is revoked by its publisher; it will not be made available"
            );
        }
        let verified = if offline {
            client.offline_package(&slug, &version).await?
        } else {
            client.fetch_package(&slug, &version).await?
        };
        let signer = index
            .log(&slug)
            .and_then(|log| log.entries().iter().find(|e| matches!(&e.entry.action, souk_module_registry::ModuleAction::Publish(p) if p.version == version)).map(|e| e.entry.signer.to_string()))
            .unwrap_or_default();
        let bytes = std::fs::read(&verified.path)?;
        let added = catalog
            .add_package(runtime, &bytes)
            .await
            .map_err(|e| anyhow::anyhow!("{slug} {version}: {e}"))?;
        pulled.push(PulledVersion {
            module: added.slug,
            version: added.version,
            digest: added.digest,
            signer,
        });
    }
    // Versions added just now get their registry status too.
    record_statuses(catalog, &index).await?;
    Ok(PullReport {
        pulled,
        revoked_installs,
    })
}

/// The outcome of [`pull`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    /// Versions verified and made available.
    pub pulled: Vec<PulledVersion>,
    /// Revoked versions still installed for tenants.
    pub revoked_installs: Vec<RevokedInstall>,
}

/// A revoked version some tenants still have installed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevokedInstall {
    /// Module slug.
    pub module: String,
    /// The version its publisher revoked.
    pub version: String,
    /// Why it was revoked.
    pub reason: String,
    /// Tenants (slugs) that have it installed; the host refuses to run it for them.
    pub tenants: Vec<String>,
}

/// Records the registry's verdict (signer, yanked, deprecated, revoked) on
/// every version this host knows, and reports revoked versions that
/// tenants still have installed.
async fn record_statuses(
    catalog: &Catalog,
    index: &souk_module_registry::client::VerifiedIndex,
) -> anyhow::Result<Vec<RevokedInstall>> {
    let mut revoked = Vec::new();
    for module in index.modules() {
        let Some(log) = index.log(module) else {
            continue;
        };
        for entry in log.entries() {
            let souk_module_registry::ModuleAction::Publish(publish) = &entry.entry.action else {
                continue;
            };
            let Some(status) = index.status(module, &publish.version) else {
                continue;
            };
            let version = publish.version.to_string();
            let deprecated = status.deprecated.as_ref().map(|d| match &d.replacement {
                Some(replacement) => format!("{} (use {replacement} instead)", d.reason),
                None => d.reason.clone(),
            });
            let known = catalog
                .record_registry_status(
                    module.as_str(),
                    &version,
                    entry.entry.signer.as_str(),
                    status.yanked.as_deref(),
                    deprecated.as_deref(),
                    status.revoked.as_deref(),
                )
                .await?;
            if let (true, Some(reason)) = (known, &status.revoked) {
                let tenants = catalog.tenants_running(module.as_str(), &version).await?;
                if !tenants.is_empty() {
                    revoked.push(RevokedInstall {
                        module: module.to_string(),
                        version,
                        reason: reason.clone(),
                        tenants,
                    });
                }
            }
        }
    }
    Ok(revoked)
}

/// A state change an operator or publisher makes to a published version.
#[derive(Debug, Clone)]
pub enum StateChange {
    /// Not chosen for new installs; existing installs keep working.
    Yank,
    /// Still usable; the marketplace warns and may name a replacement.
    Deprecate {
        /// The module to use instead.
        replacement: Option<souk_module_registry::Slug>,
    },
    /// Malicious or broken: hosts refuse to run it.
    Revoke,
}

/// Signs a state change for `module` `version` and appends it to the
/// registry's log of that module.
///
/// # Errors
/// When the registry does not verify or refuses the entry.
pub async fn change_state(
    registry: &str,
    trust_root: &Path,
    key: &KeyPair,
    module: &str,
    version: &str,
    reason: &str,
    change: StateChange,
) -> anyhow::Result<souk_module_registry::http::AppendReceipt> {
    use souk_module_registry::{
        Deprecate, DeprecatedVersions, ModuleAction, Revoke, SignedEntry, Slug, Yank,
    };

    let module = Slug::parse(module).map_err(|e| anyhow::anyhow!("module {module:?} {e}"))?;
    let version = semver::Version::parse(version)?;
    let (client, prev, _cache) = verified_head(registry, trust_root, &module).await?;
    let reason = reason.to_owned();
    let action = match change {
        StateChange::Yank => ModuleAction::Yank(Yank {
            module,
            version,
            reason,
        }),
        StateChange::Deprecate { replacement } => ModuleAction::Deprecate(Deprecate {
            module,
            version: DeprecatedVersions::Version(version),
            reason,
            replacement,
        }),
        StateChange::Revoke => ModuleAction::Revoke(Revoke {
            module,
            version,
            reason,
        }),
    };
    let entry = SignedEntry::sign(prev, action, key)?;
    Ok(client.append_state(&entry).await?)
}

/// The registry `souk serve` embeds by default: a store under
/// `<data>/registry/store` whose trust root, snapshots and publish records
/// are signed by a development key created on first run
/// (`<data>/registry/dev.key`, mode 0600). Every module version the host
/// has that no key has signed yet (the bundled first-party modules) is
/// published into it, so the marketplace lists them as signed and other
/// hosts can pull them (`<data>/registry/store/trust/1.root.json` is the
/// root to pin).
///
/// # Errors
/// When the key or store cannot be created, or a publish is refused.
pub async fn embedded(
    catalog: &Catalog,
    data_dir: &Path,
) -> anyhow::Result<std::sync::Arc<souk_module_registry::http::RegistryService>> {
    use souk_module_registry::{Package, PackageLimits, SignedEntry};

    let dir = data_dir.join("registry");
    let key_path = dir.join("dev.key");
    std::fs::create_dir_all(&dir)?;
    let key = if key_path.exists() {
        KeyPair::read_private_key(&key_path)?
    } else {
        let key = KeyPair::generate();
        key.write_private_key(&key_path)?;
        tracing::info!(key = %key.id(), path = %key_path.display(), "created the development registry key");
        key
    };
    let store_dir = dir.join("store");
    let store = match RegistryStore::open(&store_dir, StoreLimits::default()) {
        Ok(store) => store,
        Err(souk_module_registry::StoreError::NotInitialised { .. }) => {
            let grant = PublisherGrant {
                key: key.public(),
                modules: vec![ModulePattern::Any],
            };
            init_store(&store_dir, &key, &key.public(), vec![grant], unix_now())?
        }
        Err(e) => return Err(e.into()),
    };
    for (slug, version, bytes) in catalog.unsigned_versions().await? {
        let package = Package::read(&bytes, PackageLimits::default())?;
        let m = &package.manifest;
        let known = store.modules()?.contains(&m.slug);
        let log = if known {
            Some(store.module_log(&m.slug)?)
        } else {
            None
        };
        if log
            .as_ref()
            .is_some_and(|l| l.version(&m.version).is_some())
        {
            // Already published by an earlier run; just record the signer.
        } else {
            let entry = SignedEntry::sign(
                log.as_ref().and_then(|l| l.head()),
                publish_record(&package),
                &key,
            )?;
            // The catalog validated the component when it accepted it.
            store.publish(entry, &bytes, |_| Ok(()))?;
        }
        catalog
            .record_registry_status(&slug, &version, key.id().as_str(), None, None, None)
            .await?;
        tracing::info!(module = %slug, version = %version, key = %key.id(), "signed into the embedded registry");
    }
    Ok(std::sync::Arc::new(
        souk_module_registry::http::RegistryService::new(store, vec![key]),
    ))
}

/// What a trust-root rotation changes.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// The new root key (signs this and later roots); `None` keeps the current.
    pub new_root_key: Option<KeyPair>,
    /// Publisher grants to add.
    pub grant: Vec<PublisherGrant>,
    /// Keys to revoke (publisher or snapshot keys; nothing they sign is trusted again).
    pub revoke: Vec<souk_module_registry::KeyId>,
}

/// Issues the next trust root of the store in `dir`: version + 1, signed by
/// the current root key and (when it changes) the new one, so hosts that
/// pinned an older root follow the chain. Revoked keys lose their grants.
///
/// # Errors
/// When the store or keys cannot be read, or the new root is refused.
pub fn rotate(
    dir: &Path,
    current_root_key: &KeyPair,
    rotation: Rotation,
    now: u64,
) -> anyhow::Result<u64> {
    let store = RegistryStore::open(dir, StoreLimits::default())?;
    let current = store.trust()?;
    let mut next: TrustRoot = current.root().clone();
    next.version += 1;
    next.expires = now + ROOT_LIFETIME_SECS;
    if let Some(new_key) = &rotation.new_root_key {
        next.root = KeySet::single(new_key.public());
    }
    for key in &rotation.revoke {
        next.revoked.insert(key.clone());
        next.publishers.retain(|g| &g.key.id() != key);
    }
    for grant in rotation.grant {
        match next.publishers.iter_mut().find(|g| g.key == grant.key) {
            Some(existing) => existing.modules.extend(grant.modules),
            None => next.publishers.push(grant),
        }
    }
    let mut signers = vec![current_root_key];
    if let Some(new_key) = &rotation.new_root_key {
        signers.push(new_key);
    }
    let signed = next.sign(&signers)?;
    Ok(store.rotate_trust_root(signed)?)
}
