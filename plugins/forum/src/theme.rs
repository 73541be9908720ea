//! Themes (community) and the forum's HTML view of a thread. A theme is
//! three colours and an optional logo URL, each parsed strictly, so what
//! reaches the page's CSS and `<img>` is exactly a `#rrggbb` colour and an
//! `https` URL, escaped. The page carries a Content-Security-Policy that
//! allows no script at all, behind the sanitised post HTML.

use serde::Deserialize;
use serde_json::json;
use souk_sdk::{Problem, Request, Response, db, entitlements, params};

use crate::page;
use crate::threads;
use crate::who::Who;

/// The colours of a forum page without a theme.
const DEFAULT: Theme = Theme {
    primary: [0x1f, 0x4e, 0x79],
    background: [0xff, 0xff, 0xff],
    text: [0x22, 0x22, 0x22],
};

struct Theme {
    primary: [u8; 3],
    background: [u8; 3],
    text: [u8; 3],
}

fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

/// Parses `#rrggbb`.
fn colour(text: &str) -> Option<[u8; 3]> {
    let digits = text.strip_prefix('#')?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&digits[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// An `https` URL of at most 500 characters without quotes, angle
/// brackets, backslashes, spaces or controls.
fn logo_url(text: &str) -> bool {
    text.len() <= 500
        && text.starts_with("https://")
        && text.len() > "https://".len()
        && text
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"\"'<>\\`".contains(c))
}

/// Escapes text for HTML text and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn stored() -> Result<Option<(Theme, Option<String>)>, Problem> {
    let row: Option<(String, String, String, Option<String>)> = db::query_optional(
        "SELECT primary_colour, background_colour, text_colour, logo_url FROM theme WHERE id = 1",
        params![],
    )?;
    Ok(row.and_then(|(p, b, t, logo)| {
        Some((
            Theme {
                primary: colour(&p)?,
                background: colour(&b)?,
                text: colour(&t)?,
            },
            logo,
        ))
    }))
}

/// `GET /theme` (public, community): the tenant's theme, or the default.
pub fn show(_request: &Request) -> Result<Response, Problem> {
    let (theme, logo) = stored()?.unwrap_or((DEFAULT, None));
    Ok(Response::json(
        200,
        &json!({
            "primary": hex(theme.primary),
            "background": hex(theme.background),
            "text": hex(theme.text),
            "logo_url": logo,
        }),
    ))
}

/// `PUT /theme` (admin, community): `{"primary", "background", "text"}`
/// as `#rrggbb`, `"logo_url"`: an https URL or null.
pub fn put(request: &Request) -> Result<Response, Problem> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewTheme {
        primary: String,
        background: String,
        text: String,
        logo_url: Option<String>,
    }
    let new: NewTheme = request.json()?;
    for (field, value) in [
        ("primary", &new.primary),
        ("background", &new.background),
        ("text", &new.text),
    ] {
        if colour(value).is_none() {
            return Err(Problem::unprocessable(format!(
                "`{field}` must be a colour like #1f4e79"
            )));
        }
    }
    if let Some(url) = &new.logo_url
        && !logo_url(url)
    {
        return Err(Problem::unprocessable(
            "`logo_url` must be an https URL of at most 500 characters",
        ));
    }
    db::execute(
        "INSERT INTO theme (id, primary_colour, background_colour, text_colour, logo_url) \
         VALUES (1, ?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET \
         primary_colour = excluded.primary_colour, background_colour = excluded.background_colour, \
         text_colour = excluded.text_colour, logo_url = excluded.logo_url",
        params![
            new.primary.to_ascii_lowercase(),
            new.background.to_ascii_lowercase(),
            new.text.to_ascii_lowercase(),
            new.logo_url
        ],
    )?;
    show(request)
}

/// `GET /view/threads/{id}` (public, every plan): the thread as an HTML
/// page, in the tenant's theme when the plan has `themes`, with the
/// first 100 posts. No script: the post HTML is the sanitised HTML, the
/// rest is escaped, and the CSP forbids scripts besides.
pub fn thread_page(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, _) = threads::visible(&who, request, "id")?;
    let (theme, logo) = if entitlements::has_feature("themes") {
        stored()?.unwrap_or((DEFAULT, None))
    } else {
        (DEFAULT, None)
    };
    let posts = page::objects(
        "SELECT p.id, coalesce(m.name, p.author_name) AS author, p.html, \
         p.deleted_at IS NOT NULL OR p.hidden_at IS NOT NULL AS gone \
         FROM posts p LEFT JOIN membership.members m ON m.number = p.author_number \
         WHERE p.thread_id = ?1 ORDER BY p.id LIMIT 100",
        params![thread.id],
        &["gone"],
    )?;
    let mut body = String::new();
    for post in &posts {
        let author = escape(post["author"].as_str().unwrap_or_default());
        let html = if post["gone"].as_bool().unwrap_or(true) {
            "<p><em>removed</em></p>".to_owned()
        } else {
            post["html"].as_str().unwrap_or_default().to_owned()
        };
        body.push_str(&format!(
            "<article id=\"post-{}\"><h2>{author}</h2>{html}</article>\n",
            post["id"].as_i64().unwrap_or_default()
        ));
    }
    let logo = logo
        .filter(|url| logo_url(url))
        .map(|url| format!("<img class=\"logo\" src=\"{}\" alt=\"\">", escape(&url)))
        .unwrap_or_default();
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{background:{bg};color:{fg};font-family:sans-serif;max-width:48rem;margin:auto}}\
         h1,h2{{color:{primary}}}.logo{{max-height:3rem}}</style></head>\
         <body><header>{logo}<h1>{title}</h1></header>\n{body}</body></html>\n",
        title = escape(&thread.title),
        bg = hex(theme.background),
        fg = hex(theme.text),
        primary = hex(theme.primary),
    );
    Ok(Response::new(200)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_header(
            "content-security-policy",
            "default-src 'none'; img-src https:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
        )
        .with_header("x-content-type-options", "nosniff")
        .with_body(page.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_logos_are_parsed_strictly() {
        assert_eq!(colour("#1F4e79"), Some([0x1f, 0x4e, 0x79]));
        assert_eq!(colour("1f4e79"), None);
        assert_eq!(colour("#1f4e7"), None);
        assert_eq!(colour("#1f4e7g"), None);
        assert_eq!(colour("red;}</style><script>"), None);
        assert!(logo_url("https://example.org/logo.png"));
        assert!(!logo_url("http://example.org/logo.png"));
        assert!(!logo_url("javascript:alert(1)"));
        assert!(!logo_url("https://x\" onerror=\"alert(1)"));
        assert!(!logo_url("https://"));
        assert_eq!(
            escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
