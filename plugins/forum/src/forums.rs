//! Forums (categories): `GET/POST /forums`, `GET/PATCH /forums/{slug}`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, entitlements, params};

use crate::page;
use crate::who::{Audience, Who};

/// The problem `type` of an unknown (or invisible) forum.
pub const NO_SUCH_FORUM: &str = "https://souk.dev/problems/forum/no-such-forum";

/// A forum as stored and answered.
#[derive(Debug, Clone, Serialize)]
pub struct Forum {
    /// Internal id (not answered).
    #[serde(skip)]
    pub id: i64,
    /// Unique, URL-safe name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Sort key, ascending.
    pub position: i64,
    /// Who may see the forum and its threads.
    pub view: Audience,
    /// Who may start threads and reply.
    pub post: Audience,
}

/// The columns [`Forum`] decodes.
pub const FORUM_COLUMNS: &str =
    "id, slug, name, description, position, view_audience, post_audience";

impl FromRow for Forum {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        let audience = |column: &str| -> Result<Audience, DecodeError> {
            let text: String = row.get(column)?;
            Ok(Audience::parse(&text).unwrap_or(Audience::Admins))
        };
        Ok(Forum {
            id: row.get("id")?,
            slug: row.get("slug")?,
            name: row.get("name")?,
            description: row.get("description")?,
            position: row.get("position")?,
            view: audience("view_audience")?,
            post: audience("post_audience")?,
        })
    }
}

/// 404 for a forum that does not exist or that the caller may not view:
/// the two are answered alike.
pub fn no_such_forum() -> Problem {
    Problem::new(404, NO_SUCH_FORUM, "No such forum")
}

/// The forum with internal id `id`, if the caller may view it.
///
/// # Errors
///
/// 404 when missing or not visible; database errors.
pub fn visible_by_id(who: &Who, id: i64) -> Result<Forum, Problem> {
    let forum: Option<Forum> = db::query_optional(
        &format!("SELECT {FORUM_COLUMNS} FROM forums WHERE id = ?1"),
        params![id],
    )?;
    match forum {
        Some(forum) if may_view(who, &forum)? => Ok(forum),
        _ => Err(no_such_forum()),
    }
}

/// The forum `{slug}` of the path, if the caller may view it.
///
/// # Errors
///
/// 404 when missing or not visible; database errors.
pub fn visible_by_slug(who: &Who, request: &Request) -> Result<Forum, Problem> {
    let slug = request.param("slug")?;
    let forum: Option<Forum> = db::query_optional(
        &format!("SELECT {FORUM_COLUMNS} FROM forums WHERE slug = ?1"),
        params![slug],
    )?;
    match forum {
        Some(forum) if may_view(who, &forum)? => Ok(forum),
        _ => Err(no_such_forum()),
    }
}

/// Whether the caller may view `forum`: its audience, or being one of its
/// moderators.
///
/// # Errors
///
/// Database errors.
pub fn may_view(who: &Who, forum: &Forum) -> Result<bool, Problem> {
    Ok(who.admitted(&forum.view) || crate::moderation::is_moderator(who, forum.id)?)
}

/// Whether the caller may post in `forum` at all (audience and bans; a
/// locked thread is checked by the thread).
///
/// # Errors
///
/// 403 saying why not; database errors.
pub fn check_may_post(who: &Who, forum: &Forum) -> Result<(), Problem> {
    if crate::moderation::is_moderator(who, forum.id)? {
        return Ok(());
    }
    if !who.admitted(&forum.post) || !who.admitted(&forum.view) {
        return Err(Problem::from_status(403).with_detail("you may not post in this forum"));
    }
    crate::moderation::check_not_banned(who, forum.id)
}

/// `GET /forums` (public): the forums the caller may view, by position.
pub fn list(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let limit = page::limit(request)?;
    let (position, id) = match page::after(request, 2)? {
        Some(key) => (key[0], key[1]),
        None => (i64::MIN, i64::MIN),
    };
    // Invisible forums are skipped in Rust, so read past them until the
    // page is full.
    let mut items = Vec::new();
    let mut cursor = (position, id);
    let mut more = false;
    'pages: loop {
        let batch: Vec<Forum> = db::query_as(
            &format!(
                "SELECT {FORUM_COLUMNS} FROM forums WHERE position > ?1 OR (position = ?1 AND id > ?2) \
                 ORDER BY position, id LIMIT 100"
            ),
            params![cursor.0, cursor.1],
        )?;
        let exhausted = batch.len() < 100;
        for forum in batch {
            cursor = (forum.position, forum.id);
            if may_view(&who, &forum)? {
                if items.len() as i64 == limit {
                    more = true;
                    break 'pages;
                }
                items.push(forum);
            }
        }
        if exhausted {
            break;
        }
    }
    let next = if more {
        items.last().map(|f| page::cursor(&[f.position, f.id]))
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({ "items": items, "next": next }),
    ))
}

