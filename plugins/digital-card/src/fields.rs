//! Custom card fields (release 1.1.0, business, feature `custom_fields`):
//! the tenant defines extra fields (name, type `text | number | date |
//! choice`, required or not), every new card's values are validated
//! against them, and cards show them.
//!
//! - `GET /fields` → `{"fields": [{"name", "label", "type", "choices",
//!   "required"}]}`
//! - `POST /fields` `{"name", "label"?, "type", "choices"?, "required"?}`
//!   → 201 (409 when the name is taken; at most 20 fields)
//! - `DELETE /fields/{name}` → 204 (its values go too)

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, entitlements, params};

use crate::card::FieldCheck;
use crate::dates::Day;

/// Most fields a tenant may define.
const MAX_FIELDS: i64 = 20;
/// Longest text value or label, in characters.
const MAX_TEXT: usize = 200;

/// A field definition.
#[derive(Debug, Clone, Serialize)]
pub struct FieldDef {
    id: i64,
    /// `[a-z][a-z0-9_]*`, at most 32 characters.
    pub name: String,
    /// Shown on cards.
    pub label: String,
    /// `text`, `number`, `date` or `choice`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `choice`: the allowed values.
    pub choices: Option<Vec<String>>,
    /// Whether every new card must have a value.
    pub required: bool,
}

impl FromRow for FieldDef {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        let choices: Option<String> = row.get("choices")?;
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            label: row.get("label")?,
            kind: row.get("kind")?,
            choices: choices.and_then(|c| serde_json::from_str(&c).ok()),
            required: row.get::<i64>("required")? == 1,
        })
    }
}

fn definitions() -> Result<Vec<FieldDef>, Problem> {
    Ok(db::query_as(
        "SELECT id, name, label, kind, choices, required FROM card_fields ORDER BY id LIMIT 100",
        params![],
    )?)
}

/// `GET /fields`.
pub fn list(_request: &Request) -> Result<Response, Problem> {
    Ok(Response::json(200, &json!({ "fields": definitions()? })))
}

/// The body of `POST /fields`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewField {
    name: String,
    label: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    choices: Option<Vec<String>>,
    #[serde(default)]
    required: bool,
}

fn text_ok(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && text.chars().count() <= MAX_TEXT && !text.chars().any(char::is_control)
}

/// `POST /fields`.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let field: NewField = request.json()?;
    let mut check = FieldCheck::default();
    let name_ok = field.name.len() <= 32
        && field.name.starts_with(|c: char| c.is_ascii_lowercase())
        && field
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name_ok {
        check.fail("name", "must be [a-z][a-z0-9_]*, at most 32 characters");
    }
    let label = field.label.unwrap_or_else(|| field.name.clone());
    if !text_ok(&label) {
        check.fail("label", format!("must be 1 to {MAX_TEXT} characters"));
    }
    if !matches!(field.kind.as_str(), "text" | "number" | "date" | "choice") {
        check.fail("type", "must be text, number, date or choice");
    }
    match (&field.choices, field.kind.as_str()) {
        (Some(choices), "choice") => {
            if choices.is_empty() || choices.len() > 50 || !choices.iter().all(|c| text_ok(c)) {
                check.fail("choices", "1 to 50 non-empty values");
            }
        }
        (None, "choice") => check.fail("choices", "a choice field lists its choices"),
        (Some(_), _) => check.fail("choices", "only a choice field has choices"),
        (None, _) => {}
    }
    check.finish()?;
    let (count,): (i64,) = db::query_one("SELECT COUNT(*) FROM card_fields", params![])?;
    if count >= MAX_FIELDS {
        return Err(Problem::conflict(format!(
            "at most {MAX_FIELDS} custom fields"
        )));
    }
    let choices = field
        .choices
        .map(|c| serde_json::to_string(&c).unwrap_or_default());
    db::execute(
        "INSERT INTO card_fields (name, label, kind, choices, required) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&field.name, label.trim(), &field.kind, &choices, i64::from(field.required)],
    )
    .map_err(|error| {
        if error.is_constraint() {
            Problem::conflict(format!("a field named `{}` exists already", field.name))
        } else {
            error.into()
        }
    })?;
    let def = definitions()?
        .into_iter()
        .find(|d| d.name == field.name)
        .ok_or_else(|| Problem::internal("the field vanished after insert"))?;
    Ok(Response::json(201, &def))
}

