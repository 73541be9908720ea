//! The catalog: module versions this host can install.
//!
//! A version enters the catalog only after its package has been read within
//! size limits, its manifest parsed, its component compiled and checked
//! against the manifest (world, API version, gates). Versions are immutable:
//! the same slug and version with different bytes is refused. Packages are
//! stored content-addressed under the data directory.
//!
//! What depends only on a version's package — its parsed manifest, its
//! loaded component, the migrations its `migrations()` export declares — is
//! computed once and kept in memory, keyed by the package digest. A digest
//! names exactly one package's bytes, so such an entry can never go stale: a
//! new version, or new bytes, has another digest and is computed afresh.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use souk_module_registry::{Digest, Manifest, Package, PackageLimits};

use crate::capabilities::context::CallContext;
use crate::clock::{Clock, rfc3339};
use crate::control_plane::installations;
use crate::control_plane::versions::{self, NewVersion, RegistryStatus, VersionRow};
use crate::control_plane::{ControlPlane, StoreError};
use crate::error::SoukError;
use crate::runtime::{CallError, LoadedModule, Migration, Runtime};

/// One available module version.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleVersion {
    /// Module slug.
    pub slug: String,
    /// Semantic version (`1.2.0`), from the manifest.
    pub version: String,
    /// Display name from the manifest, 1 to 100 characters.
    pub name: String,
    /// Free text from the manifest, saying what the module does.
    pub description: String,
    /// Marketplace category from the manifest: lowercase letters, digits,
    /// `_` and `-` (`testing`).
    pub category: String,
    /// WIT API version the component targets, `major.minor.patch` (`0.2.0`).
    pub api: String,
    /// Package digest (`sha256:...`).
    pub digest: String,
    /// Dependencies as `slug -> range`.
    pub dependencies: BTreeMap<String, String>,
    /// When it was added.
    pub added_at: String,
    /// The registry key that signed it, when it came from a registry.
    pub signer: Option<String>,
    /// Why its publisher yanked it (not chosen for new installs).
    pub yanked: Option<String>,
    /// Why its publisher deprecated it.
    pub deprecated: Option<String>,
    /// Why its publisher revoked it (it will not run).
    pub revoked: Option<String>,
    /// Whether this call added it (false when it was already known).
    #[serde(skip)]
    pub newly_added: bool,
}

/// A module with its available versions, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleListing {
    /// Module slug.
    pub slug: String,
    /// Display name (of the newest version).
    pub name: String,
    /// Description (of the newest version).
    pub description: String,
    /// Marketplace category (of the newest version).
    pub category: String,
    /// The highest version by semver, even when yanked or revoked.
    pub latest: String,
    /// All versions, newest first.
    pub versions: Vec<ModuleVersion>,
}

/// The manifest a stored version was recorded with.
fn manifest_of(row: &VersionRow) -> Result<Manifest, SoukError> {
    Manifest::parse(&row.manifest).map_err(|e| {
        SoukError::Internal(anyhow::anyhow!(
            "stored manifest of {} {} no longer parses: {e}",
            row.slug,
            row.version
        ))
    })
}

/// A stored version as the catalog lists it, with `manifest` parsed from it.
fn version_of(row: VersionRow, manifest: &Manifest) -> ModuleVersion {
    ModuleVersion {
        dependencies: manifest
            .dependencies
            .iter()
            .map(|d| (d.slug.to_string(), d.requirement.to_string()))
            .collect(),
        slug: row.slug,
        version: row.version,
        name: row.name,
        description: row.description,
        category: row.category,
        api: row.api,
        digest: row.digest,
        added_at: row.added_at,
        signer: row.signer,
        yanked: row.yanked_reason,
        deprecated: row.deprecated_reason,
        revoked: row.revoked_reason,
        newly_added: false,
    }
}

/// A resolved module version: its manifest and where its package lives.
/// Cheap to clone (the request path takes one from the cache on every
/// request): the manifest is shared.
#[derive(Debug, Clone)]
pub struct ResolvedVersion {
    /// Parsed from the manifest text stored when the version was added.
    pub manifest: Arc<Manifest>,
    /// Package digest (`sha256:...`), the content address of its file.
    pub digest: String,
    package_path: PathBuf,
}

