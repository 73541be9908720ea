//! Card faces (the SVG `render.rs` writes) as PNG and PDF, and the A4
//! print sheets of the print export — drawn in the module with pure-Rust
//! crates: usvg reads the SVG and shapes its text with rustybuzz from the
//! embedded fonts (`fonts.rs`), resvg paints it with tiny-skia, svg2pdf
//! writes it as PDF vectors with the fonts subset into the file.
//!
//! Photos and logos are untrusted bytes. Before they go into a face that
//! is rasterised or converted they pass [`prepare_image`]: decoded under a
//! memory bound, scaled down to what a card can show, and encoded again,
//! so an image that does not decode, or would not fit the module's memory,
//! is left out (the face shows its empty frame) instead of failing the
//! render, and a PDF of many cards does not carry every full-size photo.
//! Only `data:` image URLs of PNG and JPEG are read; nothing is fetched.

use std::collections::HashMap;
use std::fmt;
use std::io::Cursor;
use std::sync::Arc;

use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::png::PngEncoder;
use ::image::{ImageFormat, ImageReader, Limits};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref};
use resvg::tiny_skia;
use usvg::{ImageHrefResolver, ImageKind, fontdb::Database};

use crate::fonts;

/// The ID-1 card's long side (85.6 mm) in PDF points: a card PDF's page
/// and a print sheet's slot have it.
const CARD_LONG_PT: f32 = 85.6 / 25.4 * 72.0;
/// The ID-1 card's short side (54 mm) in points.
const CARD_SHORT_PT: f32 = 54.0 / 25.4 * 72.0;
/// A4 in points.
pub const A4: (f32, f32) = (595.28, 841.89);
/// Card slots per print sheet: 2 columns, 4 rows.
pub const PER_SHEET: usize = 8;
/// Length of a cut mark, and its gap from the card, in points.
const MARK: (f32, f32) = (10.0, 3.0);
/// The largest side of a PNG, in pixels (a pixmap of 2048 x 2048 is
/// 16 MiB of the module's memory).
const MAX_PNG_SIDE: u32 = 2048;
/// The most memory decoding one photo or logo may take; larger images are
/// left out of PNG and PDF faces. 24 MiB is about 8 megapixels of RGB.
const MAX_DECODE_BYTES: u64 = 24 * 1024 * 1024;
/// The widest or tallest image decoded at all, in pixels.
const MAX_DECODE_SIDE: u32 = 8192;

/// Why a face could not be drawn. None of these carries the tenant's
/// data; they are failures of the module's own SVG or of its memory.
#[derive(Debug)]
pub enum RenderError {
    /// usvg refused the SVG.
    Svg(String),
    /// The face is larger than a PNG may be.
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// PNG encoding failed.
    Png(String),
    /// svg2pdf failed.
    Pdf(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Svg(why) => write!(f, "the card face is not drawable SVG: {why}"),
            Self::TooLarge { width, height } => write!(
                f,
                "a card face of {width} x {height} pixels is larger than a PNG may be \
                 ({MAX_PNG_SIDE} pixels a side)"
            ),
            Self::Png(why) => write!(f, "the PNG was not written: {why}"),
            Self::Pdf(why) => write!(f, "the PDF was not written: {why}"),
        }
    }
}

/// What an image on a face is for, which bounds the size it is scaled to:
/// about twice the pixels the face gives it, so it prints sharp.
#[derive(Debug, Clone, Copy)]
pub enum ImageUse {
    /// A holder's photo.
    Photo,
    /// The organisation's logo.
    Logo,
}

impl ImageUse {
    fn max_side(self) -> u32 {
        match self {
            Self::Photo => 480,
            Self::Logo => 256,
        }
    }
}

/// An uploaded image made safe and small for a PNG or PDF face: decoded
/// within [`MAX_DECODE_BYTES`], scaled down to fit its use, encoded again
/// (JPEG, or PNG when it has transparency). `None` when it is not a PNG
/// or JPEG that decodes within the bounds.
pub fn prepare_image(
    content_type: &str,
    bytes: &[u8],
    purpose: ImageUse,
) -> Option<(String, Vec<u8>)> {
    let format = match content_type {
        "image/png" => ImageFormat::Png,
        "image/jpeg" => ImageFormat::Jpeg,
        _ => return None,
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoded = reader.decode().ok()?;
    let side = purpose.max_side();
    let image = if decoded.width() > side || decoded.height() > side {
        decoded.thumbnail(side, side)
    } else {
        decoded
    };
    let mut out = Vec::new();
    if image.color().has_alpha() {
        image
            .to_rgba8()
            .write_with_encoder(PngEncoder::new(&mut out))
            .ok()?;
        Some(("image/png".to_owned(), out))
    } else {
        image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 88))
            .ok()?;
        Some(("image/jpeg".to_owned(), out))
    }
}

