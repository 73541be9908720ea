//! Templates and the card face they render to SVG.

use base64::Engine as _;
use serde::Serialize;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, params};

use crate::qr;

/// A template: layout, colours and which fields a card shows.
#[derive(Debug, Clone, Serialize)]
pub struct Template {
    /// Its slug (`classic`, ...).
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// `basic`, `advanced`, `premium` or `custom`.
    pub tier: String,
    /// `classic`, `stripe` or `minimal`.
    pub layout: String,
    /// Width in pixels.
    pub width: i64,
    /// Height in pixels.
    pub height: i64,
    /// Background colour (`#rrggbb`).
    pub background: String,
    /// Text colour.
    pub foreground: String,
    /// Accent colour.
    pub accent: String,
    /// The fields shown: `photo`, `name`, `member_number`, `card_number`,
    /// `expires_on`, `qr`.
    pub fields: Vec<String>,
}

/// The columns [`Template::from_row`] reads.
pub const TEMPLATE_COLUMNS: &str =
    "slug, name, tier, layout, width, height, background, foreground, accent, fields";

impl FromRow for Template {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        let fields: String = row.get("fields")?;
        Ok(Self {
            slug: row.get("slug")?,
            name: row.get("name")?,
            tier: row.get("tier")?,
            layout: row.get("layout")?,
            width: row.get("width")?,
            height: row.get("height")?,
            background: row.get("background")?,
            foreground: row.get("foreground")?,
            accent: row.get("accent")?,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
        })
    }
}

impl Template {
    fn shows(&self, field: &str) -> bool {
        self.fields.iter().any(|f| f == field)
    }
}

/// The template with this slug, if any.
///
/// # Errors
///
/// A database problem.
pub fn find(slug: &str) -> Result<Option<Template>, Problem> {
    Ok(db::query_optional(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE slug = ?1"),
        params![slug],
    )?)
}

/// `GET /templates`: every template, basic first.
pub fn list(_request: &Request) -> Result<Response, Problem> {
    let templates: Vec<Template> = db::query_as(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY id LIMIT 1000"),
        params![],
    )?;
    Ok(Response::json(
        200,
        &serde_json::json!({ "templates": templates }),
    ))
}

