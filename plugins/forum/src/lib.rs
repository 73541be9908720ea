//! Forum: where a tenant's members talk to each other.
//!
//! Forums (categories) hold threads, threads hold posts. Authors are the
//! tenant's signed-in users linked to an active Membership member; anybody
//! may read public forums. Markdown is rendered to sanitised HTML here, so
//! no script ever reaches a browser. Routes, permissions and plans are in
//! the README.

mod analytics;
mod attachments;
mod forums;
mod markdown;
mod messages;
mod moderation;
mod notifications;
mod page;
mod polls;
mod posts;
mod profiles;
mod schema;
mod theme;
mod threads;
mod who;

use serde::Deserialize;
use serde_json::json;
use souk_sdk::{
    Event, FeatureKind, Gates, HookError, Job, JobOutput, LimitKind, Migration, Module, Problem,
    Request, Response, Router, db, events, params,
};

use crate::forums::Forum as ForumRow;
use crate::threads::Thread;
use crate::who::Who;

struct Forum;

impl Module for Forum {
    fn migrations() -> Vec<Migration> {
        schema::migrations()
    }

    fn install() -> Result<(), HookError> {
        schema::seed()
    }

    fn gates() -> Gates {
        Gates::new()
            .feature("private_messages", "Private messages between members.")
            .feature("attachments", "Files attached to posts.")
            .feature("polls", "Polls in threads.")
            .feature(
                "subscriptions",
                "Thread subscriptions, notifications and email digests.",
            )
            .feature(
                "moderation",
                "Moderators per forum, hiding, moving, bans, the moderation log and reports.",
            )
            .feature("analytics", "Posting analytics as JSON for charts.")
            .feature(
                "themes",
                "The tenant's colours and logo on the forum's pages.",
            )
            .feature(
                "api_access",
                "The tenant's own systems call the forum with an API key.",
            )
            .feature("webhooks", "Webhooks of thread and post events.")
            .feature_of_kind(
                "sso",
                "Members sign in with the tenant's OpenID Connect provider.",
                FeatureKind::Sso,
            )
            .limit("max_forums", "Forums a tenant may keep.", LimitKind::Count)
            .limit("max_polls", "Polls a tenant may keep.", LimitKind::Count)
            .limit(
                "attachment_bytes",
                "Bytes of attachments the tenant may keep.",
                LimitKind::Storage,
            )
            .limit(
                "emails_per_month",
                "Notification emails per month.",
                LimitKind::Email,
            )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/forums", forums::list)
            .post("/forums", forums::create)
            .get("/forums/{slug}", forums::show)
            .patch("/forums/{slug}", forums::update)
            .get("/forums/{slug}/threads", threads::list)
            .post("/forums/{slug}/threads", threads::create)
            .get("/threads/{id}", threads::show)
            .patch("/threads/{id}", threads::update)
            .delete("/threads/{id}", threads::delete)
            .get("/threads/{id}/posts", posts::list)
            .post("/threads/{id}/posts", posts::reply)
            .patch("/posts/{id}", posts::edit)
            .delete("/posts/{id}", posts::delete)
            .get("/posts/{id}/history", posts::history)
            .get("/members/{number}", profiles::show)
            .get("/me", profiles::me)
            .get("/settings", settings)
            .put("/settings", put_settings)
            .post("/conversations", messages::create)
            .get("/conversations", messages::list)
            .get("/conversations/{id}", messages::show)
            .post("/conversations/{id}/messages", messages::send)
            .put("/posts/{id}/attachments", attachments::attach)
            .get("/attachments/{id}", attachments::url)
            .post("/threads/{id}/poll", polls::create)
            .get("/threads/{id}/poll", polls::show)
            .post("/threads/{id}/poll/votes", polls::vote)
            .put("/threads/{id}/subscription", notifications::put)
            .delete("/threads/{id}/subscription", notifications::delete)
            .get("/notifications", notifications::list)
            .post("/notifications/read", notifications::mark_read)
            .put("/me/preferences", notifications::preferences)
            .get("/forums/{slug}/moderators", moderation::moderators)
            .put(
                "/forums/{slug}/moderators/{number}",
                moderation::add_moderator,
            )
            .delete(
                "/forums/{slug}/moderators/{number}",
                moderation::remove_moderator,
            )
            .post("/posts/{id}/hide", moderation::hide)
            .post("/posts/{id}/restore", moderation::restore)
            .post("/threads/{id}/move", moderation::move_thread)
            .post("/forums/{slug}/bans", moderation::ban)
            .get("/forums/{slug}/bans", moderation::bans)
            .delete("/forums/{slug}/bans/{number}", moderation::unban)
            .get("/forums/{slug}/log", moderation::log)
            .post("/posts/{id}/reports", moderation::report)
            .get("/reports", moderation::reports)
            .post("/reports/{id}/resolve", moderation::resolve)
            .get("/analytics", analytics::show)
            .get("/theme", theme::show)
            .put("/theme", theme::put)
            .get("/view/threads/{id}", theme::thread_page)
            .handle(request)
    }

    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        match job.name.as_str() {
            "digest" => notifications::digest_job(),
            other => Err(HookError::new(format!("no job named {other}"))),
        }
    }

    /// Membership's `member_left` closes the member's posting rights (and
    /// marks them as left on their profile); `member_created` with the same
    /// number reopens them. At least once: an event id is handled once.
    fn on_event(event: Event) -> Result<(), HookError> {
        #[derive(Deserialize)]
        struct MemberEvent {
            number: String,
            reason: Option<String>,
        }
        let seen = db::execute(
            "INSERT INTO seen_events (id) VALUES (?1) ON CONFLICT (id) DO NOTHING",
            params![event.id.as_str()],
        )?;
        if seen.rows_affected == 0 {
            return Ok(());
        }
        let member: MemberEvent = event.payload()?;
        match (event.source_module.as_str(), event.event_type.as_str()) {
            ("membership", "member_left") => {
                db::execute(
                    "INSERT INTO departed (number, reason, left_at) VALUES (?1, ?2, unixepoch()) \
                     ON CONFLICT (number) DO UPDATE SET reason = excluded.reason",
                    params![
                        member.number.as_str(),
                        member.reason.unwrap_or_else(|| "left".into())
                    ],
                )?;
            }
            ("membership", "member_created") => {
                db::execute(
                    "DELETE FROM departed WHERE number = ?1",
                    params![member.number.as_str()],
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// What follows every new post, in its call's transaction: the author's
/// subscription, the subscribers' notifications, and the `thread.created`
/// or `post.created` event (for the tenant's webhooks).
///
/// # Errors
///
/// Database errors.
pub(crate) fn after_post(
    who: &Who,
    forum: &ForumRow,
    thread: &Thread,
    post: i64,
    opening: bool,
) -> Result<(), Problem> {
    notifications::after_post(who, forum, thread, post, opening)?;
    let author = json!({
        "number": who.member.as_ref().map(|(number, _)| number),
        "name": who.name,
    });
    if opening {
        events::emit(
            "thread.created",
            &json!({ "thread": thread.id, "forum": forum.slug, "title": thread.title, "post": post, "author": author }),
        )?;
    } else {
        events::emit(
            "post.created",
            &json!({ "post": post, "thread": thread.id, "forum": forum.slug, "author": author }),
        )?;
    }
    Ok(())
}

/// Writes one line of the moderation log: who did what to what, and why.
///
/// # Errors
///
/// Database errors.
pub(crate) fn log_moderation(
    who: &Who,
    forum_id: i64,
    action: &str,
    target: &str,
    reason: &str,
) -> Result<(), Problem> {
    db::execute(
        "INSERT INTO moderation_log (forum_id, action, target, reason, actor_id, actor_name, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, unixepoch())",
        params![
            forum_id,
            action,
            target,
            reason,
            who.id.as_str(),
            who.name.as_str()
        ],
    )?;
    Ok(())
}

/// `GET /settings` (admin).
fn settings(_request: &Request) -> Result<Response, Problem> {
    let (window,): (i64,) = db::query_one(
        "SELECT edit_window_seconds FROM settings WHERE id = 1",
        params![],
    )?;
    Ok(Response::json(
        200,
        &json!({ "edit_window_seconds": window }),
    ))
}

/// `PUT /settings` (admin): `{"edit_window_seconds"}`, 0 to 604800.
fn put_settings(request: &Request) -> Result<Response, Problem> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        edit_window_seconds: i64,
    }
    let settings: Settings = request.json()?;
    if !(0..=604_800).contains(&settings.edit_window_seconds) {
        return Err(Problem::unprocessable(
            "`edit_window_seconds` must be from 0 to 604800 (a week)",
        ));
    }
    db::execute(
        "UPDATE settings SET edit_window_seconds = ?1 WHERE id = 1",
        params![settings.edit_window_seconds],
    )?;
    Ok(Response::json(
        200,
        &json!({ "edit_window_seconds": settings.edit_window_seconds }),
    ))
}

souk_sdk::export_module!(Forum);
