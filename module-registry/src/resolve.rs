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
//! # Semver requirements as version sets
//!
//! The solver works on sets of [`semver::Version`] made of intervals in
//! semver precedence order. [`requirement_range`] converts a
//! [`semver::VersionReq`] into the interval set of its comparators,
//! intersected:
//!
//! | comparator | versions |
//! | --- | --- |
//! | `=1.2.3`, `=1.2.3-rc.1` | exactly that version |
//! | `=1.2`, `1.2.*` | `>=1.2.0, <1.3.0` |
//! | `=1`, `1.*` | `>=1.0.0, <2.0.0` |
//! | `>1.2.3` / `>1.2` / `>1` | `>1.2.3` / `>=1.3.0` / `>=2.0.0` |
//! | `>=1.2.3-rc.1` / `>=1.2` | from that version on / `>=1.2.0` |
//! | `<1.2.3` / `<1.2` / `<1` | below `1.2.3` / `1.2.0` / `1.0.0` |
//! | `<=1.2.3` / `<=1.2` / `<=1` | up to `1.2.3` / below `1.3.0` / below `2.0.0` |
//! | `~1.2.3` / `~1.2` / `~1` | `>=1.2.3, <1.3.0` / `>=1.2.0, <1.3.0` / `>=1.0.0, <2.0.0` |
//! | `^1.2.3` / `^0.2.3` / `^0.0.3` | `<2.0.0` / `<0.3.0` / `<0.0.4`, from that version |
//! | `^1.2` / `^0.2` / `^0.0` / `^1` / `^0` | `>=1.2.0, <2.0.0` / `>=0.2.0, <0.3.0` / `>=0.0.0, <0.1.0` / `>=1.0.0, <2.0.0` / `>=0.0.0, <1.0.0` |
//! | `*` (no comparator) | every version |
//!
//! **Pre-releases** follow Cargo's rule, the one `semver::VersionReq::matches`
//! implements: a pre-release such as `2.0.0-beta.1` satisfies a requirement
//! only if it is inside the intervals above *and* one comparator names a
//! pre-release of the same `major.minor.patch` (`>=2.0.0-alpha`). So `^1.4`
//! never picks `1.5.0-rc.1`, and `>=2.0.0-alpha, <3` picks `2.0.0-beta` but
//! not `2.1.0-beta`. Intervals cannot express "no pre-releases" (there is a
//! pre-release between any two releases), so the solver works on each
//! requirement's intervals with every *known* version that `matches` rejects
//! cut out, and every known version it accepts (such as one carrying build
//! metadata) added in. The solver only ever picks known versions, so its
//! choices agree with `VersionReq::matches` exactly; [`requirement_range`]
//! alone returns the intervals, which are what explanations print.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::ops::{Bound, Range};
use std::sync::Arc;

use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, DerivationTree, Derived, External,
    Map, PackageResolutionStatistics, PubGrubError, Ranges, Term,
};
use semver::{BuildMetadata, Comparator, Op, Prerelease, Version, VersionReq};
use serde::Deserialize;

use crate::manifest::{Dependency, Slug};
use crate::package::Digest;

/// The largest number of versions an explanation lists for one module before
/// it shortens the list to the newest ones.
const MAX_LISTED_VERSIONS: usize = 8;

/// The lockfile format this code writes and reads.
const LOCKFILE_FORMAT: i64 = 1;

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// One version of a module as a registry offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedVersion {
    /// The version number.
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
    /// The module.
    pub slug: Slug,
    /// The version offered twice.
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

/// A module a tenant already has. It stays exactly as it is: a resolution
/// never upgrades, downgrades or removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModule {
    /// The module.
    pub slug: Slug,
    /// The installed version.
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
    /// The module.
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

    fn describe(&self) -> String {
        match &self.requirement {
            Some(req) if !req.comparators.is_empty() => {
                format!("{} {}", self.slug, bracketed(&req.to_string()))
            }
            _ => self.slug.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------

/// One module version an install adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedModule {
    /// The module.
    pub slug: Slug,
    /// The chosen version.
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

/// Why the requested modules cannot be installed together with what the
/// tenant has, in sentences a tenant admin can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    explanation: String,
    modules: BTreeSet<Slug>,
}

impl Conflict {
    /// The explanation: one sentence per line, each naming the modules and
    /// versions involved, the last one saying what cannot be installed.
    pub fn explanation(&self) -> &str {
        &self.explanation
    }

    /// Every module the explanation mentions.
    pub fn modules(&self) -> &BTreeSet<Slug> {
        &self.modules
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
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
        /// The module asked for.
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

/// Why installing exactly what a lockfile pins was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockfileRefusal {
    /// A lockfile names a version the registry does not offer.
    #[error(
        "the lockfile pins {slug} {version}, but the registry does not offer that version ({})",
        describe_offered(offered)
    )]
    LockedVersionMissing {
        /// The module.
        slug: Slug,
        /// The locked version.
        version: Version,
        /// The versions the registry does offer, oldest first.
        offered: Vec<Version>,
    },
    /// The registry serves different bytes than the lockfile recorded.
    #[error(
        "the lockfile pins {slug} {version} with digest {locked}, but the registry serves {served}: the package changed since it was locked, so it is refused"
    )]
    DigestMismatch {
        /// The module.
        slug: Slug,
        /// The locked version.
        version: Version,
        /// The digest the lockfile recorded.
        locked: Digest,
        /// The digest the registry serves now.
        served: Digest,
    },
    /// A locked module depends on a module the lockfile does not list and
    /// the tenant does not have.
    #[error(
        "the lockfile is incomplete: {slug} {version} needs {dependency} {requirement}, which the lockfile does not list and this tenant does not have"
    )]
    LockedDependencyMissing {
        /// The locked module.
        slug: Slug,
        /// Its locked version.
        version: Version,
        /// The module it needs.
        dependency: Slug,
        /// The versions it accepts.
        requirement: VersionReq,
    },
    /// A locked module needs a version of another module that the lockfile
    /// (or the tenant) has in a version it does not accept.
    #[error(
        "the lockfile is inconsistent: {slug} {version} needs {dependency} {requirement}, but the lockfile pins {dependency} {found}"
    )]
    LockedDependencyMismatch {
        /// The locked module.
        slug: Slug,
        /// Its locked version.
        version: Version,
        /// The module it needs.
        dependency: Slug,
        /// The versions it accepts.
        requirement: VersionReq,
        /// The version the lockfile or the tenant has.
        found: Version,
    },
    /// A locked module lists itself as a dependency.
    #[error("{slug} {version} depends on itself, which a module may not do")]
    LockedSelfDependency {
        /// The module.
        slug: Slug,
        /// Its locked version.
        version: Version,
    },
    /// The tenant has a module installed in another version or with other
    /// bytes than the lockfile says.
    #[error(
        "this tenant has {slug} {installed} ({installed_digest}) installed, but the lockfile pins {slug} {locked} ({locked_digest}); installing from a lockfile never changes installed modules"
    )]
    InstalledDiffersFromLockfile {
        /// The module.
        slug: Slug,
        /// The installed version.
        installed: Version,
        /// The installed package's digest.
        installed_digest: Digest,
        /// The locked version.
        locked: Version,
        /// The locked digest.
        locked_digest: Digest,
    },
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

fn describe_offered(offered: &[Version]) -> String {
    if offered.is_empty() {
        "it offers no version of that module".to_owned()
    } else {
        format!("offered: {}", list_versions(offered.iter()))
    }
}

// ---------------------------------------------------------------------------
// Semver requirements as version sets
// ---------------------------------------------------------------------------

/// A comparator uses an operator this module does not know how to convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the comparator {comparator} uses an unsupported operator")]
pub struct UnsupportedComparator {
    /// The comparator as written.
    pub comparator: String,
}

/// The versions a requirement's comparators allow, as intervals in semver
/// precedence order (see the [module documentation](self) for each
/// operator).
///
/// The intervals ignore the pre-release rule: `^1.4` gives
/// `>=1.4.0, <2.0.0`, which in precedence order also holds `1.5.0-rc.1`,
/// although `^1.4` does not accept it. The resolver removes such versions for
/// every version the registry knows.
///
/// # Errors
/// [`UnsupportedComparator`] when a comparator uses an operator added to
/// `semver` after this code was written.
pub fn requirement_range(req: &VersionReq) -> Result<Ranges<Version>, UnsupportedComparator> {
    let mut range = Ranges::full();
    for comparator in &req.comparators {
        range = range.intersection(&comparator_range(comparator)?);
    }
    Ok(range)
}

fn release(major: u64, minor: u64, patch: u64) -> Version {
    Version {
        major,
        minor,
        patch,
        pre: Prerelease::EMPTY,
        build: BuildMetadata::EMPTY,
    }
}

/// The first release after every version `c`'s prefix names: for `1` it is
/// `2.0.0`, for `1.2` it is `1.3.0`, for `1.2.3` it is `1.2.4`. `None` when
/// the numbers overflow, meaning "no upper bound".
fn after_prefix(c: &Comparator) -> Option<Version> {
    match (c.minor, c.patch) {
        (None, _) => Some(release(c.major.checked_add(1)?, 0, 0)),
        (Some(minor), None) => Some(release(c.major, minor.checked_add(1)?, 0)),
        (Some(minor), Some(patch)) => Some(release(c.major, minor, patch.checked_add(1)?)),
    }
}

/// `[from, until)`, or `[from, ∞)` when `until` is `None`.
fn span(from: Version, until: Option<Version>) -> Ranges<Version> {
    match until {
        Some(until) => Ranges::between(from, until),
        None => Ranges::higher_than(from),
    }
}

fn comparator_range(c: &Comparator) -> Result<Ranges<Version>, UnsupportedComparator> {
    // The lowest version the comparator names: missing parts are zero, and
    // a pre-release only exists when all three numbers are given.
    let named = Version {
        major: c.major,
        minor: c.minor.unwrap_or(0),
        patch: c.patch.unwrap_or(0),
        pre: c.pre.clone(),
        build: BuildMetadata::EMPTY,
    };
    let complete = c.minor.is_some() && c.patch.is_some();
    let range = match c.op {
        Op::Exact | Op::Wildcard if complete => Ranges::singleton(named),
        Op::Exact | Op::Wildcard => span(named, after_prefix(c)),
        Op::Greater if complete => Ranges::strictly_higher_than(named),
        Op::Greater => match after_prefix(c) {
            Some(next) => Ranges::higher_than(next),
            None => Ranges::empty(),
        },
        Op::GreaterEq => Ranges::higher_than(named),
        Op::Less => Ranges::strictly_lower_than(named),
        Op::LessEq if complete => Ranges::lower_than(named),
        Op::LessEq => match after_prefix(c) {
            Some(next) => Ranges::strictly_lower_than(next),
            None => Ranges::full(),
        },
        Op::Tilde => {
            let until = match c.minor {
                None => c.major.checked_add(1).map(|m| release(m, 0, 0)),
                Some(minor) => minor.checked_add(1).map(|n| release(c.major, n, 0)),
            };
            span(named, until)
        }
        Op::Caret => {
            let until = match (c.major, c.minor, c.patch) {
                (major, None, _) => major.checked_add(1).map(|m| release(m, 0, 0)),
                (0, Some(0), None) => Some(release(0, 1, 0)),
                (0, Some(0), Some(patch)) => patch.checked_add(1).map(|p| release(0, 0, p)),
                (0, Some(minor), _) => minor.checked_add(1).map(|n| release(0, n, 0)),
                (major, Some(_), _) => major.checked_add(1).map(|m| release(m, 0, 0)),
            };
            span(named, until)
        }
        _ => {
            return Err(UnsupportedComparator {
                comparator: c.to_string(),
            });
        }
    };
    Ok(range)
}

