//! Print export (pro, feature `card_export`): cards laid out on A4 pages,
//! 8 per page (2 columns x 4 rows of 85.6 x 54 mm, the ID-1 card size),
//! with cut marks, as one PDF produced by a job into a host file that the
//! tenant downloads through the job's signed `result_url`.
//!
//! The PDF is written with `pdf-writer` in the module. Text uses the PDF
//! standard font Helvetica (every PDF reader has it; nothing is embedded),
//! so characters outside Latin-1 print as `?`.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db;
use souk_sdk::{HookError, JobOutput, Problem, Request, Response, files, jobs, params};

use crate::card::{CARD_COLUMNS, Card, CardStatus, check_number, verification_url};
use crate::{members, qr, render, settings};

/// The most cards one export holds.
const MAX_CARDS: u32 = 1000;
/// Cards per A4 page.
pub const PER_PAGE: usize = 8;
/// A4 in points.
const PAGE: (f32, f32) = (595.28, 841.89);
/// ID-1 card size in points (85.6 x 54 mm).
const CARD: (f32, f32) = (242.65, 153.07);
/// Length of a cut mark, and its gap from the card, in points.
const MARK: (f32, f32) = (10.0, 3.0);

/// The body of `POST /exports` and the job's arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// Cards of this status (default `active`), when `cards` is absent.
    #[serde(default)]
    pub status: Option<String>,
    /// These cards, in this order.
    #[serde(default)]
    pub cards: Option<Vec<String>>,
}

fn selected(export: &Export) -> Result<Vec<Card>, Problem> {
    match &export.cards {
        Some(numbers) => {
            let mut cards = Vec::with_capacity(numbers.len());
            for number in numbers {
                let card: Option<Card> = db::query_optional(
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE number = ?1"),
                    params![number],
                )?;
                cards.push(card.ok_or_else(|| crate::card::card_not_found(number))?);
            }
            Ok(cards)
        }
        None => {
            let status = export.status.as_deref().unwrap_or("active");
            Ok(db::query_as(
                &format!("SELECT {CARD_COLUMNS} FROM cards WHERE status = ?1 ORDER BY id LIMIT ?2"),
                params![status, MAX_CARDS],
            )?)
        }
    }
}

/// Parses and checks an export's body (also used by `POST /qr-sheets`).
fn parse(request: &Request) -> Result<Export, Problem> {
    let export: Export = if request.body().is_empty() {
        Export::default()
    } else {
        request.json()?
    };
    if let Some(status) = &export.status {
        CardStatus::parse(status).map_err(Problem::unprocessable)?;
    }
    if let Some(numbers) = &export.cards {
        if numbers.is_empty() || numbers.len() > MAX_CARDS as usize {
            return Err(Problem::unprocessable(format!(
                "`cards` lists 1 to {MAX_CARDS} card numbers"
            )));
        }
        for number in numbers {
            check_number(number).map_err(|m| Problem::unprocessable(format!("cards: {m}")))?;
        }
    }
    settings::load()?.base_url()?;
    if selected(&export)?.is_empty() {
        return Err(Problem::unprocessable("no card matches; nothing to export"));
    }
    Ok(export)
}

/// `POST /exports` → 202 `{"job", "cards", "pages"}`.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let export = parse(request)?;
    let count = selected(&export)?.len();
    let job = jobs::enqueue("export_pdf", &export)
        .map_err(|error| Problem::internal(format!("the export was not queued: {error}")))?;
    Ok(Response::json(
        202,
        &json!({ "job": job, "cards": count, "pages": count.div_ceil(PER_PAGE) }),
    ))
}

