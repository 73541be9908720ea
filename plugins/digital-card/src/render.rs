//! Templates and the card face they render to SVG.

use base64::Engine as _;
use serde::Serialize;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, entitlements, params};

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
    /// One of [`LAYOUTS`].
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

/// The layouts a template can have: where the band, photo, text and QR
/// code go. `portrait` is drawn upright (540 x 856), the others across
/// (856 x 540). Release 1.0.0 knew the first three; the rest come with
/// release 1.2.0 (migration `0004_templates`).
#[cfg_attr(not(feature = "release-1-2"), allow(dead_code))]
pub const LAYOUTS: [&str; 8] = [
    "classic",
    "stripe",
    "minimal",
    "portrait",
    "photo_left",
    "gradient",
    "watermark",
    "diagonal",
];

/// The fields a template can show.
#[cfg_attr(not(feature = "release-1-2"), allow(dead_code))]
pub const FIELDS: [&str; 6] = [
    "photo",
    "name",
    "member_number",
    "card_number",
    "expires_on",
    "qr",
];

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

    /// The feature a card needs to be issued or renewed on this template:
    /// `basic_templates`, `advanced_templates` (advanced templates and the
    /// tenant's own, `custom`) or `premium_templates`.
    pub fn feature(&self) -> &'static str {
        match self.tier.as_str() {
            "advanced" | "custom" => "advanced_templates",
            "premium" => "premium_templates",
            _ => "basic_templates",
        }
    }

    /// The template as listed: its fields, the feature it needs and
    /// whether the tenant's plan has that feature now.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["feature"] = self.feature().into();
        value["allowed"] = entitlements::has_feature(self.feature()).into();
        value
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

/// Orders templates basic, advanced, premium, then the tenant's own, each
/// in the order they were made.
pub const TEMPLATE_ORDER: &str = "CASE tier WHEN 'basic' THEN 0 WHEN 'advanced' THEN 1 \
                                  WHEN 'premium' THEN 2 ELSE 3 END, id";

