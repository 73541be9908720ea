//! Bulk QR as a zip of SVGs (release 1.2.0, business, feature `bulk_qr`),
//! beside the PDF sheet of `POST /qr-sheets`.
//!
//! `POST /qr-zips` `{"status"?}` or `{"cards": [numbers]}` checks the
//! selection and queues job `qr_zip`. The job draws each card's QR code
//! (the same SVG as `GET /cards/{number}/qr.svg`), writes a zip holding
//! `<card-number>.svg` per card and `manifest.csv` (one line per card:
//! number, member, status, expiry, verification URL, file name) to a host
//! file, and leaves it as the job's file: the tenant downloads it through
//! the job's signed `result_url`. Progress every 50 cards.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db;
use souk_sdk::{HookError, JobOutput, Problem, Request, Response, files, jobs, params};

use crate::card::{CARD_COLUMNS, Card, CardStatus, card_not_found, check_number, verification_url};
use crate::dates::Day;
use crate::zipfile::{ZipWriter, dos_date};
use crate::{qr, settings};

/// The most cards one zip holds (as one print export).
const MAX_CARDS: u32 = 1000;
/// Pixel size of each SVG (as `GET /cards/{number}/qr.svg`).
const QR_SIZE: u32 = 320;
/// The largest zip the module writes: below the host's default 10 MiB per
/// file, with room to spare.
const MAX_ZIP_BYTES: usize = 8 * 1024 * 1024;
/// The manifest's header line.
const MANIFEST_HEADER: &str = "card_number,member,status,expires_on,verification_url,file\n";

/// The body of `POST /qr-zips` and the job's arguments.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QrZip {
    /// Cards of this status (default `active`), in issue order, when
    /// `cards` is absent.
    #[serde(default)]
    pub status: Option<String>,
    /// These cards, in this order (1 to 1000 numbers).
    #[serde(default)]
    pub cards: Option<Vec<String>>,
}

/// The cards a zip holds (at most [`MAX_CARDS`]) and how many match in
/// all.
fn selected(zip: &QrZip) -> Result<(Vec<Card>, i64), Problem> {
    match &zip.cards {
        Some(numbers) => {
            let mut cards = Vec::with_capacity(numbers.len());
            for number in numbers {
                let card: Option<Card> = db::query_optional(
                    &format!("SELECT {CARD_COLUMNS} FROM cards WHERE number = ?1"),
                    params![number],
                )?;
                cards.push(card.ok_or_else(|| card_not_found(number))?);
            }
            let count = cards.len() as i64;
            Ok((cards, count))
        }
        None => {
            let status = zip.status.as_deref().unwrap_or("active");
            let cards = db::query_as(
                &format!("SELECT {CARD_COLUMNS} FROM cards WHERE status = ?1 ORDER BY id LIMIT ?2"),
                params![status, MAX_CARDS],
            )?;
            let (matching,): (i64,) = db::query_one(
                "SELECT COUNT(*) FROM cards WHERE status = ?1",
                params![status],
            )?;
            Ok((cards, matching))
        }
    }
}

/// Checks the body's shape (before any database work).
fn check(zip: &QrZip) -> Result<(), Problem> {
    if let Some(status) = &zip.status {
        CardStatus::parse(status).map_err(Problem::unprocessable)?;
    }
    if let Some(numbers) = &zip.cards {
        if zip.status.is_some() {
            return Err(Problem::unprocessable("give `status` or `cards`, not both"));
        }
        if numbers.is_empty() || numbers.len() > MAX_CARDS as usize {
            return Err(Problem::unprocessable(format!(
                "`cards` lists 1 to {MAX_CARDS} card numbers"
            )));
        }
        for number in numbers {
            check_number(number).map_err(|m| Problem::unprocessable(format!("cards: {m}")))?;
        }
    }
    Ok(())
}

/// `POST /qr-zips` → 202 `{"job", "cards", "matching"}`: `cards` is how
/// many the zip will hold, `matching` how many cards the selection
/// matched (more than 1000 by status: the first 1000 in issue order).
/// 422 for a bad body, no card or too many bytes for one zip; 404 for an
/// unknown card; 409 until `verify_base_url` is set.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let zip: QrZip = if request.body().is_empty() {
        QrZip::default()
    } else {
        request.json()?
    };
    check(&zip)?;
    let settings = settings::load()?;
    let base = settings.base_url()?;
    let (cards, matching) = selected(&zip)?;
    let Some(first) = cards.first() else {
        return Err(Problem::unprocessable("no card matches; nothing to zip"));
    };
    // Every code encodes a URL of the same length (one base, tokens of one
    // length), so the first card's SVG says what one costs.
    let each = qr::svg(&verification_url(base, &first.token), QR_SIZE)
        .map_err(Problem::internal)?
        .len()
        + 200;
    let fit = MAX_ZIP_BYTES / each;
    if cards.len() > fit {
        return Err(Problem::unprocessable(format!(
            "{} cards' QR codes are too many bytes for one zip: at most {fit} fit; list them \
             in `cards` in several requests",
            cards.len()
        )));
    }
    let job = jobs::enqueue("qr_zip", &zip)
        .map_err(|error| Problem::internal(format!("the QR zip was not queued: {error}")))?;
    Ok(Response::json(
        202,
        &json!({ "job": job, "cards": cards.len(), "matching": matching }),
    ))
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The zip's file name for a card: `<number>.svg`, and `<number>~2.svg`,
/// ... when another card's name differs only in letter case (card numbers
/// are case-sensitive, many file systems are not).
fn file_name(number: &str, taken: &mut std::collections::HashSet<String>) -> String {
    let mut name = format!("{number}.svg");
    let mut n = 2;
    while !taken.insert(name.to_ascii_lowercase()) {
        name = format!("{number}~{n}.svg");
        n += 1;
    }
    name
}

