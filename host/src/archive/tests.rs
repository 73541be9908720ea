//! Archives against real SQLite files: export, restore into a freshly
//! created schema, and compare what SQLite holds, read independently with
//! rusqlite (storage class and exact bytes of every value, rowids,
//! AUTOINCREMENT counters, usage counters).

use std::path::{Path, PathBuf};

use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;

use super::*;
use crate::clock::{Clock as _, SystemClock};
use crate::control_plane::sqlite_options;

const MODULE: &str = "shapes";
const PREFIX: &str = "shapes__";

/// Foreign keys both ways between `parents` and `children` and from
/// `parents` to itself; virtual and stored generated columns; an untyped
/// column for every kind of value; a rowid table without an INTEGER PRIMARY
/// KEY; a WITHOUT ROWID table; a STRICT table; an AUTOINCREMENT table. In
/// name order `children` comes before `parents`.
const SCHEMA: &[&str] = &[
    r#"CREATE TABLE "shapes__parents" (
        id INTEGER PRIMARY KEY,
        name TEXT,
        mentor_id INTEGER REFERENCES "shapes__parents" (id),
        favourite_child_id INTEGER REFERENCES "shapes__children" (id))"#,
    r#"CREATE TABLE "shapes__children" (
        id INTEGER PRIMARY KEY,
        parent_id INTEGER NOT NULL REFERENCES "shapes__parents" (id),
        name TEXT)"#,
    r#"CREATE TABLE "shapes__areas" (
        id INTEGER PRIMARY KEY,
        width REAL,
        height REAL,
        area REAL GENERATED ALWAYS AS (width * height) VIRTUAL,
        label TEXT,
        label_length INTEGER GENERATED ALWAYS AS (length(label)) STORED)"#,
    r#"CREATE TABLE "shapes__edge_values" (v, note TEXT)"#,
    r#"CREATE TABLE "shapes__keyed" (k TEXT PRIMARY KEY, v) WITHOUT ROWID"#,
    r#"CREATE TABLE "shapes__strict_values" (
        id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, a ANY) STRICT"#,
    r#"CREATE TABLE "shapes__counters" (id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT)"#,
];

/// Bytes that are not UTF-8 (a lone continuation byte, a NUL, an
/// overlong encoding, a surrogate).
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

struct Fixture {
    dir: tempfile::TempDir,
    control: ControlPlane,
    tenant: Tenant,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = ControlPlane::in_memory().await.expect("control plane");
        let tenant = Tenant {
            id: "ten_0123456789abcdef".into(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: rfc3339(SystemClock.now()),
        };
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES (?, ?, ?, ?)")
            .bind(&tenant.id)
            .bind(&tenant.slug)
            .bind(&tenant.name)
            .bind(&tenant.created_at)
            .execute(control.pool())
            .await
            .expect("tenant");
        Fixture {
            dir,
            control,
            tenant,
        }
    }

    fn archives(&self) -> PathBuf {
        self.dir.path().join("archives")
    }

    /// A tenant database file with the host's usage tables and [`SCHEMA`].
    async fn database(&self, name: &str) -> (SqlitePool, PathBuf) {
        let path = self.dir.path().join(format!("{name}.sqlite"));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(sqlite_options(&path))
            .await
            .expect("tenant db");
        crate::tenant_migrations::migrate(&pool)
            .await
            .expect("usage tables");
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await.expect("schema");
        }
        (pool, path)
    }

    async fn export(&self, pool: &SqlitePool) -> ArchiveInfo {
        let mut tx = pool.begin().await.expect("begin");
        let info = export(
            &self.control,
            &self.archives(),
            &mut tx,
            &self.tenant,
            MODULE,
            "1.0.0",
            PREFIX,
            vec!["0001_shapes".into()],
            SystemClock.now(),
        )
        .await
        .expect("export");
        tx.commit().await.expect("commit");
        info
    }

    /// Loads and restores archive `id` into `pool`, committing on success.
    async fn restore(&self, pool: &SqlitePool, id: &str) -> Result<u64, SoukError> {
        let archive = load(&self.control, &self.tenant, id).await?;
        let mut tx = pool.begin().await.expect("begin");
        let rows = restore(&mut tx, PREFIX, archive).await?;
        tx.commit().await.expect("commit");
        Ok(rows)
    }

    /// Records a file written by hand as an archive of the tenant.
    async fn record(&self, id: &str, path: &Path) {
        sqlx::query(
            "INSERT INTO archives (id, tenant_id, module_slug, version, path, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&self.tenant.id)
        .bind(MODULE)
        .bind("1.0.0")
        .bind(path.to_string_lossy().into_owned())
        .bind(rfc3339(SystemClock.now()))
        .execute(self.control.pool())
        .await
        .expect("record archive");
    }
}

async fn exec(pool: &SqlitePool, sql: &str) {
    sqlx::query(sql).execute(pool).await.expect(sql);
}