/// The Devanagari faces by weight (regular, bold).
const DEVANAGARI: [&str; 2] = ["NotoSansDevanagari-Regular", "NotoSansDevanagari-Bold"];

/// Works around usvg 0.45's layout of Devanagari: it gives a cluster of
/// several glyphs (a consonant with a spacing vowel sign, as in `शा`) the
/// advance of its widest glyph instead of their sum, so the next
/// syllable overlaps the vowel sign and a word's space disappears
/// (later usvg releases sum them; svg2pdf 0.13 is tied to 0.45).
///
/// For each `<text>` of Devanagari (and spaces, digits or punctuation the
/// Devanagari face has), this shapes the text as usvg will, with the same
/// face and rustybuzz, and gives the character after each such cluster a
/// `dx` of the advance usvg loses. Other text is left as it is. Only the
/// PNG and PDF paths use it; browsers lay `card.svg` out themselves.
fn devanagari_advances(svg: &str, db: &Database) -> String {
    let mut out = String::with_capacity(svg.len() + 256);
    let mut rest = svg;
    // The font family the texts inherit: the nearest `font-family` before
    // them (each face sets it on its root `<svg>`).
    let mut family = String::new();
    while let Some(start) = rest.find("<text ") {
        if let Some(value) = rest[..start]
            .rsplit(" font-family=\"")
            .next()
            .filter(|_| rest[..start].contains(" font-family=\""))
            .and_then(|after| after.split('"').next())
        {
            family = value.to_owned();
        }
        let element = &rest[start..];
        let (Some(open_end), Some(close)) = (element.find('>'), element.find("</text>")) else {
            break;
        };
        if open_end > close {
            break;
        }
        out.push_str(&rest[..start]);
        let (tag, content) = (&element[..open_end], &element[open_end + 1..close]);
        match spaced_text(tag, content, &family, db) {
            Some(fixed) => out.push_str(&fixed),
            None => out.push_str(&element[..close]),
        }
        out.push_str("</text>");
        rest = &element[close + "</text>".len()..];
    }
    out.push_str(rest);
    out
}

/// Whether a character is Devanagari (or a joiner used inside it).
fn is_devanagari(c: char) -> bool {
    ('\u{0900}'..='\u{097f}').contains(&c) || matches!(c, '\u{200c}' | '\u{200d}')
}

/// `text` cut into runs, each Devanagari (characters and the spaces
/// between them: `true`) or not (`false`), in order.
fn script_runs(text: &str) -> Vec<(bool, std::ops::Range<usize>)> {
    let mut devanagari: Vec<std::ops::Range<usize>> = Vec::new();
    let mut open: Option<std::ops::Range<usize>> = None;
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        if is_devanagari(c) {
            open = Some(open.map_or(at..end, |run| run.start..end));
        } else if c != ' ' {
            devanagari.extend(open.take());
        }
    }
    devanagari.extend(open);
    let mut runs = Vec::new();
    let mut done = 0;
    for run in devanagari {
        if run.start > done {
            runs.push((false, done..run.start));
        }
        done = run.end;
        runs.push((true, run));
    }
    if done < text.len() {
        runs.push((false, done..text.len()));
    }
    runs
}