/// `requirement_range(req)` made exact over `known`: every known version
/// `req` rejects (a pre-release it does not name) is cut out, and every known
/// version it accepts outside the intervals (one with build metadata) is
/// added.
fn exact_range<'v>(
    req: &VersionReq,
    known: impl IntoIterator<Item = &'v Version>,
) -> Result<Ranges<Version>, UnsupportedComparator> {
    let mut range = requirement_range(req)?;
    for version in known {
        match (range.contains(version), req.matches(version)) {
            (true, false) => {
                range = range.intersection(&Ranges::singleton(version.clone()).complement());
            }
            (false, true) => range = range.union(&Ranges::singleton(version.clone())),
            _ => {}
        }
    }
    Ok(range)
}

// ---------------------------------------------------------------------------
// The solver's view of the registry and the tenant
// ---------------------------------------------------------------------------

/// A package as the solver sees it: the install itself, or a module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Node {
    /// The install being resolved: depends on the requested modules and
    /// pins every installed one.
    Install,
    /// A module.
    Module(Slug),
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Install => f.write_str("this install"),
            Node::Module(slug) => write!(f, "{slug}"),
        }
    }
}

/// Why a module version cannot be used at all, whatever else is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unusable {
    /// It lists itself as a dependency.
    DependsOnItself,
    /// One of its requirements uses an operator we cannot convert.
    UnsupportedRequirement {
        dependency: Slug,
        requirement: VersionReq,
    },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::DependsOnItself => f.write_str("it depends on itself"),
            Unusable::UnsupportedRequirement {
                dependency,
                requirement,
            } => write!(
                f,
                "its requirement {dependency} {requirement} uses an operator Souk does not support"
            ),
        }
    }
}

type VersionSet = Ranges<Version>;
type Tree = DerivationTree<Node, VersionSet, Unusable>;

/// The root's version; the install node has only this one.
fn install_version() -> Version {
    release(0, 0, 0)
}

/// The `pubgrub` dependency provider for one resolution.
struct Solver<'a> {
    index: &'a RegistryIndex,
    installed: BTreeMap<Slug, &'a InstalledModule>,
    /// Requested modules (not installed), with their requirement.
    requests: Vec<&'a RequestedModule>,
    /// What the install node depends on: the requests and the pins.
    install_dependencies: DependencyConstraints<Node, VersionSet>,
    /// Requirement texts by the exact version set they produced, per module,
    /// so explanations can print `>=2.0` rather than a computed interval.
    labels: RefCell<BTreeMap<Slug, Vec<(VersionSet, String)>>>,
}

impl<'a> Solver<'a> {
    /// Every version of `slug` the resolution knows about: offered ones
    /// (yanked included) and the installed one.
    fn known_versions(&self, slug: &Slug) -> Vec<Version> {
        let mut versions: BTreeSet<Version> = self
            .index
            .versions(slug)
            .map(|o| o.version.clone())
            .collect();
        if let Some(installed) = self.installed.get(slug) {
            versions.insert(installed.version.clone());
        }
        versions.into_iter().collect()
    }

    /// The versions of `slug` the solver may choose, oldest first: only the
    /// installed one if there is one, otherwise every offered version that is
    /// not yanked.
    fn candidates(&self, slug: &Slug) -> Vec<Version> {
        match self.installed.get(slug) {
            Some(installed) => vec![installed.version.clone()],
            None => self
                .index
                .versions(slug)
                .filter(|o| !o.yanked)
                .map(|o| o.version.clone())
                .collect(),
        }
    }

    /// The dependencies a chosen version of `slug` declares.
    fn declared_dependencies(&self, slug: &Slug, version: &Version) -> Option<&'a [Dependency]> {
        if let Some(installed) = self.installed.get(slug)
            && &installed.version == version
        {
            return Some(&installed.dependencies);
        }
        self.index
            .get(slug, version)
            .map(|o| o.dependencies.as_slice())
    }

    /// The exact version set `req` allows for `slug`, remembering the text.
    fn range_for(
        &self,
        slug: &Slug,
        req: &VersionReq,
    ) -> Result<VersionSet, UnsupportedComparator> {
        let range = exact_range(req, &self.known_versions(slug))?;
        let mut labels = self.labels.borrow_mut();
        let known = labels.entry(slug.clone()).or_default();
        if !known.iter().any(|(r, _)| r == &range) {
            known.push((range.clone(), req.to_string()));
        }
        Ok(range)
    }

    fn constraints(
        &self,
        owner: &Slug,
        dependencies: &[Dependency],
    ) -> Result<DependencyConstraints<Node, VersionSet>, Unusable> {
        let mut constraints = DependencyConstraints::default();
        for dependency in dependencies {
            if &dependency.slug == owner {
                return Err(Unusable::DependsOnItself);
            }
            let range = self
                .range_for(&dependency.slug, &dependency.requirement)
                .map_err(|_| Unusable::UnsupportedRequirement {
                    dependency: dependency.slug.clone(),
                    requirement: dependency.requirement.clone(),
                })?;
            constraints
                .entry(Node::Module(dependency.slug.clone()))
                .and_modify(|r: &mut VersionSet| *r = r.intersection(&range))
                .or_insert(range);
        }
        Ok(constraints)
    }

    fn install_constraints(&self) -> Result<DependencyConstraints<Node, VersionSet>, ResolveError> {
        let mut constraints = DependencyConstraints::default();
        for installed in self.installed.values() {
            constraints.insert(
                Node::Module(installed.slug.clone()),
                Ranges::singleton(installed.version.clone()),
            );
        }
        for request in &self.requests {
            let range = match &request.requirement {
                Some(req) => self.range_for(&request.slug, req).map_err(|_| {
                    ResolveError::UnsupportedRequirement {
                        slug: request.slug.clone(),
                        requirement: req.clone(),
                    }
                })?,
                None => Ranges::full(),
            };
            constraints
                .entry(Node::Module(request.slug.clone()))
                .and_modify(|r: &mut VersionSet| *r = r.intersection(&range))
                .or_insert(range);
        }
        Ok(constraints)
    }
}

impl DependencyProvider for Solver<'_> {
    type P = Node;
    type V = Version;
    type VS = VersionSet;
    type M = Unusable;
    type Err = Infallible;
    /// Conflicts seen first, then the fewest candidates: deciding the most
    /// constrained module early finds conflicts sooner.
    type Priority = (bool, u32, Reverse<usize>);

    fn prioritize(
        &self,
        package: &Node,
        range: &VersionSet,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        match package {
            Node::Install => (true, 0, Reverse(0)),
            Node::Module(slug) => {
                let candidates = self
                    .candidates(slug)
                    .iter()
                    .filter(|v| range.contains(v))
                    .count();
                (false, stats.conflict_count(), Reverse(candidates))
            }
        }
    }

    fn choose_version(
        &self,
        package: &Node,
        range: &VersionSet,
    ) -> Result<Option<Version>, Infallible> {
        Ok(match package {
            Node::Install => Some(install_version()).filter(|v| range.contains(v)),
            Node::Module(slug) => self
                .candidates(slug)
                .into_iter()
                .rev()
                .find(|v| range.contains(v)),
        })
    }

    fn get_dependencies(
        &self,
        package: &Node,
        version: &Version,
    ) -> Result<Dependencies<Node, VersionSet, Unusable>, Infallible> {
        let Node::Module(slug) = package else {
            return Ok(Dependencies::Available(self.install_dependencies.clone()));
        };
        let declared = self.declared_dependencies(slug, version).unwrap_or(&[]);
        Ok(match self.constraints(slug, declared) {
            Ok(constraints) => Dependencies::Available(constraints),
            Err(reason) => Dependencies::Unavailable(reason),
        })
    }
}

// ---------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------

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
                    return Err(ResolveError::Conflict(Conflict {
                        explanation: format!(
                            "You asked for {}, but this tenant has {} {} installed. \
                             Installing never changes a module the tenant already has.",
                            request.describe(),
                            have.slug,
                            have.version
                        ),
                        modules: BTreeSet::from([request.slug.clone()]),
                    }));
                }
            }
        }
    }
    if open_requests.is_empty() {
        return Ok(InstallPlan::default());
    }

    let mut solver = Solver {
        index,
        installed: installed_by_slug,
        requests: open_requests,
        install_dependencies: DependencyConstraints::default(),
        labels: RefCell::new(BTreeMap::new()),
    };
    solver.install_dependencies = solver.install_constraints()?;

    let solution = match pubgrub::resolve(&solver, Node::Install, install_version()) {
        Ok(solution) => solution,
        Err(PubGrubError::NoSolution(mut tree)) => {
            solver.drop_version_gaps(&mut tree);
            return Err(ResolveError::Conflict(
                Explainer::new(&solver).explain(&tree),
            ));
        }
        Err(PubGrubError::ErrorChoosingVersion { source, .. })
        | Err(PubGrubError::ErrorRetrievingDependencies { source, .. })
        | Err(PubGrubError::ErrorInShouldCancel(source)) => match source {},
    };

    let mut added = BTreeMap::new();
    for (node, version) in solution {
        let Node::Module(slug) = node else { continue };
        if solver.installed.contains_key(&slug) {
            continue;
        }
        // The solver only chooses offered versions for modules not installed.
        if let Some(offered) = index.get(&slug, &version) {
            added.insert(slug, offered);
        }
    }
    install_order(&added)
}

