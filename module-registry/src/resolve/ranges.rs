//! Semver requirements as the solver's version sets.
//!
//! The solver works on sets of [`semver::Version`] made of intervals in
//! semver precedence order; [`requirement_range`] gives a requirement's
//! intervals, one comparator at a time.
//!
//! **Pre-releases** follow Cargo's rule, the one `semver::VersionReq::matches`
//! implements: a pre-release such as `2.0.0-beta.1` satisfies a requirement
//! only if it is inside the requirement's intervals *and* one comparator
//! names a pre-release of the same `major.minor.patch` (`>=2.0.0-alpha`). So
//! `^1.4` never picks `1.5.0-rc.1`, and `>=2.0.0-alpha, <3` picks
//! `2.0.0-beta` but not `2.1.0-beta`. Intervals cannot express "no
//! pre-releases" (there is a pre-release between any two releases), so the
//! solver works on each requirement's intervals with every *known* version
//! that `matches` rejects cut out, and every known version it accepts (such
//! as one carrying build metadata) added in ([`exact_range`]). The solver
//! only ever picks known versions, so its choices agree with
//! `VersionReq::matches` exactly; [`requirement_range`] alone returns the
//! intervals, which are what explanations print.

use pubgrub::Ranges;
use semver::{BuildMetadata, Comparator, Op, Prerelease, Version, VersionReq};

/// A comparator uses an operator this code does not know how to convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the comparator {comparator} uses an unsupported operator")]
pub struct UnsupportedComparator {
    /// The comparator as written.
    pub comparator: String,
}

/// The versions a requirement's comparators allow, as intervals in semver
/// precedence order: the intersection of each comparator's interval set.
///
/// | comparator | versions |
/// | --- | --- |
/// | `=1.2.3`, `=1.2.3-rc.1` | exactly that version |
/// | `=1.2`, `1.2.*` | `>=1.2.0, <1.3.0` |
/// | `=1`, `1.*` | `>=1.0.0, <2.0.0` |
/// | `>1.2.3` / `>1.2` / `>1` | `>1.2.3` / `>=1.3.0` / `>=2.0.0` |
/// | `>=1.2.3-rc.1` / `>=1.2` | from that version on / `>=1.2.0` |
/// | `<1.2.3` / `<1.2` / `<1` | below `1.2.3` / `1.2.0` / `1.0.0` |
/// | `<=1.2.3` / `<=1.2` / `<=1` | up to `1.2.3` / below `1.3.0` / below `2.0.0` |
/// | `~1.2.3` / `~1.2` / `~1` | `>=1.2.3, <1.3.0` / `>=1.2.0, <1.3.0` / `>=1.0.0, <2.0.0` |
/// | `^1.2.3` / `^0.2.3` / `^0.0.3` | `<2.0.0` / `<0.3.0` / `<0.0.4`, from that version |
/// | `^1.2` / `^0.2` / `^0.0` / `^1` / `^0` | `>=1.2.0, <2.0.0` / `>=0.2.0, <0.3.0` / `>=0.0.0, <0.1.0` / `>=1.0.0, <2.0.0` / `>=0.0.0, <1.0.0` |
/// | `*` (no comparator) | every version |
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

pub(super) fn release(major: u64, minor: u64, patch: u64) -> Version {
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
pub(super) fn exact_range<'v>(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn req(text: &str) -> VersionReq {
        VersionReq::parse(text).unwrap()
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
}