/// A run shaped with rustybuzz: its width, and the advance usvg 0.45
/// loses after each multi-glyph cluster, by the byte index (in `text`)
/// where the next cluster starts.
fn shape_run(
    face: &rustybuzz::Face<'_>,
    text: &str,
    run: &std::ops::Range<usize>,
    scale: f32,
) -> (f32, Vec<(usize, f32)>) {
    let mut buffer = rustybuzz::UnicodeBuffer::new();
    buffer.push_str(&text[run.clone()]);
    buffer.set_direction(rustybuzz::Direction::LeftToRight);
    let shaped = rustybuzz::shape(face, &[], buffer);
    let glyphs: Vec<(usize, i32)> = shaped
        .glyph_infos()
        .iter()
        .zip(shaped.glyph_positions())
        .map(|(info, pos)| (run.start + info.cluster as usize, pos.x_advance))
        .collect();
    let width = glyphs.iter().map(|g| g.1).sum::<i32>() as f32 * scale;
    let mut lost = Vec::new();
    let mut at = 0;
    while at < glyphs.len() {
        let cluster = glyphs[at].0;
        let end = glyphs[at..]
            .iter()
            .position(|g| g.0 != cluster)
            .map_or(glyphs.len(), |n| at + n);
        let (sum, max) = glyphs[at..end]
            .iter()
            .fold((0, i32::MIN), |(s, m), g| (s + g.1, m.max(g.1)));
        if end - at > 1 && sum > max {
            let next = glyphs.get(end).map_or(run.end, |g| g.0);
            lost.push((next, (sum - max) as f32 * scale));
        }
        at = end;
    }
    (width, lost)
}

/// One `<text>` element (its opening tag without `>`, and its content,
/// and the font family it inherits) as usvg should lay it out; `None`
/// when it needs nothing.
///
/// Two fixes, both for text with Devanagari. A `dx` list restores the
/// advance usvg loses after each multi-glyph cluster. And a line that
/// mixes Devanagari with another script is cut into runs, each placed at
/// its own `x` (a text chunk of its own), because usvg's font fallback
/// gives up on a line whose two fonts shape it into different numbers of
/// glyphs (its Devanagari would be empty boxes). A run's place is its
/// shaped width, measured here with rustybuzz and the face usvg picks.
fn spaced_text(tag: &str, content: &str, family: &str, db: &Database) -> Option<String> {
    if content.contains('<') || tag.contains(" dx=") {
        return None;
    }
    let unescaped = content
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    // usvg collapses white space the same way (xml:space="default").
    let text = unescaped.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.chars().any(is_devanagari) {
        return None;
    }
    let attribute = |name: &str| -> Option<&str> {
        tag.split(&format!(" {name}=\"")).nth(1)?.split('"').next()
    };
    let size: f32 = attribute("font-size")?.parse().ok()?;
    let bold = matches!(
        attribute("font-weight"),
        Some("bold" | "700" | "800" | "900")
    );
    let face_id = |name: &str| {
        db.faces()
            .find(|f| f.post_script_name == name)
            .map(|f| f.id)
    };
    let devanagari_id = face_id(DEVANAGARI[usize::from(bold)])?;
    let latin_name = match (family.starts_with("Noto Serif"), bold) {
        (true, true) => "NotoSerif-Bold",
        (true, false) => "NotoSerif-Regular",
        (false, true) => "NotoSans-Bold",
        (false, false) => "NotoSans-Regular",
    };
    let latin_id = face_id(latin_name)?;
    // Each run: (is Devanagari, range, width); and the lost advances.
    let (mixed, runs, shifts) = db.with_face_data(devanagari_id, |data, index| {
        let face = rustybuzz::Face::from_slice(data, index)?;
        let scale = size / f32::from(face.units_per_em() as u16);
        // When the face has every character usvg shapes the whole line
        // with it; otherwise each run goes in its own chunk.
        let mixed = text.chars().any(|c| face.glyph_index(c).is_none());
        let runs = if mixed {
            script_runs(&text)
        } else {
            vec![(true, 0..text.len())]
        };
        let mut shaped = Vec::new();
        let mut lost = Vec::new();
        for (devanagari, run) in runs {
            if devanagari {
                let (width, run_lost) = shape_run(&face, &text, &run, scale);
                lost.extend(run_lost);
                shaped.push((true, run, width));
            } else {
                shaped.push((false, run, 0.0));
            }
        }
        Some((mixed, shaped, lost))
    })??;
    let runs: Vec<(bool, std::ops::Range<usize>, f32)> = if mixed {
        db.with_face_data(latin_id, |data, index| {
            let face = rustybuzz::Face::from_slice(data, index)?;
            let scale = size / f32::from(face.units_per_em() as u16);
            Some(
                runs.iter()
                    .map(|(devanagari, run, width)| {
                        let width = if *devanagari {
                            *width
                        } else {
                            shape_run(&face, &text, run, scale).0
                        };
                        (*devanagari, run.clone(), width)
                    })
                    .collect(),
            )
        })??
    } else {
        runs
    };
    if !mixed && shifts.is_empty() {
        return None;
    }
    // A run placed at its own `x` starts where the run before it ends:
    // no shift on its first character.
    let starts: Vec<usize> = if mixed {
        runs.iter().map(|r| r.1.start).collect()
    } else {
        Vec::new()
    };
    let dx: Vec<String> = text
        .char_indices()
        .map(|(byte, _)| {
            shifts
                .iter()
                .filter(|(at, _)| !starts.contains(at))
                .find(|(at, _)| *at == byte)
                .map_or_else(|| "0".to_owned(), |(_, shift)| format!("{shift:.2}"))
        })
        .collect();
    let escape = crate::render::escape;
    let body = if mixed {
        let x: f32 = attribute("x")?.parse().ok()?;
        // A run's width is its glyphs' advances summed, as drawn.
        let total: f32 = runs.iter().map(|r| r.2).sum();
        let mut at = match attribute("text-anchor") {
            Some("middle") => x - total / 2.0,
            Some("end") => x - total,
            _ => x,
        };
        let mut body = String::new();
        for (_, run, width) in &runs {
            body.push_str(&format!(
                "<tspan x=\"{at:.2}\" text-anchor=\"start\">{}</tspan>",
                escape(&text[run.clone()])
            ));
            at += width;
        }
        body
    } else {
        escape(&text)
    };
    Some(format!("{tag} dx=\"{}\">{body}", dx.join(" ")))
}