/// Resolves an install from a lockfile: exactly the locked versions, yanked
/// or not, each with the digest the lockfile recorded. Locked modules the
/// tenant already has are skipped; the rest are planned dependencies first.
///
/// # Errors
/// - [`ResolveError::Lockfile`] with [`LockfileRefusal::LockedVersionMissing`]
///   when the registry does not offer a locked version,
///   [`LockfileRefusal::DigestMismatch`] when it serves other bytes for one,
///   [`LockfileRefusal::InstalledDiffersFromLockfile`] when the tenant has a
///   locked module in another version or with other bytes, and
///   [`LockfileRefusal::LockedDependencyMissing`],
///   [`LockfileRefusal::LockedDependencyMismatch`] or
///   [`LockfileRefusal::LockedSelfDependency`] when the locked versions do
///   not satisfy each other's dependencies.
/// - [`ResolveError::DependencyCycle`] when locked modules to add depend on
///   each other in a circle.
pub fn resolve_lockfile(
    index: &RegistryIndex,
    installed: &[InstalledModule],
    lockfile: &Lockfile,
) -> Result<InstallPlan, ResolveError> {
    let installed_by_slug: BTreeMap<&Slug, &InstalledModule> =
        installed.iter().map(|m| (&m.slug, m)).collect();

    let mut added = BTreeMap::new();
    for locked in lockfile.modules() {
        if let Some(have) = installed_by_slug.get(&locked.slug) {
            if have.version != locked.version || have.digest != locked.digest {
                return Err(LockfileRefusal::InstalledDiffersFromLockfile {
                    slug: locked.slug.clone(),
                    installed: have.version.clone(),
                    installed_digest: have.digest,
                    locked: locked.version.clone(),
                    locked_digest: locked.digest,
                }
                .into());
            }
            continue;
        }
        let Some(offered) = index.get(&locked.slug, &locked.version) else {
            return Err(LockfileRefusal::LockedVersionMissing {
                slug: locked.slug.clone(),
                version: locked.version.clone(),
                offered: index
                    .versions(&locked.slug)
                    .map(|o| o.version.clone())
                    .collect(),
            }
            .into());
        };
        if offered.digest != locked.digest {
            return Err(LockfileRefusal::DigestMismatch {
                slug: locked.slug.clone(),
                version: locked.version.clone(),
                locked: locked.digest,
                served: offered.digest,
            }
            .into());
        }
        added.insert(locked.slug.clone(), offered);
    }

    // Every dependency of a module to add must be met by what the tenant
    // will have afterwards: the lockfile's versions or the installed ones.
    for (slug, offered) in &added {
        for dependency in &offered.dependencies {
            if &dependency.slug == slug {
                return Err(LockfileRefusal::LockedSelfDependency {
                    slug: slug.clone(),
                    version: offered.version.clone(),
                }
                .into());
            }
            let found = lockfile
                .get(&dependency.slug)
                .map(|l| &l.version)
                .or_else(|| installed_by_slug.get(&dependency.slug).map(|m| &m.version));
            match found {
                None => {
                    return Err(LockfileRefusal::LockedDependencyMissing {
                        slug: slug.clone(),
                        version: offered.version.clone(),
                        dependency: dependency.slug.clone(),
                        requirement: dependency.requirement.clone(),
                    }
                    .into());
                }
                Some(found) if !dependency.requirement.matches(found) => {
                    return Err(LockfileRefusal::LockedDependencyMismatch {
                        slug: slug.clone(),
                        version: offered.version.clone(),
                        dependency: dependency.slug.clone(),
                        requirement: dependency.requirement.clone(),
                        found: found.clone(),
                    }
                    .into());
                }
                Some(_) => {}
            }
        }
    }
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

// ---------------------------------------------------------------------------
// Explaining conflicts
// ---------------------------------------------------------------------------

/// The terms of a fact: which versions of which modules it rules out
/// together (`Positive`) or requires (`Negative`).
fn terms_of(tree: &Tree) -> Map<Node, Term<VersionSet>> {
    let mut terms = Map::default();
    match tree {
        DerivationTree::Derived(derived) => return derived.terms.clone(),
        DerivationTree::External(External::NotRoot(node, version)) => {
            terms.insert(
                node.clone(),
                Term::Negative(Ranges::singleton(version.clone())),
            );
        }
        DerivationTree::External(External::NoVersions(node, set))
        | DerivationTree::External(External::Custom(node, set, _)) => {
            terms.insert(node.clone(), Term::Positive(set.clone()));
        }
        DerivationTree::External(External::FromDependencyOf(owner, owned, dep, required)) => {
            terms.insert(owner.clone(), Term::Positive(owned.clone()));
            terms.insert(dep.clone(), Term::Negative(required.clone()));
        }
    }
    terms
}

impl Solver<'_> {
    /// Whether two facts say the same about every version the solver could
    /// choose: same modules, same polarity, same candidate versions.
    fn same_for_candidates(
        &self,
        a: &Map<Node, Term<VersionSet>>,
        b: &Map<Node, Term<VersionSet>>,
    ) -> bool {
        a.len() == b.len()
            && a.iter().all(|(node, term_a)| {
                let Some(term_b) = b.get(node) else {
                    return false;
                };
                let (set_a, set_b) = match (term_a, term_b) {
                    (Term::Positive(x), Term::Positive(y))
                    | (Term::Negative(x), Term::Negative(y)) => (x, y),
                    _ => return false,
                };
                let versions = match node {
                    Node::Install => vec![install_version()],
                    Node::Module(slug) => self.candidates(slug),
                };
                versions
                    .iter()
                    .all(|v| set_a.contains(v) == set_b.contains(v))
            })
    }

    /// Drops the steps where the solver only notes that no *other* version
    /// exists ("no version of forum in <1.0.0 or >1.0.0"): such a step
    /// changes its fact only for versions that do not exist, so the reader
    /// learns nothing from it. A missing version that matters ("no version of
    /// membership satisfies >=2") changes which modules the fact mentions and
    /// is kept. This generalises `pubgrub`'s `collapse_no_versions`, which
    /// only handles the case where the other cause is an external fact.
    fn drop_version_gaps(&self, tree: &mut Tree) {
        let DerivationTree::Derived(derived) = tree else {
            return;
        };
        self.drop_version_gaps(Arc::make_mut(&mut derived.cause1));
        self.drop_version_gaps(Arc::make_mut(&mut derived.cause2));
        let other = match (derived.cause1.as_ref(), derived.cause2.as_ref()) {
            (DerivationTree::External(External::NoVersions(..)), other)
            | (other, DerivationTree::External(External::NoVersions(..))) => other,
            _ => return,
        };
        if self.same_for_candidates(&terms_of(other), &derived.terms) {
            *tree = other.clone();
        }
    }
}

/// Which joining word a step of the explanation uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Join {
    /// The second fact stands in the way of the first: "A needs membership
    /// >=2, but this tenant has membership 1.4.0".
    But,
    /// The second fact carries the first forward: "you asked for
    /// digital-card ^2, and digital-card 2.x needs membership >=2".
    And,
}

impl Join {
    fn word(self) -> &'static str {
        match self {
            Join::But => "but",
            Join::And => "and",
        }
    }
}

/// The module two facts were combined on: one they both mention that the
/// conclusion no longer does, or else one they mention with opposite
/// polarity.
fn pivot<'t>(
    first: &'t Map<Node, Term<VersionSet>>,
    second: &Map<Node, Term<VersionSet>>,
    conclusion: &Map<Node, Term<VersionSet>>,
) -> Option<&'t Node> {
    let mut shared: Vec<&Node> = first.keys().filter(|n| second.contains_key(*n)).collect();
    shared.sort();
    let opposite = |node: &&&Node| {
        matches!(
            (first.get(**node), second.get(**node)),
            (Some(Term::Positive(_)), Some(Term::Negative(_)))
                | (Some(Term::Negative(_)), Some(Term::Positive(_)))
        )
    };
    shared
        .iter()
        .rev()
        .find(|n| !conclusion.contains_key(**n))
        .or_else(|| shared.iter().rev().find(opposite))
        .copied()
}

/// How the second of two facts relates to the first, judged on their
/// pivot: two requirements of it that cannot both hold oppose each other; a
/// fact that rules its versions out (no such version, unusable) opposes a
/// requirement; a fact about what its versions need carries a requirement
/// of it forward.
fn join_between(
    first: &Map<Node, Term<VersionSet>>,
    second: &Map<Node, Term<VersionSet>>,
    second_rules_out: bool,
    conclusion: &Map<Node, Term<VersionSet>>,
) -> Join {
    let Some(pivot) = pivot(first, second, conclusion) else {
        return Join::And;
    };
    match (first.get(pivot), second.get(pivot)) {
        (Some(Term::Negative(_)), Some(Term::Negative(_))) if !conclusion.contains_key(pivot) => {
            Join::But
        }
        (Some(Term::Negative(_)), Some(Term::Positive(_))) if second_rules_out => Join::But,
        _ => Join::And,
    }
}

fn external_terms(external: &External<Node, VersionSet, Unusable>) -> Map<Node, Term<VersionSet>> {
    terms_of(&DerivationTree::External(external.clone()))
}

/// Whether a fact rules versions out by itself rather than stating a need.
fn rules_out(external: &External<Node, VersionSet, Unusable>) -> bool {
    matches!(external, External::NoVersions(..) | External::Custom(..))
}

/// Turns a derivation tree into sentences, one per line, in an order a
/// reader can follow: each line concludes from facts and earlier lines.
/// It follows the reporting scheme of the PubGrub paper (a derived fact used
/// twice gets a number to refer back to), with Souk's own wording.
struct Explainer<'s, 'a> {
    solver: &'s Solver<'a>,
    lines: Vec<String>,
    /// Line numbers given to shared derived facts, by their shared id.
    numbered: Map<usize, usize>,
    next_number: usize,
    /// Whether an installed module's pin took part in the conflict.
    pins_involved: bool,
}

impl<'s, 'a> Explainer<'s, 'a> {
    fn new(solver: &'s Solver<'a>) -> Self {
        Explainer {
            solver,
            lines: Vec::new(),
            numbered: Map::default(),
            next_number: 0,
            pins_involved: false,
        }
    }

    fn explain(mut self, tree: &Tree) -> Conflict {
        match tree {
            DerivationTree::External(external) => {
                let fact = self.external(external);
                let conclusion = self.conclusion(&Map::default());
                self.lines
                    .push(sentence(&format!("{fact}, so {conclusion}")));
            }
            DerivationTree::Derived(derived) => self.derived(derived),
        }
        if self.pins_involved {
            self.lines
                .push("Installing never changes a module the tenant already has.".to_owned());
        }
        let modules = tree
            .packages()
            .into_iter()
            .filter_map(|node| match node {
                Node::Module(slug) => Some(slug.clone()),
                Node::Install => None,
            })
            .collect();
        Conflict {
            explanation: self.lines.join("\n"),
            modules,
        }
    }