/// `GET /forums/{slug}` (public).
pub fn show(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = visible_by_slug(&who, request)?;
    let (threads,): (i64,) = db::query_one(
        "SELECT count(*) FROM threads WHERE forum_id = ?1 AND deleted_at IS NULL",
        params![forum.id],
    )?;
    Ok(Response::json(
        200,
        &json!({ "forum": forum, "threads": threads }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewForum {
    slug: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    position: i64,
    #[serde(default = "public")]
    view: String,
    #[serde(default = "members")]
    post: String,
}

fn public() -> String {
    "public".into()
}

fn members() -> String {
    "members".into()
}

fn valid_slug(slug: &str) -> bool {
    (1..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
}

fn audience(text: &str, field: &str, may_be_public: bool) -> Result<Audience, Problem> {
    match Audience::parse(text) {
        Some(Audience::Public) if !may_be_public => Err(Problem::unprocessable(format!(
            "`{field}` cannot be public: posting needs a member"
        ))),
        Some(audience) => Ok(audience),
        None => Err(Problem::unprocessable(format!(
            "`{field}` must be one of public, members, status:active, status:suspended, admins"
        ))),
    }
}

fn check_text(name: &str, description: &str) -> Result<(), Problem> {
    if name.trim().is_empty() || name.len() > 100 {
        return Err(Problem::unprocessable("`name` must be 1 to 100 characters"));
    }
    if description.len() > 2000 {
        return Err(Problem::unprocessable(
            "`description` must be at most 2000 characters",
        ));
    }
    Ok(())
}

/// `POST /forums` (admin): takes one unit of `max_forums`.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let new: NewForum = request.json()?;
    if !valid_slug(&new.slug) {
        return Err(Problem::unprocessable(
            "`slug` must be 1 to 64 lower-case letters, digits and dashes, not starting with a dash",
        ));
    }
    check_text(&new.name, &new.description)?;
    let view = audience(&new.view, "view", true)?;
    let post = audience(&new.post, "post", false)?;
    let taken: Option<(i64,)> = db::query_optional(
        "SELECT id FROM forums WHERE slug = ?1",
        params![new.slug.as_str()],
    )?;
    if taken.is_some() {
        return Err(Problem::conflict("a forum with this slug exists"));
    }
    entitlements::consume("max_forums", 1)?;
    let changes = db::execute(
        "INSERT INTO forums (slug, name, description, position, view_audience, post_audience, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new.slug.as_str(),
            new.name.trim(),
            new.description.as_str(),
            new.position,
            view.as_str(),
            post.as_str(),
            crate::clock::now()
        ],
    )?;
    let forum: Forum = db::query_one(
        &format!("SELECT {FORUM_COLUMNS} FROM forums WHERE id = ?1"),
        params![changes.last_insert_id.unwrap_or_default()],
    )?;
    Ok(Response::json(201, &json!({ "forum": forum })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForumChange {
    name: Option<String>,
    description: Option<String>,
    position: Option<i64>,
    view: Option<String>,
    post: Option<String>,
}

/// `PATCH /forums/{slug}` (admin).
pub fn update(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let forum = visible_by_slug(&who, request)?;
    let change: ForumChange = request.json()?;
    let name = change.name.unwrap_or(forum.name);
    let description = change.description.unwrap_or(forum.description);
    check_text(&name, &description)?;
    let view = match change.view {
        Some(text) => audience(&text, "view", true)?,
        None => forum.view,
    };
    let post = match change.post {
        Some(text) => audience(&text, "post", false)?,
        None => forum.post,
    };
    db::execute(
        "UPDATE forums SET name = ?1, description = ?2, position = ?3, view_audience = ?4, \
         post_audience = ?5 WHERE id = ?6",
        params![
            name.trim(),
            description.as_str(),
            change.position.unwrap_or(forum.position),
            view.as_str(),
            post.as_str(),
            forum.id
        ],
    )?;
    let forum: Forum = db::query_one(
        &format!("SELECT {FORUM_COLUMNS} FROM forums WHERE id = ?1"),
        params![forum.id],
    )?;
    Ok(Response::json(200, &json!({ "forum": forum })))
}

#[cfg(test)]
mod tests {
    use super::valid_slug;

    #[test]
    fn slugs_are_lower_case_words() {
        assert!(valid_slug("general"));
        assert!(valid_slug("off-topic-2"));
        assert!(!valid_slug(""));
        assert!(!valid_slug("-x"));
        assert!(!valid_slug("Caps"));
        assert!(!valid_slug("a/b"));
        assert!(!valid_slug(&"a".repeat(65)));
    }
}