/// Writes every shape of data [`SCHEMA`] can hold.
async fn seed(pool: &SqlitePool) {
    // Both ways and to itself: parent 1 and 2 mentor each other, 3 is its
    // own mentor; parents point at a favourite child, children at parents.
    exec(
        pool,
        r#"INSERT INTO "shapes__parents" (id, name) VALUES (1, 'Asha'), (2, 'Bikram'), (3, 'Chandra')"#,
    )
    .await;
    exec(
        pool,
        r#"INSERT INTO "shapes__children" (id, parent_id, name) VALUES (10, 1, 'Dev'), (11, 2, 'Esha'), (12, 3, NULL)"#,
    )
    .await;
    exec(
        pool,
        r#"UPDATE "shapes__parents" SET mentor_id = CASE id WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE 3 END,
           favourite_child_id = CASE id WHEN 1 THEN 11 WHEN 2 THEN 10 ELSE 12 END"#,
    )
    .await;
    for (i, (w, h, label)) in [
        (2.0, 3.5, Some("rectangle")),
        (f64::INFINITY, 0.5, Some("")),
        (-0.0, 1e308, None),
        (1e200, 1e200, Some("overflowing area")),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            r#"INSERT INTO "shapes__areas" (id, width, height, label) VALUES (?, ?, ?, ?)"#,
        )
        .bind(i as i64 + 1)
        .bind(w)
        .bind(h)
        .bind(label)
        .execute(pool)
        .await
        .expect("areas");
    }

    let edge = r#"INSERT INTO "shapes__edge_values" (v, note) VALUES (?, ?)"#;
    // Rows removed again below, to leave gaps between the rowids.
    let gap = r#"INSERT INTO "shapes__edge_values" (v, note) VALUES (NULL, 'gap')"#;
    exec(pool, gap).await;
    for v in [i64::MIN, i64::MAX, 0, -1, 1] {
        sqlx::query(edge)
            .bind(v)
            .bind("integer")
            .execute(pool)
            .await
            .unwrap();
    }
    exec(pool, gap).await;
    exec(pool, gap).await;
    for v in edge_reals() {
        sqlx::query(edge)
            .bind(v)
            .bind("real")
            .execute(pool)
            .await
            .unwrap();
    }
    exec(pool, gap).await;
    // SQLite cannot store a NaN: it becomes NULL as it is bound.
    sqlx::query(edge)
        .bind(f64::NAN)
        .bind("nan")
        .execute(pool)
        .await
        .unwrap();
    for text in ["", "plain", "a\0b", "नमस्ते 🙂", "\"quoted\" \\ \n\r\t\u{1}"] {
        sqlx::query(edge)
            .bind(text)
            .bind("text")
            .execute(pool)
            .await
            .unwrap();
    }
    for bytes in NOT_UTF8 {
        sqlx::query(r#"INSERT INTO "shapes__edge_values" (v, note) VALUES (CAST(? AS TEXT), CAST(? AS TEXT))"#)
            .bind(bytes.to_vec())
            .bind(bytes.to_vec())
            .execute(pool)
            .await
            .unwrap();
    }
    for blob in [
        Vec::new(),
        vec![0u8],
        (0..=255).collect(),
        vec![0x5a; 3 << 20],
    ] {
        sqlx::query(edge)
            .bind(blob)
            .bind("blob")
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query(edge)
        .bind(Option::<i64>::None)
        .bind(Option::<String>::None)
        .execute(pool)
        .await
        .unwrap();
    // Rowids with gaps and at both ends of the range.
    exec(
        pool,
        r#"DELETE FROM "shapes__edge_values" WHERE note = 'gap'"#,
    )
    .await;
    sqlx::query(r#"INSERT INTO "shapes__edge_values" (rowid, v, note) VALUES (?, 'last', 'rowid'), (?, 'first', 'rowid')"#)
        .bind(i64::MAX)
        .bind(i64::MIN)
        .execute(pool)
        .await
        .unwrap();

    exec(
        pool,
        r#"INSERT INTO "shapes__keyed" (k, v) VALUES ('b', 2), ('a', 1.5), ('', x''), ('c', NULL)"#,
    )
    .await;
    sqlx::query(r#"INSERT INTO "shapes__strict_values" (id, i, r, t, b, a) VALUES (?, ?, ?, ?, ?, ?), (2, NULL, NULL, NULL, NULL, NULL)"#)
        .bind(1i64)
        .bind(i64::MIN)
        .bind(-1.5e-300)
        .bind("strict")
        .bind(vec![1u8, 2, 3])
        .bind(f64::NEG_INFINITY)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(r#"INSERT INTO "shapes__strict_values" (id, t, a) VALUES (3, CAST(? AS TEXT), CAST(? AS TEXT))"#)
        .bind(NOT_UTF8[0].to_vec())
        .bind(NOT_UTF8[1].to_vec())
        .execute(pool)
        .await
        .unwrap();
    // The counter stays at 5 after the last two rows are gone.
    exec(
        pool,
        r#"INSERT INTO "shapes__counters" (label) VALUES ('one'), ('two'), ('three'), ('four'), ('five')"#,
    )
    .await;
    exec(pool, r#"DELETE FROM "shapes__counters" WHERE id > 3"#).await;
    exec(
        pool,
        "INSERT INTO _souk_usage_counters (module, key, used) VALUES ('shapes', 'max_things', 3), ('other', 'max_things', 9)",
    )
    .await;
}

/// A value as rusqlite reads it, with doubles as bits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Null,
    Integer(i64),
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// Everything of the module in a tenant database file: each table's rows
/// (rowid first where there is one, generated columns included), the
/// AUTOINCREMENT counters and the module's usage counters.
fn snapshot(path: &Path) -> Vec<(String, Vec<Vec<Seen>>)> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'shapes\\_\\_%' ESCAPE '\\' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    let read = |sql: &str| -> Vec<Vec<Seen>> {
        let mut stmt = db.prepare(sql).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<Vec<Seen>> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => Seen::Null,
                        rusqlite::types::ValueRef::Integer(v) => Seen::Integer(v),
                        rusqlite::types::ValueRef::Real(v) => Seen::Real(v.to_bits()),
                        rusqlite::types::ValueRef::Text(v) => Seen::Text(v.to_vec()),
                        rusqlite::types::ValueRef::Blob(v) => Seen::Blob(v.to_vec()),
                    })
                    .collect())
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        rows
    };
    for table in tables {
        let with_rowid = db
            .prepare(&format!("SELECT _rowid_, * FROM \"{table}\""))
            .is_ok();
        let sql = if with_rowid {
            format!("SELECT _rowid_, * FROM \"{table}\"")
        } else {
            format!("SELECT * FROM \"{table}\"")
        };
        out.push((table, read(&sql)));
    }
    let has_sequence = db.prepare("SELECT 1 FROM sqlite_sequence").is_ok();
    if has_sequence {
        out.push((
            "sqlite_sequence".into(),
            read(
                "SELECT name, seq FROM sqlite_sequence WHERE name LIKE 'shapes\\_\\_%' ESCAPE '\\'",
            ),
        ));
    }
    out.push((
        "_souk_usage_counters".into(),
        read("SELECT key, used FROM _souk_usage_counters WHERE module = 'shapes'"),
    ));
    out
}

fn rows_of<'a>(snapshot: &'a [(String, Vec<Vec<Seen>>)], table: &str) -> &'a [Vec<Seen>] {
    &snapshot
        .iter()
        .find(|(t, _)| t == table)
        .unwrap_or_else(|| panic!("no table {table}"))
        .1
}