/// The zip of these cards' QR codes and the manifest; `progress` is told
/// how many cards are done.
///
/// # Errors
///
/// A verification URL that fits no QR code, or an archive past the
/// module's size limit.
pub fn build(
    cards: &[Card],
    base: &str,
    day: Day,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u8>, String> {
    let (year, month, date) = {
        let text = day.format();
        let part = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap_or(0);
        (part(0..4), part(5..7), part(8..10))
    };
    let mut zip = ZipWriter::new(dos_date(year, month, date));
    let mut manifest = String::from(MANIFEST_HEADER);
    let mut taken = std::collections::HashSet::new();
    taken.insert("manifest.csv".to_owned());
    for (done, card) in cards.iter().enumerate() {
        let url = verification_url(base, &card.token);
        let svg = qr::svg(&url, QR_SIZE)?;
        let name = file_name(&card.number, &mut taken);
        zip.add(&name, svg.as_bytes()).map_err(|e| e.to_string())?;
        if zip.written() > MAX_ZIP_BYTES {
            return Err(format!(
                "the zip passed {} MiB at card {}; select fewer cards",
                MAX_ZIP_BYTES / (1024 * 1024),
                done + 1
            ));
        }
        manifest.push_str(
            &[
                card.number.as_str(),
                &card.member_number,
                &card.status,
                &card.expires_on,
                &url,
                &name,
            ]
            .map(csv_field)
            .join(","),
        );
        manifest.push('\n');
        progress(done + 1);
    }
    zip.add("manifest.csv", manifest.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(zip.finish())
}

/// The `qr_zip` job: the zip as a file, the job's file.
///
/// # Errors
///
/// A database or file failure (the host retries), or a selection that no
/// longer fits one zip.
pub fn run(zip: &QrZip) -> Result<JobOutput, HookError> {
    let problem = |p: Problem| HookError::new(p.to_json());
    let settings = settings::load().map_err(problem)?;
    let base = settings.base_url().map_err(problem)?.to_owned();
    let (cards, _) = selected(zip).map_err(problem)?;
    let total = cards.len() as u64;
    let bytes = build(&cards, &base, Day::today(), |done| {
        if done % 50 == 0 {
            jobs::progress(done as u64, total, "QR codes drawn");
        }
    })
    .map_err(HookError::new)?;
    let info = files::put("qr-codes.zip", "application/zip", &bytes)
        .map_err(|e| HookError::new(e.to_string()))?;
    jobs::progress(total, total, format!("{total} QR codes zipped"));
    Ok(JobOutput::file(info.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, token: &str) -> Card {
        Card {
            id: 1,
            number: number.into(),
            member_number: "M-1".into(),
            status: "active".into(),
            status_reason: None,
            issued_on: "2026-03-01".into(),
            expires_on: "2027-03-01".into(),
            template: "classic".into(),
            photo_file_id: None,
            token: token.into(),
            created_at: 0,
        }
    }

    #[test]
    fn the_zip_holds_one_svg_per_card_and_a_manifest() {
        let cards = [card("C-1", "aa"), card("c-1", "bb"), card("X.7", "cc")];
        let mut seen = Vec::new();
        let bytes = build(
            &cards,
            "https://x.example/t/a,b/m/digital-card",
            Day::parse("2026-03-01").unwrap(),
            |done| seen.push(done),
        )
        .unwrap();
        assert_eq!(seen, [1, 2, 3]);
        let text = String::from_utf8_lossy(&bytes);
        for name in ["C-1.svg", "c-1~2.svg", "X.7.svg", "manifest.csv"] {
            assert!(text.contains(name), "{name}");
        }
        let manifest_at = text.rfind(MANIFEST_HEADER).expect("manifest");
        let manifest: Vec<&str> = text[manifest_at..].lines().take(4).collect();
        assert_eq!(
            manifest[2],
            "c-1,M-1,active,2027-03-01,\"https://x.example/t/a,b/m/digital-card/v/bb\",c-1~2.svg"
        );
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert!(bytes.starts_with(b"PK\x03\x04"));
    }

    #[test]
    fn bodies_are_checked_before_the_database() {
        let bad = |json: serde_json::Value| check(&serde_json::from_value(json).unwrap());
        assert!(bad(json!({})).is_ok());
        assert!(bad(json!({"status": "lost"})).is_err());
        assert!(bad(json!({"cards": []})).is_err());
        assert!(bad(json!({"cards": ["../x"]})).is_err());
        assert!(bad(json!({"cards": ["C-1"], "status": "active"})).is_err());
        let many: Vec<String> = (0..1001).map(|n| format!("C-{n}")).collect();
        assert!(bad(json!({ "cards": many })).is_err());
    }
}
