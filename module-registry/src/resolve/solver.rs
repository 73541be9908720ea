//! The `pubgrub` dependency provider: how the solver sees the registry, the
//! tenant's installed modules and the install being resolved.
//!
//! [`solve`] runs `pubgrub` and hands back the chosen versions of the
//! modules to add, or a [`Conflict`](super::Conflict) already put into
//! words: the solver's packages and derivation trees go no further than
//! this file and the explanation.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;

use pubgrub::{
    Dependencies, DependencyConstraints, DependencyProvider, DerivationTree,
    PackageResolutionStatistics, PubGrubError, Ranges,
};
use semver::{Version, VersionReq};

use super::index::{OfferedVersion, RegistryIndex};
use super::ranges::{UnsupportedComparator, exact_range, release};
use super::{Conflict, InstalledModule, RequestedModule, ResolveError};
use crate::manifest::{Dependency, Slug};

/// A package as the solver sees it: the install itself, or a module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Node {
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
pub(super) enum Unusable {
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

pub(super) type VersionSet = Ranges<Version>;
pub(super) type Tree = DerivationTree<Node, VersionSet, Unusable>;

/// The root's version; the install node has only this one.
pub(super) fn install_version() -> Version {
    release(0, 0, 0)
}

/// The `pubgrub` dependency provider for one resolution.
pub(super) struct Solver<'a> {
    pub(super) index: &'a RegistryIndex,
    /// The tenant's modules, each the only candidate for its slug.
    pub(super) installed: BTreeMap<Slug, &'a InstalledModule>,
    /// Requested modules (not installed), with their requirement.
    pub(super) requests: Vec<&'a RequestedModule>,
    /// What the install node depends on: the requests and the pins.
    install_dependencies: DependencyConstraints<Node, VersionSet>,
    /// Requirement texts by the exact version set they produced, per module,
    /// so explanations can print `>=2.0` rather than a computed interval.
    pub(super) labels: RefCell<BTreeMap<Slug, Vec<(VersionSet, String)>>>,
}

impl<'a> Solver<'a> {
    /// Every version of `slug` the resolution knows about: offered ones
    /// (yanked included) and the installed one.
    pub(super) fn known_versions(&self, slug: &Slug) -> Vec<Version> {
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
    pub(super) fn candidates(&self, slug: &Slug) -> Vec<Version> {
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
    pub(super) fn declared_dependencies(
        &self,
        slug: &Slug,
        version: &Version,
    ) -> Option<&'a [Dependency]> {
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

    /// What a version of `owner` that declares `dependencies` requires.
    ///
    /// # Errors
    /// [`Unusable`] when the version cannot be used whatever else is chosen:
    /// it depends on itself, or a requirement uses an unknown operator.
    fn dependency_constraints(
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
            require(&mut constraints, &dependency.slug, range);
        }
        Ok(constraints)
    }

    /// What the install node requires: every installed module at exactly
    /// its version, and every open request.
    ///
    /// # Errors
    /// [`ResolveError::UnsupportedRequirement`] when a request's requirement
    /// uses an unknown operator.
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
            require(&mut constraints, &request.slug, range);
        }
        Ok(constraints)
    }
}

/// Adds `range` to what `constraints` requires of `slug`: when two
/// requirements name the same module, both must hold.
fn require(
    constraints: &mut DependencyConstraints<Node, VersionSet>,
    slug: &Slug,
    range: VersionSet,
) {
    constraints
        .entry(Node::Module(slug.clone()))
        .and_modify(|r| *r = r.intersection(&range))
        .or_insert(range);
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
        Ok(match self.dependency_constraints(slug, declared) {
            Ok(constraints) => Dependencies::Available(constraints),
            Err(reason) => Dependencies::Unavailable(reason),
        })
    }
}

/// Runs the solver for the requests no installed module meets, and returns
/// the offered version chosen for every module the install adds (installed
/// modules are left out: they stay as they are). When no choice works,
/// `explain` words why from the solver's derivation tree (the solver finds
/// versions; the caller says what a failure means to a person).
///
/// # Errors
/// [`ResolveError::Conflict`] when no choice of versions works, and
/// [`ResolveError::UnsupportedRequirement`] when a request's requirement
/// uses an unknown operator.
pub(super) fn solve<'a>(
    index: &'a RegistryIndex,
    installed: BTreeMap<Slug, &'a InstalledModule>,
    requests: Vec<&'a RequestedModule>,
    explain: fn(&Solver<'_>, Tree) -> Conflict,
) -> Result<BTreeMap<Slug, &'a OfferedVersion>, ResolveError> {
    let mut solver = Solver {
        index,
        installed,
        requests,
        install_dependencies: DependencyConstraints::default(),
        labels: RefCell::new(BTreeMap::new()),
    };
    solver.install_dependencies = solver.install_constraints()?;

    let solution = match pubgrub::resolve(&solver, Node::Install, install_version()) {
        Ok(solution) => solution,
        Err(PubGrubError::NoSolution(tree)) => {
            return Err(ResolveError::Conflict(explain(&solver, tree)));
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
    Ok(added)
}