fn module_rows(path: &Path) -> usize {
    snapshot(path)
        .iter()
        .filter(|(t, _)| t.starts_with(PREFIX) || t == "_souk_usage_counters")
        .map(|(_, rows)| rows.len())
        .sum()
}

#[tokio::test]
async fn export_then_restore_gives_back_every_value_rowid_and_counter_exactly() {
    let fx = Fixture::new().await;
    let (source, source_path) = fx.database("source").await;
    seed(&source).await;
    let before = snapshot(&source_path);

    // The seed holds what it should: the test is not comparing nothing.
    let edge = rows_of(&before, "shapes__edge_values");
    for real in edge_reals() {
        assert!(
            edge.iter().any(|r| r[1] == Seen::Real(real.to_bits())),
            "seed lacks {real:e}"
        );
    }
    for bytes in NOT_UTF8 {
        assert!(edge.iter().any(|r| r[1] == Seen::Text(bytes.to_vec())));
    }
    assert!(edge.iter().any(|r| r[0] == Seen::Integer(i64::MIN)));
    assert!(edge.iter().any(|r| r[1] == Seen::Blob(vec![0x5a; 3 << 20])));
    assert!(
        edge.iter()
            .any(|r| r[1] == Seen::Null && r[2] == Seen::Text(b"nan".to_vec())),
        "a NaN is stored as NULL"
    );

    let info = fx.export(&source).await;
    let file = fx
        .archives()
        .join(&fx.tenant.id)
        .join(format!("{}.jsonl", info.id));
    assert_eq!(info.path, file.to_string_lossy());
    assert_eq!(
        info.size_bytes,
        Some(std::fs::metadata(&file).unwrap().len())
    );
    let text = String::from_utf8(std::fs::read(&file).unwrap()).expect("an archive is UTF-8");
    assert!(
        text.starts_with("{\"format\":\"souk-archive/2\""),
        "{}",
        &text[..80]
    );
    assert!(
        text.contains(&format!(
            "{{\"real\":\"{:016x}\"}}",
            (-1.5e-300f64).to_bits()
        )),
        "-1.5e-300 is written as its bits"
    );
    assert!(
        !text.contains("\"area\""),
        "generated columns are not archived"
    );
    assert!(!text.contains("\"label_length\""));

    let (target, target_path) = fx.database("target").await;
    let rows = fx.restore(&target, &info.id).await.expect("restore");
    let after = snapshot(&target_path);
    assert_eq!(before, after);
    let total: usize = before
        .iter()
        .filter(|(t, _)| t.starts_with(PREFIX))
        .map(|(_, r)| r.len())
        .sum();
    assert_eq!(rows, total as u64);

    // AUTOINCREMENT goes on from the archived counter, not from the rows.
    let next: i64 =
        sqlx::query_scalar(r#"INSERT INTO "shapes__counters" (label) VALUES ('six') RETURNING id"#)
            .fetch_one(&target)
            .await
            .unwrap();
    assert_eq!(next, 6);

    // Exporting what was restored writes the same tables, line for line.
    let again = fx.export(&target).await;
    let again_text = std::fs::read_to_string(
        fx.archives()
            .join(&fx.tenant.id)
            .join(format!("{}.jsonl", again.id)),
    )
    .unwrap();
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    let counters_start = |t: &str| {
        t.lines()
            .find(|l| l.contains("\"name\":\"counters\""))
            .map(str::to_owned)
    };
    assert_ne!(counters_start(&text), None);
    // Only the counters table changed (the row `six`).
    let without_counters = |t: &str| {
        let mut keep = true;
        let mut out = Vec::new();
        for line in t.lines().skip(1) {
            if line.contains("\"name\":\"counters\"") {
                keep = false;
            }
            if keep && !line.contains("archive_end") {
                out.push(line.to_owned());
            }
            if line.starts_with("{\"end\"") {
                keep = true;
            }
        }
        out
    };
    assert_eq!(without_counters(&text), without_counters(&again_text));
    assert_ne!(body(&text), body(&again_text));
}

#[tokio::test]
async fn restoring_with_name_order_and_foreign_keys_on_would_fail_but_this_does_not() {
    // The cause of the old failure, shown on the same schema: children
    // first, with foreign keys enforced at once, is refused by SQLite.
    let fx = Fixture::new().await;
    let (pool, _) = fx.database("plain").await;
    let refused = sqlx::query(
        r#"INSERT INTO "shapes__children" (id, parent_id, name) VALUES (10, 1, 'Dev')"#,
    )
    .execute(&pool)
    .await;
    assert!(refused.is_err(), "foreign keys are on in tenant databases");

    let (source, _) = fx.database("source").await;
    seed(&source).await;
    let info = fx.export(&source).await;
    let (target, target_path) = fx.database("target").await;
    fx.restore(&target, &info.id).await.expect("restore");
    assert_eq!(
        rows_of(&snapshot(&target_path), "shapes__children").len(),
        3
    );
}

/// Splits a file into lines (each without its `\n`).
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The index of the line opening table `name`'s block.
fn block_start(lines: &[String], name: &str) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with("{\"table\"") && l.contains(&format!("\"name\":\"{name}\"")))
        .unwrap_or_else(|| panic!("no block for {name}"))
}

