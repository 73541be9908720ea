//! Usage kept in each tenant's own database, beside the module data it
//! counts: count limits (`max_cards`), the idempotency keys of consumes and
//! releases, and metered events (`qr_scans_per_month`) keyed by period.
//!
//! Writes made during a module call run in that call's transaction, so a
//! created card and the unit of `max_cards` it took commit or roll back
//! together. The tables' names start with `_souk_`; module table names start
//! with a module slug (a letter), so no module statement can reach them.
//!
//! This is a store: it answers `sqlx` errors, and its callers (services)
//! turn them into theirs. The tables are created and changed by the host's
//! tenant-database migrations (the `tenant_migrations` module, whose first
//! migration is `create_tables`), applied when a tenant database opens.

use sqlx::{SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use super::{Grant, Period, StoredCounter, StoredMeter, StoredUsage};

/// The usage tables as they are created now. Every quantity is a
/// non-negative INTEGER, checked by SQLite itself: an arithmetic overflow in
/// SQL (which SQLite answers with a REAL) or any other non-integer is
/// refused by the constraint instead of being stored.
const TABLES: [(&str, &str); 3] = [
    (
        "_souk_usage_counters",
        "CREATE TABLE IF NOT EXISTS _souk_usage_counters (
            module TEXT NOT NULL, key TEXT NOT NULL,
            used INTEGER NOT NULL CHECK (typeof(used) = 'integer' AND used >= 0),
            PRIMARY KEY (module, key))",
    ),
    (
        "_souk_usage_keys",
        "CREATE TABLE IF NOT EXISTS _souk_usage_keys (
            module TEXT NOT NULL, key TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('consume', 'release')),
            idempotency_key TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (typeof(quantity) = 'integer' AND quantity >= 0),
            at INTEGER NOT NULL,
            PRIMARY KEY (module, key, direction, idempotency_key))",
    ),
    (
        "_souk_usage_events",
        "CREATE TABLE IF NOT EXISTS _souk_usage_events (
            module TEXT NOT NULL, meter TEXT NOT NULL, period_start INTEGER NOT NULL,
            idempotency_key TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount >= 0),
            at INTEGER NOT NULL,
            PRIMARY KEY (module, meter, period_start, idempotency_key))",
    ),
];

/// How a value of a table written before the integer checks is carried
/// over: integers as they are, anything else (a REAL left by an overflow,
/// text) clamped into 0 ..= i64::MAX. SQLite's CAST of a REAL beyond the
/// i64 range gives the nearest end of the range.
fn integer_of(column: &str) -> String {
    format!(
        "CASE WHEN typeof({column}) = 'integer' THEN MAX({column}, 0) \
         ELSE MAX(CAST({column} AS INTEGER), 0) END"
    )
}