/// The catalog of module versions.
pub struct Catalog {
    control: ControlPlane,
    /// Stamps when a version is added.
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    limits: PackageLimits,
    /// Loaded components, by package digest.
    loaded: Mutex<HashMap<String, LoadedModule>>,
    /// Versions are immutable, so a resolved (slug, version) never changes:
    /// cached here, the request path parses no YAML.
    resolved: Mutex<HashMap<(String, String), ResolvedVersion>>,
    /// Parsed manifests, by package digest (the digest covers the manifest
    /// text): listing the catalog and building the resolver's index parse
    /// each manifest once, not on every install.
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
    /// Declared migrations, by package digest: `migrations()` runs once per
    /// version, not once per install. Only successful listings are kept.
    migrations: Mutex<HashMap<String, Arc<[Migration]>>>,
}

impl Catalog {
    /// A catalog recorded in `control`, with packages stored in `dir`,
    /// stamped by `clock`.
    pub fn new(control: ControlPlane, dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        Catalog {
            control,
            clock,
            dir,
            limits: PackageLimits::default(),
            loaded: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            manifests: Mutex::new(HashMap::new()),
            migrations: Mutex::new(HashMap::new()),
        }
    }

    /// The manifest a stored version was recorded with, parsed once per
    /// package digest.
    fn manifest(&self, row: &VersionRow) -> Result<Arc<Manifest>, SoukError> {
        if let Some(hit) = self
            .manifests
            .lock()
            .map_err(|_| poisoned())?
            .get(&row.digest)
        {
            return Ok(hit.clone());
        }
        let manifest = Arc::new(manifest_of(row)?);
        self.manifests
            .lock()
            .map_err(|_| poisoned())?
            .insert(row.digest.clone(), manifest.clone());
        Ok(manifest)
    }

    /// A stored version as the catalog lists it.
    fn listed(&self, row: VersionRow) -> Result<ModuleVersion, SoukError> {
        let manifest = self.manifest(&row)?;
        Ok(version_of(row, &manifest))
    }

    /// The migrations the version with package `digest` declares (its
    /// `migrations()` export, called in the system context of `manifest`,
    /// as the check at [`Catalog::add_package`] calls it): listed on first
    /// use, then kept for the life of the process. A version's migrations
    /// are part of its package: every tenant installing it runs the same
    /// list. A failed listing is not kept; the next use tries again.
    ///
    /// # Errors
    /// The [`CallError`] of a `migrations()` call that failed.
    pub async fn migrations(
        &self,
        digest: &str,
        manifest: &Manifest,
        loaded: &LoadedModule,
    ) -> Result<Arc<[Migration]>, CallError> {
        if let Some(hit) = self
            .migrations
            .lock()
            .map_err(|_| CallError::Trap("the migration cache is poisoned".into()))?
            .get(digest)
        {
            return Ok(hit.clone());
        }
        let listed: Arc<[Migration]> = loaded
            .declared_migrations(CallContext::system(manifest))
            .await?
            .into();
        self.migrations
            .lock()
            .map_err(|_| CallError::Trap("the migration cache is poisoned".into()))?
            .insert(digest.to_owned(), listed.clone());
        Ok(listed)
    }

    /// Reads, validates and adds a package. Adding a package whose digest is
    /// already known is a no-op that returns the existing version.
    ///
    /// # Errors
    /// [`SoukError::PackageRefused`] saying what is wrong with the package;
    /// [`SoukError::Conflict`] when the version exists with other bytes.
    pub async fn add_package(
        &self,
        runtime: &Runtime,
        bytes: &[u8],
    ) -> Result<ModuleVersion, SoukError> {
        let package = Package::read(bytes, self.limits)
            .map_err(|e| SoukError::PackageRefused(format!("package refused: {e}")))?;
        let digest = package.digest.to_string();
        let slug = package.manifest.slug.to_string();
        let version = package.manifest.version.to_string();
        if let Some(existing) = self.find(&slug, &version).await? {
            if existing.digest == digest {
                return self.listed(existing);
            }
            return Err(SoukError::Conflict(format!(
                "{slug} {version} already exists with digest {}; versions are immutable, \
                 publish this package under a new version",
                existing.digest
            )));
        }
        crate::billing::plans::suggested(&package.manifest).map_err(|e| {
            SoukError::PackageRefused(format!("package refused: suggested plans: {e}"))
        })?;
        let loaded = runtime
            .load(&package)
            .await
            .map_err(|e| SoukError::PackageRefused(format!("package refused: {e}")))?;
        let migrations = self
            .check_migrations_unchanged(runtime, &package.manifest, &loaded)
            .await?;

        std::fs::create_dir_all(&self.dir).map_err(|e| SoukError::Internal(e.into()))?;
        let path = self.dir.join(format!("{}.souk", package.digest.hex()));
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| SoukError::Internal(e.into()))?;
        std::fs::write(tmp.path(), bytes).map_err(|e| SoukError::Internal(e.into()))?;
        tmp.persist(&path)
            .map_err(|e| SoukError::Internal(e.error.into()))?;

