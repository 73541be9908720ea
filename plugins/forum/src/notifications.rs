//! Thread subscriptions and notifications (plus). Authors are subscribed
//! to the threads they post in; members subscribe and unsubscribe
//! explicitly. A reply makes one in-app notification per other subscriber
//! who may still view the thread, and either one email at once (host
//! `notify`, counted against `emails_per_month`) or, for members who
//! chose the digest, a line in the next daily digest email (the `digest`
//! schedule).

use serde::Deserialize;
use serde_json::json;
use souk_sdk::notify::{self, NotifyError, Recipient};
use souk_sdk::{HookError, JobOutput, Problem, Request, Response, db, entitlements, log, params};

use crate::forums::{self, Forum};
use crate::page;
use crate::threads::{self, Thread};
use crate::who::{MemberStatus, Who};

/// The feature that delivers notifications.
const FEATURE: &str = "subscriptions";

/// Subscribes member `number` to `thread` (idempotent).
///
/// # Errors
///
/// Database errors.
pub fn subscribe(thread: i64, number: &str) -> Result<(), Problem> {
    db::execute(
        "INSERT INTO subscriptions (thread_id, member_number) VALUES (?1, ?2) \
         ON CONFLICT DO NOTHING",
        params![thread, number],
    )?;
    Ok(())
}

/// After a post: its author is subscribed; for a reply, every other
/// subscriber who may still view the forum is notified (when the plan
/// delivers notifications). A refused email never fails the post: the
/// in-app notification stays.
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
    let author = who.member.as_ref().map(|(n, _)| n.clone());
    if let Some(number) = &author {
        subscribe(thread.id, number)?;
    }
    if opening || !entitlements::has_feature(FEATURE) {
        return Ok(());
    }
    let subscribers: Vec<(String, String, i64)> = db::query_as(
        "SELECT s.member_number, m.status, coalesce(p.digest, 0) FROM subscriptions s \
         JOIN membership.members m ON m.number = s.member_number \
         LEFT JOIN preferences p ON p.member_number = s.member_number \
         WHERE s.thread_id = ?1 AND s.member_number <> coalesce(?2, '') \
         AND NOT EXISTS (SELECT 1 FROM departed d WHERE d.number = s.member_number) \
         ORDER BY s.member_number",
        params![thread.id, author.as_deref()],
    )?;
    let (html,): (String,) = db::query_one("SELECT html FROM posts WHERE id = ?1", params![post])?;
    for (number, status, digest) in subscribers {
        let reader = Who {
            id: String::new(),
            name: String::new(),
            admin: false,
            member: Some((number.clone(), status_of(&status))),
        };
        if !forums::may_view(&reader, forum)? {
            continue;
        }
        let mail = if digest != 0 {
            "digest"
        } else {
            match notify::email(
                Recipient::Member(&number),
                &format!("New reply in \"{}\"", thread.title),
                &format!(
                    "{} replied in \u{201c}{}\u{201d} (thread {}, post {post}).",
                    who.name, thread.title, thread.id
                ),
                Some(&format!(
                    "<p>{} replied in \u{201c}{}\u{201d}:</p>{html}",
                    escape(&who.name),
                    escape(&thread.title)
                )),
            ) {
                Ok(_) => "sent",
                Err(error) => {
                    skipped(&number, &error);
                    "none"
                }
            }
        };
        db::execute(
            "INSERT INTO notifications (member_number, thread_id, post_id, created_at, mail) \
             VALUES (?1, ?2, ?3, ?5, ?4)",
            params![number.as_str(), thread.id, post, mail, crate::clock::now()],
        )?;
    }
    Ok(())
}

fn status_of(text: &str) -> MemberStatus {
    match text {
        "active" => MemberStatus::Active,
        "suspended" => MemberStatus::Suspended,
        _ => MemberStatus::Left,
    }
}

fn skipped(number: &str, error: &NotifyError) {
    log::info(format!("no email to member {number}: {error}"));
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn member(who: &Who) -> Result<String, Problem> {
    who.active_number()
        .map(str::to_owned)
        .ok_or_else(|| Problem::from_status(403).with_detail("only members subscribe"))
}

/// `PUT /threads/{id}/subscription` (member, plus) → 200.
pub fn put(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, _) = threads::visible(&who, request, "id")?;
    subscribe(thread.id, &member(&who)?)?;
    Ok(Response::json(
        200,
        &json!({ "thread": thread.id, "subscribed": true }),
    ))
}

/// `DELETE /threads/{id}/subscription` (member, plus) → 204.
pub fn delete(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, _) = threads::visible(&who, request, "id")?;
    db::execute(
        "DELETE FROM subscriptions WHERE thread_id = ?1 AND member_number = ?2",
        params![thread.id, member(&who)?.as_str()],
    )?;
    Ok(Response::no_content())
}