fn block_end(lines: &[String], name: &str) -> usize {
    let start = block_start(lines, name);
    start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with("{\"end\""))
            .unwrap()
}

type Tamper = Box<dyn Fn(&mut Vec<String>)>;

fn change(f: impl Fn(&mut Vec<String>) + 'static) -> Tamper {
    Box::new(f)
}

/// Ways to change a good archive, each with what the refusal must name.
fn tamperings() -> Vec<(&'static str, Tamper, &'static str)> {
    vec![
        (
            "a value changed",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "parents") + 1;
                l[i] = l[i].replacen("Asha", "Asho", 1);
            }),
            "table parents does not match its checksum",
        ),
        (
            "a real's bits changed",
            change(|l: &mut Vec<String>| {
                let bits = format!("{:016x}", (-1.5e-300f64).to_bits());
                let mut other = bits.clone();
                other.replace_range(15..16, if bits.ends_with('0') { "1" } else { "0" });
                let i = l.iter().position(|x| x.contains(&bits)).unwrap();
                l[i] = l[i].replace(&bits, &other);
            }),
            "table edge_values does not match its checksum",
        ),
        (
            "text changed to bytes of the same text",
            change(|l: &mut Vec<String>| {
                let i = l.iter().position(|x| x.contains("\"Dev\"")).unwrap();
                l[i] = l[i].replace("\"Dev\"", "{\"text_bytes\":\"RGV3\"}");
            }),
            "table children does not match its checksum",
        ),
        (
            "a row removed",
            change(|l: &mut Vec<String>| {
                l.remove(block_start(l, "children") + 1);
            }),
            "table children does not match its checksum",
        ),
        (
            "a row duplicated",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "parents") + 1;
                let row = l[i].clone();
                l.insert(i, row);
            }),
            "table parents does not match its checksum",
        ),
        (
            "two rows swapped",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "edge_values") + 1;
                l.swap(i, i + 1);
            }),
            "table edge_values does not match its checksum",
        ),
        (
            "a column renamed",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "areas");
                l[i] = l[i].replace("\"label\"", "\"labex\"");
            }),
            "table areas does not match its checksum",
        ),
        (
            "an AUTOINCREMENT counter lowered",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "counters");
                l[i] = l[i].replace("\"sequence\":5", "\"sequence\":3");
            }),
            "table counters does not match its checksum",
        ),
        (
            "a row count changed",
            change(|l: &mut Vec<String>| {
                let i = block_end(l, "keyed");
                l[i] = l[i].replace("\"rows\":4", "\"rows\":3");
            }),
            "table keyed does not match its checksum",
        ),
        (
            "a checksum replaced",
            change(|l: &mut Vec<String>| {
                let i = block_end(l, "strict_values");
                let at = l[i].find("\"sha256\":\"").unwrap() + 10;
                let flipped = if &l[i][at..at + 1] == "0" { "1" } else { "0" };
                l[i].replace_range(at..at + 1, flipped);
            }),
            "table strict_values does not match its checksum",
        ),
        (
            "a usage counter lowered in the header",
            change(|l: &mut Vec<String>| {
                l[0] = l[0].replace("\"max_things\":3", "\"max_things\":0");
            }),
            "archive checksum",
        ),
        (
            "the version changed in the header",
            change(|l: &mut Vec<String>| {
                l[0] = l[0].replace("\"version\":\"1.0.0\"", "\"version\":\"1.0.1\"");
            }),
            "archive checksum",
        ),
        (
            "a whole table removed",
            change(|l: &mut Vec<String>| {
                let (start, end) = (block_start(l, "keyed"), block_end(l, "keyed"));
                l.drain(start..=end);
            }),
            "archive checksum",
        ),
        (
            "two tables swapped",
            change(|l: &mut Vec<String>| {
                let (a0, a1) = (block_start(l, "areas"), block_end(l, "areas"));
                let block: Vec<String> = l.drain(a0..=a1).collect();
                let after = block_end(l, "keyed") + 1;
                for (k, line) in block.into_iter().enumerate() {
                    l.insert(after + k, line);
                }
            }),
            "archive checksum",
        ),
        (
            "the end line removed",
            change(|l: &mut Vec<String>| {
                l.pop();
            }),
            "cut off",
        ),
        (
            "a line after the end",
            change(|l: &mut Vec<String>| {
                l.push("[1]".into());
            }),
            "lines follow the archive's end line",
        ),
        (
            "a real as a bare number",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "areas") + 1;
                l[i] = l[i].replacen(
                    &format!("{{\"real\":\"{:016x}\"}}", 2.0f64.to_bits()),
                    "2.0",
                    1,
                );
            }),
            "table areas: bare number",
        ),
        (
            "a row of the wrong length",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "keyed") + 1;
                l[i] = "[\"z\"]".into();
            }),
            "table keyed: a row has 1 values where 2 belong",
        ),
        (
            "a line that is not JSON",
            change(|l: &mut Vec<String>| {
                let i = block_start(l, "children") + 1;
                l.insert(i, "{not json".into());
            }),
            "is damaged: line",
        ),
        (
            "an unknown format",
            change(|l: &mut Vec<String>| {
                l[0] = l[0].replace("souk-archive/2", "souk-archive/9");
            }),
            "has format \"souk-archive/9\"",
        ),
        (
            "an empty file",
            change(|l: &mut Vec<String>| {
                l.clear();
            }),
            "is damaged",
        ),
    ]
}

