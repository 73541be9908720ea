//! A module's SQL reaches only its own tables and the tables its
//! dependencies export (read-only); DDL only from migrations.

use serde_json::{Value, json};

use crate::support::Host;

fn setup() -> (Host, String) {
    let host = Host::start(&["membership", "sql-console", "notes-v1"]);
    let token = host.tenant_with("acme", "membership");
    host.install_ok("acme", &token, "sql-console");
    host.install_ok("acme", &token, "notes");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "S-1", "name": "Sunita", "email": "s@example.org"}),
    );
    assert_eq!(a.status, 201);
    let a = host.post(
        "/t/acme/m/notes/notes",
        &token,
        json!({"body": "private note"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    (host, token)
}

fn sql(host: &Host, token: &str, route: &str, sql: &str, params: Value) -> crate::support::Answer {
    host.post(
        &format!("/t/acme/m/sql-console/{route}"),
        token,
        json!({"sql": sql, "params": params}),
    )
}

fn refused(a: &crate::support::Answer, kind: &str, needle: &str) {
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.body["error_kind"], kind, "{a:?}");
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message {message:?} should name {needle:?}"
    );
}

#[test]
fn a_module_uses_its_own_tables_and_reads_exported_ones() {
    let (host, token) = setup();
    let a = sql(
        &host,
        &token,
        "execute",
        "INSERT INTO notes (body) VALUES (?1)",
        json!(["mine"]),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = sql(&host, &token, "query", "SELECT body FROM notes", json!([]));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["rows"],
        json!([["mine"]]),
        "sql-console's own notes, not the notes module's"
    );
    let a = sql(
        &host,
        &token,
        "query",
        "SELECT id, body FROM notes WHERE 0",
        json!([]),
    );
    assert_eq!(
        a.body["columns"],
        json!(["id", "body"]),
        "empty results keep their columns: {a:?}"
    );
    assert_eq!(a.body["rows"], json!([]));

    let a = sql(
        &host,
        &token,
        "query",
        "SELECT m.name FROM membership.members m WHERE m.number = ?",
        json!(["S-1"]),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["rows"], json!([["Sunita"]]));
}

#[test]
fn a_module_cannot_write_a_dependencys_tables() {
    let (host, token) = setup();
    for statement in [
        "INSERT INTO membership.members (number, name, email) VALUES ('X', 'x', 'x@x')",
        "UPDATE membership.members SET name = 'pwned'",
        "DELETE FROM membership.members",
    ] {
        refused(
            &sql(&host, &token, "execute", statement, json!([])),
            "forbidden",
            "membership.members",
        );
    }
    assert_eq!(
        host.get("/t/acme/m/membership/members/S-1", &token).body["name"],
        "Sunita"
    );
}

