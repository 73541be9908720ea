//! The tenant's own templates (release 1.2.0, feature `advanced_templates`,
//! counted by `max_templates`): create, read, change and delete.
//!
//! The templates shipped with the module (basic, advanced, premium) are
//! seeded rows of the same table; they count against nothing and cannot
//! be changed or deleted. A template of the tenant's own has tier
//! `custom` and needs `advanced_templates` to be used for a card, like an
//! advanced one.
//!
//! `POST /templates` takes one unit of `max_templates` in the module, not
//! through the route's `limit` gate: a retried request (same
//! `Idempotency-Key`) must get the template it made even when that
//! template used the plan's last unit, and the host's gate would refuse it
//! for want of room first. The refusal is the same problem document either
//! way (the SDK's denial).

use serde::Deserialize;
use serde_json::json;
use souk_sdk::db;
use souk_sdk::entitlements;
use souk_sdk::{Problem, Request, Response, params};

use crate::card::FieldError;
use crate::dates::now_unix;
use crate::render::{self, FIELDS, LAYOUTS, TEMPLATE_COLUMNS, Template};

/// The count limit of the tenant's own templates.
const MAX_TEMPLATES: &str = "max_templates";
/// The most templates of its own a tenant keeps, whatever its plan (so
/// `GET /templates` stays one page).
pub const MAX_OWN_TEMPLATES: i64 = 500;
/// Longest template name, in characters.
const MAX_NAME_CHARS: usize = 60;
/// Longest slug, in characters.
const MAX_SLUG_CHARS: usize = 40;
/// Smallest and largest width or height, in pixels.
const SIZE_BOUNDS: (i64, i64) = (300, 2400);
/// How much longer than its short side a face's long side is, at least
/// and at most, in hundredths (the ID-1 card is 158).
const RATIO_BOUNDS: (i64, i64) = (125, 200);
/// Longest `Idempotency-Key`, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Problem type URIs of templates.
pub mod problems {
    /// A field of the body breaks its rule.
    pub const INVALID: &str = "https://souk.dev/problems/digital-card/invalid-template";
    /// No template with that slug.
    pub const NOT_FOUND: &str = "https://souk.dev/problems/digital-card/template-not-found";
    /// The slug is taken.
    pub const DUPLICATE: &str = "https://souk.dev/problems/digital-card/duplicate-template";
    /// The template ships with the module: it is not the tenant's to change.
    pub const BUILT_IN: &str = "https://souk.dev/problems/digital-card/built-in-template";
    /// Cards use the template.
    pub const IN_USE: &str = "https://souk.dev/problems/digital-card/template-in-use";
    /// The idempotency key made a template that is gone.
    pub const KEY_SPENT: &str = "https://souk.dev/problems/digital-card/idempotency-key-spent";
}

/// The body of `POST /templates` and `PUT /templates/{slug}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// `[a-z][a-z0-9-]*`, 2 to 40 characters; required on POST, and on PUT
    /// only the template's own slug.
    #[serde(default)]
    pub slug: Option<String>,
    /// Display name, 1 to 60 characters.
    pub name: String,
    /// One of [`LAYOUTS`].
    pub layout: String,
    /// Pixels; the layout's (856 or 540) when absent.
    #[serde(default)]
    pub width: Option<i64>,
    /// Pixels; the layout's (540 or 856) when absent.
    #[serde(default)]
    pub height: Option<i64>,
    /// `#rrggbb`; white when absent.
    #[serde(default)]
    pub background: Option<String>,
    /// `#rrggbb`; dark grey when absent.
    #[serde(default)]
    pub foreground: Option<String>,
    /// `#rrggbb`; blue when absent.
    #[serde(default)]
    pub accent: Option<String>,
    /// Some of [`FIELDS`], each once; all of them when absent.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

/// A template checked field by field, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTemplate {
    /// The slug (on PUT, the path's).
    pub slug: String,
    /// Trimmed name.
    pub name: String,
    /// A known layout.
    pub layout: String,
    /// Within the bounds, in the layout's orientation.
    pub width: i64,
    /// Within the bounds.
    pub height: i64,
    /// `#rrggbb`.
    pub background: String,
    /// `#rrggbb`.
    pub foreground: String,
    /// `#rrggbb`.
    pub accent: String,
    /// Known fields, each once, as JSON.
    pub fields: String,
}

