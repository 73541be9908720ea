//! The index: every version a registry offers, the only view of the registry
//! the resolver has.

use std::collections::BTreeMap;

use semver::Version;

use crate::manifest::{Dependency, Slug};
use crate::package::Digest;

/// One version of a module as a registry offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedVersion {
    pub version: Version,
    /// The modules this version needs, as its manifest declares them.
    pub dependencies: Vec<Dependency>,
    /// The sha256 of the package the registry serves for this version.
    pub digest: Digest,
    /// Whether the version is yanked: never chosen for a new resolution, but
    /// still installable from a lockfile.
    pub yanked: bool,
}

/// A version was offered twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{slug} {version} is already in the index: versions are immutable, publish a new version instead"
)]
pub struct DuplicateVersion {
    pub slug: Slug,
    pub version: Version,
}

/// What a registry offers: every version of every module it knows, with
/// their dependencies, digests and yank state.
///
/// The resolver reads only this; how the index was fetched and verified is
/// not its concern.
#[derive(Debug, Clone, Default)]
pub struct RegistryIndex {
    modules: BTreeMap<Slug, BTreeMap<Version, OfferedVersion>>,
}

impl RegistryIndex {
    /// An index that offers nothing.
    pub fn new() -> Self {
        RegistryIndex::default()
    }

    /// Adds one version of a module.
    ///
    /// # Errors
    /// [`DuplicateVersion`] when the index already has this version of this
    /// module: versions are immutable, so a second record for the same
    /// version is refused rather than replacing the first.
    pub fn offer(&mut self, slug: Slug, offered: OfferedVersion) -> Result<(), DuplicateVersion> {
        let versions = self.modules.entry(slug.clone()).or_default();
        if versions.contains_key(&offered.version) {
            return Err(DuplicateVersion {
                slug,
                version: offered.version,
            });
        }
        versions.insert(offered.version.clone(), offered);
        Ok(())
    }

    /// Every version of `slug` the index has, oldest first, yanked ones
    /// included.
    pub fn versions(&self, slug: &Slug) -> impl Iterator<Item = &OfferedVersion> {
        self.modules.get(slug).into_iter().flat_map(|v| v.values())
    }

    /// One version of a module, if the index has it.
    pub fn get(&self, slug: &Slug, version: &Version) -> Option<&OfferedVersion> {
        self.modules.get(slug)?.get(version)
    }
}
