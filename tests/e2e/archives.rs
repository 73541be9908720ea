//! Archives through the real binary: every first-party and test module with
//! tables is filled with edge-case data, uninstalled, reinstalled from its
//! archive, and compared value by value (storage class and exact bytes, read
//! from the tenant database file with rusqlite) with what it held before;
//! changed archives are refused and change nothing; archives of the first
//! format still restore; no answer shows a server path; 100,000 rows go
//! through in bounded memory.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::{Answer, Host, package};

/// A value as SQLite holds it: storage class and exact bytes (a double as
/// its bit pattern).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Null,
    Integer(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// A module's tables (rows sorted, rowid first where the table has one,
/// generated columns included), its AUTOINCREMENT counters and its usage
/// counters.
type Snapshot = Vec<(String, Vec<Vec<Seen>>)>;

fn prefix(module: &str) -> String {
    format!("{}__", module.replace('-', "_"))
}

fn snapshot(host: &Host, tenant: &str, module: &str) -> Snapshot {
    let db = host.tenant_db(tenant);
    let prefix = prefix(module);
    let read = |sql: &str, param: &str| -> Vec<Vec<Seen>> {
        let mut stmt = db.prepare(sql).expect(sql);
        let n = stmt.column_count();
        let mut rows: Vec<Vec<Seen>> = stmt
            .query_map([param], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i).expect("value") {
                        rusqlite::types::ValueRef::Null => Seen::Null,
                        rusqlite::types::ValueRef::Integer(v) => Seen::Integer(v),
                        rusqlite::types::ValueRef::Real(v) => Seen::Real(v.to_bits()),
                        rusqlite::types::ValueRef::Text(v) => Seen::Text(v.to_vec()),
                        rusqlite::types::ValueRef::Blob(v) => Seen::Blob(v.to_vec()),
                    })
                    .collect())
            })
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        rows.sort();
        rows
    };
    let tables: Vec<String> = db
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )
        .expect("tables")
        .query_map([&prefix], |r| r.get(0))
        .expect("tables")
        .map(|r| r.expect("name"))
        .collect();
    let mut out = Snapshot::new();
    for table in tables {
        let quoted = format!("\"{table}\"");
        let sql = if db
            .prepare(&format!(
                "SELECT _rowid_ FROM {quoted} WHERE ?1 IS NOT NULL"
            ))
            .is_ok()
        {
            format!("SELECT _rowid_, * FROM {quoted} WHERE ?1 IS NOT NULL")
        } else {
            format!("SELECT * FROM {quoted} WHERE ?1 IS NOT NULL")
        };
        let rows = read(&sql, "x");
        out.push((table, rows));
    }
    if db.prepare("SELECT 1 FROM sqlite_sequence").is_ok() {
        out.push((
            "sqlite_sequence".into(),
            read(
                "SELECT name, seq FROM sqlite_sequence WHERE substr(name, 1, length(?1)) = ?1",
                &prefix,
            ),
        ));
    }
    out.push((
        "_souk_usage_counters".into(),
        read(
            "SELECT key, used FROM _souk_usage_counters WHERE module = ?1",
            module,
        ),
    ));
    out
}

fn rows<'a>(snapshot: &'a Snapshot, table: &str) -> &'a [Vec<Seen>] {
    &snapshot
        .iter()
        .find(|(t, _)| t == table)
        .unwrap_or_else(|| panic!("no table {table} in {snapshot:?}"))
        .1
}

fn module_row_count(snapshot: &Snapshot, module: &str) -> u64 {
    let prefix = prefix(module);
    snapshot
        .iter()
        .filter(|(t, _)| t.starts_with(&prefix))
        .map(|(_, r)| r.len() as u64)
        .sum()
}

/// The tenant database, writable, for edge data no module route writes.
fn write_db(host: &Host, tenant: &str) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(host.tenant_db_path(tenant)).expect("open tenant db");
    db.busy_timeout(std::time::Duration::from_secs(20))
        .expect("busy timeout");
    db.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
    db
}

fn archive_file(host: &Host, tenant: &str, id: &str) -> PathBuf {
    host.data_dir()
        .join("archives")
        .join(host.tenant_id(tenant))
        .join(format!("{id}.jsonl"))
}

/// No answer may show where the server keeps its files.
fn assert_no_server_path(host: &Host, answer: &Answer) {
    let text = String::from_utf8_lossy(&answer.bytes);
    let dir = host.dir.path().to_string_lossy();
    assert!(!text.contains(dir.as_ref()), "{text}");
    assert!(!text.contains(".jsonl"), "{text}");
    assert!(!text.contains("\"path\""), "{text}");
}

fn assert_archive_fields(archive: &Value) {
    let mut keys: Vec<&str> = archive
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {archive}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "id", "module_slug", "size_bytes", "version"],
        "{archive}"
    );
}

