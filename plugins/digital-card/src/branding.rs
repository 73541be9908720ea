//! Custom branding (release 1.1.0, pro, feature `custom_branding`): the
//! tenant's logo, colours and font, used on card faces and the public
//! pages while its plan has the feature (the settings are kept when it
//! does not, and apply again after an upgrade).
//!
//! - `GET /branding` → `{"background", "text", "accent", "font", "has_logo"}`
//! - `PUT /branding` `{"background"?, "text"?, "accent"? (#rrggbb or null),
//!   "font" (sans | serif | mono)}` → 200
//! - `PUT /branding/logo`: a PNG or JPEG of at most 512 KiB → 200

use serde::Deserialize;
use serde_json::json;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, entitlements, files, params};

use crate::card::FieldCheck;
use crate::image::{delete_replaced, image_body};

/// Largest logo, in bytes.
const MAX_LOGO_BYTES: usize = 512 * 1024;

/// The tenant's branding.
#[derive(Debug, Clone, Default)]
pub struct Branding {
    /// Card background colour.
    pub background: Option<String>,
    /// Text colour.
    pub text: Option<String>,
    /// Accent (band) colour.
    pub accent: Option<String>,
    /// `sans`, `serif` or `mono`.
    pub font: String,
    /// The logo's file id.
    pub logo_file_id: Option<String>,
}

impl FromRow for Branding {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            background: row.get("background")?,
            text: row.get("text_colour")?,
            accent: row.get("accent")?,
            font: row.get("font")?,
            logo_file_id: row.get("logo_file_id")?,
        })
    }
}

impl Branding {
    /// The CSS/SVG font family of the font choice, naming the fonts the
    /// module embeds (`fonts.rs`): `sans` Noto Sans, `serif` Noto Serif,
    /// both with Noto Sans Devanagari for Nepali; `mono` asks a browser
    /// for its monospace font and is drawn with Noto Sans in PNG and PDF
    /// exports (no monospaced face is embedded).
    pub fn font_family(&self) -> &'static str {
        match self.font.as_str() {
            "serif" => crate::fonts::SERIF,
            "mono" => crate::fonts::MONO,
            _ => crate::fonts::SANS,
        }
    }
}

fn load() -> Result<Branding, Problem> {
    Ok(db::query_optional(
        "SELECT background, text_colour, accent, font, logo_file_id FROM branding WHERE id = 1",
        params![],
    )?
    .unwrap_or_default())
}

/// The branding to apply now: the tenant's, when its plan has
/// `custom_branding`; none otherwise.
///
/// # Errors
///
/// A database problem.
pub fn active() -> Result<Option<Branding>, Problem> {
    if !entitlements::has_feature("custom_branding") {
        return Ok(None);
    }
    load().map(Some)
}

/// The logo (content type, bytes) of a branding, if it has one.
///
/// # Errors
///
/// A file problem.
pub fn logo(branding: &Branding) -> Result<Option<(String, Vec<u8>)>, Problem> {
    match &branding.logo_file_id {
        Some(id) => {
            let info = files::get(id)?;
            Ok(Some((info.content_type, files::read(id)?)))
        }
        None => Ok(None),
    }
}

fn to_json(branding: &Branding) -> serde_json::Value {
    json!({
        "background": branding.background,
        "text": branding.text,
        "accent": branding.accent,
        "font": branding.font,
        "has_logo": branding.logo_file_id.is_some(),
    })
}

/// `GET /branding`.
pub fn show(_request: &Request) -> Result<Response, Problem> {
    Ok(Response::json(200, &to_json(&load()?)))
}

/// The body of `PUT /branding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandingBody {
    background: Option<String>,
    text: Option<String>,
    accent: Option<String>,
    font: String,
}

/// Whether `text` is a colour written `#rrggbb`.
pub fn colour_ok(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `PUT /branding`.
pub fn replace(request: &Request) -> Result<Response, Problem> {
    let body: BrandingBody = request.json()?;
    let mut check = FieldCheck::default();
    for (field, value) in [
        ("background", &body.background),
        ("text", &body.text),
        ("accent", &body.accent),
    ] {
        if value.as_deref().is_some_and(|v| !colour_ok(v)) {
            check.fail(field, "must be a colour written #rrggbb, or null");
        }
    }
    if !matches!(body.font.as_str(), "sans" | "serif" | "mono") {
        check.fail("font", "must be sans, serif or mono");
    }
    check.finish()?;
    db::execute(
        "UPDATE branding SET background = ?1, text_colour = ?2, accent = ?3, font = ?4 WHERE id = 1",
        params![&body.background, &body.text, &body.accent, &body.font],
    )?;
    show(request)
}

/// `PUT /branding/logo`.
pub fn put_logo(request: &Request) -> Result<Response, Problem> {
    let (bytes, content_type) = image_body(request, "logo", MAX_LOGO_BYTES)?;
    let old = load()?.logo_file_id;
    let info = files::put("logo", content_type, bytes)?;
    db::execute(
        "UPDATE branding SET logo_file_id = ?1 WHERE id = 1",
        params![&info.id],
    )?;
    delete_replaced(old.as_deref())?;
    show(request)
}
