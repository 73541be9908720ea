//! A module can always be removed, a failed install leaves nothing behind,
//! migrations cannot drift, and lifecycle operations of one tenant are
//! serialised. Driven through the real binary with the `hostile-lifecycle`
//! test module, whose variants are picked by its slug.

use serde_json::json;

use crate::support::{Answer, Host, package};

/// A free plan suggested by the module, so installs start a subscription.
const FREE_PLAN: &str = "plans:
  - slug: free
    name: Free
    free: true
    interval: monthly
";

/// Uploads the `hostile-lifecycle` component as module `slug` at `version`,
/// with `extra` appended to its manifest.
fn add_variant(host: &Host, slug: &str, version: &str, extra: &str) {
    let bytes = package("hostile-lifecycle", |m| {
        let m = m
            .replace("slug: hostile-lifecycle", &format!("slug: {slug}"))
            .replace("version: 1.0.0", &format!("version: {version}"));
        format!("{m}{extra}")
    });
    let a = host.add_package(bytes);
    assert!(
        a.status == 201 || a.status == 200,
        "add {slug} {version}: {a:?}"
    );
}

fn control(host: &Host) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        host.data_dir().join("control.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open control plane")
}

/// Rows of `table` in the control plane for `module` of tenant `tenant`.
fn control_rows(host: &Host, table: &str, tenant: &str, module: &str) -> i64 {
    control(host)
        .query_row(
            &format!(
                "SELECT count(*) FROM {table} x JOIN tenants t ON t.id = x.tenant_id \
                 WHERE t.slug = ?1 AND x.module_slug = ?2"
            ),
            [tenant, module],
            |r| r.get(0),
        )
        .expect("count")
}

