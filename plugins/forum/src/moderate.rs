//! The community plan's moderation routes (feature `moderation`):
//! moderators per forum, hiding and restoring posts, moving threads, bans,
//! the moderation log and the reports queue. The checks every plan keeps
//! (who moderates, who is banned) are in `moderation`.

use serde::Deserialize;
use serde_json::json;
use souk_sdk::{Problem, Request, Response, db, events, params};

use crate::forums;
use crate::moderation::is_moderator;
use crate::page;
use crate::posts;
use crate::threads;
use crate::who::Who;

/// 403 unless the caller moderates forum `forum_id`.
fn require_moderator(who: &Who, forum_id: i64) -> Result<(), Problem> {
    if is_moderator(who, forum_id)? {
        Ok(())
    } else {
        Err(Problem::from_status(403).with_detail("only this forum's moderators may do that"))
    }
}

fn reason_of(reason: &str) -> Result<&str, Problem> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Problem::unprocessable(
            "`reason` must be 1 to 500 characters",
        ));
    }
    Ok(reason)
}

fn number_param(request: &Request) -> Result<String, Problem> {
    let number = request.param("number")?;
    if number.is_empty() || number.len() > 64 {
        return Err(Problem::not_found("no such member"));
    }
    Ok(number.to_owned())
}

/// `GET /forums/{slug}/moderators` (member, community): the forum's
/// moderators, to anybody who may view it.
pub fn moderators(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    let rows: Vec<(String,)> = db::query_as(
        "SELECT member_number FROM moderators WHERE forum_id = ?1 ORDER BY member_number",
        params![forum.id],
    )?;
    let numbers: Vec<String> = rows.into_iter().map(|(n,)| n).collect();
    Ok(Response::json(200, &json!({ "moderators": numbers })))
}

/// `PUT /forums/{slug}/moderators/{number}` (admin, community): an active
/// member becomes a moderator of the forum.
pub fn add_moderator(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    let number = number_param(request)?;
    let active: Option<(i64,)> = db::query_optional(
        "SELECT 1 FROM membership.members WHERE number = ?1 AND status = 'active'",
        params![number.as_str()],
    )?;
    if active.is_none() {
        return Err(Problem::unprocessable(format!(
            "{number} is not an active member"
        )));
    }
    db::execute(
        "INSERT INTO moderators (forum_id, member_number) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![forum.id, number.as_str()],
    )?;
    crate::log_moderation(
        &who,
        forum.id,
        "add_moderator",
        &format!("member {number}"),
        "",
    )?;
    Ok(Response::json(
        200,
        &json!({ "forum": forum.slug, "moderator": number }),
    ))
}

