//! Test module `cards`: a Digital-Card-style module whose routes exercise
//! every part of the entitlements API (module API 0.2.0) through the SDK.
//!
//! It declares thirteen features, two count limits (`max_cards`,
//! `max_templates`) and one meter (`qr_scans_per_month`). Its manifest
//! gates routes by feature, by count limit (`limit: max_cards`: the host
//! checks there is room for one more card before the module runs) and by
//! meter (`meter: qr_scans_per_month`: the host checks the allowance before
//! and records one unit after a 2xx).
//!
//! Routes:
//! - `GET /cards` → `200 {"cards": [{"id", "name"}]}`.
//! - `POST /cards` `{"name"}` → consumes one `max_cards` (once per request
//!   `idempotency-key` header, when given) and inserts → `201 {"id", "name",
//!   "usage": {"used", "limit"}}`; a refusal is the SDK's denial problem.
//! - `POST /cards/batch` `{"count", "prefix"}` → consumes `count` units at
//!   once (all or nothing), inserts `prefix 1` … `prefix N` → `201 {"cards",
//!   "usage"}`.
//! - `DELETE /cards/{id}` → deletes and releases one `max_cards` (idempotency
//!   key `card-<id>`) → `204`; `404` when there is no such card.
//! - `GET /cards/{id}/qr` → `200 {"id", "qr": "souk-card:<id>"}`; `404` when
//!   there is no such card.
//! - `POST /scans` `{"key"}` → records one `qr_scans_per_month` event with
//!   that idempotency key → `200 {"used", "limit"}` or the denial.
//! - `GET /templates/premium` → checks `premium_templates` itself too →
//!   `200 {"templates": [...]}`.
//! - `GET /limits/{key}` → `200 {"key", "usage": {"used", "limit"} | null,
//!   "feature": bool}`: the module reading its own plan.
//! - `POST /units` `{"key", "quantity", "idempotency_key"?}` → consumes
//!   `quantity` units of count limit `key` as given, unchecked by the module
//!   (a hostile module's call) → `200 {"used", "limit"}` or the SDK's answer
//!   to the refusal.
//! - `POST /units/record` `{"amount", "idempotency_key"}` → records `amount`
//!   of `qr_scans_per_month` as given → `200 {"used", "limit"}` or the
//!   refusal.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::entitlements;
use souk_sdk::{
    Gates, LimitKind, Migration, Module, Problem, Request, Response, Router, log, params,
};

/// The count limit on cards.
const MAX_CARDS: &str = "max_cards";
/// The meter of QR scans.
const QR_SCANS: &str = "qr_scans_per_month";
/// Most cards one batch may create.
const MAX_BATCH: u64 = 100;

/// The cards table. `AUTOINCREMENT` keeps ids from being reused after a
/// delete, so `card-<id>` stays a unique release key.
const CARDS: Migration = Migration::new(
    "0001_cards",
    "CREATE TABLE cards (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)",
    "DROP TABLE cards",
);

/// The cards test module.
struct Cards;

impl Module for Cards {
    fn migrations() -> Vec<Migration> {
        vec![CARDS]
    }

    fn gates() -> Gates {
        Gates::new()
            .feature("card_creation", "Create digital cards.")
            .feature("basic_templates", "Use the basic card templates.")
            .feature("qr_code_generation", "Generate a QR code for a card.")
            .feature("share_links", "Share a card by link.")
            .feature("advanced_templates", "Use the advanced card templates.")
            .feature(
                "custom_branding",
                "Put the organisation's own branding on cards.",
            )
            .feature("batch_generation", "Create many cards in one request.")
            .feature("basic_analytics", "See how often cards are viewed.")
            .feature("premium_templates", "Use the premium card templates.")
            .feature("white_label", "Remove Souk branding from cards.")
            .feature("api_access", "Manage cards through the API.")
            .feature(
                "advanced_analytics",
                "Detailed analytics on card views and scans.",
            )
            .feature("webhooks", "Receive webhooks on card events.")
            .limit(
                MAX_CARDS,
                "How many cards a tenant may keep.",
                LimitKind::Count,
            )
            .limit(
                "max_templates",
                "How many custom templates a tenant may keep.",
                LimitKind::Count,
            )
            .limit(QR_SCANS, "QR code scans per month.", LimitKind::Meter)
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/cards", list_cards)
            .post("/cards", create_card)
            .post("/cards/batch", create_batch)
            .post("/cards/doomed", create_doomed)
            .delete("/cards/{id}", delete_card)
            .get("/cards/{id}/qr", card_qr)
            .post("/scans", record_scan)
            .get("/templates/premium", premium_templates)
            .get("/limits/{key}", read_limit)
            .post("/units", consume_units)
            .post("/units/record", record_units)
            .handle(request)
    }
}

/// A card as the API returns it.
#[derive(Debug, Serialize)]
struct Card {
    id: i64,
    name: String,
}

impl FromRow for Card {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Card {
            id: row.get("id")?,
            name: row.get("name")?,
        })
    }
}

/// `POST /cards` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCard {
    name: String,
}

/// `POST /cards/batch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBatch {
    count: u64,
    prefix: String,
}

