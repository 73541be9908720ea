//! Dependency resolution for module installs, and the tenant lockfile.
//!
//! This module owns one question: *which module versions must be added so a
//! tenant gets what it asked for?* It answers it with the PubGrub solver
//! (the `pubgrub` crate) over what a [`RegistryIndex`] offers, and writes the
//! answer down in a [`Lockfile`] so a reinstall gets the same bytes.
//!
//! The rules a resolution follows:
//!
//! - **Installed modules never change.** An install may only add modules.
//!   Each [`InstalledModule`] is pinned to its exact version, and its
//!   dependency ranges keep constraining what may be added.
//! - **Yanked versions are never chosen** for a new resolution. A lockfile
//!   may still name one ([`resolve_lockfile`]), and an installed yanked
//!   version stays as it is.
//! - **The newest satisfying version wins**, unless choosing it makes the
//!   whole install impossible.
//! - **Dependencies come first**: an [`InstallPlan`] lists each module after
//!   every module it depends on, because the installer refuses a module
//!   whose dependencies are not installed yet. For the same reason a
//!   dependency cycle among the modules to add is refused
//!   ([`ResolveError::DependencyCycle`]).
//!
//! When no solution exists, the solver's proof (a `pubgrub::DerivationTree`)
//! is turned into sentences a tenant admin can follow, naming the modules and
//! versions involved ([`Conflict`]).
//!
//! Semver requirements become the solver's version sets as
//! [`requirement_range`] documents, with Cargo's pre-release rule applied
//! over every version the resolution knows.
//!
//! The parts, one file each: `index` (the versions a registry offers),
//! `ranges` (requirements as version sets), `solver` (the `pubgrub`
//! dependency provider), `explanation` (a failed resolution in words) and
//! `lockfile` (the lockfile, and installing exactly what it pins). This file
//! holds the resolution's inputs and outputs, [`resolve_install`] and the
//! install order both ways of resolving share.

mod explanation;
mod index;
mod lockfile;
mod ranges;
mod solver;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use semver::{Version, VersionReq};

use crate::manifest::{Dependency, Slug};
use crate::package::Digest;

pub use explanation::Conflict;
pub use index::{DuplicateVersion, OfferedVersion, RegistryIndex};
pub use lockfile::{LockedModule, Lockfile, LockfileError, LockfileRefusal, resolve_lockfile};
pub use ranges::{UnsupportedComparator, requirement_range};

/// A module a tenant already has. It stays exactly as it is: a resolution
/// never upgrades, downgrades or removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModule {
    pub slug: Slug,
    pub version: Version,
    /// The sha256 of the installed package.
    pub digest: Digest,
    /// The dependencies the installed version declared; they keep
    /// constraining the modules an install may add.
    pub dependencies: Vec<Dependency>,
}

/// A module the tenant asks to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedModule {
    pub slug: Slug,
    /// The acceptable versions; `None` accepts any.
    pub requirement: Option<VersionReq>,
}

impl RequestedModule {
    /// Asks for any version of `slug` (the newest that fits is chosen).
    pub fn any(slug: Slug) -> Self {
        RequestedModule {
            slug,
            requirement: None,
        }
    }

    /// Asks for a version of `slug` that satisfies `requirement`.
    pub fn matching(slug: Slug, requirement: VersionReq) -> Self {
        RequestedModule {
            slug,
            requirement: Some(requirement),
        }
    }
}

// ---------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------

/// One module version an install adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedModule {
    pub slug: Slug,
    pub version: Version,
    /// The sha256 the package must have.
    pub digest: Digest,
}

/// The modules an install adds, in the order to install them: every module
/// comes after all the modules it depends on. Modules already installed are
/// not listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallPlan {
    /// The modules to add, dependencies first.
    pub modules: Vec<PlannedModule>,
}

impl InstallPlan {
    /// Whether the install adds nothing (everything asked for is installed).
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The version the plan adds for `slug`, if it adds that module.
    pub fn version_of(&self, slug: &Slug) -> Option<&Version> {
        self.modules
            .iter()
            .find(|m| &m.slug == slug)
            .map(|m| &m.version)
    }
}

/// Why a resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No set of versions satisfies every constraint.
    #[error("{0}")]
    Conflict(Conflict),
    /// A requested requirement uses a comparator this resolver does not know
    /// (a newer `semver` crate may add operators).
    #[error(
        "the requirement {requirement} for {slug} uses an operator Souk does not support; use =, >, >=, <, <=, ~, ^ or *"
    )]
    UnsupportedRequirement {
        slug: Slug,
        /// The requirement as given.
        requirement: VersionReq,
    },
    /// The versions resolve, but the modules to add depend on each other in
    /// a circle, so none of them can be installed first.
    #[error(
        "{}: modules that depend on each other cannot be installed, because Souk installs a module only after its dependencies",
        describe_cycle(cycle)
    )]
    DependencyCycle {
        /// The modules on the cycle, each depending on the next; the last
        /// depends on the first.
        cycle: Vec<(Slug, Version)>,
    },
    /// Installing from a lockfile was refused: the registry, the tenant or
    /// the lockfile itself disagrees with what the lockfile pins.
    #[error(transparent)]
    Lockfile(Box<LockfileRefusal>),
}