    fn derived(&mut self, derived: &Derived<Node, VersionSet, Unusable>) {
        self.derived_lines(derived);
        if let Some(id) = derived.shared_id
            && !self.numbered.contains_key(&id)
        {
            self.number_last_line();
            self.numbered.insert(id, self.next_number);
        }
    }

    fn derived_lines(&mut self, current: &Derived<Node, VersionSet, Unusable>) {
        let terms = &current.terms;
        match (current.cause1.as_ref(), current.cause2.as_ref()) {
            (DerivationTree::External(e1), DerivationTree::External(e2)) => {
                let (first, second) = self.order_facts(e1, e2, terms);
                let join = join_between(
                    &external_terms(first),
                    &external_terms(second),
                    rules_out(second),
                    terms,
                );
                let first = self.external(first);
                let second = self.external(second);
                let conclusion = self.conclusion(terms);
                self.lines.push(sentence(&format!(
                    "{first}, {} {second}, so {conclusion}",
                    join.word()
                )));
            }
            (DerivationTree::Derived(d), DerivationTree::External(e))
            | (DerivationTree::External(e), DerivationTree::Derived(d)) => {
                let join = join_between(&d.terms, &external_terms(e), rules_out(e), terms);
                let known = self.number_of(d);
                if known.is_none() {
                    self.derived(d);
                }
                let fact = self.external(e);
                let conclusion = self.conclusion(terms);
                let line = match known {
                    Some(n) => sentence(&format!(
                        "{} (see {n}), {} {fact}, so {conclusion}",
                        self.conclusion(&d.terms),
                        join.word()
                    )),
                    None => sentence(&format!("{} {fact}, so {conclusion}", join.word())),
                };
                self.lines.push(line);
            }
            (DerivationTree::Derived(d1), DerivationTree::Derived(d2)) => {
                match (self.number_of(d1), self.number_of(d2)) {
                    (Some(n1), Some(n2)) => {
                        let join = join_between(&d1.terms, &d2.terms, false, terms);
                        let first = self.conclusion(&d1.terms);
                        let second = self.conclusion(&d2.terms);
                        let conclusion = self.conclusion(terms);
                        self.lines.push(sentence(&format!(
                            "{first} (see {n1}), {} {second} (see {n2}), so {conclusion}",
                            join.word()
                        )));
                    }
                    (Some(n), None) | (None, Some(n)) => {
                        let (known, fresh) = if self.number_of(d1).is_some() {
                            (d1, d2)
                        } else {
                            (d2, d1)
                        };
                        self.derived(fresh);
                        let join = join_between(&fresh.terms, &known.terms, false, terms);
                        let earlier = self.conclusion(&known.terms);
                        let conclusion = self.conclusion(terms);
                        self.lines.push(sentence(&format!(
                            "{} {earlier} (see {n}), so {conclusion}",
                            join.word()
                        )));
                    }
                    (None, None) => {
                        // Explain the first on its own, numbered so the
                        // conclusion can refer back to it after the second.
                        self.derived(d1);
                        let n1 = match self.number_of(d1) {
                            Some(n) => n,
                            None => {
                                self.number_last_line();
                                self.next_number
                            }
                        };
                        self.derived(d2);
                        let join = join_between(&d2.terms, &d1.terms, false, terms);
                        let earlier = self.conclusion(&d1.terms);
                        let conclusion = self.conclusion(terms);
                        self.lines.push(sentence(&format!(
                            "{} {earlier} (see {n1}), so {conclusion}",
                            join.word()
                        )));
                    }
                }
            }
        }
    }

    /// Orders two facts for one sentence: the one that needs the shared
    /// module first, then what that module needs or what stands in its way;
    /// between two needs, the tenant's request first and an installed
    /// module's pin last.
    fn order_facts<'e>(
        &self,
        e1: &'e External<Node, VersionSet, Unusable>,
        e2: &'e External<Node, VersionSet, Unusable>,
        conclusion: &Map<Node, Term<VersionSet>>,
    ) -> (
        &'e External<Node, VersionSet, Unusable>,
        &'e External<Node, VersionSet, Unusable>,
    ) {
        let (t1, t2) = (external_terms(e1), external_terms(e2));
        let pivot = pivot(&t1, &t2, conclusion);
        let rank = |e: &External<Node, VersionSet, Unusable>,
                    terms: &Map<Node, Term<VersionSet>>| {
            let needs_pivot = pivot
                .and_then(|p| terms.get(p))
                .is_some_and(|t| matches!(t, Term::Negative(_)));
            match e {
                _ if !needs_pivot => 3,
                External::FromDependencyOf(Node::Install, _, Node::Module(slug), required)
                    if self
                        .solver
                        .installed
                        .get(slug)
                        .is_some_and(|m| required.contains(&m.version)) =>
                {
                    2
                }
                External::FromDependencyOf(Node::Install, ..) => 0,
                _ => 1,
            }
        };
        if rank(e2, &t2) < rank(e1, &t1) {
            (e2, e1)
        } else {
            (e1, e2)
        }
    }

    fn number_of(&self, derived: &Derived<Node, VersionSet, Unusable>) -> Option<usize> {
        derived
            .shared_id
            .and_then(|id| self.numbered.get(&id).copied())
    }

    /// Marks the last line "(n)" so a later line can say "(see n)".
    fn number_last_line(&mut self) {
        self.next_number += 1;
        if let Some(line) = self.lines.last_mut() {
            let body = line.strip_suffix('.').unwrap_or(line);
            *line = format!("{body} ({}).", self.next_number);
        }
    }

    /// One fact from outside the solver, as a clause.
    fn external(&mut self, external: &External<Node, VersionSet, Unusable>) -> String {
        match external {
            External::NotRoot(..) => "this install is being resolved".to_owned(),
            External::NoVersions(Node::Install, _) => "this install cannot be resolved".to_owned(),
            External::NoVersions(Node::Module(slug), set) => self.no_versions(slug, set),
            External::FromDependencyOf(Node::Install, _, Node::Module(slug), required) => {
                match self.solver.installed.get(slug) {
                    Some(installed) if required.contains(&installed.version) => {
                        self.pins_involved = true;
                        self.pin(installed)
                    }
                    _ => {
                        let asked: Vec<String> = self
                            .solver
                            .requests
                            .iter()
                            .filter(|r| &r.slug == slug)
                            .map(|r| r.describe())
                            .collect();
                        if asked.is_empty() {
                            format!("this install needs {}", self.required(slug, required))
                        } else {
                            format!("you asked for {}", join_list(&asked, "and"))
                        }
                    }
                }
            }
            External::FromDependencyOf(owner, owned, Node::Module(dep), required) => {
                let subject = self.subject(owner, owned);
                let requirement = self.requirement_of(owner, owned, dep, required);
                format!("{subject} needs {requirement}")
            }
            External::FromDependencyOf(owner, owned, Node::Install, _) => {
                format!("{} depends on this install", self.subject(owner, owned))
            }
            External::Custom(owner, owned, reason) => {
                format!(
                    "{} cannot be used because {reason}",
                    self.subject(owner, owned)
                )
            }
        }
    }

    /// "this tenant has membership 1.4.0 installed, which forum 1.0.0 requires".
    fn pin(&self, installed: &InstalledModule) -> String {
        let dependants: Vec<String> = self
            .solver
            .installed
            .values()
            .filter(|m| m.slug != installed.slug)
            .filter(|m| m.dependencies.iter().any(|d| d.slug == installed.slug))
            .map(|m| format!("{} {}", m.slug, m.version))
            .collect();
        let mut text = format!(
            "this tenant has {} {} installed",
            installed.slug, installed.version
        );
        if !dependants.is_empty() {
            let verb = if dependants.len() == 1 {
                "requires"
            } else {
                "require"
            };
            text.push_str(&format!(", which {} {verb}", join_list(&dependants, "and")));
        }
        text
    }

    /// "no version of elections satisfies >=3 (available: 1.0.0, 1.2.0)".
    fn no_versions(&self, slug: &Slug, set: &VersionSet) -> String {
        if self.solver.known_versions(slug).is_empty() {
            return format!("the registry has no module called {slug}");
        }
        if let Some(installed) = self.solver.installed.get(slug) {
            return format!(
                "this tenant has {slug} {} installed, which is not {}",
                installed.version,
                bracketed(&self.set_text(slug, set))
            );
        }
        let candidates = self.solver.candidates(slug);
        // The solver asks about "what is left" of a requirement once it has
        // ruled versions out; name the requirement and the versions ruled out.
        let (wanted, ruled_out) = match self.enclosing_label(slug, set) {
            Some((label, range)) => {
                let ruled_out: Vec<String> = candidates
                    .iter()
                    .filter(|v| range.contains(v) && !set.contains(v))
                    .map(Version::to_string)
                    .collect();
                (label, ruled_out)
            }
            None => (self.set_text(slug, set), Vec::new()),
        };
        let mut text = if ruled_out.is_empty() {
            format!("no version of {slug} satisfies {wanted}")
        } else {
            format!(
                "no version of {slug} other than {} satisfies {wanted}",
                join_list(&ruled_out, "and")
            )
        };
        let (releases, pre_releases): (Vec<&Version>, Vec<&Version>) =
            candidates.iter().partition(|v| v.pre.is_empty());
        let yanked: Vec<Version> = self
            .solver
            .index
            .versions(slug)
            .filter(|o| o.yanked)
            .map(|o| o.version.clone())
            .collect();
        let mut notes = Vec::new();
        if releases.is_empty() {
            notes.push("no release can be installed".to_owned());
        } else {
            notes.push(format!(
                "available: {}",
                list_versions(releases.into_iter())
            ));
        }
        if !pre_releases.is_empty() {
            notes.push(format!(
                "pre-releases, chosen only for a requirement that names one: {}",
                list_versions(pre_releases.into_iter())
            ));
        }
        if !yanked.is_empty() {
            notes.push(format!("yanked: {}", list_versions(yanked.iter())));
        }
        text.push_str(&format!(" ({})", notes.join("; ")));
        text
    }

    /// The smallest remembered requirement of `slug` that contains `set`.
    fn enclosing_label(&self, slug: &Slug, set: &VersionSet) -> Option<(String, VersionSet)> {
        let labels = self.solver.labels.borrow();
        let known = self.solver.known_versions(slug);
        labels
            .get(slug)?
            .iter()
            .filter(|(range, _)| set.subset_of(range))
            .min_by_key(|(range, _)| known.iter().filter(|v| range.contains(v)).count())
            .map(|(range, text)| (text.clone(), range.clone()))
    }

    /// "forum 1.0.0", "digital-card 2.x", "chat 1.0.0 or 1.2.0",
    /// "every version of chat".
    fn subject(&self, node: &Node, set: &VersionSet) -> String {
        let Node::Module(slug) = node else {
            return "this install".to_owned();
        };
        let candidates = self.solver.candidates(slug);
        let inside: Vec<&Version> = candidates.iter().filter(|v| set.contains(v)).collect();
        match inside.as_slice() {
            [] => format!("{slug} {}", bracketed(&self.set_text(slug, set))),
            [only] => format!("{slug} {only}"),
            [first, ..] => {
                // A "line" is what semver treats as compatible: one major,
                // or one minor below 1.0.0.
                let same_line = |v: &Version| {
                    v.major == first.major && (first.major != 0 || v.minor == first.minor)
                };
                let whole_line = inside.iter().all(|v| same_line(v))
                    && candidates
                        .iter()
                        .filter(|v| same_line(v))
                        .all(|v| set.contains(v));
                if whole_line && first.major != 0 {
                    format!("{slug} {}.x", first.major)
                } else if whole_line {
                    format!("{slug} 0.{}.x", first.minor)
                } else if inside.len() == candidates.len() {
                    format!("every version of {slug}")
                } else if inside.len() <= 3 {
                    let listed: Vec<String> = inside.iter().map(|v| v.to_string()).collect();
                    format!("{slug} {}", join_list(&listed, "or"))
                } else {
                    format!("{slug} {}", bracketed(&self.set_text(slug, set)))
                }
            }
        }
    }

    /// "membership >=2.0" for what `owner` (in `owned`) requires of `dep`,
    /// worded as the manifests wrote it when they all agree.
    fn requirement_of(
        &self,
        owner: &Node,
        owned: &VersionSet,
        dep: &Slug,
        required: &VersionSet,
    ) -> String {
        if let Node::Module(owner) = owner {
            let texts: BTreeSet<String> = self
                .solver
                .candidates(owner)
                .iter()
                .filter(|v| owned.contains(v))
                .filter_map(|v| self.solver.declared_dependencies(owner, v))
                .flat_map(|deps| deps.iter().filter(|d| &d.slug == dep))
                .map(|d| d.requirement.to_string())
                .collect();
            if texts.len() == 1
                && let Some(text) = texts.first()
            {
                return requirement_phrase(dep, text);
            }
        }
        self.required(dep, required)
    }

    /// "membership >=2.0", or just "membership" when any version will do.
    fn required(&self, slug: &Slug, set: &VersionSet) -> String {
        requirement_phrase(slug, &self.set_text(slug, set))
    }

    /// A version set as a requirement: the text it was written as, when one
    /// produced exactly this set; otherwise its intervals.
    fn set_text(&self, slug: &Slug, set: &VersionSet) -> String {
        if let Some(labels) = self.solver.labels.borrow().get(slug)
            && let Some((_, text)) = labels.iter().find(|(range, _)| range == set)
        {
            return text.clone();
        }
        intervals_text(set)
    }

    /// What a derived fact says, as a clause.
    fn conclusion(&self, terms: &Map<Node, Term<VersionSet>>) -> String {
        let mut sorted: Vec<(&Node, &Term<VersionSet>)> = terms.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut ruled_out = Vec::new();
        let mut needs = Vec::new();
        for (node, term) in sorted {
            let Node::Module(slug) = node else { continue };
            match term {
                Term::Positive(set) => ruled_out.push((slug, set)),
                Term::Negative(set) => needs.push(self.required(slug, set)),
            }
        }
        let subjects: Vec<String> = ruled_out
            .iter()
            .map(|(slug, set)| self.subject(&Node::Module((*slug).clone()), set))
            .collect();
        match (ruled_out.as_slice(), needs.is_empty()) {
            ([], true) => self.nothing_possible(),
            ([], false) => format!("this install needs {}", join_list(&needs, "or")),
            ([(slug, set)], true) => {
                if self.solver.candidates(slug).iter().all(|v| set.contains(v)) {
                    format!("no version of {slug} can be installed")
                } else {
                    format!("{} cannot be installed", subjects.join(""))
                }
            }
            ([_], false) => format!("{} needs {}", subjects.join(""), join_list(&needs, "or")),
            (_, true) => format!(
                "{} cannot be installed together",
                join_list(&subjects, "and")
            ),
            (_, false) => format!(
                "{} together need {}",
                join_list(&subjects, "and"),
                join_list(&needs, "or")
            ),
        }
    }

    /// The final conclusion: what the tenant asked for cannot be installed.
    fn nothing_possible(&self) -> String {
        let asked: Vec<String> = self.solver.requests.iter().map(|r| r.describe()).collect();
        match asked.as_slice() {
            [one] => format!("{one} cannot be installed for this tenant"),
            _ => format!(
                "{} cannot be installed together for this tenant",
                join_list(&asked, "and")
            ),
        }
    }
}