/// `DELETE /fields/{name}`.
pub fn delete(request: &Request) -> Result<Response, Problem> {
    let name = request.param("name")?;
    let def = definitions()?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Problem::not_found(format!("no custom field `{name}`")))?;
    db::execute(
        "DELETE FROM card_field_values WHERE field_id = ?1",
        params![def.id],
    )?;
    db::execute("DELETE FROM card_fields WHERE id = ?1", params![def.id])?;
    Ok(Response::no_content())
}

/// Checks a new card's values against the definitions: (field id, value
/// as stored) pairs.
///
/// # Errors
///
/// 402 when values are given without the `custom_fields` feature; 422
/// naming each missing, unknown or mistyped field.
pub fn validate(values: Option<&Map<String, Value>>) -> Result<Vec<(i64, String)>, Problem> {
    let defs = definitions()?;
    if defs.is_empty() && values.is_none_or(Map::is_empty) {
        return Ok(Vec::new());
    }
    if values.is_some_and(|v| !v.is_empty()) {
        entitlements::check_feature("custom_fields").map_err(Problem::from)?;
    }
    let empty = Map::new();
    let values = values.unwrap_or(&empty);
    let mut check = FieldCheck::default();
    let mut out = Vec::new();
    for name in values.keys() {
        if !defs.iter().any(|d| &d.name == name) {
            check.fail("fields", format!("`{name}` is not a custom field"));
        }
    }
    for def in &defs {
        let Some(value) = values.get(&def.name) else {
            if def.required {
                check.fail("fields", format!("`{}` is required", def.name));
            }
            continue;
        };
        let stored = match (def.kind.as_str(), value) {
            ("text", Value::String(s)) if text_ok(s) => Some(s.trim().to_owned()),
            ("number", Value::Number(n)) => Some(n.to_string()),
            ("date", Value::String(s)) => Day::parse(s).ok().map(Day::format),
            ("choice", Value::String(s)) if def.choices.as_ref().is_some_and(|c| c.contains(s)) => {
                Some(s.clone())
            }
            _ => None,
        };
        match stored {
            Some(stored) => out.push((def.id, stored)),
            None => check.fail(
                "fields",
                format!(
                    "`{}` must be {}",
                    def.name,
                    match def.kind.as_str() {
                        "number" => "a number".to_owned(),
                        "date" => "a date written YYYY-MM-DD".to_owned(),
                        "choice" => format!(
                            "one of {}",
                            def.choices.clone().unwrap_or_default().join(", ")
                        ),
                        _ => format!("text of 1 to {MAX_TEXT} characters"),
                    }
                ),
            ),
        }
    }
    check.finish()?;
    Ok(out)
}

/// Stores a new card's validated values.
///
/// # Errors
///
/// A database problem.
pub fn store(card_id: i64, values: &[(i64, String)]) -> Result<(), Problem> {
    for (field_id, value) in values {
        db::execute(
            "INSERT INTO card_field_values (card_id, field_id, value) VALUES (?1, ?2, ?3)",
            params![card_id, field_id, value],
        )?;
    }
    Ok(())
}

/// A card's values: (name, label, value), in definition order.
///
/// # Errors
///
/// A database problem.
pub fn of_card(card_id: i64) -> Result<Vec<(String, String, String)>, Problem> {
    Ok(db::query_as(
        "SELECT f.name, f.label, v.value FROM card_field_values v \
         JOIN card_fields f ON f.id = v.field_id WHERE v.card_id = ?1 ORDER BY f.id",
        params![card_id],
    )?)
}

/// Deletes a card's values.
///
/// # Errors
///
/// A database problem.
pub fn forget_card(card_id: i64) -> Result<(), Problem> {
    db::execute(
        "DELETE FROM card_field_values WHERE card_id = ?1",
        params![card_id],
    )?;
    Ok(())
}
