//! The module's admin routes: cards, their QR codes and faces, photos and
//! share links. The public pages are in `verify.rs`, settings in
//! `settings.rs`.

use serde::Deserialize;
use serde_json::json;
use souk_sdk::db;
use souk_sdk::entitlements;
use souk_sdk::{Problem, Request, Response, Router, events, files, params};

use crate::card::{
    CARD_COLUMNS, Card, CardStatus, NewCard, Renewal, Revocation, card_not_found, check_number,
    problems,
};
use crate::dates::{Day, format_instant, now_unix};
use crate::image::{delete_replaced, image_body};
use crate::render;
use crate::{members, qr, settings, token, verify};

/// Cards per page of `GET /cards` when `limit` is not given.
const DEFAULT_PAGE: u32 = 50;
/// The most cards a client may ask for per page.
const MAX_PAGE: u32 = 200;
/// Largest photo, in bytes.
const MAX_PHOTO_BYTES: usize = 2 * 1024 * 1024;
/// Share links a card may have (revoked ones included).
const MAX_SHARE_LINKS: i64 = 50;
/// Pixel size of `GET /cards/{number}/qr.svg`.
const QR_SIZE: u32 = 320;

/// The module's routes.
pub fn router() -> Router {
    let router = Router::new()
        .before(settings::note_public_url)
        .get("/settings", settings::show)
        .put("/settings", settings::replace)
        .get("/templates", render::list)
        .get("/cards", list_cards)
        .post("/cards", issue_card)
        .get("/cards/{number}", show_card)
        .delete("/cards/{number}", delete_card)
        .post("/cards/{number}/revoke", revoke_card)
        .post("/cards/{number}/renew", renew_card)
        .put("/cards/{number}/photo", put_photo)
        .get("/cards/{number}/qr.svg", qr_svg)
        .get("/cards/{number}/card.svg", card_svg)
        .get("/cards/{number}/card.png", crate::export::card_png)
        .get("/cards/{number}/card.pdf", crate::export::card_pdf)
        .get("/cards/{number}/share-links", list_share_links)
        .post("/cards/{number}/share-links", create_share_link)
        .delete("/cards/{number}/share-links/{id}", revoke_share_link)
        .post("/batches", crate::batch::create)
        .post("/exports", crate::export::create)
        .post("/qr-sheets", crate::export::create_qr_sheet)
        .get("/analytics", crate::analytics::monthly)
        .get("/branding", branding_show)
        .put("/branding", branding_replace)
        .put("/branding/logo", branding_logo)
        .get("/fields", fields_list)
        .post("/fields", fields_create)
        .delete("/fields/{name}", fields_delete)
        .get("/analytics/advanced", crate::analytics::advanced)
        .get("/v/{token}", verify::verify)
        .get("/s/{token}", verify::shared);
    #[cfg(feature = "release-1-2")]
    let router = router
        .get("/templates/{slug}", crate::templates::show)
        .post("/templates", crate::templates::create)
        .put("/templates/{slug}", crate::templates::replace)
        .delete("/templates/{slug}", crate::templates::delete)
        .post("/qr-zips", crate::qr_zip::create);
    router
}

/// The card with this number, if any.
pub fn find_card(number: &str) -> Result<Option<Card>, Problem> {
    Ok(db::query_optional(
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE number = ?1"),
        params![number],
    )?)
}

/// The card the path's `{number}` names; a 404 problem when none has it.
pub fn card_or_404(request: &Request) -> Result<Card, Problem> {
    let number = request.param("number")?;
    find_card(number)?.ok_or_else(|| card_not_found(number))
}

fn card_response(status: u16, card: &Card) -> Result<Response, Problem> {
    let settings = settings::load()?;
    #[cfg_attr(not(feature = "release-1-1"), allow(unused_mut))]
    let mut body = card.to_json(settings.verification_base());
    #[cfg(feature = "release-1-1")]
    {
        let fields: serde_json::Map<String, serde_json::Value> = crate::fields::of_card(card.id)?
            .into_iter()
            .map(|(name, _, value)| (name, json!(value)))
            .collect();
        body["fields"] = json!(fields);
    }
    Ok(Response::json(status, &body))
}

