//! The two walls together, on a real hardened SQLite database: hostile
//! statements are refused or stay in scope — judged by what is in the
//! database afterwards and by the authorizer's log — and runaway work stops
//! at its deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use souk_module_registry::Manifest;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool, TypeInfo, ValueRef};

use super::sandbox::{self, Action, LoggedRequest};
use super::*;

const MEMBERSHIP: &str = "slug: membership\nname: M\nversion: 1.0.0\ncategory: community\napi: 0.2.0\nexports: [members]\n";
const CARDS: &str = "slug: cards\nname: C\nversion: 1.0.0\ncategory: community\napi: 0.2.0\ndependencies:\n  membership: \"^1\"\n";

struct Fixture {
    _dir: tempfile::TempDir,
    pool: SqlitePool,
    cards: SqlScope,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.sqlite");
    let pool = sandbox::pool_options()
        .max_connections(2)
        .connect_with(crate::control_plane::sqlite_options(&path))
        .await
        .unwrap();
    let membership = Manifest::parse(MEMBERSHIP).unwrap();
    let cards_manifest = Manifest::parse(CARDS).unwrap();
    let members_scope = SqlScope::new(&membership, []);
    let cards = SqlScope::new(&cards_manifest, [&membership]);
    let mut tx = pool.begin().await.unwrap();
    run_migration(
        &mut tx,
        &members_scope,
        "CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE);\
         CREATE TABLE secrets (id INTEGER PRIMARY KEY, secret TEXT);\
         CREATE INDEX members_name ON members (name)",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    run_migration(
        &mut tx,
        &cards,
        "CREATE TABLE cards (id INTEGER PRIMARY KEY AUTOINCREMENT, member INTEGER, label TEXT);\
         ALTER TABLE cards ADD COLUMN scratch TEXT;\
         CREATE INDEX cards_scratch ON cards (scratch);\
         DROP INDEX cards_scratch;\
         ALTER TABLE cards DROP COLUMN scratch;\
         CREATE TABLE gone (a UNIQUE);\
         ALTER TABLE gone RENAME TO gone2;\
         DROP TABLE gone2",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    // Host rows the module must never reach.
    sqlx::query("CREATE TABLE _souk_usage_counters (k TEXT PRIMARY KEY, v INTEGER)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO _souk_usage_counters VALUES ('cards/max', 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO membership__members (name) VALUES ('Sita'), ('Ram')")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO membership__secrets (secret) VALUES ('s3cret')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Fixture {
        _dir: dir,
        pool,
        cards,
    }
}

/// Everything outside the `cards` module's own tables: the schema and the
/// contents of every other table.
async fn outside_state(pool: &SqlitePool) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    let schema: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    state.insert("schema".into(), format!("{schema:?}"));
    for table in [
        "membership__members",
        "membership__secrets",
        "_souk_usage_counters",
    ] {
        let rows: Vec<String> = sqlx::query(&format!("SELECT * FROM \"{table}\""))
            .fetch_all(pool)
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| format!("{:?}", decode_row(r).unwrap()))
                    .collect()
            })
            .unwrap_or_else(|_| vec![format!("{table} unreadable")]);
        state.insert(table.into(), rows.join(","));
    }
    state
}

async fn run_one(
    f: &Fixture,
    sql: &str,
    log: bool,
) -> (Result<String, DbFailure>, Vec<LoggedRequest>) {
    let tx = f.pool.begin().await.unwrap();
    let mut db = ModuleDb::new(Arc::new(f.cards.clone()), tx, Duration::from_millis(500));
    let guard = if log {
        let tx = db.host_connection().await.unwrap().unwrap();
        let mut handle = tx.lock_handle().await.unwrap();
        let guard = sandbox::guard(handle.as_raw_handle()).unwrap();
        guard.start_log();
        Some(guard)
    } else {
        None
    };
    let result = if sql.trim_start().to_ascii_uppercase().starts_with("SELECT")
        || sql.trim_start().to_ascii_uppercase().starts_with("WITH")
    {
        db.query(sql, vec![]).await.map(|rows| format!("{rows:?}"))
    } else {
        db.execute(sql, vec![]).await.map(|r| format!("{r:?}"))
    };
    let log = guard.map(|g| g.take_log()).unwrap_or_default();
    if let Some(tx) = db.take_transaction() {
        tx.commit().await.unwrap();
    }
    (result, log)
}