        let m = &package.manifest;
        let added_at = rfc3339(self.clock.now());
        let api = m.api.to_string();
        let package_path = path.to_string_lossy();
        let new = NewVersion {
            slug: &slug,
            version: &version,
            name: &m.name,
            description: &m.description,
            category: &m.category,
            api: &api,
            digest: &digest,
            manifest: &package.manifest_text,
            package_path: &package_path,
            added_at: &added_at,
        };
        let mut conn = self.control.pool().acquire().await?;
        versions::insert(&mut conn, &new)
            .await
            .map_err(|e| match e {
                StoreError::Db(e) => SoukError::from(e),
                StoreError::Duplicate | StoreError::Changed => {
                    SoukError::Conflict(format!("{slug} {version} was added concurrently"))
                }
            })?;
        drop(conn);
        self.loaded
            .lock()
            .map_err(|_| poisoned())?
            .insert(digest.clone(), loaded);
        if let Some(migrations) = migrations {
            self.migrations
                .lock()
                .map_err(|_| poisoned())?
                .insert(digest.clone(), migrations);
        }
        let added = self
            .find(&slug, &version)
            .await?
            .ok_or_else(|| SoukError::Internal(anyhow::anyhow!("{slug} {version} vanished")))?;
        let mut added = self.listed(added)?;
        added.newly_added = true;
        Ok(added)
    }

    /// Refuses a new version that changes a migration another version of
    /// the same module already has (the same id with other up or down
    /// SQL): a tenant that applied the old text would never get the new
    /// one, and its data would no longer fit the module. The installer
    /// checks the ledger's checksums as well, for versions added before
    /// this check existed. Returns the new version's migrations when it
    /// listed them (only when other versions exist), so that the catalog
    /// keeps them once the version is added.
    async fn check_migrations_unchanged(
        &self,
        runtime: &Runtime,
        manifest: &Manifest,
        loaded: &LoadedModule,
    ) -> Result<Option<Arc<[Migration]>>, SoukError> {
        let slug = manifest.slug.as_str();
        let others = self.versions_of(slug).await?;
        if others.is_empty() {
            return Ok(None);
        }
        let mine = declared_migrations(manifest, loaded).await?;
        for row in others {
            let resolved = self.resolve(slug, Some(&row.version)).await?;
            let theirs = match self.load(runtime, &resolved).await {
                Ok(loaded) => self
                    .migrations(&resolved.digest, &resolved.manifest, &loaded)
                    .await
                    .map_err(|e| refused_migrations(&resolved.manifest, &e))?,
                Err(e) => {
                    tracing::warn!(module = slug, version = %row.version, error = %e, "could not load a known version to compare its migrations");
                    continue;
                }
            };
            for m in mine.iter() {
                if let Some(old) = theirs.iter().find(|o| o.id == m.id)
                    && (old.up != m.up || old.down != m.down)
                {
                    return Err(SoukError::PackageRefused(format!(
                        "package refused: migration {} differs from the one {slug} {} already \
                         has; a released migration never changes: add a new migration instead",
                        m.id, row.version
                    )));
                }
            }
        }
        Ok(Some(mine))
    }

    async fn find(&self, slug: &str, version: &str) -> Result<Option<VersionRow>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(versions::find(&mut conn, slug, version).await?)
    }

    async fn versions_of(&self, slug: &str) -> Result<Vec<VersionRow>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let mut rows = versions::of_module(&mut conn, slug).await?;
        sort_newest_first(&mut rows);
        Ok(rows)
    }

    /// Every module with its versions, by slug.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list(&self) -> Result<Vec<ModuleListing>, SoukError> {
        let rows = versions::all(&mut *self.control.pool().acquire().await?).await?;
        let mut by_slug: BTreeMap<String, Vec<VersionRow>> = BTreeMap::new();
        for row in rows {
            by_slug.entry(row.slug.clone()).or_default().push(row);
        }
        let mut out = Vec::new();
        for (slug, mut rows) in by_slug {
            sort_newest_first(&mut rows);
            let versions = rows
                .into_iter()
                .map(|row| self.listed(row))
                .collect::<Result<Vec<_>, _>>()?;
            let newest = &versions[0];
            out.push(ModuleListing {
                slug,
                name: newest.name.clone(),
                description: newest.description.clone(),
                category: newest.category.clone(),
                latest: newest.version.clone(),
                versions,
            });
        }
        Ok(out)
    }

    /// Resolves `slug` at `version`, or at its newest version.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module or version does not exist.
    pub async fn resolve(
        &self,
        slug: &str,
        version: Option<&str>,
    ) -> Result<ResolvedVersion, SoukError> {
        if let Some(v) = version
            && let Some(hit) = self
                .resolved
                .lock()
                .map_err(|_| poisoned())?
                .get(&(slug.to_owned(), v.to_owned()))
        {
            return Ok(hit.clone());
        }
        let row = match version {
            Some(v) => self.find(slug, v).await?.ok_or_else(|| {
                SoukError::NotFound(format!("module {slug:?} has no version {v:?}"))
            })?,
            None => self
                .versions_of(slug)
                .await?
                .into_iter()
                .find(|v| v.yanked_reason.is_none() && v.revoked_reason.is_none())
                .ok_or_else(|| SoukError::NotFound(format!("no module {slug:?} is available")))?,
        };
        let resolved = ResolvedVersion {
            manifest: self.manifest(&row)?,
            digest: row.digest,
            package_path: PathBuf::from(row.package_path),
        };
        self.resolved
            .lock()
            .map_err(|_| poisoned())?
            .insert((row.slug, row.version), resolved.clone());
        Ok(resolved)
    }

    /// The loaded (compiled, prepared) module for a resolved version; loads
    /// it from its package and the compile cache on first use.
    ///
    /// # Errors
    /// When the stored package no longer verifies or loads.
    pub async fn load(
        &self,
        runtime: &Runtime,
        version: &ResolvedVersion,
    ) -> Result<LoadedModule, SoukError> {
        if let Some(loaded) = self
            .loaded
            .lock()
            .map_err(|_| poisoned())?
            .get(&version.digest)
        {
            return Ok(loaded.clone());
        }
        let bytes = std::fs::read(&version.package_path).map_err(|e| {
            SoukError::Internal(anyhow::anyhow!(
                "package {}: {e}",
                version.package_path.display()
            ))
        })?;
        let package = Package::read(&bytes, self.limits)
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("stored package is invalid: {e}")))?;
        let expected =
            Digest::parse(&version.digest).map_err(|e| SoukError::Internal(anyhow::anyhow!(e)))?;
        if package.digest != expected {
            return Err(SoukError::Internal(anyhow::anyhow!(
                "stored package {} does not match its digest {}; refusing to run it",
                version.package_path.display(),
                version.digest
            )));
        }
        let loaded = runtime
            .load(&package)
            .await
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("{e}")))?;
        self.loaded
            .lock()
            .map_err(|_| poisoned())?
            .insert(version.digest.clone(), loaded.clone());
        Ok(loaded)
    }
}

