//! Moderators and bans: who moderates a forum (and so may view it, post
//! in it and act on its posts), and who is banned from posting in it until
//! when. The community plan's moderation routes manage them; the checks
//! here hold on every plan, so a ban outlives a downgrade.

use souk_sdk::{Problem, db, params};

use crate::who::Who;

/// Whether the caller moderates forum `forum_id` (administrators moderate
/// every forum).
///
/// # Errors
///
/// Database errors.
pub fn is_moderator(who: &Who, forum_id: i64) -> Result<bool, Problem> {
    if who.admin {
        return Ok(true);
    }
    let Some(number) = who.active_number() else {
        return Ok(false);
    };
    let row: Option<(i64,)> = db::query_optional(
        "SELECT 1 FROM moderators WHERE forum_id = ?1 AND member_number = ?2",
        params![forum_id, number],
    )?;
    Ok(row.is_some())
}

/// 403 when the caller is banned from forum `forum_id` now.
///
/// # Errors
///
/// 403 naming the end of the ban; database errors.
pub fn check_not_banned(who: &Who, forum_id: i64) -> Result<(), Problem> {
    let Some((number, _)) = &who.member else {
        return Ok(());
    };
    let ban: Option<(Option<String>, String)> = db::query_optional(
        "SELECT CASE WHEN until IS NULL THEN NULL \
         ELSE strftime('%Y-%m-%dT%H:%M:%SZ', until, 'unixepoch') END, reason \
         FROM bans WHERE forum_id = ?1 AND member_number = ?2 \
         AND (until IS NULL OR until > ?3) ORDER BY id DESC LIMIT 1",
        params![forum_id, number.as_str(), crate::clock::now()],
    )?;
    match ban {
        None => Ok(()),
        Some((until, reason)) => Err(Problem::new(
            403,
            "https://souk.dev/problems/forum/banned",
            "Banned from this forum",
        )
        .with_detail(match &until {
            Some(until) => format!("you may not post in this forum until {until}: {reason}"),
            None => format!("you may not post in this forum: {reason}"),
        })
        .with_extension("until", serde_json::json!(until))),
    }
}
