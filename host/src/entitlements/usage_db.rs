//! Usage kept in each tenant's own database, beside the module data it
//! counts: count limits (`max_cards`), the idempotency keys of consumes and
//! releases, and metered events (`qr_scans_per_month`) keyed by period.
//!
//! Writes made during a module call run in that call's transaction, so a
//! created card and the unit of `max_cards` it took commit or roll back
//! together. The tables' names start with `_souk_`; module table names start
//! with a module slug (a letter), so no module statement can reach them.

use sqlx::{SqliteConnection, SqlitePool};
use time::OffsetDateTime;

use super::{Grant, Period, StoredCounter, StoredMeter, StoredUsage};
use crate::souk::SoukError;

/// Creates the usage tables if they do not exist (idempotent).
///
/// # Errors
/// Database failures.
pub async fn ensure_schema(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    for statement in [
        "CREATE TABLE IF NOT EXISTS _souk_usage_counters (
            module TEXT NOT NULL, key TEXT NOT NULL, used INTEGER NOT NULL,
            PRIMARY KEY (module, key))",
        "CREATE TABLE IF NOT EXISTS _souk_usage_keys (
            module TEXT NOT NULL, key TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('consume', 'release')),
            idempotency_key TEXT NOT NULL, quantity INTEGER NOT NULL, at INTEGER NOT NULL,
            PRIMARY KEY (module, key, direction, idempotency_key))",
        "CREATE TABLE IF NOT EXISTS _souk_usage_events (
            module TEXT NOT NULL, meter TEXT NOT NULL, period_start INTEGER NOT NULL,
            idempotency_key TEXT NOT NULL, amount INTEGER NOT NULL, at INTEGER NOT NULL,
            PRIMARY KEY (module, meter, period_start, idempotency_key))",
    ] {
        sqlx::query(statement).execute(pool).await?;
    }
    Ok(())
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The saved usage of `module` for the limits and meters of `grant` (meters:
/// the grant's current period only).
///
/// # Errors
/// Database failures.
pub async fn load(
    pool: &SqlitePool,
    module: &str,
    grant: &Grant,
) -> Result<StoredUsage, SoukError> {
    let mut usage = StoredUsage::default();
    let counters: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, used FROM _souk_usage_counters WHERE module = ?")
            .bind(module)
            .fetch_all(pool)
            .await?;
    for (key, used) in counters {
        usage.counters.insert(
            key,
            StoredCounter {
                used: unsigned(used),
                ..StoredCounter::default()
            },
        );
    }
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT key, direction, idempotency_key FROM _souk_usage_keys WHERE module = ? ORDER BY at, rowid",
    )
    .bind(module)
    .fetch_all(pool)
    .await?;
    for (key, direction, idempotency_key) in keys {
        let counter = usage.counters.entry(key).or_default();
        match direction.as_str() {
            "consume" => counter.consumed_keys.push(idempotency_key),
            _ => counter.released_keys.push(idempotency_key),
        }
    }
    for (meter, allowance) in &grant.meters {
        let period = allowance.period;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT idempotency_key, amount FROM _souk_usage_events \
             WHERE module = ? AND meter = ? AND period_start = ? ORDER BY at, rowid",
        )
        .bind(module)
        .bind(meter)
        .bind(period.start.unix_timestamp())
        .fetch_all(pool)
        .await?;
        let used = rows.iter().map(|(_, amount)| unsigned(*amount)).sum();
        let seen_keys = rows.into_iter().map(|(key, _)| key).collect();
        usage.meters.insert(
            meter.clone(),
            StoredMeter {
                period,
                used,
                seen_keys,
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

/// The total of `meter` in the period starting at `period.start`.
///
/// # Errors
/// Database failures.
pub async fn period_total(
    conn: &mut SqliteConnection,
    module: &str,
    meter: &str,
    period: Period,
) -> Result<u64, sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(amount), 0) FROM _souk_usage_events \
         WHERE module = ? AND meter = ? AND period_start = ?",
    )
    .bind(module)
    .bind(meter)
    .bind(period.start.unix_timestamp())
    .fetch_one(&mut *conn)
    .await?;
    Ok(unsigned(total))
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