/// The `export_pdf` job: the PDF as a file, the job's result.
///
/// # Errors
///
/// A database or file failure (the host retries).
pub fn run(export: &Export) -> Result<JobOutput, HookError> {
    let problem = |p: Problem| HookError::new(p.to_json());
    let settings = settings::load().map_err(problem)?;
    let base = settings.base_url().map_err(problem)?.to_owned();
    let cards = selected(export).map_err(problem)?;
    let mut faces = Vec::with_capacity(cards.len());
    for (done, card) in cards.iter().enumerate() {
        let template = render::find(&card.template)
            .map_err(problem)?
            .ok_or_else(|| HookError::new(format!("template `{}` is missing", card.template)))?;
        let holder = members::name_of(&card.member_number).map_err(problem)?;
        let qr = qr::group(&verification_url(&base, &card.token)).map_err(HookError::new)?;
        faces.push(PrintCard {
            organisation: settings.organisation_name.clone(),
            holder,
            lines: vec![
                format!("Member {}", card.member_number),
                format!("Card {}", card.number),
                format!("Valid until {}", card.expires_on),
            ],
            background: rgb(&template.background),
            foreground: rgb(&template.foreground),
            accent: rgb(&template.accent),
            qr,
        });
        if done % 50 == 49 {
            jobs::progress(done as u64 + 1, cards.len() as u64, "cards laid out");
        }
    }
    let bytes = pdf(&faces);
    let info = files::put("cards.pdf", "application/pdf", &bytes)
        .map_err(|e| HookError::new(e.to_string()))?;
    jobs::progress(
        cards.len() as u64,
        cards.len() as u64,
        format!("{} pages", faces.len().div_ceil(PER_PAGE)),
    );
    Ok(JobOutput::file(info.id))
}

/// What one printed card shows.
pub struct PrintCard {
    /// Top line.
    pub organisation: String,
    /// The holder's name, large.
    pub holder: String,
    /// Smaller lines under it.
    pub lines: Vec<String>,
    /// Colours as RGB in 0..=1.
    pub background: (f32, f32, f32),
    /// Text colour.
    pub foreground: (f32, f32, f32),
    /// Band colour.
    pub accent: (f32, f32, f32),
    /// The QR code of the verification URL.
    pub qr: qr::Qr,
}

/// `#rrggbb` as RGB in 0..=1 (black when malformed).
fn rgb(text: &str) -> (f32, f32, f32) {
    let channel = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map_or(0.0, |v| f32::from(v) / 255.0)
    };
    if text.len() == 7 && text.starts_with('#') {
        (channel(1..3), channel(3..5), channel(5..7))
    } else {
        (0.0, 0.0, 0.0)
    }
}

/// Text as Latin-1 bytes for the standard font (others become `?`).
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .ok()
                .filter(|b| *b >= 0x20)
                .unwrap_or(b'?')
        })
        .collect()
}

/// The PDF of `cards`, 8 per A4 page, with cut marks.
pub fn pdf(cards: &[PrintCard]) -> Vec<u8> {
    let x0 = (PAGE.0 - 2.0 * CARD.0) / 2.0;
    let y0 = (PAGE.1 - 4.0 * CARD.1) / 2.0;
    let pages = cards
        .chunks(PER_PAGE)
        .map(|chunk| {
            let mut content = Content::new();
            for (index, card) in chunk.iter().enumerate() {
                let (col, row) = (index % 2, index / 2);
                let x = x0 + col as f32 * CARD.0;
                let y = y0 + (3 - row) as f32 * CARD.1;
                draw_card(&mut content, card, x, y);
            }
            cut_marks(&mut content, x0, y0);
            content
        })
        .collect();
    assemble(pages)
}

/// QR codes per A4 page of a QR sheet (4 columns x 5 rows).
pub const QR_PER_PAGE: usize = 20;

/// A sheet of QR codes (bulk QR): 20 per A4 page, each 110 pt wide with
/// its label (the card number) under it.
pub fn qr_sheet(codes: &[(String, qr::Qr)]) -> Vec<u8> {
    let (cell_w, cell_h, size) = (130.0, 150.0, 110.0);
    let x0 = (PAGE.0 - 4.0 * cell_w) / 2.0;
    let y0 = (PAGE.1 - 5.0 * cell_h) / 2.0;
    let pages = codes
        .chunks(QR_PER_PAGE)
        .map(|chunk| {
            let mut content = Content::new();
            for (index, (label, code)) in chunk.iter().enumerate() {
                let (col, row) = (index % 4, index / 4);
                let x = x0 + col as f32 * cell_w + (cell_w - size) / 2.0;
                let y = y0 + (4 - row) as f32 * cell_h + 25.0;
                draw_qr(&mut content, code, x, y, size);
                content
                    .set_fill_rgb(0.0, 0.0, 0.0)
                    .begin_text()
                    .set_font(Name(b"F1"), 9.0)
                    .next_line(x, y - 12.0)
                    .show(Str(&latin1(label)))
                    .end_text();
            }
            content
        })
        .collect();
    assemble(pages)
}