/// "membership >=2.0", or "membership" when any version will do.
fn requirement_phrase(slug: &Slug, text: &str) -> String {
    if text.is_empty() || text == "*" {
        slug.to_string()
    } else {
        format!("{slug} {}", bracketed(text))
    }
}

/// A requirement of several parts in brackets, so its commas do not read as
/// the sentence's: "membership (>=1.2, <2)".
fn bracketed(text: &str) -> String {
    if text.contains(", ") || text.contains(" or ") {
        format!("({text})")
    } else {
        text.to_owned()
    }
}

/// A version set as intervals: ">=1.2.0, <2.0.0 or >=3.0.0". Gaps of a single
/// pre-release (versions cut out by the pre-release rule) are not shown.
fn intervals_text(set: &VersionSet) -> String {
    let mut segments: Vec<(Bound<Version>, Bound<Version>)> = Vec::new();
    for (low, high) in set.iter() {
        if let Some(last) = segments.last_mut()
            && let (Bound::Excluded(end), Bound::Excluded(start)) = (&last.1, low)
            && end == start
            && !end.pre.is_empty()
        {
            last.1 = high.clone();
            continue;
        }
        segments.push((low.clone(), high.clone()));
    }
    if segments.is_empty() {
        return "no version at all".to_owned();
    }
    let parts: Vec<String> = segments
        .iter()
        .map(|segment| match segment {
            (Bound::Unbounded, Bound::Unbounded) => "*".to_owned(),
            (Bound::Included(a), Bound::Included(b)) if a == b => format!("={a}"),
            (low, high) => {
                let low = match low {
                    Bound::Included(v) => Some(format!(">={v}")),
                    Bound::Excluded(v) => Some(format!(">{v}")),
                    Bound::Unbounded => None,
                };
                let high = match high {
                    Bound::Included(v) => Some(format!("<={v}")),
                    Bound::Excluded(v) => Some(format!("<{v}")),
                    Bound::Unbounded => None,
                };
                [low, high]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        })
        .collect();
    parts.join(" or ")
}

/// "1.0.0, 1.2.0", shortened to the newest few when long.
fn list_versions<'v>(versions: impl Iterator<Item = &'v Version>) -> String {
    let all: Vec<String> = versions.map(Version::to_string).collect();
    if all.len() <= MAX_LISTED_VERSIONS {
        return all.join(", ");
    }
    let newest = &all[all.len() - MAX_LISTED_VERSIONS..];
    format!(
        "{} older, {}",
        all.len() - MAX_LISTED_VERSIONS,
        newest.join(", ")
    )
}

/// "a", "a and b", "a, b and c".
fn join_list(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// Capitalises the first word of a sentence, unless it is a module slug:
/// slugs are names and keep their spelling.
fn capitalise(text: &str) -> String {
    const OWN_WORDS: [&str; 7] = ["you", "this", "no", "the", "every", "and", "but"];
    let first_word = text.split(' ').next().unwrap_or("");
    if !OWN_WORDS.contains(&first_word) {
        return text.to_owned();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn sentence(text: &str) -> String {
    format!("{}.", capitalise(text))
}

// ---------------------------------------------------------------------------
// Lockfile
// ---------------------------------------------------------------------------

/// One module pinned by a lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedModule {
    /// The module.
    pub slug: Slug,
    /// The exact version.
    pub version: Version,
    /// The sha256 of the package; a reinstall refuses other bytes.
    pub digest: Digest,
}

/// A lockfile could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockfileError {
    /// The text is not valid TOML, or has a key the format does not know.
    #[error("lockfile line {line}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// What the TOML parser found wrong.
        message: String,
    },
    /// The `format` number is not one this version of Souk reads.
    #[error(
        "lockfile line {line}: format {found} is not supported (this Souk reads format {LOCKFILE_FORMAT}); upgrade Souk or regenerate the lockfile"
    )]
    UnsupportedFormat {
        /// 1-based line of the `format` key.
        line: usize,
        /// The format number found.
        found: i64,
    },
    /// An entry has a value that is not valid.
    #[error("lockfile line {line}, module entry {entry}: {message}")]
    Entry {
        /// 1-based line of the bad value.
        line: usize,
        /// 1-based position of the entry among `[[module]]` tables.
        entry: usize,
        /// What is wrong with the value.
        message: String,
    },
    /// Two entries lock the same module.
    #[error(
        "lockfile line {line}: {slug} is locked twice (first at line {first_line}); a lockfile has one entry per module"
    )]
    DuplicateModule {
        /// The module locked twice.
        slug: Slug,
        /// Line of the first entry.
        first_line: usize,
        /// Line of the second entry.
        line: usize,
    },
    /// Two of the entries given to [`Lockfile::new`] lock the same module.
    #[error("{slug} is listed twice; a lockfile has one entry per module")]
    ListedTwice {
        /// The module listed twice.
        slug: Slug,
    },
}

/// A tenant's lockfile: the exact version and package digest of every module
/// the tenant has, so a reinstall gets the same bytes.
///
/// Serialised as TOML, entries sorted by slug, so the same lockfile always
/// gives the same text:
///
/// ```toml
/// # Souk tenant lockfile: the exact module versions installed for this tenant.
/// # Generated by Souk; do not edit by hand.
/// format = 1
///
/// [[module]]
/// slug = "membership"
/// version = "1.4.0"
/// digest = "sha256:…"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    modules: BTreeMap<Slug, LockedModule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockfile {
    format: toml::Spanned<i64>,
    #[serde(default)]
    module: Vec<toml::Spanned<RawLockedModule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockedModule {
    slug: toml::Spanned<String>,
    version: toml::Spanned<String>,
    digest: toml::Spanned<String>,
}