/// Whether an allowed request stayed inside the `cards` module's scope.
fn in_scope(entry: &LoggedRequest) -> bool {
    let table = entry.arg1.as_deref().unwrap_or("").to_ascii_lowercase();
    let main = entry
        .database
        .as_deref()
        .is_none_or(|d| d.eq_ignore_ascii_case("main"));
    match entry.action {
        Action::Select | Action::Recursive | Action::Function => main,
        Action::Read => main && (table.starts_with("cards__") || table == "membership__members"),
        Action::Insert | Action::Update | Action::Delete => main && table.starts_with("cards__"),
        _ => false,
    }
}

/// Statements a hostile module sends; each must be refused or stay in scope.
const HOSTILE: &[&str] = &[
    // the printer bug: a quoted type modifier printed without its quotes
    "SELECT CAST(1 AS x('1)) AS a, name FROM sqlite_master --'))",
    "SELECT CAST(1 AS x('1)) AS a FROM cards; DELETE FROM membership__members --'))",
    // several statements
    "SELECT 1; DELETE FROM membership__members",
    "SELECT 1; ATTACH DATABASE 'x.sqlite' AS x",
    // system and host tables, every spelling
    "SELECT * FROM sqlite_master",
    "SELECT * FROM main.sqlite_master",
    "SELECT * FROM \"sqlite_schema\"",
    "SELECT * FROM [sqlite_master]",
    "SELECT * FROM `sqlite_master`",
    "SELECT * FROM _souk_usage_counters",
    "UPDATE _souk_usage_counters SET v = 0",
    "SELECT * FROM membership__secrets",
    "SELECT * FROM membership.secrets",
    "SELECT * FROM \"membership__secrets\"",
    "SELECT count(*) FROM membership__secrets",
    "SELECT * FROM temp.cards",
    // pragma functions and pragmas, also behind shadowing CTEs
    "SELECT * FROM pragma_table_list",
    "SELECT count(*) FROM pragma_table_list",
    "SELECT * FROM pragma_table_list WHERE EXISTS (WITH pragma_table_list AS (SELECT 1) SELECT 1)",
    "SELECT * FROM pragma_table_info('membership__secrets')",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM dbstat",
    "SELECT * FROM cards WHERE EXISTS (WITH dbstat AS (SELECT 1) SELECT * FROM dbstat)",
    "PRAGMA table_info(cards)",
    "PRAGMA writable_schema = ON",
    // attach, vacuum, transactions
    "ATTACH DATABASE 'control.sqlite' AS c",
    "VACUUM INTO 'copy.sqlite'",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    // writes through CTEs into a dependency
    "WITH t AS (SELECT 1) UPDATE membership.members SET name = 'x'",
    "WITH t AS (SELECT 1) DELETE FROM membership.members",
    "WITH t AS (SELECT 1) INSERT INTO membership.members (name) VALUES ('x') RETURNING id",
    "INSERT INTO membership.members (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = 'y'",
    "REPLACE INTO membership.members (id, name) VALUES (1, 'x')",
    // DDL at run time
    "CREATE TABLE cards2 (a)",
    "CREATE TEMP TABLE t (a)",
    "CREATE TRIGGER t AFTER INSERT ON cards BEGIN DELETE FROM membership__members; END",
    "CREATE VIEW v AS SELECT * FROM membership__secrets",
    "DROP TABLE cards",
    "ALTER TABLE cards ADD COLUMN x",
    // functions
    "SELECT load_extension('x')",
    "SELECT sqlite_version()",
    "SELECT fts3_tokenizer('simple')",
    "SELECT length(randomblob(500000000))",
    "SELECT length(zeroblob(500000000))",
    "SELECT length(printf('%.*c', 500000000, 'x'))",
    "SELECT length(replace(hex(zeroblob(4000000)), '0', '0000000000'))",
];