/// Reads an SVG with the embedded fonts; `data:` PNG and JPEG images
/// only, no file or other URL.
fn tree(svg: &str, fontdb: &Arc<Database>) -> Result<usvg::Tree, RenderError> {
    let svg = devanagari_advances(svg, fontdb);
    let mut options = usvg::Options {
        fontdb: Arc::clone(fontdb),
        font_family: "Noto Sans".to_owned(),
        image_href_resolver: ImageHrefResolver {
            resolve_data: Box::new(|mime, data, _| match mime {
                "image/png" => Some(ImageKind::PNG(data)),
                "image/jpeg" => Some(ImageKind::JPEG(data)),
                _ => None,
            }),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    };
    options.font_resolver.select_fallback = Box::new(|c, tried, db| fonts::fallback(c, tried, db));
    usvg::Tree::from_str(&svg, &options).map_err(|error| RenderError::Svg(error.to_string()))
}

/// A face as a PNG of its own size (the template's width and height).
///
/// # Errors
///
/// The SVG does not parse, the face is larger than [`MAX_PNG_SIDE`], or
/// encoding fails.
pub fn png(svg: &str) -> Result<Vec<u8>, RenderError> {
    let tree = tree(svg, &fonts::database())?;
    let size = tree.size().to_int_size();
    let (width, height) = (size.width(), size.height());
    if width > MAX_PNG_SIDE || height > MAX_PNG_SIDE {
        return Err(RenderError::TooLarge { width, height });
    }
    let mut pixmap =
        tiny_skia::Pixmap::new(width, height).ok_or(RenderError::TooLarge { width, height })?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|error| RenderError::Png(error.to_string()))
}

/// A face as a one-page PDF of the printed card's size (ID-1, 85.6 x 54
/// mm, upright when the face is taller than wide), text as text in the
/// embedded fonts.
///
/// # Errors
///
/// The SVG does not parse or svg2pdf fails.
pub fn pdf(svg: &str) -> Result<Vec<u8>, RenderError> {
    let tree = tree(svg, &fonts::database())?;
    let long_px = tree.size().width().max(tree.size().height());
    let dpi = long_px / CARD_LONG_PT * 72.0;
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions { dpi },
    )
    .map_err(|error| RenderError::Pdf(error.to_string()))
}

/// The PDF of a print export: A4 pages of up to [`PER_SHEET`] card faces
/// at their printed size, 2 columns by 4 rows, with cut marks at the
/// grid's lines. Each page is one SVG converted by svg2pdf, so a page's
/// text embeds its own subset of the fonts.
pub struct PrintSheets {
    pdf: Pdf,
    next: Ref,
    catalog: Ref,
    tree: Ref,
    pages: Vec<Ref>,
    fontdb: Arc<Database>,
}

