//! Posts: a thread's opening post and its replies. Replies quote, authors
//! edit within the tenant's edit window (every earlier body kept), posts
//! are soft-deleted and may be hidden by moderators; a deleted or hidden
//! post keeps its place in the thread with no body.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, params};

use crate::markdown::{self, MAX_BODY_BYTES};
use crate::page;
use crate::threads;
use crate::who::Who;

/// The problem `type` of an unknown (or invisible) post.
pub const NO_SUCH_POST: &str = "https://souk.dev/problems/forum/no-such-post";

/// 404 for a post that does not exist or that the caller may not view.
pub fn no_such_post() -> Problem {
    Problem::new(404, NO_SUCH_POST, "No such post")
}

/// Who wrote something: the member (name from Membership) or, for an
/// administrator without a member, the name they posted under.
#[derive(Debug, Clone, Serialize)]
pub struct Author {
    /// The member number, if the author was a member.
    pub number: Option<String>,
    /// The member's name now, or the name posted under.
    pub name: String,
    /// The member has left (or was removed): shown as such.
    pub left: bool,
}

/// The author columns of table alias `t` (needs [`author_joins`]).
pub fn author_columns(t: &str) -> String {
    format!(
        "{t}.author_number, coalesce(am.name, {t}.author_name) AS author_name, \
         ({t}.author_number IS NOT NULL AND (am.number IS NULL OR am.status = 'left' \
         OR ad.number IS NOT NULL)) AS author_left"
    )
}

/// The joins [`author_columns`] reads.
pub fn author_joins(t: &str) -> String {
    format!(
        "LEFT JOIN membership.members am ON am.number = {t}.author_number \
         LEFT JOIN departed ad ON ad.number = {t}.author_number"
    )
}

impl FromRow for Author {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Author {
            number: row.get("author_number")?,
            name: row.get("author_name")?,
            left: row.get("author_left")?,
        })
    }
}

/// A post as stored, before it is shown to someone.
struct StoredPost {
    id: i64,
    thread_id: i64,
    opening: bool,
    author: Author,
    author_user: String,
    html: String,
    body: String,
    quote_id: Option<i64>,
    created_at: String,
    edited_at: Option<String>,
    deleted: bool,
    hidden_reason: Option<String>,
    hidden: bool,
    edits: i64,
}

const POST_SELECT: &str = "SELECT p.id, p.thread_id, p.opening, p.author_user, p.html, p.body, \
     p.quote_id, strftime('%Y-%m-%dT%H:%M:%SZ', p.created_at, 'unixepoch') AS created_at, \
     CASE WHEN p.edited_at IS NULL THEN NULL \
     ELSE strftime('%Y-%m-%dT%H:%M:%SZ', p.edited_at, 'unixepoch') END AS edited_at, \
     p.deleted_at IS NOT NULL AS deleted, p.hidden_at IS NOT NULL AS hidden, p.hidden_reason, \
     (SELECT count(*) FROM post_edits e WHERE e.post_id = p.id) AS edits, ";

fn select_posts() -> String {
    format!(
        "{POST_SELECT}{} FROM posts p {}",
        author_columns("p"),
        author_joins("p")
    )
}

impl FromRow for StoredPost {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(StoredPost {
            id: row.get("id")?,
            thread_id: row.get("thread_id")?,
            opening: row.get("opening")?,
            author: Author::from_row(row)?,
            author_user: row.get("author_user")?,
            html: row.get("html")?,
            body: row.get("body")?,
            quote_id: row.get("quote_id")?,
            created_at: row.get("created_at")?,
            edited_at: row.get("edited_at")?,
            deleted: row.get("deleted")?,
            hidden: row.get("hidden")?,
            hidden_reason: row.get("hidden_reason")?,
            edits: row.get("edits")?,
        })
    }
}

/// A post as one caller sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Post {
    /// Its id.
    pub id: i64,
    /// Its thread.
    pub thread: i64,
    /// Whether it opens its thread.
    pub opening: bool,
    /// Who wrote it.
    pub author: Author,
    /// Sanitised HTML; `null` when deleted, or hidden from this caller.
    pub html: Option<String>,
    /// The Markdown source, for its author only (to edit it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    /// The post it quotes: `{id, author, html}` (`html` null when that post
    /// is deleted or hidden).
    pub quote: Option<serde_json::Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 of the last edit.
    pub edited_at: Option<String>,
    /// How many earlier bodies the history keeps.
    pub edits: i64,
    /// Soft-deleted.
    pub deleted: bool,
    /// Hidden by a moderator.
    pub hidden: bool,
    /// Why, to moderators and to its author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_reason: Option<String>,
    /// Its attachments' `{id, name, content_type, size}`; empty when the
    /// post is not shown.
    pub attachments: Vec<serde_json::Value>,
}