/// The custom field lines a card face shows (`label: value`).
pub fn field_lines(card: &Card) -> Result<Vec<String>, Problem> {
    #[cfg(feature = "release-1-1")]
    {
        Ok(crate::fields::of_card(card.id)?
            .into_iter()
            .map(|(_, label, value)| format!("{label}: {value}"))
            .collect())
    }
    #[cfg(not(feature = "release-1-1"))]
    {
        let _ = card;
        Ok(Vec::new())
    }
}

/// Emits a `card.*` event in the call's transaction.
pub fn emit(event_type: &str, payload: &serde_json::Value) -> Result<(), Problem> {
    events::emit(event_type, payload)
        .map(|_| ())
        .map_err(|error| Problem::internal(format!("{event_type}: {error}")))
}

/// `GET /cards[?status=][&member=][&expires_before=][&expires_after=][&limit=][&after=]`:
/// cards by number... in issue order (keyset pagination: pass `next` as
/// `after`). `expires_before`/`expires_after` are inclusive days.
fn list_cards(request: &Request) -> Result<Response, Problem> {
    let bad = |name: &str, message: String| {
        Problem::bad_request(format!("query parameter `{name}`: {message}"))
    };
    let status = match request.query("status") {
        Some(text) => Some(CardStatus::parse(&text).map_err(|m| bad("status", m))?),
        None => None,
    };
    let member = request.query("member");
    if let Some(member) = &member {
        check_number(member).map_err(|m| bad("member", m))?;
    }
    let day = |name: &str| -> Result<Option<String>, Problem> {
        request
            .query(name)
            .map(|text| Day::parse(&text).map(Day::format).map_err(|m| bad(name, m)))
            .transpose()
    };
    let (before, after_day) = (day("expires_before")?, day("expires_after")?);
    let limit = request
        .query_parsed::<u32>("limit")?
        .unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(bad("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    let after = request.query_parsed::<i64>("after")?.unwrap_or(0);
    let cards: Vec<Card> = db::query_as(
        &format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE id > ?1 \
             AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR member_number = ?3) \
             AND (?4 IS NULL OR expires_on <= ?4) AND (?5 IS NULL OR expires_on >= ?5) \
             ORDER BY id LIMIT ?6"
        ),
        params![
            after,
            status.map(CardStatus::as_str),
            &member,
            &before,
            &after_day,
            limit + 1
        ],
    )?;
    let settings = settings::load()?;
    let more = cards.len() > limit as usize;
    let page: Vec<_> = cards.iter().take(limit as usize).collect();
    let next = if more {
        page.last().map(|c| c.id)
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({
            "cards": page.iter().map(|c| c.to_json(settings.verification_base())).collect::<Vec<_>>(),
            "next": next,
        }),
    ))
}

/// `POST /cards`: issues a card to a member (201), consuming one unit of
/// `max_cards`.
fn issue_card(request: &Request) -> Result<Response, Problem> {
    let settings = settings::load()?;
    let today = Day::today();
    let body = request.json::<NewCard>()?;
    #[cfg(feature = "release-1-1")]
    let values = crate::fields::validate(body.fields.as_ref())?;
    let new = body.validate(today, settings.valid_days)?;
    let card = issue(&new, &settings)?;
    #[cfg(feature = "release-1-1")]
    crate::fields::store(card.id, &values)?;
    card_response(201, &card)
}

