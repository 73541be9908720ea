//! The public pages: a card's verification page (`GET /v/{token}`, what
//! its QR code opens) and a share link's card page (`GET /s/{token}`).
//! Both answer HTML, or JSON for `Accept: application/json`.
//!
//! A verification tells a stranger whether the card is valid, with the
//! holder's name and photo and the organisation's name — nothing else. A
//! revoked card and a token no card has answer the very same document, so
//! the page tells nothing about which tokens exist. Every verification
//! (known token or not) counts one unit of `qr_scans_per_month`; past the
//! month's allowance the page says the organisation's verification quota
//! is used up and shows no card data.
//!
//! The HTML pages wear the organisation's look when its plan has
//! `custom_branding` (its colours, font and logo, the same for every
//! token, so they tell nothing about a card), and carry a small
//! "Verified with Souk" mark unless the plan has `white_label`.

use serde_json::{Value, json};
use souk_sdk::db;
use souk_sdk::entitlements::{self, EntitlementError};
use souk_sdk::{Problem, Request, Response, events, files, params};

use crate::card::{CARD_COLUMNS, Card};
use crate::dates::{Day, now_unix};
use crate::render::{self, Face, escape};
use crate::{members, settings, token};

/// The meter each verification counts against.
pub const SCAN_METER: &str = "qr_scans_per_month";
/// How long a photo URL on a public page stays valid, in seconds.
const PHOTO_URL_TTL: u32 = 300;

/// What a verification found.
enum Outcome {
    Valid(Card),
    Expired(Card),
    /// Revoked, unknown or malformed: one answer for all.
    NotValid,
}

/// `GET /v/{token}` (public).
pub fn verify(request: &Request) -> Result<Response, Problem> {
    let token = request.param("token")?;
    // The scan is written first: a GET runs in a deferred transaction, and
    // a write as its first statement takes the tenant's write lock (waiting
    // for it), where a read first could find its snapshot made stale by a
    // concurrent writer (the host's event worker) and be run again.
    let scan = db::execute(
        "INSERT INTO scans (card_id, scanned_at, outcome) VALUES (NULL, ?1, 'pending')",
        params![now_unix()],
    )?;
    let scan_id = scan
        .last_insert_id
        .ok_or_else(|| Problem::internal("the scan row has no id"))?;
    let settings = settings::load()?;
    let card: Option<Card> = if token::well_formed(token) {
        db::query_optional(
            &format!("SELECT {CARD_COLUMNS} FROM cards WHERE token = ?1"),
            params![token],
        )?
    } else {
        None
    };
    let today = Day::today().format();
    let outcome = match card {
        Some(card) if card.status == "revoked" => Outcome::NotValid,
        Some(card) if card.status == "expired" || card.expires_on < today => Outcome::Expired(card),
        Some(card) => Outcome::Valid(card),
        None => Outcome::NotValid,
    };
    let (card_id, outcome_name) = match &outcome {
        Outcome::Valid(card) => (Some(card.id), "valid"),
        Outcome::Expired(card) => (Some(card.id), "expired"),
        Outcome::NotValid => (None, "not_valid"),
    };
    db::execute(
        "UPDATE scans SET card_id = ?2, outcome = ?3 WHERE id = ?1",
        params![scan_id, card_id, outcome_name],
    )?;
    let key = format!("scan-{scan_id}");
    match entitlements::record_usage(SCAN_METER, 1, &key) {
        Ok(_) => {}
        Err(EntitlementError::Denied(_)) => {
            db::execute(
                "UPDATE scans SET outcome = 'over_quota' WHERE id = ?1",
                params![scan_id],
            )?;
            let body = json!({
                "status": "unavailable",
                "organisation": settings.organisation_name,
                "message": "This organisation's card verifications for this month are used up; \
                            the card cannot be checked here until next month.",
            });
            return answer(request, 200, &body, &settings.organisation_name);
        }
        Err(error @ EntitlementError::UnknownKey(_)) => return Err(error.into()),
    }
    let body = match &outcome {
        Outcome::Valid(card) | Outcome::Expired(card) => {
            let valid = matches!(outcome, Outcome::Valid(_));
            let holder = members::name_of(&card.member_number)?;
            let photo_url = match &card.photo_file_id {
                Some(id) => files::signed_url(id, PHOTO_URL_TTL).ok(),
                None => None,
            };
            events::emit(
                "card.verified",
                &json!({"number": card.number, "status": if valid { "valid" } else { "expired" }}),
            )
            .map_err(|error| Problem::internal(format!("card.verified: {error}")))?;
            json!({
                "status": if valid { "valid" } else { "expired" },
                "organisation": settings.organisation_name,
                "holder": { "name": holder, "photo_url": photo_url },
            })
        }
        Outcome::NotValid => json!({
            "status": "not_valid",
            "organisation": settings.organisation_name,
            "message": "This card is not valid.",
        }),
    };
    answer(request, 200, &body, &settings.organisation_name)
}

