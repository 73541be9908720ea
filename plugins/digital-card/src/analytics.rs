//! Analytics from the module's own rows: cards issued (`cards.created_at`),
//! verifications (`scans`) and share links made (`share_links`).
//!
//! - `GET /analytics` (pro, `basic_analytics`): per month, the last 12
//!   months: `{"months": [{"month": "YYYY-MM", "cards_issued",
//!   "verifications", "shares"}]}`.
//! - `GET /analytics/advanced?from=&to=` (business, `advanced_analytics`):
//!   for charts, per day in `[from, to]` (at most 366 days, default the
//!   last 30), cards by template and by status, and verifications per card
//!   (top 100): `{"days": [{"day", "cards_issued", "verifications"}],
//!   "by_template": {...}, "by_status": {...}, "verifications_by_card":
//!   [{"number", "verifications"}]}`.

use serde_json::{Map, Value, json};
use souk_sdk::db;
use souk_sdk::{Problem, Request, Response, params};

use crate::dates::Day;

/// Unix seconds of a day's start.
fn start_of(day: Day) -> i64 {
    day.0 * 86_400
}

/// `GET /analytics`.
pub fn monthly(_request: &Request) -> Result<Response, Problem> {
    let today = Day::today();
    let since = start_of(today.plus(-366));
    let month = |sql: &str| -> Result<Map<String, Value>, Problem> {
        let rows: Vec<(String, i64)> = db::query_as(sql, params![since])?;
        Ok(rows.into_iter().map(|(m, n)| (m, json!(n))).collect())
    };
    let issued = month(
        "SELECT strftime('%Y-%m', created_at, 'unixepoch') AS m, COUNT(*) FROM cards \
         WHERE created_at >= ?1 GROUP BY m",
    )?;
    let scans = month(
        "SELECT strftime('%Y-%m', scanned_at, 'unixepoch') AS m, COUNT(*) FROM scans \
         WHERE scanned_at >= ?1 AND outcome <> 'pending' GROUP BY m",
    )?;
    let shares = month(
        "SELECT strftime('%Y-%m', created_at, 'unixepoch') AS m, COUNT(*) FROM share_links \
         WHERE created_at >= ?1 GROUP BY m",
    )?;
    let mut keys: Vec<&String> = issued
        .keys()
        .chain(scans.keys())
        .chain(shares.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let months: Vec<Value> = keys
        .into_iter()
        .map(|m| {
            json!({
                "month": m,
                "cards_issued": issued.get(m).cloned().unwrap_or(json!(0)),
                "verifications": scans.get(m).cloned().unwrap_or(json!(0)),
                "shares": shares.get(m).cloned().unwrap_or(json!(0)),
            })
        })
        .collect();
    Ok(Response::json(200, &json!({ "months": months })))
}

/// `GET /analytics/advanced`.
pub fn advanced(request: &Request) -> Result<Response, Problem> {
    let day = |name: &str| -> Result<Option<Day>, Problem> {
        request
            .query(name)
            .map(|text| {
                Day::parse(&text)
                    .map_err(|m| Problem::bad_request(format!("query parameter `{name}`: {m}")))
            })
            .transpose()
    };
    let today = Day::today();
    let to = day("to")?.unwrap_or(today);
    let from = day("from")?.unwrap_or(to.plus(-29));
    if from > to || to.0 - from.0 > 365 {
        return Err(Problem::bad_request(
            "`from` must be on or before `to`, at most 366 days apart",
        ));
    }
    let (lo, hi) = (start_of(from), start_of(to.plus(1)));
    let per_day = |sql: &str| -> Result<Map<String, Value>, Problem> {
        let rows: Vec<(String, i64)> = db::query_as(sql, params![lo, hi])?;
        Ok(rows.into_iter().map(|(d, n)| (d, json!(n))).collect())
    };
    let issued = per_day(
        "SELECT date(created_at, 'unixepoch') AS d, COUNT(*) FROM cards \
         WHERE created_at >= ?1 AND created_at < ?2 GROUP BY d",
    )?;
    let scans = per_day(
        "SELECT date(scanned_at, 'unixepoch') AS d, COUNT(*) FROM scans \
         WHERE scanned_at >= ?1 AND scanned_at < ?2 AND outcome <> 'pending' GROUP BY d",
    )?;
    let days: Vec<Value> = (from.0..=to.0)
        .map(|n| {
            let d = Day(n).format();
            json!({
                "day": d,
                "cards_issued": issued.get(&d).cloned().unwrap_or(json!(0)),
                "verifications": scans.get(&d).cloned().unwrap_or(json!(0)),
            })
        })
        .collect();
    let grouped = |sql: &str| -> Result<Map<String, Value>, Problem> {
        let rows: Vec<(String, i64)> = db::query_as(sql, params![])?;
        Ok(rows.into_iter().map(|(k, n)| (k, json!(n))).collect())
    };
    let by_template = grouped("SELECT template, COUNT(*) FROM cards GROUP BY template")?;
    let by_status = grouped("SELECT status, COUNT(*) FROM cards GROUP BY status")?;
    let per_card: Vec<(String, i64)> = db::query_as(
        "SELECT c.number, COUNT(s.id) AS n FROM scans s JOIN cards c ON c.id = s.card_id \
         WHERE s.scanned_at >= ?1 AND s.scanned_at < ?2 GROUP BY c.number \
         ORDER BY n DESC, c.number LIMIT 100",
        params![lo, hi],
    )?;
    Ok(Response::json(
        200,
        &json!({
            "from": from.format(),
            "to": to.format(),
            "days": days,
            "by_template": by_template,
            "by_status": by_status,
            "verifications_by_card": per_card
                .into_iter()
                .map(|(number, n)| json!({"number": number, "verifications": n}))
                .collect::<Vec<_>>(),
        }),
    ))
}