#[tokio::test]
async fn hostile_statements_are_refused_or_stay_in_scope() {
    let f = fixture().await;
    let before = outside_state(&f.pool).await;
    let mut report = Vec::new();
    for sql in HOSTILE {
        let (result, log) = run_one(&f, sql, true).await;
        for entry in log.iter().filter(|e| e.allowed) {
            assert!(in_scope(entry), "{sql}: SQLite was allowed {entry:?}");
        }
        if let Ok(out) = &result {
            assert!(!out.contains("s3cret"), "{sql}: leaked a secret: {out}");
            assert!(
                !out.contains("_souk_usage"),
                "{sql}: leaked a host table: {out}"
            );
        }
        report.push(format!("{sql} -> {result:?}"));
        assert_eq!(
            outside_state(&f.pool).await,
            before,
            "{sql} changed state outside its scope"
        );
    }
    // Nothing appeared beside the database either.
    let files: Vec<String> = std::fs::read_dir(f._dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for file in &files {
        assert!(
            file.starts_with("tenant.sqlite"),
            "unexpected file {file}: {report:#?}"
        );
    }
}

#[tokio::test]
async fn the_rewriter_bug_class_is_caught_by_the_round_trip_and_the_authorizer() {
    let f = fixture().await;
    let (result, _) = run_one(
        &f,
        "SELECT CAST(1 AS x('1)) AS a, name FROM sqlite_master --'))",
        false,
    )
    .await;
    assert!(matches!(result, Err(DbFailure::Refused(_))), "{result:?}");
}

#[tokio::test]
async fn allowed_work_still_works() {
    let f = fixture().await;
    for sql in [
        "INSERT INTO cards (member, label) VALUES (1, 'a')",
        "UPDATE cards SET label = upper(label) WHERE id = 1",
        "SELECT c.id, m.name FROM cards c JOIN membership.members m ON m.id = c.member",
        "SELECT count(*) FROM membership.members",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) SELECT sum(x) FROM n",
        "SELECT json_extract('{\"a\": 1}', '$.a'), datetime('now'), abs(-1)",
        "DELETE FROM cards WHERE id = 1",
    ] {
        let (result, log) = run_one(&f, sql, true).await;
        assert!(result.is_ok(), "{sql}: {result:?}");
        assert!(log.iter().all(|e| e.allowed), "{sql}: {log:?}");
    }
}

#[tokio::test]
async fn text_that_is_not_utf8_reaches_the_module_replaced_not_as_an_error() {
    let f = fixture().await;
    sqlx::query("INSERT INTO cards__cards (label) VALUES (CAST(X'61FF62' AS TEXT))")
        .execute(&f.pool)
        .await
        .unwrap();
    let (result, _) = run_one(&f, "SELECT label FROM cards", false).await;
    let rows = result.unwrap();
    assert!(rows.contains("a\u{fffd}b"), "{rows}");
}