/// Uninstalls `module`; the archive id.
fn uninstall(host: &Host, tenant: &str, token: &str, module: &str) -> String {
    let a = host.delete(&format!("/v1/tenants/{tenant}/modules/{module}"), token);
    assert_eq!(a.status, 200, "uninstall {module}: {a:?}");
    assert_no_server_path(host, &a);
    assert_archive_fields(&a.body["archive"]);
    let id = a.body["archive"]["id"]
        .as_str()
        .expect("archive id")
        .to_owned();
    let file = archive_file(host, tenant, &id);
    assert_eq!(
        a.body["archive"]["size_bytes"],
        std::fs::metadata(&file)
            .expect("archive file named by id")
            .len(),
    );
    id
}

fn restore(host: &Host, tenant: &str, token: &str, module: &str, id: &str) -> Answer {
    host.post(
        &format!("/v1/tenants/{tenant}/modules"),
        token,
        json!({"module": module, "restore_archive": id}),
    )
}

/// Uninstalls and restores `module`, and checks that the tenant database
/// holds exactly what it held before. Returns the snapshot.
fn round_trip(host: &Host, tenant: &str, token: &str, module: &str) -> Snapshot {
    let before = snapshot(host, tenant, module);
    let rows = module_row_count(&before, module);
    assert!(rows > 0, "nothing to round-trip: {before:?}");
    let id = uninstall(host, tenant, token, module);
    let left = snapshot(host, tenant, module);
    assert_eq!(module_row_count(&left, module), 0);
    assert!(
        !host
            .tenant_tables(tenant)
            .iter()
            .any(|t| t.starts_with(&prefix(module))),
        "tables left behind"
    );
    let a = restore(host, tenant, token, module, &id);
    assert_eq!(a.status, 201, "restore {module}: {a:?}");
    assert_eq!(a.body["restored_rows"], rows, "{a:?}");
    let after = snapshot(host, tenant, module);
    assert_eq!(before, after, "{module} did not come back exactly");
    before
}

fn execute(
    host: &Host,
    tenant: &str,
    token: &str,
    module: &str,
    sql: &str,
    params: Value,
) -> Value {
    let a = host.post(
        &format!("/t/{tenant}/m/{module}/execute"),
        token,
        json!({"sql": sql, "params": params}),
    );
    assert_eq!(a.status, 200, "{sql}: {a:?}");
    a.body
}

/// Bytes that are not UTF-8.
const NOT_UTF8: &[&[u8]] = &[
    &[0xff, 0xfe, 0x00, 0x41],
    &[0x80],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[b'a', 0x00, 0xff],
];

fn edge_reals() -> Vec<f64> {
    vec![
        0.0,
        -0.0,
        1.5,
        -1.5e-300,
        1.5e-300,
        5e-324,
        -5e-324,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 2.0,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1,
        std::f64::consts::PI,
    ]
}

#[test]
fn membership_round_trips_edge_values_exactly() {
    let host = Host::start(&["membership"]);
    let token = host.tenant_with("acme", "membership");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-7", "name": "Maya", "email": "maya@example.org"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let db = write_db(&host, "acme");
    db.execute(
        "INSERT INTO membership__members (id, number, name, email, status, joined_on, notes) VALUES \
         (?1, 'M-max', CAST(?2 AS TEXT), x'00ff', 'active', '', NULL), \
         (?3, '', '', NULL, 'left', 'नमस्ते', CAST(?4 AS TEXT)), \
         (5, 'M-blob', 'Blob', ?5, 'suspended', '2026-01-01', '')",
        rusqlite::params![i64::MAX, NOT_UTF8[0], i64::MIN, NOT_UTF8[2], vec![0x5au8; 256 << 10]],
    )
    .expect("edge members");
    db.execute(
        "UPDATE membership__member_numbering SET prefix = CAST(?1 AS TEXT), next_value = ?2",
        rusqlite::params![NOT_UTF8[1], f64::MIN_POSITIVE / 2.0],
    )
    .expect("numbering");
    drop(db);
    let before = round_trip(&host, "acme", &token, "membership");
    let numbering = rows(&before, "membership__member_numbering");
    assert_eq!(
        numbering[0][3],
        Seen::Real((f64::MIN_POSITIVE / 2.0).to_bits())
    );
    assert_eq!(numbering[0][2], Seen::Text(NOT_UTF8[1].to_vec()));
    // The module reads its data back.
    let a = host.get("/t/acme/m/membership/members/M-7", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["name"], "Maya");
}