/// The 1-based line of a byte offset in `text`.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Lockfile {
    /// A lockfile of `modules`.
    ///
    /// # Errors
    /// [`LockfileError::ListedTwice`] when two entries lock the same module.
    pub fn new(modules: impl IntoIterator<Item = LockedModule>) -> Result<Self, LockfileError> {
        let mut lockfile = Lockfile::default();
        for module in modules {
            if lockfile.modules.contains_key(&module.slug) {
                return Err(LockfileError::ListedTwice { slug: module.slug });
            }
            lockfile.modules.insert(module.slug.clone(), module);
        }
        Ok(lockfile)
    }

    /// The lockfile a tenant has after an install: what it had, plus what
    /// the plan adds.
    pub fn after_install(installed: &[InstalledModule], plan: &InstallPlan) -> Self {
        let installed = installed.iter().map(|m| LockedModule {
            slug: m.slug.clone(),
            version: m.version.clone(),
            digest: m.digest,
        });
        let added = plan.modules.iter().map(|m| LockedModule {
            slug: m.slug.clone(),
            version: m.version.clone(),
            digest: m.digest,
        });
        Lockfile {
            modules: installed
                .chain(added)
                .map(|m| (m.slug.clone(), m))
                .collect(),
        }
    }

    /// The locked modules, sorted by slug.
    pub fn modules(&self) -> impl Iterator<Item = &LockedModule> {
        self.modules.values()
    }

    /// The entry for `slug`, if the lockfile has one.
    pub fn get(&self, slug: &Slug) -> Option<&LockedModule> {
        self.modules.get(slug)
    }

    /// The lockfile as TOML text; the same lockfile always gives the same
    /// bytes.
    pub fn to_toml(&self) -> String {
        let mut text = String::from(
            "# Souk tenant lockfile: the exact module versions installed for this tenant.\n\
             # Generated by Souk; do not edit by hand.\n",
        );
        text.push_str(&format!("format = {LOCKFILE_FORMAT}\n"));
        // Slugs, versions and digests never contain `"` or `\`, so they need
        // no escaping inside basic strings.
        for module in self.modules.values() {
            text.push_str(&format!(
                "\n[[module]]\nslug = \"{}\"\nversion = \"{}\"\ndigest = \"{}\"\n",
                module.slug, module.version, module.digest
            ));
        }
        text
    }

    /// Parses lockfile text written by [`Lockfile::to_toml`] (or by hand in
    /// the same format).
    ///
    /// # Errors
    /// A [`LockfileError`] naming the line (and entry) of the first problem:
    /// invalid TOML or an unknown key, an unsupported format, a slug, version
    /// or digest that is not valid (digests must read `sha256:` and 64 hex
    /// digits), or a module locked twice.
    pub fn parse(text: &str) -> Result<Self, LockfileError> {
        let raw: RawLockfile = toml::from_str(text).map_err(|e| LockfileError::Syntax {
            line: e.span().map_or(1, |span| line_of(text, &span)),
            message: e.message().trim().to_owned(),
        })?;
        if *raw.format.get_ref() != LOCKFILE_FORMAT {
            return Err(LockfileError::UnsupportedFormat {
                line: line_of(text, &raw.format.span()),
                found: *raw.format.get_ref(),
            });
        }
        let mut modules: BTreeMap<Slug, (usize, LockedModule)> = BTreeMap::new();
        for (i, entry) in raw.module.iter().enumerate() {
            let entry_line = line_of(text, &entry.span());
            let entry = entry.get_ref();
            let bad = |field: &toml::Spanned<String>, message: String| LockfileError::Entry {
                line: line_of(text, &field.span()),
                entry: i + 1,
                message,
            };
            let slug = Slug::parse(entry.slug.get_ref())
                .map_err(|e| bad(&entry.slug, format!("slug {:?} {e}", entry.slug.get_ref())))?;
            let version = Version::parse(entry.version.get_ref()).map_err(|e| {
                bad(
                    &entry.version,
                    format!(
                        "{slug}: version {:?} is not semver: {e}",
                        entry.version.get_ref()
                    ),
                )
            })?;
            let digest_text = entry.digest.get_ref();
            let digest = digest_text
                .strip_prefix("sha256:")
                .ok_or_else(|| format!("{digest_text:?} must start with \"sha256:\""))
                .and_then(|_| Digest::parse(digest_text))
                .map_err(|e| bad(&entry.digest, format!("{slug}: digest {e}")))?;
            if let Some((first_line, _)) = modules.get(&slug) {
                return Err(LockfileError::DuplicateModule {
                    slug,
                    first_line: *first_line,
                    line: entry_line,
                });
            }
            modules.insert(
                slug.clone(),
                (
                    entry_line,
                    LockedModule {
                        slug,
                        version,
                        digest,
                    },
                ),
            );
        }
        Ok(Lockfile {
            modules: modules.into_iter().map(|(s, (_, m))| (s, m)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(text: &str) -> Slug {
        Slug::parse(text).unwrap()
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn req(text: &str) -> VersionReq {
        VersionReq::parse(text).unwrap()
    }

    fn digest_of(slug: &str, version: &str) -> Digest {
        Digest::of(format!("{slug}@{version}").as_bytes())
    }

    fn deps(list: &[(&str, &str)]) -> Vec<Dependency> {
        list.iter()
            .map(|(s, r)| Dependency {
                slug: slug(s),
                requirement: req(r),
            })
            .collect()
    }

    type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);

    /// A registry built from `(slug, version, dependencies, yanked)` rows.
    fn index(rows: &[Row<'_>]) -> RegistryIndex {
        let mut index = RegistryIndex::new();
        for (s, version, dependencies, yanked) in rows {
            index
                .offer(
                    slug(s),
                    OfferedVersion {
                        version: v(version),
                        dependencies: deps(dependencies),
                        digest: digest_of(s, version),
                        yanked: *yanked,
                    },
                )
                .unwrap();
        }
        index
    }

    fn installed(s: &str, version: &str, dependencies: &[(&str, &str)]) -> InstalledModule {
        InstalledModule {
            slug: slug(s),
            version: v(version),
            digest: digest_of(s, version),
            dependencies: deps(dependencies),
        }
    }

    fn locked(s: &str, version: &str) -> LockedModule {
        LockedModule {
            slug: slug(s),
            version: v(version),
            digest: digest_of(s, version),
        }
    }

    fn plan_of(plan: &InstallPlan) -> Vec<String> {
        plan.modules
            .iter()
            .map(|m| format!("{} {}", m.slug, m.version))
            .collect()
    }

    fn explanation(result: Result<InstallPlan, ResolveError>) -> String {
        match result {
            Err(ResolveError::Conflict(conflict)) => conflict.explanation().to_owned(),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    // --- choosing versions ------------------------------------------------

    #[test]
    fn picks_the_newest_compatible_version() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "1.2.0", &[], false),
            ("membership", "1.9.3", &[], false),
            ("membership", "2.0.0", &[], false),
            ("elections", "1.0.0", &[("membership", ">=1.2, <2")], false),
            ("elections", "1.1.0", &[("membership", ">=1.2, <2")], false),
        ]);
        let plan =
            resolve_install(&index, &[], &[RequestedModule::any(slug("elections"))]).unwrap();
        assert_eq!(plan_of(&plan), ["membership 1.9.3", "elections 1.1.0"]);
        assert_eq!(plan.modules[0].digest, digest_of("membership", "1.9.3"));
    }

    #[test]
    fn installed_modules_stay_pinned_and_constrain_new_ones() {
        let index = index(&[
            ("membership", "1.4.0", &[], false),
            ("membership", "1.8.0", &[], false),
            ("digital-card", "1.0.0", &[("membership", "^1.2")], false),
            ("digital-card", "1.1.0", &[("membership", ">=1.6")], false),
        ]);
        let have = [installed("membership", "1.4.0", &[])];
        let plan =
            resolve_install(&index, &have, &[RequestedModule::any(slug("digital-card"))]).unwrap();
        // 1.1.0 would need a newer membership, and the installed one stays.
        assert_eq!(plan_of(&plan), ["digital-card 1.0.0"]);
    }

    #[test]
    fn installed_modules_dependency_ranges_constrain_new_modules() {
        let index = index(&[
            ("membership", "1.4.0", &[], false),
            ("badges", "1.0.0", &[], false),
            ("badges", "2.0.0", &[], false),
        ]);
        // forum is installed and needs badges ^1, so a new badges must be 1.x.
        let have = [
            installed("membership", "1.4.0", &[]),
            installed("forum", "1.0.0", &[("badges", "^1")]),
        ];
        let plan = resolve_install(&index, &have, &[RequestedModule::any(slug("badges"))]).unwrap();
        assert_eq!(plan_of(&plan), ["badges 1.0.0"]);
    }

    #[test]
    fn a_request_met_by_an_installed_module_adds_nothing_and_one_it_misses_is_refused() {
        let index = index(&[
            ("membership", "1.4.0", &[], false),
            ("membership", "1.8.0", &[], false),
        ]);
        let have = [installed("membership", "1.4.0", &[])];
        let plan = resolve_install(
            &index,
            &have,
            &[RequestedModule::matching(slug("membership"), req("^1"))],
        )
        .unwrap();
        assert!(plan.is_empty());

        let text = explanation(resolve_install(
            &index,
            &have,
            &[RequestedModule::matching(slug("membership"), req(">=1.8"))],
        ));
        assert_eq!(
            text,
            "You asked for membership >=1.8, but this tenant has membership 1.4.0 installed. \
             Installing never changes a module the tenant already has."
        );
    }

    #[test]
    fn yanked_versions_are_skipped_for_new_resolutions() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "1.1.0", &[], true),
            ("forum", "1.0.0", &[("membership", "^1")], false),
        ]);
        let plan = resolve_install(&index, &[], &[RequestedModule::any(slug("forum"))]).unwrap();
        assert_eq!(plan_of(&plan), ["membership 1.0.0", "forum 1.0.0"]);
    }

    #[test]
    fn an_installed_yanked_version_stays_usable() {
        let index = index(&[
            ("membership", "1.1.0", &[], true),
            ("forum", "1.0.0", &[("membership", "^1")], false),
        ]);
        let have = [installed("membership", "1.1.0", &[])];
        let plan = resolve_install(&index, &have, &[RequestedModule::any(slug("forum"))]).unwrap();
        assert_eq!(plan_of(&plan), ["forum 1.0.0"]);
    }

    #[test]
    fn pre_releases_are_chosen_only_when_the_requirement_names_one() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "1.5.0-rc.1", &[], false),
            ("membership", "2.0.0-beta.1", &[], false),
            ("membership", "2.0.0-beta.2", &[], false),
            ("membership", "2.1.0-alpha", &[], false),
            ("forum", "1.0.0", &[("membership", "^1")], false),
        ]);
        let plan = resolve_install(&index, &[], &[RequestedModule::any(slug("forum"))]).unwrap();
        assert_eq!(plan_of(&plan), ["membership 1.0.0", "forum 1.0.0"]);

        let plan = resolve_install(
            &index,
            &[],
            &[RequestedModule::matching(
                slug("membership"),
                req(">=2.0.0-beta.1, <3"),
            )],
        )
        .unwrap();
        // 2.1.0-alpha is newer but names another major.minor.patch.
        assert_eq!(plan_of(&plan), ["membership 2.0.0-beta.2"]);

        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::matching(slug("membership"), req(">=1.2"))],
        ));
        assert_eq!(
            text,
            "You asked for membership >=1.2, but no version of membership satisfies >=1.2 \
             (available: 1.0.0; pre-releases, chosen only for a requirement that names one: \
             1.5.0-rc.1, 2.0.0-beta.1, 2.0.0-beta.2, 2.1.0-alpha), \
             so membership >=1.2 cannot be installed for this tenant."
        );
    }

    #[test]
    fn requirement_ranges_agree_with_semver_matching() {
        let versions: Vec<Version> = [
            "0.0.0",
            "0.0.3",
            "0.0.3-beta",
            "0.0.4",
            "0.0.4-alpha",
            "0.1.0",
            "0.2.0",
            "0.2.3",
            "0.2.9",
            "0.3.0",
            "1.0.0-alpha",
            "1.0.0",
            "1.0.0+build.7",
            "1.1.0",
            "1.2.0-rc.1",
            "1.2.0",
            "1.2.3-alpha",
            "1.2.3-beta",
            "1.2.3",
            "1.2.4",
            "1.3.0-alpha",
            "1.3.0",
            "1.9.9",
            "2.0.0-0",
            "2.0.0-beta",
            "2.0.0",
            "2.5.0",
            "3.0.0",
            "18446744073709551615.0.0",
        ]
        .iter()
        .map(|t| v(t))
        .collect();
        let requirements = [
            "*",
            "=1.2.3",
            "=1.2.3-beta",
            "=1.2",
            "=1",
            "1.2.*",
            "1.*",
            ">1.2.3",
            ">1.2",
            ">1",
            ">1.2.3-alpha",
            ">=1.2.3",
            ">=1.2",
            ">=1",
            ">=1.2.3-alpha",
            "<1.2.3",
            "<1.2",
            "<1",
            "<1.2.3-beta",
            "<=1.2.3",
            "<=1.2",
            "<=1",
            "<=1.2.3-beta",
            "~1.2.3",
            "~1.2",
            "~1",
            "~1.2.3-alpha",
            "^1.2.3",
            "^1.2",
            "^1",
            "^0.2.3",
            "^0.2",
            "^0.0.3",
            "^0.0.3-beta",
            "^0.0",
            "^0",
            "^1.2.3-alpha",
            ">=1.2, <2",
            ">=2.0.0-0, <3",
            "^18446744073709551615",
            "<=18446744073709551615",
        ];
        for text in requirements {
            let requirement = req(text);
            let intervals = requirement_range(&requirement).unwrap();
            let exact = exact_range(&requirement, &versions).unwrap();
            for version in &versions {
                let matches = requirement.matches(version);
                assert_eq!(exact.contains(version), matches, "{text} and {version}");
                // The intervals alone are exact for plain releases and only
                // ever too wide for pre-releases.
                if version.pre.is_empty() && version.build.is_empty() {
                    assert_eq!(intervals.contains(version), matches, "{text} and {version}");
                } else if version.build.is_empty() && matches {
                    assert!(intervals.contains(version), "{text} and {version}");
                }
            }
        }
    }

    // --- install order and cycles ---------------------------------------------

    #[test]
    fn transitive_dependencies_come_before_their_dependants() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("digital-card", "1.0.0", &[("membership", "^1")], false),
            (
                "forum",
                "1.0.0",
                &[("membership", "^1"), ("digital-card", "^1")],
                false,
            ),
            ("elections", "1.0.0", &[("forum", "^1")], false),
            ("ballots", "1.0.0", &[], false),
        ]);
        let plan = resolve_install(
            &index,
            &[],
            &[
                RequestedModule::any(slug("elections")),
                RequestedModule::any(slug("ballots")),
            ],
        )
        .unwrap();
        assert_eq!(
            plan_of(&plan),
            [
                "ballots 1.0.0",
                "membership 1.0.0",
                "digital-card 1.0.0",
                "forum 1.0.0",
                "elections 1.0.0"
            ]
        );
    }

    #[test]
    fn a_consistent_cycle_between_two_modules_is_refused_naming_both() {
        let index = index(&[
            ("chat", "1.0.0", &[("forum", "^1")], false),
            ("forum", "1.0.0", &[("chat", "^1")], false),
        ]);
        let error =
            resolve_install(&index, &[], &[RequestedModule::any(slug("forum"))]).unwrap_err();
        assert_eq!(
            error,
            ResolveError::DependencyCycle {
                cycle: vec![(slug("chat"), v("1.0.0")), (slug("forum"), v("1.0.0"))]
            }
        );
        assert_eq!(
            error.to_string(),
            "chat 1.0.0 needs forum 1.0.0, which needs chat 1.0.0: modules that depend on each \
             other cannot be installed, because Souk installs a module only after its dependencies"
        );
    }

    #[test]
    fn a_cycle_whose_versions_disagree_is_explained_as_a_conflict() {
        let index = index(&[
            ("chat", "1.0.0", &[("forum", "^2")], false),
            ("forum", "1.0.0", &[("chat", "^1")], false),
        ]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::any(slug("forum"))],
        ));
        assert_eq!(
            text,
            "forum 1.0.0 needs chat ^1, and chat 1.0.0 needs forum ^2, so no version of forum can be installed.\n\
             And you asked for forum, so forum cannot be installed for this tenant."
        );
    }

    #[test]
    fn a_cycle_closed_by_an_installed_module_resolves() {
        // forum is installed and already lists chat; adding chat closes the
        // loop through a module that is in place, so chat can go in.
        let index = index(&[("chat", "1.0.0", &[("forum", "^1")], false)]);
        let have = [installed("forum", "1.0.0", &[("chat", "^1")])];
        let plan = resolve_install(&index, &have, &[RequestedModule::any(slug("chat"))]).unwrap();
        assert_eq!(plan_of(&plan), ["chat 1.0.0"]);
    }

    #[test]
    fn a_module_that_depends_on_itself_is_explained_as_unusable() {
        let index = index(&[("polls", "1.0.0", &[("polls", "^1")], false)]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::any(slug("polls"))],
        ));
        assert_eq!(
            text,
            "You asked for polls, but polls 1.0.0 cannot be used because it depends on itself, \
             so polls cannot be installed for this tenant."
        );
    }

    // --- explanations -----------------------------------------------------------

    #[test]
    fn conflict_with_an_installed_module_names_the_module_its_pin_and_who_requires_it() {
        let index = index(&[
            ("membership", "1.4.0", &[], false),
            ("membership", "2.0.0", &[], false),
            ("forum", "1.0.0", &[("membership", ">=1.2, <2")], false),
            ("digital-card", "1.0.0", &[("membership", "^1")], false),
            ("digital-card", "2.0.0", &[("membership", ">=2.0")], false),
            ("digital-card", "2.1.0", &[("membership", ">=2.0")], false),
        ]);
        let have = [
            installed("membership", "1.4.0", &[]),
            installed("forum", "1.0.0", &[("membership", ">=1.2, <2")]),
        ];
        let result = resolve_install(
            &index,
            &have,
            &[RequestedModule::matching(slug("digital-card"), req("^2"))],
        );
        let Err(ResolveError::Conflict(conflict)) = result else {
            panic!("expected a conflict, got {result:?}");
        };
        assert_eq!(
            conflict.explanation(),
            "You asked for digital-card ^2, and digital-card 2.x needs membership >=2.0, \
             so this install needs membership >=2.0.\n\
             But this tenant has membership 1.4.0 installed, which forum 1.0.0 requires, \
             so digital-card ^2 cannot be installed for this tenant.\n\
             Installing never changes a module the tenant already has."
        );
        assert_eq!(
            conflict
                .modules()
                .iter()
                .map(Slug::as_str)
                .collect::<Vec<_>>(),
            ["digital-card", "membership"]
        );
    }

    #[test]
    fn no_version_in_range_is_explained_with_the_available_versions() {
        let index = index(&[
            ("elections", "1.0.0", &[], false),
            ("elections", "1.2.0", &[], false),
        ]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::matching(slug("elections"), req(">=3"))],
        ));
        assert_eq!(
            text,
            "You asked for elections >=3, but no version of elections satisfies >=3 \
             (available: 1.0.0, 1.2.0), so elections >=3 cannot be installed for this tenant."
        );
    }

    #[test]
    fn only_yanked_versions_in_range_are_named_as_yanked() {
        let index = index(&[
            ("elections", "1.0.0", &[], false),
            ("elections", "3.0.0", &[], true),
        ]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::matching(slug("elections"), req(">=3"))],
        ));
        assert_eq!(
            text,
            "You asked for elections >=3, but no version of elections satisfies >=3 \
             (available: 1.0.0; yanked: 3.0.0), so elections >=3 cannot be installed for this tenant."
        );
    }

    #[test]
    fn a_missing_dependency_version_names_the_module_that_needs_it() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "1.1.0", &[], false),
            ("elections", "1.0.0", &[("membership", ">=1.2, <2")], false),
            ("elections", "1.1.0", &[("membership", ">=1.2, <2")], false),
        ]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::any(slug("elections"))],
        ));
        assert_eq!(
            text,
            "elections 1.x needs membership (>=1.2, <2), but no version of membership satisfies \
             >=1.2, <2 (available: 1.0.0, 1.1.0), so no version of elections can be installed.\n\
             And you asked for elections, so elections cannot be installed for this tenant."
        );
    }

    #[test]
    fn an_unknown_module_is_explained() {
        let index = index(&[("elections", "1.0.0", &[], false)]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::any(slug("polls"))],
        ));
        assert_eq!(
            text,
            "You asked for polls, but the registry has no module called polls, \
             so polls cannot be installed for this tenant."
        );
    }

    #[test]
    fn two_requests_that_need_different_majors_are_explained_together() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "2.0.0", &[], false),
            ("forum", "1.0.0", &[("membership", "^1")], false),
            ("forum", "1.1.0", &[("membership", "^1")], false),
            ("digital-card", "1.0.0", &[("membership", "^2")], false),
        ]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[
                RequestedModule::any(slug("forum")),
                RequestedModule::any(slug("digital-card")),
            ],
        ));
        assert_eq!(
            text,
            "digital-card 1.0.0 needs membership ^2, but forum 1.x needs membership ^1, \
             so digital-card 1.0.0 and forum 1.x cannot be installed together.\n\
             And you asked for digital-card, so no version of forum can be installed.\n\
             And you asked for forum, so forum and digital-card cannot be installed together for this tenant."
        );
    }

    #[test]
    fn a_fact_used_twice_is_numbered_and_referred_back_to() {
        // The branching example of the PubGrub documentation.
        let index = index(&[
            ("foo", "1.0.0", &[("a", "^1.0.0"), ("b", "^1.0.0")], false),
            ("foo", "1.1.0", &[("x", "^1.0.0"), ("y", "^1.0.0")], false),
            ("a", "1.0.0", &[("b", "^2.0.0")], false),
            ("b", "1.0.0", &[], false),
            ("b", "2.0.0", &[], false),
            ("x", "1.0.0", &[("y", "^2.0.0")], false),
            ("y", "1.0.0", &[], false),
            ("y", "2.0.0", &[], false),
        ]);
        let text = explanation(resolve_install(
            &index,
            &[],
            &[RequestedModule::matching(slug("foo"), req("^1.0.0"))],
        ));
        assert_eq!(
            text,
            "a 1.0.0 needs b ^2.0.0, but foo 1.0.0 needs b ^1.0.0, so a 1.0.0 and foo 1.0.0 cannot be installed together.\n\
             And foo 1.0.0 needs a ^1.0.0, so foo 1.0.0 cannot be installed (1).\n\
             foo 1.1.0 needs x ^1.0.0, and x 1.0.0 needs y ^2.0.0, so foo 1.1.0 needs y ^2.0.0.\n\
             But foo 1.1.0 needs y ^1.0.0, so foo 1.1.0 cannot be installed.\n\
             And foo 1.0.0 cannot be installed (see 1), so no version of foo can be installed.\n\
             And you asked for foo ^1.0.0, so foo ^1.0.0 cannot be installed for this tenant."
        );
    }

    #[test]
    fn offering_a_version_twice_is_refused() {
        let mut index = index(&[("membership", "1.0.0", &[], false)]);
        let again = OfferedVersion {
            version: v("1.0.0"),
            dependencies: Vec::new(),
            digest: digest_of("other", "bytes"),
            yanked: false,
        };
        let error = index.offer(slug("membership"), again).unwrap_err();
        assert_eq!(error.version, v("1.0.0"));
        assert_eq!(
            index.get(&slug("membership"), &v("1.0.0")).unwrap().digest,
            digest_of("membership", "1.0.0")
        );
    }

    // --- lockfile -------------------------------------------------------------

    #[test]
    fn lockfile_round_trips_and_serialises_in_slug_order() {
        let lockfile =
            Lockfile::new([locked("membership", "1.4.0"), locked("forum", "1.0.0")]).unwrap();
        let text = lockfile.to_toml();
        assert_eq!(
            text,
            format!(
                "# Souk tenant lockfile: the exact module versions installed for this tenant.\n\
                 # Generated by Souk; do not edit by hand.\n\
                 format = 1\n\
                 \n\
                 [[module]]\n\
                 slug = \"forum\"\n\
                 version = \"1.0.0\"\n\
                 digest = \"{}\"\n\
                 \n\
                 [[module]]\n\
                 slug = \"membership\"\n\
                 version = \"1.4.0\"\n\
                 digest = \"{}\"\n",
                digest_of("forum", "1.0.0"),
                digest_of("membership", "1.4.0")
            )
        );
        let parsed = Lockfile::parse(&text).unwrap();
        assert_eq!(parsed, lockfile);
        assert_eq!(parsed.to_toml(), text);
        assert!(
            Lockfile::parse("format = 1\n")
                .unwrap()
                .modules()
                .next()
                .is_none()
        );
    }

    #[test]
    fn lockfile_parse_errors_name_the_line_and_entry() {
        let good = Lockfile::new([locked("forum", "1.0.0"), locked("membership", "1.4.0")])
            .unwrap()
            .to_toml();
        // Line 12 holds the second entry's version.
        let bad_version = good.replace("version = \"1.4.0\"", "version = \"1.x\"");
        let error = Lockfile::parse(&bad_version).unwrap_err();
        assert!(
            matches!(
                error,
                LockfileError::Entry {
                    line: 12,
                    entry: 2,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().starts_with(
            "lockfile line 12, module entry 2: membership: version \"1.x\" is not semver"
        ));

        let bare_digest = good.replace(
            &format!("\"{}\"", digest_of("forum", "1.0.0")),
            &format!("\"{}\"", digest_of("forum", "1.0.0").hex()),
        );
        let error = Lockfile::parse(&bare_digest).unwrap_err().to_string();
        assert!(
            error.starts_with("lockfile line 8, module entry 1: forum: digest ")
                && error.contains("must start with \"sha256:\""),
            "{error}"
        );

        let bad_slug = good.replace("slug = \"forum\"", "slug = \"Forum\"");
        let error = Lockfile::parse(&bad_slug).unwrap_err().to_string();
        assert!(
            error.starts_with("lockfile line 6, module entry 1: slug \"Forum\""),
            "{error}"
        );

        let duplicate = good.replace("slug = \"membership\"", "slug = \"forum\"");
        assert_eq!(
            Lockfile::parse(&duplicate).unwrap_err().to_string(),
            "lockfile line 10: forum is locked twice (first at line 5); a lockfile has one entry per module"
        );

        let unknown_key = good.replace("format = 1\n", "format = 1\nchannel = \"beta\"\n");
        let error = Lockfile::parse(&unknown_key).unwrap_err();
        assert!(
            matches!(error, LockfileError::Syntax { line: 4, .. }),
            "{error:?}"
        );

        let future = good.replace("format = 1", "format = 2");
        assert!(matches!(
            Lockfile::parse(&future).unwrap_err(),
            LockfileError::UnsupportedFormat { line: 3, found: 2 }
        ));

        let broken = good.replace(
            "[[module]]\nslug = \"membership\"",
            "[[module]\nslug = \"membership\"",
        );
        let error = Lockfile::parse(&broken).unwrap_err();
        assert!(
            matches!(error, LockfileError::Syntax { line: 10, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_lockfile_cannot_be_built_with_a_module_twice() {
        let error =
            Lockfile::new([locked("forum", "1.0.0"), locked("forum", "1.1.0")]).unwrap_err();
        assert_eq!(
            error,
            LockfileError::ListedTwice {
                slug: slug("forum")
            }
        );
    }

    #[test]
    fn lockfile_after_install_lists_installed_and_added_modules() {
        let index = index(&[
            ("membership", "1.4.0", &[], false),
            ("forum", "1.0.0", &[("membership", "^1")], false),
        ]);
        let have = [installed("membership", "1.4.0", &[])];
        let plan = resolve_install(&index, &have, &[RequestedModule::any(slug("forum"))]).unwrap();
        let lockfile = Lockfile::after_install(&have, &plan);
        assert_eq!(
            lockfile.modules().cloned().collect::<Vec<_>>(),
            [locked("forum", "1.0.0"), locked("membership", "1.4.0")]
        );
    }

    #[test]
    fn installing_from_a_lockfile_may_use_yanked_versions() {
        let index = index(&[
            ("membership", "1.1.0", &[], true),
            ("membership", "1.2.0", &[], false),
            ("forum", "1.0.0", &[("membership", "^1")], false),
        ]);
        let lockfile =
            Lockfile::new([locked("forum", "1.0.0"), locked("membership", "1.1.0")]).unwrap();
        let plan = resolve_lockfile(&index, &[], &lockfile).unwrap();
        assert_eq!(plan_of(&plan), ["membership 1.1.0", "forum 1.0.0"]);

        // Modules already installed as locked are left out of the plan.
        let have = [installed("membership", "1.1.0", &[])];
        let plan = resolve_lockfile(&index, &have, &lockfile).unwrap();
        assert_eq!(plan_of(&plan), ["forum 1.0.0"]);
    }

    #[test]
    fn installing_from_a_lockfile_refuses_a_changed_digest() {
        let index = index(&[("membership", "1.1.0", &[], false)]);
        let mut entry = locked("membership", "1.1.0");
        entry.digest = digest_of("membership", "tampered");
        let lockfile = Lockfile::new([entry]).unwrap();
        let error = resolve_lockfile(&index, &[], &lockfile).unwrap_err();
        assert_eq!(
            error,
            ResolveError::from(LockfileRefusal::DigestMismatch {
                slug: slug("membership"),
                version: v("1.1.0"),
                locked: digest_of("membership", "tampered"),
                served: digest_of("membership", "1.1.0"),
            })
        );
        assert!(
            error
                .to_string()
                .contains("the package changed since it was locked")
        );
    }

    #[test]
    fn installing_from_a_lockfile_refuses_a_version_the_registry_lacks() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "1.2.0", &[], false),
        ]);
        let lockfile = Lockfile::new([locked("membership", "1.1.0")]).unwrap();
        assert_eq!(
            resolve_lockfile(&index, &[], &lockfile)
                .unwrap_err()
                .to_string(),
            "the lockfile pins membership 1.1.0, but the registry does not offer that version \
             (offered: 1.0.0, 1.2.0)"
        );
    }

    #[test]
    fn installing_from_a_lockfile_refuses_an_incomplete_or_inconsistent_lock() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("forum", "1.0.0", &[("membership", "^1.2")], false),
        ]);
        let incomplete = Lockfile::new([locked("forum", "1.0.0")]).unwrap();
        assert_eq!(
            resolve_lockfile(&index, &[], &incomplete)
                .unwrap_err()
                .to_string(),
            "the lockfile is incomplete: forum 1.0.0 needs membership ^1.2, which the lockfile \
             does not list and this tenant does not have"
        );
        let inconsistent =
            Lockfile::new([locked("forum", "1.0.0"), locked("membership", "1.0.0")]).unwrap();
        assert_eq!(
            resolve_lockfile(&index, &[], &inconsistent)
                .unwrap_err()
                .to_string(),
            "the lockfile is inconsistent: forum 1.0.0 needs membership ^1.2, but the lockfile pins membership 1.0.0"
        );
    }

    #[test]
    fn installing_from_a_lockfile_never_changes_an_installed_module() {
        let index = index(&[
            ("membership", "1.0.0", &[], false),
            ("membership", "1.2.0", &[], false),
        ]);
        let lockfile = Lockfile::new([locked("membership", "1.2.0")]).unwrap();
        let have = [installed("membership", "1.0.0", &[])];
        let error = resolve_lockfile(&index, &have, &lockfile).unwrap_err();
        let ResolveError::Lockfile(refusal) = error else {
            panic!("expected a lockfile refusal, got {error:?}");
        };
        assert!(
            matches!(
                *refusal,
                LockfileRefusal::InstalledDiffersFromLockfile { ref installed, ref locked, .. }
                    if *installed == v("1.0.0") && *locked == v("1.2.0")
            ),
            "{refusal:?}"
        );
    }
}