/// 422 listing each invalid field of a template.
fn invalid(errors: Vec<FieldError>) -> Problem {
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Problem::new(422, problems::INVALID, "Invalid template")
        .with_detail(detail)
        .with_extension("errors", json!(errors))
}

fn check_slug(slug: &str) -> Result<(), String> {
    let ok = (2..=MAX_SLUG_CHARS).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 2 to {MAX_SLUG_CHARS} characters: lowercase letters, digits and '-', \
             starting with a letter"
        ))
    }
}

fn check_colour(text: Option<String>, default: &str) -> Result<String, String> {
    let text = text.unwrap_or_else(|| default.to_owned());
    if render::colour(&text) == text {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("`{text}` is not a colour written #rrggbb"))
    }
}

/// Checks the size against the bounds and the layout's orientation.
fn check_size(layout: &str, width: i64, height: i64) -> Result<(), String> {
    let (low, high) = SIZE_BOUNDS;
    if !(low..=high).contains(&width) || !(low..=high).contains(&height) {
        return Err(format!(
            "width and height must each be {low} to {high} pixels"
        ));
    }
    let portrait = layout == "portrait";
    if portrait && height <= width {
        return Err("the portrait layout is taller than it is wide".to_owned());
    }
    if !portrait && width <= height {
        return Err(format!(
            "the {layout} layout is wider than it is tall (only `portrait` is upright)"
        ));
    }
    let (long, short) = (width.max(height), width.min(height));
    let (min, max) = RATIO_BOUNDS;
    if long * 100 < short * min || long * 100 > short * max {
        return Err(format!(
            "the long side must be {:.2} to {:.2} times the short side (856 x 540 is 1.59)",
            min as f64 / 100.0,
            max as f64 / 100.0
        ));
    }
    Ok(())
}

impl TemplateBody {
    /// Checks every field. `path_slug` is the template's slug on PUT.
    ///
    /// # Errors
    ///
    /// A 422 problem listing each invalid field.
    pub fn check(self, path_slug: Option<&str>) -> Result<CheckedTemplate, Problem> {
        let mut errors = Vec::new();
        let mut fail = |field: &'static str, message: String| {
            errors.push(FieldError { field, message });
        };
        let slug = match (path_slug, self.slug) {
            (Some(path), None) => path.to_owned(),
            (Some(path), Some(given)) => {
                if given != path {
                    fail("slug", "a template's slug does not change".to_owned());
                }
                path.to_owned()
            }
            (None, Some(given)) => {
                if let Err(message) = check_slug(&given) {
                    fail("slug", message);
                }
                given
            }
            (None, None) => {
                fail("slug", "is required".to_owned());
                String::new()
            }
        };
        let name = self.name.trim().to_owned();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            fail(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} characters without control characters"),
            );
        }
        let known_layout = LAYOUTS.contains(&self.layout.as_str());
        if !known_layout {
            fail(
                "layout",
                format!(
                    "`{}` is not a layout; use one of {}",
                    self.layout,
                    LAYOUTS.join(", ")
                ),
            );
        }
        let (default_width, default_height) = if self.layout == "portrait" {
            (540, 856)
        } else {
            (856, 540)
        };
        let width = self.width.unwrap_or(default_width);
        let height = self.height.unwrap_or(default_height);
        if known_layout && let Err(message) = check_size(&self.layout, width, height) {
            fail("size", message);
        }
        let mut colour = |field: &'static str, text: Option<String>, default: &str| {
            check_colour(text, default).unwrap_or_else(|message| {
                fail(field, message);
                String::new()
            })
        };
        let background = colour("background", self.background, "#ffffff");
        let foreground = colour("foreground", self.foreground, "#1f2933");
        let accent = colour("accent", self.accent, "#1d4ed8");
        let fields = self
            .fields
            .unwrap_or_else(|| FIELDS.iter().map(|f| (*f).to_owned()).collect());
        if fields.is_empty() {
            fail("fields", "shows at least one field".to_owned());
        }
        // Each known field at most once: a longer list is refused before it
        // is compared entry by entry.
        let listed = if fields.len() > FIELDS.len() {
            fail(
                "fields",
                format!("lists at most {} fields, each once", FIELDS.len()),
            );
            &fields[..0]
        } else {
            &fields[..]
        };
        for (index, field) in listed.iter().enumerate() {
            if !FIELDS.contains(&field.as_str()) {
                fail(
                    "fields",
                    format!(
                        "`{}` is not a field; use some of {}",
                        field.chars().take(40).collect::<String>(),
                        FIELDS.join(", ")
                    ),
                );
            } else if listed[..index].contains(field) {
                fail("fields", format!("`{field}` is listed twice"));
            }
        }
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        Ok(CheckedTemplate {
            slug,
            name,
            layout: self.layout,
            width,
            height,
            background,
            foreground,
            accent,
            fields: serde_json::to_string(&fields)
                .map_err(|e| Problem::internal(format!("fields: {e}")))?,
        })
    }
}

