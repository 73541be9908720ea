//! Work outside a request: Membership's `member_left` revokes the member's
//! active cards, and the daily `expire_cards` schedule marks cards past
//! their expiry day `expired`.

use serde::Deserialize;
use serde_json::json;
use souk_sdk::db;
use souk_sdk::{Event, HookError, Job, JobOutput, params};

use crate::card::{CARD_COLUMNS, Card};
use crate::dates::Day;
use crate::routes;

/// Cards handled per statement while expiring (well below the host's
/// per-query row cap).
const BATCH: u32 = 500;

/// The reason written on cards revoked because the member left.
pub const MEMBER_LEFT_REASON: &str = "member left";

/// The part of Membership's `member_left` payload the module reads.
#[derive(Deserialize)]
struct MemberLeft {
    number: String,
}

/// Handles a subscribed event once (its id is recorded in the same
/// transaction).
///
/// # Errors
///
/// A database failure (the host retries the event).
pub fn on_event(event: &Event) -> Result<(), HookError> {
    if event.source_module != "membership" || event.event_type != "member_left" {
        return Ok(());
    }
    let first = db::execute(
        "INSERT OR IGNORE INTO handled_events (event_id) VALUES (?1)",
        params![event.id.as_str()],
    )?;
    if first.rows_affected == 0 {
        return Ok(());
    }
    let left: MemberLeft = event.payload()?;
    let cards: Vec<Card> = db::query_as(
        &format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE member_number = ?1 AND status = 'active' \
             ORDER BY id LIMIT 1000"
        ),
        params![left.number.as_str()],
    )?;
    for card in &cards {
        routes::revoke(card, MEMBER_LEFT_REASON).map_err(|p| HookError::new(p.to_json()))?;
    }
    Ok(())
}

/// Runs a job: `expire_cards` (the daily schedule).
///
/// # Errors
///
/// An unknown job name, or a database failure (the host retries).
pub fn run_job(job: &Job) -> Result<JobOutput, HookError> {
    // A job reads and renders before it writes: the tenant's write lock is
    // taken at its first write, so the rendering holds no lock (and a
    // snapshot made stale meanwhile is the host's to handle: it runs the
    // job again).
    match job.name.as_str() {
        "expire_cards" => expire_cards(),
        "export_pdf" => crate::export::run(&job.args::<crate::export::Export>()?),
        "qr_sheet" => crate::export::run_qr_sheet(&job.args::<crate::export::Export>()?),
        "issue_batch" => crate::batch::run(&job.args::<crate::batch::Batch>()?),
        #[cfg(feature = "release-1-2")]
        "qr_zip" => crate::qr_zip::run(&job.args::<crate::qr_zip::QrZip>()?),
        other => Err(HookError::new(format!("unknown job `{other}`"))),
    }
}

/// Marks active cards whose expiry day is before today `expired`, emitting
/// `card.expired` for each.
fn expire_cards() -> Result<JobOutput, HookError> {
    let today = Day::today().format();
    let mut expired = 0u64;
    loop {
        let cards: Vec<Card> = db::query_as(
            &format!(
                "SELECT {CARD_COLUMNS} FROM cards WHERE status = 'active' AND expires_on < ?1 \
                 ORDER BY id LIMIT ?2"
            ),
            params![&today, BATCH],
        )?;
        for card in &cards {
            db::execute(
                "UPDATE cards SET status = 'expired', status_reason = 'past its expiry day' \
                 WHERE id = ?1",
                params![card.id],
            )?;
            routes::emit(
                "card.expired",
                &json!({"number": card.number, "member": card.member_number, "expires_on": card.expires_on}),
            )
            .map_err(|p| HookError::new(p.to_json()))?;
            expired += 1;
        }
        if cards.len() < BATCH as usize {
            break;
        }
    }
    JobOutput::json(&json!({ "expired": expired, "today": today }))
}