/// `GET /s/{token}` (public): the card a share link shows, while the link
/// is neither revoked nor expired; a plain 404 otherwise.
pub fn shared(request: &Request) -> Result<Response, Problem> {
    let not_found = || Problem::not_found("this link is not valid");
    let token = request.param("token")?;
    if !token::well_formed(token) {
        return Err(not_found());
    }
    let link: Option<(i64,)> = db::query_optional(
        "SELECT card_id FROM share_links WHERE token = ?1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > ?2)",
        params![token, now_unix()],
    )?;
    let (card_id,) = link.ok_or_else(not_found)?;
    let card: Card = db::query_optional(
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE id = ?1"),
        params![card_id],
    )?
    .ok_or_else(not_found)?;
    let settings = settings::load()?;
    let holder = members::name_of(&card.member_number)?;
    if request
        .header("accept")
        .is_some_and(|accept| accept.contains("application/json"))
    {
        return Ok(Response::json(
            200,
            &json!({
                "organisation": settings.organisation_name,
                "holder": holder,
                "number": card.number,
                "status": card.status,
                "expires_on": card.expires_on,
            }),
        )
        .with_header("cache-control", "no-store"));
    }
    let template = render::find(&card.template)?
        .ok_or_else(|| Problem::internal(format!("template `{}` is missing", card.template)))?;
    let (template, font_family, logo) = crate::routes::branded(template)?;
    let face = Face {
        organisation: &settings.organisation_name,
        holder: &holder,
        member_number: &card.member_number,
        card_number: &card.number,
        expires_on: &card.expires_on,
        status: &card.status,
        photo: None,
        verification_url: settings
            .verification_base()
            .map(|base| crate::card::verification_url(base, &card.token)),
        souk_mark: !entitlements::has_feature("white_label"),
        extra: Vec::new(),
        font_family,
        logo,
    };
    let svg = render::card_svg(&template, &face).map_err(Problem::internal)?;
    let html = page(
        &PageLook::load(&settings.organisation_name)?,
        &format!("<div class=\"card\">{svg}</div>"),
    );
    Ok(html_response(html))
}

/// JSON or HTML by `Accept`.
fn answer(
    request: &Request,
    status: u16,
    body: &Value,
    organisation: &str,
) -> Result<Response, Problem> {
    let wants_json = request
        .header("accept")
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        return Ok(Response::json(status, body)
            .with_header("cache-control", "no-store")
            .with_header("x-robots-tag", "noindex"));
    }
    let (headline, colour) = match body["status"].as_str() {
        Some("valid") => ("Valid card", "#15803d"),
        Some("expired") => ("Expired card", "#b45309"),
        Some("unavailable") => ("Verification unavailable", "#475569"),
        _ => ("Not a valid card", "#b91c1c"),
    };
    let mut content = format!("<h1 style=\"color:{colour}\">{}</h1>", escape(headline));
    if let Some(name) = body["holder"]["name"].as_str() {
        if let Some(url) = body["holder"]["photo_url"].as_str() {
            content.push_str(&format!(
                "<img src=\"{}\" alt=\"\" width=\"180\">",
                escape(url)
            ));
        }
        content.push_str(&format!("<p class=\"holder\">{}</p>", escape(name)));
    }
    if let Some(message) = body["message"].as_str() {
        content.push_str(&format!("<p>{}</p>", escape(message)));
    }
    Ok(
        html_response(page(&PageLook::load(organisation)?, &content))
            .with_header("x-robots-tag", "noindex"),
    )
}

fn html_response(html: String) -> Response {
    Response::text(200, html)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_header("cache-control", "no-store")
        .with_header(
            "content-security-policy",
            "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
        )
}

/// How a public page looks: the organisation's branding (while the plan
/// has `custom_branding`) and whether it carries the Souk mark.
struct PageLook {
    organisation: String,
    /// Page background, text and accent colours (`#rrggbb`).
    background: Option<String>,
    text: Option<String>,
    accent: Option<String>,
    /// CSS font family.
    font_family: &'static str,
    /// A short-lived signed URL of the logo.
    logo_url: Option<String>,
    souk_mark: bool,
}

impl PageLook {
    fn load(organisation: &str) -> Result<Self, Problem> {
        #[cfg_attr(not(feature = "release-1-1"), allow(unused_mut))]
        let mut look = Self {
            organisation: organisation.to_owned(),
            background: None,
            text: None,
            accent: None,
            font_family: crate::fonts::SANS,
            logo_url: None,
            souk_mark: !entitlements::has_feature("white_label"),
        };
        #[cfg(feature = "release-1-1")]
        if let Some(branding) = crate::branding::active()? {
            let checked =
                |colour: &Option<String>| colour.clone().filter(|c| crate::branding::colour_ok(c));
            look.background = checked(&branding.background);
            look.text = checked(&branding.text);
            look.accent = checked(&branding.accent);
            look.font_family = branding.font_family();
            look.logo_url = branding
                .logo_file_id
                .as_deref()
                .and_then(|id| files::signed_url(id, PHOTO_URL_TTL).ok());
        }
        Ok(look)
    }
}

fn page(look: &PageLook, content: &str) -> String {
    let mut style = format!(
        "body{{font-family:{};max-width:40rem;margin:2rem auto;padding:0 1rem",
        look.font_family
    );
    if let Some(colour) = &look.background {
        style.push_str(&format!(";background:{colour}"));
    }
    if let Some(colour) = &look.text {
        style.push_str(&format!(";color:{colour}"));
    }
    style.push_str(
        "}.holder{font-size:1.5rem;font-weight:bold}.card svg{max-width:100%;height:auto}\
         .org{display:flex;align-items:center;gap:.75rem;font-weight:bold}\
         .mark{margin-top:3rem;font-size:.75rem;opacity:.6}",
    );
    if let Some(colour) = &look.accent {
        style.push_str(&format!(
            ".org{{color:{colour};border-bottom:4px solid {colour};padding-bottom:.5rem}}"
        ));
    }
    let logo = look.logo_url.as_deref().map_or(String::new(), |url| {
        format!(
            "<img src=\"{}\" alt=\"\" height=\"48\" class=\"logo\">",
            escape(url)
        )
    });
    let mark = if look.souk_mark {
        "<p class=\"mark\">Verified with Souk</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{org}</title><style>{style}</style></head>\
         <body><p class=\"org\">{logo}<span>{org}</span></p>{content}{mark}</body></html>",
        org = escape(&look.organisation)
    )
}
