//! Export (pro, feature `card_export`): one card's face as PNG
//! (`GET /cards/{number}/card.png`) or PDF (`GET /cards/{number}/card.pdf`),
//! and the print export: cards laid out on A4 pages, 8 per page (2 columns
//! x 4 rows of 85.6 x 54 mm, the ID-1 card size) with cut marks, as one
//! PDF produced by a job into a host file that the tenant downloads
//! through the job's signed `result_url`.
//!
//! Every card is the face `card.svg` shows (template, branding, photo,
//! logo, QR code, custom fields, the Souk mark unless white-labelled),
//! drawn by `raster.rs` with the fonts the module embeds, so Nepali names
//! print as they are. The bulk QR sheet (`POST /qr-sheets`) is drawn here
//! directly with `pdf-writer`: its only text is card numbers (ASCII), in
//! the PDF standard font Helvetica.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db;
use souk_sdk::{HookError, JobOutput, Problem, Request, Response, files, jobs, params};

use crate::card::{CARD_COLUMNS, Card, CardStatus, check_number, verification_url};
use crate::face::{Faces, Images};
use crate::raster::{self, PrintSheets};
use crate::{qr, settings};

/// The most cards one export holds.
const MAX_CARDS: u32 = 1000;
/// Cards per A4 page.
pub const PER_PAGE: usize = raster::PER_SHEET;
/// A4 in points.
const PAGE: (f32, f32) = raster::A4;

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
/// A database, file or drawing failure (the host retries).
pub fn run(export: &Export) -> Result<JobOutput, HookError> {
    let problem = |p: Problem| HookError::new(p.to_json());
    let cards = selected(export).map_err(problem)?;
    let mut faces = Faces::load(Images::Prepared).map_err(problem)?;
    let mut sheets = PrintSheets::new();
    let total = cards.len() as u64;
    for (page, chunk) in cards.chunks(PER_PAGE).enumerate() {
        let svgs = chunk
            .iter()
            .map(|card| faces.svg(card))
            .collect::<Result<Vec<_>, _>>()
            .map_err(problem)?;
        sheets
            .add_page(&svgs)
            .map_err(|error| HookError::new(error.to_string()))?;
        if page % 5 == 4 {
            let done = ((page + 1) * PER_PAGE).min(cards.len()) as u64;
            jobs::progress(done, total, "cards laid out");
        }
    }
    let pages = sheets.pages();
    let bytes = sheets.finish();
    let info = files::put("cards.pdf", "application/pdf", &bytes)
        .map_err(|e| HookError::new(e.to_string()))?;
    jobs::progress(total, total, format!("{pages} pages"));
    Ok(JobOutput::file(info.id))
}

/// `GET /cards/{number}/card.png`: the card's face as a PNG of its
/// template's size.
pub fn card_png(request: &Request) -> Result<Response, Problem> {
    let card = crate::routes::card_or_404(request)?;
    let svg = Faces::load(Images::Prepared)?.svg(&card)?;
    let png = raster::png(&svg).map_err(|error| Problem::internal(error.to_string()))?;
    Ok(Response::new(200)
        .with_header("content-type", "image/png")
        .with_header(
            "content-disposition",
            format!("inline; filename=\"{}.png\"", card.number),
        )
        .with_body(png))
}

/// `GET /cards/{number}/card.pdf`: the card's face as a one-page PDF of
/// the printed card's size, its text in the embedded fonts.
pub fn card_pdf(request: &Request) -> Result<Response, Problem> {
    let card = crate::routes::card_or_404(request)?;
    let svg = Faces::load(Images::Prepared)?.svg(&card)?;
    let pdf = raster::pdf(&svg).map_err(|error| Problem::internal(error.to_string()))?;
    Ok(Response::new(200)
        .with_header("content-type", "application/pdf")
        .with_header(
            "content-disposition",
            format!("inline; filename=\"{}.pdf\"", card.number),
        )
        .with_body(pdf))
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

/// A PDF of A4 pages with these contents and font F1 (Helvetica).
fn assemble(contents: Vec<Content>) -> Vec<u8> {
    let mut next = 1;
    let mut alloc = || {
        let id = Ref::new(next);
        next += 1;
        id
    };
    let (catalog, tree, font) = (alloc(), alloc(), alloc());
    let pages: Vec<(Ref, Ref)> = contents.iter().map(|_| (alloc(), alloc())).collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(pages.iter().map(|(page, _)| *page))
        .count(i32::try_from(pages.len()).unwrap_or(i32::MAX));
    pdf.type1_font(font).base_font(Name(b"Helvetica"));
    for (content, (page_id, content_id)) in contents.into_iter().zip(&pages) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE.0, PAGE.1));
        page.parent(tree);
        page.contents(*content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Name(b"F1"), font);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_sheets_hold_twenty_codes_a_page() {
        assert_eq!(latin1("Añ€"), b"A\xf1?".to_vec());
        let code = qr::group("https://x.example/v/abc").unwrap();
        assert!(!qr_modules(&code.path).is_empty());
        let codes: Vec<(String, qr::Qr)> = (0..21)
            .map(|n| {
                (
                    format!("C-{n}"),
                    qr::group("https://x.example/v/abc").unwrap(),
                )
            })
            .collect();
        let sheet = String::from_utf8_lossy(&qr_sheet(&codes)).into_owned();
        assert!(sheet.starts_with("%PDF-"));
        assert!(sheet.contains("/Count 2"), "21 codes make 2 pages");
    }
}