/// Issues a validated card: checks the member, the template and the
/// one-active-card rule, takes the `max_cards` unit, writes, emits
/// `card.issued`.
pub fn issue(
    new: &crate::card::CardRequest,
    settings: &settings::Settings,
) -> Result<Card, Problem> {
    let (_, member_status) = members::find(&new.member)?.ok_or_else(|| {
        crate::card::invalid(vec![crate::card::FieldError {
            field: "member",
            message: format!("no member has number `{}`", new.member),
        }])
    })?;
    if member_status == "left" {
        return Err(crate::card::invalid(vec![crate::card::FieldError {
            field: "member",
            message: format!("member `{}` has left", new.member),
        }]));
    }
    let template = usable_template(&new.template)?;
    if !settings.allow_multiple_active {
        let (active,): (i64,) = db::query_one(
            "SELECT COUNT(*) FROM cards WHERE member_number = ?1 AND status = 'active'",
            params![&new.member],
        )?;
        if active > 0 {
            return Err(
                Problem::new(409, problems::ACTIVE_CARD, "Member has an active card").with_detail(
                    format!(
                        "member `{}` already has an active card; revoke it, or allow several \
                     active cards in the settings",
                        new.member
                    ),
                ),
            );
        }
    }
    let number = match &new.number {
        Some(number) => {
            if find_card(number)?.is_some() {
                return Err(duplicate(number));
            }
            number.clone()
        }
        None => next_free_number()?,
    };
    entitlements::consume("max_cards", 1).map_err(Problem::from)?;
    let token = token::fresh()?;
    db::execute(
        "INSERT INTO cards (number, member_number, status, issued_on, expires_on, template, \
         token, created_at) VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7)",
        params![
            &number,
            &new.member,
            new.issued_on.format(),
            new.expires_on.format(),
            &template.slug,
            &token,
            now_unix()
        ],
    )
    .map_err(|error| {
        if error.is_constraint() {
            duplicate(&number)
        } else {
            error.into()
        }
    })?;
    let card = find_card(&number)?
        .ok_or_else(|| Problem::internal(format!("card `{number}` vanished after insert")))?;
    emit(
        "card.issued",
        &json!({"number": card.number, "member": card.member_number, "expires_on": card.expires_on}),
    )?;
    Ok(card)
}

/// The template with this slug, when the plan has its tier's feature:
/// 422 when there is none, the plan's 402 problem (naming
/// `advanced_templates` or `premium_templates`) when the plan lacks it.
pub fn usable_template(slug: &str) -> Result<render::Template, Problem> {
    let template = render::find(slug)?.ok_or_else(|| {
        crate::card::invalid(vec![crate::card::FieldError {
            field: "template",
            message: format!("no template has slug `{slug}`"),
        }])
    })?;
    entitlements::check_feature(template.feature()).map_err(Problem::from)?;
    Ok(template)
}

fn duplicate(number: &str) -> Problem {
    Problem::new(409, problems::DUPLICATE, "Card number taken")
        .with_detail(format!("a card with number `{number}` exists already"))
}