#[tokio::test]
async fn deep_and_huge_expressions_are_refused_without_harm() {
    let f = fixture().await;
    let chain = format!("SELECT 1{}", "+1".repeat(30_000));
    let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let cases = format!(
        "SELECT {} 1 {}",
        "CASE WHEN 1 THEN ".repeat(3_000),
        "END ".repeat(3_000)
    );
    let subselects = format!("SELECT {}1{}", "(SELECT ".repeat(2_000), ")".repeat(2_000));
    for sql in [chain, parens, cases, subselects] {
        let (result, _) = run_one(&f, &sql, false).await;
        assert!(result.is_err(), "{}...: {result:?}", &sql[..40]);
    }
    // And the database still answers.
    let (result, _) = run_one(&f, "SELECT count(*) FROM cards", false).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_runaway_statement_stops_at_its_deadline_and_releases_the_connection() {
    let f = fixture().await;
    let endless =
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT max(n) FROM c";
    let (result, _) = run_one(&f, endless, false).await;
    assert!(matches!(result, Err(DbFailure::Timeout(_))), "{result:?}");
    // The host's own statements run normally afterwards.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM _souk_usage_counters")
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn an_endless_migration_stops_at_its_budget_and_keeps_nothing() {
    let f = fixture().await;
    let mut tx = f.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let result = run_migration(
        &mut tx,
        &f.cards,
        "CREATE TABLE t (a); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) \
         SELECT max(n) FROM c",
        Duration::from_millis(300),
    )
    .await;
    assert!(matches!(result, Err(DbFailure::Timeout(_))), "{result:?}");
    tx.rollback().await.unwrap();
    // The write lock is free: another writer gets through at once.
    let mut other = f.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO membership__members (name) VALUES ('after')")
        .execute(&mut *other)
        .await
        .unwrap();
    other.rollback().await.unwrap();
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'cards__t'")
            .fetch_one(&f.pool)
            .await
            .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn migrations_may_not_reach_other_modules() {
    let f = fixture().await;
    for sql in [
        "CREATE INDEX i ON membership.members (name)",
        "DROP TABLE membership.members",
        "ALTER TABLE membership.members ADD COLUMN x",
        "CREATE TABLE x (a); DELETE FROM membership.members",
        "CREATE TABLE y (a); ATTACH DATABASE 'z' AS z",
        "CREATE TABLE w (a); PRAGMA writable_schema = ON",
        "CREATE TABLE v (a); UPDATE _souk_usage_counters SET v = 9",
    ] {
        let before = outside_state(&f.pool).await;
        let mut tx = f.pool.begin().await.unwrap();
        let result = run_migration(&mut tx, &f.cards, sql, Duration::from_secs(2)).await;
        assert!(result.is_err(), "{sql}: {result:?}");
        tx.rollback().await.unwrap();
        assert_eq!(outside_state(&f.pool).await, before, "{sql}");
    }
}

/// A tiny deterministic generator (xorshift) so the property test needs no
/// extra crate and every failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const TABLES: &[&str] = &[
    "cards",
    "membership.members",
    "membership.secrets",
    "membership__members",
    "membership__secrets",
    "\"membership__secrets\"",
    "[membership__secrets]",
    "sqlite_master",
    "main.sqlite_master",
    "sqlite_temp_master",
    "sqlite_sequence",
    "_souk_usage_counters",
    "pragma_table_list",
    "pragma_table_info('membership__secrets')",
    "pragma_database_list",
    "pragma_function_list",
    "dbstat",
    "json_each('[1]')",
    "temp.cards",
    "main.cards",
    "cards__cards",
];

const SHAPES: &[&str] = &[
    "SELECT * FROM {t}",
    "SELECT count(*) FROM {t}",
    "SELECT * FROM cards WHERE EXISTS (SELECT 1 FROM {t})",
    "SELECT * FROM cards WHERE EXISTS (WITH {c} AS (SELECT 1) SELECT * FROM {t})",
    "WITH {c} AS (SELECT * FROM {t}) SELECT * FROM {c}",
    "WITH {c} AS (SELECT 1) SELECT * FROM {t}, {c}",
    "SELECT * FROM {t} JOIN {u} ON 1",
    "SELECT (SELECT count(*) FROM {t}) + (SELECT count(*) FROM {u})",
    "INSERT INTO {t} SELECT * FROM {u}",
    "INSERT INTO cards (label) SELECT name FROM {t}",
    "UPDATE {t} SET name = 'x'",
    "WITH {c} AS (SELECT 1) UPDATE {t} SET label = (SELECT count(*) FROM {u})",
    "WITH {c} AS (SELECT 1) DELETE FROM {t} RETURNING *",
    "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {u})",
    "INSERT INTO {t} (id) VALUES (1) ON CONFLICT DO UPDATE SET id = 2",
    "SELECT CAST(1 AS x('1)) FROM {t} --'))",
];

const CTE_NAMES: &[&str] = &[
    "pragma_table_list",
    "dbstat",
    "sqlite_master",
    "membership__secrets",
    "cards",
    "recent",
    "secrets",
];

#[tokio::test]
async fn generated_statements_never_leave_their_scope() {
    let f = fixture().await;
    let before = outside_state(&f.pool).await;
    let mut rng = Rng(0x5eed_50e4_u64);
    for i in 0..400 {
        let shape = rng.pick(SHAPES);
        let sql = shape
            .replace("{t}", rng.pick(TABLES))
            .replace("{u}", rng.pick(TABLES))
            .replace("{c}", rng.pick(CTE_NAMES));
        let (result, log) = run_one(&f, &sql, true).await;
        for entry in log.iter().filter(|e| e.allowed) {
            assert!(
                in_scope(entry),
                "case {i}: {sql}: SQLite was allowed {entry:?}"
            );
        }
        if let Ok(out) = &result {
            assert!(!out.contains("s3cret"), "case {i}: {sql}: {out}");
        }
        assert_eq!(outside_state(&f.pool).await, before, "case {i}: {sql}");
    }
}

/// Whether every connection of the fixture's pool (two) is outside a
/// transaction.
async fn pool_is_out_of_transactions(pool: &SqlitePool) -> bool {
    let mut a = pool.acquire().await.unwrap();
    let mut b = pool.acquire().await.unwrap();
    let mut clean = true;
    for conn in [&mut a, &mut b] {
        let mut handle = conn.lock_handle().await.unwrap();
        // SAFETY: the lock is held.
        clean &=
            unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) } != 0;
    }
    clean
}

async fn deferred(f: &Fixture) -> ModuleDb {
    let conn = f.pool.acquire().await.unwrap();
    ModuleDb::with(
        Arc::new(f.cards.clone()),
        CallTransaction::deferred(conn),
        Duration::from_millis(500),
    )
}