impl From<LockfileRefusal> for ResolveError {
    fn from(refusal: LockfileRefusal) -> Self {
        ResolveError::Lockfile(Box::new(refusal))
    }
}

/// "forum 2.0.0 needs chat 1.0.0, which needs forum 2.0.0".
fn describe_cycle(cycle: &[(Slug, Version)]) -> String {
    let named: Vec<String> = cycle.iter().map(|(s, v)| format!("{s} {v}")).collect();
    let Some(first) = named.first() else {
        return "modules depend on each other".to_owned();
    };
    let mut text = first.clone();
    for (i, next) in named.iter().skip(1).chain([first]).enumerate() {
        let joint = if i == 0 { " needs " } else { ", which needs " };
        text.push_str(joint);
        text.push_str(next);
    }
    text
}

/// Resolves an install: which modules, in which versions, must be added so
/// that every requested module is installed, every dependency is satisfied,
/// and no installed module changes.
///
/// A requested module the tenant already has in an acceptable version adds
/// nothing. Among solutions, newer versions are preferred. Yanked versions
/// are never chosen.
///
/// # Errors
/// - [`ResolveError::Conflict`] when no choice of versions works; its text
///   explains why, naming modules and versions.
/// - [`ResolveError::UnsupportedRequirement`] when a request's requirement
///   uses an unknown operator.
/// - [`ResolveError::DependencyCycle`] when the modules to add depend on each
///   other in a circle.
pub fn resolve_install(
    index: &RegistryIndex,
    installed: &[InstalledModule],
    requests: &[RequestedModule],
) -> Result<InstallPlan, ResolveError> {
    let installed_by_slug: BTreeMap<Slug, &InstalledModule> =
        installed.iter().map(|m| (m.slug.clone(), m)).collect();

    // A request for an installed module is met by that module or cannot be
    // met at all: the solver would only restate the pin.
    let mut open_requests = Vec::new();
    for request in requests {
        match installed_by_slug.get(&request.slug) {
            None => open_requests.push(request),
            Some(have) => {
                let accepted = request
                    .requirement
                    .as_ref()
                    .is_none_or(|req| req.matches(&have.version));
                if !accepted {
                    return Err(ResolveError::Conflict(Conflict::installed_differs(
                        request, have,
                    )));
                }
            }
        }
    }
    if open_requests.is_empty() {
        return Ok(InstallPlan::default());
    }
    let added = solver::solve(
        index,
        installed_by_slug,
        open_requests,
        explanation::explain,
    )?;
    install_order(&added)
}

/// Orders the modules to add so each comes after the modules it depends on
/// among them; ties are broken by slug so the order is stable.
///
/// # Errors
/// [`ResolveError::DependencyCycle`] when no such order exists.
fn install_order(added: &BTreeMap<Slug, &OfferedVersion>) -> Result<InstallPlan, ResolveError> {
    // For each module to add: the modules to add it still waits for.
    let mut waiting_on: BTreeMap<&Slug, BTreeSet<&Slug>> = added
        .iter()
        .map(|(slug, offered)| {
            let deps = offered
                .dependencies
                .iter()
                .map(|d| &d.slug)
                .filter(|d| added.contains_key(*d))
                .collect();
            (slug, deps)
        })
        .collect();

    let mut plan = InstallPlan::default();
    while let Some(next) = waiting_on
        .iter()
        .find(|(_, deps)| deps.is_empty())
        .map(|(slug, _)| *slug)
    {
        waiting_on.remove(next);
        for deps in waiting_on.values_mut() {
            deps.remove(next);
        }
        if let Some(offered) = added.get(next) {
            plan.modules.push(PlannedModule {
                slug: next.clone(),
                version: offered.version.clone(),
                digest: offered.digest,
            });
        }
    }
    if waiting_on.is_empty() {
        return Ok(plan);
    }

    // Every module left waits on another one left, so following the first
    // dependency from any of them must come back to a module already seen.
    let mut path: Vec<&Slug> = Vec::new();
    let mut current = waiting_on.keys().next().copied();
    while let Some(slug) = current {
        if let Some(start) = path.iter().position(|s| *s == slug) {
            let cycle = path[start..]
                .iter()
                .filter_map(|s| added.get(*s).map(|o| ((*s).clone(), o.version.clone())))
                .collect();
            return Err(ResolveError::DependencyCycle { cycle });
        }
        path.push(slug);
        current = waiting_on
            .get(slug)
            .and_then(|deps| deps.iter().next().copied());
    }
    // Unreachable by the argument above; report every module left rather
    // than pretend the plan is complete.
    Err(ResolveError::DependencyCycle {
        cycle: waiting_on
            .keys()
            .filter_map(|s| added.get(*s).map(|o| ((*s).clone(), o.version.clone())))
            .collect(),
    })
}
