//! A failed resolution in words: the solver's proof (a
//! `pubgrub::DerivationTree`) turned into sentences a tenant admin can
//! follow, naming the modules and versions involved.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use pubgrub::{DerivationTree, Derived, External, Map, Ranges, Term};
use semver::Version;

use super::solver::{Node, Solver, Tree, Unusable, VersionSet, install_version};
use super::{InstalledModule, RequestedModule};
use crate::manifest::Slug;

/// The largest number of versions an explanation lists for one module before
/// it shortens the list to the newest ones.
const MAX_LISTED_VERSIONS: usize = 8;

/// The sentence that closes every explanation in which an installed module's
/// pin took part.
const INSTALLED_NEVER_CHANGE: &str = "Installing never changes a module the tenant already has.";

/// Why the requested modules cannot be installed together with what the
/// tenant has, in sentences a tenant admin can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    explanation: String,
    modules: BTreeSet<Slug>,
}

impl Conflict {
    /// A request for a module the tenant has in a version the request does
    /// not accept: met by nothing, since installing never changes that
    /// module.
    pub(super) fn installed_differs(request: &RequestedModule, have: &InstalledModule) -> Self {
        Conflict {
            explanation: format!(
                "You asked for {}, but this tenant has {} {} installed. {INSTALLED_NEVER_CHANGE}",
                request_phrase(request),
                have.slug,
                have.version
            ),
            modules: BTreeSet::from([request.slug.clone()]),
        }
    }

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

/// Explains why no solution exists: drops the steps that only note missing
/// versions, then words what is left.
pub(super) fn explain(solver: &Solver<'_>, mut tree: Tree) -> Conflict {
    drop_version_gaps(solver, &mut tree);
    Explainer::new(solver).explain(&tree)
}

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

/// Whether two facts say the same about every version the solver could
/// choose: same modules, same polarity, same candidate versions.
fn same_for_candidates(
    solver: &Solver<'_>,
    a: &Map<Node, Term<VersionSet>>,
    b: &Map<Node, Term<VersionSet>>,
) -> bool {
    a.len() == b.len()
        && a.iter().all(|(node, term_a)| {
            let Some(term_b) = b.get(node) else {
                return false;
            };
            let (set_a, set_b) = match (term_a, term_b) {
                (Term::Positive(x), Term::Positive(y)) | (Term::Negative(x), Term::Negative(y)) => {
                    (x, y)
                }
                _ => return false,
            };
            let versions = match node {
                Node::Install => vec![install_version()],
                Node::Module(slug) => solver.candidates(slug),
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
fn drop_version_gaps(solver: &Solver<'_>, tree: &mut Tree) {
    let DerivationTree::Derived(derived) = tree else {
        return;
    };
    drop_version_gaps(solver, Arc::make_mut(&mut derived.cause1));
    drop_version_gaps(solver, Arc::make_mut(&mut derived.cause2));
    let other = match (derived.cause1.as_ref(), derived.cause2.as_ref()) {
        (DerivationTree::External(External::NoVersions(..)), other)
        | (other, DerivationTree::External(External::NoVersions(..))) => other,
        _ => return,
    };
    if same_for_candidates(solver, &terms_of(other), &derived.terms) {
        *tree = other.clone();
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
    /// The number the last numbered line got ("(n)"); 0 before any.
    last_number: usize,
    /// Whether an installed module's pin took part in the conflict.
    pins_involved: bool,
}

impl<'s, 'a> Explainer<'s, 'a> {
    fn new(solver: &'s Solver<'a>) -> Self {
        Explainer {
            solver,
            lines: Vec::new(),
            numbered: Map::default(),
            last_number: 0,
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
            self.lines.push(INSTALLED_NEVER_CHANGE.to_owned());
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
            self.numbered.insert(id, self.last_number);
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
                        self.refer_back(fresh, known, n, terms);
                    }
                    (None, None) => {
                        // Explain the first on its own, numbered so the
                        // conclusion can refer back to it after the second.
                        self.derived(d1);
                        let n1 = match self.number_of(d1) {
                            Some(n) => n,
                            None => {
                                self.number_last_line();
                                self.last_number
                            }
                        };
                        self.refer_back(d2, d1, n1, terms);
                    }
                }
            }
        }
    }

    /// Explains `fresh`, then concludes `terms` from it and from `known`,
    /// which an earlier line numbered `n` already explained.
    fn refer_back(
        &mut self,
        fresh: &Derived<Node, VersionSet, Unusable>,
        known: &Derived<Node, VersionSet, Unusable>,
        n: usize,
        terms: &Map<Node, Term<VersionSet>>,
    ) {
        self.derived(fresh);
        let join = join_between(&fresh.terms, &known.terms, false, terms);
        let earlier = self.conclusion(&known.terms);
        let conclusion = self.conclusion(terms);
        self.lines.push(sentence(&format!(
            "{} {earlier} (see {n}), so {conclusion}",
            join.word()
        )));
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
        self.last_number += 1;
        if let Some(line) = self.lines.last_mut() {
            let body = line.strip_suffix('.').unwrap_or(line);
            *line = format!("{body} ({}).", self.last_number);
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
                            .map(|r| request_phrase(r))
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
        let asked: Vec<String> = self
            .solver
            .requests
            .iter()
            .map(|r| request_phrase(r))
            .collect();
        match asked.as_slice() {
            [one] => format!("{one} cannot be installed for this tenant"),
            _ => format!(
                "{} cannot be installed together for this tenant",
                join_list(&asked, "and")
            ),
        }
    }
}

/// "membership (>=1.2, <2)" for a request, or "membership" when any version
/// will do.
fn request_phrase(request: &RequestedModule) -> String {
    match &request.requirement {
        Some(req) => requirement_phrase(&request.slug, &req.to_string()),
        None => request.slug.to_string(),
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
pub(super) fn bracketed(text: &str) -> String {
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
pub(super) fn list_versions<'v>(versions: impl Iterator<Item = &'v Version>) -> String {
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