#[tokio::test]
async fn a_changed_archive_is_refused_naming_what_changed_and_restores_nothing() {
    let fx = Fixture::new().await;
    let (source, _) = fx.database("source").await;
    seed(&source).await;
    let info = fx.export(&source).await;
    let path = PathBuf::from(&info.path);
    let pristine = std::fs::read(&path).unwrap();
    let (target, target_path) = fx.database("target").await;
    let server_dir = fx.dir.path().to_string_lossy().into_owned();

    for (what, tamper, expected) in tamperings() {
        let mut lines = file_lines(&path);
        tamper(&mut lines);
        if lines.is_empty() {
            std::fs::write(&path, b"").unwrap();
        } else {
            write_lines(&path, &lines);
        }
        // Refused when loaded: before an install would run anything.
        let refusal = match load(&fx.control, &fx.tenant, &info.id).await {
            Ok(_) => panic!("{what}: accepted"),
            Err(SoukError::Invalid(message)) => message,
            Err(other) => panic!("{what}: {other:?}"),
        };
        assert!(refusal.contains(expected), "{what}: {refusal}");
        assert!(refusal.contains(&info.id), "{what}: {refusal}");
        assert!(!refusal.contains(&server_dir), "{what}: {refusal}");
        std::fs::write(&path, &pristine).unwrap();
    }

    // Changed between the load and the restore: the restore notices it
    // while it reads, and rolling back leaves nothing.
    for (what, tamper, expected) in tamperings() {
        if expected.contains("format") || what == "an empty file" {
            continue;
        }
        let archive = load(&fx.control, &fx.tenant, &info.id).await.expect("load");
        let mut lines = file_lines(&path);
        tamper(&mut lines);
        write_lines(&path, &lines);
        let mut tx = target.begin().await.unwrap();
        let result = restore(&mut tx, PREFIX, archive).await;
        tx.rollback().await.unwrap();
        match result {
            Err(SoukError::Invalid(message)) => {
                // A header change is noticed as such before any row.
                assert!(
                    message.contains(expected) || message.contains("header changed"),
                    "{what}: {message}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(module_rows(&target_path), 0, "{what}: rows were kept");
        std::fs::write(&path, &pristine).unwrap();
    }

    // The pristine file still restores.
    fx.restore(&target, &info.id)
        .await
        .expect("pristine restore");
    assert!(module_rows(&target_path) > 0);
}

/// Writes an archive file with correct checksums around whatever
/// `tables` hold, so the checks after the checksums can be reached.
async fn forge(path: &Path, tables: Vec<(TableStart, Vec<Vec<StoredValue>>)>) {
    let header = Header {
        format: FORMAT.into(),
        tenant: "acme".into(),
        module: MODULE.into(),
        version: "1.0.0".into(),
        migrations: vec!["0001_shapes".into()],
        created_at: rfc3339(SystemClock.now()),
        usage: [("max_things".to_owned(), 7u64)].into_iter().collect(),
        files: Vec::new(),
    };
    let file = tokio::fs::File::create(path).await.unwrap();
    let mut out = LineWriter::new(file);
    out.write(&header).await.unwrap();
    let mut digest = ArchiveDigest::new(&header).unwrap();
    for (start, rows) in tables {
        out.write(&Marker::Table(start.clone())).await.unwrap();
        let mut table = TableDigest::new(&start);
        for row in rows {
            table.row(&row);
            out.write(&row).await.unwrap();
        }
        let rows = table.rows();
        let sha256 = table.finish();
        digest.table(&start.name, &sha256);
        out.write(&Marker::End(TableEnd { rows, sha256 }))
            .await
            .unwrap();
    }
    out.write(&Marker::ArchiveEnd(ArchiveEnd {
        tables: digest.tables(),
        sha256: digest.finish(),
    }))
    .await
    .unwrap();
    out.finish().await.unwrap();
}

fn start(name: &str, columns: &[&str], rowid: Option<&str>) -> TableStart {
    TableStart {
        name: name.into(),
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rowid: rowid.map(str::to_owned),
        sequence: None,
    }
}

fn int(v: i64) -> StoredValue {
    StoredValue::Integer(v)
}

fn text(v: &str) -> StoredValue {
    StoredValue::Text(v.as_bytes().to_vec())
}

/// What is tried, the tables of a forged archive, what the refusal says.
type Case = (
    &'static str,
    Vec<(TableStart, Vec<Vec<StoredValue>>)>,
    &'static str,
);

#[tokio::test]
async fn an_archive_that_does_not_fit_the_schema_is_refused_and_restores_nothing() {
    let parents = || {
        start(
            "parents",
            &["id", "name", "mentor_id", "favourite_child_id"],
            Some("rowid"),
        )
    };
    let parent_row = || {
        vec![
            int(1),
            int(1),
            text("Asha"),
            StoredValue::Null,
            StoredValue::Null,
        ]
    };
    let cases: Vec<Case> = vec![
        (
            "a table the module does not have",
            vec![(
                start("ghosts", &["id"], Some("rowid")),
                vec![vec![int(1), int(1)]],
            )],
            "table ghosts does not fit the installed schema: the installed version has no such table",
        ),
        (
            "a table name that is not one",
            vec![(start("Bad Name!", &["name"], None), vec![])],
            "table Bad Name! does not fit the installed schema: not a table name",
        ),
        (
            "a table of the database itself",
            vec![(start("sqlite_master", &["name"], None), vec![])],
            "table sqlite_master does not fit the installed schema: the installed version has no such table",
        ),
        (
            "a column the table does not have",
            vec![(
                start("parents", &["id", "nickname"], Some("rowid")),
                vec![vec![int(1), int(1), text("A")]],
            )],
            "table parents does not fit the installed schema: the installed table has no column \"nickname\"",
        ),
        (
            "a generated column",
            vec![(
                start("areas", &["id", "width", "height", "area"], Some("rowid")),
                vec![vec![
                    int(1),
                    int(1),
                    StoredValue::real(1.0),
                    StoredValue::real(1.0),
                    StoredValue::real(1.0),
                ]],
            )],
            "table areas does not fit the installed schema: column \"area\" is generated",
        ),
        (
            "a column named twice",
            vec![(start("keyed", &["k", "K"], None), vec![])],
            "table keyed names column \"K\" twice",
        ),
        (
            "rowids for a table without rowid",
            vec![(
                start("keyed", &["k", "v"], Some("rowid")),
                vec![vec![int(1), text("a"), int(1)]],
            )],
            "table keyed does not fit the installed schema: its rows carry rowids",
        ),
        (
            "a rowid alias that is not one",
            vec![(
                start("parents", &["id"], Some("name")),
                vec![vec![int(1), int(1)]],
            )],
            "table parents does not fit the installed schema: its rows carry rowids as \"name\"",
        ),
        (
            "a table twice",
            vec![(parents(), vec![parent_row()]), (parents(), vec![])],
            "table parents appears twice",
        ),
        (
            "a NaN",
            vec![(
                start("edge_values", &["v", "note"], Some("rowid")),
                vec![vec![
                    int(1),
                    StoredValue::Real(0x7ff8_0000_0000_0000),
                    text("nan"),
                ]],
            )],
            "table edge_values, row 1: it holds a NaN real",
        ),
        (
            "a NULL where NOT NULL",
            vec![(
                start("children", &["id", "parent_id", "name"], Some("rowid")),
                vec![vec![int(1), int(1), StoredValue::Null, text("x")]],
            )],
            "table children, row 1: constraint violated",
        ),
        (
            "a value a STRICT column refuses",
            vec![(
                start("strict_values", &["id", "i"], Some("rowid")),
                vec![vec![int(1), int(1), text("not an integer")]],
            )],
            "table strict_values, row 1:",
        ),
        (
            "a duplicate key",
            vec![(parents(), vec![parent_row(), parent_row()])],
            "table parents, row 2:",
        ),
        (
            "a duplicate key deep in a batch",
            vec![(
                parents(),
                (1..=250)
                    .map(|i| {
                        let id = if i == 137 { 5 } else { i };
                        vec![
                            int(id),
                            int(id),
                            text("P"),
                            StoredValue::Null,
                            StoredValue::Null,
                        ]
                    })
                    .collect(),
            )],
            "table parents, row 137:",
        ),
        (
            "a reference to a row the archive lacks",
            vec![
                (parents(), vec![parent_row()]),
                (
                    start("children", &["id", "parent_id", "name"], Some("rowid")),
                    vec![vec![int(10), int(10), int(99), text("orphan")]],
                ),
            ],
            "table children refers to rows of parents that the archive does not hold",
        ),
        (
            "a self-reference to a missing row",
            vec![(
                parents(),
                vec![vec![int(1), int(1), text("A"), int(42), StoredValue::Null]],
            )],
            "table parents refers to rows of parents",
        ),
    ];
    let fx = Fixture::new().await;
    for (n, (what, tables, expected)) in cases.into_iter().enumerate() {
        let (target, target_path) = fx.database(&format!("target-{n}")).await;
        let path = fx.dir.path().join(format!("forged-{n}.jsonl"));
        forge(&path, tables).await;
        let id = format!("arc_forged{n:06}");
        fx.record(&id, &path).await;
        match fx.restore(&target, &id).await {
            Err(SoukError::Invalid(message)) => {
                assert!(message.contains(expected), "{what}: {message}");
                assert!(message.contains(&id), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(module_rows(&target_path), 0, "{what}: something was kept");
    }
}

#[tokio::test]
async fn rows_a_migration_seeded_give_way_to_the_archived_ones() {
    let fx = Fixture::new().await;
    let (source, _) = fx.database("source").await;
    exec(
        &source,
        r#"INSERT INTO "shapes__keyed" (k, v) VALUES ('setting', 'archived')"#,
    )
    .await;
    let info = fx.export(&source).await;
    let (target, target_path) = fx.database("target").await;
    exec(
        &target,
        r#"INSERT INTO "shapes__keyed" (k, v) VALUES ('setting', 'seeded'), ('other', 'seeded')"#,
    )
    .await;
    fx.restore(&target, &info.id).await.expect("restore");
    assert_eq!(
        rows_of(&snapshot(&target_path), "shapes__keyed"),
        &[vec![
            Seen::Text(b"setting".to_vec()),
            Seen::Text(b"archived".to_vec())
        ]]
    );
}

/// What the host before `souk-archive/2` wrote for the same data: tables
/// in name order (children before parents), generated columns included,
/// an infinite real as `null`.
const VERSION_ONE: &str = r#"{
  "format": "souk-archive/1",
  "tenant": "acme",
  "module": "shapes",
  "version": "1.0.0",
  "migrations": ["0001_shapes"],
  "created_at": "2026-01-01T00:00:00Z",
  "tables": [
    {"name": "areas", "columns": ["id", "width", "height", "area", "label", "label_length"],
     "rows": [[{"integer": 1}, {"real": 2.0}, {"real": 3.5}, {"real": 7.0}, {"text": "rectangle"}, {"integer": 9}],
              [{"integer": 2}, {"real": null}, {"real": 0.5}, {"real": null}, {"text": ""}, {"integer": 0}]]},
    {"name": "children", "columns": ["id", "parent_id", "name"],
     "rows": [[{"integer": 10}, {"integer": 1}, {"text": "Dev"}]]},
    {"name": "edge_values", "columns": ["v", "note"],
     "rows": [[{"blob": "AAE="}, {"text": "blob"}], ["null", {"text": "null"}]]},
    {"name": "parents", "columns": ["id", "name", "mentor_id", "favourite_child_id"],
     "rows": [[{"integer": 1}, {"text": "Asha"}, {"integer": 1}, {"integer": 10}]]}
  ],
  "usage": {"max_things": 2}
}"#;

#[tokio::test]
async fn archives_in_the_first_format_still_restore_in_any_table_order() {
    let fx = Fixture::new().await;
    let compact: serde_json::Value = serde_json::from_str(VERSION_ONE).unwrap();
    for (n, text) in [VERSION_ONE.to_owned(), compact.to_string()]
        .into_iter()
        .enumerate()
    {
        let path = fx.dir.path().join(format!("acme-shapes-1.0.0-{n}.json"));
        std::fs::write(&path, text).unwrap();
        let id = format!("arc_v1{n:010}");
        fx.record(&id, &path).await;
        let archive = load(&fx.control, &fx.tenant, &id).await.expect("load");
        assert_eq!(archive.header.format, FORMAT_V1);
        assert_eq!(archive.header.version, "1.0.0");
        let (target, target_path) = fx.database(&format!("target-{n}")).await;
        let mut tx = target.begin().await.unwrap();
        let rows = restore(&mut tx, PREFIX, archive).await.expect("restore");
        tx.commit().await.unwrap();
        assert_eq!(rows, 6);
        let after = snapshot(&target_path);
        // Generated columns are recomputed (area of the second row: NULL
        // width, whatever the archive said).
        assert_eq!(
            rows_of(&after, "shapes__areas"),
            &[
                vec![
                    Seen::Integer(1),
                    Seen::Integer(1),
                    Seen::Real(2.0f64.to_bits()),
                    Seen::Real(3.5f64.to_bits()),
                    Seen::Real(7.0f64.to_bits()),
                    Seen::Text(b"rectangle".to_vec()),
                    Seen::Integer(9),
                ],
                vec![
                    Seen::Integer(2),
                    Seen::Integer(2),
                    Seen::Null,
                    Seen::Real(0.5f64.to_bits()),
                    Seen::Null,
                    Seen::Text(Vec::new()),
                    Seen::Integer(0),
                ],
            ]
        );
        assert_eq!(rows_of(&after, "shapes__children").len(), 1);
        assert_eq!(
            rows_of(&after, "shapes__edge_values"),
            &[
                vec![
                    Seen::Integer(1),
                    Seen::Blob(vec![0, 1]),
                    Seen::Text(b"blob".to_vec())
                ],
                vec![Seen::Integer(2), Seen::Null, Seen::Text(b"null".to_vec())],
            ]
        );
        assert_eq!(
            rows_of(&after, "_souk_usage_counters"),
            &[vec![Seen::Text(b"max_things".to_vec()), Seen::Integer(2)]]
        );
    }
}

#[tokio::test]
async fn listed_archives_give_id_size_module_version_and_time_but_no_path() {
    let fx = Fixture::new().await;
    let (source, _) = fx.database("source").await;
    seed(&source).await;
    let first = fx.export(&source).await;
    let second = fx.export(&source).await;
    let listed = list(&fx.control, &fx.tenant).await.expect("list");
    assert_eq!(listed.len(), 2);
    let json = serde_json::to_value(&listed).unwrap();
    let server_dir = fx.dir.path().to_string_lossy().into_owned();
    for (entry, info) in json.as_array().unwrap().iter().zip(&listed) {
        let mut keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["created_at", "id", "module_slug", "size_bytes", "version"]
        );
        assert!(!entry.to_string().contains(&server_dir), "{entry}");
        assert!(!entry.to_string().contains(".jsonl"), "{entry}");
        assert_eq!(entry["module_slug"], MODULE);
        assert_eq!(
            entry["size_bytes"],
            std::fs::metadata(&info.path).unwrap().len()
        );
        assert!(
            info.path
                .ends_with(&format!("/{}/{}.jsonl", fx.tenant.id, info.id)),
            "files are named by archive id: {}",
            info.path
        );
    }
    let ids: Vec<&str> = listed.iter().map(|a| a.id.as_str()).collect();
    assert!(ids.contains(&first.id.as_str()) && ids.contains(&second.id.as_str()));
    // No partial file is left beside them.
    let names: Vec<String> = std::fs::read_dir(fx.archives().join(&fx.tenant.id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    discard(&fx.control, &fx.tenant, &first.id)
        .await
        .expect("discard");
    assert!(!Path::new(&first.path).exists());
    let listed = list(&fx.control, &fx.tenant).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(matches!(
        load(&fx.control, &fx.tenant, &first.id).await,
        Err(SoukError::NotFound(_))
    ));

    // A file that went missing is reported as such, with no path.
    std::fs::remove_file(&second.path).unwrap();
    assert_eq!(
        list(&fx.control, &fx.tenant).await.unwrap()[0].size_bytes,
        None
    );
    match load(&fx.control, &fx.tenant, &second.id).await {
        Err(SoukError::NotFound(message)) => {
            assert!(message.contains("file is missing"), "{message}");
            assert!(!message.contains(&server_dir), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_empty_module_round_trips() {
    let fx = Fixture::new().await;
    let (source, _) = fx.database("source").await;
    let info = fx.export(&source).await;
    let (target, target_path) = fx.database("target").await;
    assert_eq!(fx.restore(&target, &info.id).await.expect("restore"), 0);
    assert_eq!(module_rows(&target_path), 0);
}