/// 404 for a slug.
pub fn not_found(slug: &str) -> Problem {
    Problem::new(404, problems::NOT_FOUND, "Template not found")
        .with_detail(format!("no template has slug `{slug}`"))
}

fn template_or_404(request: &Request) -> Result<Template, Problem> {
    let slug = request.param("slug")?;
    render::find(slug)?.ok_or_else(|| not_found(slug))
}

/// The tenant's own template with the path's slug; 409 for a template that
/// ships with the module.
fn own_or_refuse(request: &Request, doing: &str) -> Result<Template, Problem> {
    let template = template_or_404(request)?;
    if template.tier != "custom" {
        return Err(
            Problem::new(409, problems::BUILT_IN, "Built-in template").with_detail(format!(
                "`{}` ships with the module ({} tier) and cannot be {doing}; make a template of \
                 your own with POST /templates",
                template.slug, template.tier
            )),
        );
    }
    Ok(template)
}

/// Cards using a template, by status.
fn cards_using(slug: &str) -> Result<serde_json::Map<String, serde_json::Value>, Problem> {
    let rows: Vec<(String, i64)> = db::query_as(
        "SELECT status, COUNT(*) FROM cards WHERE template = ?1 GROUP BY status ORDER BY status",
        params![slug],
    )?;
    Ok(rows
        .into_iter()
        .map(|(status, count)| (status, json!(count)))
        .collect())
}

/// The template as a route answers it: [`Template::to_json`] with the
/// route's `extra` members.
fn answer(status: u16, template: &Template, extra: &[(&str, serde_json::Value)]) -> Response {
    let mut body = template.to_json();
    for (name, value) in extra {
        body[*name] = value.clone();
    }
    Response::json(status, &body)
}

/// `GET /templates/{slug}`: one template, whether the plan allows it, and
/// `cards`: how many cards use it, by status.
pub fn show(request: &Request) -> Result<Response, Problem> {
    let template = template_or_404(request)?;
    let cards = cards_using(&template.slug)?;
    Ok(answer(200, &template, &[("cards", json!(cards))]))
}