/// The tenant-database migration that brings the usage tables to their
/// current shape, inside the migration's transaction `conn`: creates the
/// tables that do not exist, and rebuilds tables created by earlier releases
/// without the integer checks, carrying every row over with its values made
/// integers ([`integer_of`]). A no-op on tables already in that shape, so
/// databases created before the migration ledger existed migrate cleanly.
///
/// # Errors
/// Database failures.
pub(crate) async fn create_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    for (table, create) in TABLES {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(table)
                .fetch_optional(&mut *conn)
                .await?;
        match existing {
            None => {
                sqlx::query(create).execute(&mut *conn).await?;
            }
            Some(sql) if sql.contains("typeof(") => {}
            Some(_) => {
                let old = format!("{table}_before_checks");
                sqlx::query(&format!("ALTER TABLE {table} RENAME TO {old}"))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(create).execute(&mut *conn).await?;
                let copy = match table {
                    "_souk_usage_counters" => format!(
                        "INSERT INTO {table} (module, key, used) SELECT module, key, {} FROM {old}",
                        integer_of("used")
                    ),
                    "_souk_usage_keys" => format!(
                        "INSERT INTO {table} (module, key, direction, idempotency_key, quantity, at) \
                         SELECT module, key, direction, idempotency_key, {}, at FROM {old}",
                        integer_of("quantity")
                    ),
                    _ => format!(
                        "INSERT INTO {table} (module, meter, period_start, idempotency_key, amount, at) \
                         SELECT module, meter, period_start, idempotency_key, {}, at FROM {old}",
                        integer_of("amount")
                    ),
                };
                sqlx::query(&copy).execute(&mut *conn).await?;
                sqlx::query(&format!("DROP TABLE {old}"))
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The sum of `meter`'s events in the period starting at `period_start`,
/// never failing on overflow and never wrapping: a sum beyond
/// [`MAX_USAGE`](super::MAX_USAGE) (only possible with rows written before
/// amounts were bounded) reads as `MAX_USAGE`, a meter that is full.
///
/// SQLite's `SUM` raises an error on integer overflow; `TOTAL` (a double)
/// never does and is exact while the sum stays below 2^53, which bounded
/// amounts keep it far from in practice. Only above that are the rows
/// summed here, with checked arithmetic.
async fn meter_sum(
    conn: &mut SqliteConnection,
    module: &str,
    meter: &str,
    period_start: i64,
) -> Result<u64, sqlx::Error> {
    const EXACT_BELOW: f64 = 9_007_199_254_740_992.0; // 2^53
    let total: f64 = sqlx::query_scalar(
        "SELECT TOTAL(amount) FROM _souk_usage_events \
         WHERE module = ? AND meter = ? AND period_start = ?",
    )
    .bind(module)
    .bind(meter)
    .bind(period_start)
    .fetch_one(&mut *conn)
    .await?;
    if total < EXACT_BELOW {
        // Exact: every partial sum of non-negative integers below 2^53 is.
        return Ok(if total <= 0.0 { 0 } else { total as u64 });
    }
    let amounts: Vec<i64> = sqlx::query_scalar(
        "SELECT amount FROM _souk_usage_events \
         WHERE module = ? AND meter = ? AND period_start = ?",
    )
    .bind(module)
    .bind(meter)
    .bind(period_start)
    .fetch_all(&mut *conn)
    .await?;
    let mut sum: u64 = 0;
    for amount in amounts {
        match sum
            .checked_add(unsigned(amount))
            .filter(|s| *s <= super::MAX_USAGE)
        {
            Some(next) => sum = next,
            None => return Ok(super::MAX_USAGE),
        }
    }
    Ok(sum)
}

/// The saved usage of `module` for the limits and meters of `grant` (meters:
/// the grant's current period only): counters and period sums. Idempotency
/// keys are not loaded: the tenant database answers for them on each
/// consume, release and event ([`key_applied`], [`record_event`]), so
/// loading costs the same whether the database holds ten keys or a million.
///
/// # Errors
/// Database failures.
pub async fn load(
    pool: &SqlitePool,
    module: &str,
    grant: &Grant,
) -> Result<StoredUsage, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut usage = StoredUsage::default();
    let counters: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, used FROM _souk_usage_counters WHERE module = ?")
            .bind(module)
            .fetch_all(&mut *conn)
            .await?;
    for (key, used) in counters {
        usage.counters.insert(
            key,
            StoredCounter {
                used: unsigned(used).min(super::MAX_USAGE),
                ..StoredCounter::default()
            },
        );
    }
    for (meter, allowance) in &grant.meters {
        let period = allowance.period;
        let used = meter_sum(&mut conn, module, meter, period.start.unix_timestamp()).await?;
        usage.meters.insert(
            meter.clone(),
            StoredMeter {
                period,
                used,
                seen_keys: Vec::new(),
            },
        );
    }
    Ok(usage)
}

/// Whether a consume (`direction` = `consume`) or release with
/// `idempotency_key` was already applied to `key`.
///
/// # Errors
/// Database failures.
pub async fn key_applied(
    conn: &mut SqliteConnection,
    module: &str,
    key: &str,
    direction: &str,
    idempotency_key: &str,
) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM _souk_usage_keys WHERE module = ? AND key = ? AND direction = ? AND idempotency_key = ?",
    )
    .bind(module)
    .bind(key)
    .bind(direction)
    .bind(idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// Adds `delta` (negative for a release) to count `key`, never below zero,
/// and remembers `idempotency_key` for `direction`.
///
/// # Errors
/// Database failures.
pub async fn apply_counter(
    conn: &mut SqliteConnection,
    module: &str,
    key: &str,
    delta: i64,
    idempotency_key: Option<&str>,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO _souk_usage_counters (module, key, used) VALUES (?, ?, MAX(?, 0)) \
         ON CONFLICT (module, key) DO UPDATE SET used = MAX(used + ?, 0)",
    )
    .bind(module)
    .bind(key)
    .bind(delta)
    .bind(delta)
    .execute(&mut *conn)
    .await?;
    if let Some(idempotency_key) = idempotency_key {
        sqlx::query(
            "INSERT INTO _souk_usage_keys (module, key, direction, idempotency_key, quantity, at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(module)
        .bind(key)
        .bind(if delta >= 0 { "consume" } else { "release" })
        .bind(idempotency_key)
        .bind(delta.abs())
        .bind(at.unix_timestamp())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records a metered event in `period`; false if its key was already
/// recorded in that period (then nothing changes).
///
/// # Errors
/// Database failures.
pub async fn record_event(
    conn: &mut SqliteConnection,
    module: &str,
    meter: &str,
    period: Period,
    idempotency_key: &str,
    amount: u64,
    at: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO _souk_usage_events (module, meter, period_start, idempotency_key, amount, at) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(module)
    .bind(meter)
    .bind(period.start.unix_timestamp())
    .bind(idempotency_key)
    .bind(signed(amount))
    .bind(at.unix_timestamp())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Metered events encoded for [`record_events`]: one JSON array of rows,
/// `[module, meter, period_start, idempotency_key, amount, at]` each, built
/// in one reusable buffer so that recording a group of events costs one
/// statement and no allocation per event.
#[derive(Debug, Default)]
pub struct EventRows {
    /// `[row,row,...]` once a row is added (so it is always a whole JSON
    /// array, and a mark taken at any time cuts it back to one); empty
    /// before.
    json: Vec<u8>,
    rows: usize,
}

/// Where an [`EventRows`] stood, to cut it back to with
/// [`EventRows::truncate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRowsMark {
    len: usize,
    rows: usize,
}

impl EventRows {
    /// Forgets every row, keeping the buffer.
    pub fn clear(&mut self) {
        self.json.clear();
        self.rows = 0;
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Where the rows stand now.
    pub fn mark(&self) -> EventRowsMark {
        EventRowsMark {
            len: self.json.len(),
            rows: self.rows,
        }
    }

    /// Drops the rows added since `mark`.
    pub fn truncate(&mut self, mark: EventRowsMark) {
        self.json.truncate(mark.len);
        self.rows = mark.rows;
        // A later row turned the array's closing bracket into a comma.
        if let Some(last) = self.json.last_mut() {
            *last = b']';
        }
    }

    /// Adds an event (as [`record_event`] takes it). False, and nothing
    /// added, when a text holds a NUL character: SQLite's JSON functions
    /// would cut the text there, so such an event must be written with
    /// [`record_event`], which binds the text whole.
    pub fn push(
        &mut self,
        module: &str,
        meter: &str,
        period: Period,
        idempotency_key: &str,
        amount: u64,
        at: OffsetDateTime,
    ) -> bool {
        if [module, meter, idempotency_key]
            .iter()
            .any(|text| text.contains('\0'))
        {
            return false;
        }
        let mark = self.mark();
        match self.json.pop() {
            Some(_closing) => self.json.push(b','),
            None => self.json.push(b'['),
        }
        let row = (
            module,
            meter,
            period.start.unix_timestamp(),
            idempotency_key,
            signed(amount),
            at.unix_timestamp(),
        );
        if serde_json::to_writer(&mut self.json, &row).is_err() {
            self.truncate(mark);
            return false;
        }
        self.json.push(b']');
        self.rows += 1;
        true
    }
}

/// Records every event of `rows` in one statement, each as
/// [`record_event`] would (a key already recorded in its period is left
/// alone); returns how many were new. Fewer than `rows.len()` means some
/// key was already there, and the caller learns which by writing the
/// events one by one ([`record_event`]) instead.
///
/// # Errors
/// Database failures.
pub async fn record_events(
    conn: &mut SqliteConnection,
    rows: &EventRows,
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let json = std::str::from_utf8(&rows.json).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join's
    // `ON` (the documented parsing ambiguity of INSERT ... SELECT ... ON
    // CONFLICT).
    let done = sqlx::query(
        "INSERT INTO _souk_usage_events (module, meter, period_start, idempotency_key, amount, at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
         FROM json_each(?) WHERE true ON CONFLICT DO NOTHING",
    )
    .bind(json)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// The count limits of `module` as they stand (`max_cards` -> units held).
///
/// # Errors
/// Database failures.
pub async fn counters(
    conn: &mut SqliteConnection,
    module: &str,
) -> Result<std::collections::BTreeMap<String, u64>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, used FROM _souk_usage_counters WHERE module = ? ORDER BY key")
            .bind(module)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(key, used)| (key, unsigned(used)))
        .collect())
}

/// Sets the count limits of `module` to `counters` (restoring an archive:
/// the units its rows held come back with them).
///
/// # Errors
/// Database failures.
pub async fn set_counters(
    conn: &mut SqliteConnection,
    module: &str,
    counters: &std::collections::BTreeMap<String, u64>,
) -> Result<(), sqlx::Error> {
    for (key, used) in counters {
        sqlx::query(
            "INSERT INTO _souk_usage_counters (module, key, used) VALUES (?, ?, ?) \
             ON CONFLICT (module, key) DO UPDATE SET used = excluded.used",
        )
        .bind(module)
        .bind(key)
        .bind(signed(*used))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The total of `meter` in the period starting at `period.start`; see
/// `meter_sum` (never fails on overflow, reads at most
/// [`MAX_USAGE`](super::MAX_USAGE)).
///
/// # Errors
/// Database failures.
pub async fn period_total(
    conn: &mut SqliteConnection,
    module: &str,
    meter: &str,
    period: Period,
) -> Result<u64, sqlx::Error> {
    meter_sum(conn, module, meter, period.start.unix_timestamp()).await
}

/// Forgets the count limits of `module` (an uninstall removed what they
/// counted). Metered events are kept: a reinstall does not refill a
/// period's allowance.
///
/// # Errors
/// Database failures.
pub async fn clear_counters(conn: &mut SqliteConnection, module: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM _souk_usage_counters WHERE module = ?")
        .bind(module)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM _souk_usage_keys WHERE module = ?")
        .bind(module)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sqlx::sqlite::SqlitePoolOptions;
    use time::Duration;

    use super::*;
    use crate::entitlements::{AccessState, MAX_USAGE, MeterAllowance, ResetInterval};

    const MODULE: &str = "cards";

    async fn pool() -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    }

    fn period() -> Period {
        let start = OffsetDateTime::from_unix_timestamp(1_796_126_400).unwrap();
        Period {
            start,
            end: start + Duration::days(30),
        }
    }

    fn grant() -> Grant {
        let mut grant = Grant::new(AccessState::Active, Some("free"));
        grant.limits = HashMap::from([("max_cards".to_owned(), None)]);
        grant.meters = HashMap::from([(
            "scans".to_owned(),
            MeterAllowance {
                per_period: None,
                period: period(),
                interval: ResetInterval::Month,
            },
        )]);
        grant
    }

    /// The usage tables' migration, on its own (the tenant migrations
    /// apply it once per database; here it runs as often as a test asks).
    async fn ensure_schema(pool: &SqlitePool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        create_tables(&mut tx).await?;
        tx.commit().await
    }

    async fn types_of(pool: &SqlitePool, sql: &str) -> Vec<String> {
        sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
    }

    #[tokio::test]
    async fn the_store_refuses_to_turn_a_counter_into_a_real() {
        let pool = pool().await;
        ensure_schema(&pool).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let now = period().start;
        apply_counter(&mut conn, MODULE, "max_cards", i64::MAX, Some("a"), now)
            .await
            .unwrap();
        // The second would overflow to a REAL in SQL: refused, nothing changed.
        assert!(
            apply_counter(&mut conn, MODULE, "max_cards", i64::MAX, Some("b"), now)
                .await
                .is_err()
        );
        for attempt in [
            "UPDATE _souk_usage_counters SET used = used + 1",
            "UPDATE _souk_usage_counters SET used = 1.5",
            "UPDATE _souk_usage_counters SET used = 'many'",
            "UPDATE _souk_usage_counters SET used = -1",
            "UPDATE _souk_usage_counters SET used = x'00'",
            "UPDATE _souk_usage_counters SET used = NULL",
            "INSERT INTO _souk_usage_events VALUES ('cards', 'scans', 0, 'k', 2.5, 0)",
            "INSERT INTO _souk_usage_events VALUES ('cards', 'scans', 0, 'k', 9.3e18, 0)",
            "INSERT INTO _souk_usage_keys VALUES ('cards', 'max_cards', 'consume', 'k', 0.5, 0)",
        ] {
            let refused = sqlx::query(attempt).execute(&mut *conn).await.unwrap_err();
            assert!(
                refused.to_string().contains("constraint failed"),
                "{attempt}: {refused}"
            );
        }
        drop(conn);
        assert_eq!(
            types_of(&pool, "SELECT typeof(used) FROM _souk_usage_counters").await,
            ["integer"]
        );
        let usage = load(&pool, MODULE, &grant()).await.unwrap();
        assert_eq!(usage.counters["max_cards"].used, MAX_USAGE);
    }

    #[tokio::test]
    async fn tables_from_before_the_checks_are_rebuilt_with_integers() {
        let pool = pool().await;
        for old in [
            "CREATE TABLE _souk_usage_counters (module TEXT NOT NULL, key TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (module, key))",
            "CREATE TABLE _souk_usage_keys (module TEXT NOT NULL, key TEXT NOT NULL, direction TEXT NOT NULL CHECK (direction IN ('consume', 'release')), idempotency_key TEXT NOT NULL, quantity INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (module, key, direction, idempotency_key))",
            "CREATE TABLE _souk_usage_events (module TEXT NOT NULL, meter TEXT NOT NULL, period_start INTEGER NOT NULL, idempotency_key TEXT NOT NULL, amount INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (module, meter, period_start, idempotency_key))",
            // What two consumes of i64::MAX left behind.
            "INSERT INTO _souk_usage_counters VALUES ('cards', 'max_cards', 9223372036854775807)",
            "UPDATE _souk_usage_counters SET used = used + 9223372036854775807",
            "INSERT INTO _souk_usage_counters VALUES ('cards', 'other', -3.5)",
            "INSERT INTO _souk_usage_counters VALUES ('cards', 'fine', 7)",
            "INSERT INTO _souk_usage_keys VALUES ('cards', 'max_cards', 'consume', 'k', 1.5e19, 0)",
            "INSERT INTO _souk_usage_events VALUES ('cards', 'scans', 0, 'k', 2.5, 0)",
        ] {
            sqlx::query(old).execute(&pool).await.unwrap();
        }
        assert_eq!(
            types_of(
                &pool,
                "SELECT typeof(used) FROM _souk_usage_counters WHERE key = 'max_cards'"
            )
            .await,
            ["real"]
        );
        ensure_schema(&pool).await.unwrap();
        // Twice: the second run finds the checks and changes nothing.
        ensure_schema(&pool).await.unwrap();
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT key, typeof(used), used FROM _souk_usage_counters ORDER BY key")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                ("fine".to_owned(), "integer".to_owned(), 7),
                ("max_cards".to_owned(), "integer".to_owned(), i64::MAX),
                ("other".to_owned(), "integer".to_owned(), 0),
            ]
        );
        assert_eq!(
            types_of(&pool, "SELECT typeof(quantity) FROM _souk_usage_keys").await,
            ["integer"]
        );
        assert_eq!(
            types_of(&pool, "SELECT typeof(amount) FROM _souk_usage_events").await,
            ["integer"]
        );
        assert!(
            sqlx::query("UPDATE _souk_usage_counters SET used = 1.5")
                .execute(&pool)
                .await
                .is_err()
        );
        let left: Vec<String> = types_of(
            &pool,
            "SELECT name FROM sqlite_master WHERE name LIKE '%before_checks%'",
        )
        .await;
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn overflowing_meter_sums_read_as_full_instead_of_failing() {
        let pool = pool().await;
        ensure_schema(&pool).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let p = period();
        for (key, amount) in [("a", u64::MAX), ("b", u64::MAX), ("c", 1)] {
            assert!(
                record_event(&mut conn, MODULE, "scans", p, key, amount, p.start)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(
            period_total(&mut conn, MODULE, "scans", p).await.unwrap(),
            MAX_USAGE
        );
        drop(conn);
        let usage = load(&pool, MODULE, &grant()).await.unwrap();
        assert_eq!(usage.meters["scans"].used, MAX_USAGE);

        // Exact below 2^53 and above it.
        let mut conn = pool.acquire().await.unwrap();
        let other = Period {
            start: p.end,
            end: p.end + Duration::days(30),
        };
        let big = 1u64 << 53;
        for (key, amount) in [("x", big), ("y", 1), ("z", 2)] {
            record_event(&mut conn, MODULE, "scans", other, key, amount, other.start)
                .await
                .unwrap();
        }
        assert_eq!(
            period_total(&mut conn, MODULE, "scans", other)
                .await
                .unwrap(),
            big + 3
        );
        let third = Period {
            start: other.end,
            end: other.end + Duration::days(30),
        };
        for (i, amount) in [1_000_000_000_000u64, 7, 999_999].iter().enumerate() {
            record_event(
                &mut conn,
                MODULE,
                "scans",
                third,
                &format!("k{i}"),
                *amount,
                third.start,
            )
            .await
            .unwrap();
        }
        assert_eq!(
            period_total(&mut conn, MODULE, "scans", third)
                .await
                .unwrap(),
            1_000_001_000_006
        );
    }

    #[tokio::test]
    async fn events_recorded_in_one_statement_count_only_the_new_keys() {
        let pool = pool().await;
        ensure_schema(&pool).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let p = period();
        assert!(
            record_event(&mut conn, MODULE, "scans", p, "known", 1, p.start)
                .await
                .unwrap()
        );
        let mut rows = EventRows::default();
        assert_eq!(record_events(&mut conn, &rows).await.unwrap(), 0);
        assert!(rows.push(MODULE, "scans", p, "a", 2, p.start));
        let mark = rows.mark();
        // Rows added after a mark are cut off again, the array still whole.
        assert!(rows.push(MODULE, "scans", p, "dropped", 7, p.start));
        assert!(rows.push(MODULE, "scans", p, "dropped too", 7, p.start));
        rows.truncate(mark);
        assert_eq!(rows.len(), 1);
        assert!(rows.push(MODULE, "scans", p, "known", 3, p.start));
        assert!(rows.push(MODULE, "scans", p, "quote \" and ünïcode", 4, p.start));
        // SQLite's JSON functions would cut this key at the NUL.
        assert!(!rows.push(MODULE, "scans", p, "nul\0key", 5, p.start));
        assert_eq!(rows.len(), 3);
        assert_eq!(record_events(&mut conn, &rows).await.unwrap(), 2);
        let stored: Vec<(String, i64, String, i64)> = sqlx::query_as(
            "SELECT idempotency_key, amount, typeof(amount), period_start \
             FROM _souk_usage_events ORDER BY idempotency_key",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let start = p.start.unix_timestamp();
        assert_eq!(
            stored,
            [
                ("a".to_owned(), 2, "integer".to_owned(), start),
                ("known".to_owned(), 1, "integer".to_owned(), start),
                (
                    "quote \" and ünïcode".to_owned(),
                    4,
                    "integer".to_owned(),
                    start
                ),
            ]
        );
        rows.clear();
        assert!(rows.is_empty());
        assert!(rows.push(MODULE, "scans", p, "a", 2, p.start));
        assert_eq!(record_events(&mut conn, &rows).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn loading_usage_reads_no_idempotency_keys_however_many_there_are() {
        let pool = pool().await;
        ensure_schema(&pool).await.unwrap();
        let p = period();
        // 50,000 keys on one counter and 50,000 events in the period.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) \
             INSERT INTO _souk_usage_keys SELECT 'cards', 'max_cards', 'consume', 'key-' || i, 1, i FROM n",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) \
             INSERT INTO _souk_usage_events SELECT 'cards', 'scans', ?, 'event-' || i, 2, i FROM n",
        )
        .bind(p.start.unix_timestamp())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO _souk_usage_counters VALUES ('cards', 'max_cards', 50000)")
            .execute(&pool)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let usage = load(&pool, MODULE, &grant()).await.unwrap();
        eprintln!(
            "loaded usage beside 100,000 keys in {:?}",
            started.elapsed()
        );
        let counter = &usage.counters["max_cards"];
        assert_eq!(counter.used, 50_000);
        assert!(counter.consumed_keys.is_empty() && counter.released_keys.is_empty());
        assert_eq!(usage.meters["scans"].used, 100_000);
        assert!(usage.meters["scans"].seen_keys.is_empty());
        // The database still answers for every key.
        let mut conn = pool.acquire().await.unwrap();
        assert!(
            key_applied(&mut conn, MODULE, "max_cards", "consume", "key-1")
                .await
                .unwrap()
        );
        assert!(
            !record_event(&mut conn, MODULE, "scans", p, "event-1", 2, p.start)
                .await
                .unwrap()
        );
    }
}