/// `GET /notifications[?unread=true]` (member, plus): newest first, with
/// the unread count.
pub fn list(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let me = member(&who)?;
    let limit = page::limit(request)?;
    let after = page::after(request, 1)?.map_or(i64::MAX, |key| key[0]);
    let unread_only = match request.query("unread").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Problem::bad_request("`unread` must be true or false")),
    };
    let mut items = page::objects(
        "SELECT n.id, n.thread_id AS thread, t.title, n.post_id AS post, \
         strftime('%Y-%m-%dT%H:%M:%SZ', n.created_at, 'unixepoch') AS created_at, \
         n.read_at IS NOT NULL AS read \
         FROM notifications n JOIN threads t ON t.id = n.thread_id \
         WHERE n.member_number = ?1 AND n.id < ?2 AND (?3 = 0 OR n.read_at IS NULL) \
         ORDER BY n.id DESC LIMIT ?4",
        params![me.as_str(), after, unread_only, limit + 1],
        &["read"],
    )?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|n| page::cursor(&[n["id"].as_i64().unwrap_or_default()]))
    } else {
        None
    };
    let (unread,): (i64,) = db::query_one(
        "SELECT count(*) FROM notifications WHERE member_number = ?1 AND read_at IS NULL",
        params![me.as_str()],
    )?;
    Ok(Response::json(
        200,
        &json!({ "items": items, "next": next, "unread": unread }),
    ))
}

/// `POST /notifications/read` (member, plus): `{"ids": [..]}` or
/// `{"all": true}` → the unread count left.
pub fn mark_read(request: &Request) -> Result<Response, Problem> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Read {
        #[serde(default)]
        ids: Vec<i64>,
        #[serde(default)]
        all: bool,
    }
    let who = Who::current()?;
    let me = member(&who)?;
    let read: Read = request.json()?;
    if read.all {
        db::execute(
            "UPDATE notifications SET read_at = ?2 WHERE member_number = ?1 AND read_at IS NULL",
            params![me.as_str(), crate::clock::now()],
        )?;
    } else {
        if read.ids.len() > 1000 {
            return Err(Problem::unprocessable("at most 1000 `ids` at once"));
        }
        for id in read.ids {
            db::execute(
                "UPDATE notifications SET read_at = ?3 \
                 WHERE id = ?1 AND member_number = ?2 AND read_at IS NULL",
                params![id, me.as_str(), crate::clock::now()],
            )?;
        }
    }
    let (unread,): (i64,) = db::query_one(
        "SELECT count(*) FROM notifications WHERE member_number = ?1 AND read_at IS NULL",
        params![me.as_str()],
    )?;
    Ok(Response::json(200, &json!({ "unread": unread })))
}

/// `PUT /me/preferences` (member, plus): `{"digest": bool}`: one daily
/// email instead of one per reply.
pub fn preferences(request: &Request) -> Result<Response, Problem> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Preferences {
        digest: bool,
    }
    let who = Who::current()?;
    let me = member(&who)?;
    let prefs: Preferences = request.json()?;
    db::execute(
        "INSERT INTO preferences (member_number, digest) VALUES (?1, ?2) \
         ON CONFLICT (member_number) DO UPDATE SET digest = excluded.digest",
        params![me.as_str(), prefs.digest],
    )?;
    Ok(Response::json(200, &json!({ "digest": prefs.digest })))
}

/// The daily `digest` job: one email per member with notifications
/// waiting for the digest, listing their threads; the notifications are
/// marked digested (or `none` when the email was refused) so they are
/// never sent twice.
///
/// # Errors
///
/// Database errors (the job is retried).
pub fn digest_job() -> Result<JobOutput, HookError> {
    if !entitlements::has_feature(FEATURE) {
        return JobOutput::json(&json!({ "sent": 0, "skipped": "plan" }));
    }
    let members: Vec<(String,)> = db::query_as(
        "SELECT DISTINCT member_number FROM notifications WHERE mail = 'digest' ORDER BY member_number",
        params![],
    )?;
    let mut sent = 0_u64;
    for (number,) in members {
        let lines: Vec<(String, i64)> = db::query_as(
            "SELECT t.title, count(*) FROM notifications n JOIN threads t ON t.id = n.thread_id \
             WHERE n.member_number = ?1 AND n.mail = 'digest' GROUP BY t.id ORDER BY t.id",
            params![number.as_str()],
        )?;
        let text: String = lines
            .iter()
            .map(|(title, n)| {
                format!(
                    "- \u{201c}{title}\u{201d}: {n} new {}\n",
                    if *n == 1 { "reply" } else { "replies" }
                )
            })
            .collect();
        let outcome = notify::email(
            Recipient::Member(&number),
            "Your forum digest",
            &format!("New replies in threads you follow:\n\n{text}"),
            None,
        );
        let mail = match outcome {
            Ok(_) => {
                sent += 1;
                "digested"
            }
            Err(NotifyError::Unavailable(detail)) => {
                return Err(HookError::new(format!("email unavailable: {detail}")));
            }
            Err(error) => {
                skipped(&number, &error);
                "none"
            }
        };
        db::execute(
            "UPDATE notifications SET mail = ?1 WHERE member_number = ?2 AND mail = 'digest'",
            params![mail, number.as_str()],
        )?;
    }
    JobOutput::json(&json!({ "sent": sent }))
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