#[test]
fn notes_one_round_trips_edge_values_exactly() {
    let host = Host::start(&["notes-v1"]);
    let token = host.tenant_with("acme", "notes");
    let a = host.post("/t/acme/m/notes/notes", &token, json!({"body": "first"}));
    assert_eq!(a.status, 201, "{a:?}");
    let db = write_db(&host, "acme");
    for (id, body) in [
        (i64::MAX, rusqlite::types::Value::Text(String::new())),
        (i64::MIN, rusqlite::types::Value::Text("a\0b".into())),
        (5, rusqlite::types::Value::Blob(Vec::new())),
        (6, rusqlite::types::Value::Blob(vec![0xa5; 1 << 20])),
        (7, rusqlite::types::Value::Text("नमस्ते 🙂 \"\\\n".into())),
    ] {
        db.execute(
            "INSERT INTO notes__notes (id, body) VALUES (?1, ?2)",
            rusqlite::params![id, body],
        )
        .expect("note");
    }
    for (n, bytes) in NOT_UTF8.iter().enumerate() {
        db.execute(
            "INSERT INTO notes__notes (id, body) VALUES (?1, CAST(?2 AS TEXT))",
            rusqlite::params![100 + n as i64, bytes],
        )
        .expect("not utf-8 note");
    }
    db.execute(
        "INSERT INTO notes__upgrades (id, from_version, to_version) VALUES (1, x'', CAST(x'ff' AS TEXT))",
        [],
    )
    .expect("upgrade row");
    drop(db);
    let before = round_trip(&host, "acme", &token, "notes");
    let notes = rows(&before, "notes__notes");
    for bytes in NOT_UTF8 {
        assert!(notes.iter().any(|r| r[2] == Seen::Text(bytes.to_vec())));
    }
    assert!(
        notes
            .iter()
            .any(|r| r[2] == Seen::Blob(vec![0xa5; 1 << 20]))
    );
}

