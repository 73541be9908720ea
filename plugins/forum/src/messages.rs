//! Private messages (plus): conversations between members, each
//! participant with their own read mark, so every conversation has an
//! unread count. Only participants see a conversation (404 otherwise).

use serde::Deserialize;
use serde_json::json;
use souk_sdk::{Problem, Request, Response, db, params};

use crate::markdown;
use crate::page;
use crate::posts::check_body;
use crate::who::Who;

/// The most recipients a conversation may start with.
const MAX_RECIPIENTS: usize = 20;

fn no_such_conversation() -> Problem {
    Problem::new(
        404,
        "https://souk.dev/problems/forum/no-such-conversation",
        "No such conversation",
    )
}

/// The caller's member number, or 403: only active members message.
fn sender(who: &Who) -> Result<String, Problem> {
    who.active_number().map(str::to_owned).ok_or_else(|| {
        Problem::from_status(403)
            .with_detail("only a user linked to an active member sends messages")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConversation {
    to: Vec<String>,
    subject: String,
    body: String,
}

/// `POST /conversations` (member, plus): `{"to": [numbers], "subject",
/// "body"}` → 201 `{"conversation"}`.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let me = sender(&who)?;
    let new: NewConversation = request.json()?;
    let subject = new.subject.trim();
    if subject.is_empty() || subject.chars().count() > 200 {
        return Err(Problem::unprocessable(
            "`subject` must be 1 to 200 characters",
        ));
    }
    check_body(&new.body)?;
    let mut to: Vec<String> = new.to.into_iter().filter(|n| *n != me).collect();
    to.sort();
    to.dedup();
    if to.is_empty() || to.len() > MAX_RECIPIENTS {
        return Err(Problem::unprocessable(
            "`to` must name 1 to 20 other members",
        ));
    }
    for number in &to {
        let active: Option<(i64,)> = db::query_optional(
            "SELECT 1 FROM membership.members m WHERE m.number = ?1 AND m.status = 'active' \
             AND NOT EXISTS (SELECT 1 FROM departed d WHERE d.number = m.number)",
            params![number.as_str()],
        )?;
        if active.is_none() {
            return Err(Problem::unprocessable(format!(
                "`to`: {number} is not an active member"
            )));
        }
    }
    let changes = db::execute(
        "INSERT INTO conversations (subject, created_at) VALUES (?1, ?2)",
        params![subject, crate::clock::now()],
    )?;
    let id = changes.last_insert_id.unwrap_or_default();
    for number in to.iter().chain(std::iter::once(&me)) {
        db::execute(
            "INSERT INTO conversation_members (conversation_id, member_number) VALUES (?1, ?2)",
            params![id, number.as_str()],
        )?;
    }
    add_message(id, &who, &me, &new.body)?;
    Ok(Response::json(
        201,
        &json!({ "conversation": summary(id, &me)? }),
    ))
}

fn add_message(conversation: i64, who: &Who, me: &str, body: &str) -> Result<i64, Problem> {
    let changes = db::execute(
        "INSERT INTO messages (conversation_id, author_number, author_name, html, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            conversation,
            me,
            who.name.as_str(),
            markdown::render(body),
            crate::clock::now()
        ],
    )?;
    let id = changes.last_insert_id.unwrap_or_default();
    db::execute(
        "UPDATE conversations SET last_message_id = ?1 WHERE id = ?2",
        params![id, conversation],
    )?;
    // The sender has read what they wrote.
    db::execute(
        "UPDATE conversation_members SET last_read_id = ?1 \
         WHERE conversation_id = ?2 AND member_number = ?3",
        params![id, conversation, me],
    )?;
    Ok(id)
}

/// A conversation as `me` sees it: subject, participants, unread count.
fn summary(id: i64, me: &str) -> Result<serde_json::Value, Problem> {
    let row: Option<(String, i64, i64)> = db::query_optional(
        "SELECT c.subject, c.last_message_id, \
         (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id AND m.id > cm.last_read_id) \
         FROM conversations c JOIN conversation_members cm ON cm.conversation_id = c.id \
         WHERE c.id = ?1 AND cm.member_number = ?2",
        params![id, me],
    )?;
    let (subject, _, unread) = row.ok_or_else(no_such_conversation)?;
    let members: Vec<(String,)> = db::query_as(
        "SELECT member_number FROM conversation_members WHERE conversation_id = ?1 ORDER BY member_number",
        params![id],
    )?;
    let members: Vec<String> = members.into_iter().map(|(n,)| n).collect();
    Ok(json!({ "id": id, "subject": subject, "members": members, "unread": unread }))
}

/// `GET /conversations` (member, plus): the caller's conversations, latest
/// message first, each with its unread count, and the total unread.
pub fn list(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let me = sender(&who)?;
    let limit = page::limit(request)?;
    let after = page::after(request, 1)?.map_or(i64::MAX, |key| key[0]);
    let rows: Vec<(i64, i64)> = db::query_as(
        "SELECT c.id, c.last_message_id FROM conversations c \
         JOIN conversation_members cm ON cm.conversation_id = c.id \
         WHERE cm.member_number = ?1 AND c.last_message_id < ?2 \
         ORDER BY c.last_message_id DESC LIMIT ?3",
        params![me.as_str(), after, limit + 1],
    )?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = if more {
        rows.last().map(|r| page::cursor(&[r.1]))
    } else {
        None
    };
    let items = rows
        .iter()
        .map(|(id, _)| summary(*id, &me))
        .collect::<Result<Vec<_>, _>>()?;
    let (unread,): (i64,) = db::query_one(
        "SELECT count(*) FROM messages m JOIN conversation_members cm \
         ON cm.conversation_id = m.conversation_id \
         WHERE cm.member_number = ?1 AND m.id > cm.last_read_id",
        params![me.as_str()],
    )?;
    Ok(Response::json(
        200,
        &json!({ "items": items, "next": next, "unread": unread }),
    ))
}

fn conversation_of(request: &Request) -> Result<i64, Problem> {
    request
        .param("id")?
        .parse()
        .map_err(|_| no_such_conversation())
}

/// `GET /conversations/{id}` (member, plus): its messages, oldest first;
/// opening it marks everything in it read.
pub fn show(request: &Request) -> Result<Response, Problem> {
    let id = conversation_of(request)?;
    let who = Who::current()?;
    let me = sender(&who)?;
    // The write first: this GET's transaction is deferred.
    db::execute(
        "UPDATE conversation_members SET last_read_id = \
         (SELECT last_message_id FROM conversations WHERE id = ?1) \
         WHERE conversation_id = ?1 AND member_number = ?2",
        params![id, me.as_str()],
    )?;
    let conversation = summary(id, &me)?;
    let limit = page::limit(request)?;
    let after = page::after(request, 1)?.map_or(0, |key| key[0]);
    let mut items = page::objects(
        "SELECT id, author_number, author_name, html, \
         strftime('%Y-%m-%dT%H:%M:%SZ', created_at, 'unixepoch') AS created_at FROM messages \
         WHERE conversation_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        params![id, after, limit + 1],
        &[],
    )?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items
            .last()
            .map(|m| page::cursor(&[m["id"].as_i64().unwrap_or_default()]))
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({ "conversation": conversation, "items": items, "next": next }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    body: String,
}

/// `POST /conversations/{id}/messages` (member, plus): `{"body"}` → 201.
pub fn send(request: &Request) -> Result<Response, Problem> {
    let id = conversation_of(request)?;
    let who = Who::current()?;
    let me = sender(&who)?;
    summary(id, &me)?;
    let new: NewMessage = request.json()?;
    check_body(&new.body)?;
    let message = add_message(id, &who, &me, &new.body)?;
    Ok(Response::json(
        201,
        &json!({ "id": message, "conversation": summary(id, &me)? }),
    ))
}