/// The idempotency key of a request, checked.
fn idempotency_key(request: &Request) -> Result<Option<String>, Problem> {
    match request.header("idempotency-key") {
        None => Ok(None),
        Some(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_owned()))
        }
        Some(_) => Err(Problem::bad_request(format!(
            "header `Idempotency-Key`: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))),
    }
}

/// `POST /templates`: a template of the tenant's own → 201, taking one
/// unit of `max_templates`. With an `Idempotency-Key`, a repeat answers
/// 200 with the template the first request made (`"replay": true`) and
/// counts nothing.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let key = idempotency_key(request)?;
    if let Some(key) = &key {
        let earlier: Option<Template> = db::query_optional(
            &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE idempotency_key = ?1"),
            params![key.as_str()],
        )?;
        if let Some(template) = earlier {
            return Ok(answer(200, &template, &[("replay", json!(true))]));
        }
    }
    let checked = request.json::<TemplateBody>()?.check(None)?;
    if render::find(&checked.slug)?.is_some() {
        return Err(
            Problem::new(409, problems::DUPLICATE, "Template slug taken").with_detail(format!(
                "a template with slug `{}` exists already",
                checked.slug
            )),
        );
    }
    let (own,): (i64,) = db::query_one(
        "SELECT COUNT(*) FROM templates WHERE tier = 'custom'",
        params![],
    )?;
    if own >= MAX_OWN_TEMPLATES {
        return Err(Problem::conflict(format!(
            "a tenant keeps at most {MAX_OWN_TEMPLATES} templates of its own; delete some first"
        )));
    }
    // Every check is done: a refusal after taking the unit would commit
    // the unit (the host commits answers below 500).
    let usage = match &key {
        Some(key) => {
            let counted =
                entitlements::consume_once_counted(MAX_TEMPLATES, 1, key).map_err(Problem::from)?;
            if counted.replay {
                // Counted before, yet no template has the key: the template
                // it made was deleted since.
                return Err(
                    Problem::new(409, problems::KEY_SPENT, "Idempotency key used").with_detail(
                        "this Idempotency-Key made a template that has been deleted since; send a \
                     new key to make another",
                    ),
                );
            }
            counted.usage
        }
        None => entitlements::consume(MAX_TEMPLATES, 1).map_err(Problem::from)?,
    };
    let now = now_unix();
    db::execute(
        "INSERT INTO templates (slug, name, tier, layout, width, height, background, \
         foreground, accent, fields, idempotency_key, created_at, updated_at) \
         VALUES (?1, ?2, 'custom', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
        params![
            &checked.slug,
            &checked.name,
            &checked.layout,
            checked.width,
            checked.height,
            &checked.background,
            &checked.foreground,
            &checked.accent,
            &checked.fields,
            &key,
            now
        ],
    )?;
    let template = render::find(&checked.slug)?.ok_or_else(|| {
        Problem::internal(format!("template `{}` vanished after insert", checked.slug))
    })?;
    Ok(answer(
        201,
        &template,
        &[("replay", json!(false)), ("usage", json!(usage))],
    ))
}

/// `PUT /templates/{slug}`: replaces a template of the tenant's own (the
/// body as for POST; `slug` may be left out). Cards on it show the change
/// at once. 409 for a template that ships with the module.
pub fn replace(request: &Request) -> Result<Response, Problem> {
    let current = own_or_refuse(request, "changed")?;
    let checked = request.json::<TemplateBody>()?.check(Some(&current.slug))?;
    db::execute(
        "UPDATE templates SET name = ?2, layout = ?3, width = ?4, height = ?5, background = ?6, \
         foreground = ?7, accent = ?8, fields = ?9, updated_at = ?10 WHERE slug = ?1",
        params![
            &checked.slug,
            &checked.name,
            &checked.layout,
            checked.width,
            checked.height,
            &checked.background,
            &checked.foreground,
            &checked.accent,
            &checked.fields,
            now_unix()
        ],
    )?;
    let template = render::find(&checked.slug)?.ok_or_else(|| not_found(&checked.slug))?;
    Ok(answer(200, &template, &[]))
}