fn shown(who: &Who, moderator: bool, stored: StoredPost) -> Result<Post, Problem> {
    let own = stored.author_user == who.id;
    let html = if stored.deleted || (stored.hidden && !moderator) {
        None
    } else {
        Some(stored.html)
    };
    let quote = match stored.quote_id {
        Some(quoted) => {
            let row: Option<StoredPost> = db::query_optional(
                &format!("{} WHERE p.id = ?1", select_posts()),
                params![quoted],
            )?;
            row.map(|q| {
                let html = if q.deleted || q.hidden {
                    None
                } else {
                    Some(q.html)
                };
                json!({ "id": q.id, "author": q.author, "html": html })
            })
        }
        None => None,
    };
    #[cfg(feature = "premium")]
    let attachments = if html.is_some() {
        crate::attachments::of_post(stored.id)?
    } else {
        Vec::new()
    };
    #[cfg(not(feature = "premium"))]
    let attachments = Vec::new();
    Ok(Post {
        attachments,
        id: stored.id,
        thread: stored.thread_id,
        opening: stored.opening,
        author: stored.author,
        markdown: (own && !stored.deleted).then_some(stored.body),
        html,
        quote,
        created_at: stored.created_at,
        edited_at: stored.edited_at,
        edits: stored.edits,
        deleted: stored.deleted,
        hidden: stored.hidden,
        hidden_reason: if moderator || own {
            stored.hidden_reason
        } else {
            None
        },
    })
}

/// Post `id` as `who` sees it (its thread's visibility is the caller's
/// business).
///
/// # Errors
///
/// 404, database errors.
pub fn load(who: &Who, id: i64) -> Result<Post, Problem> {
    let stored: Option<StoredPost> =
        db::query_optional(&format!("{} WHERE p.id = ?1", select_posts()), params![id])?;
    let stored = stored.ok_or_else(no_such_post)?;
    let (_, forum) = threads::visible_by_id(who, stored.thread_id).map_err(|_| no_such_post())?;
    let moderator = crate::moderation::is_moderator(who, forum.id)?;
    shown(who, moderator, stored)
}

/// A body's rules: not blank, at most 20,000 bytes.
///
/// # Errors
///
/// 422.
pub fn check_body(body: &str) -> Result<(), Problem> {
    if body.trim().is_empty() || body.len() > MAX_BODY_BYTES {
        return Err(Problem::unprocessable(
            "`body` must be 1 to 20,000 bytes of Markdown",
        ));
    }
    Ok(())
}

/// Stores a post by `who` in `thread_id` and moves the thread's last post;
/// answers its id. The caller has checked the right to post.
///
/// # Errors
///
/// 403 when `who` may not author; database errors.
pub fn insert(
    thread_id: i64,
    opening: bool,
    who: &Who,
    body: &str,
    quote: Option<i64>,
) -> Result<i64, Problem> {
    let (number, user, name) = who.author()?;
    let changes = db::execute(
        "INSERT INTO posts (thread_id, opening, author_number, author_user, author_name, body, \
         html, quote_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            thread_id,
            opening,
            number.as_deref(),
            user.as_str(),
            name.as_str(),
            body,
            markdown::render(body),
            quote,
            crate::clock::now()
        ],
    )?;
    let id = changes.last_insert_id.unwrap_or_default();
    db::execute(
        "UPDATE threads SET last_post_id = ?1, last_post_at = ?4, \
         replies = replies + ?2 WHERE id = ?3",
        params![
            id,
            if opening { 0 } else { 1 },
            thread_id,
            crate::clock::now()
        ],
    )?;
    Ok(id)
}

