//! Threads: list a forum's threads (pinned first, then by last post),
//! start one, read one (counting the view), change its title, pin or lock
//! it, soft-delete it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, params};

use crate::forums::{self, Forum};
use crate::page;
use crate::posts::{self, Author};
use crate::who::Who;

/// The problem `type` of an unknown (or invisible) thread.
pub const NO_SUCH_THREAD: &str = "https://souk.dev/problems/forum/no-such-thread";

/// 404 for a thread that does not exist, is deleted, or sits in a forum
/// the caller may not view.
pub fn no_such_thread() -> Problem {
    Problem::new(404, NO_SUCH_THREAD, "No such thread")
}

/// A thread as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    /// Its id.
    pub id: i64,
    /// The forum's internal id (not answered).
    #[serde(skip)]
    pub forum_id: i64,
    /// Title, plain text.
    pub title: String,
    /// Who started it.
    pub author: Author,
    /// Shown before every unpinned thread.
    pub pinned: bool,
    /// No replies but by moderators.
    pub locked: bool,
    /// How often it was read.
    pub views: i64,
    /// Replies (not counting the opening post), deleted ones included.
    pub replies: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_post_at: String,
    /// The sort key of its last post (not answered).
    #[serde(skip)]
    pub last_post_id: i64,
    /// Soft-deleted: only moderators still see it.
    pub deleted: bool,
}

/// The SELECT of [`Thread`]s: `t` is the thread.
pub fn select_threads() -> String {
    format!(
        "SELECT t.id, t.forum_id, t.title, {author}, t.pinned, t.locked, t.views, t.replies, \
         strftime('%Y-%m-%dT%H:%M:%SZ', t.created_at, 'unixepoch') AS created_at, \
         strftime('%Y-%m-%dT%H:%M:%SZ', t.last_post_at, 'unixepoch') AS last_post_at, \
         t.last_post_id, t.deleted_at IS NOT NULL AS deleted \
         FROM threads t {joins}",
        author = posts::author_columns("t"),
        joins = posts::author_joins("t"),
    )
}

impl FromRow for Thread {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Thread {
            id: row.get("id")?,
            forum_id: row.get("forum_id")?,
            title: row.get("title")?,
            author: Author::from_row(row)?,
            pinned: row.get("pinned")?,
            locked: row.get("locked")?,
            views: row.get("views")?,
            replies: row.get("replies")?,
            created_at: row.get("created_at")?,
            last_post_at: row.get("last_post_at")?,
            last_post_id: row.get("last_post_id")?,
            deleted: row.get("deleted")?,
        })
    }
}

/// The thread `{id}` of the path with its forum, if the caller may view
/// it (a deleted thread only for the forum's moderators).
///
/// # Errors
///
/// 404 otherwise; database errors.
pub fn visible(who: &Who, request: &Request, param: &str) -> Result<(Thread, Forum), Problem> {
    let id: i64 = request
        .param(param)?
        .parse()
        .map_err(|_| no_such_thread())?;
    visible_by_id(who, id)
}

/// The thread `id` with its forum, if the caller may view it.
///
/// # Errors
///
/// 404 otherwise; database errors.
pub fn visible_by_id(who: &Who, id: i64) -> Result<(Thread, Forum), Problem> {
    let thread: Option<Thread> = db::query_optional(
        &format!("{} WHERE t.id = ?1", select_threads()),
        params![id],
    )?;
    let Some(thread) = thread else {
        return Err(no_such_thread());
    };
    let forum = forums::visible_by_id(who, thread.forum_id).map_err(|_| no_such_thread())?;
    if thread.deleted && !crate::moderation::is_moderator(who, forum.id)? {
        return Err(no_such_thread());
    }
    Ok((thread, forum))
}

/// `GET /forums/{slug}/threads` (public): pinned first, then by last post,
/// newest first; deleted threads left out.
pub fn list(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    let limit = page::limit(request)?;
    let (pinned, last) = match page::after(request, 2)? {
        Some(key) => (key[0], key[1]),
        None => (2, i64::MAX),
    };
    let mut threads: Vec<Thread> = db::query_as(
        &format!(
            "{} WHERE t.forum_id = ?1 AND t.deleted_at IS NULL \
             AND (t.pinned < ?2 OR (t.pinned = ?2 AND t.last_post_id < ?3)) \
             ORDER BY t.pinned DESC, t.last_post_id DESC LIMIT ?4",
            select_threads()
        ),
        params![forum.id, pinned, last, limit + 1],
    )?;
    let next = if threads.len() as i64 > limit {
        threads.truncate(limit as usize);
        threads
            .last()
            .map(|t| page::cursor(&[i64::from(t.pinned), t.last_post_id]))
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({ "items": threads, "next": next }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewThread {
    title: String,
    body: String,
}

/// A title's rule: 1 to 200 characters after trimming.
pub fn check_title(title: &str) -> Result<&str, Problem> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(Problem::unprocessable(
            "`title` must be 1 to 200 characters",
        ));
    }
    Ok(title)
}

/// `POST /forums/{slug}/threads` (member): `{"title", "body"}` → 201 the
/// thread and its opening post.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = forums::visible_by_slug(&who, request)?;
    let new: NewThread = request.json()?;
    let title = check_title(&new.title)?;
    posts::check_body(&new.body)?;
    forums::check_may_post(&who, &forum)?;
    let (number, user, name) = who.author()?;
    let changes = db::execute(
        "INSERT INTO threads (forum_id, title, author_number, author_user, author_name, \
         created_at, last_post_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            forum.id,
            title,
            number.as_deref(),
            user.as_str(),
            name.as_str(),
            crate::clock::now()
        ],
    )?;
    let thread_id = changes.last_insert_id.unwrap_or_default();
    let post_id = posts::insert(thread_id, true, &who, &new.body, None)?;
    let (thread, _) = visible_by_id(&who, thread_id)?;
    let post = posts::load(&who, post_id)?;
    crate::after_post(&who, &forum, &thread, post_id, true)?;
    Ok(Response::json(
        201,
        &json!({ "thread": thread, "post": post }),
    ))
}