/// `DELETE /forums/{slug}/moderators/{number}` (admin, community) → 204.
pub fn remove_moderator(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    let number = number_param(request)?;
    db::execute(
        "DELETE FROM moderators WHERE forum_id = ?1 AND member_number = ?2",
        params![forum.id, number.as_str()],
    )?;
    crate::log_moderation(
        &who,
        forum.id,
        "remove_moderator",
        &format!("member {number}"),
        "",
    )?;
    Ok(Response::no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

fn post_and_forum(who: &Who, request: &Request) -> Result<(posts::Post, i64), Problem> {
    let id: i64 = request
        .param("id")?
        .parse()
        .map_err(|_| posts::no_such_post())?;
    let post = posts::load(who, id)?;
    let (_, forum) = threads::visible_by_id(who, post.thread)?;
    Ok((post, forum.id))
}

/// `POST /posts/{id}/hide` (member, community): a moderator hides a post
/// with `{"reason"}`; logged; emits `post.hidden`.
pub fn hide(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (post, forum) = post_and_forum(&who, request)?;
    require_moderator(&who, forum)?;
    let body: Reason = request.json()?;
    let reason = reason_of(&body.reason)?;
    if post.deleted {
        return Err(Problem::conflict("the post is deleted"));
    }
    db::execute(
        "UPDATE posts SET hidden_at = ?4, hidden_reason = ?1, hidden_by = ?2 WHERE id = ?3",
        params![reason, who.id.as_str(), post.id, crate::clock::now()],
    )?;
    crate::log_moderation(&who, forum, "hide", &format!("post {}", post.id), reason)?;
    events::emit(
        "post.hidden",
        &json!({ "post": post.id, "thread": post.thread, "reason": reason, "by": who.name }),
    )?;
    Ok(Response::json(
        200,
        &json!({ "post": posts::load(&who, post.id)? }),
    ))
}

/// `POST /posts/{id}/restore` (member, community): a moderator shows a
/// hidden post again, with `{"reason"}`; logged.
pub fn restore(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (post, forum) = post_and_forum(&who, request)?;
    require_moderator(&who, forum)?;
    let body: Reason = request.json()?;
    let reason = reason_of(&body.reason)?;
    db::execute(
        "UPDATE posts SET hidden_at = NULL, hidden_reason = NULL, hidden_by = NULL WHERE id = ?1",
        params![post.id],
    )?;
    crate::log_moderation(&who, forum, "restore", &format!("post {}", post.id), reason)?;
    Ok(Response::json(
        200,
        &json!({ "post": posts::load(&who, post.id)? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    forum: String,
    reason: String,
}

/// `POST /threads/{id}/move` (member, community): `{"forum": slug,
/// "reason"}`; the caller moderates both forums.
pub fn move_thread(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, from) = threads::visible(&who, request, "id")?;
    require_moderator(&who, from.id)?;
    let body: Move = request.json()?;
    let reason = reason_of(&body.reason)?;
    let to: Option<forums::Forum> = db::query_optional(
        &format!(
            "SELECT {} FROM forums WHERE slug = ?1",
            forums::FORUM_COLUMNS
        ),
        params![body.forum.as_str()],
    )?;
    let to = match to {
        Some(to) if forums::may_view(&who, &to)? => to,
        _ => return Err(Problem::unprocessable("`forum` names no forum you can see")),
    };
    require_moderator(&who, to.id)?;
    db::execute(
        "UPDATE threads SET forum_id = ?1 WHERE id = ?2",
        params![to.id, thread.id],
    )?;
    crate::log_moderation(
        &who,
        from.id,
        "move",
        &format!("thread {} to {}", thread.id, to.slug),
        reason,
    )?;
    crate::log_moderation(
        &who,
        to.id,
        "move",
        &format!("thread {} from {}", thread.id, from.slug),
        reason,
    )?;
    let (thread, _) = threads::visible_by_id(&who, thread.id)?;
    Ok(Response::json(
        200,
        &json!({ "thread": thread, "forum": to.slug }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    number: String,
    reason: String,
    /// How long; `None` for good.
    seconds: Option<i64>,
}

/// `POST /forums/{slug}/bans` (member, community): a moderator bans a
/// member from posting in the forum, `{"number", "reason", "seconds"?}`
/// (without `seconds` until lifted); logged → 201.
pub fn ban(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    require_moderator(&who, forum.id)?;
    let body: NewBan = request.json()?;
    let reason = reason_of(&body.reason)?;
    if let Some(seconds) = body.seconds
        && !(1..=315_360_000).contains(&seconds)
    {
        return Err(Problem::unprocessable(
            "`seconds` must be from 1 to 315360000 (ten years)",
        ));
    }
    if who.member.as_ref().is_some_and(|(n, _)| *n == body.number) {
        return Err(Problem::unprocessable("you cannot ban yourself"));
    }
    let known: Option<(i64,)> = db::query_optional(
        "SELECT 1 FROM membership.members WHERE number = ?1",
        params![body.number.as_str()],
    )?;
    if known.is_none() {
        return Err(Problem::unprocessable(format!(
            "{} is not a member",
            body.number
        )));
    }
    let changes = db::execute(
        "INSERT INTO bans (forum_id, member_number, until, reason, banned_by, created_at) \
         VALUES (?1, ?2, CASE WHEN ?3 IS NULL THEN NULL ELSE ?6 + ?3 END, ?4, ?5, ?6)",
        params![
            forum.id,
            body.number.as_str(),
            body.seconds,
            reason,
            who.id.as_str(),
            crate::clock::now()
        ],
    )?;
    crate::log_moderation(
        &who,
        forum.id,
        "ban",
        &format!("member {}", body.number),
        reason,
    )?;
    Ok(Response::json(
        201,
        &json!({ "ban": ban_json(changes.last_insert_id.unwrap_or_default())? }),
    ))
}

fn ban_json(id: i64) -> Result<serde_json::Value, Problem> {
    page::objects(
        "SELECT id, member_number AS number, reason, \
         CASE WHEN until IS NULL THEN NULL ELSE strftime('%Y-%m-%dT%H:%M:%SZ', until, 'unixepoch') END AS until, \
         strftime('%Y-%m-%dT%H:%M:%SZ', created_at, 'unixepoch') AS created_at, \
         (until IS NULL OR until > ?2) AS active FROM bans WHERE id = ?1",
        params![id, crate::clock::now()],
        &["active"],
    )?
    .into_iter()
    .next()
    .ok_or_else(|| Problem::not_found("no such ban"))
}

/// `GET /forums/{slug}/bans` (member, community): the forum's bans in
/// force, for its moderators.
pub fn bans(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    require_moderator(&who, forum.id)?;
    let ids: Vec<(i64,)> = db::query_as(
        "SELECT id FROM bans WHERE forum_id = ?1 AND (until IS NULL OR until > ?2) ORDER BY id",
        params![forum.id, crate::clock::now()],
    )?;
    let items = ids
        .into_iter()
        .map(|(id,)| ban_json(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::json(200, &json!({ "items": items })))
}

/// `DELETE /forums/{slug}/bans/{number}` (member, community): lifts the
/// member's bans in the forum; logged → 204.
pub fn unban(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    require_moderator(&who, forum.id)?;
    let number = number_param(request)?;
    db::execute(
        "UPDATE bans SET until = ?3 WHERE forum_id = ?1 AND member_number = ?2 \
         AND (until IS NULL OR until > ?3)",
        params![forum.id, number.as_str(), crate::clock::now()],
    )?;
    crate::log_moderation(&who, forum.id, "unban", &format!("member {number}"), "")?;
    Ok(Response::no_content())
}

/// `GET /forums/{slug}/log` (member, community): the forum's moderation
/// log, newest first: who did what to what, and why.
pub fn log(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    require_moderator(&who, forum.id)?;
    let limit = page::limit(request)?;
    let after = page::after(request, 1)?.map_or(i64::MAX, |key| key[0]);
    let mut items = page::objects(
        "SELECT id, action, target, reason, actor_id, actor_name, \
         strftime('%Y-%m-%dT%H:%M:%SZ', at, 'unixepoch') AS at FROM moderation_log \
         WHERE forum_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        params![forum.id, after, limit + 1],
        &[],
    )?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|e| page::cursor(&[e["id"].as_i64().unwrap_or_default()]))
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({ "items": items, "next": next }),
    ))
}

/// `POST /posts/{id}/reports` (member, community): a member reports a post
/// to the forum's moderators, `{"reason"}`, once per post → 201 (409 for a
/// second report).
pub fn report(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (post, forum) = post_and_forum(&who, request)?;
    let Some(number) = who.active_number() else {
        return Err(Problem::from_status(403).with_detail("only members report posts"));
    };
    let body: Reason = request.json()?;
    let reason = reason_of(&body.reason)?;
    match db::execute(
        "INSERT INTO reports (post_id, forum_id, reporter_number, reason, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![post.id, forum, number, reason, crate::clock::now()],
    ) {
        Ok(changes) => Ok(Response::json(
            201,
            &json!({ "report": changes.last_insert_id.unwrap_or_default() }),
        )),
        Err(error) if error.is_constraint() => {
            Err(Problem::conflict("you reported this post already"))
        }
        Err(error) => Err(error.into()),
    }
}

/// `GET /reports` (member, community): open reports of the forums the
/// caller moderates (every forum for administrators), oldest first.
pub fn reports(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let limit = page::limit(request)?;
    let after = page::after(request, 1)?.map_or(0, |key| key[0]);
    let number = who.active_number().unwrap_or_default().to_owned();
    let mut items = page::objects(
        "SELECT r.id, r.post_id AS post, f.slug AS forum, r.reporter_number AS reporter, r.reason, \
         strftime('%Y-%m-%dT%H:%M:%SZ', r.created_at, 'unixepoch') AS created_at \
         FROM reports r JOIN forums f ON f.id = r.forum_id \
         WHERE r.resolved_at IS NULL AND r.id > ?1 \
         AND (?2 = 1 OR EXISTS (SELECT 1 FROM moderators m WHERE m.forum_id = r.forum_id AND m.member_number = ?3)) \
         ORDER BY r.id LIMIT ?4",
        params![after, who.admin, number.as_str(), limit + 1],
        &[],
    )?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|e| page::cursor(&[e["id"].as_i64().unwrap_or_default()]))
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({ "items": items, "next": next }),
    ))
}

/// `POST /reports/{id}/resolve` (member, community): a moderator of the
/// report's forum closes it; logged.
pub fn resolve(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let id: i64 = request
        .param("id")?
        .parse()
        .map_err(|_| Problem::not_found("no such report"))?;
    let row: Option<(i64, i64)> = db::query_optional(
        "SELECT forum_id, post_id FROM reports WHERE id = ?1",
        params![id],
    )?;
    let (forum, post) = row.ok_or_else(|| Problem::not_found("no such report"))?;
    if !is_moderator(&who, forum)? {
        return Err(Problem::not_found("no such report"));
    }
    db::execute(
        "UPDATE reports SET resolved_at = ?3, resolved_by = ?1 WHERE id = ?2 AND resolved_at IS NULL",
        params![who.id.as_str(), id, crate::clock::now()],
    )?;
    crate::log_moderation(
        &who,
        forum,
        "resolve_report",
        &format!("report {id} on post {post}"),
        "",
    )?;
    Ok(Response::json(
        200,
        &json!({ "report": id, "resolved": true }),
    ))
}