/// What a card face shows.
pub struct Face<'a> {
    /// The organisation's name.
    pub organisation: &'a str,
    /// The holder's name.
    pub holder: &'a str,
    /// The holder's member number.
    pub member_number: &'a str,
    /// The card number.
    pub card_number: &'a str,
    /// `YYYY-MM-DD`.
    pub expires_on: &'a str,
    /// `active`, `expired` or `revoked`.
    pub status: &'a str,
    /// The photo: (content type, bytes).
    pub photo: Option<(String, Vec<u8>)>,
    /// The verification URL the QR code encodes.
    pub verification_url: Option<String>,
    /// Whether to show the Souk mark (not on white-label plans).
    pub souk_mark: bool,
    /// Custom field lines (`label: value`, release 1.1.0).
    pub extra: Vec<String>,
    /// The font family (branding, release 1.1.0); the default when `None`.
    pub font_family: Option<&'static str>,
    /// The organisation's logo (branding): (content type, bytes).
    pub logo: Option<(String, Vec<u8>)>,
}

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Keeps a colour only when it is `#rrggbb`; black otherwise.
fn colour(text: &str) -> &str {
    let ok = text.len() == 7
        && text.starts_with('#')
        && text[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok { text } else { "#000000" }
}

/// The card face as an SVG document of the template's size.
///
/// # Errors
///
/// When the verification URL does not fit a QR code.
pub fn card_svg(template: &Template, face: &Face<'_>) -> Result<String, String> {
    let (w, h) = (template.width, template.height);
    let (bg, fg, accent) = (
        colour(&template.background),
        colour(&template.foreground),
        colour(&template.accent),
    );
    let font = face.font_family.unwrap_or(crate::fonts::SANS);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{font}"><rect width="{w}" height="{h}" rx="28" fill="{bg}"/>"#
    );
    // The layout's band and where the text starts.
    let text_x = match template.layout.as_str() {
        "stripe" => {
            svg.push_str(&format!(
                r#"<rect x="0" y="0" width="36" height="{h}" fill="{accent}"/>"#
            ));
            76
        }
        "minimal" => {
            svg.push_str(&format!(
                r#"<rect x="40" y="{}" width="{}" height="4" fill="{accent}"/>"#,
                h - 60,
                w - 80
            ));
            48
        }
        _ => {
            svg.push_str(&format!(
                r#"<rect x="0" y="0" width="{w}" height="110" rx="28" fill="{accent}"/><rect x="0" y="80" width="{w}" height="30" fill="{accent}"/>"#
            ));
            48
        }
    };
    let text_x = match &face.logo {
        Some((content_type, bytes)) => {
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            svg.push_str(&format!(
                r#"<image x="{text_x}" y="22" width="64" height="64" preserveAspectRatio="xMidYMid meet" href="data:{};base64,{data}"/>"#,
                escape(content_type)
            ));
            text_x + 80
        }
        None => text_x,
    };
    let header_fill = if template.layout == "classic" {
        "#ffffff"
    } else {
        fg
    };
    svg.push_str(&format!(
        r#"<text x="{text_x}" y="70" font-size="36" font-weight="bold" fill="{header_fill}">{}</text>"#,
        escape(face.organisation)
    ));
    let mut photo_right = text_x;
    if template.shows("photo") {
        let (px, py) = (text_x, 150);
        match &face.photo {
            Some((content_type, bytes)) => {
                let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                svg.push_str(&format!(
                    r#"<image x="{px}" y="{py}" width="180" height="220" preserveAspectRatio="xMidYMid slice" href="data:{};base64,{data}"/>"#,
                    escape(content_type)
                ));
            }
            None => svg.push_str(&format!(
                r#"<rect x="{px}" y="{py}" width="180" height="220" fill="none" stroke="{fg}" stroke-dasharray="6 6"/>"#
            )),
        }
        photo_right = px + 210;
    }
    let mut y = 190;
    let mut line = |svg: &mut String, size: u32, weight: &str, text: String| {
        svg.push_str(&format!(
            r#"<text x="{photo_right}" y="{y}" font-size="{size}" font-weight="{weight}" fill="{fg}">{}</text>"#,
            escape(&text)
        ));
        y += size as i64 + 22;
    };
    if template.shows("name") {
        line(&mut svg, 40, "bold", face.holder.to_owned());
    }
    if template.shows("member_number") {
        line(
            &mut svg,
            26,
            "normal",
            format!("Member {}", face.member_number),
        );
    }
    if template.shows("card_number") {
        line(&mut svg, 26, "normal", format!("Card {}", face.card_number));
    }
    if template.shows("expires_on") {
        line(
            &mut svg,
            26,
            "normal",
            format!("Valid until {}", face.expires_on),
        );
    }
    for extra in &face.extra {
        line(&mut svg, 22, "normal", extra.clone());
    }
    if face.status != "active" {
        svg.push_str(&format!(
            r##"<text x="{}" y="{}" font-size="64" font-weight="bold" fill="#b91c1c" text-anchor="middle" transform="rotate(-18 {} {})" opacity="0.8">{}</text>"##,
            w / 2,
            h / 2,
            w / 2,
            h / 2,
            escape(&face.status.to_uppercase())
        ));
    }
    if let (true, Some(url)) = (template.shows("qr"), &face.verification_url) {
        let code = qr::group(url)?;
        let size = 220;
        let (qx, qy) = (w - size - 40, h - size - 70);
        svg.push_str(&format!(
            r##"<svg x="{qx}" y="{qy}" width="{size}" height="{size}" viewBox="0 0 {n} {n}" shape-rendering="crispEdges"><rect width="{n}" height="{n}" fill="#fff"/>{}</svg>"##,
            code.path,
            n = code.extent
        ));
    }
    if face.souk_mark {
        svg.push_str(&format!(
            r#"<text x="{}" y="{}" font-size="16" fill="{fg}" text-anchor="end" opacity="0.6">Verified with Souk</text>"#,
            w - 40,
            h - 24
        ));
    }
    svg.push_str("</svg>");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(layout: &str) -> Template {
        Template {
            slug: "t".into(),
            name: "T".into(),
            tier: "basic".into(),
            layout: layout.into(),
            width: 856,
            height: 540,
            background: "#ffffff".into(),
            foreground: "\"><script>".into(),
            accent: "#1d4ed8".into(),
            fields: [
                "photo",
                "name",
                "member_number",
                "card_number",
                "expires_on",
                "qr",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    #[test]
    fn text_is_escaped_and_colours_are_checked() {
        let face = Face {
            organisation: "A & B <Club>",
            holder: "Ada \"Lovelace\"",
            member_number: "M-1",
            card_number: "C-1",
            expires_on: "2027-01-01",
            status: "revoked",
            photo: Some(("image/png".into(), vec![1, 2, 3])),
            verification_url: Some("https://x.example/v/abc".into()),
            souk_mark: true,
            extra: vec!["Level: <gold>".into()],
            font_family: Some("DejaVu Serif, Georgia, serif"),
            logo: Some(("image/png".into(), vec![9, 9, 9])),
        };
        for layout in ["classic", "stripe", "minimal"] {
            let svg = card_svg(&template(layout), &face).unwrap();
            assert!(svg.contains("A &amp; B &lt;Club&gt;"));
            assert!(svg.contains("Ada &quot;Lovelace&quot;"));
            assert!(!svg.contains("<script>"));
            assert!(svg.contains("REVOKED"));
            assert!(svg.contains("data:image/png;base64,AQID"));
            assert!(svg.contains("Verified with Souk"));
            assert!(svg.contains("Level: &lt;gold&gt;"));
            assert!(svg.contains("font-family=\"DejaVu Serif, Georgia, serif\""));
            assert!(svg.contains("data:image/png;base64,CQkJ"));
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        }
    }
}