/// `GET /threads/{id}` (public): the thread and its opening post; counts
/// one view.
pub fn show(request: &Request) -> Result<Response, Problem> {
    let id: i64 = request.param("id")?.parse().map_err(|_| no_such_thread())?;
    // The write comes first: this GET's transaction is deferred, and a
    // read before it could not be upgraded to a write once another call
    // has committed. A view the caller may not make is taken back.
    db::execute(
        "UPDATE threads SET views = views + 1 WHERE id = ?1",
        params![id],
    )?;
    let who = Who::current()?;
    let (thread, _) = match visible_by_id(&who, id) {
        Ok(found) => found,
        Err(problem) => {
            db::execute(
                "UPDATE threads SET views = views - 1 WHERE id = ?1",
                params![id],
            )?;
            return Err(problem);
        }
    };
    let opening: Option<(i64,)> = db::query_optional(
        "SELECT id FROM posts WHERE thread_id = ?1 AND opening = 1",
        params![thread.id],
    )?;
    let post = match opening {
        Some((post_id,)) => Some(posts::load(&who, post_id)?),
        None => None,
    };
    Ok(Response::json(
        200,
        &json!({ "thread": thread, "post": post }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThreadChange {
    title: Option<String>,
    pinned: Option<bool>,
    locked: Option<bool>,
}

/// `PATCH /threads/{id}` (member): `title` by its author within the edit
/// window; `pinned` and `locked` by the forum's moderators (administrators
/// on every plan).
pub fn update(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, forum) = visible(&who, request, "id")?;
    let change: ThreadChange = request.json()?;
    let moderator = crate::moderation::is_moderator(&who, forum.id)?;
    if (change.pinned.is_some() || change.locked.is_some()) && !moderator {
        return Err(Problem::from_status(403).with_detail("only moderators pin or lock threads"));
    }
    if let Some(title) = &change.title {
        let title = check_title(title)?;
        let opening: (i64,) = db::query_one(
            "SELECT id FROM posts WHERE thread_id = ?1 AND opening = 1",
            params![thread.id],
        )?;
        posts::check_may_edit(&who, opening.0)?;
        db::execute(
            "UPDATE threads SET title = ?1 WHERE id = ?2",
            params![title, thread.id],
        )?;
    }
    if let Some(pinned) = change.pinned {
        db::execute(
            "UPDATE threads SET pinned = ?1 WHERE id = ?2",
            params![pinned, thread.id],
        )?;
        crate::log_moderation(
            &who,
            forum.id,
            if pinned { "pin" } else { "unpin" },
            &format!("thread {}", thread.id),
            "",
        )?;
    }
    if let Some(locked) = change.locked {
        db::execute(
            "UPDATE threads SET locked = ?1 WHERE id = ?2",
            params![locked, thread.id],
        )?;
        crate::log_moderation(
            &who,
            forum.id,
            if locked { "lock" } else { "unlock" },
            &format!("thread {}", thread.id),
            "",
        )?;
    }
    let (thread, _) = visible_by_id(&who, thread.id)?;
    Ok(Response::json(200, &json!({ "thread": thread })))
}

/// `DELETE /threads/{id}` (member): soft delete by its author or a
/// moderator; 204.
pub fn delete(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, forum) = visible(&who, request, "id")?;
    let moderator = crate::moderation::is_moderator(&who, forum.id)?;
    let author: (String,) = db::query_one(
        "SELECT author_user FROM threads WHERE id = ?1",
        params![thread.id],
    )?;
    if author.0 != who.id && !moderator {
        return Err(Problem::from_status(403)
            .with_detail("only its author or a moderator may delete a thread"));
    }
    db::execute(
        "UPDATE threads SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
        params![thread.id, crate::clock::now()],
    )?;
    if author.0 != who.id {
        crate::log_moderation(
            &who,
            forum.id,
            "delete_thread",
            &format!("thread {}", thread.id),
            "",
        )?;
    }
    Ok(Response::no_content())
}