/// A PDF of A4 pages with these contents, fonts F1 (Helvetica) and F2
/// (Helvetica-Bold).
fn assemble(contents: Vec<Content>) -> Vec<u8> {
    let mut next = 1;
    let mut alloc = || {
        let id = Ref::new(next);
        next += 1;
        id
    };
    let (catalog, tree, font, bold) = (alloc(), alloc(), alloc(), alloc());
    let pages: Vec<(Ref, Ref)> = contents.iter().map(|_| (alloc(), alloc())).collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(pages.iter().map(|(page, _)| *page))
        .count(i32::try_from(pages.len()).unwrap_or(i32::MAX));
    pdf.type1_font(font).base_font(Name(b"Helvetica"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold"));
    for (content, (page_id, content_id)) in contents.into_iter().zip(&pages) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1));
        page.parent(tree);
        page.contents(*content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), font);
        fonts.pair(Name(b"F2"), bold);
        fonts.finish();
        resources.finish();
        page.finish();
        pdf.stream(*content_id, &content.finish());
    }
    pdf.finish()
}

/// A QR code, `size` points wide, on white, its lower left at (x, y).
fn draw_qr(content: &mut Content, code: &qr::Qr, x: f32, y: f32, size: f32) {
    content
        .set_fill_rgb(1.0, 1.0, 1.0)
        .rect(x, y, size, size)
        .fill_nonzero();
    let unit = size / code.extent as f32;
    content.set_fill_rgb(0.0, 0.0, 0.0);
    for (mx, my) in qr_modules(&code.path) {
        content.rect(
            x + mx as f32 * unit,
            y + size - (my + 1) as f32 * unit,
            unit,
            unit,
        );
    }
    content.fill_nonzero();
}

/// `POST /qr-sheets` (business, `bulk_qr`): the same selection as
/// `POST /exports` → 202 `{"job", "cards", "pages"}`; job `qr_sheet`
/// leaves a PDF of the cards' QR codes, 20 per page.
pub fn create_qr_sheet(request: &Request) -> Result<Response, Problem> {
    let export = parse(request)?;
    let count = selected(&export)?.len();
    let job = jobs::enqueue("qr_sheet", &export)
        .map_err(|error| Problem::internal(format!("the QR sheet was not queued: {error}")))?;
    Ok(Response::json(
        202,
        &json!({ "job": job, "cards": count, "pages": count.div_ceil(QR_PER_PAGE) }),
    ))
}

/// The `qr_sheet` job.
///
/// # Errors
///
/// A database or file failure (the host retries).
pub fn run_qr_sheet(export: &Export) -> Result<JobOutput, HookError> {
    let problem = |p: Problem| HookError::new(p.to_json());
    let settings = settings::load().map_err(problem)?;
    let base = settings.base_url().map_err(problem)?.to_owned();
    let cards = selected(export).map_err(problem)?;
    let mut codes = Vec::with_capacity(cards.len());
    for card in &cards {
        let code = qr::group(&verification_url(&base, &card.token)).map_err(HookError::new)?;
        codes.push((card.number.clone(), code));
    }
    let bytes = qr_sheet(&codes);
    let info = files::put("qr-codes.pdf", "application/pdf", &bytes)
        .map_err(|e| HookError::new(e.to_string()))?;
    Ok(JobOutput::file(info.id))
}