/// `DELETE /templates/{slug}`: deletes a template of the tenant's own and
/// gives its `max_templates` unit back (204). Refused with 409 while any
/// card — active, expired or revoked — uses it, so every card keeps its
/// face: renew those cards onto another template or delete them first.
/// Needs no feature, so a tenant that moved to a smaller plan can still
/// clear its templates.
pub fn delete(request: &Request) -> Result<Response, Problem> {
    let template = own_or_refuse(request, "deleted")?;
    let cards = cards_using(&template.slug)?;
    if !cards.is_empty() {
        let total: i64 = cards.values().filter_map(serde_json::Value::as_i64).sum();
        return Err(Problem::new(409, problems::IN_USE, "Template in use")
            .with_detail(format!(
                "{total} card(s) use template `{}`; renew them onto another template \
                 (POST /cards/{{number}}/renew {{\"template\"}}) or delete them first",
                template.slug
            ))
            .with_extension("cards", json!(cards)));
    }
    db::execute(
        "DELETE FROM templates WHERE slug = ?1 AND tier = 'custom'",
        params![&template.slug],
    )?;
    entitlements::release(MAX_TEMPLATES, 1).map_err(Problem::from)?;
    Ok(Response::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> TemplateBody {
        serde_json::from_value(json).unwrap()
    }

    fn fields_of(problem: &Problem) -> String {
        problem.detail().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_template_takes_the_layouts_defaults() {
        let checked = body(json!({"slug": "gold", "name": " Gold ", "layout": "portrait"}))
            .check(None)
            .unwrap();
        assert_eq!(checked.name, "Gold");
        assert_eq!((checked.width, checked.height), (540, 856));
        assert_eq!(checked.background, "#ffffff");
        assert_eq!(
            checked.fields,
            r#"["photo","name","member_number","card_number","expires_on","qr"]"#
        );
        let checked = body(json!({"slug": "g2", "name": "G", "layout": "gradient",
            "accent": "#AABBCC", "fields": ["qr", "name"], "width": 1000, "height": 630}))
        .check(None)
        .unwrap();
        assert_eq!((checked.width, checked.height), (1000, 630));
        assert_eq!(checked.accent, "#aabbcc");
        assert_eq!(checked.fields, r#"["qr","name"]"#);
    }

    #[test]
    fn every_broken_rule_is_named() {
        let problem = body(json!({
            "slug": "Gold!", "name": "", "layout": "spiral", "background": "red",
            "foreground": "#12345g", "accent": "#123", "fields": ["qr", "shoe", "qr"]
        }))
        .check(None)
        .unwrap_err();
        assert_eq!(problem.status(), 422);
        let detail = fields_of(&problem);
        for needle in [
            "slug:",
            "name:",
            "layout: `spiral`",
            "background:",
            "foreground:",
            "accent:",
            "`shoe` is not a field",
            "`qr` is listed twice",
        ] {
            assert!(detail.contains(needle), "{needle}: {detail}");
        }
        let missing = body(json!({"name": "x", "layout": "classic"}))
            .check(None)
            .unwrap_err();
        assert!(fields_of(&missing).contains("slug: is required"));
        let many: Vec<&str> = vec!["qr"; 100_000];
        let long = body(json!({"slug": "ab", "name": "x", "layout": "classic", "fields": many}))
            .check(None)
            .unwrap_err();
        assert!(
            fields_of(&long).contains("at most 6 fields"),
            "{}",
            fields_of(&long)
        );
        let empty = body(json!({"slug": "ab", "name": "x", "layout": "classic", "fields": []}))
            .check(None)
            .unwrap_err();
        assert!(fields_of(&empty).contains("at least one field"));
        let renamed = body(json!({"slug": "other", "name": "x", "layout": "classic"}))
            .check(Some("mine"))
            .unwrap_err();
        assert!(fields_of(&renamed).contains("does not change"));
        assert_eq!(
            body(json!({"name": "x", "layout": "classic"}))
                .check(Some("mine"))
                .unwrap()
                .slug,
            "mine"
        );
    }

    #[test]
    fn sizes_keep_to_the_bounds_and_the_orientation() {
        assert!(check_size("classic", 856, 540).is_ok());
        assert!(check_size("portrait", 540, 856).is_ok());
        assert!(check_size("portrait", 856, 540).is_err());
        assert!(check_size("classic", 540, 856).is_err());
        assert!(check_size("classic", 500, 500).is_err());
        assert!(check_size("classic", 299, 200).is_err());
        assert!(check_size("classic", 2401, 1500).is_err());
        assert!(check_size("classic", 2000, 1900).is_err(), "too square");
        assert!(check_size("classic", 2000, 900).is_err(), "too long");
        assert!(check_size("classic", 2000, 1000).is_ok());
        assert!(check_size("classic", i64::MAX, i64::MAX).is_err());
        assert!(check_slug("a").is_err());
        assert!(check_slug("9lives").is_err());
        assert!(check_slug("gold-2").is_ok());
        assert!(check_slug(&"a".repeat(41)).is_err());
    }
}