impl Catalog {
    /// Records what the registry says about a version this host has: its
    /// signer and whether it is yanked, deprecated or revoked.
    ///
    /// # Errors
    /// Database errors.
    pub async fn record_registry_status(
        &self,
        slug: &str,
        version: &str,
        signer: &str,
        yanked: Option<&str>,
        deprecated: Option<&str>,
        revoked: Option<&str>,
    ) -> Result<bool, SoukError> {
        let status = RegistryStatus {
            signer,
            yanked,
            deprecated,
            revoked,
        };
        let mut conn = self.control.pool().acquire().await?;
        Ok(versions::set_registry_status(&mut conn, slug, version, status).await?)
    }

    /// What this host offers, for the resolver: every version that is not
    /// revoked, with its dependencies, digest and whether it is yanked.
    ///
    /// # Errors
    /// Database errors, or a stored manifest that no longer parses.
    pub async fn registry_index(&self) -> Result<souk_module_registry::RegistryIndex, SoukError> {
        use souk_module_registry::{OfferedVersion, RegistryIndex};
        let rows = versions::not_revoked(&mut *self.control.pool().acquire().await?).await?;
        let mut index = RegistryIndex::new();
        for row in rows {
            let manifest = self.manifest(&row)?;
            let digest =
                Digest::parse(&row.digest).map_err(|e| SoukError::Internal(anyhow::anyhow!(e)))?;
            index
                .offer(
                    manifest.slug.clone(),
                    OfferedVersion {
                        version: manifest.version.clone(),
                        dependencies: manifest.dependencies.clone(),
                        digest,
                        yanked: row.yanked_reason.is_some(),
                    },
                )
                .map_err(|e| SoukError::Internal(anyhow::anyhow!("{e}")))?;
        }
        Ok(index)
    }