#[test]
fn notes_two_with_tagged_notes_round_trips() {
    let host = Host::start(&["notes-v2"]);
    let token = host.tenant_with("acme", "notes");
    let a = host.post(
        "/t/acme/m/notes/notes",
        &token,
        json!({"body": "tagged", "tags": ["urgent", "home"]}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let note = a.body["id"].as_i64().expect("note id");
    let db = write_db(&host, "acme");
    db.execute(
        "INSERT INTO notes__notes (id, body) VALUES (?1, CAST(?2 AS TEXT))",
        rusqlite::params![i64::MAX, NOT_UTF8[0]],
    )
    .expect("note");
    db.execute(
        "INSERT INTO notes__note_tags (note_id, tag) VALUES (?1, CAST(?2 AS TEXT)), (?1, ''), (?3, 'big')",
        rusqlite::params![i64::MAX, NOT_UTF8[3], note],
    )
    .expect("tags");
    drop(db);
    let before = round_trip(&host, "acme", &token, "notes");
    assert_eq!(rows(&before, "notes__note_tags").len(), 5);
    // The module reads its notes back (without the note whose text is not
    // UTF-8: the host's query results carry text as UTF-8 strings).
    let db = write_db(&host, "acme");
    db.execute(
        "DELETE FROM notes__note_tags WHERE note_id = ?1",
        [i64::MAX],
    )
    .unwrap();
    db.execute("DELETE FROM notes__notes WHERE id = ?1", [i64::MAX])
        .unwrap();
    drop(db);
    let a = host.get("/t/acme/m/notes/notes", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let tagged = a.body["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .find(|n| n["id"] == note)
        .cloned()
        .expect("tagged note");
    assert_eq!(tagged["tags"], json!(["big", "home", "urgent"]), "{tagged}");
}

fn billing_host(modules: &[&str]) -> Host {
    Host::start_on_plans(modules, "2026-03-01T00:00:00Z", &[])
}

#[test]
fn cards_round_trip_keeps_ids_the_autoincrement_counter_and_usage() {
    let host = billing_host(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    for name in ["one", "two", "three"] {
        let a = host.post("/t/acme/m/cards/cards", &token, json!({"name": name}));
        assert_eq!(a.status, 201, "{a:?}");
    }
    // The highest id goes: the counter stays at 3, the rows stop at 2.
    assert_eq!(host.delete("/t/acme/m/cards/cards/3", &token).status, 204);
    let db = write_db(&host, "acme");
    db.execute(
        "UPDATE cards__cards SET name = CAST(?1 AS TEXT) WHERE id = 1",
        rusqlite::params![NOT_UTF8[4]],
    )
    .expect("name");
    drop(db);
    let before = round_trip(&host, "acme", &token, "cards");
    assert_eq!(
        rows(&before, "_souk_usage_counters"),
        &[vec![Seen::Text(b"max_cards".to_vec()), Seen::Integer(2)]]
    );
    assert_eq!(
        rows(&before, "sqlite_sequence"),
        &[vec![Seen::Text(b"cards__cards".to_vec()), Seen::Integer(3)]]
    );
    // A new card gets a new id, never the deleted one's; usage counts on.
    let a = host.post("/t/acme/m/cards/cards", &token, json!({"name": "four"}));
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["id"], 4, "{a:?}");
    assert_eq!(a.body["usage"]["used"], 3, "{a:?}");
}

#[test]
fn sql_console_round_trips_what_it_wrote_itself() {
    let host = Host::start(&["membership", "sql-console"]);
    let token = host.tenant_with("acme", "membership");
    host.install_ok("acme", &token, "sql-console");
    let run = |sql: &str, params: Value| execute(&host, "acme", &token, "sql-console", sql, params);
    run(
        "INSERT INTO notes (id, body) VALUES (?1, CAST(?2 AS TEXT))",
        json!([i64::MAX, [255, 0, 254]]),
    );
    run(
        "INSERT INTO notes (id, body) VALUES (?1, ?2)",
        json!([i64::MIN, ""]),
    );
    run(
        "INSERT INTO notes (id, body) VALUES (?1, ?2)",
        json!([3, [0, 1, 2]]),
    );
    run(
        "INSERT INTO notes (id, body) VALUES (?1, ?2)",
        json!([4, []]),
    );
    run("INSERT INTO notes (id, body) VALUES (5, 9e999)", json!([]));
    run(
        "INSERT INTO notes (id, body) VALUES (?1, ?2)",
        json!([6, "नमस्ते \u{0} \"\\"]),
    );
    let before = round_trip(&host, "acme", &token, "sql-console");
    let notes = rows(&before, "sql_console__notes");
    assert!(notes.contains(&vec![
        Seen::Integer(i64::MAX),
        Seen::Integer(i64::MAX),
        Seen::Text(vec![255, 0, 254])
    ]));
    assert!(notes.contains(&vec![
        Seen::Integer(3),
        Seen::Integer(3),
        Seen::Blob(vec![0, 1, 2])
    ]));
    assert!(notes.contains(&vec![
        Seen::Integer(4),
        Seen::Integer(4),
        Seen::Blob(Vec::new())
    ]));
    // Its dependency stayed installed throughout and is untouched.
    let a = host.get("/t/acme/m/membership/members", &token);
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn legacy_module_round_trips_edge_values_exactly() {
    let host = Host::start(&["legacy-v0_1"]);
    let token = host.tenant_with("acme", "legacy");
    let a = host.request(
        "POST",
        "/t/acme/m/legacy/entries",
        Some(&token),
        Some(b"written by a 0.1.0 module".to_vec()),
    );
    assert!(a.status < 300, "{a:?}");
    let db = write_db(&host, "acme");
    db.execute(
        "INSERT INTO legacy__entries (id, text, tenant) VALUES (?1, CAST(?2 AS TEXT), ''), (?3, x'00', 'नमस्ते')",
        rusqlite::params![i64::MAX, NOT_UTF8[0], i64::MIN],
    )
    .expect("entries");
    drop(db);
    let before = round_trip(&host, "acme", &token, "legacy");
    assert_eq!(rows(&before, "legacy__entries").len(), 3);
}

/// Fills every table of `archive-shapes`: what the module writes itself
/// (foreign keys both ways, through the host's scoped SQL, foreign keys
/// enforced), then every edge value straight into the database file.
fn seed_shapes(host: &Host, tenant: &str, token: &str) {
    let run =
        |sql: &str, params: Value| execute(host, tenant, token, "archive-shapes", sql, params);
    run(
        "INSERT INTO parents (id, name) VALUES (1, 'Asha'), (2, 'Bikram'), (3, 'Chandra')",
        json!([]),
    );
    run(
        "INSERT INTO children (id, parent_id, name) VALUES (10, 1, 'Dev'), (11, 2, 'Esha'), (12, 3, NULL)",
        json!([]),
    );
    run(
        "UPDATE parents SET mentor_id = CASE id WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE 3 END, \
         favourite_child_id = CASE id WHEN 1 THEN 11 WHEN 2 THEN 10 ELSE 12 END",
        json!([]),
    );
    run(
        "INSERT INTO areas (id, width, height, label) VALUES (1, 2.0, 3.5, 'rectangle'), \
         (2, 9e999, 0.5, ''), (3, -0.0, 1e308, NULL), (4, 1e200, 1e200, 'overflow')",
        json!([]),
    );
    run(
        "INSERT INTO edge_values (v, note) VALUES (9e999, 'sql inf'), (-9e999, 'sql -inf'), \
         (-0.0, 'sql -0'), (?1, 'json real'), (?2, 'json subnormal')",
        json!([-1.5e-300, 5e-324]),
    );
    let db = write_db(host, tenant);
    let edge = "INSERT INTO archive_shapes__edge_values (v, note) VALUES (?1, ?2)";
    // Rows removed again below, to leave gaps between the rowids.
    let gap = "INSERT INTO archive_shapes__edge_values (v, note) VALUES (NULL, 'gap')";
    db.execute(gap, []).unwrap();
    for v in [i64::MIN, i64::MAX, 0, -1, 1] {
        db.execute(edge, rusqlite::params![v, "integer"]).unwrap();
    }
    db.execute(gap, []).unwrap();
    db.execute(gap, []).unwrap();
    for v in edge_reals() {
        db.execute(edge, rusqlite::params![v, "real"]).unwrap();
    }
    db.execute(gap, []).unwrap();
    db.execute(edge, rusqlite::params![f64::NAN, "nan"])
        .unwrap();
    for text in ["", "plain", "a\0b", "नमस्ते 🙂", "\"quoted\" \\ \n\r\t\u{1}"] {
        db.execute(edge, rusqlite::params![text, "text"]).unwrap();
    }
    for bytes in NOT_UTF8 {
        db.execute(
            "INSERT INTO archive_shapes__edge_values (v, note) VALUES (CAST(?1 AS TEXT), CAST(?1 AS TEXT))",
            rusqlite::params![bytes],
        )
        .unwrap();
    }
    for blob in [
        Vec::new(),
        vec![0u8],
        (0..=255).collect(),
        vec![0x5a; 3 << 20],
    ] {
        db.execute(edge, rusqlite::params![blob, "blob"]).unwrap();
    }
    db.execute(edge, rusqlite::params![None::<i64>, None::<String>])
        .unwrap();
    db.execute(
        "DELETE FROM archive_shapes__edge_values WHERE note = 'gap'",
        [],
    )
    .unwrap();
    db.execute(
        "INSERT INTO archive_shapes__edge_values (rowid, v, note) VALUES (?1, 'last', 'rowid'), (?2, 'first', 'rowid')",
        rusqlite::params![i64::MAX, i64::MIN],
    )
    .unwrap();
    db.execute(
        "INSERT INTO archive_shapes__keyed (k, v) VALUES ('b', 2), ('a', 1.5), ('', x''), ('c', NULL), (CAST(x'ff' AS TEXT), -0.0)",
        [],
    )
    .unwrap();
    db.execute(
        "INSERT INTO archive_shapes__strict_values (id, i, r, t, b) VALUES (1, ?1, ?2, 'strict', x'010203'), \
         (2, NULL, NULL, NULL, NULL), (3, ?3, ?4, CAST(?5 AS TEXT), x'')",
        rusqlite::params![i64::MIN, -1.5e-300, i64::MAX, f64::NEG_INFINITY, NOT_UTF8[0]],
    )
    .unwrap();
    db.execute(
        "INSERT INTO archive_shapes__counters (label) VALUES ('one'), ('two'), ('three'), ('four'), ('five')",
        [],
    )
    .unwrap();
    db.execute("DELETE FROM archive_shapes__counters WHERE id > 3", [])
        .unwrap();
}

#[test]
fn archive_shapes_round_trip_every_value_and_every_table_shape() {
    let host = Host::start(&["archive-shapes"]);
    let token = host.tenant_with("acme", "archive-shapes");
    seed_shapes(&host, "acme", &token);
    let before = round_trip(&host, "acme", &token, "archive-shapes");

    // What was compared holds what it should.
    let edge = rows(&before, "archive_shapes__edge_values");
    for real in edge_reals() {
        assert!(
            edge.iter().any(|r| r[1] == Seen::Real(real.to_bits())),
            "{real:e} missing"
        );
    }
    for bytes in NOT_UTF8 {
        assert!(edge.iter().any(|r| r[1] == Seen::Text(bytes.to_vec())));
    }
    assert!(edge.iter().any(|r| r[0] == Seen::Integer(i64::MIN)));
    assert!(edge.iter().any(|r| r[0] == Seen::Integer(i64::MAX)));
    assert!(edge.iter().any(|r| r[1] == Seen::Blob(Vec::new())));
    assert!(edge.iter().any(|r| r[1] == Seen::Blob(vec![0x5a; 3 << 20])));
    // SQLite keeps no NaN: it stored NULL, and NULL came back.
    assert!(
        edge.iter()
            .any(|r| r[1] == Seen::Null && r[2] == Seen::Text(b"nan".to_vec()))
    );
    // Generated columns came back recomputed (area = width * height,
    // label_length = length(label)).
    let areas = rows(&before, "archive_shapes__areas");
    assert_eq!(
        areas[0],
        vec![
            Seen::Integer(1),
            Seen::Integer(1),
            Seen::Real(2.0f64.to_bits()),
            Seen::Real(3.5f64.to_bits()),
            Seen::Real(7.0f64.to_bits()),
            Seen::Text(b"rectangle".to_vec()),
            Seen::Integer(9),
        ]
    );
    assert_eq!(areas[3][4], Seen::Real(f64::INFINITY.to_bits()));
    assert_eq!(rows(&before, "archive_shapes__children").len(), 3);
    assert_eq!(rows(&before, "archive_shapes__keyed").len(), 5);

    // The module goes on where it was: foreign keys hold, AUTOINCREMENT
    // continues from the archived counter.
    let run =
        |sql: &str, params: Value| execute(&host, "acme", &token, "archive-shapes", sql, params);
    let done = run("INSERT INTO counters (label) VALUES ('six')", json!([]));
    assert_eq!(done["last_insert_id"], 6, "{done}");
    let a = host.post(
        "/t/acme/m/archive-shapes/execute",
        &token,
        json!({"sql": "INSERT INTO children (id, parent_id) VALUES (99, 42)", "params": []}),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.body["error_kind"], "constraint", "{a:?}");
}

type Tamper = Box<dyn Fn(&mut Vec<String>)>;

fn change(f: impl Fn(&mut Vec<String>) + 'static) -> Tamper {
    Box::new(f)
}

/// Ways to change an archive file, and what the refusal must say.
fn tamperings() -> Vec<(&'static str, Tamper, &'static str)> {
    fn start_of(lines: &[String], table: &str) -> usize {
        lines
            .iter()
            .position(|l| {
                l.starts_with("{\"table\"") && l.contains(&format!("\"name\":\"{table}\""))
            })
            .unwrap_or_else(|| panic!("no table {table}"))
    }
    fn end_of(lines: &[String], table: &str) -> usize {
        let start = start_of(lines, table);
        start
            + lines[start..]
                .iter()
                .position(|l| l.starts_with("{\"end\""))
                .unwrap()
    }
    vec![
        (
            "a value changed",
            change(|l: &mut Vec<String>| {
                let i = start_of(l, "parents") + 1;
                l[i] = l[i].replacen("Asha", "Asho", 1);
            }),
            "table parents does not match its checksum",
        ),
        (
            "a row removed",
            change(|l: &mut Vec<String>| {
                l.remove(start_of(l, "children") + 1);
            }),
            "table children does not match its checksum",
        ),
        (
            "an AUTOINCREMENT counter lowered",
            change(|l: &mut Vec<String>| {
                let i = start_of(l, "counters");
                l[i] = l[i].replace("\"sequence\":5", "\"sequence\":1");
            }),
            "table counters does not match its checksum",
        ),
        (
            "the header changed",
            change(|l: &mut Vec<String>| {
                l[0] = l[0].replace("\"created_at\":\"", "\"created_at\":\"1");
            }),
            "does not match the archive checksum",
        ),
        (
            "a table removed",
            change(|l: &mut Vec<String>| {
                let (s, e) = (start_of(l, "keyed"), end_of(l, "keyed"));
                l.drain(s..=e);
            }),
            "does not match the archive checksum",
        ),
        (
            "the end cut off",
            change(|l: &mut Vec<String>| {
                l.truncate(l.len() - 2);
            }),
            "cut off",
        ),
        (
            "a line that is not an archive line",
            change(|l: &mut Vec<String>| {
                let i = start_of(l, "areas") + 1;
                l.insert(i, "[{\"real\":1.5}]".into());
            }),
            "table areas:",
        ),
    ]
}

#[test]
fn a_changed_archive_is_refused_naming_what_changed_and_nothing_is_written() {
    let host = Host::start(&["archive-shapes"]);
    let token = host.tenant_with("acme", "archive-shapes");
    seed_shapes(&host, "acme", &token);
    let before = snapshot(&host, "acme", "archive-shapes");
    let id = uninstall(&host, "acme", &token, "archive-shapes");
    let file = archive_file(&host, "acme", &id);
    let pristine = std::fs::read_to_string(&file).expect("archive");
    let archives = host.get("/v1/tenants/acme/archives", &token);
    assert_eq!(archives.status, 200, "{archives:?}");

    for (what, tamper, expected) in tamperings() {
        let mut lines: Vec<String> = pristine.lines().map(str::to_owned).collect();
        tamper(&mut lines);
        let mut text = lines.join("\n");
        if what != "the end cut off" {
            text.push('\n');
        } else {
            // Cut in the middle of a line, too.
            text.push_str("\n{\"end\":{\"ro");
        }
        std::fs::write(&file, text).unwrap();
        let a = restore(&host, "acme", &token, "archive-shapes", &id);
        assert_eq!(a.status, 422, "{what}: {a:?}");
        assert_eq!(a.content_type, "application/problem+json", "{what}");
        assert!(a.detail().contains(expected), "{what}: {}", a.detail());
        assert!(a.detail().contains(&id), "{what}: {}", a.detail());
        assert_no_server_path(&host, &a);
        // Nothing was written anywhere.
        assert!(
            !host
                .tenant_tables("acme")
                .iter()
                .any(|t| t.starts_with("archive_shapes__")),
            "{what}: tables were created"
        );
        let installed = host.get("/v1/tenants/acme/modules", &token);
        assert!(
            !installed.body.to_string().contains("archive-shapes"),
            "{what}: {installed:?}"
        );
        let ids = |list: &Value| -> Vec<Value> {
            list.as_array()
                .expect("archives")
                .iter()
                .map(|a| a["id"].clone())
                .collect()
        };
        assert_eq!(
            ids(&host.get("/v1/tenants/acme/archives", &token).body),
            ids(&archives.body),
            "{what}: the archive list changed"
        );
        let audit = host.get("/v1/tenants/acme/audit", &token);
        assert!(
            !audit.body.to_string().contains("\"restore\""),
            "{what}: {audit:?}"
        );
    }

    std::fs::write(&file, &pristine).unwrap();
    let a = restore(&host, "acme", &token, "archive-shapes", &id);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(snapshot(&host, "acme", "archive-shapes"), before);
}

fn v1_value(value: &Seen) -> Value {
    use base64::Engine as _;
    match value {
        Seen::Null => json!("null"),
        Seen::Integer(v) => json!({"integer": v}),
        Seen::Real(bits) => json!({"real": f64::from_bits(*bits)}),
        Seen::Text(bytes) => json!({"text": String::from_utf8(bytes.clone()).expect("utf-8")}),
        Seen::Blob(bytes) => {
            json!({"blob": base64::engine::general_purpose::STANDARD.encode(bytes)})
        }
    }
}

#[test]
fn an_archive_in_the_first_format_still_restores_the_tagged_notes_it_could_not() {
    let host = Host::start(&["notes-v2"]);
    let token = host.tenant_with("acme", "notes");
    let a = host.post(
        "/t/acme/m/notes/notes",
        &token,
        json!({"body": "tagged", "tags": ["urgent"]}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let before = snapshot(&host, "acme", "notes");
    let id = uninstall(&host, "acme", &token, "notes");
    // What the earlier host wrote: one document, tables in name order, so
    // `note_tags` before the `notes` it refers to, every column listed.
    let columns = |table: &str| -> Vec<&str> {
        match table {
            "note_tags" => vec!["note_id", "tag"],
            "notes" => vec!["id", "body"],
            _ => vec!["id", "from_version", "to_version"],
        }
    };
    let tables: Vec<Value> = ["note_tags", "notes", "upgrades"]
        .iter()
        .map(|table| {
            let rows: Vec<Value> = rows(&before, &format!("notes__{table}"))
                .iter()
                // Snapshot rows start with the rowid, which the first
                // format did not keep.
                .map(|row| Value::Array(row[1..].iter().map(v1_value).collect()))
                .collect();
            json!({"name": table, "columns": columns(table), "rows": rows})
        })
        .collect();
    let document = json!({
        "format": "souk-archive/1",
        "tenant": "acme",
        "module": "notes",
        "version": "2.0.0",
        "migrations": ["0001_notes", "0002_tags"],
        "created_at": "2026-01-01T00:00:00Z",
        "tables": tables,
        "usage": {},
    });
    std::fs::write(
        archive_file(&host, "acme", &id),
        serde_json::to_vec_pretty(&document).unwrap(),
    )
    .unwrap();
    let a = restore(&host, "acme", &token, "notes", &id);
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.get("/t/acme/m/notes/notes", &token);
    assert_eq!(a.body["notes"][0]["tags"], json!(["urgent"]), "{a:?}");
    assert_eq!(a.body["notes"][0]["body"], "tagged", "{a:?}");
}

#[test]
fn a_module_with_a_very_long_version_uninstalls_and_no_answer_shows_a_server_path() {
    let host = Host::start(&[]);
    let token = host.tenant("acme");
    // The longest version a manifest may have (64 bytes; longer ones are
    // refused when the package is added). Archive files are named by id,
    // so the version never reaches a file name.
    let version = format!("1.0.0-{}", "x".repeat(58));
    assert_eq!(version.len(), 64);
    let a = host.add_package(package("notes-v1", |m| {
        m.replace("version: 1.0.0", &format!("version: {version}"))
    }));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "notes", "version": version}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post("/t/acme/m/notes/notes", &token, json!({"body": "kept"}));
    assert_eq!(a.status, 201, "{a:?}");

    let id = uninstall(&host, "acme", &token, "notes");
    let listed = host.get("/v1/tenants/acme/archives", &token);
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_no_server_path(&host, &listed);
    let entries = listed.body.as_array().expect("archives");
    assert_eq!(entries.len(), 1, "{listed:?}");
    assert_archive_fields(&entries[0]);
    assert_eq!(entries[0]["id"], id);
    assert_eq!(entries[0]["version"], version);
    assert_eq!(entries[0]["module_slug"], "notes");
    assert_eq!(
        entries[0]["size_bytes"],
        std::fs::metadata(archive_file(&host, "acme", &id))
            .unwrap()
            .len()
    );
    // The operator sees the same, and so does a missing archive's answer.
    assert_eq!(
        host.get("/v1/tenants/acme/archives", &host.operator).body,
        listed.body
    );
    let missing = restore(&host, "acme", &token, "notes", "arc_0000000000000000");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_no_server_path(&host, &missing);

    let a = restore(&host, "acme", &token, "notes", &id);
    assert_eq!(a.status, 201, "{a:?}");
    assert_no_server_path(&host, &a);
    let a = host.get("/t/acme/m/notes/notes", &token);
    assert_eq!(a.body["notes"][0]["body"], "kept", "{a:?}");

    // An archive whose file is gone is reported without a path either.
    let id = uninstall(&host, "acme", &token, "notes");
    std::fs::remove_file(archive_file(&host, "acme", &id)).unwrap();
    let a = restore(&host, "acme", &token, "notes", &id);
    assert_eq!(a.status, 404, "{a:?}");
    assert!(a.detail().contains("file is missing"), "{a:?}");
    assert_no_server_path(&host, &a);
    let listed = host.get("/v1/tenants/acme/archives", &token);
    assert_eq!(listed.body[0]["size_bytes"], Value::Null, "{listed:?}");
}

/// Resident-set figures of a process, from `/proc/<pid>/status`, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// Resets the peak resident set of `pid` (`VmHWM`) to its current size.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
}

#[test]
fn a_hundred_thousand_rows_export_and_restore_in_bounded_memory() {
    const ROWS: i64 = 100_000;
    let host = Host::start(&["archive-shapes"]);
    let token = host.tenant_with("acme", "archive-shapes");
    let mut db = write_db(&host, "acme");
    let tx = db.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO archive_shapes__edge_values (v, note) VALUES (?1, ?2)")
            .unwrap();
        for i in 0..ROWS {
            let v = match i % 5 {
                0 => rusqlite::types::Value::Integer(i * 7_919),
                1 => rusqlite::types::Value::Real(i as f64 * 1.1e-3),
                2 => rusqlite::types::Value::Text(format!("row {i} ✓")),
                3 => rusqlite::types::Value::Blob(vec![(i % 251) as u8; 600]),
                _ => rusqlite::types::Value::Null,
            };
            insert
                .execute(rusqlite::params![v, format!("note {i}")])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    drop(db);
    let before = snapshot(&host, "acme", "archive-shapes");
    let pid = host.pid();

    let rss = memory_kib(pid, "VmRSS:");
    reset_peak(pid);
    let started = Instant::now();
    let id = uninstall(&host, "acme", &token, "archive-shapes");
    let export_time = started.elapsed();
    let export_peak = memory_kib(pid, "VmHWM:");
    let size = std::fs::metadata(archive_file(&host, "acme", &id))
        .unwrap()
        .len();

    let rss_restore = memory_kib(pid, "VmRSS:");
    reset_peak(pid);
    let started = Instant::now();
    let a = restore(&host, "acme", &token, "archive-shapes", &id);
    let restore_time = started.elapsed();
    let restore_peak = memory_kib(pid, "VmHWM:");
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["restored_rows"], ROWS, "{a:?}");
    eprintln!(
        "archive of {ROWS} rows: file {:.1} MiB; uninstall (export) {export_time:.2?}, \
         host RSS {} MiB before, peak {} MiB; restore (check + insert) {restore_time:.2?}, \
         RSS {} MiB before, peak {} MiB",
        size as f64 / 1_048_576.0,
        rss / 1024,
        export_peak / 1024,
        rss_restore / 1024,
        restore_peak / 1024,
    );
    assert_eq!(snapshot(&host, "acme", "archive-shapes"), before);
    // Streaming: the host grows by far less than the archive's size (a
    // reader that held the file, or its rows, would grow by several times it).
    let bound = (size / 1024) / 2;
    assert!(
        export_peak.saturating_sub(rss) < bound,
        "export grew the host by {} KiB for a {} KiB archive",
        export_peak - rss,
        size / 1024
    );
    assert!(
        restore_peak.saturating_sub(rss_restore) < bound,
        "restore grew the host by {} KiB for a {} KiB archive",
        restore_peak - rss_restore,
        size / 1024
    );
}