/// Archive files under the data directory (every tenant).
fn archive_files(host: &Host) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![host.data_dir().join("archives")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Every schema object (table, index, trigger, view) of `module` in the
/// tenant database.
fn module_objects(host: &Host, tenant: &str, module: &str) -> Vec<String> {
    let prefix = format!("{}__", module.replace('-', "_"));
    let db = host.tenant_db(tenant);
    let mut stmt = db
        .prepare("SELECT type || ' ' || name FROM sqlite_master WHERE substr(name, 1, ?1) = ?2 ORDER BY name")
        .expect("prepare");
    stmt.query_map(rusqlite::params![prefix.len() as i64, prefix], |r| {
        r.get::<_, String>(0)
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

fn audit_actions(host: &Host, tenant: &str) -> Vec<(String, String, String)> {
    let a = host.get(&format!("/v1/tenants/{tenant}/audit"), &host.operator);
    assert_eq!(a.status, 200, "{a:?}");
    a.body
        .as_array()
        .expect("audit list")
        .iter()
        .map(|e| {
            (
                e["module_slug"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// No answer may show where the server keeps its files.
fn assert_no_server_path(host: &Host, answer: &Answer) {
    let text = String::from_utf8_lossy(&answer.bytes);
    let data_dir = host.data_dir();
    let data_dir = data_dir.to_string_lossy();
    let root = host.dir.path().to_string_lossy();
    assert!(
        !text.contains(data_dir.as_ref()) && !text.contains(root.as_ref()),
        "the answer shows a server path: {text}"
    );
}

fn items(host: &Host, tenant: &str, token: &str, module: &str) -> Vec<String> {
    let a = host.get(&format!("/t/{tenant}/m/{module}/items"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Everything that shows `module` is still fully installed for `tenant`,
/// and that the refused uninstall left no archive.
fn assert_still_installed(host: &Host, tenant: &str, token: &str, module: &str, body: &str) {
    let installed = host.get(&format!("/v1/tenants/{tenant}/modules"), token);
    assert!(
        installed
            .body
            .as_array()
            .expect("list")
            .iter()
            .any(|i| i["module"] == module),
        "{installed:?}"
    );
    assert_eq!(control_rows(host, "migration_ledger", tenant, module), 1);
    assert_eq!(
        control_rows(host, "archives", tenant, module),
        0,
        "a refused uninstall recorded an archive"
    );
    assert!(
        archive_files(host).is_empty(),
        "a refused uninstall wrote {:?}",
        archive_files(host)
    );
    assert!(
        items(host, tenant, token, module).contains(&body.to_owned()),
        "the module's data is gone"
    );
    let objects = module_objects(host, tenant, module);
    assert!(
        objects.iter().any(|o| o.ends_with("__item_tags_by_tag")),
        "{objects:?}"
    );
}

#[test]
fn every_unremovable_shape_is_refused_without_force_and_removed_with_it() {
    let host = Host::start(&[]);
    let token = host.tenant("acme");
    let mut answers = Vec::new();
    // (slug, what the refusal says, who forces)
    let shapes = [
        ("refuse-uninstall", "refuses to be removed", "tenant"),
        ("trap-uninstall", "uninstall hook failed", "tenant"),
        ("loop-uninstall", "uninstall hook failed", "operator"),
        ("failing-down", "vanished", "cli"),
    ];
    for (slug, refusal, forcer) in shapes {
        add_variant(&host, slug, "1.0.0", "");
        let a = host.install("acme", &token, slug);
        assert_eq!(a.status, 201, "{slug}: {a:?}");
        let body = format!("kept by {slug}");
        let a = host.request(
            "POST",
            &format!("/t/acme/m/{slug}/items"),
            Some(&token),
            Some(body.clone().into_bytes()),
        );
        assert_eq!(a.status, 201, "{slug}: {a:?}");

        // Refused without force: nothing changes, no archive is left.
        let a = host.delete(&format!("/v1/tenants/acme/modules/{slug}"), &token);
        assert_eq!(a.status, 422, "{slug}: {a:?}");
        assert_eq!(a.body["type"], "https://souk.dev/problems/lifecycle-failed");
        assert!(a.detail().contains(refusal), "{slug}: {a:?}");
        assert_still_installed(&host, "acme", &token, slug, &body);
        answers.push(a);

        // A tenant must confirm a forced uninstall with the module slug.
        for query in [
            "force=true",
            "force=true&confirm=",
            "force=true&confirm=other",
            "confirm=x",
        ] {
            let a = host.delete(&format!("/v1/tenants/acme/modules/{slug}?{query}"), &token);
            assert!(a.status == 422 || a.status == 400, "{slug} {query}: {a:?}");
            assert_eq!(a.content_type, "application/problem+json", "{a:?}");
            assert_still_installed(&host, "acme", &token, slug, &body);
            answers.push(a);
        }

        let forced = match forcer {
            "tenant" => {
                let a = host.delete(
                    &format!("/v1/tenants/acme/modules/{slug}?force=true&confirm={slug}"),
                    &token,
                );
                assert_eq!(a.status, 200, "{slug}: {a:?}");
                assert!(
                    a.body["forced"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(refusal),
                    "{a:?}"
                );
                assert!(
                    a.body["archive"]["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("arc_")),
                    "{a:?}"
                );
                assert!(a.body["archive"].get("path").is_none(), "{a:?}");
                assert_eq!(a.body["reverted_migrations"], json!([]));
                answers.push(a);
                true
            }
            "operator" => {
                // The operator needs no confirmation.
                let a = host.delete(
                    &format!("/v1/tenants/acme/modules/{slug}?force=true"),
                    &host.operator,
                );
                assert_eq!(a.status, 200, "{slug}: {a:?}");
                assert!(a.body["forced"].is_string(), "{a:?}");
                answers.push(a);
                true
            }
            _ => {
                let (ok, stdout, stderr) = host.cli(&["module", "uninstall", "acme", slug]);
                assert!(!ok, "{slug}: the CLI removed it without --force: {stdout}");
                assert!(stderr.contains(refusal), "{stderr}");
                assert_still_installed(&host, "acme", &token, slug, &body);
                let (ok, stdout, stderr) =
                    host.cli(&["module", "uninstall", "acme", slug, "--force"]);
                assert!(ok, "{slug}: {stdout} {stderr}");
                assert!(
                    stdout.contains("forced") && stdout.contains("arc_"),
                    "{stdout}"
                );
                assert!(
                    !stdout.contains(host.data_dir().to_string_lossy().as_ref()),
                    "{stdout}"
                );
                true
            }
        };
        assert!(forced);

        // Gone: every table, index and ledger row; exactly one archive,
        // holding the data; the audit says it was forced and why.
        assert_eq!(
            module_objects(&host, "acme", slug),
            Vec::<String>::new(),
            "{slug}"
        );
        assert_eq!(control_rows(&host, "installations", "acme", slug), 0);
        assert_eq!(control_rows(&host, "migration_ledger", "acme", slug), 0);
        assert_eq!(control_rows(&host, "archives", "acme", slug), 1, "{slug}");
        let files = archive_files(&host);
        assert_eq!(files.len(), 1, "{slug}: {files:?}");
        let archived = std::fs::read_to_string(&files[0]).expect("archive");
        assert!(
            archived.contains(&body) && archived.contains("seeded by the install hook"),
            "{archived}"
        );
        std::fs::remove_file(&files[0]).expect("clear the archive for the next shape");
        let audit = audit_actions(&host, "acme");
        let last = audit.last().expect("audit");
        assert_eq!(
            (last.0.as_str(), last.1.as_str()),
            (slug, "uninstall"),
            "{audit:?}"
        );
        assert!(
            last.2.starts_with("forced uninstall") && last.2.contains(refusal),
            "{last:?}"
        );
        assert_eq!(
            host.get(&format!("/t/acme/m/{slug}/items"), &token).status,
            404
        );
    }
    for a in &answers {
        assert_no_server_path(&host, a);
    }
    // A well-behaved module is not forced even when force is asked for.
    add_variant(&host, "polite", "1.0.0", "");
    host.install_ok("acme", &token, "polite");
    let a = host.delete(
        "/v1/tenants/acme/modules/polite?force=true&confirm=polite",
        &token,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.get("forced").is_none(), "{a:?}");
    assert_eq!(a.body["reverted_migrations"], json!(["0001_items"]));
    assert_eq!(
        module_objects(&host, "acme", "polite"),
        Vec::<String>::new()
    );
    assert_no_server_path(&host, &a);
}

#[test]
fn a_down_migration_that_could_never_run_is_refused_at_install_and_upgrade() {
    let host = Host::start(&["membership"]);
    let token = host.tenant_with("acme", "membership");
    add_variant(&host, "foreign-down", "1.0.0", "");
    let a = host.install("acme", &token, "foreign-down");
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(a.body["type"], "https://souk.dev/problems/lifecycle-failed");
    assert!(
        a.detail().contains("0001_items") && a.detail().contains("down"),
        "{a:?}"
    );
    assert_no_server_path(&host, &a);
    assert_eq!(
        module_objects(&host, "acme", "foreign-down"),
        Vec::<String>::new()
    );
    assert_eq!(
        control_rows(&host, "installations", "acme", "foreign-down"),
        0
    );
    assert_eq!(
        control_rows(&host, "migration_ledger", "acme", "foreign-down"),
        0
    );
    assert!(
        audit_actions(&host, "acme")
            .iter()
            .all(|e| e.0 != "foreign-down")
    );

    // Sound at 1.0.0, unsound at 1.1.0: the upgrade is refused, 1.0.0 stays.
    add_variant(&host, "late-foreign-down", "1.0.0", "");
    add_variant(&host, "late-foreign-down", "1.1.0", "");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "late-foreign-down", "version": "1.0.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/modules/late-foreign-down/upgrade",
        &token,
        json!({}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    assert!(
        a.detail().contains("0002_notes") && a.detail().contains("down"),
        "{a:?}"
    );
    assert_no_server_path(&host, &a);
    assert!(
        !module_objects(&host, "acme", "late-foreign-down")
            .iter()
            .any(|o| o.ends_with("__notes"))
    );
    assert_eq!(
        control_rows(&host, "migration_ledger", "acme", "late-foreign-down"),
        1
    );
    let installed = host.get("/v1/tenants/acme/modules", &token);
    let late = installed
        .body
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["module"] == "late-foreign-down")
        .cloned()
        .expect("still installed");
    assert_eq!(late["version"], "1.0.0");
    // And 1.0.0 still uninstalls normally.
    let a = host.delete("/v1/tenants/acme/modules/late-foreign-down", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(host.get("/t/acme/m/membership/members", &token).status, 200);
}

#[test]
fn a_version_that_changes_a_released_migration_is_refused_naming_it() {
    let host = Host::start(&[]);
    let token = host.tenant("acme");
    for slug in ["drift", "steady"] {
        add_variant(&host, slug, "1.0.0", "");
        let a = host.post(
            "/v1/tenants/acme/modules",
            &token,
            json!({"module": slug, "version": "1.0.0"}),
        );
        assert_eq!(a.status, 201, "{a:?}");
    }
    let checksum: String = control(&host)
        .query_row(
            "SELECT checksum FROM migration_ledger WHERE module_slug = 'drift'",
            [],
            |r| r.get(0),
        )
        .expect("checksum recorded");
    assert!(
        checksum.starts_with("sha256:") && checksum.len() == 7 + 64,
        "{checksum}"
    );

    // `drift` 1.1.0 changes the SQL of 0001_items: the package is refused
    // when it is added, naming the migration and the version it differs
    // from, so no tenant can ever be offered the upgrade. (The installer
    // also compares the ledger's checksums, for catalogs filled before this
    // check; its unit tests cover that.)
    let bytes = package("hostile-lifecycle", |m| {
        m.replace("slug: hostile-lifecycle", "slug: drift")
            .replace("version: 1.0.0", "version: 1.1.0")
    });
    // Twice: the server has listed 1.0.0's migrations for the install above
    // and keeps them; what it keeps never lets the new version through.
    for _ in 0..2 {
        let a = host.add_package(bytes.clone());
        assert_eq!(a.status, 422, "{a:?}");
        assert_eq!(a.body["type"], "https://souk.dev/problems/package-refused");
        assert!(
            a.detail().contains("0001_items") && a.detail().contains("1.0.0"),
            "{a:?}"
        );
        assert_no_server_path(&host, &a);
    }
    // Found among the bundled packages at start, it stops the start.
    let bundled = host.dir.path().join("modules").join("drift-1.1.0.souk");
    std::fs::write(&bundled, &bytes).expect("write package");
    let (ok, stdout, stderr) = host.cli(&["module", "list"]);
    assert!(
        !ok && stderr.contains("0001_items") && stderr.contains("1.0.0"),
        "{stdout}{stderr}"
    );
    std::fs::remove_file(&bundled).expect("remove package");
    let a = host.post("/v1/tenants/acme/modules/drift/upgrade", &token, json!({}));
    assert_ne!(a.status, 200, "{a:?}");
    let installed = host.get("/v1/tenants/acme/modules", &token);
    let drift = installed
        .body
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["module"] == "drift")
        .cloned()
        .expect("installed");
    assert_eq!(drift["version"], "1.0.0");
    assert_eq!(control_rows(&host, "migration_ledger", "acme", "drift"), 1);
    assert!(
        !module_objects(&host, "acme", "drift")
            .iter()
            .any(|o| o.ends_with("drift__notes"))
    );

    // A new version that only adds migrations is taken and upgrades.
    add_variant(&host, "steady", "1.1.0", "");
    let a = host.post("/v1/tenants/acme/modules/steady/upgrade", &token, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["installation"]["version"], "1.1.0");
}

#[test]
fn a_failed_install_leaves_no_subscription_ledger_audit_or_tables() {
    let host = Host::start(&["membership"]);
    let token = host.tenant_with("acme", "membership");
    for slug in ["fail-install", "loop-install", "foreign-down"] {
        add_variant(&host, slug, "1.0.0", FREE_PLAN);
        let a = host.install("acme", &token, slug);
        assert_eq!(a.status, 422, "{slug}: {a:?}");
        assert_no_server_path(&host, &a);
        let subscriptions = host.get("/v1/tenants/acme/subscriptions", &token);
        assert_eq!(subscriptions.status, 200, "{subscriptions:?}");
        assert_eq!(
            subscriptions.body["subscriptions"],
            json!([]),
            "{slug}: {subscriptions:?}"
        );
        assert_eq!(control_rows(&host, "subscriptions", "acme", slug), 0);
        assert_eq!(control_rows(&host, "subscription_events", "acme", slug), 0);
        assert_eq!(control_rows(&host, "installations", "acme", slug), 0);
        assert_eq!(control_rows(&host, "migration_ledger", "acme", slug), 0);
        assert!(
            audit_actions(&host, "acme").iter().all(|e| e.0 != slug),
            "{slug}"
        );
        assert_eq!(module_objects(&host, "acme", slug), Vec::<String>::new());
    }
    // The same plan on a module that installs: the subscription starts, so
    // the checks above can fail.
    add_variant(&host, "subscribes", "1.0.0", FREE_PLAN);
    host.install_ok("acme", &token, "subscribes");
    let subscriptions = host.get("/v1/tenants/acme/subscriptions", &token);
    let list = subscriptions.body["subscriptions"]
        .as_array()
        .expect("list");
    assert_eq!(list.len(), 1, "{subscriptions:?}");
    assert_eq!(
        (list[0]["module"].as_str(), list[0]["plan"].as_str()),
        (Some("subscribes"), Some("free"))
    );
    assert_eq!(
        control_rows(&host, "subscription_events", "acme", "subscribes"),
        1
    );
}

/// Runs `n` copies of `request` at once; returns their answers.
fn in_parallel(n: usize, request: impl Fn() -> Answer + Sync) -> Vec<Answer> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    request()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    let mut s: Vec<u16> = answers.iter().map(|a| a.status).collect();
    s.sort_unstable();
    s
}

#[test]
fn parallel_installs_of_one_module_one_wins_the_rest_conflict() {
    let host = Host::start(&[]);
    let token = host.tenant("acme");
    add_variant(&host, "contended", "1.0.0", FREE_PLAN);
    const N: usize = 8;
    let answers = in_parallel(N, || host.install("acme", &token, "contended"));
    let s = statuses(&answers);
    assert_eq!(
        s.iter().filter(|&&c| c == 201).count(),
        1,
        "{s:?} {answers:?}"
    );
    assert_eq!(
        s.iter().filter(|&&c| c == 409).count(),
        N - 1,
        "{s:?} {answers:?}"
    );
    for a in &answers {
        assert_no_server_path(&host, a);
        if a.status == 409 {
            assert_eq!(
                a.body["type"], "https://souk.dev/problems/conflict",
                "{a:?}"
            );
        }
    }
    assert_eq!(control_rows(&host, "installations", "acme", "contended"), 1);
    assert_eq!(
        control_rows(&host, "migration_ledger", "acme", "contended"),
        1
    );
    assert_eq!(control_rows(&host, "subscriptions", "acme", "contended"), 1);
    let installs = audit_actions(&host, "acme")
        .into_iter()
        .filter(|e| e.0 == "contended" && e.1 == "install")
        .count();
    assert_eq!(installs, 1);
    assert_eq!(
        items(&host, "acme", &token, "contended").len(),
        1,
        "the install hook ran once"
    );
}

#[test]
fn parallel_uninstalls_one_wins_and_exactly_one_archive_exists() {
    let host = Host::start(&[]);
    let token = host.tenant("acme");
    add_variant(&host, "contended", "1.0.0", "");
    host.install_ok("acme", &token, "contended");
    const N: usize = 8;
    let answers = in_parallel(N, || {
        host.delete("/v1/tenants/acme/modules/contended", &token)
    });
    let s = statuses(&answers);
    assert_eq!(
        s.iter().filter(|&&c| c == 200).count(),
        1,
        "{s:?} {answers:?}"
    );
    // Losers either met the operation in progress (409) or came after it (404).
    assert!(
        s.iter().all(|&c| c == 200 || c == 409 || c == 404),
        "{s:?} {answers:?}"
    );
    for a in &answers {
        assert_no_server_path(&host, a);
        assert!(a.body.is_object(), "{a:?}");
    }
    assert_eq!(archive_files(&host).len(), 1, "{:?}", archive_files(&host));
    assert_eq!(control_rows(&host, "archives", "acme", "contended"), 1);
    assert_eq!(
        module_objects(&host, "acme", "contended"),
        Vec::<String>::new()
    );
    let uninstalls = audit_actions(&host, "acme")
        .into_iter()
        .filter(|e| e.1 == "uninstall")
        .count();
    assert_eq!(uninstalls, 1);
}

#[test]
fn lifecycle_operations_of_different_tenants_do_not_block_each_other() {
    let host = Host::start(&[]);
    add_variant(&host, "shared", "1.0.0", "");
    let tenants: Vec<(String, String)> = (0..4)
        .map(|i| {
            let slug = format!("t{i}");
            let token = host.tenant(&slug);
            (slug, token)
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let answers = in_parallel(tenants.len(), || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (slug, token) = &tenants[i];
        host.install(slug, token, "shared")
    });
    assert_eq!(statuses(&answers), vec![201; tenants.len()], "{answers:?}");
    for (slug, _) in &tenants {
        assert_eq!(control_rows(&host, "installations", slug, "shared"), 1);
    }
}