/// The next generated card number (`C-000001`, ...), skipping taken ones.
fn next_free_number() -> Result<String, Problem> {
    for _ in 0..100 {
        let (prefix, value): (String, i64) = db::query_one(
            "UPDATE settings SET next_number = next_number + 1 WHERE id = 1 \
             RETURNING number_prefix, next_number - 1",
            params![],
        )?;
        let candidate = format!("{prefix}{value:06}");
        if find_card(&candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    Err(Problem::conflict(
        "the next 100 generated card numbers are all taken; pass `number` explicitly",
    ))
}

/// `GET /cards/{number}`.
fn show_card(request: &Request) -> Result<Response, Problem> {
    card_response(200, &card_or_404(request)?)
}

/// `DELETE /cards/{number}`: removes the card, its share links and its
/// photo, and gives its `max_cards` unit back.
fn delete_card(request: &Request) -> Result<Response, Problem> {
    let card = card_or_404(request)?;
    db::execute(
        "DELETE FROM share_links WHERE card_id = ?1",
        params![card.id],
    )?;
    #[cfg(feature = "release-1-1")]
    crate::fields::forget_card(card.id)?;
    db::execute(
        "UPDATE scans SET card_id = NULL WHERE card_id = ?1",
        params![card.id],
    )?;
    db::execute("DELETE FROM cards WHERE id = ?1", params![card.id])?;
    if let Some(photo) = &card.photo_file_id {
        match files::delete(photo) {
            Ok(()) | Err(files::FileError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
    }
    entitlements::release("max_cards", 1).map_err(Problem::from)?;
    Ok(Response::no_content())
}

/// `POST /cards/{number}/revoke` `{"reason"}`: an active or expired card
/// becomes revoked (409 when it is revoked already).
fn revoke_card(request: &Request) -> Result<Response, Problem> {
    let reason = request.json::<Revocation>()?.reason()?;
    let card = card_or_404(request)?;
    if card.status == "revoked" {
        return Err(wrong_status(&card, "revoked already"));
    }
    revoke(&card, &reason)?;
    card_response(
        200,
        &find_card(&card.number)?.ok_or_else(|| card_not_found(&card.number))?,
    )
}

/// Revokes a card with a reason and emits `card.revoked`.
pub fn revoke(card: &Card, reason: &str) -> Result<(), Problem> {
    db::execute(
        "UPDATE cards SET status = 'revoked', status_reason = ?2 WHERE id = ?1",
        params![card.id, reason],
    )?;
    emit(
        "card.revoked",
        &json!({"number": card.number, "member": card.member_number, "reason": reason}),
    )
}

fn wrong_status(card: &Card, why: &str) -> Problem {
    Problem::new(409, problems::WRONG_STATUS, "Wrong card status")
        .with_detail(format!("card `{}` is {why}", card.number))
        .with_extension("status", json!(card.status))
}

/// `POST /cards/{number}/renew` `{"expires_on"?}`: an active or expired
/// card is active until the new day (a revoked card is not renewed: issue
/// a new one).
fn renew_card(request: &Request) -> Result<Response, Problem> {
    let renewal: Renewal = if request.body().is_empty() {
        Renewal::default()
    } else {
        request.json()?
    };
    let settings = settings::load()?;
    let today = Day::today();
    let template = renewal.template.clone();
    let expires_on = renewal.expires_on(today, settings.valid_days)?;
    let card = card_or_404(request)?;
    if card.status == "revoked" {
        return Err(wrong_status(&card, "revoked; issue a new card instead"));
    }
    // Moving the card to another template is using that template: its
    // tier's feature is needed. Keeping the card's own template needs
    // nothing (a card made on a premium template stays renewable after a
    // downgrade).
    let template = match template {
        Some(slug) => Some(usable_template(&slug)?.slug),
        None => None,
    };
    if card.status == "expired" && !settings.allow_multiple_active {
        let (active,): (i64,) = db::query_one(
            "SELECT COUNT(*) FROM cards WHERE member_number = ?1 AND status = 'active'",
            params![&card.member_number],
        )?;
        if active > 0 {
            return Err(
                Problem::new(409, problems::ACTIVE_CARD, "Member has an active card").with_detail(
                    format!("member `{}` has another active card", card.member_number),
                ),
            );
        }
    }
    db::execute(
        "UPDATE cards SET status = 'active', status_reason = NULL, expires_on = ?2, \
         template = COALESCE(?3, template) WHERE id = ?1",
        params![card.id, expires_on.format(), &template],
    )?;
    card_response(
        200,
        &find_card(&card.number)?.ok_or_else(|| card_not_found(&card.number))?,
    )
}

/// `PUT /cards/{number}/photo`: the body is a PNG or JPEG (at most 2 MiB)
/// stored as a file; replaces the previous photo.
fn put_photo(request: &Request) -> Result<Response, Problem> {
    let card = card_or_404(request)?;
    let (bytes, content_type) = image_body(request, "photo", MAX_PHOTO_BYTES)?;
    let info = files::put(&format!("photo-{}", card.number), content_type, bytes)?;
    db::execute(
        "UPDATE cards SET photo_file_id = ?2 WHERE id = ?1",
        params![card.id, &info.id],
    )?;
    delete_replaced(card.photo_file_id.as_deref())?;
    card_response(
        200,
        &find_card(&card.number)?.ok_or_else(|| card_not_found(&card.number))?,
    )
}

/// `GET /cards/{number}/qr.svg`: the QR code of the card's verification
/// URL.
fn qr_svg(request: &Request) -> Result<Response, Problem> {
    let card = card_or_404(request)?;
    let settings = settings::load()?;
    let url = crate::card::verification_url(settings.base_url()?, &card.token);
    let svg = qr::svg(&url, QR_SIZE).map_err(Problem::internal)?;
    Ok(Response::text(200, svg).with_header("content-type", "image/svg+xml"))
}

/// `GET /cards/{number}/card.svg`: the card face, rendered from its
/// template.
fn card_svg(request: &Request) -> Result<Response, Problem> {
    let card = card_or_404(request)?;
    let svg = crate::face::Faces::load(crate::face::Images::AsUploaded)?.svg(&card)?;
    Ok(Response::text(200, svg).with_header("content-type", "image/svg+xml"))
}

/// A share link as returned.
fn link_json(
    id: i64,
    token: &str,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    base: Option<&str>,
) -> serde_json::Value {
    json!({
        "id": id,
        "url": base.map(|base| format!("{base}/s/{token}")),
        "token": token,
        "created_at": format_instant(created_at),
        "expires_at": expires_at.map(format_instant),
        "revoked_at": revoked_at.map(format_instant),
    })
}

/// The body of `POST /cards/{number}/share-links`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShareLink {
    /// 1 to 365; never expires when absent.
    expires_in_days: Option<i64>,
}

/// `POST /cards/{number}/share-links` `{"expires_in_days"?}` → 201.
fn create_share_link(request: &Request) -> Result<Response, Problem> {
    let body: NewShareLink = if request.body().is_empty() {
        NewShareLink::default()
    } else {
        request.json()?
    };
    if body
        .expires_in_days
        .is_some_and(|days| !(1..=365).contains(&days))
    {
        return Err(crate::card::invalid(vec![crate::card::FieldError {
            field: "expires_in_days",
            message: "must be 1 to 365".to_owned(),
        }]));
    }
    let card = card_or_404(request)?;
    let (count,): (i64,) = db::query_one(
        "SELECT COUNT(*) FROM share_links WHERE card_id = ?1",
        params![card.id],
    )?;
    if count >= MAX_SHARE_LINKS {
        return Err(Problem::conflict(format!(
            "a card has at most {MAX_SHARE_LINKS} share links; delete old ones"
        )));
    }
    let now = now_unix();
    let expires_at = body.expires_in_days.map(|days| now + days * 86_400);
    let token = token::fresh()?;
    let changes = db::execute(
        "INSERT INTO share_links (card_id, token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![card.id, &token, now, expires_at],
    )?;
    let id = changes
        .last_insert_id
        .ok_or_else(|| Problem::internal("the share link row has no id"))?;
    let settings = settings::load()?;
    Ok(Response::json(
        201,
        &link_json(
            id,
            &token,
            now,
            expires_at,
            None,
            settings.verification_base(),
        ),
    ))
}

/// `GET /cards/{number}/share-links`: every link of the card (at most
/// 50), newest first.
fn list_share_links(request: &Request) -> Result<Response, Problem> {
    let card = card_or_404(request)?;
    let rows: Vec<(i64, String, i64, Option<i64>)> = db::query_as(
        "SELECT id, token, created_at, expires_at FROM share_links WHERE card_id = ?1 \
         ORDER BY id DESC LIMIT 100",
        params![card.id],
    )?;
    let revoked: Vec<(i64, Option<i64>)> = db::query_as(
        "SELECT id, revoked_at FROM share_links WHERE card_id = ?1 ORDER BY id DESC LIMIT 100",
        params![card.id],
    )?;
    let settings = settings::load()?;
    let links: Vec<_> = rows
        .iter()
        .zip(revoked.iter())
        .map(|((id, token, created, expires), (_, revoked_at))| {
            link_json(
                *id,
                token,
                *created,
                *expires,
                *revoked_at,
                settings.verification_base(),
            )
        })
        .collect();
    Ok(Response::json(200, &json!({ "share_links": links })))
}

/// `DELETE /cards/{number}/share-links/{id}`: revokes the link (204);
/// its page answers 404 from then on.
fn revoke_share_link(request: &Request) -> Result<Response, Problem> {
    let card = card_or_404(request)?;
    let id: i64 = request
        .param("id")?
        .parse()
        .map_err(|_| Problem::not_found("no such share link"))?;
    let changes = db::execute(
        "UPDATE share_links SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND card_id = ?2",
        params![id, card.id, now_unix()],
    )?;
    if changes.rows_affected == 0 {
        return Err(Problem::not_found("no such share link"));
    }
    Ok(Response::no_content())
}

/// A template with the branding applied, the font family and the logo
/// (content type, bytes) for the face.
pub type Branded = (
    render::Template,
    Option<&'static str>,
    Option<(String, Vec<u8>)>,
);

/// Applies the tenant's branding (release 1.1.0, while the plan has
/// `custom_branding`) to a template: its colours, and the font family
/// and logo for the face.
pub fn branded(template: render::Template) -> Result<Branded, Problem> {
    #[cfg(feature = "release-1-1")]
    {
        let mut template = template;
        if let Some(branding) = crate::branding::active()? {
            if let Some(colour) = &branding.background {
                template.background = colour.clone();
            }
            if let Some(colour) = &branding.text {
                template.foreground = colour.clone();
            }
            if let Some(colour) = &branding.accent {
                template.accent = colour.clone();
            }
            let logo = crate::branding::logo(&branding)?;
            return Ok((template, Some(branding.font_family()), logo));
        }
        Ok((template, None, None))
    }
    #[cfg(not(feature = "release-1-1"))]
    Ok((template, None, None))
}

/// `GET /branding` (release 1.1.0).
fn branding_show(request: &Request) -> Result<Response, Problem> {
    #[cfg(feature = "release-1-1")]
    return crate::branding::show(request);
    #[cfg(not(feature = "release-1-1"))]
    Err(Problem::not_found(format!(
        "{} is not served by this release",
        request.path()
    )))
}

/// `PUT /branding` (release 1.1.0).
fn branding_replace(request: &Request) -> Result<Response, Problem> {
    #[cfg(feature = "release-1-1")]
    return crate::branding::replace(request);
    #[cfg(not(feature = "release-1-1"))]
    Err(Problem::not_found(format!(
        "{} is not served by this release",
        request.path()
    )))
}

/// `PUT /branding/logo` (release 1.1.0).
fn branding_logo(request: &Request) -> Result<Response, Problem> {
    #[cfg(feature = "release-1-1")]
    return crate::branding::put_logo(request);
    #[cfg(not(feature = "release-1-1"))]
    Err(Problem::not_found(format!(
        "{} is not served by this release",
        request.path()
    )))
}

/// `GET /fields` (release 1.1.0; its manifest routes it, 1.0.0's does not).
fn fields_list(request: &Request) -> Result<Response, Problem> {
    #[cfg(feature = "release-1-1")]
    return crate::fields::list(request);
    #[cfg(not(feature = "release-1-1"))]
    Err(Problem::not_found(format!(
        "{} is not served by this release",
        request.path()
    )))
}

/// `POST /fields` (release 1.1.0).
fn fields_create(request: &Request) -> Result<Response, Problem> {
    #[cfg(feature = "release-1-1")]
    return crate::fields::create(request);
    #[cfg(not(feature = "release-1-1"))]
    Err(Problem::not_found(format!(
        "{} is not served by this release",
        request.path()
    )))
}

/// `DELETE /fields/{name}` (release 1.1.0).
fn fields_delete(request: &Request) -> Result<Response, Problem> {
    #[cfg(feature = "release-1-1")]
    return crate::fields::delete(request);
    #[cfg(not(feature = "release-1-1"))]
    Err(Problem::not_found(format!(
        "{} is not served by this release",
        request.path()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_and_bad_queries_are_refused_before_any_database_work() {
        let router = router();
        let get = |path: &str, query: &str| {
            router.handle(Request::new("GET", path, query, vec![], vec![]))
        };
        assert_eq!(get("/nope", "").status(), 404);
        for query in [
            "status=lost",
            "limit=0",
            "limit=201",
            "member=-x",
            "expires_before=2026-02-30",
            "after=x",
        ] {
            assert_eq!(get("/cards", query).status(), 400, "{query}");
        }
    }
}