#[test]
fn a_module_cannot_reach_other_modules_tables() {
    let (host, token) = setup();
    for (statement, needle) in [
        ("SELECT * FROM notes.notes", "notes.notes"),
        (
            "SELECT * FROM membership.member_notes",
            "membership.member_notes",
        ),
        ("SELECT * FROM main.notes__notes", "main.notes__notes"),
        ("SELECT * FROM notes__notes", "notes__notes"),
        (
            "SELECT * FROM \"membership__members\"",
            "membership__members",
        ),
        (
            "WITH notes__notes AS (SELECT 1) SELECT * FROM notes__notes",
            "notes__notes",
        ),
    ] {
        refused(
            &sql(&host, &token, "query", statement, json!([])),
            "forbidden",
            needle,
        );
    }
    // System tables resolve inside the module's namespace, where they do not exist.
    let a = sql(
        &host,
        &token,
        "query",
        "SELECT name FROM sqlite_master",
        json!([]),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(!a.body.to_string().contains("notes__notes"));
    for statement in [
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA table_list",
        "VACUUM",
    ] {
        let a = sql(&host, &token, "execute", statement, json!([]));
        assert_eq!(a.status, 400, "{statement}: {a:?}");
        assert_ne!(
            a.body["error_kind"], "other",
            "{statement} reached the database: {a:?}"
        );
    }
    let notes = host.get("/t/acme/m/notes/notes", &token);
    assert!(notes.body.to_string().contains("private note"));
}

#[test]
fn ddl_is_refused_outside_migrations() {
    let (host, token) = setup();
    for statement in [
        "CREATE TABLE sneaky (a INT)",
        "DROP TABLE notes",
        "ALTER TABLE notes ADD COLUMN x INT",
        "CREATE INDEX i ON notes (body)",
    ] {
        refused(
            &sql(&host, &token, "execute", statement, json!([])),
            "ddl-outside-migration",
            "only allowed in migrations",
        );
    }
    let tables = host.tenant_tables("acme");
    assert!(!tables.iter().any(|t| t.contains("sneaky")), "{tables:?}");
    assert!(
        tables.iter().any(|t| t == "sql_console__notes"),
        "{tables:?}"
    );
}

#[test]
fn parameters_are_bound_never_spliced() {
    let (host, token) = setup();
    let hostile = "x'); DROP TABLE notes; --";
    let a = sql(
        &host,
        &token,
        "execute",
        "INSERT INTO notes (body) VALUES (?1)",
        json!([hostile]),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = sql(
        &host,
        &token,
        "query",
        "SELECT body FROM notes WHERE body = ?1",
        json!([hostile]),
    );
    assert_eq!(a.body["rows"], json!([[hostile]]));
}

#[test]
fn a_runaway_statement_is_interrupted_and_the_database_stays_usable() {
    let (host, token) = setup();
    // More runaways than the tenant pool has connections: if any statement
    // kept running after its deadline, the pool would be exhausted below.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let a = sql(
            &host,
            &token,
            "query",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            json!([]),
        );
        assert!(a.status == 400 || a.status == 504, "{a:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // Every pooled connection still works.
    for _ in 0..8 {
        let a = sql(
            &host,
            &token,
            "query",
            "SELECT count(*) FROM notes",
            json!([]),
        );
        assert_eq!(a.status, 200, "{a:?}");
    }
    let a = sql(
        &host,
        &token,
        "query",
        "SELECT load_extension('/tmp/evil.so')",
        json!([]),
    );
    assert_eq!(a.status, 400, "{a:?}");
}

#[test]
fn the_hosts_usage_tables_are_out_of_every_modules_reach() {
    let (host, token) = setup();
    // The usage tables exist in the tenant database (membership counts
    // nothing, but the host creates them with the database).
    let tables: Vec<String> = {
        let db = host.tenant_db("acme");
        let mut stmt = db
            .prepare("SELECT name FROM sqlite_master WHERE name LIKE '\\_souk\\_%' ESCAPE '\\'")
            .expect("prepare");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    assert!(
        tables.contains(&"_souk_usage_counters".to_owned()),
        "{tables:?}"
    );
    assert!(tables.contains(&"_souk_files".to_owned()), "{tables:?}");
    for statement in [
        "SELECT * FROM _souk_usage_counters",
        "SELECT * FROM \"_souk_usage_counters\"",
        "SELECT * FROM main._souk_usage_counters",
        "SELECT * FROM main.\"_souk_usage_events\"",
        "UPDATE _souk_usage_counters SET used = 0",
        "INSERT INTO _souk_usage_events (module, meter, period_start, idempotency_key, amount, at) VALUES ('cards', 'm', 0, 'k', -5, 0)",
        "DELETE FROM main._souk_usage_keys",
        "SELECT * FROM _souk_files",
        "SELECT sha256 FROM main.\"_souk_files\"",
        "UPDATE _souk_files SET module = 'sql-console'",
        "DELETE FROM main._souk_files",
        "SELECT * FROM sqlite_master WHERE name LIKE '_souk%'",
    ] {
        let route = if statement.starts_with("SELECT") {
            "query"
        } else {
            "execute"
        };
        let a = sql(&host, &token, route, statement, json!([]));
        assert_eq!(a.status, 400, "{statement}: {a:?}");
    }
}