#[tokio::test]
async fn a_deferred_read_needs_no_commit_and_its_connection_comes_back_out_of_its_transaction() {
    let f = fixture().await;
    let mut db = deferred(&f).await;
    let rows = db
        .query("SELECT count(*) FROM membership.members", vec![])
        .await
        .unwrap();
    assert_eq!(rows.rows, vec![vec![SqlValue::Integer(2)]]);
    let tx = db.take_transaction().unwrap();
    assert!(matches!(
        tx,
        CallTransaction::Deferred {
            begun: true,
            wrote: false,
            ..
        }
    ));
    tx.commit().await.unwrap();
    assert!(pool_is_out_of_transactions(&f.pool).await);
}

#[tokio::test]
async fn a_deferred_write_is_kept_only_when_committed() {
    let f = fixture().await;
    let count = |f: &Fixture| {
        let pool = f.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM cards__cards WHERE label = 'kept'")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // Dropped without a commit (a failed call): the release rolls it back.
    let mut db = deferred(&f).await;
    db.execute("INSERT INTO cards (label) VALUES ('kept')", vec![])
        .await
        .unwrap();
    let tx = db.take_transaction().unwrap();
    assert!(matches!(tx, CallTransaction::Deferred { wrote: true, .. }));
    tx.rollback().await.unwrap();
    assert!(pool_is_out_of_transactions(&f.pool).await);
    assert_eq!(count(&f).await, 0);

    // Committed: kept.
    let mut db = deferred(&f).await;
    db.execute("INSERT INTO cards (label) VALUES ('kept')", vec![])
        .await
        .unwrap();
    db.take_transaction().unwrap().commit().await.unwrap();
    assert_eq!(count(&f).await, 1);

    // Host bookkeeping in a call that only read also counts as a write.
    let mut db = deferred(&f).await;
    let conn = db.host_connection().await.unwrap().unwrap();
    sqlx::query("INSERT INTO cards__cards (label) VALUES ('kept')")
        .execute(conn)
        .await
        .unwrap();
    db.take_transaction().unwrap().commit().await.unwrap();
    assert_eq!(count(&f).await, 2);
}

/// Decodes a row by the storage class of each value (to compare the
/// database's state before and after).
fn decode_row(row: &SqliteRow) -> Result<Vec<SqlValue>, DbFailure> {
    let mut out = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i).map_err(map_error)?;
        if raw.is_null() {
            out.push(SqlValue::Null);
            continue;
        }
        let kind = raw.type_info().name().to_owned();
        let value = match kind.as_str() {
            "INTEGER" => SqlValue::Integer(row.try_get_unchecked(i).map_err(map_error)?),
            "REAL" => SqlValue::Real(row.try_get_unchecked(i).map_err(map_error)?),
            "BLOB" => SqlValue::Blob(row.try_get_unchecked(i).map_err(map_error)?),
            // Text is read as its bytes: a value that is not valid UTF-8
            // (SQLite stores whatever it is given) reaches the module with
            // U+FFFD in place of the bad bytes instead of failing the query.
            _ => {
                let bytes: Vec<u8> = row.try_get_unchecked(i).map_err(map_error)?;
                SqlValue::Text(match String::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                })
            }
        };
        out.push(value);
    }
    Ok(out)
}