/// `POST /units` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnits {
    key: String,
    quantity: u64,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /units/record` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    amount: u64,
    idempotency_key: String,
}

/// `POST /scans` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scan {
    key: String,
}

fn card_name(name: &str) -> Result<&str, Problem> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(Problem::unprocessable("`name` must be 1 to 200 characters"));
    }
    Ok(name)
}

fn card_id(request: &Request) -> Result<i64, Problem> {
    let raw = request.param("id")?;
    raw.parse()
        .map_err(|_| Problem::not_found(format!("there is no card `{raw}`")))
}

fn insert_card(name: &str) -> Result<Card, Problem> {
    let changes = db::execute("INSERT INTO cards (name) VALUES (?1)", params![name])?;
    let id = changes
        .last_insert_id
        .ok_or_else(|| Problem::internal("the insert reported no row id"))?;
    Ok(Card {
        id,
        name: name.to_owned(),
    })
}

fn list_cards(_request: &Request) -> Result<Response, Problem> {
    let cards: Vec<Card> = db::query_as("SELECT id, name FROM cards ORDER BY id", params![])?;
    Ok(Response::json(200, &json!({ "cards": cards })))
}

fn create_card(request: &Request) -> Result<Response, Problem> {
    let body: NewCard = request.json()?;
    let name = card_name(&body.name)?;
    let usage = match request.header("idempotency-key") {
        Some(key) => entitlements::consume_once(MAX_CARDS, 1, key)?,
        None => entitlements::consume(MAX_CARDS, 1)?,
    };
    let card = match insert_card(name) {
        Ok(card) => card,
        Err(problem) => {
            give_back(1);
            return Err(problem);
        }
    };
    log::info(format!("card {} created", card.id));
    Ok(Response::json(
        201,
        &json!({ "id": card.id, "name": card.name, "usage": usage }),
    ))
}

fn create_batch(request: &Request) -> Result<Response, Problem> {
    let body: NewBatch = request.json()?;
    if body.count == 0 || body.count > MAX_BATCH {
        return Err(Problem::unprocessable(format!(
            "`count` must be 1 to {MAX_BATCH}"
        )));
    }
    let prefix = card_name(&body.prefix)?;
    // All or nothing: the host takes every unit or none.
    let usage = entitlements::consume(MAX_CARDS, body.count)?;
    let mut cards = Vec::new();
    for n in 1..=body.count {
        match insert_card(&format!("{prefix} {n}")) {
            Ok(card) => cards.push(card),
            Err(problem) => {
                give_back(body.count);
                return Err(problem);
            }
        }
    }
    Ok(Response::json(
        201,
        &json!({ "cards": cards, "usage": usage }),
    ))
}

/// Takes a unit and inserts a card, then fails with a 500 without giving
/// anything back: the host must roll back both the row and the unit.
fn create_doomed(_request: &Request) -> Result<Response, Problem> {
    entitlements::consume(MAX_CARDS, 1)?;
    insert_card("doomed")?;
    entitlements::record_usage(QR_SCANS, 1, "doomed-scan")?;
    Err(Problem::internal("failing on purpose after taking a unit"))
}

/// Returns units taken for work that then failed (best effort: the failure
/// being reported matters more than a failed release).
fn give_back(quantity: u64) {
    if let Err(error) = entitlements::release(MAX_CARDS, quantity) {
        log::warn(format!("could not release {quantity} {MAX_CARDS}: {error}"));
    }
}

fn delete_card(request: &Request) -> Result<Response, Problem> {
    let id = card_id(request)?;
    let changes = db::execute("DELETE FROM cards WHERE id = ?1", params![id])?;
    if changes.rows_affected == 0 {
        return Err(Problem::not_found(format!("there is no card {id}")));
    }
    entitlements::release_once(MAX_CARDS, 1, &format!("card-{id}"))?;
    Ok(Response::no_content())
}

fn card_qr(request: &Request) -> Result<Response, Problem> {
    let id = card_id(request)?;
    let found: Option<(i64,)> =
        db::query_optional("SELECT id FROM cards WHERE id = ?1", params![id])?;
    if found.is_none() {
        return Err(Problem::not_found(format!("there is no card {id}")));
    }
    Ok(Response::json(
        200,
        &json!({ "id": id, "qr": format!("souk-card:{id}") }),
    ))
}

fn record_scan(request: &Request) -> Result<Response, Problem> {
    let scan: Scan = request.json()?;
    if scan.key.is_empty() {
        return Err(Problem::unprocessable("`key` must not be empty"));
    }
    let usage = entitlements::record_usage(QR_SCANS, 1, &scan.key)?;
    Ok(Response::json(200, &usage))
}

fn premium_templates(_request: &Request) -> Result<Response, Problem> {
    // The host gates the route already; the module may ask too.
    entitlements::check_feature("premium_templates")?;
    Ok(Response::json(
        200,
        &json!({ "templates": ["aurora", "monsoon", "himal"] }),
    ))
}

fn read_limit(request: &Request) -> Result<Response, Problem> {
    let key = request.param("key")?;
    Ok(Response::json(
        200,
        &json!({
            "key": key,
            "usage": entitlements::usage(key),
            "feature": entitlements::has_feature(key),
        }),
    ))
}

/// Hands the host whatever quantity the client sent: what a hostile module
/// could do.
fn consume_units(request: &Request) -> Result<Response, Problem> {
    let body: RawUnits = request.json()?;
    let usage = match &body.idempotency_key {
        Some(key) => entitlements::consume_once(&body.key, body.quantity, key)?,
        None => entitlements::consume(&body.key, body.quantity)?,
    };
    Ok(Response::json(200, &usage))
}

/// Hands the host whatever amount the client sent.
fn record_units(request: &Request) -> Result<Response, Problem> {
    let body: RawRecord = request.json()?;
    let usage = entitlements::record_usage(QR_SCANS, body.amount, &body.idempotency_key)?;
    Ok(Response::json(200, &usage))
}

souk_sdk::export_module!(Cards);
