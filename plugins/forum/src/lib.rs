//! Forum: where a tenant's members talk to each other.
//!
//! Forums (categories) hold threads, threads hold posts. Authors are the
//! tenant's signed-in users linked to an active Membership member; anybody
//! may read public forums. Markdown is rendered to sanitised HTML here, so
//! no script ever reaches a browser. Routes, permissions and plans are in
//! the README.

#[cfg(feature = "premium")]
mod analytics;
#[cfg(feature = "premium")]
mod attachments;
mod clock;
mod forums;
mod markdown;
#[cfg(feature = "premium")]
mod messages;
#[cfg(feature = "premium")]
mod moderate;
mod moderation;
#[cfg(feature = "premium")]
mod notifications;
mod page;
#[cfg(feature = "premium")]
mod polls;
mod posts;
#[cfg(feature = "premium")]
mod premium;
mod profiles;
mod schema;
#[cfg(feature = "premium")]
mod theme;
mod threads;
mod who;

use serde::Deserialize;
use serde_json::json;
use souk_sdk::{
    Event, Gates, HookError, LimitKind, Migration, Module, Problem, Request, Response, Router, db,
    params,
};
#[cfg(feature = "premium")]
use souk_sdk::{Job, JobOutput};

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
        let gates = Gates::new().limit("max_forums", "Forums a tenant may keep.", LimitKind::Count);
        #[cfg(feature = "premium")]
        let gates = premium::gates(gates);
        gates
    }

    #[cfg(feature = "premium")]
    fn upgrade(from: &str) -> Result<(), HookError> {
        premium::upgrade(from)
    }

    fn handle(request: Request) -> Response {
        let router = Router::new()
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
            .put("/settings", put_settings);
        #[cfg(feature = "premium")]
        let router = premium::routes(router);
        router.handle(request)
    }

    #[cfg(feature = "premium")]
    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        premium::run_job(&job)
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
                    "INSERT INTO departed (number, reason, left_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (number) DO UPDATE SET reason = excluded.reason",
                    params![
                        member.number.as_str(),
                        member.reason.unwrap_or_else(|| "left".into()),
                        crate::clock::now()
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

/// What follows every new post, in its call's transaction (1.1.0: the
/// author's subscription, notifications and the post's event).
///
/// # Errors
///
/// Database errors.
#[cfg_attr(not(feature = "premium"), allow(clippy::unnecessary_wraps))]
pub(crate) fn after_post(
    who: &Who,
    forum: &ForumRow,
    thread: &Thread,
    post: i64,
    opening: bool,
) -> Result<(), Problem> {
    #[cfg(feature = "premium")]
    premium::after_post(who, forum, thread, post, opening)?;
    #[cfg(not(feature = "premium"))]
    let _ = (who, forum, thread, post, opening);
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
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            forum_id,
            action,
            target,
            reason,
            who.id.as_str(),
            who.name.as_str(),
            crate::clock::now()
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