impl Default for PrintSheets {
    fn default() -> Self {
        Self::new()
    }
}

impl PrintSheets {
    /// An empty document.
    pub fn new() -> Self {
        let mut next = Ref::new(1);
        let catalog = next.bump();
        let tree = next.bump();
        Self {
            pdf: Pdf::new(),
            next,
            catalog,
            tree,
            pages: Vec::new(),
            fontdb: fonts::database(),
        }
    }

    /// Pages so far.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Adds a page with these faces (at most [`PER_SHEET`]; more are not
    /// drawn), in reading order.
    ///
    /// # Errors
    ///
    /// A face's SVG does not parse, or svg2pdf fails.
    pub fn add_page(&mut self, faces: &[String]) -> Result<(), RenderError> {
        let tree = tree(&sheet_svg(faces), &self.fontdb)?;
        let (chunk, xobject) = svg2pdf::to_chunk(&tree, svg2pdf::ConversionOptions::default())
            .map_err(|error| RenderError::Pdf(error.to_string()))?;
        let mut renumbered = HashMap::new();
        let next = &mut self.next;
        let chunk = chunk.renumber(|old| *renumbered.entry(old).or_insert_with(|| next.bump()));
        let xobject = *renumbered
            .get(&xobject)
            .ok_or_else(|| RenderError::Pdf("the page's drawing was not written".to_owned()))?;
        let (page_id, content_id) = (self.next.bump(), self.next.bump());
        let mut content = Content::new();
        content
            .save_state()
            .transform([A4.0, 0.0, 0.0, A4.1, 0.0, 0.0])
            .x_object(Name(b"S"))
            .restore_state();
        self.pdf.stream(content_id, &content.finish());
        let mut page = self.pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, A4.0, A4.1));
        page.parent(self.tree);
        page.contents(content_id);
        page.resources().x_objects().pair(Name(b"S"), xobject);
        page.finish();
        self.pdf.extend(&chunk);
        self.pages.push(page_id);
        Ok(())
    }

    /// The finished PDF.
    pub fn finish(mut self) -> Vec<u8> {
        self.pdf.catalog(self.catalog).pages(self.tree);
        self.pdf
            .pages(self.tree)
            .kids(self.pages.iter().copied())
            .count(i32::try_from(self.pages.len()).unwrap_or(i32::MAX));
        self.pdf.finish()
    }
}

/// The width and height a face's root `<svg>` declares (its pixel size).
fn face_size(svg: &str) -> (f32, f32) {
    let root = svg.split('>').next().unwrap_or("");
    let attribute = |name: &str| -> Option<f32> {
        let rest = root.split(&format!(" {name}=\"")).nth(1)?;
        rest.split('"').next()?.parse().ok()
    };
    match (attribute("width"), attribute("height")) {
        (Some(w), Some(h)) if w > 0.0 && h > 0.0 => (w, h),
        _ => (856.0, 540.0),
    }
}

