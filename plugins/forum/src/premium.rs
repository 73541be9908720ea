//! Release 1.1.0: the plus and community plans' parts of the forum, built
//! with the crate's `premium` feature (on by default). The 1.0.0 build
//! (`tests/modules/forum-v1_0`) leaves them out, so the upgrade from the
//! Basic-only release is tested with a real older component.

use serde_json::json;
use souk_sdk::{
    FeatureKind, Gates, HookError, Job, JobOutput, Problem, Router, db, events, params,
};

use crate::forums::Forum;
use crate::threads::Thread;
use crate::who::Who;
use crate::{analytics, attachments, messages, moderate, notifications, polls, theme};

/// The features of the plus and community plans.
pub fn gates(gates: Gates) -> Gates {
    gates
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
        .limit(
            "max_polls",
            "Polls a tenant may keep.",
            souk_sdk::LimitKind::Count,
        )
        .limit(
            "attachment_bytes",
            "Bytes of attachments the tenant may keep.",
            souk_sdk::LimitKind::Storage,
        )
        .limit(
            "emails_per_month",
            "Notification emails per month.",
            souk_sdk::LimitKind::Email,
        )
}

/// The routes of 1.1.0 beside the Basic ones.
pub fn routes(router: Router) -> Router {
    router
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
        .get("/forums/{slug}/moderators", moderate::moderators)
        .put(
            "/forums/{slug}/moderators/{number}",
            moderate::add_moderator,
        )
        .delete(
            "/forums/{slug}/moderators/{number}",
            moderate::remove_moderator,
        )
        .post("/posts/{id}/hide", moderate::hide)
        .post("/posts/{id}/restore", moderate::restore)
        .post("/threads/{id}/move", moderate::move_thread)
        .post("/forums/{slug}/bans", moderate::ban)
        .get("/forums/{slug}/bans", moderate::bans)
        .delete("/forums/{slug}/bans/{number}", moderate::unban)
        .get("/forums/{slug}/log", moderate::log)
        .post("/posts/{id}/reports", moderate::report)
        .get("/reports", moderate::reports)
        .post("/reports/{id}/resolve", moderate::resolve)
        .get("/analytics", analytics::show)
        .get("/theme", theme::show)
        .put("/theme", theme::put)
        .get("/view/threads/{id}", theme::thread_page)
}

/// The jobs: the daily `digest` schedule.
pub fn run_job(job: &Job) -> Result<JobOutput, HookError> {
    match job.name.as_str() {
        "digest" => notifications::digest_job(),
        other => Err(HookError::new(format!("no job named {other}"))),
    }
}

/// From a release before 1.1.0: authors are subscribed to the threads
/// they posted in, as they would have been had subscriptions existed.
pub fn upgrade(from: &str) -> Result<(), HookError> {
    if from.starts_with("1.0.") {
        db::execute(
            "INSERT INTO subscriptions (thread_id, member_number) \
             SELECT DISTINCT thread_id, author_number FROM posts WHERE author_number IS NOT NULL \
             ON CONFLICT DO NOTHING",
            params![],
        )?;
    }
    Ok(())
}

/// What follows a new post in 1.1.0: the author's subscription, the
/// subscribers' notifications, and the `thread.created` or `post.created`
/// event (for the tenant's webhooks).
///
/// # Errors
///
/// Database errors.
pub fn after_post(
    who: &Who,
    forum: &Forum,
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
