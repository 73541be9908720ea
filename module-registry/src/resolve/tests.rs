//! The resolver's behaviour, through its public functions.

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

/// The explanation of the conflict that refuses to install `requests`.
fn explain_install(
    index: &RegistryIndex,
    installed: &[InstalledModule],
    requests: &[RequestedModule],
) -> String {
    match resolve_install(index, installed, requests) {
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
    let plan = resolve_install(&index, &[], &[RequestedModule::any(slug("elections"))]).unwrap();
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

    let text = explain_install(
        &index,
        &have,
        &[RequestedModule::matching(slug("membership"), req(">=1.8"))],
    );
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

    let text = explain_install(
        &index,
        &[],
        &[RequestedModule::matching(slug("membership"), req(">=1.2"))],
    );
    assert_eq!(
        text,
        "You asked for membership >=1.2, but no version of membership satisfies >=1.2 \
         (available: 1.0.0; pre-releases, chosen only for a requirement that names one: \
         1.5.0-rc.1, 2.0.0-beta.1, 2.0.0-beta.2, 2.1.0-alpha), \
         so membership >=1.2 cannot be installed for this tenant."
    );
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
    let error = resolve_install(&index, &[], &[RequestedModule::any(slug("forum"))]).unwrap_err();
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
    let text = explain_install(&index, &[], &[RequestedModule::any(slug("forum"))]);
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
    let text = explain_install(&index, &[], &[RequestedModule::any(slug("polls"))]);
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
    let text = explain_install(
        &index,
        &[],
        &[RequestedModule::matching(slug("elections"), req(">=3"))],
    );
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
    let text = explain_install(
        &index,
        &[],
        &[RequestedModule::matching(slug("elections"), req(">=3"))],
    );
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
    let text = explain_install(&index, &[], &[RequestedModule::any(slug("elections"))]);
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
    let text = explain_install(&index, &[], &[RequestedModule::any(slug("polls"))]);
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
    let text = explain_install(
        &index,
        &[],
        &[
            RequestedModule::any(slug("forum")),
            RequestedModule::any(slug("digital-card")),
        ],
    );
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
    let text = explain_install(
        &index,
        &[],
        &[RequestedModule::matching(slug("foo"), req("^1.0.0"))],
    );
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
    let error = Lockfile::new([locked("forum", "1.0.0"), locked("forum", "1.1.0")]).unwrap_err();
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