    /// Versions no registry key has signed yet: (slug, version, package bytes).
    ///
    /// # Errors
    /// Database or I/O errors.
    pub async fn unsigned_versions(&self) -> Result<Vec<(String, String, Vec<u8>)>, SoukError> {
        let rows = versions::unsigned(&mut *self.control.pool().acquire().await?).await?;
        rows.into_iter()
            .map(|row| {
                let bytes = std::fs::read(&row.package_path).map_err(|e| {
                    SoukError::Internal(anyhow::anyhow!("package {}: {e}", row.package_path))
                })?;
                Ok((row.slug, row.version, bytes))
            })
            .collect()
    }

    /// Slugs of the tenants that have version `version` of `slug`
    /// installed, in order (who a revocation stops).
    ///
    /// # Errors
    /// Database errors.
    pub async fn tenants_running(
        &self,
        slug: &str,
        version: &str,
    ) -> Result<Vec<String>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(installations::tenants_running(&mut conn, slug, version).await?)
    }

    /// Refuses a revoked version. Read from the database on every call, not
    /// cached, so a revocation recorded by another process (`souk registry
    /// pull`) takes effect at once.
    ///
    /// # Errors
    /// [`SoukError::Revoked`] when the version was revoked.
    pub async fn ensure_not_revoked(&self, slug: &str, version: &str) -> Result<(), SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        match versions::revoked_reason(&mut conn, slug, version).await? {
            Some(reason) => Err(revoked(slug, version, &reason)),
            None => Ok(()),
        }
    }
}

/// The error for running or installing a revoked version.
pub fn revoked(slug: &str, version: &str, reason: &str) -> SoukError {
    SoukError::Revoked(format!(
        "{slug} {version} was revoked by its publisher ({reason}); the host will not run it. \
         Upgrade to a version that is not revoked, or uninstall it"
    ))
}

fn sort_newest_first(rows: &mut [VersionRow]) {
    rows.sort_by(|a, b| {
        let va = semver::Version::parse(&a.version).ok();
        let vb = semver::Version::parse(&b.version).ok();
        vb.cmp(&va)
    });
}

fn poisoned() -> SoukError {
    SoukError::Internal(anyhow::anyhow!("module cache poisoned"))
}

/// The migrations a new module version declares, as a refusal of the
/// package when they cannot be listed.
async fn declared_migrations(
    manifest: &Manifest,
    loaded: &LoadedModule,
) -> Result<Arc<[Migration]>, SoukError> {
    loaded
        .declared_migrations(CallContext::system(manifest))
        .await
        .map(Arc::from)
        .map_err(|e| refused_migrations(manifest, &e))
}

/// The refusal of a package whose (or whose sibling version's)
/// `migrations()` failed.
fn refused_migrations(manifest: &Manifest, error: &CallError) -> SoukError {
    SoukError::PackageRefused(format!(
        "package refused: {} {}: migrations() failed: {error}",
        manifest.slug, manifest.version
    ))
}

#[cfg(test)]
mod tests;
