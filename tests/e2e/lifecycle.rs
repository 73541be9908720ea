//! Install, upgrade and uninstall: atomicity, ledger, archives, audit.

use serde_json::json;

use crate::support::Host;

fn ledger(host: &Host, tenant: &str) -> i64 {
    let control = rusqlite::Connection::open_with_flags(
        host.data_dir().join("control.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    control
        .query_row(
            "SELECT count(*) FROM migration_ledger l JOIN tenants t ON t.id = l.tenant_id WHERE t.slug = ?",
            [tenant],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn install_rolls_back_when_a_migration_fails_midway() {
    let host = Host::start(&["bad-migration"]);
    let token = host.tenant("acme");
    let a = host.install("acme", &token, "bad-migration");
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(a.body["type"], "https://souk.dev/problems/lifecycle-failed");
    assert!(a.detail().contains("0002_broken"), "{a:?}");
    assert!(
        host.tenant_tables("acme").is_empty(),
        "tables left: {:?}",
        host.tenant_tables("acme")
    );
    assert_eq!(host.get("/v1/tenants/acme/modules", &token).body, json!([]));
    assert_eq!(host.get("/v1/tenants/acme/audit", &token).body, json!([]));
    assert_eq!(ledger(&host, "acme"), 0);
}

#[test]
fn install_rolls_back_when_the_install_hook_fails() {
    let host = Host::start(&["bad-install"]);
    let token = host.tenant("acme");
    let a = host.install("acme", &token, "bad-install");
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("seed failed"), "{a:?}");
    assert!(host.tenant_tables("acme").is_empty());
    assert_eq!(host.get("/v1/tenants/acme/modules", &token).body, json!([]));
    assert_eq!(ledger(&host, "acme"), 0);
}

#[test]
fn install_resolves_dependencies_and_uninstall_refuses_to_break_dependants() {
    let host = Host::start(&["membership-1.0", "membership", "sql-console"]);
    let token = host.tenant("acme");
    // sql-console needs membership >=1.0, <2: the newest fitting version is
    // installed first, then sql-console.
    let a = host.install("acme", &token, "sql-console");
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["also_installed"][0]["module"], "membership");
    assert_eq!(a.body["also_installed"][0]["version"], "1.2.0");
    let again = host.install("acme", &token, "membership");
    assert_eq!(again.status, 409, "{again:?}");

    let a = host.delete("/v1/tenants/acme/modules/membership", &token);
    assert_eq!(a.status, 409, "{a:?}");
    assert!(a.detail().contains("sql-console"), "{a:?}");
    assert_eq!(host.get("/t/acme/m/membership/members", &token).status, 200);
    let a = host.delete("/v1/tenants/acme/modules/sql-console", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.delete("/v1/tenants/acme/modules/membership", &token);
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn a_dependency_conflict_is_explained_and_changes_nothing() {
    let host = Host::start(&["membership-1.0", "membership"]);
    // A module that needs membership 2.x, which does not exist here.
    let needs_two = crate::support::package("sql-console", |m| m.replace(">=1.0, <2", ">=2.0"));
    assert_eq!(host.add_package(needs_two).status, 201);
    let token = host.tenant("acme");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "membership", "version": "1.0.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.install("acme", &token, "sql-console");
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(
        a.body["type"],
        "https://souk.dev/problems/dependency-unsatisfied"
    );
    let detail = a.detail();
    assert!(
        detail.contains("sql-console") && detail.contains("membership") && detail.contains("1.0.0"),
        "{detail}"
    );
    let installed = host.get("/v1/tenants/acme/modules", &token);
    assert_eq!(installed.body.as_array().unwrap().len(), 1, "{installed:?}");
}

#[test]
fn a_lockfile_reinstalls_the_same_versions_and_bytes() {
    let host = Host::start(&["membership-1.0", "membership", "sql-console"]);
    let acme = host.tenant("acme");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &acme,
        json!({"module": "membership", "version": "1.0.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    host.install_ok("acme", &acme, "sql-console");
    let lock = host.get("/v1/tenants/acme/lockfile", &acme);
    assert_eq!(lock.status, 200);
    let text = String::from_utf8(lock.bytes.clone()).unwrap();
    assert!(text.contains("1.0.0") && text.contains("sha256:"), "{text}");

    let beta = host.tenant("beta");
    let a = host.request(
        "POST",
        "/v1/tenants/beta/lockfile",
        Some(&beta),
        Some(text.clone().into_bytes()),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let installed = host.get("/v1/tenants/beta/modules", &beta);
    let versions: Vec<(String, String)> = installed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["module"].as_str().unwrap().to_owned(),
                i["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        versions.contains(&("membership".into(), "1.0.0".into())),
        "{versions:?}"
    );
    let beta_lock = host.get("/v1/tenants/beta/lockfile", &beta);
    assert_eq!(
        String::from_utf8(beta_lock.bytes).unwrap(),
        text,
        "same versions and digests"
    );

    // A lockfile naming bytes this host does not have is refused, changing nothing.
    let gamma = host.tenant("gamma");
    let at = text.find("sha256:").unwrap() + "sha256:".len();
    let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
    let mut forged = text.clone();
    forged.replace_range(at..=at, flipped);
    let a = host.request(
        "POST",
        "/v1/tenants/gamma/lockfile",
        Some(&gamma),
        Some(forged.into_bytes()),
    );
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(
        host.get("/v1/tenants/gamma/modules", &gamma).body,
        json!([])
    );
    let a = host.request(
        "POST",
        "/v1/tenants/gamma/lockfile",
        Some(&gamma),
        Some(b"not = [a lockfile".to_vec()),
    );
    assert_eq!(a.status, 422, "{a:?}");
}

#[test]
fn uninstall_archives_then_drops_and_the_archive_restores() {
    let host = Host::start(&["membership"]);
    let token = host.tenant_with("acme", "membership");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-7", "name": "Maya", "email": "maya@example.org"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert!(
        host.tenant_tables("acme")
            .iter()
            .any(|t| t == "membership__members")
    );

    let a = host.delete("/v1/tenants/acme/modules/membership", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["reverted_migrations"],
        json!(["0003_member_counting", "0002_member_notes", "0001_members"])
    );
    let archive_id = a.body["archive"]["id"].as_str().unwrap().to_owned();
    // Answers name archives by id; the file is named by it too.
    assert!(a.body["archive"].get("path").is_none(), "{a:?}");
    let archive_path = host
        .data_dir()
        .join("archives")
        .join(host.tenant_id("acme"))
        .join(format!("{archive_id}.jsonl"));
    let archived = std::fs::read_to_string(&archive_path).unwrap();
    assert!(
        archived.contains("Maya"),
        "archive lacks the member: {archived}"
    );
    let tables = host.tenant_tables("acme");
    assert!(
        !tables.iter().any(|t| t.starts_with("membership__")),
        "{tables:?}"
    );
    assert_eq!(ledger(&host, "acme"), 0);
    assert_eq!(host.get("/t/acme/m/membership/members", &token).status, 404);

    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "membership", "restore_archive": archive_id}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.get("/t/acme/m/membership/members/M-7", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["name"], "Maya");

    let audit = host.get("/v1/tenants/acme/audit", &token);
    let actions: Vec<&str> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["install", "uninstall", "restore"]);
    assert_eq!(audit.body[0]["actor_kind"], "tenant_token");
    assert!(audit.body[0]["at"].as_str().unwrap().starts_with("20"));

    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "membership", "restore_archive": "arc_nope"}),
    );
    assert_eq!(a.status, 409, "already installed is checked first: {a:?}");
}

#[test]
fn upgrade_runs_only_the_new_migrations_then_the_hook() {
    let host = Host::start(&["membership-1.0", "membership", "notes-v1", "notes-v2"]);
    let token = host.tenant("acme");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "membership", "version": "1.0.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["applied_migrations"], json!(["0001_members"]));
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-1", "name": "Nima", "email": "n@example.org"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    // The notes routes (1.1.0 and later) do not exist in 1.0.0.
    assert_eq!(
        host.get("/t/acme/m/membership/members/M-1/notes", &token)
            .status,
        404
    );

    let a = host.post(
        "/v1/tenants/acme/modules/membership/upgrade",
        &token,
        json!({}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["installation"]["version"], "1.2.0");
    assert_eq!(
        a.body["applied_migrations"],
        json!(["0002_member_notes", "0003_member_counting"])
    );
    assert_eq!(
        host.get("/t/acme/m/membership/members/M-1", &token).body["name"],
        "Nima"
    );
    assert_eq!(ledger(&host, "acme"), 3);

    let a = host.post(
        "/v1/tenants/acme/modules/membership/upgrade",
        &token,
        json!({"version": "1.0.0"}),
    );
    assert_eq!(a.status, 409, "downgrade: {a:?}");

    host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "notes", "version": "1.0.0"}),
    );
    let a = host.post("/t/acme/m/notes/notes", &token, json!({"body": "kept"}));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/modules/notes/upgrade",
        &token,
        json!({"version": "2.0.0"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["applied_migrations"], json!(["0002_tags"]));
    let upgrades = host.get("/t/acme/m/notes/upgrades", &token);
    let text = upgrades.body.to_string();
    assert!(text.contains("1.0.0") && text.contains("2.0.0"), "{text}");
    assert!(
        host.get("/t/acme/m/notes/notes", &token)
            .body
            .to_string()
            .contains("kept")
    );

    let audit = host.get("/v1/tenants/acme/audit", &token);
    let upgrades: Vec<_> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "upgrade")
        .collect();
    assert_eq!(upgrades.len(), 2);
    assert_eq!(upgrades[0]["from_version"], "1.0.0");
    assert_eq!(upgrades[0]["to_version"], "1.2.0");
}

#[test]
fn a_restart_keeps_all_state_and_reuses_the_compile_cache() {
    let mut host = Host::start(&["membership"]);
    let token = host.tenant_with("acme", "membership");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "R-1", "name": "Ram", "email": "r@example.org"}),
    );
    assert_eq!(a.status, 201);
    let compiled = host.data_dir().join("compiled");
    let snapshot = |dir: &std::path::Path| {
        let mut files: Vec<(String, std::time::SystemTime)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().modified().unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&compiled);
    assert_eq!(before.len(), 1, "one compiled component: {before:?}");

    host.restart();
    assert_eq!(
        host.get("/t/acme/m/membership/members/R-1", &token).body["name"],
        "Ram"
    );
    assert_eq!(
        snapshot(&compiled),
        before,
        "the restart recompiled instead of reusing the cache"
    );

    // A tampered cache entry is discarded and recompiled, never loaded.
    let path = compiled.join(&before[0].0);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    host.restart();
    assert_eq!(
        host.get("/t/acme/m/membership/members/R-1", &token).body["name"],
        "Ram"
    );
    assert_ne!(
        std::fs::read(&path).unwrap(),
        bytes,
        "tampered artifact was kept"
    );
}