/// `GET /templates`: every template (basic, advanced, premium, then the
/// tenant's own), each saying the feature it needs and whether the plan
/// allows it (`allowed`). A tenant keeps at most a few hundred templates,
/// so this is one page.
pub fn list(_request: &Request) -> Result<Response, Problem> {
    let templates: Vec<Template> = db::query_as(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM templates ORDER BY {TEMPLATE_ORDER} LIMIT 1000"),
        params![],
    )?;
    Ok(Response::json(
        200,
        &serde_json::json!({
            "templates": templates.iter().map(Template::to_json).collect::<Vec<_>>()
        }),
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
pub fn colour(text: &str) -> &str {
    let ok = text.len() == 7
        && text.starts_with('#')
        && text[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok { text } else { "#000000" }
}

/// The short side of the space a face is drawn in; the long side follows
/// the template's proportions, and the SVG's `viewBox` scales the drawing
/// to the template's pixel size.
const DESIGN_SHORT_SIDE: i64 = 540;

/// The drawing space of a `width` x `height` face: 540 on the short side,
/// the long side in the same proportion (856 x 540 for the ID-1 size).
/// A size that is not positive (only a damaged row has one) draws as
/// 856 x 540.
pub fn design_size(width: i64, height: i64) -> (i64, i64) {
    if width <= 0 || height <= 0 {
        return (856, DESIGN_SHORT_SIDE);
    }
    if width >= height {
        (
            (DESIGN_SHORT_SIDE * width + height / 2) / height,
            DESIGN_SHORT_SIDE,
        )
    } else {
        (
            DESIGN_SHORT_SIDE,
            (DESIGN_SHORT_SIDE * height + width / 2) / width,
        )
    }
}

/// Where a layout puts things, in the drawing space.
struct Geometry {
    /// Left edge of the logo and the organisation's name.
    header_x: i64,
    /// Baseline of the organisation's name.
    header_y: i64,
    /// The organisation's name is white (it sits on the accent band).
    header_on_band: bool,
    /// The photo's box: x, y, width, height.
    photo: (i64, i64, i64, i64),
    /// Where the text lines start: x (their anchor) and the first
    /// baseline; the x when the photo is shown sits right of it.
    lines: (i64, i64),
    /// The text lines are centred on their x.
    centred: bool,
    /// The QR code's box: x, y, side.
    qr: (i64, i64, i64),
}

/// Draws the layout's decoration (bands, panels, watermark) into `svg`
/// and says where the rest goes. `w` x `h` is the drawing space.
fn decorate(
    svg: &mut String,
    template: &Template,
    face: &Face<'_>,
    (w, h): (i64, i64),
    (fg, accent): (&str, &str),
) -> Geometry {
    // Shapes that reach the card's edge are clipped to its rounded corners.
    let clipped = |shapes: String| {
        format!(
            r#"<clipPath id="dc-edge"><rect width="{w}" height="{h}" rx="28"/></clipPath><g clip-path="url(#dc-edge)">{shapes}</g>"#
        )
    };
    let standard = |header_x: i64, header_on_band: bool| Geometry {
        header_x,
        header_y: 70,
        header_on_band,
        photo: (header_x, 150, 180, 220),
        lines: (header_x, 190),
        centred: false,
        qr: (w - 260, h - 290, 220),
    };
    match template.layout.as_str() {
        "stripe" => {
            svg.push_str(&format!(
                r#"<rect x="0" y="0" width="36" height="{h}" fill="{accent}"/>"#
            ));
            standard(76, false)
        }
        "minimal" => {
            svg.push_str(&format!(
                r#"<rect x="40" y="{}" width="{}" height="4" fill="{accent}"/>"#,
                h - 60,
                w - 80
            ));
            standard(48, false)
        }
        "portrait" => {
            svg.push_str(&clipped(format!(
                r#"<rect x="0" y="0" width="{w}" height="130" fill="{accent}"/>"#
            )));
            Geometry {
                header_x: 48,
                header_y: 82,
                header_on_band: true,
                photo: (w / 2 - 90, 160, 180, 220),
                lines: (w / 2, 430),
                centred: true,
                qr: (w / 2 - 90, h - 230, 180),
            }
        }
        "photo_left" => {
            svg.push_str(&clipped(format!(
                r#"<rect x="0" y="0" width="300" height="{h}" fill="{accent}"/>"#
            )));
            Geometry {
                header_x: 330,
                header_y: 84,
                header_on_band: false,
                photo: (40, 36, 220, 268),
                lines: (330, 170),
                centred: false,
                qr: (60, h - 216, 180),
            }
        }
        "gradient" => {
            let background = colour(&template.background);
            svg.push_str(&format!(
                r#"<defs><linearGradient id="dc-band" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="{accent}"/><stop offset="1" stop-color="{accent}" stop-opacity="0.35"/></linearGradient></defs>"#
            ));
            svg.push_str(&clipped(format!(
                r#"<rect x="0" y="0" width="{w}" height="130" fill="url(#dc-band)"/><rect x="0" y="130" width="{w}" height="6" fill="{accent}"/><rect x="0" y="136" width="{w}" height="2" fill="{background}"/>"#
            )));
            Geometry {
                header_x: 48,
                header_y: 82,
                header_on_band: true,
                photo: (48, 170, 180, 220),
                lines: (48, 215),
                centred: false,
                qr: (w - 240, h - 262, 200),
            }
        }
        "watermark" => {
            let initial: String = face
                .organisation
                .chars()
                .find(|c| c.is_alphanumeric())
                .map(|c| c.to_uppercase().collect())
                .unwrap_or_default();
            svg.push_str(&format!(
                r#"<text x="{}" y="{}" font-size="{}" font-weight="bold" fill="{accent}" opacity="0.09" text-anchor="middle" transform="rotate(-20 {} {})">{}</text><rect x="16" y="16" width="{}" height="{}" rx="20" fill="none" stroke="{accent}" stroke-width="4"/><rect x="48" y="98" width="120" height="6" fill="{accent}"/>"#,
                w / 2,
                h / 2 + h / 5,
                h * 3 / 4,
                w / 2,
                h / 2,
                escape(&initial),
                w - 32,
                h - 32
            ));
            Geometry {
                header_x: 48,
                header_y: 80,
                header_on_band: false,
                photo: (48, 140, 180, 220),
                lines: (48, 185),
                centred: false,
                qr: (w - 250, h - 270, 200),
            }
        }
        "diagonal" => {
            svg.push_str(&clipped(format!(
                r#"<polygon points="{},0 {w},0 {w},{h} {},{h}" fill="{accent}"/><polygon points="{},0 {},0 {},{h} {},{h}" fill="{fg}" opacity="0.15"/>"#,
                w * 72 / 100,
                w * 58 / 100,
                w * 68 / 100,
                w * 72 / 100,
                w * 58 / 100,
                w * 54 / 100,
            )));
            Geometry {
                header_x: 48,
                header_y: 80,
                header_on_band: false,
                photo: (48, 140, 180, 220),
                lines: (48, 185),
                centred: false,
                qr: (w - 250, h - 270, 200),
            }
        }
        // `classic`, and the fallback for a layout this release does not
        // know (only a damaged row has one).
        _ => {
            svg.push_str(&format!(
                r#"<rect x="0" y="0" width="{w}" height="110" rx="28" fill="{accent}"/><rect x="0" y="80" width="{w}" height="30" fill="{accent}"/>"#
            ));
            standard(48, true)
        }
    }
}

/// The card face as an SVG document of the template's size.
///
/// The face is drawn in a space 540 units on its short side
/// ([`design_size`]) and scaled to the template's width and height.
///
/// # Errors
///
/// When the verification URL does not fit a QR code.
pub fn card_svg(template: &Template, face: &Face<'_>) -> Result<String, String> {
    let (w, h) = (template.width, template.height);
    let (dw, dh) = design_size(w, h);
    let (bg, fg, accent) = (
        colour(&template.background),
        colour(&template.foreground),
        colour(&template.accent),
    );
    let font = face.font_family.unwrap_or(crate::fonts::SANS);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {dw} {dh}" font-family="{font}"><rect width="{dw}" height="{dh}" rx="28" fill="{bg}"/>"#
    );
    // Everything below is drawn in the design space.
    let (w, h) = (dw, dh);
    let geometry = decorate(&mut svg, template, face, (w, h), (fg, accent));
    let text_x = match &face.logo {
        Some((content_type, bytes)) => {
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            svg.push_str(&format!(
                r#"<image x="{}" y="{}" width="64" height="64" preserveAspectRatio="xMidYMid meet" href="data:{};base64,{data}"/>"#,
                geometry.header_x,
                geometry.header_y - 48,
                escape(content_type)
            ));
            geometry.header_x + 80
        }
        None => geometry.header_x,
    };
    let header_fill = if geometry.header_on_band {
        "#ffffff"
    } else {
        fg
    };
    svg.push_str(&format!(
        r#"<text x="{text_x}" y="{}" font-size="36" font-weight="bold" fill="{header_fill}">{}</text>"#,
        geometry.header_y,
        escape(face.organisation)
    ));
    let (mut line_x, mut y) = geometry.lines;
    if template.shows("photo") {
        let (px, py, pw, ph) = geometry.photo;
        match &face.photo {
            Some((content_type, bytes)) => {
                let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                svg.push_str(&format!(
                    r#"<image x="{px}" y="{py}" width="{pw}" height="{ph}" preserveAspectRatio="xMidYMid slice" href="data:{};base64,{data}"/>"#,
                    escape(content_type)
                ));
            }
            None => svg.push_str(&format!(
                r#"<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="{fg}" stroke-dasharray="6 6"/>"#
            )),
        }
        // Beside the photo when it is on the text's line, under it when
        // the text is centred below it.
        if !geometry.centred && px <= line_x && line_x < px + pw + 30 {
            line_x = px + pw + 30;
        }
        if geometry.centred {
            y = y.max(py + ph + 50);
        }
    }
    let anchor = if geometry.centred {
        r#" text-anchor="middle""#
    } else {
        ""
    };
    let mut line = |svg: &mut String, size: u32, weight: &str, text: String| {
        svg.push_str(&format!(
            r#"<text x="{line_x}" y="{y}" font-size="{size}" font-weight="{weight}" fill="{fg}"{anchor}>{}</text>"#,
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
        let (mut qx, mut qy, mut size) = geometry.qr;
        // Centred text runs down towards the code: the code moves below the
        // last line and shrinks to fit above the bottom edge (not below 96).
        if geometry.centred && y - 10 > qy {
            qy = y - 10;
            size = size.min(h - 44 - qy).max(96);
            qx = w / 2 - size / 2;
        }
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
        for layout in LAYOUTS {
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

    fn plain_face() -> Face<'static> {
        Face {
            organisation: "Kathmandu Runners",
            holder: "Asha Gurung",
            member_number: "M-1",
            card_number: "C-1",
            expires_on: "2027-01-01",
            status: "active",
            photo: None,
            verification_url: Some("https://x.example/v/abc".into()),
            souk_mark: false,
            extra: Vec::new(),
            font_family: None,
            logo: None,
        }
    }

    #[test]
    fn every_layout_draws_its_own_face_at_the_templates_size() {
        let face = plain_face();
        let mut faces = Vec::new();
        for layout in LAYOUTS {
            let mut template = template(layout);
            template.foreground = "#102030".into();
            if layout == "portrait" {
                (template.width, template.height) = (540, 856);
            }
            let svg = card_svg(&template, &face).unwrap();
            let size = format!(
                r#"width="{}" height="{}" viewBox="0 0 {} {}""#,
                template.width, template.height, template.width, template.height
            );
            assert!(svg.contains(&size), "{layout}: {svg}");
            assert!(svg.contains("Asha Gurung") && svg.contains("Kathmandu Runners"));
            assert!(svg.contains("Valid until 2027-01-01"), "{layout}");
            assert!(!svg.contains("Verified with Souk"), "{layout}");
            // The empty photo frame (dashed) and the QR code are inside the face.
            assert!(svg.contains("stroke-dasharray"), "{layout}");
            let qr = svg.split("<svg x=\"").nth(1).expect("a QR code");
            let numbers: Vec<i64> = qr
                .split('"')
                .filter_map(|part| part.parse().ok())
                .take(4)
                .collect();
            let (x, y, side) = (numbers[0], numbers[1], numbers[2]);
            assert!(
                x >= 0 && y >= 0 && x + side <= template.width && y + side <= template.height,
                "{layout}: QR at {x},{y} size {side}"
            );
            // Decoration aside, the text and pictures differ per layout.
            faces.push(svg);
        }
        for (i, a) in faces.iter().enumerate() {
            for b in &faces[i + 1..] {
                assert_ne!(a, b, "two layouts draw the same face");
            }
        }
        let watermark = card_svg(&template("watermark"), &face).unwrap();
        assert!(watermark.contains(r#"opacity="0.09""#) && watermark.contains(">K</text>"));
        let gradient = card_svg(&template("gradient"), &face).unwrap();
        assert!(gradient.contains("<linearGradient"));
    }

    #[test]
    fn a_portrait_code_moves_below_the_text_it_would_cover() {
        let mut template = template("portrait");
        (template.width, template.height) = (540, 856);
        let qr_box = |extra: usize| {
            let mut face = plain_face();
            face.extra = (0..extra).map(|n| format!("Field {n}: x")).collect();
            let svg = card_svg(&template, &face).unwrap();
            let qr = svg.split("<svg x=\"").nth(1).expect("a QR code").to_owned();
            let numbers: Vec<i64> = qr
                .split('"')
                .filter_map(|part| part.parse().ok())
                .take(3)
                .collect();
            let last_line = svg
                .rsplit("<text x=\"270\" y=\"")
                .next()
                .and_then(|rest| rest.split('"').next())
                .and_then(|y| y.parse::<i64>().ok())
                .unwrap();
            (numbers[0], numbers[1], numbers[2], last_line)
        };
        assert_eq!(qr_box(0), (180, 626, 180, 588));
        let (x, y, side, last) = qr_box(1);
        assert!(
            y > last && side < 180 && x == 270 - side / 2,
            "{x} {y} {side} {last}"
        );
        assert!(y + side <= 856 - 40);
    }

    #[test]
    fn other_sizes_scale_the_drawing_space() {
        assert_eq!(design_size(856, 540), (856, 540));
        assert_eq!(design_size(540, 856), (540, 856));
        assert_eq!(design_size(1712, 1080), (856, 540));
        assert_eq!(design_size(1000, 500), (1080, 540));
        assert_eq!(design_size(0, 540), (856, 540));
        assert_eq!(design_size(-3, -3), (856, 540));
        let mut template = template("classic");
        (template.width, template.height) = (1712, 1080);
        let svg = card_svg(&template, &plain_face()).unwrap();
        assert!(svg.contains(r#"width="1712" height="1080" viewBox="0 0 856 540""#));
        assert_eq!(template.feature(), "basic_templates");
        template.tier = "custom".into();
        assert_eq!(template.feature(), "advanced_templates");
        template.tier = "premium".into();
        assert_eq!(template.feature(), "premium_templates");
    }
}