/// Commits one write to the fixture's database on another connection.
async fn commit_elsewhere(f: &Fixture) {
    sqlx::query("INSERT INTO cards__cards (label) VALUES ('elsewhere')")
        .execute(&f.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_write_after_a_read_whose_snapshot_went_stale_marks_the_call_conflicted() {
    let f = fixture().await;
    let mut db = deferred(&f).await;
    db.query("SELECT count(*) FROM cards", vec![])
        .await
        .unwrap();
    commit_elsewhere(&f).await;
    let refused = db
        .execute("INSERT INTO cards (label) VALUES ('mine')", vec![])
        .await
        .unwrap_err();
    assert_eq!(refused, DbFailure::Other(STALE_SNAPSHOT.into()));
    assert!(db.conflicted());
    // Sticky, whatever the module does next: every statement fails, and
    // the host's own writes are refused too.
    let later = db.query("SELECT 1", vec![]).await.unwrap_err();
    assert_eq!(later, DbFailure::Other(STALE_SNAPSHOT.into()));
    assert!(db.host_connection().await.unwrap().is_err());
    assert!(db.conflicted());
    db.take_transaction().unwrap().rollback().await.unwrap();
    assert!(pool_is_out_of_transactions(&f.pool).await);
    let mine: i64 = sqlx::query_scalar("SELECT count(*) FROM cards__cards WHERE label = 'mine'")
        .fetch_one(&f.pool)
        .await
        .unwrap();
    assert_eq!(mine, 0);
}

#[tokio::test]
async fn a_write_after_a_read_while_another_writer_holds_the_lock_marks_the_call_conflicted() {
    let f = fixture().await;
    let mut db = deferred(&f).await;
    db.query("SELECT count(*) FROM cards", vec![])
        .await
        .unwrap();
    let mut other = f.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("INSERT INTO cards__cards (label) VALUES ('other')")
        .execute(&mut *other)
        .await
        .unwrap();
    let refused = db
        .execute("INSERT INTO cards (label) VALUES ('mine')", vec![])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(db.conflicted());
    other.commit().await.unwrap();
    drop(db);
}

#[tokio::test]
async fn a_host_write_after_a_read_whose_snapshot_went_stale_marks_the_call_conflicted() {
    let f = fixture().await;
    sqlx::query(
        "CREATE TABLE _souk_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    )
    .execute(&f.pool)
    .await
    .unwrap();
    let mut db = deferred(&f).await;
    db.query("SELECT count(*) FROM cards", vec![])
        .await
        .unwrap();
    commit_elsewhere(&f).await;
    assert!(db.host_connection().await.unwrap().is_err());
    assert!(db.conflicted());

    // With a fresh snapshot, the host's write goes through.
    let mut db = deferred(&f).await;
    db.query("SELECT count(*) FROM cards", vec![])
        .await
        .unwrap();
    let conn = db.host_connection().await.unwrap().unwrap();
    sqlx::query("INSERT INTO cards__cards (label) VALUES ('host')")
        .execute(conn)
        .await
        .unwrap();
    assert!(!db.conflicted());
    db.take_transaction().unwrap().commit().await.unwrap();
}

#[tokio::test]
async fn no_conflict_without_a_stale_read_or_in_an_immediate_transaction() {
    let f = fixture().await;
    // A deferred call that writes first takes the lock with its write.
    let mut db = deferred(&f).await;
    commit_elsewhere(&f).await;
    db.execute("INSERT INTO cards (label) VALUES ('first')", vec![])
        .await
        .unwrap();
    commit_elsewhere_later(&f, &mut db).await;

    // Read, nobody commits, write: fine.
    let mut db = deferred(&f).await;
    db.query("SELECT count(*) FROM cards", vec![])
        .await
        .unwrap();
    db.execute("INSERT INTO cards (label) VALUES ('second')", vec![])
        .await
        .unwrap();
    assert!(!db.conflicted());
    db.take_transaction().unwrap().commit().await.unwrap();

    // An immediate transaction holds the lock from its start.
    let tx = f.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let mut db = ModuleDb::new(Arc::new(f.cards.clone()), tx, Duration::from_millis(500));
    db.query("SELECT count(*) FROM cards", vec![])
        .await
        .unwrap();
    db.execute("INSERT INTO cards (label) VALUES ('third')", vec![])
        .await
        .unwrap();
    assert!(!db.conflicted());
    db.take_transaction().unwrap().commit().await.unwrap();
}

/// Commits `db`'s transaction (not conflicted), then another write.
async fn commit_elsewhere_later(f: &Fixture, db: &mut ModuleDb) {
    assert!(!db.conflicted());
    db.take_transaction().unwrap().commit().await.unwrap();
    commit_elsewhere(f).await;
}

#[test]
fn only_refused_upgrades_count_as_conflicts() {
    use libsqlite3_sys as ffi;
    assert!(is_upgrade_refusal(ffi::SQLITE_BUSY_SNAPSHOT, false));
    assert!(is_upgrade_refusal(ffi::SQLITE_BUSY_SNAPSHOT, true));
    assert!(is_upgrade_refusal(ffi::SQLITE_BUSY, true));
    // Plain BUSY without a snapshot held is the busy handler giving up.
    assert!(!is_upgrade_refusal(ffi::SQLITE_BUSY, false));
    assert!(!is_upgrade_refusal(ffi::SQLITE_LOCKED, true));
    assert!(!is_upgrade_refusal(ffi::SQLITE_CONSTRAINT_UNIQUE, true));
}