fn draw_card(content: &mut Content, card: &PrintCard, x: f32, y: f32) {
    let (w, h) = CARD;
    let (r, g, b) = card.background;
    content
        .set_fill_rgb(r, g, b)
        .rect(x, y, w, h)
        .fill_nonzero();
    let (r, g, b) = card.accent;
    content
        .set_fill_rgb(r, g, b)
        .rect(x, y + h - 28.0, w, 28.0)
        .fill_nonzero();
    content
        .set_fill_rgb(1.0, 1.0, 1.0)
        .begin_text()
        .set_font(Name(b"F2"), 11.0)
        .next_line(x + 10.0, y + h - 19.0)
        .show(Str(&latin1(&card.organisation)))
        .end_text();
    let (r, g, b) = card.foreground;
    content
        .set_fill_rgb(r, g, b)
        .begin_text()
        .set_font(Name(b"F2"), 13.0)
        .next_line(x + 10.0, y + h - 52.0)
        .show(Str(&latin1(&card.holder)))
        .end_text();
    for (n, line) in card.lines.iter().enumerate() {
        content
            .begin_text()
            .set_font(Name(b"F1"), 8.5)
            .next_line(x + 10.0, y + h - 72.0 - 13.0 * n as f32)
            .show(Str(&latin1(line)))
            .end_text();
    }
    // The QR code, 80 pt wide, bottom right.
    let size = 80.0;
    draw_qr(content, &card.qr, x + w - size - 8.0, y + 8.0, size);
}

/// The dark modules of a [`qr::Qr`] path (`M{x} {y}h1v1h-1z` squares).
fn qr_modules(path: &str) -> Vec<(usize, usize)> {
    let d = path
        .split(" d=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("");
    d.split('M')
        .filter_map(|square| {
            let (x, y) = square.strip_suffix("h1v1h-1z")?.split_once(' ')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect()
}

/// Cut marks at the grid's lines, outside the cards.
fn cut_marks(content: &mut Content, x0: f32, y0: f32) {
    let (mark, gap) = MARK;
    content.set_stroke_rgb(0.0, 0.0, 0.0).set_line_width(0.5);
    let (x1, y1) = (x0 + 2.0 * CARD.0, y0 + 4.0 * CARD.1);
    for col in 0..=2 {
        let x = x0 + col as f32 * CARD.0;
        content.move_to(x, y1 + gap).line_to(x, y1 + gap + mark);
        content.move_to(x, y0 - gap).line_to(x, y0 - gap - mark);
    }
    for row in 0..=4 {
        let y = y0 + row as f32 * CARD.1;
        content.move_to(x0 - gap, y).line_to(x0 - gap - mark, y);
        content.move_to(x1 + gap, y).line_to(x1 + gap + mark, y);
    }
    content.stroke();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(name: &str) -> PrintCard {
        PrintCard {
            organisation: "Club".into(),
            holder: name.into(),
            lines: vec!["Card C-1".into()],
            background: rgb("#ffffff"),
            foreground: rgb("#102030"),
            accent: rgb("bad"),
            qr: qr::group("https://x.example/v/abc").unwrap(),
        }
    }

    #[test]
    fn pages_hold_eight_cards() {
        let cards: Vec<PrintCard> = (0..17).map(|n| card(&format!("Holder {n}"))).collect();
        let bytes = pdf(&cards);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("%PDF-"));
        assert!(text.contains("/Count 3"), "17 cards make 3 pages");
        assert_eq!(
            text.matches("/Type /Page\n").count()
                + text.matches("/Type /Page ").count()
                + text.matches("/Type /Page>").count(),
            3
        );
        assert_eq!(rgb("#102030"), (16.0 / 255.0, 32.0 / 255.0, 48.0 / 255.0));
        assert_eq!(latin1("Añ€"), b"A\xf1?".to_vec());
        assert!(!qr_modules(&card("x").qr.path).is_empty());
        let codes: Vec<(String, qr::Qr)> = (0..21)
            .map(|n| {
                (
                    format!("C-{n}"),
                    qr::group("https://x.example/v/abc").unwrap(),
                )
            })
            .collect();
        let sheet = String::from_utf8_lossy(&qr_sheet(&codes)).into_owned();
        assert!(sheet.contains("/Count 2"), "21 codes make 2 pages");
    }
}