/// `GET /threads/{id}/posts` (public): the thread's posts, oldest first.
pub fn list(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, forum) = threads::visible(&who, request, "id")?;
    let moderator = crate::moderation::is_moderator(&who, forum.id)?;
    let limit = page::limit(request)?;
    let after = page::after(request, 1)?.map_or(0, |key| key[0]);
    let mut rows: Vec<StoredPost> = db::query_as(
        &format!(
            "{} WHERE p.thread_id = ?1 AND p.id > ?2 ORDER BY p.id LIMIT ?3",
            select_posts()
        ),
        params![thread.id, after, limit + 1],
    )?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|p| page::cursor(&[p.id]))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|stored| shown(&who, moderator, stored))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Response::json(
        200,
        &json!({ "items": items, "next": next }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReply {
    body: String,
    quote: Option<i64>,
}

/// `POST /threads/{id}/posts` (member): `{"body", "quote"?}` → 201 the
/// post. A locked thread takes replies from moderators only; a quoted post
/// must be a visible post of the same thread.
pub fn reply(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, forum) = threads::visible(&who, request, "id")?;
    let new: NewReply = request.json()?;
    check_body(&new.body)?;
    crate::forums::check_may_post(&who, &forum)?;
    if thread.deleted {
        return Err(threads::no_such_thread());
    }
    if thread.locked && !crate::moderation::is_moderator(&who, forum.id)? {
        return Err(Problem::new(
            423,
            "https://souk.dev/problems/forum/thread-locked",
            "Thread locked",
        )
        .with_detail("this thread is locked: only moderators reply"));
    }
    if let Some(quoted) = new.quote {
        let row: Option<(i64,)> = db::query_optional(
            "SELECT id FROM posts WHERE id = ?1 AND thread_id = ?2 \
             AND deleted_at IS NULL AND hidden_at IS NULL",
            params![quoted, thread.id],
        )?;
        if row.is_none() {
            return Err(Problem::unprocessable(
                "`quote` must be a visible post of this thread",
            ));
        }
    }
    let id = insert(thread.id, false, &who, &new.body, new.quote)?;
    let post = load(&who, id)?;
    crate::after_post(&who, &forum, &thread, id, false)?;
    Ok(Response::json(201, &json!({ "post": post })))
}

/// 403 unless `who` wrote post `id`, it is neither deleted nor hidden, and
/// the tenant's edit window has not closed.
///
/// # Errors
///
/// 403 saying which; database errors.
pub fn check_may_edit(who: &Who, id: i64) -> Result<(), Problem> {
    let row: Option<(String, bool, i64)> = db::query_optional(
        "SELECT p.author_user, p.deleted_at IS NOT NULL OR p.hidden_at IS NOT NULL, \
         ?2 - p.created_at <= s.edit_window_seconds \
         FROM posts p, settings s WHERE p.id = ?1 AND s.id = 1",
        params![id, crate::clock::now()],
    )?;
    let Some((author, gone, open)) = row else {
        return Err(no_such_post());
    };
    if author != who.id {
        return Err(Problem::from_status(403).with_detail("only its author may edit a post"));
    }
    if gone {
        return Err(
            Problem::from_status(403).with_detail("a deleted or hidden post cannot be edited")
        );
    }
    if open == 0 {
        return Err(Problem::new(
            403,
            "https://souk.dev/problems/forum/edit-window-closed",
            "Edit window closed",
        )
        .with_detail("the time to edit this post has passed"));
    }
    Ok(())
}

fn post_of(request: &Request) -> Result<i64, Problem> {
    request.param("id")?.parse().map_err(|_| no_such_post())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    body: String,
}

/// `PATCH /posts/{id}` (member): its author, within the edit window;
/// the replaced body goes to the history.
pub fn edit(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let id = post_of(request)?;
    load(&who, id)?;
    let edit: Edit = request.json()?;
    check_body(&edit.body)?;
    check_may_edit(&who, id)?;
    db::execute(
        "INSERT INTO post_edits (post_id, body, replaced_at) \
         SELECT id, body, ?2 FROM posts WHERE id = ?1",
        params![id, crate::clock::now()],
    )?;
    db::execute(
        "UPDATE posts SET body = ?1, html = ?2, edited_at = ?4 WHERE id = ?3",
        params![
            edit.body.as_str(),
            markdown::render(&edit.body),
            id,
            crate::clock::now()
        ],
    )?;
    Ok(Response::json(200, &json!({ "post": load(&who, id)? })))
}

/// `GET /posts/{id}/history` (public): the earlier bodies, oldest first,
/// rendered; only while the post itself is shown to the caller.
pub fn history(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let id = post_of(request)?;
    let post = load(&who, id)?;
    if post.html.is_none() {
        return Err(no_such_post());
    }
    let rows: Vec<(String, String)> = db::query_as(
        "SELECT body, strftime('%Y-%m-%dT%H:%M:%SZ', replaced_at, 'unixepoch') \
         FROM post_edits WHERE post_id = ?1 ORDER BY id",
        params![id],
    )?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|(body, replaced_at)| json!({ "html": markdown::render(&body), "replaced_at": replaced_at }))
        .collect();
    Ok(Response::json(
        200,
        &json!({ "post": post, "history": items }),
    ))
}

/// `DELETE /posts/{id}` (member): soft delete by its author or a
/// moderator; an opening post is deleted with its thread
/// (`DELETE /threads/{id}`); 204.
pub fn delete(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let id = post_of(request)?;
    let post = load(&who, id)?;
    if post.opening {
        return Err(Problem::conflict(
            "an opening post goes with its thread: delete the thread",
        ));
    }
    let (_, forum) = threads::visible_by_id(&who, post.thread)?;
    let author: (String,) =
        db::query_one("SELECT author_user FROM posts WHERE id = ?1", params![id])?;
    let moderator = crate::moderation::is_moderator(&who, forum.id)?;
    if author.0 != who.id && !moderator {
        return Err(Problem::from_status(403)
            .with_detail("only its author or a moderator may delete a post"));
    }
    db::execute(
        "UPDATE posts SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
        params![id, crate::clock::now()],
    )?;
    if author.0 != who.id {
        crate::log_moderation(&who, forum.id, "delete_post", &format!("post {id}"), "")?;
    }
    Ok(Response::no_content())
}