/// One A4 page as SVG in points: the faces nested in their slots (a face
/// taller than wide is turned a quarter so it fills its slot), cut marks
/// outside the grid.
fn sheet_svg(faces: &[String]) -> String {
    let (slot_w, slot_h) = (CARD_LONG_PT, CARD_SHORT_PT);
    let x0 = (A4.0 - 2.0 * slot_w) / 2.0;
    let y0 = (A4.1 - 4.0 * slot_h) / 2.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">"#,
        A4.0, A4.1, A4.0, A4.1
    );
    for (index, face) in faces.iter().take(PER_SHEET).enumerate() {
        let (col, row) = ((index % 2) as f32, (index / 2) as f32);
        let (x, y) = (x0 + col * slot_w, y0 + row * slot_h);
        let (w, h) = face_size(face);
        // The face is nested as it is: its own width and height, its own
        // viewBox; the group scales (and turns) it into the slot.
        let transform = if h > w {
            let scale = slot_w / h;
            format!("translate({} {y}) rotate(90) scale({scale})", x + slot_w)
        } else {
            let scale = slot_w / w;
            format!("translate({x} {y}) scale({scale})")
        };
        svg.push_str(&format!(r#"<g transform="{transform}">{face}</g>"#));
    }
    let (mark, gap) = MARK;
    let (x1, y1) = (x0 + 2.0 * slot_w, y0 + 4.0 * slot_h);
    svg.push_str(r##"<g stroke="#000000" stroke-width="0.5">"##);
    let mut line = |ax: f32, ay: f32, bx: f32, by: f32| {
        svg.push_str(&format!(
            r#"<line x1="{ax}" y1="{ay}" x2="{bx}" y2="{by}"/>"#
        ));
    };
    for col in 0..=2 {
        let x = x0 + col as f32 * slot_w;
        line(x, y0 - gap - mark, x, y0 - gap);
        line(x, y1 + gap, x, y1 + gap + mark);
    }
    for row in 0..=4 {
        let y = y0 + row as f32 * slot_h;
        line(x0 - gap - mark, y, x0 - gap, y);
        line(x1 + gap, y, x1 + gap + mark, y);
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face like `render.rs` writes, with `name` as its one line.
    fn face(name: &str) -> String {
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="856" height="540" viewBox="0 0 856 540" font-family="{}"><rect width="856" height="540" fill="#ffffff"/><text x="40" y="200" font-size="60" font-weight="bold" fill="#000000">{name}</text></svg>"##,
            fonts::SANS
        )
    }

    fn png_of(svg: &str) -> (u32, u32, Vec<u8>) {
        let bytes = png(svg).unwrap();
        let image = ::image::load_from_memory_with_format(&bytes, ImageFormat::Png).unwrap();
        (image.width(), image.height(), image.to_rgba8().into_raw())
    }

    #[test]
    fn a_png_has_the_faces_size_and_draws_nepali_glyphs() {
        let (w, h, nepali) = png_of(&face("आशा गुरुङ"));
        assert_eq!((w, h), (856, 540));
        let (_, _, other) = png_of(&face("बिकास राई"));
        let (_, _, question) = png_of(&face("????????"));
        // Two names with no glyph would both be rows of .notdef boxes.
        assert_ne!(nepali, other);
        assert_ne!(nepali, question);
        let ink = |pixels: &[u8]| pixels.chunks(4).filter(|p| p[0] < 128).count();
        assert!(ink(&nepali) > 1000, "the name is drawn");
    }

    /// The widest run of blank columns between the first and the last
    /// inked column of a picture.
    fn widest_gap(svg: &str) -> usize {
        let bytes = png(svg).unwrap();
        let image = ::image::load_from_memory_with_format(&bytes, ImageFormat::Png)
            .unwrap()
            .to_rgba8();
        let inked: Vec<bool> = (0..image.width())
            .map(|x| (0..image.height()).any(|y| image.get_pixel(x, y)[0] < 128))
            .collect();
        let first = inked.iter().position(|i| *i).unwrap();
        let last = inked.iter().rposition(|i| *i).unwrap();
        inked[first..=last]
            .split(|i| *i)
            .map(<[bool]>::len)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn nepali_words_keep_their_space_and_syllables_do_not_overlap() {
        // `आशा` ends in a spacing vowel sign; usvg 0.45 alone would draw
        // `गुरुङ` over the word space.
        let gap = widest_gap(&face("आशा गुरुङ"));
        // A space of Noto Sans Devanagari Bold at 60 px is 15.6 px.
        assert!(gap >= 10, "a {gap} px gap between the words");
        // A line mixing scripts: each run is a chunk of its own, so the
        // Devanagari is drawn (not empty boxes) and the space is kept.
        let mixed = face("District: काठमाडौं");
        let svg = devanagari_advances(&mixed, &fonts::database());
        assert!(
            svg.contains("<tspan x=\"40.00\" text-anchor=\"start\">District: </tspan><tspan x=\""),
            "{svg}"
        );
        let boxes = face("District: \u{4e00}\u{4e01}\u{4e02}\u{4e03}");
        assert_ne!(png(&mixed).unwrap(), png(&boxes).unwrap());
        assert!(widest_gap(&mixed) >= 10, "the word space is kept");
        assert_eq!(
            script_runs("a आशा गुरुङ, b क"),
            vec![
                (false, 0..2),
                (true, 2..27),
                (false, 27..31),
                (true, 31..34)
            ],
        );
        let svg = devanagari_advances(&face("राई"), &fonts::database());
        assert!(svg.contains(" dx=\"0 0 "), "{svg}");
        let latin = face("Asha & Gurung");
        assert_eq!(devanagari_advances(&latin, &fonts::database()), latin);
        // SVG it cannot read as text elements passes through unchanged.
        for odd in [
            "<svg><text x=\"1\">राई",
            "<svg><text a=\"</text>\">राई</text>",
        ] {
            assert_eq!(devanagari_advances(odd, &fonts::database()), odd);
        }
    }

    #[test]
    fn a_card_pdf_is_id1_sized_and_embeds_the_devanagari_font() {
        let bytes = pdf(&face("आशा Gurung")).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("%PDF-"));
        assert!(
            text.contains("NotoSansDevanagari-Bold"),
            "Devanagari subset named"
        );
        assert!(text.contains("NotoSans-Bold"), "Latin subset named");
        assert!(text.contains("/FontFile2"));
        let media = text.split("/MediaBox [").nth(1).unwrap();
        let numbers: Vec<f32> = media
            .split(']')
            .next()
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert!((numbers[2] - CARD_LONG_PT).abs() < 0.1, "{numbers:?}");
        assert!((numbers[3] - CARD_SHORT_PT).abs() < 0.1, "{numbers:?}");
    }

    #[test]
    fn print_sheets_hold_eight_faces_a_page() {
        let mut sheets = PrintSheets::new();
        let faces: Vec<String> = (0..17).map(|n| face(&format!("Holder {n}"))).collect();
        for page in faces.chunks(PER_SHEET) {
            sheets.add_page(page).unwrap();
        }
        assert_eq!(sheets.pages(), 3);
        let bytes = sheets.finish();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("/Count 3"));
        assert!(text.contains("/FontFile2"));
        let sheet = sheet_svg(&faces[..8]);
        assert_eq!(sheet.matches("<line ").count(), 3 * 2 + 5 * 2);
        assert_eq!(sheet.matches("<g transform=").count(), 8);
    }

    #[test]
    fn a_portrait_face_is_turned_into_its_slot() {
        let portrait = face("x").replacen(
            "width=\"856\" height=\"540\"",
            "width=\"540\" height=\"856\"",
            1,
        );
        assert_eq!(face_size(&portrait), (540.0, 856.0));
        assert!(sheet_svg(&[portrait]).contains("rotate(90)"));
    }

    #[test]
    fn images_that_do_not_decode_or_are_too_big_are_left_out() {
        assert!(
            prepare_image("image/png", b"\x89PNG\r\n\x1a\nlogo-bytes", ImageUse::Logo).is_none()
        );
        assert!(prepare_image("image/gif", b"GIF89a", ImageUse::Logo).is_none());
        // A valid PNG header claiming 20000 x 20000 pixels.
        let mut huge = Vec::new();
        ::image::RgbImage::new(1, 1)
            .write_with_encoder(PngEncoder::new(&mut huge))
            .unwrap();
        huge[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        assert!(prepare_image("image/png", &huge, ImageUse::Photo).is_none());
        // A large photo is scaled down and comes back as JPEG.
        let mut photo = Vec::new();
        ::image::RgbImage::from_pixel(1200, 900, ::image::Rgb([200, 10, 10]))
            .write_with_encoder(PngEncoder::new(&mut photo))
            .unwrap();
        let (kind, bytes) = prepare_image("image/png", &photo, ImageUse::Photo).unwrap();
        assert_eq!(kind, "image/jpeg");
        let small = ::image::load_from_memory(&bytes).unwrap();
        assert_eq!((small.width(), small.height()), (480, 360));
    }

    #[test]
    fn a_face_too_large_for_a_png_is_refused() {
        let big = face("x").replacen("width=\"856\"", "width=\"5000\"", 1);
        assert!(matches!(png(&big), Err(RenderError::TooLarge { .. })));
    }

    #[test]
    fn external_images_are_not_read() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><image href="/etc/passwd" width="10" height="10"/><image href="https://x.example/a.png" width="10" height="10"/></svg>"#;
        let tree = tree(svg, &fonts::database()).unwrap();
        assert!(!tree.root().has_children(), "no image node survives");
    }
}
